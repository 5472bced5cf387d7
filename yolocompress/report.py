"""``make demo``: run every stage of the method on the bundled data and write docs/results.md with
PNG figures. Stages already finished in the run directory (same settings) are reused."""
from __future__ import annotations

import json
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
import torch

from . import pipeline as pl
from . import viz
from .io import atomic_write_text
from .plan import bn_gammas
from .sparsity import penalised_gammas, sparsity_stats

SCHEDULES = ("constant", "global-decay", "local-decay")
STRATEGIES = ("conservative", "shared", "union")


def _fmt_table(df: pd.DataFrame, cols: list[str]) -> str:
    """A markdown table with sensible number formats."""
    def cell(c, v):
        if isinstance(v, float):
            if c in ("params",):
                return f"{v:,.0f}"
            return f"{v:.3f}" if abs(v) < 100 else f"{v:,.0f}"
        return f"{v:,}" if isinstance(v, (int, np.integer)) else str(v)
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(cell(c, r[c]) for c in cols) + " |" for _, r in df.iterrows()]
    return "\n".join(lines)


def _sparse_row(stage: pl.Stage) -> dict:
    return {"schedule": stage.name, **stage.row, **sparsity_stats(penalised_gammas(stage.model))}


@dataclass
class _Collected:
    """What ``run_all`` gathers: the main table's rows, the rows before finetuning, the plans, the
    distillation rows, and every (row, model) whose latency is measured again at the end."""
    rows: list = field(default_factory=list)
    before: list = field(default_factory=list)
    plans: dict = field(default_factory=dict)
    kd: list = field(default_factory=list)
    timed: list = field(default_factory=list)
    records: list = field(default_factory=list)   # the rows of docs/results.json

    def add(self, row: dict, model, before: bool = False) -> None:
        (self.before if before else self.rows).append(row)
        self.timed.append((row, model))

    def add_pruned(self, pruned: pl.Stage) -> None:
        self.plans[pruned.name] = pruned.extra["plan"]
        self.add(pruned.row | {"stage": "pruned, no finetune"}, pruned.model, before=True)


def run_all(pc: pl.PipelineConfig, docs: Path, seeds: tuple[int, ...] = (0, 1)) -> pd.DataFrame:
    """Every stage; returns the results table and writes ``docs/results.md`` + figures."""
    matplotlib.use("Agg")
    t_start = time.time()
    docs.mkdir(parents=True, exist_ok=True)
    base = pl.baseline(pc)
    sparse = {s: pl.sparse(pc, schedule=s) for s in SCHEDULES}
    sparse_df = pd.DataFrame([_sparse_row(st) for st in sparse.values()])
    chosen = sparse[pc.sparse_schedule]
    c = _Collected()
    c.add(base.row | {"stage": "baseline"}, base.model)
    c.add(chosen.row | {"stage": f"sparse ({pc.sparse_schedule})"}, chosen.model)
    c.records += [pl.record(base, "baseline"), pl.record(chosen, "sparse")]
    control = pl.control_same_epochs(pc, chosen)
    c.add(control.row | {"stage": "control: unpruned, same total epochs"}, control.model)
    _prune_and_finetune(pc, chosen, control, c)
    target = _distillation(pc, chosen, c, seeds)
    timing = _remeasure_latency(pc, c.timed)
    table = pl.results_table([pl.Stage("", base.model, row=r) for r in c.rows])
    table["stage"] = [r["stage"] for r in c.rows]
    before, kd = pd.DataFrame(c.before), pd.DataFrame(c.kd)
    _figures(docs, base, chosen, sparse, c.plans, table, before)
    table["map50 vs control"] = table["map50"] - control.row["map50"]
    _write_markdown(docs, pc, table, sparse_df, before, kd, target.name, time.time() - t_start, timing)
    atomic_write_text(docs / "results.json", json.dumps(_latency_synced(c.records, c.rows), indent=1))
    return table


def _prune_and_finetune(pc: pl.PipelineConfig, chosen: pl.Stage, control: pl.Stage, c: _Collected) -> None:
    """The three channel strategies, layer-only and combined pruning, each finetuned and set beside
    its controls: the unpruned model trained as long (all of them) and, for the combined prune, its
    architecture trained from scratch as long."""
    variants = [(s, pc.ratio, 0) for s in STRATEGIES] + [("none", 0.0, pc.blocks), (pc.strategy, pc.ratio, pc.blocks)]
    for strategy, ratio, blocks in variants:
        pruned = pl.prune(pc, chosen, strategy, ratio, blocks, name="layers-only" if strategy == "none" else None)
        c.add_pruned(pruned)
        ft = pl.finetune(pc, pruned)
        c.add(ft.row | {"stage": "pruned + finetune", "pruned": pruned.row["pruned"]}, ft.model)
        name = ft.row["model"]
        c.records += [pl.record(ft, "pruned"), pl.record(control, "control-same-epochs", control_of=name)]
        if (strategy, ratio, blocks) == (pc.strategy, pc.ratio, pc.blocks) and pc.scratch_controls:
            scratch = pl.control_scratch(pc, pruned)
            c.add(scratch.row | {"stage": "control: pruned architecture from scratch"}, scratch.model)
            c.records.append(pl.record(scratch, "control-scratch", control_of=name))


def _distillation(pc: pl.PipelineConfig, chosen: pl.Stage, c: _Collected, seeds) -> pl.Stage:
    """Distillation on an aggressive prune: each variant (and plain finetuning) over several seeds."""
    target = pl.prune_aggressive(pc, chosen)
    c.add_pruned(target)
    for kind in (None, "hinton", "bounded"):
        for seed in seeds:
            st = pl.finetune(pc, target, teacher=chosen if kind else None, kind=kind,
                             seed=None if seed == pc.seed else seed)     # seed pc.seed: the run above
            c.kd.append(st.row | {"finetune": kind or "plain", "seed": seed})
            c.records.append(pl.record(st, "pruned", distill=kind, seed=seed))
            if seed == seeds[0]:
                c.add(st.row | {"stage": "aggressive prune + finetune" + (f" + KD ({kind})" if kind else "")},
                      st.model)
    return target


def _latency_synced(records: list[dict], rows: list[dict]) -> list[dict]:
    """results.json rows with the latency re-measured at the end (rows are matched by model name)."""
    latest = {r["model"]: r["latency_ms"] for r in rows}
    return [r | {"latency_ms": latest.get(r["name"], r["latency_ms"])} for r in records]


def _remeasure_latency(pc: pl.PipelineConfig, timed: list[tuple[dict, torch.nn.Module]]) -> dict:
    """Latency of every model again at the end, all in one interleaved timing (every round times
    each model once, fused as deployed, 2 threads): the figures measured right after each stage
    (in its done.json) can be skewed by whatever else ran on the machine at the time. Returns the
    timing conditions, which results.md states."""
    import copy
    from .profile import OtherLoad, conditions, median_p90, time_interleaved, torch_runner
    x = torch.rand(1, 3, pc.img_size, pc.img_size)
    runners = {str(k): torch_runner(copy.deepcopy(m).cpu().eval().fuse(), x) for k, (_, m) in enumerate(timed)}
    with OtherLoad() as other:
        times = time_interleaved(runners, runs=max(pc.latency_runs, 3) * 3, threads=2, progress=True)
    for k, (row, _) in enumerate(timed):
        row["latency_ms"] = median_p90(times[str(k)])[0]
    return {**conditions(2), "other_cores": other.cores}


def _figures(docs: Path, base, chosen, sparse, plans, table, before) -> None:
    import matplotlib.pyplot as plt
    pareto = pd.concat([table, before.assign(stage="pruned, no finetune")], ignore_index=True)
    fig = viz.plot_pareto(pareto, "GFLOPs", "map50", "model", title="mAP@0.5 vs GFLOPs (Pareto front dashed)")
    fig.savefig(docs / "pareto.png", dpi=120, bbox_inches="tight")
    fig = viz.plot_pareto(table, "GFLOPs", "latency_ms", "model", title="CPU latency (batch 1, 2 threads) vs GFLOPs")
    fig.axes[0].lines[-1].remove()
    fig.savefig(docs / "latency_vs_gflops.png", dpi=120, bbox_inches="tight")
    gam = {"baseline": np.concatenate(list(bn_gammas(base.model).values())),
           f"sparse ({chosen.name})": np.concatenate(list(bn_gammas(chosen.model).values()))}
    viz.plot_gamma_hist(gam).savefig(docs / "gamma_hist.png", dpi=120, bbox_inches="tight")
    viz.plot_channels(plans, title="channels per BN conv after each prune").savefig(
        docs / "channels_per_layer.png", dpi=120, bbox_inches="tight")
    viz.plot_history({k: v.history for k, v in sparse.items()}, ["map50", "gamma_lt_1e-2"],
                     "sparse training schedules").savefig(docs / "sparse_schedules.png", dpi=120, bbox_inches="tight")
    plt.close("all")


def _val_images(pc: pl.PipelineConfig) -> str:
    n = len(pl.data_of(pc).val)
    return f"the first {pc.max_val_images} of {n} validation images" if pc.max_val_images else f"the {n} validation images"


def _conditions_text(t: dict) -> str:
    other = "unknown" if t.get("other_cores") is None else f"{t['other_cores']:.2f}"
    return (f"{t['threads']} threads, OMP_WAIT_POLICY={t['OMP_WAIT_POLICY']}, load average {t['load_1m']:.2f} "
            f"at the start, {other} cores used by other processes meanwhile")


def _write_markdown(docs, pc, table, sparse_df, before, kd, kd_target, seconds, timing: dict) -> None:
    trained = pd.concat([table[table["stage"].str.startswith(("baseline", "pruned +"))], sparse_df, kd])
    train_seconds = trained.drop_duplicates("model")["time_s"].sum()
    cols = ["stage", "model", "epochs_total", "params", "GFLOPs", "GFLOPs ratio", "latency_ms", "latency ratio",
            "map50", "map50 vs control", "map", "time_s"]
    kd_summary = kd.groupby("finetune")[["map50", "map"]].agg(["mean", "std"])
    kd_summary.columns = [f"{a} {b}" for a, b in kd_summary.columns]
    kd_summary = kd_summary.reset_index()
    text = f"""# Results on the bundled shapes dataset

Regenerated by `make demo` (`python -m yolocompress demo --out {pc.runs}`) on
{platform.processor() or platform.machine()} with {torch.get_num_threads()} threads. The training stages
add up to {train_seconds / 60:.0f} minutes (every `time_s` below, all schedules and seeds included);
this invocation took {seconds / 60:.1f} minutes (stages finished earlier with the same settings are reused).
Teaching model, {pc.img_size} px, settings: `{pc}`.

mAP is measured on {_val_images(pc)} with the COCO evaluator; latency is the median of
batch-1 forwards of the BN-folded model (`Darknet.fuse()`) on the CPU with 2 threads, every model
timed again at the end of the run in one interleaved measurement ({_conditions_text(timing)}); GFLOPs are 2 x conv multiply-accumulates; `time_s` is the training time of that stage.
`epochs_total` counts every epoch a model trained, its parents' included. `map50 vs control` is the
difference to the *same-epoch control*, the unpruned sparse model finetuned for as many epochs as
the pruned ones: it is the cost of pruning, free of the extra epochs. The *from scratch* control
trains the combined prune's architecture for the same total epochs (Liu et al., ICLR 2019).
Every row is also in [results.json](results.json).

## All stages

{_fmt_table(table, [c for c in cols if c in table])}

![Pareto front](pareto.png)
![latency vs GFLOPs](latency_vs_gflops.png)

## Sparse training: the three schedules

s = {pc.sparsity}, {pc.sparse_epochs} epochs from the baseline; `gamma_lt_1e-2` is the fraction of
penalised channels with |gamma| < 0.01.

{_fmt_table(sparse_df, ["schedule", "map50", "map", "gamma_lt_1e-2", "gamma_lt_1e-3", "time_s"])}

![schedules](sparse_schedules.png)
![gamma histograms](gamma_hist.png)

## Pruned, before finetuning

{_fmt_table(before, ["model", "params", "GFLOPs", "latency_ms", "map50", "map", "pruned"])}

![channels per layer](channels_per_layer.png)

## Distillation while finetuning `{kd_target}`

Mean and standard deviation over seeds {sorted(kd['seed'].unique().tolist())}, {pc.finetune_epochs} epochs each:

{_fmt_table(kd_summary, list(kd_summary.columns))}

Per seed:

{_fmt_table(kd, ["finetune", "seed", "map50", "map", "time_s"])}
"""
    atomic_write_text(docs / "results.md", text)
