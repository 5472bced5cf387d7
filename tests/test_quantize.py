"""int8 post-training quantization (deploy/quantize.py, ``export --onnx --int8``): a QDQ file
that carries the fp32 file's metadata, scores through ``eval --onnx``, and stays close to fp32."""
import json
import logging

import numpy as np
import pytest
import torch

from yolocompress.cli.main import main
from yolocompress.darknet.loader import load_model
from yolocompress.darknet.weights import save_pt
from yolocompress.data.synth import ShapesConfig, make_shapes
from yolocompress.deploy.export import OnnxModel, onnx_metadata
from yolocompress.deploy.quantize import max_relative_gap, quantized_ops


class _Records(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.records = []

    def emit(self, record):
        self.records.append(record)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """One export with --int8 (a module fixture: quantizing takes seconds), with every log record
    of WARNING and above caught: onnxruntime warns unless the graph was pre-processed first."""
    tmp = tmp_path_factory.mktemp("int8")
    data = make_shapes(tmp / "d", ShapesConfig(n_classes=1, n_train=12, n_val=6, img_size=64, seed=2), workers=1,
                       progress=False)
    torch.manual_seed(0)
    save_pt(load_model("teach", classes=1), tmp / "m.pt")
    caught = _Records()
    logging.getLogger().addHandler(caught)
    try:
        assert main(["export", "--weights", str(tmp / "m.pt"), "--out", str(tmp / "e"), "--name", "m", "--onnx",
                     "--img-size", "64", "--int8", "--calib-data", str(data), "--calib-images", "8"]) == 0
    finally:
        logging.getLogger().removeHandler(caught)
    return tmp, data, caught.records


def test_int8_file_is_quantized_and_self_describing(exported):
    tmp, _, logged = exported
    assert not logged, [r.getMessage() for r in logged]
    fp32, int8 = tmp / "e" / "m.onnx", tmp / "e" / "m.int8.onnx"
    assert quantized_ops(fp32) == {"QuantizeLinear": 0, "DequantizeLinear": 0}
    ops = quantized_ops(int8)
    assert ops["QuantizeLinear"] > 0 and ops["DequantizeLinear"] >= ops["QuantizeLinear"]
    meta, source = onnx_metadata(int8), onnx_metadata(fp32)
    assert {k: meta[k] for k in source} == source and "calibrated on 8 images" in meta["precision"]


def test_int8_outputs_stay_close_to_fp32(exported):
    """Tolerance: each quantized tensor is rounded to half an int8 step, 1/510 (0.2%) of its
    calibrated range; the teaching model chains about 75 convs, and independent rounding errors
    grow like the square root of their count, sqrt(75) x 0.2% = 1.7%. We allow 3% of each output
    column's range (cx, cy, w, h, objectness) - far below what a wrong scale or a dropped
    zero point gives (errors of the order of the whole range)."""
    tmp, _, _ = exported
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    a = OnnxModel(tmp / "e" / "m.onnx")(x).numpy()
    b = OnnxModel(tmp / "e" / "m.int8.onnx")(x).numpy()
    assert a.shape == b.shape
    gaps = [max_relative_gap(a[..., k], b[..., k]) for k in range(5)]
    assert max(gaps) < 0.03, gaps
    assert not np.array_equal(a, b)                     # it did quantize something


def test_eval_scores_the_int8_file(exported, capsys):
    tmp, data, _ = exported
    capsys.readouterr()
    assert main(["eval", "--onnx", str(tmp / "e" / "m.int8.onnx"), "--data", str(data), "--json",
                 "--img-size", "64"]) == 0
    scores = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert 0.0 <= scores["map50"] <= 1.0 and 0.0 <= scores["map"] <= scores["map50"]


@pytest.mark.parametrize("flags, says", [(["--int8"], "--calib-data"),
                                         (["--onnx", "--int8", "--calib-data", "missing.yaml"], "missing.yaml")])
def test_int8_without_its_inputs_is_one_line(tmp_path, capsys, flags, says):
    save_pt(load_model("teach", classes=1), tmp_path / "m.pt")
    assert main(["export", "--weights", str(tmp_path / "m.pt"), "--out", str(tmp_path / "e"), *flags]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and len(err.splitlines()) == 1 and says in err
    assert not (tmp_path / "e").exists()                  # nothing written
