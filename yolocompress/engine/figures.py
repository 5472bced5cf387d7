"""What a training run shows at its end, as a user of other YOLO trainers expects to find it:

* ``results.png`` - every loss term, mAP@0.5 and mAP@0.5:0.95, precision and recall, by epoch;
* ``pr_curve.png`` - precision against recall per class at IoU 0.5 (the curve mAP@0.5 averages);
* ``confusion_matrix.png`` - which class each ground-truth box was detected as, at IoU 0.5 and
  score >= ``conf`` (a last row/column for background: missed boxes and false detections);
* ``val_predictions.png`` - validation images, ground truth beside the model's boxes.

Figures are drawn on ``matplotlib.figure.Figure`` objects (no pyplot state, any backend) and written
atomically.
"""
from __future__ import annotations

import io
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from torchvision.ops import box_convert, box_iou

from yolocompress.data.dataset import DataConfig, YoloDataset, make_loader
from yolocompress.darknet.model import Darknet
from yolocompress.files import atomic_write_bytes
from .evaluate import evaluate
from .metrics import DetectionEvaluator

METRICS = ("map50", "map", "precision", "recall")


def _save(fig: Figure, path: Path) -> Path:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    atomic_write_bytes(path, buf.getvalue())
    return path


def loss_columns(history: pd.DataFrame) -> list[str]:
    """The loss terms of a history.csv: the training loop writes epoch, lr, each loss term (total
    last), then time_s, then metrics and hook statistics."""
    cols = list(history.columns)
    end = cols.index("time_s") if "time_s" in cols else len(cols)
    return [c for c in cols[:end] if c not in ("epoch", "lr")]


def plot_history(history: pd.DataFrame, path: Path) -> Path:
    """results.png: one panel per loss term, then mAP and then precision/recall, by epoch."""
    losses = loss_columns(history)
    panels = [[c] for c in losses] + [[c for c in METRICS[:2] if c in history], [c for c in METRICS[2:] if c in history]]
    panels = [p for p in panels if p]
    fig = Figure(figsize=(3.2 * min(len(panels), 4), 2.6 * -(-len(panels) // 4)), layout="constrained")
    for k, cols in enumerate(panels):
        ax = fig.add_subplot(-(-len(panels) // 4), min(len(panels), 4), k + 1)
        for c in cols:
            ax.plot(history["epoch"], history[c], marker="o", ms=3, label=c)
        ax.set_title(cols[0] if len(cols) == 1 else " / ".join(cols), fontsize=10)
        ax.set_xlabel("epoch")
        if len(cols) > 1:
            ax.legend(fontsize=8)
    return _save(fig, path)


def match(gt: np.ndarray, det: np.ndarray, iou_thres: float = 0.5, same_class: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Greedy matching of one image's detections (k, 6) [x1, y1, x2, y2, score, cls] to its ground
    truth (g, 5) [cls, x, y, w, h], highest score first, each box used once, IoU >= ``iou_thres``
    (and the same class when ``same_class``). Returns (k,) index of the matched box or -1, and (g,) hit flags."""
    order = np.argsort(-det[:, 4], kind="stable")
    matched, hit = np.full(len(det), -1), np.zeros(len(gt), bool)
    if not len(det) or not len(gt):
        return matched, hit
    boxes = box_convert(torch.from_numpy(gt[:, 1:5]).float(), "xywh", "xyxy")
    iou = box_iou(torch.from_numpy(det[:, :4]).float(), boxes).numpy()                 # (k, g)
    for d in order:
        ok = (iou[d] >= iou_thres) & ~hit & ((gt[:, 0] == det[d, 5]) if same_class else True)
        if ok.any():
            g = int(np.argmax(np.where(ok, iou[d], -1)))
            matched[d], hit[g] = g, True
    return matched, hit


def confusion(gts: dict, dets: dict, n_classes: int, conf: float = 0.25, iou_thres: float = 0.5) -> np.ndarray:
    """(C + 1, C + 1) counts: row = true class (last: background), column = detected class (last:
    missed). A detection matches a box of any class, so a wrong class shows off the diagonal."""
    m = np.zeros((n_classes + 1, n_classes + 1), int)
    for i, gt in gts.items():
        det = dets[i][dets[i][:, 4] >= conf]
        matched, hit = match(gt, det, iou_thres, same_class=False)
        for d, g in enumerate(matched):
            m[int(gt[g, 0]) if g >= 0 else n_classes, int(det[d, 5])] += 1
        for g in np.flatnonzero(~hit):
            m[int(gt[g, 0]), n_classes] += 1
    return m


def pr_points(gts: dict, dets: dict, cls: int, iou_thres: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """Recall and precision of class ``cls`` as the score threshold falls through its detections."""
    scores, tps, n_gt = [], [], 0
    for i, gt in gts.items():
        g, d = gt[gt[:, 0] == cls], dets[i][dets[i][:, 5] == cls]
        matched, _ = match(g, d, iou_thres)
        scores.append(d[:, 4])
        tps.append(matched >= 0)
        n_gt += len(g)
    s, tp = np.concatenate(scores), np.concatenate(tps)
    tp = tp[np.argsort(-s, kind="stable")].cumsum()
    return tp / max(n_gt, 1), tp / np.arange(1, len(tp) + 1)


def plot_pr(gts: dict, dets: dict, names: Sequence[str], path: Path) -> Path:
    fig = Figure(figsize=(5, 4.2))
    ax = fig.add_subplot()
    for k, name in enumerate(names[:10]):
        r, p = pr_points(gts, dets, k)
        if len(r):
            ax.plot(r, p, label=name)
    ax.set(xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1.02), title="precision-recall at IoU 0.5")
    ax.legend(fontsize=8)
    return _save(fig, path)


def plot_confusion(m: np.ndarray, names: Sequence[str], path: Path, conf: float) -> Path:
    labels = [*names, "background"]
    fig = Figure(figsize=(1.2 + 0.6 * len(labels), 1.0 + 0.55 * len(labels)))
    ax = fig.add_subplot()
    ax.imshow(m, cmap="Blues")
    for (r, c), v in np.ndenumerate(m):
        ax.text(c, r, str(v), ha="center", va="center", fontsize=8, color="white" if v > m.max() / 2 else "black")
    ax.set_xticks(range(len(labels)), [*names, "missed"], rotation=45, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    ax.set(xlabel="detected as", ylabel="true class", title=f"confusion at IoU 0.5, score >= {conf:g}")
    return _save(fig, path)


def _draw(ax, image: np.ndarray, boxes: np.ndarray, classes: np.ndarray, names, title: str) -> None:
    ax.imshow(image)
    for (x1, y1, x2, y2), c in zip(boxes, classes.astype(int)):
        color = f"C{c % 10}"
        ax.add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, lw=1.2, color=color))
        ax.text(x1, y1, names[c], fontsize=6, color=color, va="bottom")
    ax.set_title(title, fontsize=8)
    ax.axis("off")


def plot_predictions(images: torch.Tensor, gts: dict, dets: dict, names, path: Path, conf: float = 0.25) -> Path:
    """Pairs of panels per image: its ground truth, then the detections with score >= ``conf``."""
    n = len(images)
    fig = Figure(figsize=(4.4, 2.2 * n), layout="constrained")
    for i in range(n):
        img = images[i].permute(1, 2, 0).float().numpy()                                 # (S, S, 3) in [0, 1]
        gt, det = gts[i], dets[i][dets[i][:, 4] >= conf]
        gt_xyxy = box_convert(torch.from_numpy(gt[:, 1:5]).float(), "xywh", "xyxy").numpy()
        _draw(fig.add_subplot(n, 2, 2 * i + 1), img, gt_xyxy, gt[:, 0], names, "ground truth")
        _draw(fig.add_subplot(n, 2, 2 * i + 2), img, det[:, :4], det[:, 5], names, f"predicted (score >= {conf:g})")
    return _save(fig, path)


def write_training_figures(model: Darknet, data: DataConfig, out: str | Path, img_size: int,
                           max_images: int | None = None, conf: float = 0.25, n_show: int = 4,
                           resize: str = "letterbox") -> list[Path]:
    """The four figures of a run directory ``out`` (which holds history.csv) for ``model`` (its
    best weights) on the validation split, fed as the run trained (``resize`` to ``img_size``)."""
    out = Path(out)
    paths = [plot_history(pd.read_csv(out / "history.csv"), out / "results.png")]
    images = data.val[:max_images] if max_images else data.val
    loader = make_loader(YoloDataset(images, img_size, augment=None, nc=data.nc, resize=resize), 16, shuffle=False)
    ev = DetectionEvaluator(data.names, img_size)
    evaluate(model, loader, data.names, img_size, evaluator=ev)
    gts, dets = ev.ground_truth, ev.detections
    paths.append(plot_pr(gts, dets, data.names, out / "pr_curve.png"))
    paths.append(plot_confusion(confusion(gts, dets, len(data.names), conf), data.names, out / "confusion_matrix.png", conf))
    first = next(iter(loader))[0][:n_show]
    paths.append(plot_predictions(first, gts, dets, data.names, out / "val_predictions.png", conf))
    return paths
