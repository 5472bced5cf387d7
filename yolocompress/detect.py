"""Run a detector on images: letterbox, forward, NMS, boxes mapped back to the original pixels."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from PIL import Image

from ._labels import letterbox, letterbox_geometry, load_rgb
from .data import draw_boxes
from .metrics import postprocess
from .model import Darknet

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"}


@torch.no_grad()
def predict(model: Darknet, rgb: np.ndarray, img_size: int = 128, conf: float = 0.25,
            iou: float = 0.45) -> np.ndarray:
    """One RGB uint8 image (H, W, 3) -> (k, 6) [x1, y1, x2, y2, score, cls] in its own pixels."""
    x = torch.from_numpy(letterbox(rgb, img_size)).float().div(255)[None]      # (1, 3, S, S)
    model.eval()
    det = postprocess(model(x.to(next(model.parameters()).device)), conf, iou)[0].cpu().numpy()
    _, (rx, ry), (left, top) = letterbox_geometry(rgb.shape[:2], img_size)
    det[:, [0, 2]] = ((det[:, [0, 2]] - left) / rx).clip(0, rgb.shape[1])
    det[:, [1, 3]] = ((det[:, [1, 3]] - top) / ry).clip(0, rgb.shape[0])
    return det


def to_yolo_rows(det: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """(k, 6) pixel xyxy detections -> (k, 5) [cls, cx, cy, w, h] normalised."""
    h, w = hw
    cx, cy = (det[:, 0] + det[:, 2]) / 2 / w, (det[:, 1] + det[:, 3]) / 2 / h
    bw, bh = (det[:, 2] - det[:, 0]) / w, (det[:, 3] - det[:, 1]) / h
    return np.stack([det[:, 5], cx, cy, bw, bh], 1)


def image_files(source: str | Path) -> list[Path]:
    source = Path(source)
    if source.is_file():
        return [source]
    if source.is_dir():
        files = sorted(p for p in source.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if files:
            return files
        raise FileNotFoundError(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in {source}")
    raise FileNotFoundError(f"--source {source} does not exist")


def detect_folder(cfg, weights, source, out, img_size: int = 128, conf: float = 0.25, iou: float = 0.45,
                  names_from: str | None = None, classes: int | None = None) -> int:
    """Annotated PNGs and YOLO-format prediction .txt files (class cx cy w h score) into ``out``."""
    from .loader import load_model
    model = load_model(cfg, weights, classes=classes)
    names: Sequence[str] = ()
    if names_from:
        from .data import load_data_config
        names = load_data_config(names_from).names
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    files = image_files(source)
    for path in files:
        try:
            rgb = load_rgb(path)
        except ValueError as e:               # unreadable image: name it, as a DataError
            from .data import DataError
            raise DataError(str(e)) from None
        det = predict(model, rgb, img_size, conf, iou)
        rows = to_yolo_rows(det, rgb.shape[:2])
        draw_boxes(Image.fromarray(rgb), rows, names, det[:, 4]).save(out / f"{path.stem}.png")
        lines = [f"{int(r[0])} {r[1]:.6f} {r[2]:.6f} {r[3]:.6f} {r[4]:.6f} {s:.4f}" for r, s in zip(rows, det[:, 4])]
        (out / f"{path.stem}.txt").write_text("\n".join(lines) + ("\n" if lines else ""))
    return len(files)
