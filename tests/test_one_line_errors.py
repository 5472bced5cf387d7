"""Bad input the practitioner's path met (issue 36): each case exits 2 with one line naming the
file (and line or layer) or the flag, expected vs found, and no traceback."""
import pytest
import torch

from yolocompress.cli.main import main
from yolocompress.darknet import zoo
from yolocompress.darknet.cfg import parse_cfg, to_text
from yolocompress.darknet.model import Darknet
from yolocompress.darknet.weights import save_darknet_weights, save_pt
from yolocompress.data.synth import ShapesConfig, make_shapes


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    p = tmp_path_factory.mktemp("bad")
    make_shapes(p / "d", ShapesConfig(n_train=2, n_val=2, img_size=64, seed=1, n_classes=1), workers=1, progress=False)
    tiny = to_text(zoo.blocks("yolov3-tiny", 1))
    (p / "t.cfg").write_text(tiny)
    (p / "g0.cfg").write_text(tiny.replace("filters=16", "filters=16\ngroups=0", 1))
    (p / "one.cfg").write_text(tiny.replace("channels=3", "channels=1"))
    save_darknet_weights(Darknet(parse_cfg((p / "one.cfg").read_text())), p / "one.weights")
    y = (p / "d" / "data.yaml").read_text()
    (p / "latin.yaml").write_bytes(y.encode() + "# caf\xe9\n".encode("latin-1"))
    (p / "mixed.yaml").write_text(y.split("names")[0] + "names:\n  0: circle\n  a: x\n")
    (p / "inf.yaml").write_text(y.replace("nc: ", "nc: .inf #"))
    (p / "latin.names").write_bytes("caf\xe9\n".encode("latin-1"))
    (p / "latin.data").write_bytes("classes=1\ntrain=caf\xe9.txt\nvalid=v.txt\n".encode("latin-1"))
    (p / "cut.cfg").write_text(tiny[:tiny.index("[route]") + len("[route]\n")])     # truncated mid-section
    save_pt(Darknet(zoo.blocks("yolov3-tiny", 1)), p / "good.pt")
    for name, tamper in (("negvar", lambda m: m.module_list[0].bn.running_var.__setitem__(0, -1.0)),
                         ("huge", lambda m: m.module_list[2].conv.weight.view(-1).__setitem__(0, 3e38))):
        m = Darknet(zoo.blocks("yolov3-tiny", 1))
        with torch.no_grad():
            tamper(m)
        save_darknet_weights(m, p / f"{name}.weights")
        save_pt(m, p / f"{name}.pt")
    return p


TRAIN = ["--cfg", "teach", "--batch-size", "2", "--epochs", "1"]
CASES = {   # name: (argv with {p} for the fixture folder, words the one line must hold)
    "groups=0": (["info", "{p}/g0.cfg"], ["g0.cfg:21", "groups=0", ">= 1"]),
    "latin-1 yaml": (["data", "check", "{p}/latin.yaml"], ["latin.yaml", "UTF-8", "0xe9"]),
    "latin-1 names": (["export", "--cfg", "{p}/t.cfg", "--weights", "{p}/good.pt", "--names", "{p}/latin.names",
                       "--out", "{p}/e0"], ["latin.names", "UTF-8"]),
    "latin-1 .data": (["data", "check", "{p}/latin.data"], ["latin.data", "UTF-8", "0xe9"]),
    "cfg cut mid-section": (["info", "{p}/cut.cfg"], ["cut.cfg:", "[route] needs layers="]),
    "mixed name keys": (["data", "check", "{p}/mixed.yaml"], ["mixed.yaml", "names", "expected ids 0..1"]),
    "nc .inf": (["data", "check", "{p}/inf.yaml"], ["inf.yaml", "nc", "found inf"]),
    "1-channel detect": (["detect", "--cfg", "{p}/one.cfg", "--weights", "{p}/one.weights", "--source",
                          "{p}/d/images/val", "--out", "{p}/det"], ["channels=1", "RGB"]),
    "1-channel train": (["train", "--cfg", "{p}/one.cfg", "--data", "{p}/d/data.yaml", "--out", "{p}/r0",
                         "--batch-size", "2"], ["channels=1", "RGB"]),
    "negative --max-batches": (["train", *TRAIN, "--data", "{p}/d/data.yaml", "--out", "{p}/r1", "--max-batches", "-1"],
                               ["--max-batches -1", "positive"]),
    "huge --seed": (["train", *TRAIN, "--data", "{p}/d/data.yaml", "--out", "{p}/r2", "--seed", "99999999999999999999"],
                    ["--seed", "2**63"]),
    "--device meta": (["train", *TRAIN, "--data", "{p}/d/data.yaml", "--out", "{p}/r3", "--device", "meta"],
                      ["--device meta", "expected auto, cpu"]),
    "--budget nan": (["prune", "--weights", "{p}/negvar.pt", "--strategy", "union", "--budget", "nan",
                      "--out", "{p}/p"], ["nan"]),
    "negative running_var": (["export", "--cfg", "{p}/t.cfg", "--weights", "{p}/negvar.weights", "--out", "{p}/e1"],
                             ["negvar.weights", "layer 0", "running_var", "negative"]),
    "huge weight (.weights)": (["export", "--cfg", "{p}/t.cfg", "--weights", "{p}/huge.weights", "--out", "{p}/e2"],
                               ["huge.weights", "layer 2", "3e+38"]),
    "huge weight (.pt)": (["export", "--weights", "{p}/huge.pt", "--out", "{p}/e3"], ["huge.pt", "layer 2", "3e+38"]),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_is_one_line_exit_2(case, files, capsys):
    argv, words = CASES[case]
    code = main([a.format(p=files) for a in argv])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "Traceback" not in err, err
    for w in words:
        assert w in err, (w, err)


def test_info_reads_a_cfg_without_yolo_heads(files, capsys):
    """A backbone cfg (no [yolo]) is no error for info: it prints its layers (it raised IndexError)."""
    (files / "backbone.cfg").write_text((files / "t.cfg").read_text().split("[yolo]")[0])
    assert main(["info", str(files / "backbone.cfg")]) == 0
    assert "heads []" in capsys.readouterr().out
