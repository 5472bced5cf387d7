"""Transfer from pretrained weights (issue 36): a 1-class model from 80-class weights (.weights
and .pt) and from a darknet backbone cutoff; every backbone tensor equal to the source's, the
heads left as initialised, and both listed."""
import pytest
import torch

from yolocompress.darknet import zoo
from yolocompress.darknet.cfg import Yolo
from yolocompress.darknet.model import Darknet
from yolocompress.darknet.transfer import save_partial, source_classes, transfer, with_classes
from yolocompress.darknet.weights import WeightsError, randomize, save_darknet_weights, save_pt, weights_float_count


def heads(blocks):
    """The conv feeding each [yolo]: the layers whose shape depends on the class count."""
    return sorted(i - 2 for i, b in enumerate(blocks) if isinstance(b, Yolo))   # block i is layer i - 1


def coco_like(name):
    return randomize(Darknet(zoo.blocks(name, 80)), seed=3)


def assert_transferred(model, source, report, cutoff=None):
    src = source.conv_layers()
    for i, layer in model.conv_layers().items():
        same = all(torch.equal(a, b) for a, b in zip(layer.state_dict().values(), src[i].state_dict().values())) \
            if layer.conv.weight.shape == src[i].conv.weight.shape else False
        assert same == (i in report.loaded), i


@pytest.mark.parametrize("name", ["yolov3", "yolov3-spp", "yolov3-tiny", "yolov4", "yolov4-tiny"])
def test_the_class_count_of_a_weights_file_is_found_from_its_size(name):
    blocks, one = zoo.blocks(name, 80), zoo.blocks(name, 1)
    assert with_classes(one, 80) == blocks                  # the zoo's 80-class cfg, exactly
    with torch.device("meta"):
        count = weights_float_count(Darknet.uninitialized(blocks, "meta"))
    assert source_classes(one, count) == 80 and source_classes(one, count + 1) is None


@pytest.mark.parametrize("name", ["yolov3-tiny", "yolov4-tiny"])
def test_a_one_class_model_from_80_class_weights(name, tmp_path):
    source = coco_like(name)
    save_darknet_weights(source, tmp_path / "coco.weights")
    save_pt(source, tmp_path / "coco.pt")
    for path in (tmp_path / "coco.weights", tmp_path / "coco.pt"):
        model = Darknet(zoo.blocks(name, 1))
        report = transfer(model, path)
        assert report.initialised == heads(model.blocks), path
        assert report.source_classes == 80
        assert_transferred(model, source, report)
        assert f"initialised {len(heads(model.blocks))} {heads(model.blocks)}" in report.describe()


def test_a_backbone_cutoff_like_yolov3_tiny_conv_15(tmp_path):
    source = coco_like("yolov3-tiny")
    written = save_partial(source, tmp_path / "yolov3-tiny.conv.15", 15)
    assert written == sum(1 for i in source.conv_layers() if i < 15)
    model = Darknet(zoo.blocks("yolov3-tiny", 1))
    report = transfer(model, tmp_path / "yolov3-tiny.conv.15")
    assert report.loaded == [i for i in model.conv_layers() if i < 15]
    assert_transferred(model, source, report)
    cut = Darknet(zoo.blocks("yolov3-tiny", 1))                  # --cutoff on a full file does the same
    assert transfer(cut, _full(source, tmp_path), cutoff=15).loaded == report.loaded


def _full(source, tmp_path):
    save_darknet_weights(source, tmp_path / "full.weights")
    return tmp_path / "full.weights"


def test_a_file_that_is_no_cutoff_of_this_cfg_is_refused(tmp_path):
    source = coco_like("yolov3-tiny")
    path = _full(source, tmp_path)
    path.write_bytes(path.read_bytes()[:-8])                     # ends inside a layer
    with pytest.raises(WeightsError, match="do not end at a conv layer"):
        transfer(Darknet(zoo.blocks("yolov3-tiny", 1)), path)


def test_train_from_80_class_weights_and_from_a_cutoff_lists_both_and_draws_its_figures(tmp_path, capsys):
    """The practitioner's first step: a 1-class run from COCO-shaped yolov3-tiny weights, and from
    its 15-layer backbone; the log names what was loaded and what initialised, and the run
    directory gets its four figures."""
    from yolocompress.cli.main import main
    from yolocompress.darknet.cfg import write_cfg
    from yolocompress.data.synth import ShapesConfig, make_shapes
    make_shapes(tmp_path / "d", ShapesConfig(n_train=4, n_val=2, img_size=64, seed=1, n_labelled=1),
                workers=1, progress=False)
    source = coco_like("yolov3-tiny")
    save_darknet_weights(source, tmp_path / "coco.weights")
    save_partial(source, tmp_path / "yolov3-tiny.conv.15", 15)
    write_cfg(zoo.blocks("yolov3-tiny", 80), tmp_path / "yolov3-tiny.cfg")       # the 80-class cfg, as downloaded
    quick = ["--data", str(tmp_path / "d" / "data.yaml"), "--epochs", "1", "--max-batches", "1", "--batch-size", "2",
             "--img-size", "64", "--quiet"]
    for weights, run in (("coco.weights", "full"), ("yolov3-tiny.conv.15", "cut")):
        assert main(["train", "--cfg", str(tmp_path / "yolov3-tiny.cfg"), "--weights", str(tmp_path / weights),
                     "--out", str(tmp_path / run), *quick]) == 0
        log = capsys.readouterr().out
        assert f"transfer from {tmp_path / weights}" in log and "initialised" in log, log
        for name in ("results.png", "pr_curve.png", "confusion_matrix.png", "val_predictions.png"):
            assert (tmp_path / run / name).is_file(), (run, name)


def test_the_partial_verb_writes_a_backbone_the_train_verb_reads(tmp_path, capsys):
    from yolocompress.cli.main import main
    source = coco_like("yolov3-tiny")
    save_pt(source, tmp_path / "coco.pt")
    assert main(["partial", "--weights", str(tmp_path / "coco.pt"), "--cutoff", "15", "--out", str(tmp_path / "b.conv.15")]) == 0
    model = Darknet(zoo.blocks("yolov3-tiny", 1))
    assert transfer(model, tmp_path / "b.conv.15").loaded == [i for i in model.conv_layers() if i < 15]
    assert main(["partial", "--weights", str(tmp_path / "coco.pt"), "--cutoff", "15", "--out", str(tmp_path / "b.conv.15")]) == 2
    assert "exists" in capsys.readouterr().err                      # never overwrites


def test_version_and_usage_name_the_console_script(capsys):
    from yolocompress import __version__
    from yolocompress.cli.main import build_parser, main
    with pytest.raises(SystemExit):
        main(["--version"])
    assert capsys.readouterr().out.strip() == f"yolocompress {__version__}"
    assert build_parser().format_usage().startswith("usage: yolocompress ")
