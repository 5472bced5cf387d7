"""Plots the notebooks and ``docs/`` use. Each function draws on an ``ax`` (or makes a figure) and
returns the matplotlib figure, so notebooks hold one call per picture and no plotting logic."""
from __future__ import annotations

from typing import Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.patches import FancyArrowPatch, Rectangle
from matplotlib.ticker import LogLocator, MaxNLocator, NullFormatter, ScalarFormatter

from yolocompress.darknet.cfg import Conv, MaxPool, Route, Shortcut, Upsample, Yolo, route_inputs, shortcut_source
from .toys import TOY_RESIDUAL_CFG, toy_residual_model  # noqa: F401  re-exported for tests/test_nb.py

_COLORS = {Conv: "#4C72B0", Shortcut: "#55A868", Route: "#C44E52", Upsample: "#8172B2",   # by layer kind
           MaxPool: "#CCB974", Yolo: "#DD8452"}


def _ax(ax, figsize):
    if ax is None:
        fig, ax = plt.subplots(figsize=figsize)
    return ax.figure, ax


def bar_compare(df: pd.DataFrame, x: str, columns: Sequence[str], title: str = "", log: bool = False):
    """One bar panel per column of ``df`` (e.g. params, GFLOPs, layers per architecture), each bar
    labelled with its value; ``log``: log-scaled panels, for values that span orders of magnitude."""
    fig, axes = plt.subplots(1, len(columns), figsize=(4 * len(columns), 3.2))
    for ax, col in zip(np.atleast_1d(axes), columns):
        sns.barplot(data=df, x=x, y=col, ax=ax, color="#4C72B0")
        ax.bar_label(ax.containers[0], fmt="%.3g", fontsize=7)     # a bar too small to see still reads
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
        color = "#bbbbbb" if i in dropped else _COLORS.get(type(b), "grey")
        ax.add_patch(Rectangle((i - 0.4, -h / 2), 0.8, h, color=color, hatch="///" if i in dropped else None,
                               alpha=0.5 if i in dropped else 1.0))
        if isinstance(b, Conv) and b.stride > 1:
            ax.text(i, h / 2 + 0.05, "/2", ha="center", fontsize=6)
    top = [1.0]                     # the highest arc, so that none is clipped
    for i, b in enumerate(layers):
        if isinstance(b, Shortcut):
            top.append(_arc(ax, shortcut_source(b, i), i, +1, _COLORS[Shortcut], i in dropped))
        elif isinstance(b, Route):
            for j in route_inputs(b, i):
                if j != i - 1:
                    top.append(_arc(ax, j, i, -1, _COLORS[Route], False))
    handles = [Rectangle((0, 0), 1, 1, color=c) for c in _COLORS.values()]
    ax.legend(handles, [k.kind for k in _COLORS], ncol=6, fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.02),
              frameon=False)
    ax.set_xlim(-1, len(layers))
    ax.set_ylim(-max(top) - 0.3, max(top) + 0.3)
    ax.axis("off")
    ax.set_title(title or f"{len(layers)} layers")
    return fig


def _arc(ax, a: int, b: int, side: int, color: str, faded: bool) -> float:
    """An arc from layer ``a`` to ``b`` above (side +1) or below (-1) the strip, rising
    0.3 + 0.3 log2(distance): a long route stays in the picture. Returns how far it reaches.
    (An arc3 curve's apex is rad x distance / 2 from the chord.)"""
    d = max(abs(b - a), 1)
    rise = 0.3 + 0.3 * np.log2(d)
    ax.add_patch(FancyArrowPatch((a, side * 0.45), (b, side * 0.45), connectionstyle=f"arc3,rad={-side * 2 * rise / d}",
                                 arrowstyle="-|>", mutation_scale=6, color=color, lw=0.8,
                                 alpha=0.3 if faded else 0.9))
    return 0.45 + rise


def weights_layout(model, max_layers: int = 6):
    """A bar of the .weights file: the header, then each conv's tensors in darknet's order
    (segment widths grow with log10 of the value count)."""
    from yolocompress.darknet.weights import _conv_tensors
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


def plot_history(histories: dict[str, pd.DataFrame], metrics: Sequence[str] = ("total", "map50"),
                 title: str = "", reference: dict[str, pd.DataFrame] | None = None):
    """One panel per metric, one line per run (e.g. loss and mAP per epoch, per schedule); a run has
    the same colour in every panel, also where it lacks a metric. ``reference``: {run: history} of
    the same run on the full schedule (``docs/pack``), drawn dashed in the run's colour beside a
    QUICK curve."""
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.5 * len(metrics), 3.4))
    colours = dict(zip(histories, sns.color_palette("tab10", max(10, len(histories)))))
    reference = {k: v for k, v in (reference or {}).items() if k in colours and v is not None}
    epochs = [e for h in [*histories.values(), *reference.values()] if "epoch" in h for e in h["epoch"]] or [1]
    lo, hi = min(epochs), max(epochs)
    for ax, metric in zip(np.atleast_1d(axes), metrics):
        for name, h in histories.items():
            if metric in h:
                d = h.dropna(subset=[metric])
                ax.plot(d["epoch"], d[metric], marker="o", ms=3, color=colours[name])
            full = reference.get(name)
            if full is not None and metric in full:
                d = full.dropna(subset=[metric])
                ax.plot(d["epoch"], d[metric], ls="--", lw=1.2, color=colours[name])
        ax.set_xlabel("epoch")
        ax.set_xlim(lo - 0.5, hi + 0.5)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.yaxis.get_major_formatter().set_useOffset(False)
        ax.set_title(metric)
        ax.grid(alpha=0.3)
    handles = [plt.Line2D([], [], color=c, marker="o", ms=3) for c in colours.values()]
    labels = list(colours)
    if reference:
        handles += [plt.Line2D([], [], color="grey", marker="o", ms=3), plt.Line2D([], [], color="grey", ls="--")]
        labels += ["solid: this QUICK run", "dashed: full run (make results, docs/pack)"]
    fig.legend(handles, labels, loc="lower center", ncol=min(4, len(labels)), fontsize=8, frameon=False)
    fig.suptitle(title)
    fig.tight_layout(rect=(0, 0.1, 1, 1))
    return fig


def plot_gamma_heatmap(hist: dict, ax=None, title: str = "|gamma| distribution per epoch"):
    """The per-epoch log10|gamma| histograms kept by sparse training, as an epoch x value heatmap."""
    fig, ax = _ax(ax, (7, 3.2))
    counts = np.asarray(hist["counts"], float)
    counts = counts / counts.sum(1, keepdims=True).clip(min=1)
    edges = np.asarray(hist["edges"])
    im = ax.imshow(counts.T, aspect="auto", origin="lower", cmap="magma",
                   extent=[hist["epochs"][0] - 0.5, hist["epochs"][-1] + 0.5, edges[0], edges[-1]])
    fig.colorbar(im, ax=ax, label="share of channels")
    ax.set_xlabel("epoch")
    ax.set_ylabel("log10 |gamma|")
    ax.set_title(title)
    return fig


def plot_gamma_heatmaps(hists: dict[str, dict], reference: dict[str, dict] | None = None, title: str = ""):
    """One heatmap (``plot_gamma_heatmap``) per run, side by side: ``hists`` {label: per-epoch
    histograms} of the runs of this notebook on the first row and, when ``reference`` (the same
    labels' full runs from the results pack, ``pack.gamma_epochs``) is given, those on a second row,
    so a QUICK run's one or two epochs sit above what the full schedule does."""
    rows = 2 if reference else 1
    fig, axes = plt.subplots(rows, len(hists), figsize=(5.3 * len(hists), 3.4 * rows), squeeze=False)
    for ax, (label, h) in zip(axes[0], hists.items()):
        plot_gamma_heatmap(h, ax=ax, title=f"{label}: this QUICK run" if reference else label)
    if reference:
        for ax, label in zip(axes[1], hists):
            if reference.get(label) is None:
                ax.text(0.5, 0.5, "no full run in docs/pack", ha="center", va="center", transform=ax.transAxes)
                ax.set_title(f"{label}: full run (make results)")
                ax.axis("off")
            else:
                plot_gamma_heatmap(reference[label], ax=ax, title=f"{label}: full run (make results)")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_gamma_hist(gammas: dict[str, np.ndarray], ax=None, title: str = "|gamma| of the BN channels",
                    reference: dict[str, tuple] | None = None):
    """Overlaid histograms of log10|gamma| (e.g. before vs after sparse training). ``reference``:
    {label: (|gamma| bin edges, counts)} of full runs (``pack.gamma_hist``), drawn as black-edged
    outlines over the same channels, labelled as the full run."""
    fig, ax = _ax(ax, (6, 3.2))
    edges = np.log10(next(iter(reference.values()))[0]) if reference else None   # the same bins: comparable counts
    for name, g in gammas.items():
        v = np.log10(np.clip(np.abs(g), 1e-5, None))
        ax.hist(v if edges is None else np.clip(v, edges[0], edges[-1] - 1e-9), bins=60 if edges is None else edges,
                alpha=0.55, label=f"{name}: this QUICK run" if reference else name)
    for (name, (edges, counts)), c in zip((reference or {}).items(), ("k", "C3", "C2", "C4")):
        ax.stairs(counts, np.log10(edges), color=c, lw=1.4, label=f"{name}: full run (make results)")
    ax.set_xlabel("log10 |gamma|")
    ax.set_ylabel("channels")
    ax.legend(fontsize=8)
    ax.set_title(title)
    return fig


def plot_channels(plans: dict, ax=None, title: str = "channels per BN conv"):
    """Per-layer channel counts: grey = before, one bar series per plan (strategy)."""
    first = next(iter(plans.values()))
    layers = sorted(first.filters)
    fig, ax = _ax(ax, (max(8, 0.16 * len(layers) * (1 + len(plans) / 3)), 3.4))
    x = np.arange(len(layers))
    ax.bar(x, [first.filters[i] for i in layers], color="#dddddd", label="before", width=0.9)
    w = 0.9 / len(plans)
    for k, (name, plan) in enumerate(plans.items()):
        ax.bar(x - 0.45 + w * (k + 0.5), [len(plan.keep[i]) for i in layers], width=w, label=name)
    ax.set_xticks(x[::max(1, len(x) // 20)])
    ax.set_xticklabels([layers[i] for i in range(0, len(layers), max(1, len(x) // 20))], fontsize=7)
    ax.set_xlabel("cfg layer index (BN convs)")
    ax.set_ylabel("channels")
    ax.legend(fontsize=8)
    ax.set_title(title)
    return fig


def plot_sweep(sweeps: dict[str, pd.DataFrame], title: str = "sensitivity: what-if mAP (no finetune) vs ratio",
               reference: dict[str, pd.DataFrame] | None = None):
    """mAP@0.5 and GFLOPs of the what-if against the requested ratio, one line per strategy.
    ``reference``: {strategy: the full run's sweep} (pack tables ``sensitivity-<strategy>``), drawn
    dashed in the strategy's colour beside a QUICK sweep."""
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.4))
    reference = {k: v for k, v in (reference or {}).items() if v is not None}
    for k, (name, df) in enumerate(sweeps.items()):
        mine = " (this QUICK run)" if reference else ""
        a.plot(df["ratio"], df["map50"], marker="o", ms=3, color=f"C{k}", label=name + mine)
        b.plot(df["GFLOPs"], df["map50"], marker="o", ms=3, color=f"C{k}", label=name + mine)
        full = reference.get(name)
        if full is not None:
            a.plot(full["ratio"], full["map50"], ls="--", color=f"C{k}", label=f"{name} (full run, make results)")
            b.plot(full["GFLOPs"], full["map50"], ls="--", color=f"C{k}", label=f"{name} (full run, make results)")
    a.set_xlabel("requested prune ratio")
    a.set_ylabel("mAP@0.5 (what-if)")
    b.set_xlabel("GFLOPs of the compact model")
    b.set_ylabel("mAP@0.5 (what-if)")
    for ax in (a, b):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_importance(df: pd.DataFrame, ax=None, title: str = "|gamma| vs |gamma| per FLOP at equal GFLOPs"):
    """What-if mAP@0.5 (or, without mAP, the kept |gamma| share) against achieved GFLOPs, one line
    per importance ranking: a table from ``sweep.importance_sweep``."""
    y = "map50" if "map50" in df else "kept |gamma|"
    fig, ax = _ax(ax, (6, 3.6))
    sns.lineplot(data=df, x="GFLOPs", y=y, hue="importance", marker="o", ax=ax)
    ax.set_ylabel("mAP@0.5 (what-if)" if y == "map50" else "kept share of sum |gamma|")
    ax.grid(alpha=0.3)
    ax.set_title(title)
    return fig


def plot_total_epochs(chains: dict[str, list[tuple[int, pd.DataFrame]]], metric: str = "map50", ax=None,
                      title: str = "validation mAP@0.5 over every epoch a model trained"):
    """One line per model over the epochs it trained *in total*, its parents' included: ``chains``
    is {label: [(epochs trained before this stage, stage history), ...]} (e.g. baseline, then sparse
    from epoch 30, then finetuning from epoch 50). Shows where the baseline stands when pruning starts
    and that a pruned model and its same-epoch control end at the same epoch."""
    fig, ax = _ax(ax, (7.5, 3.8))
    for label, stages in chains.items():
        parts = [h.dropna(subset=[metric]).assign(total=lambda d, o=offset: d["epoch"] + o)
                 for offset, h in stages if metric in h]
        if parts:
            d = pd.concat(parts)
            ax.plot(d["total"], d[metric], marker="o", ms=3, label=label)
    ax.set_xlabel("epochs trained in total")
    ax.set_ylabel(metric)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    ax.set_title(title)
    return fig


def plot_pareto(df: pd.DataFrame, x: str = "GFLOPs", y: str = "map50", label: str = "model", ax=None,
                title: str = "accuracy vs cost", hue: str | None = None, annotate: str = "all"):
    """Scatter of models with their Pareto front (higher y at lower x is better). ``hue``: a column
    that colours the points (with a legend; default: one colour per label, no legend); ``annotate``:
    label ``all`` points or only those on the ``front`` (where many models crowd one spot)."""
    fig, ax = _ax(ax, (6.5, 4))
    sns.scatterplot(data=df, x=x, y=y, hue=hue or label, s=70, ax=ax, legend=hue is not None)
    front = pareto_front(df, x, y)
    shown = front if annotate == "front" else df
    texts = [ax.annotate(str(r[label]), (r[x], r[y]), fontsize=7, xytext=(6, 3), textcoords="offset points")
             for _, r in shown.iterrows()]
    ax.margins(x=0.15, y=0.12)
    _separate_labels(ax, texts)
    ax.plot(front[x], front[y], "k--", lw=1, alpha=0.6, label="Pareto front")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    return fig


_LABEL_SPOTS = [(7, 2, "left", "bottom"), (7, -2, "left", "top"), (-7, 2, "right", "bottom"),
                (-7, -2, "right", "top"), (0, 8, "center", "bottom"), (0, -8, "center", "top")] + \
               [(dx, dy, "left" if dx > 0 else "right", "center") for d in (16, 28, 40, 52)
                for dx, dy in ((12, d), (12, -d), (-12, d), (-12, -d))]


def _separate_labels(ax, texts) -> None:
    """Place each annotation label at the first of a few spots around its point (right, left,
    above, below, then further out with a leader line) where it covers no other label and no
    marker and stays inside the axes - a small stand-in for adjustText."""
    from matplotlib.transforms import Bbox
    renderer = ax.figure.canvas.get_renderer()
    inside = ax.get_window_extent(renderer)
    points = [ax.transData.transform(t.xy) for t in texts]
    placed = [Bbox.from_bounds(px - 5, py - 5, 10, 10) for px, py in points]    # the markers
    for t in sorted(texts, key=lambda t: (t.xy[0], -t.xy[1])):
        best = None
        for spot in _LABEL_SPOTS:
            _place(t, spot)
            box = t.get_window_extent(renderer).expanded(1.06, 1.25)
            clash = sum(box.overlaps(b) for b in placed) + 2 * (not (inside.contains(box.x0, box.y0)
                                                                   and inside.contains(box.x1, box.y1)))
            if best is None or clash < best[0]:
                best = (clash, spot, box)
            if clash == 0:
                break
        _place(t, best[1])
        if abs(best[1][1]) > 10:
            ax.annotate("", t.xy, xytext=best[1][:2], textcoords="offset points",
                        arrowprops=dict(arrowstyle="-", lw=0.4, color="grey", shrinkA=0, shrinkB=3))
        placed.append(best[2])


def _place(text, spot) -> None:
    dx, dy, ha, va = spot
    text.set_position((dx, dy))
    text.set_ha(ha)
    text.set_va(va)


def pareto_front(df: pd.DataFrame, x: str, y: str) -> pd.DataFrame:
    """Rows not beaten by any other row on both lower x and higher y, sorted by x."""
    d = df.sort_values([x, y], ascending=[True, False])
    best, keep = -np.inf, []
    for idx, r in d.iterrows():
        if r[y] > best:
            keep.append(idx)
            best = r[y]
    return d.loc[keep]


def sample_grid(dataset, names: Sequence[str], n: int = 8, cols: int = 4, model=None, conf: float = 0.25,
                title: str = ""):
    """Images of a YoloDataset with their labels - or, with ``model``, its detections (scores shown)
    over the ground truth, drawn in white (the title says so)."""
    import torch
    from PIL import Image
    from yolocompress.deploy.detect import draw_boxes
    from yolocompress.engine.metrics import postprocess
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3 * cols, 3 * rows))
    for k, ax in enumerate(np.atleast_1d(axes).ravel()):
        ax.axis("off")
        if k >= n:
            continue
        img, lab, _ = dataset[k]
        pil = Image.fromarray((img.permute(1, 2, 0).numpy() * 255).astype(np.uint8))
        scores, big = None, pil.resize((256, 256), Image.NEAREST)
        if model is not None:
            big = _draw_truth(big, lab)
            with torch.no_grad():
                det = postprocess(model.eval()(img[None].to(next(model.parameters()).device)), conf, 0.45)[0].cpu()
            s = img.shape[-1]
            xyxy = det[:, :4] / s
            lab = torch.stack([det[:, 5], (xyxy[:, 0] + xyxy[:, 2]) / 2, (xyxy[:, 1] + xyxy[:, 3]) / 2,
                               xyxy[:, 2] - xyxy[:, 0], xyxy[:, 3] - xyxy[:, 1]], 1)
            scores = det[:, 4]
        ax.imshow(draw_boxes(big, lab, names, scores))
    fig.suptitle(title + ("\nwhite: ground truth; coloured: the model's detections with their scores" if model else ""))
    fig.tight_layout()
    return fig


def _draw_truth(image, labels):
    """Copy of a PIL image with the (n, 5) [cls, cx, cy, w, h] normalised boxes outlined in white."""
    from PIL import ImageDraw
    img = image.convert("RGB").copy()
    draw, (w, h) = ImageDraw.Draw(img), img.size
    for _, cx, cy, bw, bh in np.asarray(labels, dtype=np.float64).reshape(-1, 5):
        draw.rectangle([(cx - bw / 2) * w, (cy - bh / 2) * h, (cx + bw / 2) * w, (cy + bh / 2) * h],
                       outline=(255, 255, 255), width=1)
    return img


def dataset_stats(boxes: pd.DataFrame, n_images: int, title: str = ""):
    """Objects per class, box size (longer side, px) and objects per image."""
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.2))
    sns.countplot(data=boxes, x="name", ax=axes[0], color="#4C72B0")
    axes[0].tick_params(axis="x", rotation=35)
    axes[0].set_title("objects per class")
    side = boxes[["w_px", "h_px"]].max(axis=1)
    axes[1].hist(side, bins=np.geomspace(max(1, side.min()), side.max(), 30), color="#55A868")
    axes[1].set_xscale("log")
    axes[1].xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    axes[1].xaxis.set_major_formatter(ScalarFormatter())
    axes[1].xaxis.set_minor_formatter(NullFormatter())
    axes[1].set_title("box size (longer side, px)")
    per_image = boxes.groupby("image").size().reindex(range(n_images), fill_value=0)
    axes[2].hist(per_image, bins=np.arange(per_image.max() + 2) - 0.5, color="#C44E52")
    axes[2].set_title("objects per image")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_masks(plan, graph, layers: Sequence[int] | None = None, ax=None, title: str = ""):
    """Kept (dark) and removed (light) output channels of BN convs, one row per conv; residual
    groups share a colour and protected convs are hatched. The picture of a strategy's rule."""
    layers = list(layers if layers is not None else sorted(plan.keep))
    width = max(plan.filters[i] for i in layers)
    fig, ax = _ax(ax, (0.28 * width + 2.5, 0.42 * len(layers) + 0.8))
    palette = sns.color_palette("tab10")
    group_of = {c: k for k, g in enumerate(graph.groups) for c in g}
    for row, i in enumerate(layers):
        y = len(layers) - 1 - row
        colour = palette[group_of[i] % 10] if i in group_of else (0.35, 0.35, 0.35)
        kept = set(plan.keep[i])
        for c in range(plan.filters[i]):
            ax.add_patch(Rectangle((c, y + 0.1), 0.9, 0.8, color=colour, alpha=1.0 if c in kept else 0.15,
                                   hatch="//" if i in graph.protected else None, lw=0))
        label = f"layer {i}" + (f"  (group {group_of[i] + 1})" if i in group_of else "")
        ax.text(-0.5, y + 0.5, label, ha="right", va="center", fontsize=8)
        ax.text(plan.filters[i] + 0.3, y + 0.5, f"{len(kept)}/{plan.filters[i]}", va="center", fontsize=8)
    ax.set_xlim(-7, width + 3)
    ax.set_ylim(-0.2, len(layers) + 0.2)
    ax.axis("off")
    ax.set_title(title or f"{plan.strategy}: kept channels (dark), removed (light)")
    return fig


def plot_bounded(image, rows: list[dict], ax=None, title: str = "", legend: bool = True):
    """One image with, per positive anchor: teacher (blue dashed) and student box - red where the
    bounded rule makes the student learn from it, grey where it does not - and each ground-truth
    box once (white; several anchors share an object), with a legend of the four below the image."""
    from matplotlib.lines import Line2D
    fig, ax = _ax(ax, (4.5, 4.5))
    ax.imshow(image)
    styles = {"ground truth": dict(ec="white", lw=1.5), "teacher": dict(ec="#4C72B0", lw=1, ls="--"),
              "student: learns": dict(ec="#C44E52", lw=1.2), "student: does not": dict(ec="#999999", lw=1.2)}
    boxes = {tuple(round(v, 2) for v in r["gt"]): styles["ground truth"] for r in rows}   # one per object
    for r in rows:
        ax.add_patch(_box(r["teacher"], styles["teacher"]))
        ax.add_patch(_box(r["student"], styles["student: learns" if r["learn"] else "student: does not"]))
    for gt, style in boxes.items():
        ax.add_patch(_box(gt, style))
    ax.axis("off")
    n = sum(r["learn"] for r in rows)
    ax.set_title(title or f"student learns from\n{n} of {len(rows)} positive anchors", fontsize=9)
    if legend:
        handles = [Line2D([], [], color=s["ec"], lw=s["lw"], ls=s.get("ls", "-")) for s in styles.values()]
        ax.legend(handles, list(styles), loc="upper center", bbox_to_anchor=(0.5, -0.02), ncol=2, fontsize=7,
                  facecolor="#dddddd", frameon=True)
    return fig


def _box(cxcywh, style: dict) -> Rectangle:
    """An unfilled rectangle of a (cx, cy, w, h) box in pixels."""
    cx, cy, w, h = cxcywh
    return Rectangle((cx - w / 2, cy - h / 2), w, h, fill=False, **style)


def _temperature_bars(ax, probs: dict, labels: Sequence[str], ylabel: str, title: str, xlabel: str = ""):
    """Grouped bars: one group per label, one bar per temperature (``probs``: {T: array})."""
    x = np.arange(len(labels))
    w = 0.8 / len(probs)
    for k, (t, p) in enumerate(probs.items()):
        ax.bar(x + k * w - 0.4 + w / 2, p, width=w, label=f"T = {t}")
    ax.set_xticks(x)
    ax.set_xticklabels(labels, rotation=30)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    ax.set_title(title)
    ax.figure.tight_layout()
    return ax.figure


def plot_soft_targets(logits, names: Sequence[str], temperatures=(1, 3, 10), ax=None):
    """softmax(logits / T) for several temperatures: higher T shows the teacher's 'dark knowledge'."""
    import torch
    fig, ax = _ax(ax, (7, 3))
    logits = torch.as_tensor(logits, dtype=torch.float32)
    probs = {t: torch.softmax(logits / t, -1).numpy() for t in temperatures}
    return _temperature_bars(ax, probs, names, "probability", "the teacher's class distribution at several temperatures")


def plot_soft_objectness(logits, labels: Sequence[str], temperatures=(1, 3, 10), ax=None,
                         title: str = "the teacher's objectness at several temperatures"):
    """sigmoid(logit / T) of a few anchors' objectness for several temperatures: the two-way
    (object / background) soft target of Hinton distillation, the one a one-class model has."""
    import torch
    fig, ax = _ax(ax, (7, 3))
    logits = torch.as_tensor(logits, dtype=torch.float32)
    probs = {t: torch.sigmoid(logits / t).numpy() for t in temperatures}
    return _temperature_bars(ax, probs, labels, "P(object)", title, "anchor, ranked by the teacher's objectness")


def plot_cliff(cliff: pd.DataFrame, control: dict | None = None, scratch: pd.DataFrame | None = None,
               metric: str = "map", title: str = "the cliff: accuracy against GFLOPs, per strategy"):
    """docs/cliff.png: ``metric`` (mAP@0.5:0.95 by default) of every ladder prune against its
    GFLOPs (log scale), one colour per line of the ladder: finetuned as thick lines with error
    bars where a rung ran over seeds (column ``<metric>_std``), before finetuning as thin dashed
    lines of the same colour. ``cliff``: rows with ``line``, ``stage`` (``before`` | ``after``),
    ``GFLOPs``, ``metric`` and optionally its std. ``control``: {"GFLOPs", metric, "<metric>_std"}
    of the same-epoch control (a star and a band of +- std); ``scratch``: the from-scratch controls
    (rows with ``GFLOPs`` and ``metric``), drawn as crosses."""
    fig, ax = plt.subplots(figsize=(10, 5))
    std = f"{metric}_std"
    for k, (line, df) in enumerate(cliff.groupby("line", sort=False)):
        for stage, style in (("after", dict(lw=2, marker="o", ms=5)), ("before", dict(lw=0.8, ls="--", marker=".", alpha=0.7))):
            d = df[df["stage"] == stage].sort_values("GFLOPs")
            if len(d) == 0:
                continue
            err = d[std] if std in d and d[std].notna().any() else None
            label = f"{line}" + (" + finetune" if stage == "after" else " (no finetune)")
            ax.errorbar(d["GFLOPs"], d[metric], yerr=err, color=f"C{k}", capsize=3, label=label, **style)
    if control:
        y, e = control[metric], control.get(std) or 0.0
        ax.axhspan(y - e, y + e, color="0.5", alpha=0.2)
        ax.plot([control["GFLOPs"]], [y], marker="*", ms=14, color="k", linestyle="",
                label="same-epoch control (unpruned)" + (" +- std" if e else ""))
    if scratch is not None and len(scratch):
        ax.plot(scratch["GFLOPs"], scratch[metric], marker="X", ms=10, color="crimson", linestyle="",
                label="pruned architecture from scratch")
    ax.set_xscale("log")
    ax.set_xlabel("GFLOPs of the compact model (log scale)")
    ax.set_ylabel({"map": "mAP@0.5:0.95", "map50": "mAP@0.5"}.get(metric, metric))
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)   # beside the axes: the
    ax.set_title(title)                                                                  # curves fill the plot
    fig.tight_layout()
    return fig
