"""ipywidgets for the notebooks: a slider over the sparsity penalty s, and one over the prune ratio.

Each displays its widget and draws the first state at once; notebooks show the same data as a
static figure next to it, for places where widgets do not render (GitHub, static HTML).
"""
from __future__ import annotations

from typing import Callable

import matplotlib.pyplot as plt
import numpy as np

from .plan import bn_gammas


def sparsity_slider(runs: dict, penalised: set[int] | None = None) -> None:
    """``runs``: {s: Stage of a sparse run with that penalty}. The slider shows that run's
    |gamma| histogram (against the smallest s) and its final mAP and sparsity."""
    import ipywidgets as W
    from IPython.display import display

    values = sorted(runs)
    out = W.Output()

    def gammas(s):
        g = bn_gammas(runs[s].model)
        keep = penalised if penalised is not None else set(g)
        return np.concatenate([v for k, v in g.items() if k in keep])

    def show(s):
        out.clear_output(wait=True)
        with out:
            fig, ax = plt.subplots(figsize=(6.5, 3))
            bins = np.linspace(-5, 1, 61)
            ax.hist(np.log10(np.clip(gammas(values[0]), 1e-5, None)), bins, alpha=0.4, label=f"s = {values[0]:g}")
            ax.hist(np.log10(np.clip(gammas(s), 1e-5, None)), bins, alpha=0.7, label=f"s = {s:g}")
            ax.axvline(-2, color="k", lw=0.8, ls="--")
            row = runs[s].row
            frac = float((np.abs(gammas(s)) < 1e-2).mean())
            ax.set_title(f"s = {s:g}: mAP@0.5 {row['map50']:.3f}, {frac:.0%} of |gamma| < 0.01")
            ax.set_xlabel("log10 |gamma|")
            ax.legend()
            plt.show()

    slider = W.SelectionSlider(options=values, value=values[len(values) // 2], description="penalty s",
                               continuous_update=False)
    slider.observe(lambda ch: show(ch["new"]), names="value")
    show(slider.value)
    display(W.VBox([slider, out]))


def ratio_slider(evaluate: Callable[[float], dict], ratios: list[float]) -> None:
    """``evaluate(ratio) -> {"plan", "GFLOPs", "map50", ...}`` (cached by the caller). The slider
    redraws the per-layer channel chart with GFLOPs and what-if mAP in the title."""
    import ipywidgets as W
    from IPython.display import display

    from .viz import plot_channels
    out = W.Output()

    def show(r):
        out.clear_output(wait=True)
        with out:
            res = evaluate(r)
            fig = plot_channels({f"ratio {r:.2f}": res["plan"]},
                                title=f"ratio {r:.2f}: {res['pruned']:.0%} channels removed, "
                                      f"{res['GFLOPs']:.3f} GFLOPs, what-if mAP@0.5 {res['map50']:.3f}")
            plt.show()
            plt.close(fig)

    slider = W.SelectionSlider(options=ratios, value=ratios[len(ratios) // 2], description="prune ratio",
                               continuous_update=False)
    slider.observe(lambda ch: show(ch["new"]), names="value")
    show(slider.value)
    display(W.VBox([slider, out]))
