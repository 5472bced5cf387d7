"""Each exercise checker says right to a correct solution and not yet to the usual slip."""
import math

import numpy as np
import torch
import torch.nn.functional as F

from yolocompress.teach import exercises as ex


def local_decay(g, ratio):
    a = g.abs()
    k = int(ratio * len(a))
    return torch.zeros_like(a, dtype=torch.bool) if k >= len(a) else a >= torch.sort(a).values[k]


def fold(w, b, c):
    return b + w.sum((2, 3)) @ c


def masks(gs, t, floor):
    out = []
    for g in gs:
        a = np.abs(g)
        m = a >= t
        if m.sum() < floor:
            m[np.argsort(-a, kind="stable")[:floor]] = True
        out.append(m)
    return out


def hinton(s, t, T):
    return (F.softmax(t / T, -1) * (F.log_softmax(t / T, -1) - F.log_softmax(s / T, -1))).sum(-1).mean() * T * T


def pareto(gf, mp):
    order = sorted(range(len(gf)), key=lambda i: (gf[i], -mp[i]))
    best, front = -math.inf, []
    for i in order:
        if mp[i] > best:
            front.append(i)
            best = mp[i]
    return sorted(front)


def test_right_solutions_pass(capsys):
    assert ex.check_local_decay(local_decay)
    assert ex.check_fold(fold)
    assert ex.check_shared_mask(lambda gs, t: masks(gs, t, 1)[0])
    assert ex.check_union_mask(lambda gs, t, mk: np.logical_or.reduce(masks(gs, t, max(1, math.ceil(mk * len(gs[0])))), 0))
    assert ex.check_blocks_to_drop(lambda gs, n: sorted(range(len(gs)), key=lambda i: (np.abs(gs[i]).mean(), i))[:n])
    assert ex.check_hinton(hinton)
    assert ex.check_bounded(lambda s, t, y, m: ((s - y) ** 2).sum(1) + m > ((t - y) ** 2).sum(1))
    assert ex.check_pareto(pareto)
    assert capsys.readouterr().out.count("right (") == 8


def test_the_usual_slips_fail(capsys):
    assert not ex.check_local_decay(lambda g, r: g >= torch.sort(g).values[int(r * len(g)) % len(g)])   # signed, not |gamma|
    assert not ex.check_fold(lambda w, b, c: b + w[:, :, 0, 0] @ c)                 # one tap of a 3x3 kernel
    assert not ex.check_shared_mask(lambda gs, t: np.abs(gs[-1]) >= t)             # the last conv's mask
    assert not ex.check_union_mask(lambda gs, t, mk: np.logical_or.reduce([np.abs(g) >= t for g in gs], 0))  # no floor
    assert not ex.check_blocks_to_drop(lambda gs, n: sorted(range(len(gs)), key=lambda i: np.mean(gs[i]))[:n])  # signed mean
    assert not ex.check_hinton(lambda s, t, T: hinton(s, t, T) / T / T)            # without T^2
    assert not ex.check_bounded(lambda s, t, y, m: ((s - y) ** 2).sum(1) > ((t - y) ** 2).sum(1) + m)   # margin on the wrong side
    assert not ex.check_pareto(lambda gf, mp: list(range(len(gf))))
    assert not ex.check_fold(lambda w, b, c: 1 / 0)                                 # an error is a verdict, not a crash
    out = capsys.readouterr().out
    assert out.count("not yet (") == 9 and "raised ZeroDivisionError" in out
