"""Toy models for pictures and tests: small enough to draw every channel, with weights set by hand
so the picture shows one effect (e.g. how each channel strategy treats a residual group)."""
from __future__ import annotations

TOY_RESIDUAL_CFG = """[net]
width=64
height=64
channels=3
[convolutional]
batch_normalize=1
filters=8
size=3
stride=2
pad=1
activation=leaky
[convolutional]
batch_normalize=1
filters=4
size=1
stride=1
pad=1
activation=leaky
[convolutional]
batch_normalize=1
filters=8
size=3
stride=1
pad=1
activation=leaky
[shortcut]
from=-3
activation=linear
[convolutional]
batch_normalize=1
filters=4
size=1
stride=1
pad=1
activation=leaky
[convolutional]
batch_normalize=1
filters=8
size=3
stride=1
pad=1
activation=leaky
[shortcut]
from=-3
activation=linear
[convolutional]
batch_normalize=1
filters=8
size=1
stride=1
pad=1
activation=leaky
[convolutional]
filters=21
size=1
stride=1
pad=1
activation=linear
[yolo]
mask=0,1,2
anchors=8,8, 16,16, 32,32
classes=2
num=3
"""


_TOY_BIG = {0: [0, 1, 2, 4, 5], 1: [0, 2], 2: [0, 1, 3, 5], 4: [1, 2, 3], 5: [0, 2, 5], 7: [0, 3, 5, 6]}


def toy_residual_model():
    """A tiny model with one residual group (layers 0, 2, 5: a stride-2 conv and two blocks) whose
    gammas are set by hand - large (0.5..1) on the channels in ``_TOY_BIG``, tiny elsewhere - for
    drawing how each strategy treats the group."""
    import torch
    from yolocompress.darknet.cfg import parse_cfg
    from yolocompress.darknet.model import Darknet
    model = Darknet(parse_cfg(TOY_RESIDUAL_CFG))
    with torch.no_grad():
        for i, m in model.conv_layers().items():
            if m.bn is not None:
                n = m.bn.weight.numel()
                g = torch.linspace(0.001, 0.009, n)
                big = _TOY_BIG[i]
                g[big] = torch.linspace(0.5, 1.0, len(big))
                m.bn.weight.copy_(g)
    return model
