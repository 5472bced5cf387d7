"""Class names from .names, .data and yaml files; clear file:line errors; --names on every verb."""
import json

import pytest

from yolocompress.darknet.cfg import to_text
from yolocompress.cli.main import main
from yolocompress.data.dataset import DataError, load_data_config
from yolocompress.data.names import check_names, label, load_names
from yolocompress.darknet.weights import darknet_weights_bytes, randomize
from yolocompress.darknet.loader import load_model


def test_names_file_like_darknet(tmp_path):
    p = tmp_path / "coco.names"
    p.write_text("person\r\n  bicycle \ntraffic light\n\n\n")        # CRLF, padding, trailing blanks
    assert load_names(p) == ("person", "bicycle", "traffic light")


def test_blank_line_between_names_is_refused_with_its_line(tmp_path):
    p = tmp_path / "x.names"
    p.write_text("person\n\nbicycle\n")
    with pytest.raises(DataError, match=r"x\.names:2: expected a class name, found a blank line"):
        load_names(p)


def test_empty_and_missing_files(tmp_path):
    (tmp_path / "e.names").write_text("\n\n")
    with pytest.raises(DataError, match="expected one class name per line, found none"):
        load_names(tmp_path / "e.names")
    with pytest.raises(DataError, match="class-names file not found"):
        load_names(tmp_path / "nope.names")


def test_data_file_points_at_names(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "obj.names").write_text("cat\ndog\n")
    data = tmp_path / "cfg" / "obj.data"
    data.parent.mkdir()
    data.write_text("classes = 2\n# a comment\ntrain = data/train.txt\nnames = data/obj.names\nbackup = backup/\n")
    assert load_names(data) == ("cat", "dog")                       # relative to the .data's parent
    data.write_text("classes = 3\nnames = data/obj.names\n")
    with pytest.raises(DataError, match=r"obj\.data:1: classes = 3, but .*obj\.names has 2 names"):
        load_names(data)
    data.write_text("classes = 2\nnames = data/missing.names\n")
    with pytest.raises(DataError, match=r"obj\.data:2: names = data/missing\.names: file not found"):
        load_names(data)
    data.write_text("classes = 2\nthis line is wrong\n")
    with pytest.raises(DataError, match=r"obj\.data:2: expected 'key = value'"):
        load_names(data)


def test_yaml_names_list_or_mapping(tmp_path):
    p = tmp_path / "d.yaml"
    p.write_text("names: [a, b]\n")
    assert load_names(p) == ("a", "b")
    p.write_text("nc: 2\nnames: {0: a, 1: b}\n")
    assert load_names(p) == ("a", "b")
    p.write_text("nc: 3\nnames: [a, b]\n")
    with pytest.raises(DataError, match="nc/classes is 3 but 2 names"):
        load_names(p)
    p.write_text("just a string\n")
    with pytest.raises(DataError, match="expected a mapping with a 'names' key, found str"):
        load_names(p)


def test_a_name_with_a_line_break_is_refused(tmp_path):
    """A .names file is one name per line: a name holding a line break would be written as two and
    shift every later class (issue 43), so it is refused where it is read, naming its index."""
    p = tmp_path / "d.yaml"
    p.write_text('names: ["a", "b\\nc", "d"]\n')
    with pytest.raises(DataError, match=r"d\.yaml: names\[1\]: expected a one-line class name, found 'b\\nc'"):
        load_names(p)
    p.write_text('names: [a, [b, c]]\n')
    with pytest.raises(DataError, match=r"names\[1\]: expected a one-line class name"):
        load_names(p)


def test_yaml_aliases_are_refused_before_they_expand(tmp_path):
    """Nine nested aliases of nine make 9**9 strings (the "billion laughs"); PyYAML's safe loader
    builds them all. Any alias is refused at its line, before anything is expanded (issue 43)."""
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for k in "bcdefghi":
        prev = chr(ord(k) - 1)
        lines.append(f"{k}: &{k} [" + ",".join([f"*{prev}"] * 9) + "]")
    p = tmp_path / "laughs.yaml"
    p.write_text("\n".join(lines + ["names: *i", "train: .", "val: ."]) + "\n")
    for load in (load_names, load_data_config):
        with pytest.raises(DataError, match=r"laughs\.yaml:2: YAML aliases"):
            load(p)


def test_check_names_and_label():
    assert check_names(("a", "b"), 2, "x") == ("a", "b")
    with pytest.raises(DataError, match="x: expected 3 class names .* found 2"):
        check_names(("a", "b"), 3, "x")
    assert label(("a", "b"), 1) == "b" and label((), 4) == "4"


def test_info_and_export_take_names(tmp_path, capsys):
    names = tmp_path / "n.names"
    names.write_text("\n".join(f"c{i}" for i in range(4)) + "\n")
    assert main(["info", "yolov3-tiny", "--classes", "4", "--names", str(names), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["names"] == ["c0", "c1", "c2", "c3"]
    assert main(["info", "yolov3-tiny", "--classes", "5", "--names", str(names)]) == 2
    assert "expected 5 class names" in capsys.readouterr().err
    model = randomize(load_model("teach", classes=4), seed=0)
    (tmp_path / "m.cfg").write_text(to_text(model.blocks))
    (tmp_path / "m.weights").write_bytes(darknet_weights_bytes(model))
    assert main(["export", "--cfg", str(tmp_path / "m.cfg"), "--weights", str(tmp_path / "m.weights"),
                 "--out", str(tmp_path / "exp"), "--names", str(names)]) == 0
    assert (tmp_path / "exp" / "model.names").read_text() == names.read_text()
