"""The input a model runs at (issue 36): one record - the [net]'s width and letter_box - read the
same way from a cfg + .weights and from a .pt, printed by every verb, written by training and
carried into the exported cfg; and the training flags around it (augmentation, EMA, patience,
workers, TensorBoard)."""
import json

import pytest
import torch

from yolocompress.darknet import zoo
from yolocompress.darknet.cfg import parse_cfg, to_text
from yolocompress.darknet.loader import load_model
from yolocompress.darknet.model import Darknet
from yolocompress.darknet.netinput import InputSpec, model_input, resolve_input, set_model_input
from yolocompress.darknet.weights import randomize, save_pt


def small(img_size=64):
    return randomize(Darknet(zoo.teach(classes=1, width=2, depths=(1, 1, 1, 1, 1), img_size=img_size)), seed=5)


def test_the_net_section_says_the_input_and_survives_cfg_text():
    assert model_input(Darknet(zoo.yolov3_tiny(80))) == InputSpec(416, "stretch")     # upstream: no letter_box
    assert model_input(small()) == InputSpec(64, "letterbox")                        # the teaching cfg says letter_box=1
    m = small()
    set_model_input(m, InputSpec(96, "stretch"))
    again = parse_cfg(to_text(m.blocks))
    assert model_input(again) == InputSpec(96, "stretch") and "letter_box" not in to_text(m.blocks)
    set_model_input(m, InputSpec(128, "letterbox"))
    assert "letter_box=1" in to_text(m.blocks) and model_input(parse_cfg(to_text(m.blocks))) == InputSpec(128, "letterbox")
    assert resolve_input(m, None, "stretch") == InputSpec(128, "stretch")
    assert resolve_input(m, 32, None) == InputSpec(32, "letterbox")


def test_a_pt_keeps_its_input_and_an_old_pt_keeps_the_old_rule(tmp_path):
    m = small()
    set_model_input(m, InputSpec(96, "stretch"))
    save_pt(m, tmp_path / "m.pt")
    assert model_input(load_model(tmp_path / "m.pt")) == InputSpec(96, "stretch")
    payload = torch.load(tmp_path / "m.pt", weights_only=True)
    del payload["input"]                             # a .pt written before the input was stored
    payload["train_config"] = {"img_size": 160}
    torch.save(payload, tmp_path / "old.pt")
    assert model_input(load_model(tmp_path / "old.pt")) == InputSpec(160, "letterbox")
    del payload["train_config"]
    torch.save(payload, tmp_path / "older.pt")
    assert model_input(load_model(tmp_path / "older.pt")) == InputSpec(128, "letterbox")


@pytest.fixture
def shapes(tmp_path):
    from yolocompress.data.synth import ShapesConfig, make_shapes
    make_shapes(tmp_path / "d", ShapesConfig(n_train=4, n_val=3, img_size=64, seed=1, n_labelled=1),
                workers=1, progress=False)
    return tmp_path / "d"


def test_one_pruned_model_as_weights_and_as_pt_gives_identical_boxes_and_says_its_input(tmp_path, shapes, capsys):
    """The acceptance of issue 36: prune writes pruned.cfg + pruned.weights and pruned.pt; detect and
    eval read both the same way (the cfg's letter_box=1 and width) and print the input they used."""
    from yolocompress.cli.main import main
    m = small()
    set_model_input(m, InputSpec(64, "letterbox"))
    save_pt(m, tmp_path / "m.pt")
    assert main(["prune", "--weights", str(tmp_path / "m.pt"), "--strategy", "union", "--ratio", "0.3",
                 "--out", str(tmp_path / "p")]) == 0
    cfg = (tmp_path / "p" / "pruned.cfg").read_text()
    assert "width=64" in cfg and "letter_box=1" in cfg
    capsys.readouterr()
    as_weights = ["--cfg", str(tmp_path / "p" / "pruned.cfg"), "--weights", str(tmp_path / "p" / "pruned.weights")]
    as_pt = ["--weights", str(tmp_path / "p" / "pruned.pt")]
    boxes, metrics = [], []
    for i, flags in enumerate((as_weights, as_pt)):
        assert main(["detect", *flags, "--source", str(shapes / "images" / "val"), "--out", str(tmp_path / f"det{i}"),
                     "--conf", "0.01"]) == 0
        assert "input: 64x64 px, letterbox (the model's own)" in capsys.readouterr().out
        boxes.append({p.name: p.read_text() for p in sorted((tmp_path / f"det{i}").glob("*.txt"))})
        assert main(["eval", *flags, "--data", str(shapes / "data.yaml"), "--json"]) == 0
        out, err = capsys.readouterr()
        assert "input: 64x64 px, letterbox (the model's own)" in err
        metrics.append(json.loads(out))
    assert boxes[0] == boxes[1] and any(boxes[0].values())
    assert metrics[0] == metrics[1]
    assert main(["eval", *as_pt, "--data", str(shapes / "data.yaml"), "--resize", "stretch", "--img-size", "96"]) == 0
    assert "input: 96x96 px, stretch (set by --img-size/--resize)" in capsys.readouterr().out


def test_train_resize_is_printed_recorded_and_carried_to_the_pt(tmp_path, shapes, capsys):
    from yolocompress.cli.main import main
    m = small()
    save_pt(m, tmp_path / "m.pt")
    assert main(["train", "--weights", str(tmp_path / "m.pt"), "--data", str(shapes / "data.yaml"),
                 "--out", str(tmp_path / "r"), "--epochs", "1", "--max-batches", "1", "--batch-size", "2",
                 "--resize", "stretch", "--no-figures", "--quiet", "--hflip", "0", "--scale", "0.9", "1.1"]) == 0
    assert "input: 64x64 px, stretch (set by --resize)" in capsys.readouterr().out
    train = json.loads((tmp_path / "r" / "config.json").read_text())["train"]
    assert train["resize"] == "stretch" and train["img_size"] == 64
    assert train["augment"]["hflip"] == 0 and train["augment"]["scale"] == [0.9, 1.1]
    assert model_input(load_model(tmp_path / "r" / "best.pt")) == InputSpec(64, "stretch")


def test_stretch_dataset_items_keep_the_files_labels(shapes):
    from yolocompress.data.dataset import YoloDataset, load_data_config
    data = load_data_config(shapes / "data.yaml")
    lb = YoloDataset(data.val, 96, resize="letterbox", cache=False)
    st = YoloDataset(data.val, 96, resize="stretch", cache=False)
    x, lab, meta = st[0]
    assert x.shape == (3, 96, 96) and meta["pad"] == (0, 0)
    h0, w0 = meta["orig_hw"]
    assert meta["ratio"] == (96 / w0, 96 / h0)
    from yolocompress.data.labels import label_path, read_labels
    torch.testing.assert_close(lab, torch.from_numpy(read_labels(label_path(data.val[0]))))
    assert lb[0][0].shape == x.shape


def test_early_stopping_reads_the_history_alone():
    from yolocompress.engine.train import stop_early
    rows = [{"map50": v} for v in (0.1, 0.3, 0.2, 0.25)]
    assert not stop_early(rows, None) and not stop_early(rows, 3)
    assert stop_early(rows, 2) and stop_early(rows, 1)
    assert not stop_early(rows + [{"map50": 0.4}], 1)
    assert not stop_early([{"total": 1.0}] * 5, 1)          # no evaluation yet: nothing to stop on


def test_ema_weights_are_evaluated_saved_and_handed_on(tmp_path, shapes):
    """With --ema the run evaluates and saves the average; last.pt keeps the raw weights and the
    average, so a resumed run continues both."""
    from yolocompress.data.dataset import load_data_config
    from yolocompress.engine.train import TrainConfig, train
    data = load_data_config(shapes / "data.yaml")
    cfg = TrainConfig(epochs=2, batch_size=2, img_size=64, max_batches=2, ema=0.5, lr=0.05, augment=None)
    result = train(small(), data, cfg, tmp_path / "r", progress=False)
    ck = torch.load(tmp_path / "r" / "last.pt", weights_only=True)
    ema = {k[len("module."):]: v for k, v in ck["ema"].items() if k.startswith("module.")}
    for k, v in result.model.state_dict().items():
        torch.testing.assert_close(v, ema[k], rtol=0, atol=0)        # handed on: the average, exactly
    assert any(not torch.equal(v, ck["state_dict"][k]) for k, v in ema.items() if v.is_floating_point())
    best = torch.load(tmp_path / "r" / "best.pt", weights_only=True)["state_dict"]
    if ck["best_epoch"] == 2:
        assert all(torch.equal(best[k], ema[k]) for k in best)


def test_tensorboard_hook_logs_every_scalar_of_the_epoch():
    from yolocompress.engine.hooks import TensorBoardHook

    class Writer:
        def __init__(self):
            self.rows = []

        def add_scalar(self, tag, value, step):
            self.rows.append((tag, value, step))

        def flush(self):
            pass

    w = Writer()
    TensorBoardHook("unused", writer=w).on_epoch_end(None, {"epoch": 3, "total": 1.5, "map50": 0.7,
                                                           "map": float("nan"), "note": "x"})
    assert w.rows == [("total", 1.5, 3), ("map50", 0.7, 3)]


def test_workers_default_to_what_the_machine_can_spare():
    from yolocompress.cli.train import auto_workers
    assert [auto_workers(n) for n in (1, 2, 4, 16, 64)] == [0, 0, 2, 8, 8]


def test_every_flag_of_every_verb_has_help_and_the_help_shows_its_default():
    from yolocompress.cli.main import build_parser
    sub = next(a for a in build_parser()._actions if a.__class__.__name__ == "_SubParsersAction")
    for verb, parser in sub.choices.items():
        for action in parser._actions:
            assert action.help or not action.option_strings, (verb, action.option_strings)
    text = sub.choices["eval"].format_help()
    assert "(default: 32)" in text and "(default: val)" in text
