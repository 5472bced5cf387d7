"""Pruning dependencies, derived from the cfg blocks alone (no tracing).

Vocabulary:
* a **space** is a set of convolutions whose output channels must be kept or removed together:
  a residual group (convs tied by chains of ``[shortcut]`` sums, union-find over ``from``) or a
  single convolution. A space is named by its first (lowest-index) conv.
* every layer output is a list of channels, each ``(space, channel index in that space)``:
  convs start a space's channels, shortcuts/maxpools/upsamples pass them on, routes concatenate
  and slice them. This *channel map* is what lets surgery find, for every consumer conv, which
  of its input channels survive a plan, through any route/SPP/upsample/shortcut pattern.
  Each layer kind's channel-map and inputs rules are its row of ``layer_rules.RULES``; a kind
  without a row is refused, never passed through.
* **protected** convs keep all their output channels: convs without BN (yolo head convs: no gamma
  to rank), grouped convs and their producers, convs feeding a grouped route (darknet slices those
  by count, so a pruned set cannot be expressed), convs with a non-zero activation at 0
  (logistic), residual groups joined by a non-linear shortcut; and - as the original method does,
  switchable - the conv feeding SPP and the conv before each upsample.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from yolocompress.darknet.cfg import (Block, Conv, MaxPool, Route, Shortcut, Upsample, lookup, route_inputs,
                                      shortcut_source)

from .layer_rules import rule_for

_ZERO_AT_ZERO = {"leaky", "mish", "linear", "relu", "swish"}   # act(0) == 0


@dataclass(frozen=True)
class ProtectOptions:
    spp: bool = True         # keep the conv that feeds SPP whole (original method's default)
    upsample: bool = True    # keep the conv right before each [upsample] whole (original's default)


@dataclass
class ResidualBlock:
    """``conv, conv, shortcut`` with the shortcut adding the layer before the block: droppable."""
    convs: tuple[int, int]   # layer indices (1x1 then 3x3 in Darknet-53)
    shortcut: int            # layer index of the [shortcut]
    source: int              # layer the shortcut adds (= the block's input)

    @property
    def layers(self) -> tuple[int, int, int]:
        return (*self.convs, self.shortcut)


@dataclass
class Graph:
    blocks: list[Block]
    space: dict[int, int]                 # conv layer -> its space (first conv of its group)
    groups: list[list[int]]               # residual groups (convs), each sorted, >= 2 convs
    channel_maps: list[np.ndarray]        # per layer (C, 2) int array of (space, channel)
    consumers: dict[int, list[int]]       # layer -> layers that read its output
    protected: dict[int, str] = field(default_factory=dict)   # conv -> why it is not prunable
    residual_blocks: list[ResidualBlock] = field(default_factory=list)
    protect: ProtectOptions = ProtectOptions()   # the switchable protections it was built with

    @property
    def layers(self) -> list[Block]:
        return self.blocks[1:]

    @property
    def bn_convs(self) -> list[int]:
        return [i for i, b in enumerate(self.layers) if isinstance(b, Conv) and b.batch_normalize]

    @property
    def residual_tied(self) -> set[int]:
        """Convs in residual groups (those a shortcut adds, directly or through a chain)."""
        return {c for g in self.groups for c in g}

    @property
    def shortcut_feeders(self) -> set[int]:
        """Convs whose output is the 'previous layer' input of a shortcut (the 3x3 of a block)."""
        out = set()
        for i, b in enumerate(self.layers):
            if isinstance(b, Shortcut) and isinstance(self.layers[i - 1], Conv):
                out.add(i - 1)
        return out

    def members(self, space: int) -> list[int]:
        return [c for c, s in self.space.items() if s == space]

    def prunable(self) -> list[int]:
        """BN convs whose output channels a plan may remove."""
        return [i for i in self.bn_convs if i not in self.protected]


class _UnionFind:
    def __init__(self):
        self.parent: dict[int, int] = {}

    def find(self, x: int) -> int:
        self.parent.setdefault(x, x)
        while self.parent[x] != x:
            self.parent[x] = self.parent[self.parent[x]]
            x = self.parent[x]
        return x

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


def _origin(layers: list[Block], j: int) -> int | None:
    """The conv (or shortcut chain's conv) whose channel space a layer's output is, if it is one."""
    b = layers[j]
    while isinstance(b, (MaxPool, Upsample)) or (isinstance(b, Route) and len(b.layers) == 1 and b.groups == 1):
        j = j - 1 if not isinstance(b, Route) else route_inputs(b, j)[0]
        b = layers[j]
    return j if isinstance(b, (Conv, Shortcut)) else None


def build_graph(blocks: list[Block], protect: ProtectOptions = ProtectOptions()) -> Graph:
    """Spaces, residual groups, channel maps, consumers and protections of a parsed cfg.

    Build it once per model and pass it to every ``plan_*`` function and to surgery: it depends
    only on the cfg blocks and the protections, never on weights."""
    layers = blocks[1:]
    uf = _UnionFind()
    for i, b in enumerate(layers):
        if isinstance(b, Conv):
            uf.find(i)
        elif isinstance(b, Shortcut):
            uf.union(i, i)
            for j in (i - 1, shortcut_source(b, i)):
                o = _origin(layers, j)
                if o is None:
                    raise ValueError(f"layer {i} [{b.kind}]: input {j} is not a conv or shortcut output")
                uf.union(i, o)
    convs = [i for i, b in enumerate(layers) if isinstance(b, Conv)]
    by_root: dict[int, list[int]] = {}
    for c in convs:
        by_root.setdefault(uf.find(c), []).append(c)
    space = {c: min(by_root[uf.find(c)]) for c in convs}
    shortcut_space = {i: space[min(by_root[uf.find(i)])] for i, b in enumerate(layers) if isinstance(b, Shortcut)}
    groups = sorted((sorted(g) for g in by_root.values() if len(g) > 1), key=lambda g: g[0])
    maps = _channel_maps(blocks, space, shortcut_space)
    consumers = _consumers(layers)
    g = Graph(blocks, space, groups, maps, consumers, protect=protect)
    g.protected = _protections(g, protect)
    g.residual_blocks = _residual_blocks(g)
    return g


def _channel_maps(blocks, space, shortcut_space) -> list[np.ndarray]:
    """(C, 2) ``(space, channel)`` rows of every layer output, by each kind's rule in ``RULES``
    (the image's channels are space -1)."""
    space_of = {**space, **shortcut_space}       # conv or shortcut layer -> its space
    maps: list[np.ndarray] = []
    prev = np.stack([np.full(blocks[0].channels, -1), np.arange(blocks[0].channels)], 1)
    for i, b in enumerate(blocks[1:]):
        prev = rule_for(b, i, "channel-map").channel_map(b, i, prev, maps, space_of)
        maps.append(prev)
    return maps


def _consumers(layers: list[Block]) -> dict[int, list[int]]:
    """Which layers read each layer's output (the implicit 'previous layer' input included)."""
    out: dict[int, list[int]] = {i: [] for i in range(len(layers))}
    for i, b in enumerate(layers):
        for j in rule_for(b, i, "inputs").inputs(b, i):
            out[j].append(i)
    return out


def _protect_conv(g: Graph, i: int, b: Conv, protect: ProtectOptions):
    if not b.batch_normalize:
        yield i, "no batch norm (e.g. a yolo head conv): no gamma to rank"
    if b.activation not in _ZERO_AT_ZERO:
        yield i, f"activation {b.activation} is not 0 at 0, so a removed channel cannot be zero"
    if b.groups > 1:
        yield i, "grouped convolution"
        for c in _producers(g, i - 1):
            yield c, f"feeds grouped convolution {i}"


def _protect_route(g: Graph, i: int, b: Route, protect: ProtectOptions):
    if b.groups > 1:
        for j in route_inputs(b, i):
            for c in _producers(g, j):
                yield c, f"feeds route {i} with groups={b.groups} (darknet slices it by count)"


def _protect_shortcut(g: Graph, i: int, b: Shortcut, protect: ProtectOptions):
    if b.activation != "linear":
        for c in _producers(g, i - 1):
            yield c, f"shortcut {i} has a non-linear activation"


def _protect_upsample(g: Graph, i: int, b: Upsample, protect: ProtectOptions):
    if protect.upsample:
        for c in _producers(g, i - 1):
            yield c, "feeds an upsample (protected by default, as in the original method)"


def _protect_spp(g: Graph, i: int, b: MaxPool, protect: ProtectOptions):
    if b.stride == 1 and protect.spp and _is_spp(g.layers, i):
        for c in _producers(g, i - 1):
            yield c, "feeds SPP (protected by default, as in the original method)"


# Each kind's protection rule: (graph, layer i, its block, options) -> the (conv, reason) pairs it
# protects; a kind without one protects nothing.
_PROTECTION_RULES = {Conv: _protect_conv, Route: _protect_route, Shortcut: _protect_shortcut,
                     Upsample: _protect_upsample, MaxPool: _protect_spp}


def _protections(g: Graph, protect: ProtectOptions) -> dict[int, str]:
    """conv -> why it keeps all its channels; the first reason found wins, and a residual group
    is protected as a whole."""
    why: dict[int, str] = {}
    for i, b in enumerate(g.layers):
        rule = lookup(_PROTECTION_RULES, b)
        for conv, reason in rule(g, i, b, protect) if rule else ():
            for member in g.members(g.space[conv]):
                why.setdefault(member, reason if member == conv else f"in the residual group of {conv}: {reason}")
    return why


def _producers(g: Graph, layer: int) -> set[int]:
    """The convs whose channels make up a layer's output."""
    if layer < 0:
        return set()
    spaces = set(g.channel_maps[layer][:, 0].tolist()) - {-1}
    return set(spaces)


def _is_spp(layers: list[Block], i: int) -> bool:
    """A stride-1 maxpool whose output is concatenated by a route: spatial pyramid pooling."""
    for j in range(i + 1, min(i + 7, len(layers))):
        b = layers[j]
        if isinstance(b, Route) and len(b.layers) > 1 and i in route_inputs(b, j):
            return True
    return False


def _residual_blocks(g: Graph) -> list[ResidualBlock]:
    """``conv a, conv b, shortcut s`` with s adding the layer before a, and a, b read only inside
    the block: removing all three leaves s's ``from`` tensor (plus b's constant, folded)."""
    layers, out = g.layers, []
    for s, b in enumerate(layers):
        if not isinstance(b, Shortcut) or s < 2:
            continue
        a, c = s - 2, s - 1
        if not (isinstance(layers[a], Conv) and isinstance(layers[c], Conv)):
            continue
        if shortcut_source(b, s) != a - 1 or g.consumers[a] != [c] or g.consumers[c] != [s]:
            continue
        if layers[c].activation not in _ZERO_AT_ZERO or not layers[c].batch_normalize:
            continue
        out.append(ResidualBlock((a, c), s, a - 1))
    return out
