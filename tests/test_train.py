"""Training loop: loss assignment, run directories, NaN stops, exact resume, CLI verbs."""
import json

import pytest
import torch

from yolocompress.cli.main import main
from yolocompress.data.dataset import load_data_config
from yolocompress.engine.loss import LossConfig, YoloLoss, build_targets
from yolocompress.data.synth import ShapesConfig, make_shapes
from yolocompress.engine.train import TrainConfig, TrainingError, lr_factor, train
from yolocompress.darknet.loader import load_model


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("shapes")
    make_shapes(root, ShapesConfig(n_train=16, n_val=8, img_size=64, seed=3), workers=1, progress=False)
    return root / "data.yaml"


FAST = dict(epochs=2, batch_size=4, img_size=64, optimizer="sgd", lr=0.01, max_batches=2, max_val_images=4,
            amp="off", warmup_epochs=0.5)


def test_targets_go_to_every_fitting_anchor_and_the_best():
    model = load_model("teach", classes=3)
    heads = [torch.zeros(1, 3, s, s, 8) for s in (4, 8, 16)]       # strides 32, 16, 8 at 128 px
    t = torch.tensor([[0, 2, 0.5, 0.5, 14 / 128, 14 / 128]])         # a 14 px box at the image centre
    assigned = build_targets(model, heads, t, (128, 128), anchor_iou=0.2)
    anchors = [y.anchors for y in model.yolo_layers]
    for a, anc, s in zip(assigned, anchors, (4, 8, 16)):
        wh_iou = (torch.min(anc, torch.tensor(14.0)).prod(1) / (anc.prod(1) + 196 - torch.min(anc, torch.tensor(14.0)).prod(1)))
        assert a.a.tolist() == torch.nonzero(wh_iou > 0.2).flatten().tolist()
        assert all(gx == s // 2 and gy == s // 2 for gx, gy in zip(a.gx.tolist(), a.gy.tolist()))
        assert torch.allclose(a.box, torch.tensor([[s / 2, s / 2, 14 * s / 128, 14 * s / 128]]).expand(len(a.b), 4))
    none = build_targets(model, heads, t, (128, 128), anchor_iou=0.99)
    assert sum(len(a.b) for a in none) == 1                          # only the best anchor


def test_loss_terms_named_and_zero_without_objects():
    model = load_model("teach", classes=3).train()
    heads = model(torch.rand(2, 3, 64, 64))
    terms = YoloLoss(model)(heads, torch.zeros(0, 6), (64, 64))
    assert set(terms) == {"box", "obj", "cls", "total"}
    assert float(terms["box"].detach()) == 0 and float(terms["cls"].detach()) == 0 and float(terms["obj"].detach()) > 0
    assert float(terms["total"].detach()) == pytest.approx(2 * float(terms["obj"].detach()))
    with pytest.raises(ValueError, match="iou_type"):
        YoloLoss(model, LossConfig(iou_type="diou"))


def test_lr_schedule():
    cfg = TrainConfig(epochs=10, warmup_epochs=1, lr_final=0.1)
    assert lr_factor(cfg, 0, 10) == pytest.approx(0.1) and lr_factor(cfg, 9, 10) == pytest.approx(1.0)
    assert lr_factor(cfg, 10, 10) == pytest.approx(1.0) and lr_factor(cfg, 99, 10) == pytest.approx(0.1, abs=1e-3)
    step = TrainConfig(epochs=10, warmup_epochs=0, schedule="step")
    assert [lr_factor(step, s, 10) for s in (0, 69, 70, 89, 90)] == [1.0, 1.0, 0.1, 0.1, 0.01]


def test_run_directory_files_and_refusal(tmp_path, tiny_data):
    data = load_data_config(tiny_data)
    out = tmp_path / "run"
    r = train(load_model("teach", classes=data.nc), data, TrainConfig(**FAST, from_scratch=True), out, progress=False)
    assert {p.name for p in out.iterdir()} == {"config.json", "history.csv", "last.pt", "best.pt"}
    assert list(r.history["epoch"]) == [1, 2] and "map50" in r.history
    assert json.loads((out / "config.json").read_text())["train"]["epochs"] == 2
    assert load_model(out / "best.pt").blocks == r.model.blocks
    with pytest.raises(TrainingError, match="already exists and is not empty"):
        train(load_model("teach", classes=data.nc), data, TrainConfig(**FAST), out, progress=False)
    with pytest.raises(TrainingError, match="nothing to resume"):
        train(load_model("teach", classes=data.nc), data, TrainConfig(**FAST), tmp_path / "new", resume=True, progress=False)


def test_nan_loss_stops_with_epoch_and_batch(tiny_data):
    data = load_data_config(tiny_data)

    class Poison:
        def __call__(self, ctx, images, targets, heads):
            bad = torch.tensor(float("nan")) if ctx.step == 2 else torch.tensor(0.0)
            return {"poison": bad}
    with pytest.raises(TrainingError, match=r"non-finite loss at epoch 2, batch 1: .*poison"):
        train(load_model("teach", classes=data.nc), data, TrainConfig(**FAST), None, terms=[Poison()], progress=False)


class _Crash(Exception):
    pass


class _KillAt:
    """A hook that dies mid-epoch, like SIGKILL (after the previous epoch's checkpoint)."""
    def __init__(self, step):
        self.step = step

    def after_backward(self, ctx):
        if ctx.step == self.step:
            raise _Crash


def test_resume_is_exact(tmp_path, tiny_data):
    data = load_data_config(tiny_data)
    cfg = TrainConfig(**{**FAST, "epochs": 3, "augment": TrainConfig().augment}, from_scratch=True)
    torch.manual_seed(0)
    whole = train(load_model("teach", classes=data.nc), data, cfg, tmp_path / "whole", progress=False)
    torch.manual_seed(0)
    with pytest.raises(_Crash):
        train(load_model("teach", classes=data.nc), data, cfg, tmp_path / "cut", hooks=[_KillAt(5)], progress=False)
    resumed = train(load_model("teach", classes=data.nc), data, cfg, tmp_path / "cut", resume=True, progress=False)
    for (k, a), b in zip(whole.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(a, b), k
    assert list(resumed.history["epoch"]) == [1, 2, 3]


def test_cli_train_eval_detect(tmp_path, tiny_data, capsys):
    out = tmp_path / "cli"
    assert main(["train", "--cfg", "teach", "--data", str(tiny_data), "--epochs", "1", "--img-size", "64",
                 "--batch-size", "4", "--max-val-images", "4", "--out", str(out), "--quiet"]) == 0
    assert main(["train", "--cfg", "teach", "--data", str(tiny_data), "--epochs", "1", "--out", str(out),
                 "--quiet"]) == 2
    assert "already exists" in capsys.readouterr().err
    assert main(["eval", "--weights", str(out / "best.pt"), "--data", str(tiny_data), "--img-size", "64",
                 "--json"]) == 0
    metrics = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert set(metrics) >= {"map50", "map", "precision", "recall", "per_class"}
    images = tiny_data.parent / "images" / "val"
    assert main(["detect", "--weights", str(out / "best.pt"), "--source", str(images), "--out",
                 str(tmp_path / "det"), "--img-size", "64", "--conf", "0.0001"]) == 0
    assert len(list((tmp_path / "det").glob("*.png"))) == 8 and len(list((tmp_path / "det").glob("*.txt"))) == 8
    assert main(["train", "--cfg", "yolov3-tiny", "--classes", "80", "--data", str(tiny_data), "--out",
                 str(tmp_path / "x"), "--quiet"]) == 2
    assert "--classes 80 but the dataset has 8 classes" in capsys.readouterr().err


def test_cli_distill_from_a_pt_teacher(tmp_path, tiny_data, capsys):
    """A training checkpoint (last.pt, with RNG state and gamma histograms) loads as weights and as a
    teacher (plain data, weights_only); --teacher-cfg is optional for a .pt; no teacher is refused."""
    common = ["--data", str(tiny_data), "--epochs", "1", "--img-size", "64", "--batch-size", "4",
              "--max-val-images", "4", "--quiet"]
    assert main(["train", "--cfg", "teach", *common, "--out", str(tmp_path / "t"), "--sparsity", "0.01"]) == 0
    assert main(["train", "--weights", str(tmp_path / "t" / "last.pt"), *common, "--out", str(tmp_path / "s"),
                 "--teacher-weights", str(tmp_path / "t" / "last.pt"), "--distill", "hinton"]) == 0
    assert "kd_cls" in (tmp_path / "s" / "history.csv").read_text()
    assert main(["train", "--cfg", "teach", *common, "--out", str(tmp_path / "u"), "--distill", "bounded"]) == 2
    assert "--distill needs --teacher-weights" in capsys.readouterr().err


def test_from_scratch_run_depends_only_on_its_seed(tiny_data):
    """Models built after different RNG draws train to the same weights: init comes from cfg.seed."""
    data = load_data_config(tiny_data)
    cfg = TrainConfig(**{**FAST, "epochs": 1}, from_scratch=True)
    runs = []
    for noise in (1, 2):
        torch.manual_seed(noise)
        runs.append(train(load_model("teach", classes=data.nc), data, cfg, progress=False).model)
    for (k, a), b in zip(runs[0].state_dict().items(), runs[1].state_dict().values()):
        assert torch.equal(a, b), k
