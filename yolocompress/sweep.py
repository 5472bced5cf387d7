"""Sensitivity sweep: how mAP (of the what-if, before any finetune) and GFLOPs fall as the prune
ratio grows - the curve that tells you how far you can prune a given sparse model."""
from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from .data import DataConfig
from .model import Darknet
from .plan import PlanError, plan_channels
from .profile import count_params, gflops
from .surgery import apply_masks, apply_plan
from .evaluate import evaluate_on


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


def sensitivity_sweep(model: Darknet, data: DataConfig, strategy: str, ratios: Sequence[float],
                      img_size: int = 128, min_keep: float = 0.01, max_images: int | None = None,
                      progress: bool = True) -> pd.DataFrame:
    """One row per ratio: pruned fraction, params, GFLOPs of the compact model, what-if mAP."""
    base = evaluate_on(model, data, img_size=img_size, max_images=max_images)
    rows = [{"ratio": 0.0, "pruned": 0.0, "params": count_params(model), "GFLOPs": gflops(model, img_size),
             "map50": base.map50, "map": base.map}]
    for r in tqdm(ratios, desc=f"sweep {strategy}", disable=not progress):
        if r == 0.0:
            continue
        plan = plan_channels(model, strategy, r, min_keep)
        compact = apply_plan(model, plan)
        m = evaluate_on(apply_masks(model, plan), data, img_size=img_size, max_images=max_images)
        rows.append({"ratio": r, "pruned": plan.pruned_fraction, "params": count_params(compact),
                     "GFLOPs": gflops(compact, img_size), "map50": m.map50, "map": m.map})
    return pd.DataFrame(rows)


def largest_ratio_within(df: pd.DataFrame, max_drop: float) -> float:
    """The largest swept ratio whose what-if mAP@0.5 is within ``max_drop`` of the unpruned one."""
    base = float(df.loc[df["ratio"] == 0.0, "map50"].iloc[0])
    ok = df[df["map50"] >= base - max_drop]
    return float(ok["ratio"].max())
