"""Shared fixtures. Every test runs on architectures the zoo generates, so a clean clone runs the
whole suite; only tests/test_zoo.py's "generated == upstream file" reads the upstream Darknet cfgs
from ../shared/reference/darknet-cfg, and skips with a reason when that folder is absent."""
import os
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
UPSTREAM = ROOT.parent / "shared" / "reference" / "darknet-cfg"
ARCHS = ["yolov3", "yolov3-spp", "yolov3-tiny", "yolov4", "yolov4-tiny"]   # the five darknet YOLOs

# The suite must pass with 1 and with 2 threads (different reduction orders, same verdicts):
# OMP_NUM_THREADS=1 make unit runs it single-threaded; the default is the machine's 2 cores.
torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))


def upstream_cfg(name: str) -> Path:
    path = UPSTREAM / f"{name}.cfg"
    if not path.exists():
        pytest.skip(f"upstream fixture {path} not present (needs ../shared/reference/darknet-cfg)")
    return path


@pytest.fixture
def tiny_cfg_text() -> str:
    """A small cfg that uses every layer type, activation and odd case darknet allows."""
    return """[net]
width=64
height=64
channels=3

[convolutional]
batch_normalize=1
filters=8
size=3
stride=1
pad=1
activation=mish

[maxpool]
size=2
stride=2

[convolutional]
batch_normalize=1
filters=16
size=3
stride=2
pad=1
activation=leaky

[convolutional]
batch_normalize=1
filters=8
size=1
stride=1
pad=1
activation=swish

[convolutional]
batch_normalize=1
filters=16
size=3
stride=1
pad=1
groups=2
activation=relu

[shortcut]
from=-3
activation=leaky

[route]
layers=-1
groups=2
group_id=1

[convolutional]
batch_normalize=1
filters=16
size=3
stride=1
padding=0
activation=logistic

[maxpool]
size=2
stride=1

[maxpool]
size=5
stride=1

[route]
layers=-1,-2

[convolutional]
filters=21
size=1
stride=1
pad=1
activation=linear

[yolo]
mask=0,1,2
anchors=4.5,5, 9,10, 20,18.25, 30,30
classes=2
num=4
scale_x_y=1.1

[route]
layers=5

[upsample]
stride=2

[route]
layers=-1,1

[convolutional]
filters=14
size=1
stride=1
pad=1
activation=linear

[yolo]
mask=3,0
anchors=4.5,5, 9,10, 20,18.25, 30,30
classes=2
num=4
"""
