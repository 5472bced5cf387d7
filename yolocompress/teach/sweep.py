"""Sweeps over one ``PruneConfig`` knob, each returning a table (one row per setting):

* ``sensitivity_sweep`` - how mAP (of the what-if, before any finetune) and GFLOPs fall as the
  prune ratio grows: the curve that tells you how far you can prune a given sparse model;
* ``importance_sweep`` - plain |gamma| against the cost-aware |gamma| per FLOP, each pruned to
  the same GFLOPs budgets, so the two rankings are compared at equal cost;
* ``round_to_table`` - what hardware-friendly channel counts (``round_to``) cost in GFLOPs.

The graph and the gammas are computed once per sweep; every plan is a pure function of them.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Sequence

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from yolocompress.data.dataset import DataConfig
from yolocompress.compress.graph import Graph, build_graph
from yolocompress.darknet.model import Darknet
from yolocompress.compress.importance import IMPORTANCES
from yolocompress.compress.plan import PlanError, PruneConfig, PrunePlan, bn_gammas, plan_combined
from yolocompress.compress.strategies import LAYERS_ONLY
from yolocompress.deploy.footprint import count_params
from yolocompress.compress.surgery import apply_masks, apply_plan
from yolocompress.darknet.netinput import resolve_input
from yolocompress.engine.evaluate import evaluate_at


def parse_ratios(spec: str) -> list[float]:
    """'0.1:0.95:0.05' -> [0.1, 0.15, ..., 0.95]; '0.3,0.5,0.7' -> those values."""
    try:
        parts = [float(v) for v in spec.split(":" if ":" in spec else ",")]
    except ValueError:
        raise PlanError(f"ratios '{spec}': expected start:stop:step or a comma list of fractions") from None
    if ":" in spec:
        if len(parts) != 3 or not parts[2] > 0 or not parts[0] <= parts[1]:
            raise PlanError(f"ratios '{spec}': expected start:stop:step with start <= stop and step > 0 "
                            f"(found step {parts[-1]:g})")
        start, stop, step = parts
        parts = [round(v, 6) for v in np.arange(start, stop + step / 2, step)]
    ratios = parts
    bad = [r for r in ratios if not 0 <= r < 1]
    if bad:
        raise PlanError(f"ratios '{spec}': expected fractions in [0, 1), found {bad[0]:g}")
    return ratios


def kept_gamma_share(plan: PrunePlan, gammas: dict[int, np.ndarray]) -> float:
    """Sum of |gamma| over kept channels / over all channels: the objective a FLOPs-budgeted
    knapsack on |gamma| maximises (dropped blocks count as removed)."""
    total = sum(float(g.sum()) for g in gammas.values())
    return sum(float(gammas[c][plan.keep[c]].sum()) for c in gammas) / total if total else 1.0


def plan_row(model: Darknet, graph: Graph, plan: PrunePlan, data: DataConfig | None, max_images: int | None) -> dict:
    """Measured numbers of one plan: pruned share, params and GFLOPs of the compact model, and
    (with ``data``) the what-if's mAP at the plan's input size."""
    compact = apply_plan(model, plan, graph)
    row = {"pruned": plan.pruned_fraction, "params": count_params(compact), "GFLOPs": plan.gflops}
    if data is not None:
        m = evaluate_at(apply_masks(model, plan, graph), data, resolve_input(model, plan.img_size), max_images=max_images)
        row.update(map50=m.map50, map=m.map)
    return row


def sensitivity_sweep(model: Darknet, data: DataConfig, config: PruneConfig, ratios: Sequence[float],
                      img_size: int | None = None, max_images: int | None = None, progress: bool = True) -> pd.DataFrame:
    """One row per ratio (``config`` with that ratio): pruned fraction, params, GFLOPs of the
    compact model, what-if mAP; the first row is the unpruned model."""
    config = replace(config, img_size=img_size, budget=None)
    graph, gammas = build_graph(model.blocks, config.protect), bn_gammas(model)
    full = plan_combined(gammas, graph, replace(config, strategy=LAYERS_ONLY, drop_blocks=0))
    rows = [{"ratio": 0.0, **plan_row(model, graph, full, data, max_images)}]
    for r in tqdm(ratios, desc=f"sweep {config.strategy}", disable=not progress):
        if r == 0.0:
            continue
        plan = plan_combined(gammas, graph, replace(config, ratio=r))
        rows.append({"ratio": r, **plan_row(model, graph, plan, data, max_images)})
    return pd.DataFrame(rows)


def importance_sweep(model: Darknet, config: PruneConfig, budgets: Sequence[float | str],
                     data: DataConfig | None = None, max_images: int | None = None,
                     progress: bool = True) -> pd.DataFrame:
    """Each importance of ``IMPORTANCES`` pruned to each GFLOPs budget (``config`` otherwise):
    achieved GFLOPs, params, kept |gamma| share and (with ``data``) the what-if's mAP, so the
    rankings meet at equal cost. Budgets as ``PruneConfig.budget`` takes them (5.0 or "20%")."""
    graph, gammas = build_graph(model.blocks, config.protect), bn_gammas(model)
    rows = []
    todo = [(imp, b) for b in budgets for imp in IMPORTANCES]
    for imp, b in tqdm(todo, desc="importance sweep", disable=not progress):
        plan = plan_combined(gammas, graph, replace(config, importance=imp, budget=b))
        rows.append({"importance": imp, "budget": str(b), "target GFLOPs": plan.target_gflops,
                     "ratio": plan.ratio, "kept |gamma|": kept_gamma_share(plan, gammas),
                     **plan_row(model, graph, plan, data, max_images)})
    return pd.DataFrame(rows)


def round_to_table(model: Darknet, config: PruneConfig, values: Sequence[int] = (1, 8, 16)) -> pd.DataFrame:
    """GFLOPs and params of ``config``'s compact model for each ``round_to``, with the cost of
    rounding relative to ``round_to=1`` (structure only: no data, no timing)."""
    graph, gammas = build_graph(model.blocks, config.protect), bn_gammas(model)
    rows = []
    for n in values:
        plan = plan_combined(gammas, graph, replace(config, round_to=n))
        rows.append({"round_to": n, **plan_row(model, graph, plan, None, None)})
    df = pd.DataFrame(rows)
    df["GFLOPs vs round_to=1"] = df["GFLOPs"] / float(df.loc[df["round_to"] == 1, "GFLOPs"].iloc[0]) \
        if (df["round_to"] == 1).any() else np.nan
    return df


def largest_ratio_within(df: pd.DataFrame, max_drop: float) -> float:
    """The largest swept ratio whose what-if mAP@0.5 is within ``max_drop`` of the unpruned one."""
    base = float(df.loc[df["ratio"] == 0.0, "map50"].iloc[0])
    ok = df[df["map50"] >= base - max_drop]
    return float(ok["ratio"].max())
