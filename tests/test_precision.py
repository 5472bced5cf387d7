"""--amp auto: fp16 on CUDA, bf16 only on a CPU with native bf16 units, fp32 otherwise."""
import json

import pytest
import torch

from yolocompress.engine import precision
from yolocompress.engine.precision import choose_amp, cpu_bf16_native
from yolocompress.darknet.loader import load_model

CPU, CUDA = torch.device("cpu"), torch.device("cuda")


@pytest.mark.parametrize("native, want", [(True, torch.bfloat16), (False, None)])
def test_auto_on_cpu_follows_native_bf16(monkeypatch, native, want):
    monkeypatch.setattr(precision, "cpu_bf16_native", lambda: native)
    choice = choose_amp("auto", CPU)
    assert choice.dtype is want
    assert ("has native bf16" if native else "no native bf16") in choice.reason
    assert choice.to_dict()["amp_used"] == ("bf16" if native else "fp32")


def test_auto_on_cuda_is_fp16_and_explicit_modes_are_kept(monkeypatch):
    monkeypatch.setattr(precision, "cpu_bf16_native", lambda: True)
    assert choose_amp("auto", CUDA).dtype is torch.float16
    assert choose_amp("off", CUDA).dtype is None
    assert choose_amp("bf16", CPU).dtype is torch.bfloat16 and choose_amp("fp16", CPU).dtype is torch.float16


def test_explicit_bf16_on_an_emulating_cpu_warns_with_the_cost(monkeypatch):
    monkeypatch.setattr(precision, "cpu_bf16_native", lambda: False)
    with pytest.warns(UserWarning, match="10x slower training"):
        assert choose_amp("bf16", CPU).dtype is torch.bfloat16


@pytest.mark.parametrize("machine, onednn, units, want", [
    ("x86_64", True, True, True),      # AVX512-BF16 / AMX
    ("x86_64", True, False, False),    # plain AVX512: oneDNN says yes, but emulates
    ("x86_64", False, False, False),   # AVX2
    ("aarch64", True, False, True),    # Arm: oneDNN's check is the hardware check
])
def test_native_check(monkeypatch, machine, onednn, units, want):
    monkeypatch.setattr(precision.platform, "machine", lambda: machine)
    monkeypatch.setattr(precision, "_onednn_bf16", lambda: onednn)
    monkeypatch.setattr(precision, "_x86_bf16_units", lambda: units)
    assert cpu_bf16_native() is want


def test_unknown_mode_is_refused():
    with pytest.raises(ValueError, match="amp must be one of auto, off, bf16, fp16, got 'fp8'"):
        choose_amp("fp8", CPU)


def test_run_records_the_choice(tmp_path, monkeypatch):
    from yolocompress.data.dataset import load_data_config
    from yolocompress.data.synth import ShapesConfig, make_shapes
    from yolocompress.engine.train import TrainConfig, train
    monkeypatch.setattr(precision, "cpu_bf16_native", lambda: False)
    make_shapes(tmp_path / "d", ShapesConfig(n_train=4, n_val=2, img_size=64, seed=1), workers=1, progress=False)
    data = load_data_config(tmp_path / "d" / "data.yaml")
    cfg = TrainConfig(epochs=1, batch_size=4, img_size=64, max_batches=1, max_val_images=2, augment=None)
    train(load_model("teach", classes=data.nc), data, cfg, tmp_path / "run", progress=False)
    rec = json.loads((tmp_path / "run" / "config.json").read_text())["precision"]
    assert rec["amp_requested"] == "auto" and rec["amp_used"] == "fp32" and "no native bf16" in rec["amp_reason"]
