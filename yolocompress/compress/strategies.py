"""The channel strategies: how Network Slimming's one global threshold meets residual connections.

A strategy is three rules, and nothing else differs between them:

* ``pool(graph)`` - the convs whose channels the global threshold ranks (the others keep all);
* ``floor(n, min_keep)`` - the fewest of a conv's ``n`` channels it keeps (no conv is emptied);
* ``tie(group, masks)`` - the one mask a residual group's convs share (``None``: untied).

``STRATEGIES`` is the registry: the CLI's ``--strategy`` choices, the sweep, the demo's stage list
and the notebooks all read it. Register a new ``Strategy`` instance there and it appears in all of
them. ``LAYERS_ONLY`` is the strategy value that prunes no channels (layer pruning alone).
"""
from __future__ import annotations

import math

import numpy as np

from .errors import PlanError
from .graph import Graph
from yolocompress.registry import Registry

LAYERS_ONLY = "none"          # PruneConfig.strategy when only whole residual blocks are dropped


class Strategy:
    """One channel strategy (subclass and override the rules; ``name`` is its registry key)."""
    name = ""
    summary = ""                  # one line, for --help and the docs
    uses_min_keep = False         # whether PruneConfig.min_keep is its floor (recorded in the plan)

    def pool(self, graph: Graph) -> list[int]:
        """Convs the threshold ranks: every prunable conv."""
        return graph.prunable()

    def cuttable(self, graph: Graph) -> list[int]:
        """Convs that can lose channels under this strategy - the pool and the convs tied to it -
        which is what sparse training aimed at this strategy penalises: every prunable conv."""
        return graph.prunable()

    def floor(self, n: int, min_keep: float) -> int:
        """Channels a conv of ``n`` keeps at least: one."""
        return 1

    def tie(self, group: list[int], masks: dict[int, np.ndarray]) -> np.ndarray | None:
        """The mask every conv of a (prunable) residual group takes; None leaves them untied."""
        return None


class Conservative(Strategy):
    name = "conservative"
    summary = "never prune convs tied by shortcuts; one threshold over the rest"

    def pool(self, graph: Graph) -> list[int]:
        tied = graph.residual_tied
        return [c for c in graph.prunable() if c not in tied]

    def cuttable(self, graph: Graph) -> list[int]:
        return self.pool(graph)


class Shared(Strategy):
    name = "shared"
    summary = "a residual group takes its first conv's mask; shortcut feeders stay out of the pool"

    def pool(self, graph: Graph) -> list[int]:
        feeders = graph.shortcut_feeders
        return [c for c in graph.prunable() if c not in feeders]

    def tie(self, group, masks):
        return masks[group[0]]


class Union(Strategy):
    name = "union"
    summary = "one threshold over every prunable conv, a min-keep floor, a group keeps the union"
    uses_min_keep = True

    def floor(self, n: int, min_keep: float) -> int:
        return max(1, math.ceil(min_keep * n))

    def tie(self, group, masks):
        return np.logical_or.reduce([masks[c] for c in group])


STRATEGIES: Registry[Strategy] = Registry("channel strategy", error=PlanError)
for _s in (Conservative(), Shared(), Union()):
    STRATEGIES.register(_s)
DEFAULT_STRATEGY = Union.name  # PruneConfig's and the demo's default


def strategy_choices() -> tuple[str, ...]:
    """Every value ``PruneConfig.strategy`` accepts: the registered strategies, then layers only."""
    return (*STRATEGIES.names(), LAYERS_ONLY)
