"""Drawing for the synthetic "shapes" dataset: one image and its labels from one seeded RNG.

Private helper of `synth.py`. Everything here is a pure function of (rng, cfg), so an image depends
only on the seed it is given. Geometry works in pixels; a shape's *size* is the diameter of its
circumscribed circle, so its axis-aligned box side is between 0.71x and 1x the size at any rotation.
Objects are drawn as anti-aliased alpha masks (SS x supersampled); an owner map (which object shows
at each pixel) lets a new object in only where every labelled object keeps `min_visible` of its area.
"""
from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

CLASS_NAMES = ("circle", "hexagon", "square", "rhombus", "triangle", "star", "cross", "ring")
SS = 4  # supersampling factor for object masks: anti-aliased edges keep small shapes recognisable


def _regular(n: int, r: float = 0.5, phase: float = 0.0) -> np.ndarray:
    a = phase + 2 * math.pi * np.arange(n) / n
    return np.stack([r * np.cos(a), r * np.sin(a)], 1)


def unit_polygon(name: str, rhombus_aspect: float = 0.65) -> np.ndarray:
    """Outline of a class as (k, 2) points inside a circle of diameter 1 centred at 0."""
    if name in ("circle", "ring"):
        return _regular(48)
    if name == "hexagon":
        return _regular(6)
    if name == "square":
        return _regular(4, phase=math.pi / 4)
    if name == "triangle":
        return _regular(3, phase=-math.pi / 2)
    if name == "rhombus":
        return np.array([[0.5, 0], [0, 0.5 * rhombus_aspect], [-0.5, 0], [0, -0.5 * rhombus_aspect]])
    if name == "star":
        pts = _regular(10, phase=-math.pi / 2)
        pts[1::2] *= 0.45
        return pts
    if name == "cross":
        w = 0.18
        ln = math.sqrt(0.25 - w * w)
        q = [(ln, -w), (ln, w), (w, w)]  # one arm tip plus the inner corner, rotated 4 times
        pts = []
        for k in range(4):
            c, s = math.cos(k * math.pi / 2), math.sin(k * math.pi / 2)
            pts += [(x * c - y * s, x * s + y * c) for x, y in q]
        return np.array(pts)
    raise KeyError(name)


def _background(rng: np.random.Generator, cfg, S: int) -> np.ndarray:
    """Gradient + low-frequency blotches + optional stripes + pixel noise, float32 (S, S, 3) in 0..255."""
    yy, xx = np.mgrid[0:S, 0:S].astype(np.float32) / S
    th = rng.uniform(0, 2 * math.pi)
    t = (xx * math.cos(th) + yy * math.sin(th))
    t = (t - t.min()) / max(float(t.max() - t.min()), 1e-6)
    c0, c1 = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
    bg = c0 + (c1 - c0) * t[..., None]
    g = int(rng.integers(3, 9))
    low = rng.normal(0, 1, (g, g, 3)).astype(np.float32)
    blot = np.stack([np.asarray(Image.fromarray(low[..., i]).resize((S, S), Image.Resampling.BICUBIC))
                     for i in range(3)], -1)
    bg += cfg.blotch_strength * rng.uniform(0.3, 1) * blot
    if rng.random() < cfg.stripes_prob:
        ph = rng.uniform(0, 2 * math.pi)
        period = rng.uniform(4, 30) / S
        wave = np.sin(2 * math.pi * (xx * math.cos(ph) + yy * math.sin(ph)) / period)
        bg += rng.uniform(10, 45) * wave[..., None] * rng.uniform(0.3, 1, 3)
    bg += rng.normal(0, cfg.bg_noise * rng.uniform(0.3, 1), (S, S, 3))
    return np.clip(bg, 0, 255).astype(np.float32)


def _distractors(rng, cfg, draw: ImageDraw.ImageDraw, S: int, n: int, thin_only: bool = False) -> None:
    """Unlabelled clutter: lines, arcs, irregular polygons and small blobs (none is a class shape)."""
    for _ in range(n):
        colour = tuple(int(v) for v in rng.integers(0, 256, 3))
        kind = 0 if thin_only else int(rng.integers(0, 4))
        if kind == 0:
            p = rng.uniform(-0.1 * S, 1.1 * S, 4)
            draw.line([(p[0], p[1]), (p[2], p[3])], fill=colour, width=1 if thin_only else int(rng.integers(1, 4)))
        elif kind == 1:
            cx, cy, r = rng.uniform(0, S), rng.uniform(0, S), rng.uniform(5, 0.5 * S)
            a0 = rng.uniform(0, 360)
            draw.arc([cx - r, cy - r, cx + r, cy + r], a0, a0 + rng.uniform(30, 200), fill=colour,
                     width=int(rng.integers(1, 3)))
        elif kind == 2:  # irregular (jittered radii and angles) polygon
            k = int(rng.integers(5, 10))
            r = 0.5 * math.exp(rng.uniform(math.log(cfg.min_size), math.log(0.6 * cfg.max_size)))
            ang = np.sort(rng.uniform(0, 2 * math.pi, k))
            rad = r * rng.uniform(0.35, 1.0, k)
            cx, cy = rng.uniform(0, S, 2)
            draw.polygon(list(zip(cx + rad * np.cos(ang), cy + rad * np.sin(ang))), fill=colour)
        else:  # elongated blob, smaller than the smallest object
            cx, cy = rng.uniform(0, S, 2)
            rx, ry = rng.uniform(1, 0.25 * cfg.min_size, 2)   # diameter < the smallest box
            draw.ellipse([cx - rx, cy - ry, cx + rx, cy + ry], fill=colour)


def _object_alpha(name: str, pts: np.ndarray, size: float, x0: int, y0: int, w: int, h: int) -> np.ndarray:
    """Anti-aliased coverage (h, w) in 0..1 of the shape whose outline is `pts` (image px)."""
    m = Image.new("L", (w * SS, h * SS), 0)
    d = ImageDraw.Draw(m)
    local = (pts - (x0, y0)) * SS
    d.polygon([tuple(p) for p in local], fill=255)
    if name == "ring":
        c = local.mean(0)
        r = 0.5 * 0.55 * size * SS
        d.ellipse([c[0] - r, c[1] - r, c[0] + r, c[1] + r], fill=0)
    return np.asarray(m.resize((w, h), Image.Resampling.BOX), dtype=np.float32) / 255.0


def _colour(rng, bg_mean: np.ndarray, min_contrast: float) -> np.ndarray:
    """A random RGB colour at least `min_contrast` from `bg_mean` (8 tries, then pushed away)."""
    best, best_d = None, -1.0
    for _ in range(8):
        c = rng.uniform(0, 255, 3)
        dist = float(np.linalg.norm(c - bg_mean))
        if dist >= min_contrast:
            return c
        if dist > best_d:
            best, best_d = c, dist
    return np.where(bg_mean > 127, best * 0.3, 255 - (255 - best) * 0.3)


def _place(rng, cfg, owner, visible, full, S, name, size, pts0):
    """Try positions until the new object keeps >= min_visible of itself in the image and leaves every
    earlier object >= min_visible visible. Returns (alpha, x0, y0, pts, area, area_inside) or None."""
    for _ in range(cfg.place_tries):
        pts = pts0 + rng.uniform(0, S, 2)
        x0, y0 = (math.floor(v) for v in pts.min(0))
        x1, y1 = (math.ceil(v) for v in pts.max(0))
        a = _object_alpha(name, pts, size, x0, y0, x1 - x0, y1 - y0)
        cov = a > 0.5
        total = int(cov.sum())
        if total < 4:
            return None
        cx0, cy0, cx1, cy1 = max(x0, 0), max(y0, 0), min(x1, S), min(y1, S)
        if cx1 <= cx0 or cy1 <= cy0:
            continue
        sub = cov[cy0 - y0:cy1 - y0, cx0 - x0:cx1 - x0]
        if sub.sum() < cfg.min_visible * total:
            continue
        covered = owner[cy0:cy1, cx0:cx1][sub]
        lost = np.bincount(covered[covered >= 0], minlength=len(visible))
        if any(visible[i] - lost[i] < cfg.min_visible * full[i] for i in range(len(visible))):
            continue
        return a, x0, y0, pts, total, int(sub.sum())
    return None


def _paint(rng, cfg, arr, a, x0, y0, size) -> tuple[slice, slice, np.ndarray]:
    """Composite one object (alpha `a` at x0, y0) in a contrasting, shaded colour; returns its
    clipped region and the boolean coverage inside it."""
    S = arr.shape[0]
    h, w = a.shape
    cx0, cy0, cx1, cy1 = max(x0, 0), max(y0, 0), min(x0 + w, S), min(y0 + h, S)
    a = a[cy0 - y0:cy1 - y0, cx0 - x0:cx1 - x0, None]
    region = arr[cy0:cy1, cx0:cx1]
    col = _colour(rng, region.reshape(-1, 3).mean(0), cfg.min_contrast)
    gy, gx = np.mgrid[0:cy1 - cy0, 0:cx1 - cx0].astype(np.float32)
    ang = rng.uniform(0, 2 * math.pi)
    ramp = (gx * math.cos(ang) + gy * math.sin(ang)) / max(size, 1.0)
    fill = np.clip(col + cfg.object_shade * rng.uniform(-1, 1) * ramp[..., None], 0, 255)
    arr[cy0:cy1, cx0:cx1] = region * (1 - a) + fill * a
    return (slice(cy0, cy1), slice(cx0, cx1)), a[..., 0] > 0.5


def render(rng: np.random.Generator, cfg) -> tuple[Image.Image, np.ndarray]:
    """One image and its labels (n, 5) [class, cx, cy, w, h] normalised; boxes are the full shape's
    tight box (even where occluded), clipped to the image."""
    S = cfg.img_size
    img = Image.fromarray(_background(rng, cfg, S).astype(np.uint8))
    _distractors(rng, cfg, ImageDraw.Draw(img), S, int(rng.integers(0, cfg.n_distractors + 1)))
    arr = np.asarray(img, dtype=np.float32).copy()
    n = 0 if rng.random() < cfg.empty_prob else int(rng.integers(1, cfg.max_objects + 1))
    owner = np.full((S, S), -1, np.int32)
    visible, full, labels = [], [], []
    lo, hi = math.log(cfg.min_size), math.log(cfg.max_size)
    for _ in range(n):
        cls = int(rng.integers(0, cfg.n_classes))
        size = math.exp(rng.uniform(lo, hi))
        th = rng.uniform(0, 2 * math.pi)
        rot = np.array([[math.cos(th), math.sin(th)], [-math.sin(th), math.cos(th)]])
        pts0 = unit_polygon(CLASS_NAMES[cls], cfg.rhombus_aspect * rng.uniform(0.9, 1.1)) @ rot * size
        placed = _place(rng, cfg, owner, visible, full, S, CLASS_NAMES[cls], size, pts0)
        if placed is None:
            continue
        a, x0, y0, pts, total, inside = placed
        region, sub = _paint(rng, cfg, arr, a, x0, y0, size)
        covered = owner[region][sub]
        for i, c in zip(*np.unique(covered[covered >= 0], return_counts=True)):
            visible[i] -= int(c)
        owner[region][sub] = len(visible)
        visible.append(inside)
        full.append(total)
        (bx0, by0), (bx1, by1) = np.clip(pts.min(0), 0, S), np.clip(pts.max(0), 0, S)
        if cls >= len(cfg.names):      # a look-alike: drawn, occludes, never labelled
            continue
        labels.append([cls, (bx0 + bx1) / 2 / S, (by0 + by1) / 2 / S, (bx1 - bx0) / S, (by1 - by0) / S])
    return _finish(rng, cfg, arr), np.array(labels, np.float64).reshape(-1, 5)


def _finish(rng: np.random.Generator, cfg, arr: np.ndarray) -> Image.Image:
    """The painted float (S, S, 3) image as uint8, then what lies over everything: thin front
    lines, blur and sensor noise."""
    S = arr.shape[0]
    img = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))
    if rng.random() < cfg.front_lines_prob:
        _distractors(rng, cfg, ImageDraw.Draw(img), S, int(rng.integers(1, 3)), thin_only=True)
    if rng.random() < cfg.blur_prob:
        img = img.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, cfg.blur_max)))
    sigma = rng.uniform(0, cfg.noise_max)
    if sigma > 0:
        noisy = np.asarray(img, np.float32) + rng.normal(0, sigma, (S, S, 3))
        img = Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8))
    return img
