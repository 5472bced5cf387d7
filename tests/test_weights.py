"""Darknet .weights: exact byte round trips, headers old and new, clear errors for wrong sizes."""
import numpy as np
import pytest
import torch

from yolocompress.darknet.cfg import parse_cfg
from yolocompress.darknet.loader import load_model
from yolocompress.darknet.model import Darknet
from yolocompress.darknet.weights import (WeightsError, WeightsHeader, darknet_weights_bytes, load_darknet_weights,
                                  randomize, save_darknet_weights, save_pt, weights_float_count)


@pytest.fixture
def model(tiny_cfg_text):
    return randomize(Darknet(parse_cfg(tiny_cfg_text)), seed=0)


def _file(tmp_path, header: WeightsHeader, floats: np.ndarray):
    p = tmp_path / "w.weights"
    p.write_bytes(header.to_bytes() + floats.astype("<f4").tobytes())
    return p


def test_load_save_is_byte_identical(tmp_path, model):
    n = weights_float_count(model)
    floats = np.abs(np.random.default_rng(0).standard_normal(n)).astype("<f4")   # >= 0: running_var must be
    src = _file(tmp_path, WeightsHeader(0, 2, 5, 123456789012), floats)
    fresh = Darknet(model.blocks)
    header = load_darknet_weights(fresh, src)
    assert header == WeightsHeader(0, 2, 5, 123456789012)
    out = tmp_path / "again.weights"
    save_darknet_weights(fresh, out)
    assert out.read_bytes() == src.read_bytes()


def test_float_order_is_darknets(tmp_path):
    """BN conv: beta, gamma, mean, var, weights; plain conv: bias, weights."""
    blocks = parse_cfg("[net]\nwidth=32\nheight=32\nchannels=1\n[convolutional]\nbatch_normalize=1\nfilters=2\n"
                       "size=1\nactivation=linear\n[convolutional]\nfilters=1\nsize=1\nactivation=linear\n")
    model = Darknet(blocks)
    floats = np.arange(1, 16, dtype="<f4")  # 4*2 BN + 2 w + 1 bias + 2 w = 13 ... checked below
    assert weights_float_count(model) == 4 * 2 + 2 + 1 + 2
    p = _file(tmp_path, WeightsHeader(), floats[:13])
    load_darknet_weights(model, p)
    conv0, conv1 = model.module_list[0], model.module_list[1]
    assert conv0.bn.bias.tolist() == [1, 2] and conv0.bn.weight.tolist() == [3, 4]
    assert conv0.bn.running_mean.tolist() == [5, 6] and conv0.bn.running_var.tolist() == [7, 8]
    assert conv0.conv.weight.flatten().tolist() == [9, 10]
    assert conv1.conv.bias.tolist() == [11] and conv1.conv.weight.flatten().tolist() == [12, 13]


def test_legacy_header_with_32bit_seen(tmp_path, model):
    n = weights_float_count(model)
    floats = np.abs(np.random.default_rng(1).standard_normal(n))   # >= 0: running_var must be
    src = _file(tmp_path, WeightsHeader(0, 1, 0, 4000), floats)
    assert src.stat().st_size == 16 + 4 * n
    header = load_darknet_weights(model, src)
    assert header.seen == 4000 and header.seen_bytes == 4
    assert darknet_weights_bytes(model) == src.read_bytes()


@pytest.mark.parametrize("delta, word", [(-7, "fewer"), (5, "more")])
def test_wrong_size_is_refused_with_counts(tmp_path, model, delta, word):
    n = weights_float_count(model)
    src = _file(tmp_path, WeightsHeader(), np.zeros(n + delta))
    with pytest.raises(WeightsError, match=rf"needs {n:,} float32 values .* holds {n + delta} floats .*{word}"):
        load_darknet_weights(model, src)


def test_stray_bytes_and_short_header(tmp_path, model):
    n = weights_float_count(model)
    p = tmp_path / "odd.weights"
    p.write_bytes(WeightsHeader().to_bytes() + b"\0" * (4 * n + 2))
    with pytest.raises(WeightsError, match="2 stray bytes"):
        load_darknet_weights(model, p)
    p.write_bytes(b"\0" * 7)
    with pytest.raises(WeightsError, match="too short for a darknet header"):
        load_darknet_weights(model, p)
    with pytest.raises(WeightsError, match="cannot read weights file"):
        load_darknet_weights(model, tmp_path / "missing.weights")


def test_weights_of_another_cfg_are_refused(tmp_path):
    small = randomize(load_model("yolov3-tiny", classes=2))
    p = tmp_path / "tiny.weights"
    save_darknet_weights(small, p)
    with pytest.raises(WeightsError, match="is this the .weights file of this cfg"):
        load_darknet_weights(load_model("yolov4-tiny", classes=2), p)


def test_pt_round_trip_is_plain_data(tmp_path, model):
    p = tmp_path / "m.pt"
    save_pt(model, p, note="hello")
    payload = torch.load(p, weights_only=True)
    assert set(payload) == {"format", "cfg", "state_dict", "input", "meta"} and payload["meta"] == {"note": "hello"}
    assert set(payload["input"]) == {"size", "resize", "height"}      # plain ints and strings too
    again = load_model(p).eval()
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(again(x), model.eval()(x))
