"""What-if explorations of one (sparse) model, without any training: plan a prune, evaluate its
masked what-if, cut the compact model and count its cost. Behind the notebooks' sliders (ratio,
|gamma| threshold) and the depth-vs-width latency figure, so notebooks hold no such loop.

Plans are made through ``plan.make_plan`` only (channel strategy, ratio, dropped blocks).
"""
from __future__ import annotations

from dataclasses import replace
from typing import Sequence

import numpy as np
import pandas as pd
import torch

from yolocompress.data.dataset import DataConfig
from yolocompress.compress.graph import build_graph
from yolocompress.darknet.model import Darknet
from yolocompress.compress.plan import PruneConfig, bn_gammas, make_plan, plan_combined
from yolocompress.compress.strategies import DEFAULT_STRATEGY, LAYERS_ONLY, STRATEGIES
from yolocompress.deploy.footprint import gflops, median_p90, time_interleaved, torch_runner
from yolocompress.compress.surgery import apply_plan
from .sweep import plan_row


def pool_gammas(model: Darknet, strategy: str = DEFAULT_STRATEGY) -> np.ndarray:
    """|gamma| of ``strategy``'s threshold pool (``Strategy.pool``; the default strategy's: every
    prunable BN conv), its convs' channels in order (n,)."""
    gam = bn_gammas(model)
    pool = STRATEGIES[strategy].pool(build_graph(model.blocks))
    return np.concatenate([gam[c] for c in pool]) if pool else np.zeros(0)


def ratio_at_threshold(model: Darknet, threshold: float, strategy: str = DEFAULT_STRATEGY) -> float:
    """The ``strategy`` ratio whose global threshold marks exactly the pool channels with |gamma| <
    threshold (the plan then keeps a few of them back: the per-layer floor, the residual groups' ties)."""
    g = pool_gammas(model, strategy)
    return float((g < threshold).mean()) if len(g) else 0.0


class WhatIf:
    """Cached what-if results of one model: ``w(ratio)`` -> {"plan", "ratio", "pruned", "params",
    "GFLOPs", "map50", "map"}, each ratio planned, evaluated and counted once.
    ``w.at_threshold(t)`` is the prune whose threshold marks the pool channels with |gamma| < t."""

    def __init__(self, model: Darknet, data: DataConfig, strategy: str = DEFAULT_STRATEGY, blocks: int = 0,
                 img_size: int = 128, min_keep: float = 0.01, max_images: int | None = None):
        self.model, self.data, self.strategy, self.blocks = model.eval(), data, strategy, blocks
        self.img_size, self.min_keep, self.max_images = img_size, min_keep, max_images
        self.graph, self.gammas = build_graph(model.blocks), bn_gammas(model)   # once: every ratio uses them
        self.cache: dict[float, dict] = {}

    def __call__(self, ratio: float) -> dict:
        ratio = round(float(ratio), 6)
        if ratio not in self.cache:
            config = PruneConfig(strategy=self.strategy, ratio=ratio, drop_blocks=self.blocks, min_keep=self.min_keep,
                                 img_size=self.img_size)
            plan = plan_combined(self.gammas, self.graph, config)
            self.cache[ratio] = {"plan": plan, "ratio": ratio,
                                 **plan_row(self.model, self.graph, plan, self.data, self.max_images)}
        return self.cache[ratio]

    def at_threshold(self, threshold: float) -> dict:
        """The prune whose global threshold marks exactly the pool channels with |gamma| < ``threshold``."""
        return {**self(ratio_at_threshold(self.model, threshold, self.strategy)), "threshold": threshold}

    def table(self, ratios: Sequence[float]) -> pd.DataFrame:
        """One row per ratio (everything but the plan)."""
        return pd.DataFrame([{k: v for k, v in self(r).items() if k != "plan"} for r in ratios])


def depth_vs_width(model: Darknet, base: PruneConfig, channel_ratios: Sequence[float], block_counts: Sequence[int],
                   combined_ratios: Sequence[float], rounds: int = 3, runs: int = 5, threads: int = 2,
                   progress: bool = True) -> pd.DataFrame:
    """GFLOPs, layer count and CPU latency (batch 1, ``threads`` threads) of compact models cut from
    ``model``: ``base.strategy`` channel-only prunes at ``channel_ratios``, layer-only prunes of
    ``block_counts`` blocks, and ``base.strategy`` at ``combined_ratios`` + ``base.drop_blocks`` blocks
    (``base`` also gives min_keep and img_size). Latency is the median of ``rounds`` x ``runs`` timings
    per model, interleaved (``profile.time_interleaved``: each round times every model once), so a
    slow moment of the machine hits every model alike."""
    strategy, blocks, img_size = base.strategy, base.drop_blocks, base.img_size
    specs = [("original", None, 0.0, 0)] + [("channels only", strategy, r, 0) for r in channel_ratios] \
        + [("layers only", LAYERS_ONLY, 0.0, b) for b in block_counts] \
        + [("combined", strategy, r, blocks) for r in combined_ratios]
    graph = build_graph(model.blocks)
    plans = [None if s is None else make_plan(model, replace(base, strategy=s, ratio=r, drop_blocks=b), graph)
             for _, s, r, b in specs]
    models = [model.eval() if p is None else apply_plan(model, p, graph).eval() for p in plans]
    x = torch.rand(1, model.net.channels, img_size, img_size)           # (1, 3, S, S)
    times = time_interleaved({j: torch_runner(m, x) for j, m in enumerate(models)}, runs=rounds * runs,
                             threads=threads, progress=progress)
    return pd.DataFrame([{"kind": kind, "strategy": s or "-", "ratio": r, "blocks": b, "layers": len(m.layers),
                          "GFLOPs": gflops(m, img_size), "ms": median_p90(times[j])[0]}
                         for j, ((kind, s, r, b), m) in enumerate(zip(specs, models))])
