"""Detections -> numbers: decode + NMS, then mAP from a COCO-compatible evaluator.

Two steps, one function or class each:

* ``postprocess`` turns the raw eval-mode output of ``Darknet`` (B, N, 5+C) into per-image
  detections (k, 6) ``[x1, y1, x2, y2, score, cls]`` in input pixels, with class-aware NMS.
* ``darknet_postprocess`` does the same as darknet's ``detector test`` (``get_network_boxes``
  with ``thresh``, then ``do_nms_sort`` or ``diounms_sort``): every class above the threshold
  is reported per box, and NMS follows the cfg's ``nms_kind`` (``darknet_nms``).
* ``DetectionEvaluator`` collects detections and ground truth batch by batch and ``compute()``
  scores them with pycocotools' ``COCOeval`` (iouType "bbox"), so mAP@0.5 and mAP@0.5:0.95 are
  the COCO numbers, not a re-implementation of them.

COCO has no single precision/recall; we report them at one confidence threshold, the one that
maximises F1 (see ``_best_f1`` for the exact definition).

Example:
    >>> import torch
    >>> pred = torch.tensor([[[50., 60., 20., 40., 0.8, 0.5, 0.25]]])
    >>> postprocess(pred, conf_thres=0.3)[0].tolist()
    [[40.0, 40.0, 60.0, 80.0, 0.4000000059604645, 0.0]]
"""
from __future__ import annotations

import contextlib
import io
import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pandas as pd
import torch
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from torch import Tensor
from torchvision.ops import batched_nms, box_convert, box_iou

MAX_NMS = 1_000  # candidates, most kept per image before NMS: bounds CPU time on untrained models;
# the result is unchanged whenever max_det boxes of these top-scoring candidates survive NMS


def postprocess(pred: Tensor, conf_thres: float = 0.001, iou_thres: float = 0.6,
                max_det: int = 300, multi_label: bool = True) -> list[Tensor]:
    """Raw detector output (B, N, 5+C) -> per image a (k, 6) tensor [x1, y1, x2, y2, score, cls].

    ``pred`` columns are cx, cy, w, h (input pixels), objectness and C class scores, both already
    sigmoided. score = objectness * class score; a candidate is kept when score > conf_thres.
    With ``multi_label`` every (box, class) pair above the threshold is a candidate (higher mAP
    at low thresholds, as COCO evaluation expects); otherwise only each box's best class.
    NMS is class-aware (``batched_nms``): overlapping boxes of different classes both survive.
    Rows are sorted by score, at most ``max_det`` per image, float32 on pred's device.
    """
    out = []
    for p in pred.detach():
        p = p[p[:, 4] > conf_thres].float()  # class score <= 1, so score <= objectness
        boxes = box_convert(p[:, :4], "cxcywh", "xyxy")
        scores = p[:, 4:5] * p[:, 5:]
        if multi_label:
            i, cls = (scores > conf_thres).nonzero(as_tuple=True)
            boxes, score = boxes[i], scores[i, cls]
        else:
            score, cls = scores.max(1)
            ok = score > conf_thres
            boxes, score, cls = boxes[ok], score[ok], cls[ok]
        if score.numel() > MAX_NMS:
            top = score.topk(MAX_NMS).indices
            boxes, score, cls = boxes[top], score[top], cls[top]
        keep = batched_nms(boxes, score, cls, iou_thres)[:max_det]
        out.append(torch.cat([boxes[keep], score[keep, None], cls[keep, None].float()], 1))
    return out


NMS_KINDS = ("default", "greedynms", "diounms")  # darknet's [yolo] nms_kind= values
GREEDY_DIOU_EXPONENT = 0.6  # darknet box.c box_diou: pow(d / c, 0.6), fixed (not beta_nms)


def darknet_postprocess(pred: Tensor, input_hw: tuple[int, int], conf_thres: float = 0.25,
                        nms_thres: float = 0.45, nms_kind: str = "default",
                        beta_nms: float = 0.6) -> list[Tensor]:
    """Raw detector output (B, N, 5+C) -> per image a (k, 6) tensor [x1, y1, x2, y2, score, cls].

    Darknet's ``get_network_boxes`` + NMS: a box is a candidate when objectness > conf_thres;
    its class c is reported with prob = objectness * class score when prob > conf_thres, so one
    box may be reported for several classes. Then ``darknet_nms`` per class at ``nms_thres``.
    No cap on candidates or detections (darknet has none). Boxes are normalised by the input
    size ``input_hw`` = (H, W) for NMS, as darknet's relative coordinates are: IoU does not care,
    the DIoU of greedynms/diounms does. Rows in input pixels, by descending score.
    """
    h, w = input_hw
    scale = torch.tensor([w, h, w, h], dtype=torch.float32, device=pred.device)
    out = []
    for p in pred.detach():
        p = p[p[:, 4] > conf_thres].float()              # (n, 5+C) boxes whose objectness passes
        prob = p[:, 4:5] * p[:, 5:]                        # (n, C)
        i, cls = (prob > conf_thres).nonzero(as_tuple=True)
        boxes, score = box_convert(p[i, :4], "cxcywh", "xyxy"), prob[i, cls]  # (k, 4), (k,)
        keep = darknet_nms(boxes / scale, score, cls, nms_thres, nms_kind, beta_nms)
        out.append(torch.cat([boxes[keep], score[keep, None], cls[keep, None].float()], 1))
    return out


def darknet_nms(boxes: Tensor, scores: Tensor, classes: Tensor, thres: float = 0.45,
                kind: str = "default", beta_nms: float = 0.6) -> Tensor:
    """Greedy per-class NMS as darknet's box.c: indices of the kept boxes, by descending score.

    boxes (k, 4) xyxy. In each class, going down the scores, a kept box removes every later box
    whose overlap with it is > thres. The overlap is the IoU for ``default`` (``do_nms_sort``;
    torchvision's ``batched_nms`` computes exactly that). ``diounms_sort`` instead uses
    IoU - (d / c) ** e, with d the squared distance between the centres and c the squared
    diagonal of the enclosing box: e = 0.6 for ``greedynms`` (``box_diou`` hard-codes it) and
    e = ``beta_nms`` for ``diounms`` (``box_diounms``).
    """
    if kind == "default":
        return batched_nms(boxes, scores, classes, thres)
    if kind not in NMS_KINDS:
        raise ValueError(f"nms_kind={kind} is not supported; expected one of {', '.join(NMS_KINDS)}")
    exponent = GREEDY_DIOU_EXPONENT if kind == "greedynms" else beta_nms
    kept = [torch.zeros(0, dtype=torch.long, device=boxes.device)]
    for c in classes.unique():
        idx = (classes == c).nonzero().flatten()
        idx = idx[scores[idx].argsort(descending=True, stable=True)]
        over = darknet_diou(boxes[idx], exponent) > thres   # (n, n) does row i remove column j
        alive = torch.ones(len(idx), dtype=torch.bool, device=boxes.device)
        for i in range(len(idx)):                            # greedy: only survivors suppress
            if alive[i]:
                alive[i + 1:] &= ~over[i, i + 1:]
        kept.append(idx[alive])
    keep = torch.cat(kept)
    return keep[scores[keep].argsort(descending=True, stable=True)]


def darknet_diou(boxes: Tensor, exponent: float) -> Tensor:
    """(n, 4) xyxy -> (n, n) IoU - (d / c) ** exponent, darknet's box_diou/box_diounms (IoU where
    c = 0, i.e. both boxes are the same point)."""
    iou = box_iou(boxes, boxes)                                               # (n, n)
    lt = torch.minimum(boxes[:, None, :2], boxes[None, :, :2])                # enclosing box
    rb = torch.maximum(boxes[:, None, 2:], boxes[None, :, 2:])
    c = ((rb - lt) ** 2).sum(-1)                                              # (n, n)
    centre = (boxes[:, :2] + boxes[:, 2:]) / 2
    d = ((centre[:, None] - centre[None]) ** 2).sum(-1)                        # (n, n)
    term = torch.where(c > 0, (d / c.clamp_min(torch.finfo(c.dtype).tiny)) ** exponent, 0.0)
    return iou - term


@dataclass(frozen=True)
class DetectionMetrics:
    """What one evaluation returns. All fractions in [0, 1]."""
    map50: float            # COCO AP at IoU 0.5 (stats[1] at maxDets=max_det); 0.0 when no GT at all
    map: float              # COCO AP averaged over IoU 0.5:0.05:0.95 (stats[0] likewise); 0.0 likewise
    precision: float        # TP / detections, all classes pooled, at IoU 0.5 and score >= conf
    recall: float           # TP / ground-truth boxes, same pooling, IoU and threshold
    conf: float             # the score threshold that maximises pooled F1 (0.0 if no detections)
    per_class: pd.DataFrame  # class, name, images, instances, AP50, AP; rows: classes with GT or dets
    n_images: int           # images evaluated (with or without ground truth)

    def as_dict(self) -> dict:
        """JSON-able dict; per-class NaN (class with detections but no GT) becomes None."""
        rows = [{k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in r.items()}
                for r in self.per_class.to_dict("records")]
        return dict(map50=self.map50, map=self.map, precision=self.precision, recall=self.recall,
                    conf=self.conf, n_images=self.n_images, per_class=rows)


class DetectionEvaluator:
    """Accumulates predictions and ground truth batch by batch; ``compute()`` runs COCOeval (bbox).

    Everything is scored in input pixels of the square ``img_size`` x ``img_size`` image the model
    saw, so letterboxed inputs need no mapping back. Category id = class index, annotation ids
    start at 1 (COCOeval reads id 0 as "unmatched"). Only COCO's area range 'all' is evaluated
    (small/medium/large would cost 4x the time and mean little at a few hundred pixels), and only
    maxDets = [max_det]. mAP is read from COCOeval's precision array exactly as ``summarize`` reads
    stats[0] / stats[1] (mean of entries > -1), not from ``stats``: summarize hard-codes
    maxDets=100 for stats[0] and gives -1 for any other max_det. A test checks the numbers against
    plain pycocotools.
    """

    def __init__(self, names: Sequence[str], img_size: int, conf_thres: float = 0.001,
                 iou_thres: float = 0.6, max_det: int = 100):
        self.names, self.img_size = list(names), img_size
        self.conf_thres, self.iou_thres, self.max_det = conf_thres, iou_thres, max_det
        self.reset()

    def reset(self) -> None:
        """Forget everything added so far."""
        self._gts: dict[int, np.ndarray] = {}   # image id -> (g, 5) [cls, x, y, w, h] pixels
        self._dets: dict[int, np.ndarray] = {}  # image id -> (k, 6) [x1, y1, x2, y2, score, cls]
        self._next_id = 0

    def update(self, pred: Tensor | Sequence[Tensor], targets: Tensor,
               img_ids: Sequence[int] | None = None) -> None:
        """Add one batch.

        pred: raw output (B, N, 5+C), or already post-processed per-image (k, 6) tensors.
        targets: (n, 6) [img_index_in_batch, cls, cx, cy, w, h], normalised to [0, 1].
        img_ids: one unique id per image; by default consecutive integers across calls.
        """
        if isinstance(pred, Tensor):
            if pred.shape[-1] - 5 != len(self.names):
                raise ValueError(f"pred has {pred.shape[-1] - 5} class columns but the evaluator "
                                 f"has {len(self.names)} names")
            pred = postprocess(pred, self.conf_thres, self.iou_thres, self.max_det)
        ids = (list(range(self._next_id, self._next_id + len(pred))) if img_ids is None
               else [int(i) for i in img_ids])
        if len(ids) != len(pred):
            raise ValueError(f"got {len(ids)} img_ids for a batch of {len(pred)} images")
        dup = sorted(i for i in set(ids) if i in self._gts or ids.count(i) > 1)
        if dup:  # checked before anything is added, so a failed update leaves the state unchanged
            raise ValueError(f"image id {dup[0]} was already added; pass unique img_ids")
        t = targets.detach().float().cpu().reshape(-1, 6)
        if len(t) and not 0 <= int(t[:, 0].min()) <= int(t[:, 0].max()) < len(pred):
            raise ValueError(f"targets refer to images {int(t[:, 0].min())}..{int(t[:, 0].max())} "
                             f"of a batch of {len(pred)}")
        if len(t) and not 0 <= int(t[:, 1].min()) <= int(t[:, 1].max()) < len(self.names):
            raise ValueError(f"targets hold class ids {int(t[:, 1].min())}..{int(t[:, 1].max())} "
                             f"but the evaluator has {len(self.names)} names")
        xywh = box_convert(t[:, 2:6] * self.img_size, "cxcywh", "xywh")
        gt = torch.cat([t[:, 1:2], xywh], 1).numpy()
        b = t[:, 0].long().numpy()
        for k, img_id in enumerate(ids):
            self._gts[img_id] = gt[b == k]
            self._dets[img_id] = pred[k].detach().float().cpu().numpy().reshape(-1, 6)
        self._next_id = max([self._next_id] + [i + 1 for i in ids])

    @property
    def ground_truth(self) -> dict[int, np.ndarray]:
        """Image id -> (g, 5) [cls, x, y, w, h] in input pixels, as added (for plots)."""
        return self._gts

    @property
    def detections(self) -> dict[int, np.ndarray]:
        """Image id -> (k, 6) [x1, y1, x2, y2, score, cls] in input pixels, as added (for plots)."""
        return self._dets

    def compute(self) -> DetectionMetrics:
        """Score everything added so far with COCOeval; pycocotools' printing is swallowed."""
        with contextlib.redirect_stdout(io.StringIO()):
            gt, dt = self._coco_pair()
            ev = COCOeval(gt, dt, "bbox")
            ev.params.maxDets = [self.max_det]  # COCO sorts maxDets and evaluates the largest
            ev.params.areaRng, ev.params.areaRngLbl = [[0, 1e10]], ["all"]  # 4x faster; only 'all' used
            ev.evaluate()
            ev.accumulate()
        precision, recall, conf = _best_f1(ev)
        p = ev.eval["precision"][:, :, :, 0, -1]  # (T, R, K): what summarize reads for stats[0:2]
        return DetectionMetrics(
            map50=_mean_valid(p[0], 0.0), map=_mean_valid(p, 0.0),
            precision=precision, recall=recall, conf=conf,
            per_class=self._per_class(ev.eval["precision"]), n_images=len(self._gts))

    def _coco_pair(self) -> tuple[COCO, COCO]:
        """Ground-truth and result COCO objects built in memory (no loadRes: it fails on zero
        detections and adds a polygon per box)."""
        images = [{"id": i} for i in self._gts]
        cats = [{"id": c, "name": n} for c, n in enumerate(self.names)]
        gt_anns = _anns(self._gts, lambda a: (a[:, 0], a[:, 1:5], None))
        dt_anns = _anns(self._dets, lambda a: (a[:, 5], box_convert(torch.from_numpy(a[:, :4]),
                                                                    "xyxy", "xywh").numpy(), a[:, 4]))
        gt, dt = COCO(), COCO()
        gt.dataset = {"images": images, "annotations": gt_anns, "categories": cats}
        dt.dataset = {"images": images, "annotations": dt_anns, "categories": cats}
        gt.createIndex()
        dt.createIndex()
        return gt, dt

    def _per_class(self, precision: np.ndarray) -> pd.DataFrame:
        """Per-class AP from COCOeval's precision array (T, R, K, A, M) at area 'all' and the last
        maxDets, averaging entries > -1 like COCO's summarize. Rows only for classes with GT or
        detections; a class with detections but no GT gets AP NaN (AP is undefined there)."""
        C = len(self.names)
        gt_cls = [a[:, 0].astype(int) for a in self._gts.values()] + [np.zeros(0, int)]
        dt_cls = [a[:, 5].astype(int) for a in self._dets.values()] + [np.zeros(0, int)]
        instances = np.bincount(np.concatenate(gt_cls), minlength=C)
        images = np.bincount(np.concatenate([np.unique(c) for c in gt_cls]), minlength=C)
        n_dets = np.bincount(np.concatenate(dt_cls), minlength=C)
        p = precision[:, :, :, 0, -1]  # (T, R, K): area 'all', last maxDets
        rows = [{"class": k, "name": self.names[k], "images": int(images[k]),
                 "instances": int(instances[k]), "AP50": _mean_valid(p[0, :, k]),
                 "AP": _mean_valid(p[:, :, k])}
                for k in range(C) if instances[k] or n_dets[k]]
        return pd.DataFrame(rows, columns=["class", "name", "images", "instances", "AP50", "AP"])


def _anns(per_image: dict[int, np.ndarray], split) -> list[dict]:
    """COCO annotation dicts from per-image arrays; split(a) -> (cls, xywh, score or None)."""
    anns = []
    for img_id, a in per_image.items():
        cls, xywh, score = split(a)
        for j, (c, box) in enumerate(zip(cls.astype(int).tolist(), xywh.tolist())):
            ann = {"id": len(anns) + 1, "image_id": img_id, "category_id": c, "bbox": box,
                   "area": box[2] * box[3], "iscrowd": 0}
            if score is not None:
                ann["score"] = float(score[j])
            anns.append(ann)
    return anns


def _mean_valid(x: np.ndarray, empty: float = float("nan")) -> float:
    """Mean of the entries > -1 (COCO marks 'no ground truth' with -1); ``empty`` if none."""
    x = x[x > -1]
    return float(x.mean()) if x.size else empty


def _best_f1(ev: COCOeval) -> tuple[float, float, float]:
    """Precision, recall and confidence at the score threshold that maximises F1.

    Matches are COCOeval's own (evalImgs dtMatches/gtIgnore at IoU index 0 = 0.5, area 'all',
    the last maxDets), so P/R agree with the mAP. All classes and images are pooled (micro
    average): sorting every detection by score, at threshold t
    P(t) = TP(score >= t) / #(score >= t),  R(t) = TP(score >= t) / #GT,  F1 = 2PR / (P + R).
    Only thresholds at actual detection scores are tried (tied scores go in together); the
    highest-confidence threshold wins an F1 tie. Ultralytics instead averages per-class P/R
    curves on a smoothed confidence grid; the two agree for one class up to that smoothing.
    """
    all_area = ev.params.areaRng[0]
    scores, tps, n_gt = [np.zeros(0)], [np.zeros(0, bool)], 0
    for e in ev.evalImgs:
        if e is None or e["aRng"] != all_area:
            continue
        keep = ~e["dtIgnore"][0].astype(bool)
        scores.append(np.asarray(e["dtScores"], float)[keep])
        tps.append(e["dtMatches"][0][keep] > 0)
        n_gt += int((~np.asarray(e["gtIgnore"], bool)).sum())
    scores, tps = np.concatenate(scores), np.concatenate(tps)
    if scores.size == 0:
        return 0.0, 0.0, 0.0
    order = np.argsort(-scores, kind="mergesort")
    s, tp = scores[order], np.cumsum(tps[order])
    p, r = tp / np.arange(1, s.size + 1), tp / max(n_gt, 1)
    f1 = np.divide(2 * p * r, p + r, out=np.zeros_like(p), where=p + r > 0)
    ends = np.flatnonzero(np.r_[s[1:] != s[:-1], True])  # last index of each group of tied scores
    i = ends[np.argmax(f1[ends])]
    return float(p[i]), float(r[i]), float(s[i])
