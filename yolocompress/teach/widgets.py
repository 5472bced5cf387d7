"""ipywidgets for the notebooks: a slider over the sparsity penalty s, one over the prune ratio,
and one over the |gamma| threshold of a sparse model.

Each displays its widget and draws its first position at once, so a notebook run without a live
kernel (nbmake, a static HTML export) still shows that one picture; moving a slider needs a
running kernel. Results are cached per position, so going back to a position costs nothing.
"""
from __future__ import annotations

from typing import Callable

import matplotlib.pyplot as plt
import numpy as np

from yolocompress.compress.sparsity import penalised_gammas


def _slider(options: list, value, description: str, show: Callable, fmt: str = "{:g}") -> None:
    import ipywidgets as W
    from IPython.display import display
    out = W.Output()

    def draw(v):
        out.clear_output(wait=True)
        with out:
            fig = show(v)
            plt.show()
            plt.close(fig)

    slider = W.SelectionSlider(options=[(fmt.format(v), v) for v in options], value=value, description=description,
                               continuous_update=False, style={"description_width": "initial"},
                               layout=W.Layout(width="480px"))
    slider.observe(lambda ch: draw(ch["new"]), names="value")
    draw(slider.value)
    display(W.VBox([slider, out]))


def _log_gammas(stage) -> np.ndarray:
    """log10 |gamma| of a sparse run's penalised channels (clipped at 1e-5, so zeros show)."""
    return np.log10(np.clip(penalised_gammas(stage.model), 1e-5, None))


def _draw_runs(ax, runs: dict, s: float, bins, quick: bool) -> list[str]:
    """This notebook's run at ``s`` (over the smallest s's, for scale) on ``ax``; returns its title
    line ("not run at this s" under QUICK when it has none)."""
    mine, tag = sorted(runs), (": this QUICK run" if quick else "")
    if not (mine and s in runs):
        return ["this QUICK run: not run at this s"] if quick else []
    if mine[0] != s:
        ax.hist(_log_gammas(runs[mine[0]]), bins, alpha=0.35, label=f"s = {mine[0]:g}{tag}")
    ax.hist(_log_gammas(runs[s]), bins, alpha=0.7, label=f"s = {s:g}{tag}")
    frac = float((np.abs(penalised_gammas(runs[s].model)) < 1e-2).mean())
    who = "this QUICK run" if quick else f"s = {s:g}"
    return [f"{who}: mAP@0.5 {runs[s].row['map50']:.3f}, {frac:.0%} of |gamma| < 0.01"]


def _draw_reference(ax, reference: dict, s: float) -> list[str]:
    """The full run's histogram at ``s`` as an outline on ``ax``; returns its title line."""
    ref = reference.get(s)
    if ref is None:
        return ["full run: no run at this s in docs/pack"] if reference else []
    if ref.get("hist") is not None:
        edges, counts = ref["hist"]
        ax.stairs(counts, np.log10(edges), color="k", lw=1.4, label=f"s = {s:g}: full run (make results)")
    return [f"full run ({ref['epochs']} epochs): mAP@0.5 {ref['map50']:.3f}, "
            f"{ref['gamma_lt_1e-2']:.0%} of |gamma| < 0.01"]


def _penalty_figure(runs: dict, reference: dict, s: float, note: str):
    """One slider position: the |gamma| histograms at penalty ``s``, with mAP and sparsity in the title."""
    fig, ax = plt.subplots(figsize=(6.5, 3.4 if not reference else 3.9))
    bins = np.linspace(-5, 1, 61)
    lines = _draw_runs(ax, runs, s, bins, bool(reference)) + _draw_reference(ax, reference, s)
    ax.axvline(-2, color="k", lw=0.8, ls="--")
    ax.set_title(f"s = {s:g}\n" + "\n".join(lines) + (f"\n{note}" if note else ""), fontsize=9)
    ax.set_xlabel("log10 |gamma|")
    ax.set_ylabel("channels")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def sparsity_slider(runs: dict, note: str = "", reference: dict | None = None) -> None:
    """``runs``: {s: Stage of a sparse run with that penalty}. The slider shows that run's
    |gamma| histogram of the penalised channels (against the smallest s) and its final mAP and
    sparsity; ``note`` (e.g. that these are QUICK runs) goes under the title. ``reference``
    ({s: {"hist": (edges, counts), "map50", "gamma_lt_1e-2", "epochs"}}, ``nb.penalty_reference``):
    the full run's short runs; the slider then offers their s too and draws, for each s, the full
    run's histogram as an outline and its mAP and sparsity beside this run's."""
    reference = reference or {}
    values = sorted(set(runs) | set(reference))
    start = sorted(runs)[len(runs) // 2] if runs else values[len(values) // 2]
    _slider(values, start, "penalty s", lambda s: _penalty_figure(runs, reference, s, note))


def ratio_slider(evaluate: Callable[[float], dict], ratios: list[float], note: str = "") -> None:
    """``evaluate(ratio) -> {"plan", "GFLOPs", "map50", "pruned", ...}`` (cached by the caller, e.g.
    a ``whatif.WhatIf``). The slider redraws the per-layer channel chart with GFLOPs and what-if
    mAP in the title; ``note`` (e.g. that the model is a QUICK one) goes under it."""
    from .viz import plot_channels

    def show(r):
        res = evaluate(r)
        return plot_channels({f"ratio {r:.2f}": res["plan"]},
                             title=f"ratio {r:.2f}: {res['pruned']:.0%} channels removed, "
                                   f"{res['GFLOPs']:.3f} GFLOPs, what-if mAP@0.5 {res['map50']:.3f}"
                                   + (f"\n{note}" if note else ""))

    _slider(ratios, ratios[len(ratios) // 2], "prune ratio", show)


def threshold_slider(what_if, thresholds: list[float], start: float | None = None, note: str = "") -> None:
    """A live threshold over the sparse model's |gamma| histogram (the what-if strategy's pool).
    ``what_if``: a ``whatif.WhatIf`` of that model; each position plans the prune whose global
    threshold marks exactly the pool channels below it (the per-layer floor and the residual groups'
    unions may keep a few of them) and shows the channels the plan removes, GFLOPs and the what-if
    mAP@0.5 (computed once per position, then cached)."""
    from .whatif import pool_gammas
    g = np.log10(np.clip(pool_gammas(what_if.model, what_if.strategy), 1e-6, None))
    base = what_if(0.0)

    def show(t):
        res = what_if.at_threshold(t)
        fig, ax = plt.subplots(figsize=(7, 3.2))
        bins = np.linspace(min(g.min(), np.log10(min(thresholds))) - 0.2, g.max() + 0.2, 70)
        ax.hist(g[g < np.log10(t)], bins, color="#C44E52", alpha=0.8, label="below the threshold")
        ax.hist(g[g >= np.log10(t)], bins, color="#4C72B0", alpha=0.8, label="above")
        ax.axvline(np.log10(t), color="k", lw=1)
        ax.set_xlabel("log10 |gamma| (prunable BN channels)")
        ax.set_ylabel("channels")
        ax.set_title(f"threshold {t:.1e}: {res['pruned']:.0%} of all BN channels removed\n"
                     f"GFLOPs {res['GFLOPs']:.3f} (of {base['GFLOPs']:.3f}), what-if mAP@0.5 {res['map50']:.3f} "
                     f"(of {base['map50']:.3f})" + (f"\n{note}" if note else ""), fontsize=9)
        ax.legend(fontsize=8)
        fig.tight_layout()
        return fig

    start = start if start in thresholds else thresholds[len(thresholds) // 2]
    _slider(thresholds, start, "|gamma| threshold", show, fmt="{:.1e}")
