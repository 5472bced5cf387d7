"""Distillation terms: vanish for identical models, reach the student only, bounded rule, pairing."""
import copy
import types

import pytest
import torch

from yolocompress import zoo
from yolocompress.distill import (DistillConfig, DistillError, DistillTerm, bounded_box_loss, soft_classes,
                                  soft_objectness)
from yolocompress.plan import PruneConfig, make_plan
from yolocompress.surgery import apply_plan
from yolocompress.weights import randomize

TARGETS = torch.tensor([[0, 1, .5, .5, .2, .3], [1, 0, .2, .7, .1, .1], [1, 4, .8, .3, .4, .35]])


def _models():
    teacher = randomize(zoo.build("teach"), seed=0, small_gamma=0.3).eval()
    student = apply_plan(teacher, make_plan(teacher, PruneConfig(strategy="union", ratio=0.5))).train()
    return teacher, student


@pytest.mark.parametrize("kind", ["hinton", "bounded"])
def test_terms_vanish_when_student_equals_teacher(kind):
    teacher = randomize(zoo.build("teach"), seed=0).eval()
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
    loss, learn = bounded_box_loss(student, teacher, y, margin=0.0)
    assert learn.tolist() == [False, True, False, True]       # student closer or equal: nothing to learn
    assert float(loss) == pytest.approx((1.0 + 4.0) / 4)
    _, learn_m = bounded_box_loss(student, teacher, y, margin=3.5)
    assert learn_m.tolist() == [False, False, False, False]


def test_soft_terms_by_hand():
    s, t = torch.tensor([[0.0, 0.0]]), torch.tensor([[2.0, 0.0]])
    p = torch.softmax(t / 2, -1)
    expect = float((p * (p.log() - torch.log_softmax(s / 2, -1))).sum()) * 4
    assert float(soft_classes(s, t, torch.ones(1), 2.0)) == pytest.approx(expect)
    assert float(soft_objectness(torch.tensor([1.0]), torch.tensor([1.0]), 3.0)) == pytest.approx(0.0, abs=1e-7)


def test_mismatched_teacher_is_refused():
    student = zoo.build("teach", 6)
    with pytest.raises(DistillError, match="teacher has 3 classes, student 6"):
        DistillTerm(zoo.build("teach", 3), student)
    with pytest.raises(DistillError, match="teacher has 2 yolo heads, student has 3"):
        DistillTerm(zoo.build("yolov3-tiny", 6), student)
    with pytest.raises(ValueError, match="distillation kind must be one of"):
        DistillConfig(kind="fitnet")
