"""Darknet's way into the network: ``resize_image`` (stretch), and which resize a model expects.

``darknet detector test`` does not letterbox: it stretches the photo to the network's width x
height with its own bilinear ``resize_image`` (src/image.c) and maps the boxes back by scaling
(``correct_yolo_boxes`` with letter = 0). A model trained by darknet learnt on such stretched
images; one trained here learnt on letterboxed ones. Feeding each what it was trained on is
what makes a darknet model give darknet's own boxes and scores.

``darknet_resize`` is ``resize_image`` vectorised: the same float32 operations in the same order,
so it matches darknet's loop bit for bit (tests/test_detect.py checks it against a direct port
of the loop), including its quirks: the last output column copies the last input column, and
the last output row is only ``(1 - dy) * part[iy]`` (no second term).
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from .labels import label_path, load_rgb, read_labels, image_hw



def to_darknet_float(rgb: np.ndarray) -> np.ndarray:
    """uint8 (H, W, 3) RGB -> float32 (3, H, W) in [0, 1], as darknet's loaders: float(v / 255.)."""
    return (rgb.transpose(2, 0, 1).astype(np.float64) / 255.).astype(np.float32)


def darknet_resize(im: np.ndarray, w: int, h: int) -> np.ndarray:
    """float32 (C, H, W) -> float32 (C, h, w): darknet's ``resize_image(im, w, h)``.

    Separable bilinear: first along x into ``part`` (C, H, w), then along y. Sample positions
    are ``c * (W - 1) / (w - 1)`` (corners aligned); everything in float32 as darknet's C.
    """
    im = np.asarray(im, dtype=np.float32)
    _, H, W = im.shape
    if (H, W) == (h, w):
        return im.copy()
    if w < 2 or h < 2:
        raise ValueError(f"darknet_resize: target {w}x{h} must be at least 2x2")
    w_scale, h_scale = np.float32(W - 1) / np.float32(w - 1), np.float32(H - 1) / np.float32(h - 1)
    sx = np.arange(w, dtype=np.float32) * w_scale                  # (w,)
    ix = sx.astype(np.int64)                                       # C's (int) truncation
    dx = sx - ix.astype(np.float32)
    nxt = np.minimum(ix + 1, W - 1)
    part = (1 - dx) * im[:, :, ix] + dx * im[:, :, nxt]            # (C, H, w)
    part[:, :, w - 1] = im[:, :, W - 1]                            # c == w-1: the last column
    if W == 1:
        part[:] = im[:, :, :1]
    sy = np.arange(h, dtype=np.float32) * h_scale                  # (h,)
    iy = sy.astype(np.int64)
    dy = sy - iy.astype(np.float32)
    out = (1 - dy)[:, None] * part[:, iy, :]                       # (C, h, w)
    rows = np.arange(h - 1) if H > 1 else np.arange(0)             # r == h-1 gets no second term
    out[:, rows, :] += dy[rows, None] * part[:, iy[rows] + 1, :]
    return out


def stretch_geometry(hw: tuple[int, int], net_hw: tuple[int, int]) -> tuple[float, float]:
    """(rx, ry) = network px per original px along x and y: x_orig = x_net / rx."""
    return net_hw[1] / hw[1], net_hw[0] / hw[0]


class StretchDataset(Dataset):
    """Images stretched by ``darknet_resize`` to ``img_size`` x ``img_size``, with their labels.

    Item i: (float32 (3, S, S) in [0, 1], float32 (n, 5) [cls, cx, cy, w, h] normalised, meta).
    Stretching keeps normalised coordinates unchanged, so the labels are the files' own.
    Bad label files or image headers raise DataError naming the file, before any is loaded.
    """

    def __init__(self, images: Sequence[str | Path], img_size: int, nc: int | None = None):
        from .dataset import DataError
        self.images, self.img_size = [Path(p) for p in images], img_size
        try:
            self.hw = [image_hw(p) for p in self.images]
            self.labels = [read_labels(label_path(p), nc) for p in self.images]
        except ValueError as e:
            raise DataError(str(e)) from None

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        from .dataset import DataError
        try:
            rgb = load_rgb(self.images[i])
        except ValueError as e:
            raise DataError(str(e)) from None
        s = self.img_size
        x = torch.from_numpy(darknet_resize(to_darknet_float(rgb), s, s))
        meta = {"path": str(self.images[i]), "orig_hw": self.hw[i],
                "ratio": stretch_geometry(self.hw[i], (s, s)), "pad": (0, 0)}
        return x, torch.from_numpy(self.labels[i].copy()), meta

