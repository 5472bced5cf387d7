"""Training augmentation for letterboxed images: scale/translate, flip, colour, optional mosaic.

Why not a `torchvision.transforms.v2.Compose`: at 128 px v2's ops cost ~3.4 ms (hue), ~1 ms
(affine), ~0.5 ms (SanitizeBoundingBoxes) per image on one core, over the 2 ms budget. So the same
operations are done directly: one resize + paste for the affine (scale about the centre, then shift),
one 3x3 matrix for brightness/contrast/saturation/hue, box maps and the sanitize rule in a few tensor
lines. tests/test_data.py checks the box maps against v2's `affine`/`horizontal_flip` on
`tv_tensors.BoundingBoxes` and the colour matrix against v2's `adjust_*` ops.
All randomness comes from the `torch.Generator` passed in, never from global RNG state.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torchvision.transforms.v2 import functional as F

from .labels import PAD_VALUE


@dataclass(frozen=True)
class AugmentConfig:
    hflip: float = 0.5                 # probability, mirror left-right
    brightness: float = 0.3            # fraction, brightness gain drawn from 1 +- this
    contrast: float = 0.3              # fraction, contrast gain drawn from 1 +- this
    saturation: float = 0.5            # fraction, saturation gain drawn from 1 +- this
    hue: float = 0.02                  # turns, hue rotation drawn from +- this (0.5 = opposite colour)
    scale: tuple[float, float] = (0.75, 1.25)  # -, zoom factor range about the image centre
    translate: float = 0.1             # fraction of the side, largest shift per axis
    mosaic: float = 0.0                # probability, tile 4 images and crop one window
    min_box: float = 2.0               # px, boxes thinner than this after augmenting are dropped
    min_kept: float = 0.25             # fraction, boxes with less of their area left in view are dropped

    def __post_init__(self):  # JSON gives lists back: keep the value (and equality) a tuple
        object.__setattr__(self, "scale", tuple(float(v) for v in self.scale))


GREY_W = torch.tensor([0.2989, 0.587, 0.114])  # torchvision's rgb_to_grayscale weights
_YIQ = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]], dtype=torch.float64)


def colour_matrix(saturation: float, hue: float) -> torch.Tensor:
    """3x3 matrix: saturation blend with grey, then a hue rotation of `hue` turns in YIQ space
    (keeps grey grey; a linear stand-in for HSV hue shift, ~100x cheaper)."""
    sat = saturation * torch.eye(3) + (1 - saturation) * GREY_W.expand(3, 3)
    a = -2 * math.pi * hue  # sign: positive hue turns red towards yellow and green, as in HSV
    rot = torch.tensor([[1, 0, 0], [0, math.cos(a), -math.sin(a)], [0, math.sin(a), math.cos(a)]], dtype=torch.float64)
    return (torch.linalg.inv(_YIQ) @ rot @ _YIQ).float() @ sat


def jitter_colour(x: torch.Tensor, brightness: float, contrast: float, saturation: float, hue: float) -> torch.Tensor:
    """float (3, H, W) in [0,1]: brightness gain, contrast blend with mean grey, saturation, hue (in
    that order, as one affine map of RGB; clamped once at the end). Returns a new tensor."""
    mean = float((GREY_W @ x.reshape(3, -1)).mean()) * brightness
    m = colour_matrix(saturation, hue) * (contrast * brightness)
    out = (m @ x.reshape(3, -1)).add_((1 - contrast) * mean).clamp_(0, 1)
    return out.reshape(x.shape)


def affine_boxes(boxes: torch.Tensor, gain: float, offset: tuple[float, float], flip: bool, size: int) -> torch.Tensor:
    """xyxy px boxes under x' = x * gain + offset, then an optional left-right flip of a size-wide image."""
    out = boxes * gain + torch.tensor([offset[0], offset[1], offset[0], offset[1]])
    if flip:
        out = torch.stack([size - out[:, 2], out[:, 1], size - out[:, 0], out[:, 3]], 1)
    return out


def sanitize(boxes: torch.Tensor, cls: torch.Tensor, size: int, min_box: float, min_kept: float):
    """Clip xyxy boxes to the image; drop those thinner than `min_box` px or with less than `min_kept`
    of their area left inside (the rule of v2.SanitizeBoundingBoxes plus an area floor)."""
    area0 = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    boxes = boxes.clamp(0, size)
    w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    keep = (w >= min_box) & (h >= min_box) & (w * h >= min_kept * area0)
    return boxes[keep], cls[keep]


def mosaic(imgs: list[torch.Tensor], boxes: list[torch.Tensor], cls: list[torch.Tensor], corner: tuple[int, int]):
    """Tile four uint8 (3, S, S) images 2x2 and cut the S x S window whose top-left is `corner`."""
    s = imgs[0].shape[-1]
    big = torch.cat([torch.cat(imgs[:2], 2), torch.cat(imgs[2:], 2)], 1)
    x0, y0 = corner
    shifted = [b + torch.tensor([dx - x0, dy - y0, dx - x0, dy - y0], dtype=b.dtype)
               for b, (dx, dy) in zip(boxes, [(0, 0), (s, 0), (0, s), (s, s)])]
    return big[:, y0:y0 + s, x0:x0 + s].contiguous(), torch.cat(shifted), torch.cat(cls)


def augment(img: torch.Tensor, boxes: torch.Tensor, cls: torch.Tensor, config: AugmentConfig, gen: torch.Generator):
    """uint8 (3, S, S) image and xyxy px boxes -> float (3, S, S) in [0,1], kept boxes, their classes."""
    s = img.shape[-1]
    u = torch.rand(8, generator=gen, dtype=torch.float64).tolist()
    zoom = config.scale[0] + (config.scale[1] - config.scale[0]) * u[0]
    n = max(1, round(s * zoom))
    gain = n / s
    ox = round(s / 2 * (1 - gain) + (2 * u[1] - 1) * config.translate * s)
    oy = round(s / 2 * (1 - gain) + (2 * u[2] - 1) * config.translate * s)
    if n != s or ox or oy:
        src = F.resize(img, [n, n], antialias=True) if n != s else img
        out = torch.full_like(img, PAD_VALUE)
        x0, y0, x1, y1 = max(ox, 0), max(oy, 0), min(ox + n, s), min(oy + n, s)
        if x1 > x0 and y1 > y0:
            out[:, y0:y1, x0:x1] = src[:, y0 - oy:y1 - oy, x0 - ox:x1 - ox]
        img = out
    flip = u[3] < config.hflip
    if flip:
        img = img.flip(-1)
    boxes, cls = sanitize(affine_boxes(boxes, gain, (ox, oy), flip, s), cls, s, config.min_box, config.min_kept)
    x = img.float().div_(255)
    b, c, sa, h = ((2 * v - 1) * r for v, r in zip(u[4:], (config.brightness, config.contrast, config.saturation, config.hue)))
    b, c, sa = 1 + b, 1 + c, 1 + sa
    if (b, c, sa, h) != (1, 1, 1, 0):
        x = jitter_colour(x, b, c, sa, h)
    return x, boxes, cls
