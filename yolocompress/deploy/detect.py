"""Run a detector on images: resize as the weights expect, forward, darknet's postprocessing, boxes
mapped back to the original pixels; annotated images, YOLO-format .txt and darknet's result.json.

Two ways into the network (``resize.py``): ``stretch`` is darknet's ``resize_image`` (what
``darknet detector test`` does, and what darknet-trained weights expect); ``letterbox`` keeps the
aspect ratio (what models trained here expect). Boxes come back by the inverse mapping: plain
scaling for stretch (darknet's ``correct_yolo_boxes`` with letter = 0), unpad-and-scale for
letterbox. Postprocessing is darknet's for every model (``metrics.darknet_postprocess``): every
class above ``conf`` per box, per-class NMS at ``iou`` of the kind the cfg's last [yolo] names.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont
from tqdm.auto import tqdm

from yolocompress.data.labels import letterbox, letterbox_geometry, load_rgb
from yolocompress.darknet.cfg import CfgError, Yolo
from yolocompress.engine.metrics import NMS_KINDS, darknet_postprocess
from yolocompress.darknet.model import Darknet
from yolocompress.data.names import label
from yolocompress.darknet.netinput import RESIZE_MODES
from yolocompress.data.resize import darknet_resize, stretch_geometry, to_darknet_float
from yolocompress.files import atomic_path, atomic_write_text


class DetectError(ValueError):
    """A detection setting that cannot work (resize mode, input size); one line for the user."""


IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"}
LETTERBOX_SIZE = 128  # default input side for letterbox (the size this project trains at)
PALETTE = [(255, 56, 56), (72, 249, 10), (0, 194, 255), (255, 178, 29), (207, 210, 49), (146, 204, 23),
           (255, 55, 199), (52, 69, 147), (255, 112, 31), (0, 24, 236), (132, 56, 255), (26, 147, 52)]


def nms_settings(model: Darknet) -> tuple[str, float]:
    """(nms_kind, beta_nms) of the model's last [yolo] layer, as darknet's ``detector test`` reads
    them (``net.layers[net.n - 1]``); darknet's defaults are ``default`` and 0.6."""
    block = model.layers[model.head_indices[-1]]
    assert isinstance(block, Yolo)
    kind = block.extra.get("nms_kind", "default")
    if kind not in NMS_KINDS:
        raise CfgError(f"cfg line {block.line}: [yolo] nms_kind={kind} is not supported; "
                       f"expected one of {', '.join(NMS_KINDS)}")
    try:
        return kind, float(block.extra.get("beta_nms", 0.6))
    except ValueError:
        raise CfgError(f"cfg line {block.line}: [yolo] beta_nms={block.extra['beta_nms']} is not a number") from None


def input_hw(model: Darknet, img_size: int | None, resize: str) -> tuple[int, int]:
    """Network input (h, w): ``img_size`` squared when given, otherwise the model's [net] height x
    width - the size it was trained at (``darknet/netinput.py``)."""
    if resize not in RESIZE_MODES:
        raise DetectError(f"resize must be one of {', '.join(RESIZE_MODES)}, got {resize!r}")
    if img_size is not None:
        hw = (img_size, img_size)
    else:
        hw = (model.net.height, model.net.width)
    if hw[0] % 32 or hw[1] % 32 or min(hw) <= 0:
        raise DetectError(f"input size {hw[1]}x{hw[0]} must be a positive multiple of 32 (the YOLO stride)")
    return hw


def network_input(rgb: np.ndarray, hw: tuple[int, int], resize: str) -> torch.Tensor:
    """uint8 (H, W, 3) -> float32 (1, 3, h, w) in [0, 1], stretched or letterboxed."""
    if resize == "stretch":
        return torch.from_numpy(darknet_resize(to_darknet_float(rgb), hw[1], hw[0]))[None]
    if hw[0] != hw[1]:
        raise DetectError(f"letterbox needs a square input, got {hw[1]}x{hw[0]}")
    return torch.from_numpy(letterbox(rgb, hw[0])).float().div(255)[None]


@torch.no_grad()
def predict(model: Darknet, rgb: np.ndarray, img_size: int | None = LETTERBOX_SIZE, conf: float = 0.25,
            iou: float = 0.45, resize: str = "letterbox") -> np.ndarray:
    """One RGB uint8 image (H, W, 3) -> (k, 6) [x1, y1, x2, y2, score, cls] in its own pixels.

    A box above ``conf`` for several classes gives one row per class (as darknet reports it).
    """
    hw = input_hw(model, img_size, resize)
    x = network_input(rgb, hw, resize).to(next(model.parameters()).device)
    model.eval()
    kind, beta = nms_settings(model)
    det = darknet_postprocess(model(x), hw, conf, iou, kind, beta)[0].cpu().numpy()
    h0, w0 = rgb.shape[:2]
    if resize == "stretch":
        (rx, ry), (left, top) = stretch_geometry((h0, w0), hw), (0, 0)
    else:
        _, (rx, ry), (left, top) = letterbox_geometry((h0, w0), hw[0])
    det[:, [0, 2]] = (det[:, [0, 2]] - left) / rx
    det[:, [1, 3]] = (det[:, [1, 3]] - top) / ry
    if resize == "letterbox":  # the letterbox border is not part of the image
        det[:, [0, 2]], det[:, [1, 3]] = det[:, [0, 2]].clip(0, w0), det[:, [1, 3]].clip(0, h0)
    return det


def to_yolo_rows(det: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """(k, 6) pixel xyxy detections -> (k, 5) [cls, cx, cy, w, h] normalised."""
    h, w = hw
    cx, cy = (det[:, 0] + det[:, 2]) / 2 / w, (det[:, 1] + det[:, 3]) / 2 / h
    bw, bh = (det[:, 2] - det[:, 0]) / w, (det[:, 3] - det[:, 1]) / h
    return np.stack([det[:, 5], cx, cy, bw, bh], 1)


def _boxes(det: np.ndarray) -> list[np.ndarray]:
    """Row indices grouped by identical box (one box reported for several classes), best first."""
    groups: dict[tuple, list[int]] = {}
    for i in np.argsort(-det[:, 4], kind="stable"):
        groups.setdefault(tuple(det[i, :4].tolist()), []).append(int(i))
    return [np.array(sorted(g, key=lambda i: det[i, 5])) for g in groups.values()]


def darknet_json_frame(frame_id: int, filename: str, det: np.ndarray, hw: tuple[int, int],
                       names: Sequence[str] = ()) -> dict:
    """One image in darknet's ``-out result.json`` layout (``detection_to_json``): per box, per
    class above the threshold, class_id, name, relative centre/size and confidence. Classes
    whose name starts with ``dont_show`` are left out, as darknet does."""
    rows = to_yolo_rows(det, hw)
    objects = []
    for group in _boxes(det):
        for i in group:
            name = label(names, int(det[i, 5]))
            if name.startswith("dont_show"):
                continue
            cx, cy, w, h = (float(v) for v in rows[i, 1:])
            objects.append({"class_id": int(det[i, 5]), "name": name,
                            "relative_coordinates": {"center_x": cx, "center_y": cy, "width": w, "height": h},
                            "confidence": float(det[i, 4])})
    return {"frame_id": frame_id, "filename": filename, "objects": objects}


def draw_detections(rgb: np.ndarray, det: np.ndarray, names: Sequence[str] = ()) -> Image.Image:
    """The image with each box outlined and labelled "name score" (several classes of one box in one
    label, as darknet), in a font scaled to the image (about 2.5 % of its larger side, >= 12 px)
    on a filled background, so the label stays readable on any photo."""
    img = Image.fromarray(rgb).convert("RGB")
    draw = ImageDraw.Draw(img)
    size = max(12, round(0.025 * max(img.size)))
    font = _font(size)
    width = max(1, size // 8)
    groups = [g[np.argsort(-det[g, 4], kind="stable")] for g in _boxes(det)]  # best box first
    for g in groups:
        draw.rectangle(det[g[0], :4].tolist(), outline=_color(det[g[0], 5]), width=width)
    for g in reversed(groups):  # labels after all boxes, the best label drawn last (on top)
        text = ", ".join(f"{label(names, int(det[i, 5]))} {det[i, 4]:.2f}" for i in g)
        _label(draw, (det[g[0], 0], det[g[0], 1]), text, font, _color(det[g[0], 5]), img.size)
    return img


def draw_boxes(image, labels, names: Sequence[str] = (), scores=None):
    """Copy of a PIL image with boxes (n, 5) [cls, cx, cy, w, h] normalised drawn and named
    (with their scores, when given): the plain 1 px previews of datasets and
    predictions in the notebooks."""
    img = image.convert("RGB").copy()
    draw = ImageDraw.Draw(img)
    w, h = img.size
    palette = PALETTE[:10]
    rows = np.asarray(labels, dtype=np.float64).reshape(-1, 5)
    scores = [None] * len(rows) if scores is None else list(np.asarray(scores, dtype=np.float64).reshape(-1))
    for (c, cx, cy, bw, bh), score in zip(rows, scores):
        col = palette[int(c) % len(palette)]
        box = [(cx - bw / 2) * w, (cy - bh / 2) * h, (cx + bw / 2) * w, (cy + bh / 2) * h]
        draw.rectangle(box, outline=col, width=1)
        text = names[int(c)] if int(c) < len(names) else str(int(c))
        draw.text((box[0] + 1, box[1] + 1), text if score is None else f"{text} {score:.2f}", fill=col)
    return img


def _color(cls: float) -> tuple[int, int, int]:
    return PALETTE[int(cls) % len(PALETTE)]


def _font(size: int):
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, ImportError, OSError):  # Pillow without FreeType: fixed bitmap font
        return ImageFont.load_default()


def _label(draw: ImageDraw.ImageDraw, xy: tuple[float, float], text: str, font, color, img_wh) -> None:
    """Text on a filled box of ``color`` just above (xy) or, with no room there, just inside."""
    l, t, r, b = draw.textbbox((0, 0), text, font=font)
    tw, th, pad = r - l, b - t, 2
    x = min(max(0.0, xy[0]), max(0.0, img_wh[0] - tw - 2 * pad))
    y = xy[1] - th - 2 * pad if xy[1] - th - 2 * pad >= 0 else max(0.0, xy[1])
    draw.rectangle([x, y, x + tw + 2 * pad, y + th + 2 * pad], fill=color)
    ink = (0, 0, 0) if 0.299 * color[0] + 0.587 * color[1] + 0.114 * color[2] > 150 else (255, 255, 255)
    draw.text((x + pad - l, y + pad - t), text, fill=ink, font=font)


DETECT_MARKER = ".yolocompress-detect"     # in every folder detect wrote: it may write there again


def check_detect_out(out: Path, files: list[Path], stems: dict[Path, str]) -> None:
    """Refuse an ``--out`` whose files detect would overwrite but did not write: the source images'
    own folder, a folder holding one of them, or a folder (such as a dataset's labels/) with a
    .png or .txt of an output's name and no ``DETECT_MARKER`` - so an output never replaces an input."""
    out_r = out.resolve()
    for f in files:
        if f.resolve().parent == out_r:
            raise DetectError(f"--out {out} holds the source images ({f.name}); detect would overwrite them "
                              "with annotated copies - choose another --out")
    if not out.is_dir() or (out / DETECT_MARKER).is_file():
        return
    clash = sorted(n for stem in stems.values() for n in (f"{stem}.txt", f"{stem}.png")
                   if (out / n).exists() or (out / n).is_symlink())
    if clash:
        raise DetectError(f"--out {out} already holds {clash[0]} (and {len(clash) - 1} more) that detect did not "
                          "write (it may be a dataset's labels); choose an empty or new --out")


def output_stems(files: list[Path]) -> dict[Path, str]:
    """Each image's output name: its stem, or stem_ext where two images share a stem (a.png, a.jpg)."""
    count: dict[str, int] = {}
    for f in files:
        count[f.stem] = count.get(f.stem, 0) + 1
    return {f: f.stem if count[f.stem] == 1 else f"{f.stem}_{f.suffix.lstrip('.').lower()}" for f in files}


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


def detect_folder(model: Darknet, source, out, img_size: int | None = None, conf: float = 0.25,
                  iou: float = 0.45, names: Sequence[str] = (), resize: str = "letterbox",
                  write_json: bool = False, progress: bool = False) -> int:
    """Annotated PNGs and YOLO-format .txt files (class cx cy w h score) into ``out``; with
    ``write_json`` also ``out/result.json`` in darknet's ``-out`` layout. ``resize``: the model's own is
    ``netinput.model_input(model).resize``; ``img_size`` None as ``input_hw``."""
    if model.net.channels != 3:
        raise DetectError(f"the cfg's [net] has channels={model.net.channels}, but images are read as RGB "
                          "(3 channels); detect needs a channels=3 model")
    input_hw(model, img_size, resize)  # a bad size or nms_kind fails before any image is read
    nms_settings(model)
    out = Path(out)
    files, frames = image_files(source), []
    stems = output_stems(files)
    check_detect_out(out, files, stems)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / DETECT_MARKER, "written by yolocompress detect\n")
    for frame_id, path in enumerate(tqdm(files, desc="detect", disable=not progress), 1):
        try:
            rgb = load_rgb(path)
        except ValueError as e:               # unreadable image: name it, as a DataError
            from yolocompress.data.dataset import DataError
            raise DataError(str(e)) from None
        det = predict(model, rgb, img_size, conf, iou, resize)
        rows = to_yolo_rows(det, rgb.shape[:2])
        stem = stems[path]
        with atomic_path(out / f"{stem}.png") as tmp:     # a full disk leaves no truncated picture; a symlink
            draw_detections(rgb, det, names).save(tmp, format="PNG")   # there is replaced, never written through
        lines = [f"{int(r[0])} {r[1]:.6f} {r[2]:.6f} {r[3]:.6f} {r[4]:.6f} {s:.4f}" for r, s in zip(rows, det[:, 4])]
        atomic_write_text(out / f"{stem}.txt", "\n".join(lines) + ("\n" if lines else ""))
        frames.append(darknet_json_frame(frame_id, str(path), det, rgb.shape[:2], names))
    if write_json:
        atomic_write_text(out / "result.json", json.dumps(frames, indent=1) + "\n")
    return len(files)
