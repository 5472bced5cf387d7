"""The project's own architecture definitions equal the upstream Darknet files, block for block."""
import pytest
import torch

from yolocompress.darknet import zoo
from yolocompress.darknet.cfg import Conv, Shortcut, Upsample, Yolo, read_cfg
from yolocompress.deploy.footprint import count_params, gflops

from conftest import ARCHS, upstream_cfg
from yolocompress.darknet.loader import load_model


@pytest.mark.parametrize("name", ARCHS)
def test_generated_equals_upstream(name):
    assert zoo.blocks(name, 80) == read_cfg(upstream_cfg(name))


@pytest.mark.parametrize("name", ARCHS)
def test_any_class_count(name):
    blocks = zoo.blocks(name, 3)
    heads = [b for b in blocks if isinstance(b, Yolo)]
    assert all(h.classes == 3 for h in heads)
    before = [blocks[i] for i, b in enumerate(blocks) if isinstance(b, Yolo)]
    assert all(isinstance(b, Conv) and b.filters == 24 for b in (blocks[blocks.index(h) - 1] for h in heads))
    assert len(before) in (2, 3)


def test_teaching_model_budget():
    blocks = zoo.blocks("teach")
    with torch.device("meta"):
        model = load_model("teach")
    n_shortcuts = sum(isinstance(b, Shortcut) for b in blocks)
    assert n_shortcuts >= 8
    assert sum(isinstance(b, Yolo) for b in blocks) >= 2 and any(isinstance(b, Upsample) for b in blocks)
    assert any(isinstance(b, Conv) and b.stride == 2 for b in blocks)
    # CPU-sized (width 8: 3.87 M parameters, 0.394 GFLOPs at 128 px, zoo.teach's docstring), yet
    # YOLOv3's 23 blocks: a laptop trains it at ~40 img/s (benchmarks/train_speed.py)
    assert 3.5e6 < count_params(model) < 4.5e6
    assert gflops(model, 128) <= 0.4


def test_unknown_architecture():
    with pytest.raises(KeyError, match="unknown architecture 'yolov9'"):
        zoo.blocks("yolov9")
