"""Evaluation, its own stage: a model's mAP@0.5, mAP@0.5:0.95, precision, recall and per-class AP
on a YOLO-format split, with the COCO evaluator (``metrics.py``).

The trainer calls it between epochs; pruning sweeps, the pipeline and the CLI call it directly, so
none of them needs the trainer to measure a model.
"""
from __future__ import annotations

import warnings

from typing import Protocol, Sequence

import torch
from tqdm.auto import tqdm

from yolocompress.data.dataset import DataConfig, YoloDataset, make_loader
from yolocompress.darknet.netinput import InputSpec
from yolocompress.data.resize import StretchDataset
from .metrics import DetectionEvaluator, DetectionMetrics
from yolocompress.darknet.model import Darknet, model_dtype


class Evaluator(Protocol):
    """What :func:`evaluate` feeds: raw predictions batch by batch, then one score."""

    def update(self, pred: torch.Tensor, targets: torch.Tensor) -> None:
        """Add one batch: ``pred`` (B, N, 5 + C) raw model output, ``targets`` (n, 6) image, class, cx, cy, w, h."""

    def compute(self) -> DetectionMetrics:
        """The metrics over every batch added."""


@torch.no_grad()
def evaluate(model: Darknet, loader, names: Sequence[str], img_size: int, device: torch.device | None = None,
             conf_thres: float = 0.001, nms_iou: float = 0.6, amp: torch.dtype | None = None,
             progress: bool = False, evaluator: Evaluator | None = None) -> DetectionMetrics:
    """mAP@0.5, mAP@0.5:0.95, P, R and per-class AP of ``model`` on a loader (COCO evaluator).
    ``amp``: the autocast dtype of the forward passes (None: the model's own precision).
    ``evaluator``: what scores the predictions - any object with ``update(pred, targets)`` and
    ``compute()``, fresh for this call (None: a ``DetectionEvaluator`` over ``names`` at
    ``img_size``, ``conf_thres`` and ``nms_iou``, which are then its only use)."""
    device = device or next(model.parameters()).device
    was_training = model.training
    model.eval()
    ev = evaluator if evaluator is not None else \
        DetectionEvaluator(names, img_size, conf_thres=conf_thres, iou_thres=nms_iou)
    broken, seen = 0, 0
    try:
        for images, targets, _ in tqdm(loader, desc="eval", leave=False, disable=not progress):
            images = images.to(device, dtype=model_dtype(model), non_blocking=True)  # (B, 3, S, S)
            with torch.autocast(device.type, dtype=amp, enabled=amp is not None):
                pred = model(images)                                                  # (B, N, 5 + C)
            pred = pred.float().cpu()
            broken += int((~torch.isfinite(pred)).flatten(1).any(1).sum())
            seen += len(pred)
            ev.update(pred, targets)
    finally:
        model.train(was_training)
    if broken:
        warnings.warn(f"evaluation: the model's outputs hold NaN or inf on {broken} of {seen} images, scored as "
                      "misses; its weights are broken (a diverged training run, or a damaged weights file)",
                      stacklevel=2)
    return ev.compute()


def evaluate_on(model: Darknet, data: DataConfig, split: str = "val", img_size: int = 128,
                batch_size: int = 32, max_images: int | None = None, progress: bool = False,
                device: torch.device | None = None, workers: int = 0) -> DetectionMetrics:
    """Evaluate ``model`` on a split of ``data`` (letterboxed to ``img_size``, no augmentation)."""
    images = getattr(data, split)
    if max_images:
        images = images[:max_images]
    loader = make_loader(YoloDataset(images, img_size, augment=None, nc=data.nc), batch_size, shuffle=False,
                         workers=workers)
    device = device or next(model.parameters()).device
    return evaluate(model.to(device), loader, data.names, img_size, device, progress=progress)


def evaluate_stretched(model: Darknet, data: DataConfig, split: str = "val", img_size: int = 416,
                       batch_size: int = 32, max_images: int | None = None, progress: bool = False,
                       device: torch.device | None = None) -> DetectionMetrics:
    """``evaluate_on`` with darknet's stretch instead of the letterbox: the COCO evaluator scores
    in the stretched input's pixels, where the ground truth is its normalised box x img_size."""
    images = getattr(data, split)[:max_images] if max_images else getattr(data, split)
    loader = make_loader(StretchDataset(images, img_size, nc=data.nc), batch_size, shuffle=False)
    device = device or next(model.parameters()).device
    return evaluate(model.to(device), loader, data.names, img_size, device, progress=progress)


def evaluate_at(model: Darknet, data: DataConfig, spec: InputSpec, split: str = "val", batch_size: int = 32,
                max_images: int | None = None, progress: bool = False,
                device: torch.device | None = None) -> DetectionMetrics:
    """Evaluate at an input ``spec`` (``netinput.resolve_input``: the model's own unless overridden):
    stretch through darknet's resize_image (``evaluate_stretched``), letterbox as ``evaluate_on``."""
    run = evaluate_stretched if spec.resize == "stretch" else evaluate_on
    return run(model, data, split, spec.size, batch_size, max_images, progress=progress, device=device)
