"""Shared by the pruning tests: zoo-built models (nothing outside the repository) with
sparse-looking gammas, and the check that the compact model computes the masked what-if."""
import copy

import numpy as np
import torch

from yolocompress.darknet import zoo
from yolocompress.darknet.model import Darknet
from yolocompress.compress.plan import PruneConfig, make_plan
from yolocompress.compress.surgery import apply_masks, apply_plan
from yolocompress.darknet.weights import randomize

CLASSES = 3          # small heads; nothing pruned depends on the class count (head convs have no BN)
_CACHE: dict = {}


def sparse_model(name: str) -> Darknet:
    """``zoo`` architecture ``name`` with random weights in which half the gammas are tiny, as
    after sparse training (cached; tests must not modify it)."""
    if name not in _CACHE:
        _CACHE[name] = randomize(Darknet(zoo.blocks(name, CLASSES)), seed=1, small_gamma=0.5).eval()
    return _CACHE[name]


def realistic_gammas(graph, seed: int = 0, small: float = 0.7) -> dict:
    """|gamma| per BN conv of ``graph`` as sparse training leaves them: a share ``small``
    log-normal around 1e-3 (sigma: one decade), the rest uniform in [0.2, 1.5]. Continuous, so
    any threshold is reachable. (Plans are pure functions of gammas and graph: no model needed.)"""
    rng = np.random.default_rng(seed)
    out = {}
    for c in graph.bn_convs:
        n = graph.layers[c].filters
        tiny = np.exp(rng.normal(np.log(1e-3), np.log(10), n))
        out[c] = np.where(rng.random(n) < small, tiny, rng.uniform(0.2, 1.5, n)).astype(np.float32)
    return out


def plan_for(model: Darknet, **config):
    """``make_plan`` with a ``PruneConfig`` of these fields."""
    return make_plan(model, PruneConfig(**config))


def assert_compact_equals_what_if(model: Darknet, plan, size: int = 64) -> Darknet:
    """Compact model == masked what-if on a random image; returns the (float32) compact model.

    Both models are built in float32 with bit-identical parameters for every kept channel (each
    fold is summed in float64 and rounded once, by the same code); the what-if's removed channels
    output exactly 0.0 (gamma = beta = 0, act(0) = 0) and adding 0.0 is exact. So the two forwards
    sum the same non-zero terms and differ only in summation order. They are run in float64
    (u = 1.1e-16): a reordered sum of K <= 9 * 1024 terms moves by at most K u sum|terms|, and
    sum|terms| ~ sqrt(K) |sum| for random-sign terms, so <= K^1.5 u = 1e-10 relative per layer;
    over <= 161 layers with O(1) gain (weights ~ N(0, 1/fan_in)) and the head decode's exp/anchor
    scaling (x ~10 relative) that is <= 2e-7 of the output scale. Tolerance: 1e-6 of max |output|.
    A misplaced channel or a wrong fold moves outputs by O(1e-2) or more of that scale.
    """
    compact = apply_plan(model, plan).eval()
    what_if = apply_masks(model, plan).eval()
    x = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    with torch.no_grad():
        a = what_if.double()(x)
        b = copy.deepcopy(compact).double()(x)
    assert a.shape == b.shape
    torch.testing.assert_close(b, a, rtol=0, atol=1e-6 * float(a.abs().max()))
    return compact
