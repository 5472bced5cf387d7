"""The notebooks' hands-on exercises: the learner writes one rule of the method, a checker says
right or wrong.

Each ``check_*`` calls the learner's function on a few fixed cases (random ones from a fixed seed
and the edge cases that catch the usual slips), compares it with the package's own rule, prints
one line - ``right: ...`` or ``not yet: ...`` naming the first case that differs, what was
expected and what came back - and returns True or False. Tolerances are for float64 sums of a
few dozen terms (1e-9 relative), or exact for masks.
"""
from __future__ import annotations

import math
from typing import Callable, Sequence

import numpy as np
import torch

from yolocompress.compress.distill import bounded_box_loss, soft_classes
from yolocompress.compress.sparsity import local_decay_mask
from yolocompress.compress.surgery import _fold_delta


def _report(name: str, failures: list[str], cases: int) -> bool:
    """Print the verdict line; True when nothing failed."""
    if failures:
        print(f"not yet ({name}): {failures[0]}")
        return False
    print(f"right ({name}): all {cases} cases agree with the package")
    return True


def _same(a, b, exact: bool = False) -> bool:
    a, b = np.asarray(a, dtype=float if not exact else None), np.asarray(b, dtype=float if not exact else None)
    if a.shape != b.shape:
        return False
    return bool((a == b).all()) if exact else bool(np.allclose(a, b, rtol=1e-9, atol=1e-12))


def _call(fn: Callable, *args):
    """The learner's result, or the exception it raised (reported, not raised)."""
    try:
        out = fn(*args)
    except Exception as e:            # noqa: BLE001 - a learner's bug is a verdict, not a crash
        return e
    return out.detach().numpy() if isinstance(out, torch.Tensor) else out


def _compare(name: str, fn: Callable, cases: list[tuple], reference: Callable, exact: bool = False) -> bool:
    """Run ``fn`` and ``reference`` on every case; report the first disagreement."""
    failures = []
    for k, args in enumerate(cases):
        want, got = reference(*args), _call(fn, *args)
        if isinstance(got, NotImplementedError):
            failures.append("the function is still the stub (it raises NotImplementedError): write its body")
        elif isinstance(got, Exception):
            failures.append(f"case {k} raised {type(got).__name__}: {got}")
        elif not _same(got, want, exact):
            failures.append(f"case {k}: expected {np.round(np.asarray(want, float), 6).tolist()}, "
                            f"got {np.round(np.asarray(got, float), 6).tolist() if _is_numeric(got) else got!r}")
        if failures:
            break
    return _report(name, failures, len(cases))


def _is_numeric(x) -> bool:
    try:
        np.asarray(x, float)
        return True
    except (TypeError, ValueError):
        return False


# ----------------------------------------------------------------------------- 03 sparse training

def check_local_decay(fn: Callable[[torch.Tensor, float], torch.Tensor]) -> bool:
    """Notebook 03: ``fn(gammas (N,), ratio) -> bool (N,)``, True for the channels local-decay
    relaxes - those that survive a prune at ``ratio`` (|gamma| at or above the |gamma| of rank
    int(ratio * N) in increasing order; none when that rank is N)."""
    g = torch.Generator().manual_seed(3)
    cases = [(torch.randn(20, generator=g), 0.85), (torch.randn(7, generator=g) * 0.1, 0.5),
             (torch.tensor([0.3, -0.9, 0.0, 0.5, -0.1]), 0.4), (torch.tensor([0.2, 0.1]), 0.99)]
    return _compare("local-decay survivors", fn, cases, lambda gm, r: local_decay_mask(gm, r).numpy(), exact=True)


# ----------------------------------------------------------------------------- 04 the fold

def check_fold(fn: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]) -> bool:
    """Notebook 04: ``fn(weight (out, in, k, k), bias (out,), const (in,)) -> bias (out,)``: the
    consumer's bias once the removed input channels, which output the constant ``const[i]``
    (act(beta_i); 0 for kept channels), are cut - exact away from a padded border."""
    g = torch.Generator().manual_seed(4)
    cases = []
    for out, cin, k in ((3, 4, 1), (5, 6, 3), (2, 3, 1)):
        w = torch.randn(out, cin, k, k, generator=g, dtype=torch.float64)
        c = torch.randn(cin, generator=g, dtype=torch.float64) * (torch.rand(cin, generator=g) > 0.4)
        cases.append((w, torch.randn(out, generator=g, dtype=torch.float64), c))

    def reference(w, b, c):
        conv = torch.nn.Conv2d(w.shape[1], w.shape[0], w.shape[2], bias=True).double()
        conv.weight.data.copy_(w)
        return (b + torch.from_numpy(_fold_delta(conv, c.numpy()))).numpy()
    return _compare("fold of the removed channels into the bias", fn, cases, reference)


# ----------------------------------------------------------------------------- 05 / 06 residual groups

def _member_masks(gammas: Sequence[np.ndarray], threshold: float, floor: int) -> list[np.ndarray]:
    out = []
    for g in gammas:
        a = np.abs(np.asarray(g, float))
        m = a >= threshold
        if m.sum() < floor:
            m = m.copy()
            m[np.argsort(-a, kind="stable")[:floor]] = True
        out.append(m)
    return out


def _group_cases(seed: int) -> list[tuple]:
    rng = np.random.default_rng(seed)
    cases = [([rng.standard_normal(8) * 0.5 for _ in range(3)], 0.3),
             ([rng.standard_normal(6) * 0.1 for _ in range(2)], 0.5),           # every channel below: the floor acts
             ([np.array([0.9, 0.0, 0.4, 0.0]), np.array([0.0, 0.7, 0.0, 0.05])], 0.1)]
    return cases


def check_shared_mask(fn: Callable[[list, float], np.ndarray]) -> bool:
    """Notebook 05: ``fn(group_gammas, threshold) -> bool (C,)``, the mask every conv of a residual
    group keeps under *shared*: the first conv's own mask (|gamma| >= threshold, and at least its
    one largest channel), whatever the later convs' gammas say."""
    return _compare("shared mask of a residual group", fn, _group_cases(5),
                    lambda gs, t: _member_masks(gs, t, 1)[0], exact=True)


def check_union_mask(fn: Callable[[list, float, float], np.ndarray]) -> bool:
    """Notebook 06: ``fn(group_gammas, threshold, min_keep) -> bool (C,)``, the mask every conv of a
    residual group keeps under *union*: each member keeps |gamma| >= threshold and at least its
    ceil(min_keep * C) largest channels (the floor), and the group keeps the union of those masks."""
    cases = [(gs, t, mk) for (gs, t), mk in zip(_group_cases(6), (0.01, 0.5, 0.25))]
    return _compare("union mask of a residual group", fn, cases,
                    lambda gs, t, mk: np.logical_or.reduce(
                        _member_masks(gs, t, max(1, math.ceil(mk * len(gs[0])))), axis=0), exact=True)


# ----------------------------------------------------------------------------- 07 layer pruning

def check_blocks_to_drop(fn: Callable[[list, int], list]) -> bool:
    """Notebook 07: ``fn(last_conv_gammas, n) -> list of block indices``: the ``n`` residual blocks
    with the lowest mean |gamma| of the conv that feeds their shortcut (their last conv), the
    lowest first and ties broken by position - the blocks layer pruning drops (``plan.rank_blocks``)."""
    rng = np.random.default_rng(7)
    cases = [([rng.standard_normal(4) for _ in range(6)], 2), ([np.full(3, 0.2), np.full(3, 0.1), np.full(3, 0.2)], 2),
             ([np.array([-1.0, 1.0]), np.array([0.5, 0.5])], 1)]

    def reference(gs, n):
        scores = [float(np.abs(g).mean()) for g in gs]
        return sorted(range(len(gs)), key=lambda i: (scores[i], i))[:n]
    return _compare("blocks layer pruning drops", fn, cases, reference, exact=True)


# ----------------------------------------------------------------------------- 08 / 09 distillation

def check_hinton(fn: Callable[[torch.Tensor, torch.Tensor, float], torch.Tensor]) -> bool:
    """Notebook 08: ``fn(student_logits (n, C), teacher_logits (n, C), T) -> scalar``: Hinton's loss
    T^2 * KL(softmax(t / T) || softmax(s / T)), summed over the C classes and averaged over the n
    rows. (The package's ``soft_classes`` divides this by C and weights rows by the teacher's
    objectness, to sit beside the detection loss's class term.)"""
    g = torch.Generator().manual_seed(8)
    cases = [(torch.randn(5, 4, generator=g, dtype=torch.float64), torch.randn(5, 4, generator=g, dtype=torch.float64), T)
             for T in (1.0, 3.0)]
    cases.append((cases[0][1].clone(), cases[0][1].clone(), 2.0))           # identical: 0
    return _compare("Hinton KD loss", fn, cases,
                    lambda s, t, T: float(soft_classes(s, t, torch.ones(s.shape[0], dtype=s.dtype), T)) * s.shape[1])


def check_bounded(fn: Callable[[torch.Tensor, torch.Tensor, torch.Tensor, float], torch.Tensor]) -> bool:
    """Notebook 09: ``fn(student (n, 4), teacher (n, 4), truth (n, 4), margin) -> bool (n,)``: the
    boxes the teacher-bounded loss learns from - where the student's squared L2 distance to the
    truth plus the margin exceeds the teacher's (Chen et al. 2017; ``distill.bounded_box_loss``)."""
    g = torch.Generator().manual_seed(9)
    cases = [tuple(torch.randn(6, 4, generator=g, dtype=torch.float64) for _ in range(3)) + (m,) for m in (0.0, 0.5)]
    y = torch.zeros(2, 4, dtype=torch.float64)
    s, t = torch.tensor([[0.1, 0, 0, 0], [1.0, 0, 0, 0]]).double(), torch.tensor([[0.2, 0, 0, 0], [0.5, 0, 0, 0]]).double()
    cases += [(s, t, y, 0.0), (s, t, y, 0.8)]     # d_s 0.01 / 1.0 against d_t 0.04 / 0.25: the margin decides the second
    return _compare("boxes the bounded loss learns from", fn, cases,
                    lambda s, t, y, m: bounded_box_loss(s, t, y, m)[1].numpy(), exact=True)


# ----------------------------------------------------------------------------- 10 choosing a model

def check_pareto(fn: Callable[[Sequence[float], Sequence[float]], list]) -> bool:
    """Notebook 10: ``fn(gflops, maps) -> sorted list of indices``: the models on the Pareto front -
    those for which no model with fewer or equal GFLOPs has an equal or higher mAP (a tie in mAP
    goes to the cheaper model, a tie in GFLOPs to the better one; ``viz.pareto_front``)."""
    from .viz import pareto_front
    import pandas as pd
    cases = [([0.4, 0.2, 0.1, 0.05, 0.2], [0.84, 0.80, 0.81, 0.70, 0.78]), ([1.0, 0.5], [0.5, 0.9]),
             ([0.3, 0.3, 0.1], [0.6, 0.7, 0.2])]

    def reference(gf, mp):
        return sorted(pareto_front(pd.DataFrame({"g": gf, "m": mp}), "g", "m").index.tolist())
    return _compare("Pareto front", fn, cases, reference, exact=True)
