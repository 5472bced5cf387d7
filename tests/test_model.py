"""Darknet module: head shapes, output layout, and agreement with darknet's own arithmetic."""
import numpy as np
import pytest
import torch

from yolocompress.darknet import zoo
from yolocompress.darknet.cfg import BLOCK_TYPES, Block, Net, parse_cfg
from yolocompress.darknet.model import BUILDERS, Darknet, _build
from yolocompress.darknet.weights import darknet_weights_bytes, randomize

from conftest import ARCHS
from darknet_ref import darknet_forward
from yolocompress.darknet.loader import load_model

HEADS_416 = {"yolov3": [13, 26, 52], "yolov3-spp": [13, 26, 52], "yolov3-tiny": [13, 26],
             "yolov4": [52, 26, 13], "yolov4-tiny": [13, 26]}


@pytest.mark.parametrize("name", ARCHS)
@pytest.mark.parametrize("size", [320, 416, 608])
def test_head_shapes(name, size):
    with torch.device("meta"):
        model = Darknet(zoo.blocks(name, 80))
        heads = model.heads(torch.zeros(2, 3, size, size))
        boxes = model.eval()(torch.zeros(2, 3, size, size))
    grids = [g * size // 416 for g in HEADS_416[name]]
    assert [tuple(h.shape) for h in heads] == [(2, 3, g, g, 85) for g in grids]
    assert tuple(boxes.shape) == (2, sum(3 * g * g for g in grids), 85)


def test_teaching_model_heads():
    model = load_model("teach").train()
    heads = model(torch.zeros(2, 3, 128, 128))
    assert [tuple(h.shape) for h in heads] == [(2, 3, 4, 4, 13), (2, 3, 8, 8, 13), (2, 3, 16, 16, 13)]


def _compare_with_darknet(blocks, h, w, seed=0):
    model = randomize(Darknet(blocks), seed=seed).eval()
    x = torch.rand(1, blocks[0].channels, h, w, generator=torch.Generator().manual_seed(seed))
    ref = darknet_forward(blocks, darknet_weights_bytes(model), x[0].numpy())
    with torch.no_grad():
        out = model(x)[0].double().numpy()
    assert out.shape == ref.shape
    # The reference runs in float64, the model in float32: each conv sums up to K = 9 x 1024 products,
    # a relative error of about u * sqrt(K) ~ 6e-8 * 96 ~ 6e-6 per layer (random rounding), which BN
    # and leaky ReLU pass on without growth; measured <= 1.3e-5 over yolov4's 162 layers. rtol 1e-4 is
    # ~8x that on any summation order; atol 1e-5 covers values that cancel to ~0.
    np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", ARCHS)
def test_architecture_matches_darknet_arithmetic(name):
    """Random weights, non-square input: every value equals the NumPy port of darknet's loops."""
    _compare_with_darknet(zoo.blocks(name, 80), 64, 96)


def test_every_layer_type_matches_darknet_arithmetic(tiny_cfg_text):
    blocks = parse_cfg(tiny_cfg_text)
    _compare_with_darknet(blocks, 64, 64, seed=3)
    _compare_with_darknet(blocks, 96, 64, seed=4)


def test_teaching_model_matches_darknet_arithmetic():
    _compare_with_darknet(zoo.blocks("teach"), 128, 128)


def test_eval_output_layout():
    """Rows ordered (anchor, y, x) per head; cx, cy in pixels from grid + sigmoid * scale_x_y."""
    blocks = parse_cfg("[net]\nwidth=64\nheight=64\n[convolutional]\nfilters=14\nsize=1\nstride=32\n"
                       "activation=linear\n[yolo]\nclasses=2\nanchors=8,16, 4,4\nmask=0,1\nnum=2\nscale_x_y=1.2\n")
    model = Darknet(blocks).eval()
    with torch.no_grad():
        model.module_list[0].conv.weight.zero_()
        model.module_list[0].conv.bias.zero_()
        out = model(torch.zeros(1, 3, 64, 64))[0]
    assert out.shape == (2 * 2 * 2, 7)
    # raw zeros: sigmoid = 0.5 -> 0.5 * 1.2 - 0.1 = 0.5; cell (y=1, x=0) of anchor 1 is row 4 + 2
    assert out[6, :4].tolist() == pytest.approx([16.0, 48.0, 4.0, 4.0])
    assert out[1, :4].tolist() == pytest.approx([48.0, 16.0, 8.0, 16.0])
    assert out[:, 4:].eq(0.5).all()


def test_every_layer_kind_has_a_module_builder():
    assert set(BUILDERS) == set(BLOCK_TYPES.values()) - {Net}
    with pytest.raises(TypeError, match="no builder for"):
        _build(Block(), 0, 3)
