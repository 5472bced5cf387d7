"""How long ``make results`` will train, before it starts: ``demo --dry-run``.

Each training stage of ``stages.demo_stages`` costs its epochs times the seconds one epoch takes.
An epoch's seconds grow with the model's GFLOPs (the forward and backward pass) on top of a fixed
part (reading and augmenting the images, the loss), so they are fitted as a line,

    t_epoch(f) = a + b * f,      f = GFLOPs of the model / GFLOPs of the baseline,

by least squares over the per-epoch ``time_s`` of every run of the last full run's results pack
(``docs/pack/histories``, matched to its GFLOPs in ``docs/results.json``); a distillation epoch
adds the teacher's forward pass, fitted as a constant over the KD runs. A stage's f is exact for a
GFLOPs budget and, for a ratio or layer prune, read off the same prune planned on a freshly
initialised model (its floor and structure; the gammas of the sparse model change it somewhat).
Every figure is an estimate from another run's timings, and says so.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from . import pack
from . import pipeline as pl
from . import stages


@dataclass(frozen=True)
class EpochCost:
    """Seconds per epoch: ``fixed + per_gflops * f`` (+ ``teacher`` when distilling)."""
    fixed: float
    per_gflops: float
    teacher: float
    runs: int                 # how many runs of the pack the fit read

    def seconds(self, fraction: float, distill: bool = False) -> float:
        return self.fixed + self.per_gflops * fraction + (self.teacher if distill else 0.0)


def fit_epoch_cost(docs: str | Path) -> EpochCost | None:
    """The line ``t_epoch(f)`` fitted over the pack's runs (None when the pack has fewer than two)."""
    rows = [r for r in pack.rows(docs) if r.get("gflops")]
    base = next((r["gflops"] for r in rows if r["kind"] == pl.BASELINE), None)
    plain, kd = [], []
    for r in {r["name"]: r for r in rows}.values():
        h = pack.history(docs, r["name"])
        if base is None or h is None or "time_s" not in h:
            continue
        (kd if r.get("distill") else plain).append((r["gflops"] / base, float(h["time_s"].median())))
    if len(plain) < 2:
        return None
    f, t = np.array(plain).T
    b, a = np.polyfit(f, t, 1)
    teacher = float(np.median([t - (a + b * f) for f, t in kd])) if kd else 0.0
    return EpochCost(float(a), float(b), max(teacher, 0.0), len(plain) + len(kd))


def _fraction(pc: pl.PipelineConfig, s: stages.StageSpec, index: dict) -> float:
    """The share of the baseline's GFLOPs the model that ``s`` trains has."""
    pruned = dict(s.inputs).get("pruned")
    if pruned is None:
        return 1.0
    p = index[pruned]
    if p.call == "prune_gradual":
        return _budget_share(pc.budget)
    args = p.kwargs
    return _budget_share(args["budget"]) if args.get("budget") else _planned_share(pc, args)


def _budget_share(budget: str) -> float:
    from yolocompress.compress.budget import Budget
    return Budget.parse(budget).of(1.0)


def _planned_share(pc: pl.PipelineConfig, args: dict) -> float:
    """The GFLOPs share of a ratio or layer prune planned on a freshly initialised model."""
    from yolocompress.compress.cost import CostModel
    from yolocompress.compress.graph import build_graph
    from yolocompress.compress.plan import PruneConfig, make_plan
    from yolocompress.darknet.loader import load_model
    model = load_model(pc.arch, classes=pl._classes(pc))
    config = PruneConfig(strategy=args["strategy"], ratio=args["ratio"], min_keep=pc.min_keep,
                         drop_blocks=args["blocks"], importance=args["importance"], img_size=pc.img_size)
    cost = CostModel(build_graph(model.blocks), img_size=pc.img_size)
    return cost.measure(make_plan(model, config)) / cost.measure()


def _epochs(pc: pl.PipelineConfig, s: stages.StageSpec) -> int:
    """The epochs ``s`` trains (as its pipeline call decides them)."""
    kw = s.kwargs
    if s.call == "baseline":
        return pc.baseline_epochs
    if s.call == "sparse":
        return kw.get("epochs") or pc.sparse_epochs
    if s.call == "control_scratch":
        return pc.baseline_epochs + pc.sparse_epochs + pc.finetune_epochs
    if s.call == "finetune_gradual":
        return pl.gradual_finetune_epochs(pc)
    if s.call == "prune_gradual":      # its sparse steps between the prunes
        return pc.gradual_between * len(pc.gradual_steps)
    return pc.finetune_epochs


def estimate(pc: pl.PipelineConfig, cost: EpochCost) -> pd.DataFrame:
    """One row per training stage of ``make results`` (each run once): its epochs, GFLOPs share and
    estimated minutes, in the order the stages run."""
    specs = stages.demo_stages(pc)
    index = stages.by_id(specs)
    rows = []
    for wave, todo in enumerate(stages.waves(specs)):
        for s in todo:
            f = _fraction(pc, s, index)
            distill = s.call == "finetune_best" or bool(s.kwargs.get("kind"))
            epochs = _epochs(pc, s)
            if s.call == "finetune_best" and s.kwargs.get("seed") is None:
                epochs = 0                     # the first seed at the best setting is that sweep run, cached
            batches = pc.max_batches / _batches_per_epoch(pc) if pc.max_batches else 1.0
            rows.append({"wave": wave, "stage": s.id, "epochs": epochs, "GFLOPs share": f, "distill": distill,
                         "minutes": epochs * cost.seconds(f, distill) * min(batches, 1.0) / 60})
    return pd.DataFrame(rows)


def wall_minutes(df: pd.DataFrame, jobs: int) -> float:
    """The wall clock of ``estimate``'s stages on ``jobs`` processes: each wave starts when the
    last job of the previous one ends, and its stages go longest first to whichever process is free
    (as ``prefetch`` submits them). The pack's per-epoch times were measured two jobs at a time,
    one thread each, so the estimate holds for ``--jobs 2`` on 2 cores."""
    total = 0.0
    for _, wave in df.groupby("wave"):
        free = [0.0] * max(1, jobs)
        for m in sorted(wave["minutes"], reverse=True):
            k = free.index(min(free))
            free[k] += m
        total += max(free)
    return total


def _batches_per_epoch(pc: pl.PipelineConfig) -> float:
    """Batches in a full epoch of the training set (``max_batches`` caps it)."""
    try:
        return max(1.0, len(pl.data_of(pc).train) / pc.batch_size)
    except Exception:                          # no dataset yet: the bundled set's 2000 images
        return 2000 / pc.batch_size


def describe(df: pd.DataFrame, cost: EpochCost, docs: str | Path, jobs: int = 2) -> str:
    """The dry run's printout: the stages, then the totals and where the figures come from."""
    by_call = df.assign(kind=df["stage"].str.split("/").str[0]).groupby("kind", sort=False)["minutes"].sum()
    lines = [df.round({"GFLOPs share": 3, "minutes": 1}).to_string(index=False), "",
             "minutes by kind of stage: " + ", ".join(f"{k} {v:.0f}" for k, v in by_call.items()),
             f"estimated: {df['minutes'].sum() / 60:.1f} h of training over {len(df)} stages; wall clock with "
             f"--jobs {jobs}: {wall_minutes(df, jobs) / 60:.1f} h, plus evaluation and the final latency timing",
             f"estimate: t_epoch = {cost.fixed:.1f} s + {cost.per_gflops:.1f} s x GFLOPs share"
             + (f" (+ {cost.teacher:.1f} s for the teacher when distilling)" if cost.teacher else "")
             + f", fitted to the per-epoch times of {cost.runs} runs in {Path(docs) / 'pack'} "
               "(another machine or load: scale accordingly)"]
    return "\n".join(lines)
