"""What a plan costs, counted from shapes: convolution FLOPs of the compact model without building it.

A conv's FLOPs are ``2 x k*k x (C_in / groups) x C_out x H x W`` (2 x multiply-accumulates, the
count ``profile.gflops`` gets from torch's FLOP counter; bias, BN, activations, adds and
upsampling are not counted). Pruning changes only channel counts, and dropping residual blocks
only removes layers (spatial sizes stay), so a plan's cost is a sum over the surviving convs of
that formula with the plan's kept channel counts. ``CostModel`` precomputes the shapes and the
channel maps once per graph, after which counting a plan takes about a millisecond - cheap enough
to bisect over thresholds (``plan.plan_combined`` with a GFLOPs budget).

It also gives the *price of one channel* of each space (what removing it saves, with every other
channel kept): the denominator of the cost-aware importance |gamma| per FLOP, and the weight of
the FLOPs-weighted sparsity penalty (``relative_price``).
"""
from __future__ import annotations

import numpy as np

from yolocompress.darknet.cfg import Conv, infer_shapes
from .graph import Graph


class CostModel:
    """Conv FLOPs of any plan on one graph at one input size (``img_size`` px, square)."""

    def __init__(self, graph: Graph, img_size: int | None = None):
        net = graph.blocks[0]
        self.graph = graph
        self.img_size = img_size or net.width
        self.in_channels = net.channels
        shapes = infer_shapes(graph.blocks, self.img_size, self.img_size)      # per layer (C, H, W)
        self.convs = {i: b for i, b in enumerate(graph.layers) if isinstance(b, Conv)}
        self.hw = {i: shapes[i][1] * shapes[i][2] for i in self.convs}        # output pixels
        self.width = {s: graph.layers[s].filters for s in set(graph.space.values())}
        self.offset, n = {}, 0
        for s in sorted(self.width):
            self.offset[s] = n
            n += self.width[s]
        self.n_flat = n                                  # one slot per (space, channel); slot n: input
        self.flat_index = [self._flat(m) for m in graph.channel_maps]

    def _flat(self, cmap: np.ndarray) -> np.ndarray:
        """(C,) slot of each channel of a layer output (the image's channels share the last slot)."""
        off = np.array([self.offset.get(s, self.n_flat) for s in cmap[:, 0].tolist()])
        return np.where(cmap[:, 0] == -1, self.n_flat, off + cmap[:, 1])

    def _kept_slots(self, keep: dict[int, list[int]], dropped: set) -> np.ndarray:
        """Bool per slot: is this channel of its space kept (read from any member not dropped)."""
        flat = np.ones(self.n_flat + 1, bool)
        seen = set()
        for c in sorted(keep):
            s = self.graph.space[c]
            if c in dropped or s in seen:
                continue
            seen.add(s)
            flat[self.offset[s]:self.offset[s] + self.width[s]] = False
            flat[self.offset[s] + np.asarray(keep[c], int)] = True
        return flat

    def conv_flops(self, keep: dict[int, list[int]] | None = None, dropped=()) -> dict[int, int]:
        """FLOPs of every surviving conv for kept channels ``keep`` (None: the unpruned model)."""
        dropped = set(dropped)
        flat = self._kept_slots(keep or {}, dropped)
        out = {}
        for i, b in self.convs.items():
            if i in dropped:
                continue
            c_out = int(flat[self.flat_index[i]].sum())
            c_in = int(flat[self.flat_index[i - 1]].sum()) if i else self.in_channels
            out[i] = 2 * b.size * b.size * (c_in // b.groups) * c_out * self.hw[i]
        return out

    unit = "GFLOPs"               # what ``measure`` returns; a Budget in this unit (or %) resolves here

    def measure(self, plan=None) -> float:
        """The cost a budget is met in: GFLOPs of ``plan``'s compact model (None: unpruned). A
        latency model would subclass and return ms with ``unit = "ms"``."""
        return self.gflops(plan)

    def gflops(self, plan=None) -> float:
        """Total conv GFLOPs of ``plan``'s compact model (None: the unpruned model)."""
        if plan is None:
            return sum(self.conv_flops().values()) / 1e9
        return sum(self.conv_flops(plan.keep, plan.dropped_layers).values()) / 1e9

    def channel_price(self) -> dict[int, float]:
        """FLOPs that removing one channel of each space saves in the unpruned model: its share of
        every member conv's output, plus its share of every conv that reads it (through routes,
        shortcuts, upsamples and maxpools, counted by how often it appears in the conv's input)."""
        price = {s: 0.0 for s in self.width}
        for i, b in self.convs.items():
            per_pixel = 2 * b.size * b.size * self.hw[i] / b.groups
            c_in = len(self.flat_index[i - 1]) if i else self.in_channels
            price[self.graph.space[i]] += per_pixel * c_in              # one output channel fewer
            if i == 0:
                continue
            spaces, counts = np.unique(self.graph.channel_maps[i - 1][:, 0], return_counts=True)
            for s, k in zip(spaces.tolist(), counts.tolist()):
                if s != -1:                                             # one input channel fewer
                    price[s] += per_pixel * b.filters * k / self.width[s]
        return price

    def relative_price(self, convs: list[int], mean_over: list[int] | None = None) -> dict[int, float]:
        """Price of one channel of each conv in ``convs``, over the mean price of the convs in
        ``mean_over`` (default ``convs``), so a conv of average cost has 1. The ratios do not
        depend on the input size: every conv's pixel count scales by the same factor (up to the
        rounding of odd sizes)."""
        price = self.channel_price()
        mean = float(np.mean([price[self.graph.space[c]] for c in (mean_over or convs)] or [1.0]))
        return {c: price[self.graph.space[c]] / mean for c in convs}
