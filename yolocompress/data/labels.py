"""YOLO label files, image headers and letterboxing: the small, strict readers behind `data.py`.

They raise plain ValueError with a `file:line: expected ..., found ...` message; `data.py` turns it
into DataError (or a skip). No torch here.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from PIL import Image

IMG_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
PAD_VALUE = 114  # 0..255, grey of the letterbox border (as in darknet/ultralytics)
TOL = 1e-6  # tolerance on normalised coordinates


def label_path(img_path: str | Path) -> Path:
    """.../images/.../x.jpg -> .../labels/.../x.txt (last `images` component); no `images`
    component -> the .txt beside the image (darknet's convention)."""
    parts = list(Path(img_path).with_suffix(".txt").parts)
    for i in range(len(parts) - 2, -1, -1):
        if parts[i] == "images":
            parts[i] = "labels"
            break
    return Path(*parts)


def read_labels(path: Path, nc: int | None = None) -> np.ndarray:
    """Rows `class cx cy w h` of a label file as float32 (n, 5); a missing file is an empty image."""
    if not path.exists():
        return np.zeros((0, 5), np.float32)
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: cannot read label file as text ({e})") from None
    rows = []
    for i, line in enumerate(text.splitlines(), 1):
        parts = line.split()
        if parts:
            rows.append(_parse_row(parts, f"{path}:{i}", nc))
    return np.array(rows, np.float32).reshape(-1, 5)


def _parse_row(parts: list[str], where: str, nc: int | None) -> list[float]:
    if len(parts) != 5:
        raise ValueError(f'{where}: expected 5 columns "class cx cy w h", found {len(parts)}')
    try:
        v = [float(p) for p in parts]
    except ValueError:
        raise ValueError(f"{where}: expected 5 numbers, found {' '.join(parts)!r}") from None
    if not all(math.isfinite(x) for x in v):
        raise ValueError(f"{where}: expected finite numbers, found {' '.join(parts)!r}")
    c, cx, cy, w, h = v
    top = f"0..{nc - 1}" if nc is not None else ">= 0"
    if not c.is_integer() or c < 0 or (nc is not None and c >= nc):
        raise ValueError(f"{where}: expected an integer class id in {top}, found {parts[0]}")
    bad = [f"{k}={x:g}" for k, x in zip(("cx", "cy", "w", "h"), v[1:]) if not -TOL <= x <= 1 + TOL]
    if bad:
        raise ValueError(f"{where}: expected coordinates normalised to [0, 1], found {', '.join(bad)}")
    if w <= 0 or h <= 0:
        raise ValueError(f"{where}: expected box width and height > 0, found w={w:g}, h={h:g}")
    return [c, min(max(cx, 0.0), 1.0), min(max(cy, 0.0), 1.0), min(w, 1.0), min(h, 1.0)]


def image_hw(path: Path) -> tuple[int, int]:
    """(height, width) from the image header only (fast; the pixels are not decoded)."""
    if not path.is_file():
        raise ValueError(f"{path}: image file not found")
    try:
        with Image.open(path) as im:
            w, h = im.size
    except (OSError, Image.DecompressionBombError) as e:
        raise ValueError(f"{path}: cannot read image header ({type(e).__name__}: {e})") from None
    if w < 1 or h < 1:
        raise ValueError(f"{path}: expected a non-empty image, found size {w}x{h}")
    return h, w


# PIL modes whose pixels are wider than 8 bits: 16-bit and 32-bit integers, 32-bit floats
_WIDE_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I", "F")


def load_rgb(path: Path) -> np.ndarray:
    """Decode to uint8 (H, W, 3) RGB (EXIF orientation is ignored, as in the header size). An
    image with more than 8 bits per pixel (16-bit or 32-bit integer, float) is scaled by its
    type's real range (``_to_uint8``) - PIL's own conversion clips it, so it would read as white."""
    try:
        with Image.open(path) as im:
            if im.mode in _WIDE_MODES:
                gray = _to_uint8(np.asarray(im), im.mode, path)
                return np.repeat(gray[..., None], 3, axis=2)
            return np.asarray(im.convert("RGB"))
    except (OSError, Image.DecompressionBombError) as e:
        raise ValueError(f"{path}: cannot decode image ({type(e).__name__}: {e})") from None


def _to_uint8(a: np.ndarray, mode: str, path: Path) -> np.ndarray:
    """A wide single-channel image to uint8: integers by the 16-bit range 0..65535 (a 32-bit image
    whose values fit it is read as 16-bit, as many tools write them), floats as 0..1 when they lie
    in it; anything else (NaN, negative or larger values) is refused in one line rather than guessed."""
    if mode == "F":
        if not np.isfinite(a).all() or a.min() < 0 or a.max() > 1:
            raise ValueError(f"{path}: a float image with values outside 0..1 (found {np.nanmin(a):g}..{np.nanmax(a):g}); "
                             "save it as an 8- or 16-bit image")
        return np.round(a * 255).astype(np.uint8)
    a = a.astype(np.int64)
    if a.min() < 0 or a.max() > 65535:
        raise ValueError(f"{path}: a 32-bit integer image with values {a.min()}..{a.max()}, outside 0..65535, "
                         "has no range to read it by; save it as an 8- or 16-bit image")
    return np.round(a * (255 / 65535)).astype(np.uint8)


def letterbox_geometry(hw: tuple[int, int], size: int):
    """Resized (h, w), per-axis ratio (rx, ry) = new/orig and pad (left, top) in px, for a longer
    side of `size`. Mapping: x_letterboxed = x_orig * rx + left (same for y)."""
    h0, w0 = hw
    r = size / max(h0, w0)
    nh, nw = max(1, round(h0 * r)), max(1, round(w0 * r))
    return (nh, nw), (nw / w0, nh / h0), ((size - nw) // 2, (size - nh) // 2)


def letterbox(img: np.ndarray, size: int) -> np.ndarray:
    """uint8 (H, W, 3) -> uint8 (3, size, size): aspect kept, centred, padded with PAD_VALUE."""
    (nh, nw), _, (left, top) = letterbox_geometry(img.shape[:2], size)
    if (nh, nw) != img.shape[:2]:
        img = np.asarray(Image.fromarray(img).resize((nw, nh), Image.Resampling.BILINEAR))
    out = np.full((3, size, size), PAD_VALUE, np.uint8)
    out[:, top:top + nh, left:left + nw] = img.transpose(2, 0, 1)
    return out


def letterbox_labels(labels: np.ndarray, hw: tuple[int, int], size: int) -> np.ndarray:
    """Normalised [cls, cx, cy, w, h] of the original image -> normalised to the letterboxed one."""
    (nh, nw), _, (left, top) = letterbox_geometry(hw, size)
    out = labels.copy()
    out[:, 1] = (labels[:, 1] * nw + left) / size
    out[:, 2] = (labels[:, 2] * nh + top) / size
    out[:, 3] = labels[:, 3] * nw / size
    out[:, 4] = labels[:, 4] * nh / size
    return out
