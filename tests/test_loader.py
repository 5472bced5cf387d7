"""One way in: load_model takes a zoo name, a cfg (path, text, blocks) or a .pt, with or without
weights, and refuses mistakes with the library's own errors."""
import pytest
import torch

from yolocompress.darknet import zoo
from yolocompress.darknet.cfg import CfgError, parse_cfg
from yolocompress.darknet.loader import load_model
from yolocompress.darknet.weights import WeightsError, randomize, save_darknet_weights, save_pt


def _same_outputs(a, b) -> bool:
    x = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        return torch.equal(a.eval()(x), b.eval()(x))


def test_every_source_gives_the_same_architecture(tmp_path, tiny_cfg_text):
    p = tmp_path / "t.cfg"
    p.write_text(tiny_cfg_text)
    a, b, c = load_model(tiny_cfg_text), load_model(p), load_model(parse_cfg(tiny_cfg_text))
    assert a.blocks == b.blocks == c.blocks
    assert load_model("yolov3-tiny", classes=3).blocks == zoo.blocks("yolov3-tiny", 3)


def test_weights_fill_every_tensor(tmp_path):
    src = randomize(load_model("teach"), seed=1)
    save_darknet_weights(src, tmp_path / "m.weights")
    save_pt(src, tmp_path / "m.pt")
    for model in (load_model("teach", tmp_path / "m.weights"), load_model(tmp_path / "m.pt"),
                  load_model(None, tmp_path / "m.pt"), load_model("teach", tmp_path / "m.pt", classes=8)):
        assert _same_outputs(model, src)


def test_mistakes_are_named(tmp_path):
    with pytest.raises(CfgError, match="'nope' is neither a file nor an architecture name"):
        load_model("nope")
    with pytest.raises(CfgError, match="classes=8 but 3 are expected"):
        load_model("teach", classes=8).num_classes and load_model(zoo.cfg_text("teach"), classes=3)
    with pytest.raises(CfgError, match="unless the weights are a yolocompress .pt"):
        load_model(None, tmp_path / "x.weights")
    with pytest.raises(WeightsError, match="missing.weights not found"):
        load_model("teach", tmp_path / "missing.weights")
