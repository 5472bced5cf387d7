"""The results pack: a small, committed record of one full ``make results`` run, which the notebooks
plot beside their own runs, so that a QUICK notebook (a few batches, a smoke test) still shows what
the method does on the real schedule.

Layout under ``docs/`` (a few hundred KB, written by ``report.run_all``):

- ``results.json``: one row per model (``pipeline.record``), the source of results.md;
- ``pack/histories/<run>.csv``: every trained stage's per-epoch history (train.py's history.csv),
  named as the run directory (``baseline``, ``sparse-local-decay-s0.1``, ``ft-union-r0.7-b16``, ...);
- ``pack/gammas.json``: histograms of the penalised |gamma| of the baseline and each sparse run
  (each schedule, each penalty s), over the fixed log bins ``GAMMA_BINS``;
- ``pack/gamma_epochs.json``: the per-epoch log10|gamma| histograms sparse training keeps
  (``sparsity.py``, for ``viz.plot_gamma_heatmap``), per sparse run;
- ``pack/tables/<name>.csv``: the sweep tables (what-if sensitivity per strategy, importance at
  equal GFLOPs, the distillation weight/T sweep, the penalty sweep).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from yolocompress.files import atomic_write_text

GAMMA_BINS = np.logspace(-4, 1, 51)   # |gamma| bin edges; smaller values count in the first bin


def pack_dir(docs: str | Path) -> Path:
    return Path(docs) / "pack"


def write_history(docs: str | Path, name: str, history: pd.DataFrame) -> None:
    out = pack_dir(docs) / "histories" / f"{name}.csv"
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out, history.to_csv(index=False, float_format="%.5g"))


def drop_stale_histories(docs: str | Path, keep) -> list[str]:
    """Delete the histories of runs not in ``keep`` (names): a regenerated pack must not carry the
    curves of a run the new demo no longer trains (a renamed stage, an earlier setting). Returns
    the names deleted."""
    keep = set(keep)
    stale = [p for p in sorted((pack_dir(docs) / "histories").glob("*.csv")) if p.stem not in keep]
    for p in stale:
        p.unlink()
    return [p.stem for p in stale]


def gamma_counts(gammas: np.ndarray) -> list[int]:
    """Counts of |gamma| over ``GAMMA_BINS`` (values outside the range clipped into the end bins)."""
    g = np.clip(np.abs(gammas), GAMMA_BINS[0], GAMMA_BINS[-1] * 0.999)
    return np.histogram(g, GAMMA_BINS)[0].tolist()


def write_gammas(docs: str | Path, gammas: dict[str, np.ndarray]) -> None:
    """``gammas``: {run name: penalised |gamma| values (1-D)}."""
    out = pack_dir(docs) / "gammas.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    body = {"bins": GAMMA_BINS.round(8).tolist(), "runs": {k: gamma_counts(v) for k, v in gammas.items()}}
    atomic_write_text(out, json.dumps(body))


def write_gamma_epochs(docs: str | Path, hists: dict[str, dict]) -> None:
    """``hists``: {run name: the ``gamma_hist`` artifact of that sparse run (edges, epochs, counts)}."""
    out = pack_dir(docs) / "gamma_epochs.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out, json.dumps(hists))


def write_table(docs: str | Path, name: str, df: pd.DataFrame) -> None:
    out = pack_dir(docs) / "tables" / f"{name}.csv"
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out, df.to_csv(index=False, float_format="%.5g"))


# ----------------------------------------------------------------------------- reading

def history(docs: str | Path, name: str) -> pd.DataFrame | None:
    """The full run's per-epoch history of run ``name``, or None when the pack lacks it."""
    p = pack_dir(docs) / "histories" / f"{name}.csv"
    return pd.read_csv(p) if p.is_file() else None


def gamma_hist(docs: str | Path, name: str) -> tuple[np.ndarray, np.ndarray] | None:
    """(bin edges, counts) of run ``name``'s |gamma| in the full run, or None."""
    p = pack_dir(docs) / "gammas.json"
    if not p.is_file():
        return None
    body = json.loads(p.read_text())
    counts = body["runs"].get(name)
    return None if counts is None else (np.asarray(body["bins"]), np.asarray(counts))


def gamma_epochs(docs: str | Path, name: str) -> dict | None:
    """The full run's per-epoch |gamma| histograms of sparse run ``name`` (``viz.plot_gamma_heatmap``), or None."""
    p = pack_dir(docs) / "gamma_epochs.json"
    return json.loads(p.read_text()).get(name) if p.is_file() else None


def table(docs: str | Path, name: str) -> pd.DataFrame | None:
    p = pack_dir(docs) / "tables" / f"{name}.csv"
    return pd.read_csv(p) if p.is_file() else None


def rows(docs: str | Path) -> list[dict]:
    """The rows of ``docs/results.json`` ([] when it is missing)."""
    p = Path(docs) / "results.json"
    return json.loads(p.read_text()) if p.is_file() else []
