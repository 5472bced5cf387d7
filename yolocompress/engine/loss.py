"""YOLOv3/v4-style detection loss on the raw head maps of a ``Darknet``; a dict of named terms.

Target assignment (as darknet with ``iou_thresh``): a ground-truth box is assigned, in the grid cell
holding its centre, to every anchor of every head whose width-height IoU with the box exceeds
``anchor_iou``, and always to its single best anchor over all heads, so no box goes unassigned.

Terms (each a mean, then weighted):
* ``box``: 1 - CIoU (or GIoU) between the decoded prediction and the box, torchvision.ops;
* ``obj``: BCE of objectness over every cell; positives target the (detached) IoU of their
  prediction, so the score learns to rank good boxes first; heads are balanced by stride
  (stride 8 counts most, where most cells are);
* ``cls``: BCE of the class logits on positive anchors (one-hot targets).
``total`` = batch size x (w_box * box + w_obj * obj + w_cls * cls), the scale under which the usual
SGD learning rates (0.01) and sparsity penalties (s ~ 1e-3) apply. The weights are the usual ones
for 640 px, 80 classes and 3 heads; ``scale_gains`` rescales objectness by (img/640)^2 x 3/heads
(fewer cells, so each positive weighs more in the mean) and classes by classes/80 x 3/heads,
which keeps box, objectness and class terms balanced at 128 px and 8 classes.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.ops import box_convert, complete_box_iou_loss, generalized_box_iou_loss

from yolocompress.darknet.model import Darknet, cell_xy, full_precision

_STRIDE_BALANCE = {8: 4.0, 16: 1.0, 32: 0.4}  # objectness weight per head stride


@dataclass(frozen=True)
class LossConfig:
    box: float = 0.05          # weight of the box term
    obj: float = 1.0           # weight of the objectness term
    cls: float = 0.5           # weight of the class term
    anchor_iou: float = 0.2    # wh-IoU above which an anchor takes a box (darknet iou_thresh)
    iou_type: str = "ciou"     # "ciou" or "giou"
    obj_iou: float = 1.0       # positives' objectness target: 1 - r + r * IoU (0: plain 1.0)
    scale_gains: bool = False  # obj x (img/640)^2 x 3/heads, cls x classes/80 x 3/heads (see below)


@dataclass
class Assignment:
    """Positive anchors of one head: batch index, anchor, cell (gy, gx), target box, class."""
    b: Tensor
    a: Tensor
    gy: Tensor
    gx: Tensor
    box: Tensor      # (n, 4) cx, cy, w, h in grid units of this head
    cls: Tensor      # (n,)


def wh_iou(wh1: Tensor, wh2: Tensor) -> Tensor:
    """IoU of boxes sharing a centre: (n, 2) x (m, 2) -> (n, m)."""
    inter = torch.min(wh1[:, None], wh2[None]).prod(-1)
    return inter / (wh1.prod(-1)[:, None] + wh2.prod(-1)[None] - inter)


def build_targets(model: Darknet, heads: list[Tensor], targets: Tensor, img_hw: tuple[int, int],
                  anchor_iou: float) -> list[Assignment]:
    """targets (n, 6) [img, cls, cx, cy, w, h] normalised -> positives per head."""
    ih, iw = img_hw
    anchors = [y.anchors.to(targets.device) for y in model.yolo_layers]  # px, per head (A, 2)
    wh_px = targets[:, 4:6] * targets.new_tensor([iw, ih])
    all_anchors = torch.cat(anchors)
    best = wh_iou(wh_px, all_anchors).argmax(1) if len(targets) else targets.new_zeros(0, dtype=torch.long)
    out, offset = [], 0
    for p, anc in zip(heads, anchors):
        _, na, h, w, _ = p.shape
        ious = wh_iou(wh_px, anc)                                  # (n, A)
        take = ious > anchor_iou
        in_head = (best >= offset) & (best < offset + na)            # best anchor lives here
        take[in_head, (best - offset)[in_head]] = True
        t_idx, a_idx = take.nonzero(as_tuple=True)
        t = targets[t_idx]
        box = torch.cat([t[:, 2:4] * t.new_tensor([w, h]), t[:, 4:6] * t.new_tensor([w, h])], 1)
        gx = box[:, 0].long().clamp(0, w - 1)
        gy = box[:, 1].long().clamp(0, h - 1)
        out.append(Assignment(t[:, 0].long(), a_idx, gy, gx, box, t[:, 1].long()))
        offset += na
    return out


def decode_cells(p: Tensor, anchors_grid: Tensor, scale_x_y: float) -> Tensor:
    """Raw predictions at positive cells (n, 5+C) -> (n, 4) cx, cy (cell offset), w, h in grid units."""
    xy = cell_xy(p[:, :2], scale_x_y)
    wh = torch.exp(p[:, 2:4].clamp(max=6.0)) * anchors_grid   # clamp: exp overflow early in training
    return torch.cat([xy, wh], 1)


class YoloLoss:
    """Callable: ``loss(heads, targets, img_hw) -> {"box", "obj", "cls", "total"}``."""

    def __init__(self, model: Darknet, config: LossConfig = LossConfig()):
        if config.iou_type not in ("ciou", "giou"):
            raise ValueError(f"iou_type must be 'ciou' or 'giou', got {config.iou_type!r}")
        self.model, self.config = model, config

    def __call__(self, heads: list[Tensor], targets: Tensor, img_hw: tuple[int, int]) -> dict[str, Tensor]:
        config = self.config
        assigned = build_targets(self.model, heads, targets, img_hw, config.anchor_iou)
        zero = heads[0].new_zeros(())
        box_l, obj_l, cls_l = zero.clone(), zero.clone(), zero.clone()
        iou_loss = complete_box_iou_loss if config.iou_type == "ciou" else generalized_box_iou_loss
        for p, yolo, t in zip(heads, self.model.yolo_layers, assigned):
            p = full_precision(p)
            obj_t = torch.zeros_like(p[..., 4])
            stride = img_hw[0] / p.shape[2]
            if len(t.b):
                ps = p[t.b, t.a, t.gy, t.gx]                       # (n, 5+C)
                anchors_grid = yolo.anchors.to(p.device)[t.a] / stride
                pbox = decode_cells(ps, anchors_grid, yolo.scale_x_y)
                pbox = torch.cat([pbox[:, :2] + torch.stack([t.gx, t.gy], 1), pbox[:, 2:]], 1)
                l_box = iou_loss(box_convert(pbox, "cxcywh", "xyxy"), box_convert(t.box, "cxcywh", "xyxy"),
                                 reduction="none")
                box_l = box_l + l_box.mean()
                iou = (1.0 - l_box).detach().clamp(0)
                obj_t[t.b, t.a, t.gy, t.gx] = (1.0 - config.obj_iou) + config.obj_iou * iou
                if yolo.classes > 1:
                    cls_t = F.one_hot(t.cls, yolo.classes).to(ps.dtype)
                    cls_l = cls_l + F.binary_cross_entropy_with_logits(ps[:, 5:], cls_t)
            balance = _STRIDE_BALANCE.get(round(stride), 1.0)
            obj_l = obj_l + balance * F.binary_cross_entropy_with_logits(p[..., 4], obj_t)
        bs = heads[0].shape[0]
        w_obj, w_cls = config.obj, config.cls
        if config.scale_gains:  # the weights are tuned for 640 px, 80 classes, 3 heads (Ultralytics)
            nl, nc = len(heads), self.model.num_classes
            w_obj *= (img_hw[0] / 640) ** 2 * 3 / nl
            w_cls *= nc / 80 * 3 / nl
        terms = {"box": config.box * box_l, "obj": w_obj * obj_l, "cls": w_cls * cls_l}
        terms["total"] = bs * (terms["box"] + terms["obj"] + terms["cls"])
        return terms
