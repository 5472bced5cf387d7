"""How each layer kind moves channels through pruning: one table, ``RULES``, keyed by block class.

Pruning needs three facts about every layer kind, and a wrong guess is silent (a removed
channel's constant folded into the wrong consumer channels still runs), so each kind states them
here and a kind without a row is refused (:func:`rule_for` raises) instead of passed through:

* ``inputs(block, i)``: the layers whose output layer ``i`` reads, the implicit previous one
  included (``graph._consumers``);
* ``channel_map(block, i, prev, maps, space_of)``: its output channels as ``(space, channel)``
  rows, from the previous layer's map ``prev``, every earlier layer's ``maps`` and ``space_of``
  (conv or shortcut layer -> its space) (``graph._channel_maps``);
* ``fold(block, i, state)``: surgery's constant propagation - ``(kept, constant)``, which of its
  output channels survive the plan and the constant each one loses (``surgery._prepare``).

Convs start a space (and its constants), shortcuts sum theirs, routes concatenate and slice
theirs, maxpools, upsamples and yolo heads pass them on (max(x + c) = max(x) + c).
A new layer kind: add its block class to ``darknet.cfg`` and its row here.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from yolocompress.darknet.cfg import (Block, Conv, MaxPool, Route, Shortcut, Upsample, Yolo, lookup, route_inputs,
                                      shortcut_source)


class LayerRuleError(ValueError):
    """A layer whose block class has no row in ``RULES``: pruning cannot follow its channels."""


@dataclass
class FoldState:
    """What surgery's constant propagation knows when it reaches a layer (earlier layers done)."""
    kept: list                    # per earlier layer: bool mask of its surviving output channels
    const: list                   # per earlier layer: the constant each output channel loses (0 if none)
    input_kept: np.ndarray        # the image's channels: all kept ...
    input_const: np.ndarray       # ... and none constant
    dropped: set                  # layers the plan removes
    mask: Callable                # (i) -> layer i's surviving channels, from its channel map and the plan
    removed_constant: Callable    # (i, removed) -> act(beta) of conv i's removed channels, else 0

    def prev_kept(self, i: int) -> np.ndarray:
        return self.kept[i - 1] if i else self.input_kept

    def prev_const(self, i: int) -> np.ndarray:
        return self.const[i - 1] if i else self.input_const


@dataclass(frozen=True)
class LayerRule:
    """One layer kind's row: see the module docstring for the three signatures."""
    inputs: Callable
    channel_map: Callable
    fold: Callable


def _previous(b: Block, i: int) -> list[int]:
    return [i - 1] if i > 0 else []


def _passed_map(b: Block, i: int, prev: np.ndarray, maps: list, space_of: dict) -> np.ndarray:
    return prev


def _passed_fold(b: Block, i: int, s: FoldState) -> tuple[np.ndarray, np.ndarray]:
    return s.prev_kept(i), s.prev_const(i)


def _conv_map(b: Conv, i: int, prev: np.ndarray, maps: list, space_of: dict) -> np.ndarray:
    """A conv starts channels 0..filters-1 of its space."""
    return np.stack([np.full(b.filters, space_of[i]), np.arange(b.filters)], 1)


def _conv_fold(b: Conv, i: int, s: FoldState) -> tuple[np.ndarray, np.ndarray]:
    """A removed channel outputs act(beta); a dropped conv loses all of them."""
    mask = np.zeros(b.filters, bool) if i in s.dropped else s.mask(i)
    return mask, s.removed_constant(i, ~mask)


def _shortcut_inputs(b: Shortcut, i: int) -> list[int]:
    return [i - 1, shortcut_source(b, i)]


def _shortcut_map(b: Shortcut, i: int, prev: np.ndarray, maps: list, space_of: dict) -> np.ndarray:
    """A sum: the previous layer's channels, now in the residual group's space."""
    m = prev.copy()
    m[:, 0] = space_of[i]
    return m


def _shortcut_fold(b: Shortcut, i: int, s: FoldState) -> tuple[np.ndarray, np.ndarray]:
    return s.mask(i), s.prev_const(i) + s.const[shortcut_source(b, i)]


def _route_gather(b: Route, i: int, per_layer: list) -> np.ndarray:
    """What a route does to any per-channel array of its inputs: slice ``group_id`` of ``groups``
    from each, then concatenate (channel maps and constants alike)."""
    parts = []
    for j in route_inputs(b, i):
        n = len(per_layer[j]) // b.groups
        parts.append(per_layer[j][b.group_id * n:(b.group_id + 1) * n])
    return np.concatenate(parts)


def _route_map(b: Route, i: int, prev: np.ndarray, maps: list, space_of: dict) -> np.ndarray:
    return _route_gather(b, i, maps)


def _route_fold(b: Route, i: int, s: FoldState) -> tuple[np.ndarray, np.ndarray]:
    return s.mask(i), _route_gather(b, i, s.const)


_PASS = LayerRule(_previous, _passed_map, _passed_fold)

RULES: dict[type, LayerRule] = {
    Conv: LayerRule(_previous, _conv_map, _conv_fold),
    Shortcut: LayerRule(_shortcut_inputs, _shortcut_map, _shortcut_fold),
    Route: LayerRule(route_inputs, _route_map, _route_fold),
    MaxPool: _PASS,
    Upsample: _PASS,
    Yolo: _PASS,
}


def rule_for(block: Block, i: int, what: str) -> LayerRule:
    """The row of layer ``i``'s block class (or of its nearest registered base class); raises
    :class:`LayerRuleError` naming the layer and the missing ``what`` rule when there is none."""
    rule = lookup(RULES, block)
    if rule is None:
        raise LayerRuleError(f"layer {i} [{block.kind}]: no {what} rule; "
                             "register one in yolocompress/compress/layer_rules.py")
    return rule
