"""``PrunePlan``: what to remove, as data you can print, save and reload; ``PruneConfig``: what was
asked for; and the policies that decide (pure functions of the BN gammas and the block graph).

    gammas = bn_gammas(model)                       # |gamma| per BN conv
    graph = build_graph(model.blocks, config.protect)   # built once, from the cfg alone
    plan = plan_combined(gammas, graph, config)     # or make_plan(model, config) for all three

Channel strategies (Network Slimming on Darknet, three ways to treat residual connections):
* ``conservative`` - convs tied by shortcuts are never pruned; one global |gamma| threshold over
  the other prunable convs; a layer that would be emptied keeps its largest-|gamma| channel.
* ``shared`` - residual-tied convs are prunable; the threshold pool leaves out the convs that feed
  a shortcut; every conv of a residual group takes the mask of the group's first conv.
* ``union`` - one global threshold over every prunable conv; each layer keeps at least
  ``min_keep`` of its channels (and at least one); a residual group keeps the union of its
  members' masks.
The strategies are objects in the ``strategies.STRATEGIES`` registry (pool, floor and tie rule each).
Options on top of any strategy: ``round_to`` (channel counts a multiple of N), ``importance``
(a score of the ``importance.IMPORTANCES`` registry, see ``importance_scores``) and ``budget`` (find
the ratio that meets a ``Budget`` such as ``20%`` or ``5.2`` GFLOPs, see ``plan_combined``).
Layer pruning (``plan_layers``) drops whole residual blocks ranked by the |gamma| of the conv that
feeds each shortcut. Every index in a plan is a layer index of the *input* cfg.
"""
from __future__ import annotations

import functools
import json
import math
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

from .budget import Budget
from .cost import CostModel
from .errors import PlanError
from .graph import Graph, ProtectOptions, build_graph
from .importance import IMPORTANCES
from .strategies import DEFAULT_STRATEGY, LAYERS_ONLY, STRATEGIES, strategy_choices
from yolocompress.files import atomic_write_text
from yolocompress.darknet.model import Darknet

RANKS = ("mean", "max")
_BUDGET_WINDOW = 16       # thresholds above the bisection's also tried (dropped blocks may reorder)


@dataclass(frozen=True)
class PruneConfig:
    """Everything one prune is asked to do; the CLI, sweep, pipeline, benchmarks and notebooks
    each build one and hand it to ``plan_combined`` / ``make_plan``."""
    strategy: str = DEFAULT_STRATEGY    # a STRATEGIES name, or LAYERS_ONLY ("none"): channel rule
    ratio: float = 0.5                  # fraction in [0, 1) of the threshold pool's channels to remove
    min_keep: float = 0.01              # fraction of a conv's channels it always keeps (union only)
    drop_blocks: int = 0                # count of residual blocks to remove (layer pruning)
    rank: str = "mean"                  # mean | max: |gamma| statistic that scores a residual block
    protect: ProtectOptions = ProtectOptions()   # keep whole: the conv feeding SPP / each upsample
    round_to: int = 1                   # channels: pruned convs keep a multiple of this (1 = off)
    budget: float | str | None = None   # Budget spelling: "20%" of the unpruned model's cost, 5.2
                                        # (GFLOPs); replaces ratio (found by bisection)
    importance: str = "gamma"           # an IMPORTANCES name: the score a threshold ranks channels by
    img_size: int | None = None         # px, square input the GFLOPs are counted at (None: the cfg's width)

    def __post_init__(self):
        if isinstance(self.protect, dict):                 # as to_dict() / JSON spell it
            object.__setattr__(self, "protect", ProtectOptions(**self.protect))
        checks = [(self.strategy in strategy_choices(), f"strategy must be one of {', '.join(strategy_choices())}"
                   f", got {self.strategy!r}"),
                  (0.0 <= self.ratio < 1.0, f"ratio must be in [0, 1), got {self.ratio}"),
                  (0.0 <= self.min_keep <= 1.0, f"min_keep must be a fraction in [0, 1], got {self.min_keep}"),
                  (self.drop_blocks >= 0, f"drop_blocks must be >= 0, got {self.drop_blocks}"),
                  (self.rank in RANKS, f"rank must be 'mean' or 'max', got {self.rank!r}"),
                  (self.round_to >= 1, f"round_to must be >= 1, got {self.round_to}"),
                  (self.importance in IMPORTANCES, f"importance must be one of {', '.join(IMPORTANCES.names())}, "
                   f"got {self.importance!r}"),
                  (self.budget is None or self.strategy != LAYERS_ONLY,
                   "a budget needs a channel strategy (the threshold is what it searches)")]
        for ok, message in checks:
            if not ok:
                raise PlanError(message)
        self.parsed_budget()                       # validates the spelling

    def parsed_budget(self) -> Budget | None:
        """``budget`` as a ``Budget`` (None without one)."""
        return None if self.budget is None else Budget.parse(self.budget)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class PrunePlan:
    keep: dict[int, list[int]]              # every BN conv -> kept output channels (sorted)
    filters: dict[int, int]                 # every BN conv -> its channel count before pruning
    strategy: str = LAYERS_ONLY             # a STRATEGIES name, or LAYERS_ONLY
    ratio: float = 0.0                      # requested fraction of the threshold pool to remove
    threshold: float | None = None          # score (|gamma| unless importance says) of the first pool channel kept
    min_keep: float = 0.0                   # per-layer floor, fraction of channels (union)
    pool_size: int = 0                      # channels in the threshold pool
    pool_pruned: int = 0                    # of those, the lowest-scored ones removed (before floors/unions)
    dropped_blocks: list[int] = field(default_factory=list)   # shortcut layer of each dropped block
    dropped_layers: list[int] = field(default_factory=list)   # every removed layer (convs + shortcuts)
    source: str | None = None               # weights the plan was made from
    protect: dict = field(default_factory=lambda: asdict(ProtectOptions()))
    importance: str = "gamma"               # an IMPORTANCES name
    round_to: int = 1                       # channel counts of pruned convs are multiples of this
    target_gflops: float | None = None      # GFLOPs budget the ratio was searched for (None: ratio given)
    target_ms: float | None = None          # latency budget (ms) the ratio was searched for, by a latency model
    gflops: float | None = None             # conv GFLOPs of the compact model at img_size (counted)
    img_size: int | None = None             # px, input size of gflops / target_gflops
    pool_removed: int | None = field(default=None, compare=False)  # pool channels the final masks remove (after floors, groups,
                                            # rounding); for the shortfall line, not written to plan.json

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
        asked = (f"GFLOPs budget {self.target_gflops:.4g} -> ratio {self.ratio:.4f}" if self.target_gflops
                 else f"latency budget {self.target_ms:.4g} ms -> ratio {self.ratio:.4f}" if self.target_ms
                 else f"requested ratio {self.ratio:.2f}")
        lines = [f"strategy {self.strategy}: {asked} of the threshold pool"]
        if self.pool_size:
            score = IMPORTANCES[self.importance].label
            lines.append(f"threshold {score} {self.threshold:.4g} (ties at it broken by layer, then channel) "
                         f"removes {self.pool_pruned:,} of {self.pool_size:,} pool channels "
                         f"({self.pool_pruned / self.pool_size:.1%})")
        if self.pool_size and self.pool_removed is not None and self.pool_removed < self.pool_pruned:
            lines.append(f"short of the ratio: floors, residual groups and rounding kept back "
                         f"{self.pool_pruned - self.pool_removed:,} of them, so {self.pool_removed:,} of the pool "
                         f"({self.pool_removed / self.pool_size:.1%}) are removed where {self.ratio:.1%} was asked")
        lines.append(f"actually removed {self.channels_before - self.channels_after:,} of "
                     f"{self.channels_before:,} channels of all BN convs ({self.pruned_fraction:.1%})")
        if self.round_to > 1:
            lines.append(f"pruned convs keep a multiple of {self.round_to} channels")
        if self.dropped_blocks:
            lines.append(f"dropped {len(self.dropped_blocks)} residual blocks = "
                         f"{len(self.dropped_layers)} layers: {self.dropped_layers}")
        if self.gflops is not None:
            lines.append(f"compact model: {self.gflops:.4g} GFLOPs at {self.img_size} px")
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
        d.pop("pool_removed")
        if d["target_ms"] is None:             # plans without a latency budget read as they always did
            d.pop("target_ms")
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


# ----------------------------------------------------------------------------- gammas and scores

def bn_gammas(model: Darknet) -> dict[int, np.ndarray]:
    """|gamma| of every BN conv, by layer index."""
    return {i: m.bn.weight.detach().abs().float().cpu().numpy()
            for i, m in model.conv_layers().items() if m.bn is not None}


def importance_scores(gammas: dict[int, np.ndarray], graph: Graph, importance: str = "gamma",
                      img_size: int | None = None, cost: CostModel | None = None) -> dict[int, np.ndarray]:
    """The score a threshold ranks channels by, per BN conv.

    ``gamma``: |gamma| itself (Network Slimming: a channel whose BN scale is ~0 outputs ~a constant,
    so removing it changes little). ``gamma-per-flop``: |gamma| divided by the FLOPs one channel of
    the conv costs (its share of the conv and of every conv that reads it,
    ``CostModel.channel_price``, at ``img_size``), times the mean price over the prunable convs so
    that scores read in |gamma| units. Why: pruning to a FLOPs budget is a 0/1 knapsack - keep the
    channels whose total |gamma| (the proxy for what the network would lose) is largest while their
    FLOPs fit the budget. Keeping items in order of value per unit of weight until the budget is
    spent is the greedy knapsack: it solves the fractional relaxation exactly, so it is at most one
    channel's |gamma| from the optimum. Plain |gamma| prices a channel of a 13 x 13 1x1 conv like
    one of a 208 x 208 3x3 conv that costs ~2,000x more. Prices are those of the unpruned model
    (first order: a channel gets cheaper as its neighbours go); a strategy's floors and unions
    still apply on top.
    """
    return IMPORTANCES[importance].scores(gammas, graph, lambda: cost or CostModel(graph, img_size))


def global_threshold(values: np.ndarray, ratio: float) -> float:
    """The score of the first channel kept when the lowest ``ratio`` of ``values`` are removed."""
    if not 0.0 <= ratio < 1.0:
        raise PlanError(f"ratio must be in [0, 1), got {ratio}")
    s = np.sort(values)
    return float(s[int(ratio * len(s))]) if len(s) else math.inf


def lowest(values: np.ndarray, ratio: float) -> np.ndarray:
    """Bool (N,): the ``int(ratio * N)`` lowest ``values``, ties broken by position (the pool's
    layer order, then channel index). A threshold ``values < t`` alone would remove nothing from a
    tie at t - and after strong sparse training most of a pool can be exactly 0 - so ``ratio``
    would not remove what it says; ranking by (value, position) removes exactly that many, and
    where no tie sits at the threshold it removes the same channels as ``values < t``."""
    out = np.zeros(len(values), bool)
    out[np.argsort(values, kind="stable")[:int(ratio * len(values))]] = True
    return out


def _top(g: np.ndarray, k: int) -> np.ndarray:
    """Mask keeping the k largest entries of g."""
    mask = np.zeros(len(g), bool)
    mask[np.argsort(-g, kind="stable")[:k]] = True
    return mask


def _full_plan(graph: Graph, config: PruneConfig | None) -> PrunePlan:
    """Everything kept; the config's settings recorded (None or strategy none: a layers-only plan)."""
    plan = PrunePlan(keep={i: list(range(graph.layers[i].filters)) for i in graph.bn_convs},
                     filters={i: graph.layers[i].filters for i in graph.bn_convs}, protect=asdict(graph.protect))
    if config is not None and config.strategy != LAYERS_ONLY:
        plan.strategy, plan.ratio, plan.importance, plan.round_to = (config.strategy, config.ratio,
                                                                     config.importance, config.round_to)
        plan.min_keep = config.min_keep if STRATEGIES[config.strategy].uses_min_keep else 0.0
    return plan


def _check_protect(graph: Graph, config: PruneConfig) -> None:
    if graph.protect != config.protect:
        raise PlanError(f"the graph was built with {graph.protect} but the config asks for {config.protect}: "
                        f"build it with build_graph(blocks, config.protect)")


# ----------------------------------------------------------------------------- channel strategies

def plan_channels(gammas: dict[int, np.ndarray], graph: Graph, config: PruneConfig,
                  scores: dict[int, np.ndarray] | None = None) -> PrunePlan:
    """A channel plan by ``config.strategy`` at ``config.ratio``, with its floors, residual-group
    rule and ``round_to``. ``scores`` (default: ``importance_scores`` of ``config.importance``)
    is what the threshold ranks."""
    strategy = STRATEGIES[config.strategy]
    _check_protect(graph, config)
    if scores is None:
        scores = importance_scores(gammas, graph, config.importance, config.img_size)
    pool = strategy.pool(graph)
    values = np.concatenate([scores[c] for c in pool]) if pool else np.zeros(0)
    thr = global_threshold(values, config.ratio)
    removed = np.split(lowest(values, config.ratio), np.cumsum([len(scores[c]) for c in pool])[:-1]) if pool else []
    masks = _floors({c: ~r for c, r in zip(pool, removed)}, scores, strategy, config.min_keep)
    masks = _round_up(_tie_groups(masks, graph, strategy), scores, graph, config.round_to)
    plan = _full_plan(graph, config)
    plan.threshold, plan.pool_size, plan.pool_pruned = thr, int(values.size), int(config.ratio * values.size) if pool else 0
    for c, m in masks.items():
        plan.keep[c] = np.flatnonzero(m).tolist()
    plan.pool_removed = int(sum(len(masks[c]) - int(masks[c].sum()) for c in pool))
    return plan


def _floors(masks: dict, scores: dict, strategy, min_keep: float) -> dict:
    """No conv is emptied: each keeps at least ``strategy.floor`` channels (its top scores)."""
    for c, m in masks.items():
        floor = strategy.floor(len(m), min_keep)
        if m.sum() < floor:
            masks[c] = m | _top(scores[c], floor)
    return masks


def _tie_groups(masks: dict, graph: Graph, strategy) -> dict:
    """Residual groups keep one mask, the strategy's ``tie`` of their members' masks."""
    prunable = set(graph.prunable())
    for group in graph.groups:
        tied = strategy.tie(group, masks) if group[0] in prunable else None
        if tied is None:
            continue
        for c in group:
            masks[c] = tied
    return masks


def _round_up(masks: dict, scores: dict, graph: Graph, n: int) -> dict:
    """Every pruned conv keeps a multiple of ``n`` channels (never more than it has): the removed
    channels with the highest scores come back. A residual group is rounded once, ranking by its
    members' best score, so its members keep identical masks."""
    if n == 1:
        return masks
    group_of = {c: g for g in graph.groups for c in g}
    for c in list(masks):
        m = masks[c]
        want = min(len(m), math.ceil(m.sum() / n) * n)
        if m.sum() == want:
            continue
        members = [k for k in group_of.get(c, [c]) if k in masks]
        best = np.max([scores[k] for k in members], axis=0)
        removed = np.flatnonzero(~m)
        m = m.copy()
        m[removed[np.argsort(-best[removed], kind="stable")[:want - m.sum()]]] = True
        for k in members:
            masks[k] = m
    return masks


# ----------------------------------------------------------------------------- layer pruning

def rank_blocks(gammas: dict[int, np.ndarray], graph: Graph, rank: str = "mean",
                keep: dict[int, list[int]] | None = None) -> pd.DataFrame:
    """Residual blocks with their score: mean (or max) |gamma| of the conv feeding the shortcut,
    over its kept channels when ``keep`` is given. Lowest score first."""
    if rank not in RANKS:
        raise PlanError(f"rank must be 'mean' or 'max', got {rank!r}")
    rows = []
    for blk in graph.residual_blocks:
        conv = blk.convs[1]
        g = gammas[conv][keep[conv]] if keep is not None else gammas[conv]
        score = float(g.mean() if rank == "mean" else g.max()) if len(g) else 0.0
        rows.append({"shortcut": blk.shortcut, "convs": list(blk.convs), "score": score})
    return pd.DataFrame(rows, columns=["shortcut", "convs", "score"]).sort_values(
        "score", kind="stable").reset_index(drop=True)


def plan_layers(gammas: dict[int, np.ndarray], graph: Graph, config: PruneConfig,
                base: PrunePlan | None = None) -> PrunePlan:
    """Drop the ``config.drop_blocks`` residual blocks with the lowest ``config.rank`` score, on top
    of ``base`` (a channel plan; None: nothing else pruned)."""
    n, available = config.drop_blocks, len(graph.residual_blocks)
    if not 0 <= n <= available:
        raise PlanError(f"cannot drop {n} residual blocks: this model has {available} droppable blocks")
    plan = replace(base, keep=dict(base.keep), filters=dict(base.filters)) if base else _full_plan(graph, None)
    ranked = rank_blocks(gammas, graph, config.rank, plan.keep)
    chosen = sorted(ranked["shortcut"].head(n).tolist())
    by_shortcut = {b.shortcut: b for b in graph.residual_blocks}
    plan.dropped_blocks = chosen
    plan.dropped_layers = sorted(l for s in chosen for l in by_shortcut[s].layers)
    for s in chosen:
        for c in by_shortcut[s].convs:
            plan.keep[c] = []
    return plan


# ----------------------------------------------------------------------------- whole plans

def plan_combined(gammas: dict[int, np.ndarray], graph: Graph, config: PruneConfig,
                  cost: CostModel | None = None) -> PrunePlan:
    """Channel plan (any strategy, or ``LAYERS_ONLY``), then ``config.drop_blocks`` residual blocks
    dropped, ranked on the channels that survive - one plan, in input-cfg indices, with its
    GFLOPs counted. With ``config.budget`` the ratio is the one whose plan meets the budget as
    ``cost`` measures it (default: ``CostModel(graph, config.img_size)``, GFLOPs)."""
    _check_protect(graph, config)
    cost = cost or CostModel(graph, config.img_size)
    if config.budget is None:
        plan = _plan_at(gammas, graph, config)
    else:
        plan = _plan_to_budget(gammas, graph, config, cost)
    plan.gflops, plan.img_size = cost.gflops(plan), cost.img_size
    return plan


def _plan_at(gammas, graph: Graph, config: PruneConfig, scores=None) -> PrunePlan:
    if config.strategy == LAYERS_ONLY:
        return plan_layers(gammas, graph, config)
    base = plan_channels(gammas, graph, config, scores)
    return plan_layers(gammas, graph, config, base) if config.drop_blocks else base


def _plan_to_budget(gammas, graph: Graph, config: PruneConfig, cost: CostModel) -> PrunePlan:
    """Bisection over k, the number of pool channels below the threshold (the k-th smallest score):
    the smallest k whose plan fits the budget, i.e. the plan with the most GFLOPs that fit. Plans
    only lose channels as k grows (thresholds, floors, unions and rounding are all monotone), so
    GFLOPs fall with k - except that the dropped blocks, ranked on the survivors, may change; the
    ``_BUDGET_WINDOW`` thresholds above the bisection's are therefore tried too. The result is as
    close to the budget as one threshold step allows (one channel, or a group's, or N with round_to)."""
    target = config.parsed_budget().resolve(cost)
    scores = importance_scores(gammas, graph, config.importance, cost=cost)
    n = sum(len(scores[c]) for c in STRATEGIES[config.strategy].pool(graph))
    if n == 0:
        raise PlanError(f"strategy {config.strategy} has no prunable channels in this model: no budget to search")

    def probe(k: int) -> PrunePlan:      # ratio (k + 0.5) / n puts the threshold at sorted[k]
        return _plan_at(gammas, graph, replace(config, ratio=(k + 0.5) / n, budget=None), scores)

    @functools.cache
    def flops(k: int) -> float:        # in cost.unit (GFLOPs for the default cost model)
        return cost.measure(probe(k))

    lo, hi = 0, n - 1
    if flops(hi) > target:
        raise PlanError(f"cannot reach {target:.4g} {cost.unit} with strategy {config.strategy} and "
                        f"{config.drop_blocks} dropped blocks: the smallest plan has {flops(hi):.4g}")
    while lo < hi:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if flops(mid) <= target else (mid + 1, hi)
    best = max((k for k in range(max(0, hi - _BUDGET_WINDOW), hi + 1) if flops(k) <= target), key=flops)
    plan = probe(best)
    plan.ratio = best / n
    if cost.unit == "ms":
        plan.target_ms = target
    else:
        plan.target_gflops = target
    return plan


def make_plan(model: Darknet, config: PruneConfig, graph: Graph | None = None,
              source: str | None = None, cost: CostModel | None = None) -> PrunePlan:
    """The plan for ``model``: its gammas and (unless given) its graph, then ``plan_combined``
    (``cost``: what a budget is measured in, e.g. ``deploy.latency_model.LatencyModel`` for ms)."""
    graph = graph or build_graph(model.blocks, config.protect)
    plan = plan_combined(bn_gammas(model), graph, config, cost)
    plan.source = source
    return plan


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
