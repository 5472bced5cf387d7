"""Knowledge distillation while finetuning a pruned model: the unpruned model teaches.

Both variants are loss *terms* for ``train(..., terms=[DistillTerm(...)])``; the teacher runs in
eval mode under ``no_grad`` on the same augmented batch as the student.

* ``hinton`` - soft targets at temperature T, scaled by T^2 (Hinton et al., 2015). Which logits
  go in, and why:
  - class logits: KL(softmax(t/T) || softmax(s/T)) / C per anchor. YOLO trains classes with
    independent sigmoids, but the dark knowledge (which classes look alike) lives in their
    relative sizes, which a softmax exposes. Each anchor is weighted by the teacher's objectness:
    at background anchors the class logits were never trained and carry noise, not knowledge.
  - objectness: a two-way (object / background) distribution, sigmoid(logit / T), KL per anchor.
  - box logits stay out: they are regression outputs, not a distribution (the original repo put
    them into the same softmax as the classes, which mixes units and means nothing).
* ``bounded`` - the teacher-bounded regression loss of Chen et al. (NeurIPS 2017, "Learning
  Efficient Object Detection Models with Knowledge Distillation"): on positive anchors, the
  student's squared L2 distance to the ground-truth box, d_s = ||R_s - y||^2 (in the box parameter
  space darknet regresses: xy cell offsets, log w/anchor, log h/anchor), is added to the loss where
  d_s + m > d_t = ||R_t - y||^2, and is zero elsewhere: once the student is better than the teacher
  by the margin m, the teacher has nothing left to teach about that box. m > 0 keeps the student
  learning until it beats the teacher by m; m = 0 stops as soon as it matches the teacher. Plus
  the soft objectness/class terms above at temperature T.

Scale: like the detection loss, each term is batch size x weight x mean, so the default weights
(1.0 for soft terms, 0.05 for the box term - the detection loss's own box weight) put KD on the
same footing as the task loss. The soft class term is a mean per element (anchor x class), as the
detection class BCE is: its KL, summed over the C classes, is divided by C, so at weight 1 it is
of the detection class term's order (the sum over classes is C times that; a test checks the
scale on a worked example).
The original hard-coded 1e-3 (boxes) and 1e-4 (classes) on sums over every anchor of a 416 px
model; on our per-anchor means those would be ~1000x too weak.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from yolocompress.engine.hooks import LossTerm
from yolocompress.engine.loss import build_targets
from yolocompress.darknet.model import Darknet, cell_xy, full_precision

KINDS = ("hinton", "bounded")


class DistillError(ValueError):
    """Teacher and student cannot be paired (different heads, anchors or classes)."""


@dataclass(frozen=True)
class DistillConfig:
    kind: str = "hinton"           # hinton | bounded
    weight: float = 1.0            # alpha: multiplies every KD term
    temperature: float = 3.0       # T of the soft targets
    margin: float = 0.0            # bounded: the box term counts where d_s + margin > d_t (Chen et al.)
    box_weight: float = 0.05       # bounded: weight of the box term (as the detection loss's box weight)
    cls_weight: float = 1.0        # weight of the soft class term
    obj_weight: float = 1.0        # weight of the soft objectness term

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"distillation kind must be one of {', '.join(KINDS)}, got {self.kind!r}")
        if self.temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")

    def to_dict(self) -> dict:
        return asdict(self)


def check_pair(teacher: Darknet, student: Darknet) -> None:
    """Teacher and student may differ in width and depth, but must share heads, anchors, classes."""
    t, s = teacher.yolo_layers, student.yolo_layers
    if len(t) != len(s):
        raise DistillError(f"teacher has {len(t)} yolo heads, student has {len(s)}; they must match")
    for k, (a, b) in enumerate(zip(t, s)):
        if a.classes != b.classes:
            raise DistillError(f"yolo head {k}: teacher has {a.classes} classes, student {b.classes}")
        if a.anchors.shape != b.anchors.shape or not torch.equal(a.anchors.cpu(), b.anchors.cpu()):
            raise DistillError(f"yolo head {k}: teacher anchors {a.anchors.tolist()} differ from the "
                               f"student's {b.anchors.tolist()}")
        if a.scale_x_y != b.scale_x_y:
            raise DistillError(f"yolo head {k}: scale_x_y {a.scale_x_y} (teacher) vs {b.scale_x_y} (student)")


def soft_objectness(s: Tensor, t: Tensor, temperature: float) -> Tensor:
    """Mean over anchors of KL(Bernoulli(sigmoid(t/T)) || Bernoulli(sigmoid(s/T))) * T^2."""
    p = torch.sigmoid(t / temperature)
    kl = F.binary_cross_entropy_with_logits(s / temperature, p, reduction="none") \
        - F.binary_cross_entropy_with_logits(t / temperature, p, reduction="none")
    return kl.mean() * temperature ** 2


def soft_classes(s: Tensor, t: Tensor, weight: Tensor, temperature: float) -> Tensor:
    """KL(softmax(t/T) || softmax(s/T)) * T^2 as a mean per element: summed over the C classes,
    divided by C, then averaged over anchors weighted by ``weight`` - the normalisation of the
    detection class BCE (a mean over positive anchors x classes). s, t (..., C); weight (...)."""
    log_p = F.log_softmax(t / temperature, -1)
    kl = (log_p.exp() * (log_p - F.log_softmax(s / temperature, -1))).sum(-1) / s.shape[-1]   # (...)
    return (kl * weight).sum() / weight.sum().clamp_min(1e-9) * temperature ** 2


def box_params(p: Tensor, anchors_grid: Tensor, scale_x_y: float) -> Tensor:
    """Raw predictions (n, >=4) -> darknet's regression space: xy cell offsets, log(w, h / anchor)."""
    return torch.cat([cell_xy(p[:, :2], scale_x_y), p[:, 2:4]], 1)


def bounded_box_loss(s: Tensor, t: Tensor, y: Tensor, margin: float) -> tuple[Tensor, Tensor]:
    """Chen et al.'s teacher-bounded L2: per box d_s = ||s - y||^2 where d_s + m > d_t = ||t - y||^2,
    else 0 (the student is better than the teacher by at least m). s, t, y (n, 4).
    Returns (sum over boxes / n, mask of boxes the student learns from)."""
    d_s = ((s - y) ** 2).sum(1)       # (n,)
    d_t = ((t - y) ** 2).sum(1)       # (n,)
    learn = d_s + margin > d_t
    return (d_s * learn).sum() / max(len(y), 1), learn


class DistillTerm(LossTerm):
    """Loss term for ``train()`` (a ``LossTerm``): ``term(ctx, images, targets, heads) -> {"kd_...": tensor}``."""

    def __init__(self, teacher: Darknet, student: Darknet, config: DistillConfig = DistillConfig()):
        check_pair(teacher, student)
        self.teacher, self.student, self.config = teacher, student, config
        for p in teacher.parameters():
            p.requires_grad_(False)

    def teacher_heads(self, images: Tensor, amp: torch.dtype | None = None) -> list[Tensor]:
        self.teacher.to(images.device).eval()
        with torch.no_grad(), torch.autocast(images.device.type, dtype=amp, enabled=amp is not None):
            return [full_precision(h) for h in self.teacher.heads(images)]

    def __call__(self, ctx, images: Tensor, targets: Tensor, heads: list[Tensor]) -> dict[str, Tensor]:
        t_heads = self.teacher_heads(images, getattr(ctx, "amp", None))
        for k, (s, t) in enumerate(zip(heads, t_heads)):
            if s.shape != t.shape:
                raise DistillError(f"head {k}: student map {tuple(s.shape)} vs teacher {tuple(t.shape)}")
        return self.terms(heads, t_heads, targets, images.shape[-2:])

    def terms(self, heads: list[Tensor], t_heads: list[Tensor], targets: Tensor, img_hw) -> dict[str, Tensor]:
        config, T = self.config, self.config.temperature
        bs = heads[0].shape[0]
        obj = sum(soft_objectness(s[..., 4], t[..., 4], T) for s, t in zip(heads, t_heads)) / len(heads)
        out = {"kd_obj": obj * config.obj_weight}
        if heads[0].shape[-1] > 6:
            cls = sum(soft_classes(s[..., 5:], t[..., 5:], torch.sigmoid(t[..., 4]), T)
                      for s, t in zip(heads, t_heads)) / len(heads)
            out["kd_cls"] = cls * config.cls_weight
        if config.kind == "bounded":
            out["kd_box"] = self._bounded(heads, t_heads, targets, img_hw) * config.box_weight
        return {k: bs * config.weight * v for k, v in out.items()}

    def _bounded(self, heads, t_heads, targets, img_hw) -> Tensor:
        total = heads[0].new_zeros(())
        for a, s, t, yolo in zip(build_targets(self.student, heads, targets, img_hw, 0.2), heads, t_heads,
                                 self.student.yolo_layers):
            if not len(a.b):
                continue
            stride = img_hw[0] / s.shape[2]
            anchors = yolo.anchors.to(s.device)[a.a] / stride
            y = torch.cat([a.box[:, :2] - torch.stack([a.gx, a.gy], 1), torch.log(a.box[:, 2:] / anchors)], 1)
            ps = box_params(s[a.b, a.a, a.gy, a.gx], anchors, yolo.scale_x_y)
            pt = box_params(t[a.b, a.a, a.gy, a.gx], anchors, yolo.scale_x_y)
            total = total + bounded_box_loss(ps, pt, y, self.config.margin)[0]
        return total


@torch.no_grad()
def bounded_examples(student: Darknet, teacher: Darknet, images: Tensor, targets: Tensor,
                     margin: float = 0.0) -> list[dict]:
    """For every positive anchor of a batch: the ground-truth, student and teacher boxes (input
    pixels, cx cy w h), both distances in the regression space, and whether the bounded rule lets
    the student learn from it (d_s + margin > d_t). For pictures of the rule."""
    student.eval()
    teacher.eval()
    s_heads, t_heads = student.heads(images), teacher.heads(images)
    img_hw = images.shape[-2:]
    rows = []
    for a, s, t, yolo in zip(build_targets(student, s_heads, targets, img_hw, 0.2), s_heads, t_heads,
                             student.yolo_layers):
        if not len(a.b):
            continue
        stride = img_hw[0] / s.shape[2]
        anchors = yolo.anchors[a.a] / stride
        y = torch.cat([a.box[:, :2] - torch.stack([a.gx, a.gy], 1), torch.log(a.box[:, 2:] / anchors)], 1)
        ps = box_params(s[a.b, a.a, a.gy, a.gx], anchors, yolo.scale_x_y)
        pt = box_params(t[a.b, a.a, a.gy, a.gx], anchors, yolo.scale_x_y)
        _, learn = bounded_box_loss(ps, pt, y, margin)
        cell = torch.stack([a.gx, a.gy], 1)
        to_px = lambda p: torch.cat([(p[:, :2] + cell) * stride, torch.exp(p[:, 2:]) * anchors * stride], 1)  # noqa: E731
        for k in range(len(a.b)):
            rows.append({"image": int(a.b[k]), "class": int(a.cls[k]), "gt": (a.box[k] * stride).tolist(),
                         "student": to_px(ps)[k].tolist(), "teacher": to_px(pt)[k].tolist(),
                         "d_student": float(((ps[k] - y[k]) ** 2).sum()), "d_teacher": float(((pt[k] - y[k]) ** 2).sum()),
                         "learn": bool(learn[k])})
    return rows
