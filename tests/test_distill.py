"""Distillation terms: vanish for identical models, reach the student only, bounded rule, pairing."""
import copy
import math
import types

import pytest
import torch

from yolocompress.compress.distill import (DistillConfig, DistillError, DistillTerm, bounded_box_loss, soft_classes,
                                  soft_objectness)
from yolocompress.compress.plan import PruneConfig, make_plan
from yolocompress.compress.surgery import apply_plan
from yolocompress.darknet.weights import randomize
from yolocompress.darknet.loader import load_model

TARGETS = torch.tensor([[0, 1, .5, .5, .2, .3], [1, 0, .2, .7, .1, .1], [1, 4, .8, .3, .4, .35]])


def _models():
    teacher = randomize(load_model("teach"), seed=0, small_gamma=0.3).eval()
    student = apply_plan(teacher, make_plan(teacher, PruneConfig(strategy="union", ratio=0.5))).train()
    return teacher, student


@pytest.mark.parametrize("kind", ["hinton", "bounded"])
def test_terms_vanish_when_student_equals_teacher(kind):
    teacher = randomize(load_model("teach"), seed=0).eval()
    student = copy.deepcopy(teacher)
    term = DistillTerm(teacher, student, DistillConfig(kind=kind))
    x = torch.rand(2, 3, 128, 128)
    with torch.no_grad():
        heads = student.eval().heads(x)
    out = term(types.SimpleNamespace(), x, TARGETS, heads)
    assert set(out) == ({"kd_obj", "kd_cls"} | ({"kd_box"} if kind == "bounded" else set()))
    for v in out.values():
        assert abs(float(v)) < 1e-5


@pytest.mark.parametrize("kind", ["hinton", "bounded"])
def test_gradients_reach_the_student_only(kind):
    teacher, student = _models()
    term = DistillTerm(teacher, student, DistillConfig(kind=kind))
    x = torch.rand(2, 3, 128, 128)
    out = term(types.SimpleNamespace(), x, TARGETS, student.heads(x))
    sum(out.values()).backward()
    assert all(p.grad is None for p in teacher.parameters())
    assert sum(float(p.grad.abs().sum()) for p in student.parameters() if p.grad is not None) > 0
    assert float(out["kd_obj"].detach()) > 0


def test_bounded_rule():
    y = torch.zeros(4, 4)
    student = torch.tensor([[0.1, 0, 0, 0], [1.0, 0, 0, 0], [0.5, 0, 0, 0], [0.0, 2.0, 0, 0]])
    teacher = torch.tensor([[0.5, 0, 0, 0], [0.2, 0, 0, 0], [0.5, 0, 0, 0], [0.0, 1.0, 0, 0]])
    # d_s = [0.01, 1, 0.25, 4], d_t = [0.25, 0.04, 0.25, 1]
    loss, learn = bounded_box_loss(student, teacher, y, margin=0.0)
    assert learn.tolist() == [False, True, False, True]       # student closer or equal: nothing to learn
    assert float(loss) == pytest.approx((1.0 + 4.0) / 4)


def test_bounded_margin_sign_follows_chen_et_al():
    """Chen et al. 2017: learn where d_s + m > d_t. A student better than the teacher by less than m
    still learns; better by more than m, it does not. (The reversed rule d_s > d_t + m would learn
    from none of these three boxes at m = 0.3.)"""
    y = torch.zeros(3, 4)
    student = torch.tensor([[0.1, 0, 0, 0], [0.4, 0, 0, 0], [0.6, 0, 0, 0]])   # d_s = 0.01, 0.16, 0.36
    teacher = torch.tensor([[0.5, 0, 0, 0], [0.5, 0, 0, 0], [0.5, 0, 0, 0]])   # d_t = 0.25
    loss, learn = bounded_box_loss(student, teacher, y, margin=0.3)
    # 0.01 + 0.3 > 0.25, 0.16 + 0.3 > 0.25, 0.36 + 0.3 > 0.25: all learn
    assert learn.tolist() == [True, True, True]
    assert float(loss) == pytest.approx((0.01 + 0.16 + 0.36) / 3)
    _, learn = bounded_box_loss(student, teacher, y, margin=0.2)
    assert learn.tolist() == [False, True, True]               # 0.01 + 0.2 < 0.25: better by more than m
    _, learn = bounded_box_loss(student, teacher, y, margin=0.0)
    assert learn.tolist() == [False, False, True]              # m = 0: only where the teacher is closer


def test_soft_terms_by_hand():
    s, t = torch.tensor([[0.0, 0.0]]), torch.tensor([[2.0, 0.0]])
    p = torch.softmax(t / 2, -1)
    expect = float((p * (p.log() - torch.log_softmax(s / 2, -1))).sum()) / 2 * 4     # / C, * T^2
    assert float(soft_classes(s, t, torch.ones(1), 2.0)) == pytest.approx(expect)
    assert float(soft_objectness(torch.tensor([1.0]), torch.tensor([1.0]), 3.0)) == pytest.approx(0.0, abs=1e-7)


@pytest.mark.parametrize("C", [2, 8, 80])
def test_soft_class_term_is_on_the_detection_class_terms_scale(C):
    """Teacher sure of class 0, student sure of class C-1, both by a logit margin D, T = 1.
    Exactly (both softmaxes share the normaliser Z = e^D + C - 1): KL = (e^D - 1) / Z * D, so the
    per-element term is KL / C. The detection class BCE of that student against the one-hot label
    of class 0 is (C - 1) log 2 + softplus(D), over C elements. At large D both tend to D / C: the
    KD term at weight 1 is of the detection class term's order whatever C (summed over classes it
    would be C times larger)."""
    D = 20.0
    t = torch.zeros(1, C)
    t[0, 0] = D
    s = torch.zeros(1, C)
    s[0, -1] = D
    z = math.exp(D) + C - 1
    kl = (math.exp(D) - 1) / z * D
    got = float(soft_classes(s, t, torch.ones(1), 1.0))
    assert got == pytest.approx(kl / C, rel=1e-5)    # float32 softmax: ~1e-7 relative per term
    label = torch.zeros(1, C)
    label[0, 0] = 1.0
    det = float(torch.nn.functional.binary_cross_entropy_with_logits(s, label))
    assert det == pytest.approx(((C - 1) * math.log(2) + math.log1p(math.exp(D))) / C, rel=1e-5)
    # ratio D / (D + (C-1) log 2 + ~0): 0.97 at C = 2, 0.80 at C = 8, 0.27 at C = 80 - never C x
    assert got / det == pytest.approx(D / (D + (C - 1) * math.log(2)), rel=1e-4)


def test_mismatched_teacher_is_refused():
    student = load_model("teach", classes=6)
    with pytest.raises(DistillError, match="teacher has 3 classes, student 6"):
        DistillTerm(load_model("teach", classes=3), student)
    with pytest.raises(DistillError, match="teacher has 2 yolo heads, student has 3"):
        DistillTerm(load_model("yolov3-tiny", classes=6), student)
    with pytest.raises(ValueError, match="distillation kind must be one of"):
        DistillConfig(kind="fitnet")


def test_soft_objectness_figure_draws_sigmoid_of_logit_over_t():
    """Notebook 08's figure of the objectness soft target: each bar is sigmoid(logit / T), the
    distribution the Hinton objectness term compares (float32 both ways, so equal to rounding)."""
    import matplotlib
    matplotlib.use("Agg")
    from yolocompress.teach import viz
    logits = torch.tensor([4.0, 0.5, -6.0])
    fig = viz.plot_soft_objectness(logits, ["#1", "#2", "#3"], temperatures=(1, 3))
    heights = [p.get_height() for p in fig.axes[0].patches]          # the T = 1 bars, then the T = 3 bars
    assert heights == pytest.approx(torch.sigmoid(torch.cat([logits, logits / 3])).tolist(), abs=1e-6)
