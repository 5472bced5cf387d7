"""Importances: the score a global threshold ranks channels by.

``gamma`` is Network Slimming's |gamma|; ``gamma-per-flop`` divides it by what the channel costs
(see ``GammaPerFlop``). ``IMPORTANCES`` is the registry the CLI, sweep and demo read; each entry
carries its own ``label`` for plots and plan descriptions.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from .cost import CostModel
from .errors import PlanError
from .graph import Graph
from yolocompress.registry import Registry


class Importance:
    """One channel score (subclass; ``name`` is its registry key, ``label`` how a reader sees it)."""
    name = ""
    label = ""
    needs_cost = False            # whether ``scores`` reads the cost model (built only then)

    def scores(self, gammas: dict[int, np.ndarray], graph: Graph,
               cost: Callable[[], CostModel]) -> dict[int, np.ndarray]:
        raise NotImplementedError


class Gamma(Importance):
    """|gamma| itself: a channel whose BN scale is ~0 outputs ~a constant, so removing it changes little."""
    name, label = "gamma", "|gamma|"

    def scores(self, gammas, graph, cost):
        return gammas


class GammaPerFlop(Importance):
    """|gamma| divided by the FLOPs one channel costs (``CostModel.channel_price``), times the mean
    price over the prunable convs so that scores read in |gamma| units: the greedy knapsack order
    for a FLOPs budget (see ``plan.importance_scores``)."""
    name, label, needs_cost = "gamma-per-flop", "|gamma| per FLOP (scaled)", True

    def scores(self, gammas, graph, cost):
        relative = cost().relative_price(list(gammas), graph.prunable() or list(gammas))
        return {c: g / relative[c] for c, g in gammas.items()}


IMPORTANCES: Registry[Importance] = Registry("importance", error=PlanError)
for _i in (Gamma(), GammaPerFlop()):
    IMPORTANCES.register(_i)
