"""``PrunePlan``: what to remove, as data you can print, save and reload; and the policies that
decide it (pure functions of the model's BN gammas and the block graph).

Channel strategies (Network Slimming on Darknet, three ways to treat residual connections):
* ``conservative`` - convs tied by shortcuts are never pruned; one global |gamma| threshold over
  the other prunable convs; a layer that would be emptied keeps its largest-|gamma| channel.
* ``shared`` - residual-tied convs are prunable; the threshold pool leaves out the convs that feed
  a shortcut; every conv of a residual group takes the mask of the group's first conv.
* ``union`` - one global threshold over every prunable conv; each layer keeps at least
  ``min_keep`` of its channels (and at least one); a residual group keeps the union of its
  members' masks.
Layer pruning (``plan_layers``) drops whole residual blocks ranked by the |gamma| of the conv that
feeds each shortcut. Every index in a plan is a layer index of the *input* cfg.
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .graph import Graph, ProtectOptions, build_graph
from .io import atomic_write_text
from .model import Darknet

STRATEGIES = ("conservative", "shared", "union")


class PlanError(ValueError):
    """A plan that does not fit its model, or a request no plan can satisfy."""


@dataclass
class PrunePlan:
    keep: dict[int, list[int]]              # every BN conv -> kept output channels (sorted)
    filters: dict[int, int]                 # every BN conv -> its channel count before pruning
    strategy: str = "none"                  # conservative | shared | union | none
    ratio: float = 0.0                      # requested fraction of the threshold pool to remove
    threshold: float | None = None          # |gamma| below which a pool channel is removed
    min_keep: float = 0.0                   # per-layer floor, fraction of channels (union)
    pool_size: int = 0                      # channels in the threshold pool
    pool_pruned: int = 0                    # of those, removed by the threshold (before floors/unions)
    dropped_blocks: list[int] = field(default_factory=list)   # shortcut layer of each dropped block
    dropped_layers: list[int] = field(default_factory=list)   # every removed layer (convs + shortcuts)
    source: str | None = None               # weights the plan was made from
    protect: dict = field(default_factory=lambda: asdict(ProtectOptions()))

    # -- derived numbers -----------------------------------------------------------------------
    @property
    def channels_before(self) -> int:
        return sum(self.filters.values())

    @property
    def channels_after(self) -> int:
        return sum(len(v) for v in self.keep.values())

    @property
    def pruned_fraction(self) -> float:
        """Removed BN-conv channels / all BN-conv channels (dropped blocks included)."""
        return 1 - self.channels_after / max(1, self.channels_before)

    def describe(self) -> str:
        """One paragraph: requested vs actual, with denominators (they differ, and that confuses)."""
        lines = [f"strategy {self.strategy}: requested ratio {self.ratio:.2f} of the threshold pool"]
        if self.pool_size:
            lines.append(f"threshold |gamma| < {self.threshold:.4g} removes {self.pool_pruned:,} of "
                         f"{self.pool_size:,} pool channels ({self.pool_pruned / self.pool_size:.1%})")
        lines.append(f"actually removed {self.channels_before - self.channels_after:,} of "
                     f"{self.channels_before:,} channels of all BN convs ({self.pruned_fraction:.1%})")
        if self.dropped_blocks:
            lines.append(f"dropped {len(self.dropped_blocks)} residual blocks = "
                         f"{len(self.dropped_layers)} layers: {self.dropped_layers}")
        return "; ".join(lines[:2]) + ("\n" + "\n".join(lines[2:]) if len(lines) > 2 else "")

    def summary(self) -> pd.DataFrame:
        """Per BN conv: layer, before, after, % kept, dropped."""
        dropped = set(self.dropped_layers)
        rows = [{"layer": i, "before": self.filters[i], "after": len(self.keep[i]),
                 "% kept": 100.0 * len(self.keep[i]) / self.filters[i], "dropped": i in dropped}
                for i in sorted(self.filters)]
        return pd.DataFrame(rows)

    # -- JSON ----------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        d = asdict(self)
        d["keep"] = {str(k): v for k, v in sorted(self.keep.items())}
        d["filters"] = {str(k): v for k, v in sorted(self.filters.items())}
        return {"format": "yolocompress-plan/1", **d}

    @classmethod
    def from_dict(cls, d: dict) -> "PrunePlan":
        d = {k: v for k, v in d.items() if k != "format"}
        d["keep"] = {int(k): list(v) for k, v in d["keep"].items()}
        d["filters"] = {int(k): int(v) for k, v in d["filters"].items()}
        return cls(**d)

    def save(self, path: str | Path) -> None:
        atomic_write_text(path, json.dumps(self.to_dict(), indent=1))

    @classmethod
    def load(cls, path: str | Path) -> "PrunePlan":
        try:
            return cls.from_dict(json.loads(Path(path).read_text()))
        except (OSError, json.JSONDecodeError, KeyError, TypeError) as e:
            raise PlanError(f"{path}: not a readable prune plan ({e})") from None


# ----------------------------------------------------------------------------- gammas

def bn_gammas(model: Darknet) -> dict[int, np.ndarray]:
    """|gamma| of every BN conv, by layer index."""
    return {i: m.bn.weight.detach().abs().float().cpu().numpy()
            for i, m in model.conv_layers().items() if m.bn is not None}


def global_threshold(values: np.ndarray, ratio: float) -> float:
    """The |gamma| below which the lowest ``ratio`` of ``values`` lie (channels < t are removed)."""
    if not 0.0 <= ratio < 1.0:
        raise PlanError(f"ratio must be in [0, 1), got {ratio}")
    s = np.sort(values)
    return float(s[int(ratio * len(s))]) if len(s) else math.inf


def _top(g: np.ndarray, k: int) -> np.ndarray:
    """Mask keeping the k largest entries of g."""
    mask = np.zeros(len(g), bool)
    mask[np.argsort(-g, kind="stable")[:k]] = True
    return mask


def _full_plan(model: Darknet, graph: Graph, strategy: str, ratio: float, source) -> PrunePlan:
    return PrunePlan(keep={i: list(range(graph.layers[i].filters)) for i in graph.bn_convs},
                     filters={i: graph.layers[i].filters for i in graph.bn_convs}, strategy=strategy,
                     ratio=ratio, source=source)


# ----------------------------------------------------------------------------- channel strategies

def plan_channels(model: Darknet, strategy: str, ratio: float, min_keep: float = 0.01,
                  protect: ProtectOptions = ProtectOptions(), source: str | None = None) -> PrunePlan:
    """A channel plan for ``model`` by one of ``STRATEGIES`` at the requested ``ratio``."""
    if strategy not in STRATEGIES:
        raise PlanError(f"strategy must be one of {', '.join(STRATEGIES)}, got {strategy!r}")
    if not 0.0 <= min_keep <= 1.0:
        raise PlanError(f"min_keep must be a fraction in [0, 1], got {min_keep}")
    graph = build_graph(model.blocks, protect)
    gam = bn_gammas(model)
    plan = _full_plan(model, graph, strategy, ratio, source)
    plan.protect, plan.min_keep = asdict(protect), (min_keep if strategy == "union" else 0.0)
    tied, feeders = graph.residual_tied, graph.shortcut_feeders
    prunable = graph.prunable()
    if strategy == "conservative":
        pool = [c for c in prunable if c not in tied]
    elif strategy == "shared":
        pool = [c for c in prunable if c not in feeders]
    else:
        pool = prunable
    values = np.concatenate([gam[c] for c in pool]) if pool else np.zeros(0)
    thr = global_threshold(values, ratio)
    plan.threshold, plan.pool_size = thr, int(values.size)
    plan.pool_pruned = int((values < thr).sum())
    masks = {c: gam[c] >= thr for c in pool}
    for c, m in masks.items():
        floor = max(1, math.ceil(min_keep * len(m))) if strategy == "union" else 1
        if m.sum() < floor:
            masks[c] = m | _top(gam[c], floor)
    for group in graph.groups:
        if group[0] not in prunable:
            continue
        if strategy == "shared":
            for c in group:
                masks[c] = masks[group[0]]
        elif strategy == "union":
            union = np.logical_or.reduce([masks[c] for c in group])
            for c in group:
                masks[c] = union
    for c, m in masks.items():
        plan.keep[c] = np.flatnonzero(m).tolist()
    return plan


# ----------------------------------------------------------------------------- layer pruning

def rank_blocks(model: Darknet, graph: Graph | None = None, rank: str = "mean",
                keep: dict[int, list[int]] | None = None) -> pd.DataFrame:
    """Residual blocks with their score: mean (or max) |gamma| of the conv feeding the shortcut,
    over its kept channels when ``keep`` is given. Lowest score first."""
    if rank not in ("mean", "max"):
        raise PlanError(f"rank must be 'mean' or 'max', got {rank!r}")
    graph = graph or build_graph(model.blocks)
    gam = bn_gammas(model)
    rows = []
    for blk in graph.residual_blocks:
        conv = blk.convs[1]
        g = gam[conv][keep[conv]] if keep is not None else gam[conv]
        score = float(g.mean() if rank == "mean" else g.max()) if len(g) else 0.0
        rows.append({"shortcut": blk.shortcut, "convs": list(blk.convs), "score": score})
    return pd.DataFrame(rows).sort_values("score", kind="stable").reset_index(drop=True)


def plan_layers(model: Darknet, n: int, rank: str = "mean", base: PrunePlan | None = None,
                source: str | None = None) -> PrunePlan:
    """Drop the ``n`` residual blocks with the lowest score (on top of ``base``, a channel plan)."""
    graph = build_graph(model.blocks, ProtectOptions(**base.protect) if base else ProtectOptions())
    available = len(graph.residual_blocks)
    if not 0 <= n <= available:
        raise PlanError(f"cannot drop {n} residual blocks: this model has {available} droppable blocks")
    plan = PrunePlan(**{**asdict(base), "keep": dict(base.keep), "filters": dict(base.filters)}) if base \
        else _full_plan(model, graph, "none", 0.0, source)
    ranked = rank_blocks(model, graph, rank, plan.keep)
    chosen = sorted(ranked["shortcut"].head(n).tolist())
    by_shortcut = {b.shortcut: b for b in graph.residual_blocks}
    plan.dropped_blocks = chosen
    plan.dropped_layers = sorted(l for s in chosen for l in by_shortcut[s].layers)
    for s in chosen:
        for c in by_shortcut[s].convs:
            plan.keep[c] = []
    return plan


def plan_combined(model: Darknet, strategy: str, ratio: float, blocks: int, rank: str = "mean",
                  min_keep: float = 0.01, protect: ProtectOptions = ProtectOptions(),
                  source: str | None = None) -> PrunePlan:
    """Channel plan (any strategy, or ``"none"``), then ``blocks`` residual blocks dropped, ranked
    on the channels that survive - one plan, in input-cfg indices."""
    if strategy == "none":
        return plan_layers(model, blocks, rank, source=source)
    base = plan_channels(model, strategy, ratio, min_keep, protect, source)
    return plan_layers(model, blocks, rank, base) if blocks else base


def check_plan(plan: PrunePlan, graph: Graph) -> None:
    """Raise PlanError unless ``plan`` fits ``graph``: every BN conv listed with valid indices,
    protected convs whole, residual-group members (not dropped) with identical masks."""
    bn = set(graph.bn_convs)
    if set(plan.keep) != bn:
        missing, extra = sorted(bn - set(plan.keep)), sorted(set(plan.keep) - bn)
        raise PlanError(f"plan does not fit the model: BN convs missing {missing[:5]}, unknown {extra[:5]}")
    dropped = set(plan.dropped_layers)
    droppable = {s: b for s, b in ((b.shortcut, b) for b in graph.residual_blocks)}
    for s in plan.dropped_blocks:
        if s not in droppable:
            raise PlanError(f"layer {s} is not the shortcut of a droppable residual block")
    for c in bn:
        n = graph.layers[c].filters
        k = plan.keep[c]
        if c in dropped:
            continue
        if not k or sorted(set(k)) != k or k[0] < 0 or k[-1] >= n:
            raise PlanError(f"layer {c}: kept channels must be a sorted, non-empty subset of 0..{n - 1}")
        if c in graph.protected and len(k) != n:
            raise PlanError(f"layer {c} cannot be pruned: {graph.protected[c]}")
    for group in graph.groups:
        masks = {tuple(plan.keep[c]) for c in group if c not in dropped}
        if len(masks) > 1:
            raise PlanError(f"residual group {group} must keep the same channels in every conv")


def masked_gammas(model: Darknet, plan: PrunePlan) -> dict[int, np.ndarray]:
    """|gamma| of the kept channels only (for plots and layer ranking after a channel prune)."""
    return {c: g[plan.keep[c]] for c, g in bn_gammas(model).items()}

