"""Plots the notebooks and ``docs/`` use. Each function draws on an ``ax`` (or makes a figure) and
returns the matplotlib figure, so notebooks hold one call per picture and no plotting logic."""
from __future__ import annotations

from typing import Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.patches import FancyArrowPatch, Rectangle

from .cfg import Conv, MaxPool, Route, Shortcut, Upsample, Yolo, route_inputs, shortcut_source

_COLORS = {"convolutional": "#4C72B0", "shortcut": "#55A868", "route": "#C44E52", "upsample": "#8172B2",
           "maxpool": "#CCB974", "yolo": "#DD8452"}


def _ax(ax, figsize):
    if ax is None:
        fig, ax = plt.subplots(figsize=figsize)
    return ax.figure, ax


def bar_compare(df: pd.DataFrame, x: str, columns: Sequence[str], title: str = "", log: bool = False):
    """One bar panel per column of ``df`` (e.g. params, GFLOPs, layers per architecture)."""
    fig, axes = plt.subplots(1, len(columns), figsize=(4 * len(columns), 3.2))
    for ax, col in zip(np.atleast_1d(axes), columns):
        sns.barplot(data=df, x=x, y=col, ax=ax, color="#4C72B0")
        ax.set_title(col)
        ax.set_xlabel("")
        ax.tick_params(axis="x", rotation=35)
        if log:
            ax.set_yscale("log")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def draw_graph(blocks, dropped: Sequence[int] = (), ax=None, title: str = ""):
    """The cfg as a left-to-right strip of layers; arcs above for shortcuts (green) and below for
    routes (red); dropped layers hatched in grey. Conv boxes are as tall as log(filters)."""
    layers = blocks[1:]
    fig, ax = _ax(ax, (max(8, len(layers) * 0.18), 3.4))
    dropped = set(dropped)
    heights = [0.3 + 0.12 * np.log2(b.filters) if isinstance(b, Conv) else 0.5 for b in layers]
    for i, (b, h) in enumerate(zip(layers, heights)):
        color = "#bbbbbb" if i in dropped else _COLORS.get(b.kind, "grey")
        ax.add_patch(Rectangle((i - 0.4, -h / 2), 0.8, h, color=color, hatch="///" if i in dropped else None,
                               alpha=0.5 if i in dropped else 1.0))
        if isinstance(b, Conv) and b.stride > 1:
            ax.text(i, h / 2 + 0.05, "/2", ha="center", fontsize=6)
    for i, b in enumerate(layers):
        if isinstance(b, Shortcut):
            _arc(ax, shortcut_source(b, i), i, +1, _COLORS["shortcut"], i in dropped)
        elif isinstance(b, Route):
            for j in route_inputs(b, i):
                if j != i - 1:
                    _arc(ax, j, i, -1, _COLORS["route"], False)
    handles = [Rectangle((0, 0), 1, 1, color=c) for c in _COLORS.values()]
    ax.legend(handles, list(_COLORS), ncol=6, fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.02),
              frameon=False)
    ax.set_xlim(-1, len(layers))
    ax.set_ylim(-2.6, 2.6)
    ax.axis("off")
    ax.set_title(title or f"{len(layers)} layers")
    return fig


def _arc(ax, a: int, b: int, side: int, color: str, faded: bool) -> None:
    rad = -0.5 * side if b - a > 1 else -0.8 * side
    ax.add_patch(FancyArrowPatch((a, side * 0.45), (b, side * 0.45), connectionstyle=f"arc3,rad={rad}",
                                 arrowstyle="-|>", mutation_scale=6, color=color, lw=0.8,
                                 alpha=0.3 if faded else 0.9))


def weights_layout(model, max_layers: int = 6):
    """A bar of the .weights file: the header, then each conv's tensors in darknet's order
    (segment widths grow with log10 of the value count)."""
    from .weights import _conv_tensors
    fig, ax = _ax(None, (10, 1.8))
    names = ["beta", "gamma", "mean", "var", "weights", "bias"]
    palette = dict(zip(names, sns.color_palette("muted", len(names))))
    ax.add_patch(Rectangle((0, 0), 1, 1, color="black"))
    ax.text(0.5, 1.12, "header", ha="center", fontsize=8)
    x = 1.2
    for i, layer in list(model.conv_layers().items())[:max_layers]:
        labels = names[:5] if layer.bn is not None else ["bias", "weights"]
        start = x
        for t, lab in zip(_conv_tensors(layer), labels):
            w = 0.3 + 0.3 * np.log10(t.numel())
            ax.add_patch(Rectangle((x, 0), w, 1, color=palette[lab]))
            x += w
        ax.text((start + x) / 2, 1.12, f"conv {i}", ha="center", fontsize=8)
        x += 0.3
    ax.text(x + 0.2, 0.4, "...", fontsize=12)
    ax.legend([Rectangle((0, 0), 1, 1, color=palette[n]) for n in names], names, ncol=6, fontsize=8,
              loc="upper center", bbox_to_anchor=(0.5, 0.0), frameon=False)
    ax.set_xlim(0, x + 1)
    ax.set_ylim(-0.2, 1.5)
    ax.axis("off")
    return fig
