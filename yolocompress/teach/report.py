"""``make results``: run every stage of the method on the bundled data and write docs/results.md with
PNG figures. Stages already finished in the run directory (same settings) are reused.

The stages are ``stages.demo_stages``: ``run_all`` walks that list in order and files each finished
stage where its spec says (a row of results.md's tables, a results.json row, a sweep table), then
writes the tables, figures, results pack and text from what it gathered."""
from __future__ import annotations

import json
import platform
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
import torch

from . import pack
from . import pipeline as pl
from . import stages
from . import viz
from .pipeline import CONTROL_SAME_EPOCHS, CONTROL_SCRATCH, PRUNED, ResultRow
from .stages import gradual_label  # noqa: F401  (notebook 10 and nb.py name it here)
from yolocompress.darknet.cfg import Conv
from yolocompress.files import atomic_write_text
from yolocompress.compress.distill import KINDS as KD_KINDS
from yolocompress.compress.plan import bn_gammas
from yolocompress.compress.strategies import STRATEGIES
from yolocompress.compress.sparsity import channel_weights, penalised_convs, penalised_gammas, sparsity_stats


def _round3(x: float) -> float:
    """x to 3 decimals, with a negative value that rounds to zero made +0.0 (so it prints 0.000, not -0.000)."""
    return round(float(x), 3) + 0.0


def _signed(x: float) -> str:
    """A difference with its sign, to 3 decimals; one that rounds to zero reads +0.000, not -0.000."""
    return f"{_round3(x):+.3f}"


def _fmt_table(df: pd.DataFrame, cols: list[str]) -> str:
    """A markdown table with sensible number formats."""
    def cell(c, v):
        """One cell: params with thousands separators, small floats to 3 decimals."""
        if isinstance(v, float):
            if c in ("params",):
                return f"{v:,.0f}"
            return f"{_round3(v):.3f}" if abs(v) < 100 else f"{v:,.0f}"
        return f"{v:,}" if isinstance(v, (int, np.integer)) else str(v)
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(cell(c, r[c]) for c in cols) + " |" for _, r in df.iterrows()]
    return "\n".join(lines)


def _sparse_row(stage: pl.Stage) -> dict:
    """A row of the sparse-schedules table: the run, its numbers and its |gamma| sparsity."""
    return {"schedule": stage.name, **stage.row, **sparsity_stats(penalised_gammas(stage.model))}


# ----------------------------------------------------------------------------- walking the stages

@dataclass
class _Collected:
    """What ``run_all`` gathers while it walks the stages: the main table's rows, the rows before
    finetuning, the plans (channels figure), the distillation rows, every (row, model) whose latency
    is measured again at the end, the results.json rows, every trained stage (its history goes into
    the results pack), the sweep tables, and every finished stage by spec id."""
    rows: list = field(default_factory=list)
    controls: list = field(default_factory=list)  # per row: id of the same-epoch control it is compared with
    before: list = field(default_factory=list)
    plans: dict = field(default_factory=dict)
    kd: list = field(default_factory=list)
    kd_sweep: list = field(default_factory=list)
    penalty: list = field(default_factory=list)
    timed: list = field(default_factory=list)
    records: list = field(default_factory=list)   # ResultRow: the rows of docs/results.json
    control_for: dict = field(default_factory=dict)  # {results.json name: spec id of its same-epoch control}
    cliff: list = field(default_factory=list)     # the ladder's rows, before and after finetuning (``_cliff_row``)
    trained: dict = field(default_factory=dict)   # {run name: Stage}
    sparse: dict = field(default_factory=dict)    # {legend: Stage}: the sparse table's runs
    tables: dict = field(default_factory=dict)    # {pack table name: DataFrame}
    done: dict = field(default_factory=dict)      # {spec id: Stage}

    def add(self, row: dict, model, before: bool = False) -> None:
        """A row of the main (or before-finetuning) table, its model timed again at the end."""
        (self.before if before else self.rows).append(row)
        self.timed.append((row, model))

    def collect(self, spec: stages.StageSpec, stage: pl.Stage, done: dict) -> None:
        """File one finished stage where its spec says the report reads it."""
        self.done = done
        if spec.trains and not spec.is_prune:        # a training run: its history goes into the pack
            self.trained[stage.name] = stage
        if spec.legend:
            self.sparse[spec.legend] = stage
        if "penalty" in spec.tags:
            self.penalty.append(_penalty_row(spec, stage))
        if "kd-sweep" in spec.tags:
            self.kd_sweep.append(_kd_sweep_row(spec, stage, done))
        if "kd-seed" in spec.tags:
            s = stage.extra["settings"]
            self.kd.append(stage.row | {"finetune": s["kind"] or "plain", "seed": spec.facts["seed"],
                                        "weight": s["weight"], "T": s["T"]})
        if "line" in spec.facts:
            self.cliff.append(_cliff_row(spec, stage))
        if spec.is_prune:
            self._add_prune(spec, stage)
        elif spec.label or spec.record:
            self._add_model(spec, stage, done)

    def _add_prune(self, spec: stages.StageSpec, stage: pl.Stage) -> None:
        """A prune before finetuning (each once: the KD target can be one of the chain's prunes). Its
        plan goes into the channels figure unless it is a gradual step's, which indexes the layers of
        an already pruned model."""
        if any(r["model"] == stage.row["model"] for r in self.before):
            return
        if "plan" in spec.tags:
            self.plans[stage.name] = stage.extra["plan"]
        self.add(stage.row | {"stage": spec.label}, stage.model, before=True)

    def _add_model(self, spec: stages.StageSpec, stage: pl.Stage, done: dict) -> None:
        """A model's row in the main table (once per model) and its results.json rows; a model only
        in results.json is timed with the rest (one architecture, one latency)."""
        shown = spec.label is not None and not any(r["model"] == stage.row["model"] for r in self.rows)
        if shown:
            self.add(_main_row(spec, stage, done), stage.model)
            self.controls.append(spec.control or "control")
        elif not any(r["model"] == stage.row["model"] for r, _ in self.timed):
            self.timed.append((dict(stage.row), stage.model))
        if spec.record:
            self._add_record(_record(spec, stage, done), spec.control if spec.record == PRUNED else None)

    def _add_record(self, rec: ResultRow, control: str | None) -> None:
        """One row per model: a model two specs name (a ladder rung that is also the KD target's
        plain seed run) keeps its first row, with what the later spec states filled in."""
        k = next((i for i, r in enumerate(self.records) if r.name == rec.name), None)
        if k is None:
            self.records.append(rec)
        else:
            old = self.records[k]
            self.records[k] = replace(old, **{f: getattr(rec, f) for f in ("distill", "seed", "gradual", "kd_weight",
                                                                            "kd_T", "kd_target", "ladder")
                                              if getattr(old, f) is None})
        if control and rec.name not in self.control_for:
            self.control_for[rec.name] = control

    def results(self) -> list[ResultRow]:
        """The results.json rows: each same-epoch control with the list of the models it controls,
        and the std over seeds on every run of a seed group (``pl.seed_groups``)."""
        names = {i: self.done[i].row["model"] for i in set(self.control_for.values())}
        of: dict[str, list] = {}
        for name, control in self.control_for.items():
            of.setdefault(names[control], []).append(name)
        rows = [replace(r, control_of=of.get(r.name, [])) if r.kind == CONTROL_SAME_EPOCHS else r
                for r in self.records]
        return pl.seed_groups(rows)


def _main_row(spec: stages.StageSpec, stage: pl.Stage, done: dict) -> dict:
    """The row of results.md's stages table: the stage's numbers, its label, its legend group in
    pareto.png and, for a finetuned prune, the share the prune removed."""
    row = stage.row | {"stage": spec.label, "group": _group(spec)}
    pruned = dict(spec.inputs).get("pruned")
    if spec.record == PRUNED and isinstance(pruned, str) and "pruned" in done[pruned].row:
        row["pruned"] = done[pruned].row["pruned"]
    return row


def _record(spec: stages.StageSpec, stage: pl.Stage, done: dict) -> ResultRow:
    """The stage's results.json row, with what its spec states (seed, distillation, gradual steps)
    and, for a KD seed run, the KD weight and T it ran at and its target."""
    facts = spec.facts
    control_of = done[spec.control_of].row["model"] if spec.control_of else None
    rec = pl.record(stage, spec.record, control_of=control_of, distill=facts.get("distill"), seed=facts.get("seed"))
    if "gradual" in facts:
        rec = replace(rec, gradual=facts["gradual"])
    if "kd-seed" in spec.tags:
        s = stage.extra["settings"]
        rec = replace(rec, kd_weight=s["weight"], kd_T=s["T"], kd_target=done[dict(spec.inputs)["pruned"]].name)
    if "line" in facts:
        rec = replace(rec, ladder=f"{facts['line']} {facts['rung']}")
    return rec


def _cliff_row(spec: stages.StageSpec, stage: pl.Stage) -> dict:
    """A row of the cliff table: the ladder line and rung of a prune, before or after finetuning."""
    r = stage.row
    return {"line": spec.facts["line"], "rung": spec.facts["rung"], "stage": "before" if spec.is_prune else "after",
            "model": r["model"], "params": r["params"], "GFLOPs": r["GFLOPs"], "map50": r["map50"], "map": r["map"]}


def cliff_table(rows: list[dict], records: list[ResultRow]) -> pd.DataFrame:
    """The cliff rows with the std over seeds of each finetuned rung that ran over seeds (from the
    results.json rows' seed groups; NaN elsewhere)."""
    df = pd.DataFrame(rows, columns=["line", "rung", "stage", "model", "params", "GFLOPs", "map50", "map"])
    by_name = {r.name: r for r in records}
    for m in ("map", "map50"):
        df[f"{m}_std"] = [getattr(by_name.get(n), f"{m}_std", None) for n in df["model"]]
    df["seeds"] = [getattr(by_name.get(n), "seeds", None) for n in df["model"]]
    return df.astype({"map_std": float, "map50_std": float})


def _penalty_row(spec: stages.StageSpec, stage: pl.Stage) -> dict:
    """A row of the penalty table (notebook 03's slider): the run's optimizer, lr, s and length, as
    its spec states them, and where its gammas went."""
    kw, facts = spec.kwargs, spec.facts
    return {"s": kw["s"], "optimizer": facts.get("optimizer"), "lr": facts.get("lr"), "run": stage.name,
            "epochs": kw["epochs"], "map50": stage.row["map50"], "map": stage.row["map"],
            "min_map50_during": float(stage.history["map50"].min()) if "map50" in stage.history else None,
            **sparsity_stats(penalised_gammas(stage.model))}


def _kd_sweep_row(spec: stages.StageSpec, stage: pl.Stage, done: dict) -> dict:
    """A row of the KD weight/T sweep, with the prune it finetunes (``kd_target``)."""
    kw = spec.kwargs
    return {"finetune": kw["kind"], "weight": kw["weight"], "T": kw["temperature"], "margin": kw.get("margin", 0.0),
            "seed": spec.facts["seed"],
            "run": stage.name, "map50": stage.row["map50"], "map": stage.row["map"], "time_s": stage.row["time_s"],
            "kd_target": done[dict(spec.inputs)["pruned"]].name}


def run_all(pc: pl.PipelineConfig, docs: Path, readme: Path | None = None, started: float | None = None,
            jobs: int = 1) -> pd.DataFrame:
    """Every stage of ``stages.demo_stages``, in order; returns the results table and writes
    ``docs/results.md``, ``results.json``, the figures and the results pack (``pack.py``), and the
    results block of ``readme`` when given. ``started``: when the whole command began (``prefetch``
    before it, with ``jobs`` processes)."""
    matplotlib.use("Agg")
    t_start = started or time.time()
    docs.mkdir(parents=True, exist_ok=True)
    c = _Collected()
    specs = stages.demo_stages(pc)
    stages.run(pc, specs, on_stage=c.collect)
    _what_if_tables(pc, c.done["sparse"], c)
    timing = _remeasure_latency(pc, c.timed)
    table = _stage_table(c)
    _figures(docs, specs, c, table, pd.DataFrame(c.before))
    records = _latency_synced(c.results(), [row for row, _ in c.timed])
    c.tables["cliff"] = cliff_table(c.cliff, records)
    _cliff_figure(c.tables["cliff"], records).savefig(docs / "cliff.png", dpi=120, bbox_inches="tight")
    _write_pack(docs, c)
    doc = _Doc(pc, c, table, records, timing, time.time() - t_start, jobs)
    atomic_write_text(docs / "results.md", _markdown(doc))
    atomic_write_text(docs / "results.json", json.dumps([r.to_json() for r in records], indent=1))
    if readme is not None:
        update_readme(readme, records)
    return table


def _stage_table(c: _Collected) -> pd.DataFrame:
    """The main table: ``pl.results_table`` of the rows, their stage text, and each row's mAP@0.5
    against its own same-epoch control (the chain's, unless its spec names another)."""
    table = pl.results_table([pl.Stage("", c.done["baseline"].model, row=r) for r in c.rows])
    table["stage"] = [r["stage"] for r in c.rows]
    for m in ("map", "map50"):
        table[f"control {m}"] = [c.done[i].row[m] for i in c.controls]
        table[f"{m} vs control"] = table[m] - table[f"control {m}"]
    return table


def _what_if_tables(pc: pl.PipelineConfig, chosen: pl.Stage, c: _Collected) -> None:
    """Measured without finetuning (what-if = compact): each strategy's mAP over ``pc.sweep_ratios``,
    and the channel rankings of ``IMPORTANCES`` pruned to equal GFLOPs budgets."""
    from yolocompress.compress.plan import PruneConfig
    from .sweep import importance_sweep, sensitivity_sweep
    data = pl.data_of(pc)
    for strategy in STRATEGIES:
        config = PruneConfig(strategy=strategy, min_keep=pc.min_keep)
        c.tables[f"sensitivity-{strategy}"] = sensitivity_sweep(
            chosen.model, data, config, pc.sweep_ratios, pc.img_size, pc.max_val_images)
    config = PruneConfig(strategy=pc.strategy, min_keep=pc.min_keep, img_size=pc.img_size)
    c.tables["importance"] = importance_sweep(chosen.model, config, pc.budgets, data, pc.max_val_images)
    c.tables["penalty"] = pd.DataFrame(c.penalty)
    c.tables["kd-sweep"] = pd.DataFrame(c.kd_sweep)


def _write_pack(docs: Path, c: _Collected) -> None:
    """The committed results pack (``pack.py``): histories, |gamma| histograms, sweep tables."""
    for name, st in c.trained.items():
        pack.write_history(docs, name, st.history)
    pack.drop_stale_histories(docs, c.trained)
    penalty = [c.trained[r["run"]] for r in c.penalty]
    runs = {st.name: st for st in [c.done["baseline"], *c.sparse.values(), *penalty]}
    pack.write_gammas(docs, {k: penalised_gammas(st.model) for k, st in runs.items()})
    pack.write_gamma_epochs(docs, {k: st.extra["gamma_hist"] for k, st in runs.items() if "gamma_hist" in st.extra})
    for name, df in c.tables.items():
        pack.write_table(docs, name, df)


def _latency_synced(records: list[ResultRow], rows: list[dict]) -> list[ResultRow]:
    """results.json rows with the latency re-measured at the end (``rows``: every timed row, matched
    by model name; the KD seed runs are timed too, so one architecture reads one latency)."""
    latest = {r["model"]: r["latency_ms"] for r in rows}
    return [replace(r, latency_ms=latest.get(r.name, r.latency_ms)) for r in records]


def _remeasure_latency(pc: pl.PipelineConfig, timed: list[tuple[dict, torch.nn.Module]]) -> dict:
    """Latency of every model again at the end, all in one interleaved timing (every round times
    each model once, fused as deployed, 2 threads): the figures measured right after each stage
    (in its done.json) can be skewed by whatever else ran on the machine at the time. Each trained
    stage's done.json then stores this figure, so full-mode notebooks read the same number as
    results.md (one measurement per model). Returns the timing conditions, which results.md states."""
    import copy
    from yolocompress.deploy.footprint import OtherLoad, conditions, median_p90, time_interleaved, torch_runner
    x = torch.rand(1, 3, pc.img_size, pc.img_size)
    runners = {str(k): torch_runner(copy.deepcopy(m).cpu().eval().fuse(), x) for k, (_, m) in enumerate(timed)}
    with OtherLoad() as other:
        times = time_interleaved(runners, runs=max(pc.latency_runs, 3) * 3, threads=2, progress=True)
    timing = {**conditions(2), "other_cores": other.cores}
    for k, (row, _) in enumerate(timed):
        row["latency_ms"] = median_p90(times[str(k)])[0]
        pl.store_latency(pc, row["model"], row["latency_ms"], timing)
    return timing


# ----------------------------------------------------------------------------- figures

def _figures(docs: Path, specs: list[stages.StageSpec], c: _Collected, table: pd.DataFrame,
             before: pd.DataFrame) -> None:
    """Every PNG of results.md."""
    import matplotlib.pyplot as plt
    base, chosen = c.done["baseline"], c.done["sparse"]
    _pareto_figure(table, before).savefig(docs / "pareto.png", dpi=120, bbox_inches="tight")
    fig = viz.plot_pareto(table, "GFLOPs", "latency_ms", "model", title="CPU latency (batch 1, 2 threads) vs GFLOPs")
    fig.axes[0].lines[-1].remove()
    fig.savefig(docs / "latency_vs_gflops.png", dpi=120, bbox_inches="tight")
    recorded = [c.done[s.id] for s in specs if s.record == pl.SPARSE]       # the chain's and the FLOPs-weighted
    gam = {"baseline": np.concatenate(list(bn_gammas(base.model).values())),
           **{f"sparse ({st.name})": np.concatenate(list(bn_gammas(st.model).values())) for st in recorded}}
    viz.plot_gamma_hist(gam).savefig(docs / "gamma_hist.png", dpi=120, bbox_inches="tight")
    viz.plot_channels(c.plans, title="channels per BN conv after each prune").savefig(
        docs / "channels_per_layer.png", dpi=120, bbox_inches="tight")
    viz.plot_history({k: v.history for k, v in c.sparse.items()}, ["map50", "gamma_lt_1e-2"],
                     "sparse training schedules").savefig(docs / "sparse_schedules.png", dpi=120, bbox_inches="tight")
    _training_curve(docs, base, chosen, c)
    viz.plot_importance(c.tables["importance"]).savefig(docs / "importance.png", dpi=120, bbox_inches="tight")
    viz.plot_sweep({s: c.tables[f"sensitivity-{s}"] for s in STRATEGIES}).savefig(
        docs / "sensitivity.png", dpi=120, bbox_inches="tight")
    plt.close("all")


def _cliff_figure(cliff: pd.DataFrame, records: list[ResultRow]):
    """docs/cliff.png from the cliff table, the chain's same-epoch control (mean +- std over its
    seeds) and the from-scratch controls of the ladder's seed budgets."""
    rows = pl.as_rows(records)
    ctl = next((r for r in rows if r.kind == CONTROL_SAME_EPOCHS), None)
    control = {"GFLOPs": ctl.gflops, "map": ctl.map, "map_std": ctl.map_std} if ctl else None
    scratch = pd.DataFrame([{"GFLOPs": r.gflops, "map": r.map} for r in rows if r.kind == CONTROL_SCRATCH])
    return viz.plot_cliff(cliff, control, scratch)


# the legend groups of pareto.png's left panel
BASELINE_GROUP, SPARSE_GROUP, CONTROL_GROUP = "baseline", "sparse, unpruned", "same-epoch control"
SCRATCH_GROUP, PRUNED_GROUP, KD_GROUP = "pruned architecture from scratch", "pruned + finetune", "pruned + finetune with KD"


def _group(spec: stages.StageSpec) -> str:
    """The legend group of a stage's row in pareto.png, from what its spec says it is (its pipeline
    call, its results.json kind, its distillation), not from its label text."""
    if spec.call == "control_scratch":
        return SCRATCH_GROUP
    if spec.call == "control_same_epochs":
        return CONTROL_GROUP
    if spec.record in (pl.BASELINE, pl.SPARSE):
        return BASELINE_GROUP if spec.record == pl.BASELINE else SPARSE_GROUP
    return KD_GROUP if spec.facts.get("distill") else PRUNED_GROUP


def _pareto_figure(table: pd.DataFrame, before: pd.DataFrame):
    """docs/pareto.png: mAP@0.5 vs GFLOPs after finetuning (coloured by kind, the Pareto front
    labelled: most finetuned models crowd just under the baseline) and, beside it on the full
    0-1 scale, every prune before finetuning (each labelled). ``table["group"]``: each row's legend
    group (``_group``)."""
    import matplotlib.pyplot as plt
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 4.8), gridspec_kw={"width_ratios": [1.25, 1]})
    after = table.rename(columns={"group": "kind"})
    viz.plot_pareto(after, "GFLOPs", "map50", "model", ax=left, hue="kind", annotate="front",
                    title="trained models: mAP@0.5 vs GFLOPs (front dashed, labelled)")
    base = after.loc[after["kind"] == BASELINE_GROUP, "map50"]
    if len(base):
        left.axhline(base.iloc[0], color="tab:blue", lw=0.8, ls=":", label="baseline mAP@0.5")
    left.legend(fontsize=7, loc="lower right")
    pruned = before.assign(model=before["model"].str.replace(" (no finetune)", "", regex=False))
    viz.plot_pareto(pruned, "GFLOPs", "map50", "model", ax=right, title="the prunes before finetuning")
    right.set_ylim(-0.05, 1.05)
    fig.tight_layout()
    return fig


def _training_curve(docs: Path, base, chosen, c: _Collected) -> None:
    """docs/training_curve.png: mAP over the total epochs of the baseline -> sparse -> control chain
    and of each finetuned prune (no KD), so the learner sees where the baseline stood and that
    every pruned model ends beside its control at the same epoch."""
    n_base, n_sparse = base.row["epochs"], chosen.row["epochs"]
    chain = [(0, base.history), (n_base, chosen.history)]
    chains = {"baseline -> sparse": chain}
    shown = {row["model"] for row in c.rows}
    for r in c.records:     # the same-epoch control and each prune of the stage table finetuned without KD, one seed
        if r.kind in (PRUNED, CONTROL_SAME_EPOCHS) and not r.distill and r.seed in (None, 0) and r.name in shown:
            chains[r.name] = [(n_base + n_sparse, c.trained[r.name].history)]
    viz.plot_total_epochs(chains).savefig(docs / "training_curve.png", dpi=120, bbox_inches="tight")


# ----------------------------------------------------------------------------- what the numbers say

def _controls(rows: list[ResultRow]) -> dict[str, ResultRow]:
    """{name of a model: the row of its same-epoch control}."""
    return {name: r for r in rows if r.kind == CONTROL_SAME_EPOCHS for name in r.controls}


def noise(rows: list[ResultRow], *names: str, metric: str = "map") -> float | None:
    """The seed std a difference in ``metric`` between the rows ``names`` must exceed to count: the
    larger std of their seed groups; for rows that never ran over seeds, the largest std measured
    for any seed group (the best estimate of run-to-run noise there is); None without any seeds."""
    std = f"{metric}_std"
    own = [getattr(r, std) for r in rows if r.name in names and getattr(r, std) is not None]
    if own:
        return max(own)
    every = [getattr(r, std) for r in rows if getattr(r, std) is not None]
    return max(every) if every else None


def _differs(diff: float, tol: float | None) -> str:
    """Whether a difference counts: "" when it exceeds the noise ``tol``, else a parenthesis saying it is within it."""
    if tol is None:
        return " (one seed: no std to judge it by)"
    return "" if abs(diff) > tol else f" (within the seed std {tol:.3f}: no difference shown)"


def _maps(r: ResultRow) -> str:
    """"mAP@0.5:0.95 0.801 (mAP@0.5 0.986)": the headline metric with mAP@0.5 beside it."""
    return f"mAP@0.5:0.95 {r.map:.3f} (mAP@0.5 {r.map50:.3f})"


def headline(records, baseline_gflops: float, min_cut: float = 0.8,
             max_drop: float | None = None) -> tuple[ResultRow, ResultRow] | None:
    """(row, its control's row) of the smallest pruned + finetuned model (no distillation) whose
    mAP@0.5:0.95 is not below its same-epoch control's by more than ``max_drop`` (None: the seed
    std measured for the pair, ``noise``; 0.01 when no run had seeds), among those with at least
    ``min_cut`` fewer GFLOPs than the baseline; None when there is none (results.md then says so).
    The factor 1 + 1e-9 lets a model at exactly the cut pass despite the rounding of
    (1 - min_cut) * baseline_gflops."""
    rows = pl.as_rows(records)
    controls = _controls(rows)

    def close(r: ResultRow) -> bool:
        tol = max_drop if max_drop is not None else noise(rows, r.name, controls[r.name].name)
        return r.map >= controls[r.name].map - (0.01 if tol is None else tol)
    ok = [r for r in rows if r.kind == PRUNED and not r.distill and r.name in controls and r.seed in (None, 0)
          and r.gflops <= (1 - min_cut) * baseline_gflops * (1 + 1e-9) and close(r)]
    if not ok:
        return None
    best = min(ok, key=lambda r: r.gflops)
    return best, controls[best.name]


def _summary(records) -> str:
    """What the numbers say, computed from the rows (so the text cannot drift from the table)."""
    return "\n".join(summary_lines(records))


def summary_lines(records, *topics: str) -> list[str]:
    """The lines of "what the numbers say" on ``topics`` (``SUMMARY_TOPICS``; none: all), computed
    from results.json rows as ``_summary`` computes them - the notebooks print them after their
    tables, so their interpretation is the report's and stays true when the numbers change."""
    rows = pl.seed_groups(_one_row_per_model(pl.as_rows(records)))        # std on older files too
    if not any(r.kind == pl.BASELINE for r in rows):
        return []
    chain = next((r.name for r in rows if r.kind == pl.SPARSE), None)
    budget = {r.importance: r for r in rows if r.kind == PRUNED and r.target_gflops and not r.distill
              and r.seed in (None, 0) and r.sparse_model in (None, chain) and r.blocks_dropped
              and r.name in _budget_names(rows)}
    one_shot = budget.get("gamma-per-flop")
    by_topic = {"headline": lambda: _headline_lines(rows), "cliff": lambda: _cliff_lines(rows),
                "budget": lambda: _budget_lines(budget), "weighting": lambda: _weighting_lines(rows, one_shot, chain),
                "gradual": lambda: _gradual_lines(rows, one_shot), "scratch": lambda: _scratch_lines(rows),
                "kd": lambda: _kd_lines(rows)}
    unknown = set(topics) - set(by_topic)
    if unknown:
        raise ValueError(f"unknown summary topics {sorted(unknown)}: expected some of {', '.join(by_topic)}")
    return [line for t in (topics or by_topic) for line in by_topic[t]()]


def _one_row_per_model(rows: list[ResultRow]) -> list[ResultRow]:
    """The first row of each model; a control repeated once per model it controls (results.json
    before issue 37) becomes one row controlling all of them."""
    out: dict[str, ResultRow] = {}
    for r in rows:
        if r.name not in out:
            out[r.name] = r
        elif r.kind == CONTROL_SAME_EPOCHS:
            out[r.name] = replace(out[r.name], control_of=[*out[r.name].controls, *r.controls])
    return list(out.values())


SUMMARY_TOPICS = ("headline", "cliff", "budget", "weighting", "gradual", "scratch", "kd")


def _budget_names(rows: list[ResultRow]) -> set[str]:
    """The prunes to the chain's budget (the smallest target_gflops that more than one ranking reached)."""
    by_target: dict[float, set] = {}
    for r in rows:
        if r.kind == PRUNED and r.target_gflops and not r.distill:
            by_target.setdefault(round(r.target_gflops, 9), set()).add(r.importance)
    shared = [t for t, imps in by_target.items() if len(imps) > 1]
    return {r.name for r in rows if r.target_gflops and round(r.target_gflops, 9) in shared}


def _headline_lines(rows: list[ResultRow]) -> list[str]:
    """The smallest prune within the seed std of its control, or the largest cut that stays within it."""
    base = next(r for r in rows if r.kind == pl.BASELINE)
    h = headline(rows, base.gflops)
    if h:
        r, ctl = h
        return [f"- **{r.name}** has {1 - r.gflops / base.gflops:.0%} fewer GFLOPs and "
                f"{1 - r.params / base.params:.0%} fewer parameters than the baseline at {_maps(r)}, "
                f"against {_maps(ctl)} for its same-epoch control ({_signed(r.map - ctl.map)} mAP@0.5:0.95)."]
    within = "the seed std" if noise(rows) is not None else "0.01 (no run had seeds to measure a std by)"
    lines = [f"- No prune with at least 80% fewer GFLOPs stays within {within} of its same-epoch control "
             "on mAP@0.5:0.95 here."]
    best = headline(rows, base.gflops, min_cut=0.0)
    if best:
        r, ctl = best
        lines.append(f"- The largest cut within it: **{r.name}**, {1 - r.gflops / base.gflops:.0%} "
                     f"fewer GFLOPs at {_maps(r)} against {_maps(ctl)} ({_signed(r.map - ctl.map)}).")
    return lines


def _cliff_lines(rows: list[ResultRow]) -> list[str]:
    """Where each ladder line falls off: the smallest budget whose finetuned prune stays within the
    noise of the control on mAP@0.5:0.95, and the first below it (lines named by strategy and blocks)."""
    controls = _controls(rows)
    ladder = [r for r in rows if r.kind == PRUNED and r.target_gflops and not r.distill and r.seed in (None, 0)
              and r.name in controls and not r.gradual]
    lines: dict[tuple, list[ResultRow]] = {}
    for r in ladder:
        lines.setdefault((r.strategy, r.blocks_dropped, r.importance, r.sparse_model), []).append(r)
    out = []
    for (strategy, blocks, _, _), rs in lines.items():
        if len(rs) < 2:
            continue
        rs.sort(key=lambda r: -r.gflops)
        ctl = controls[rs[0].name]
        held = [r for r in rs if r.map >= ctl.map - (noise(rows, r.name, ctl.name) or 0.01)]
        fell = [r for r in rs if r not in held]
        name = strategy + (f" + {blocks} blocks" if blocks else "")
        last = f"holds the control's mAP@0.5:0.95 ({ctl.map:.3f}) down to {held[-1].gflops:.4f} GFLOPs" if held \
            else f"is below the control's mAP@0.5:0.95 ({ctl.map:.3f}) at every budget"
        first = (f"; at {fell[0].gflops:.4f} GFLOPs it reads {fell[0].map:.3f} ({_signed(fell[0].map - ctl.map)})"
                 if fell else "; no budget of the ladder pushed it over the edge")
        out.append(f"- The cliff, {name}: it {last}{first}.")
    return out


def _budget_lines(budget: dict[str, ResultRow]) -> list[str]:
    """The channel rankings pruned to one GFLOPs budget and finetuned alike ({importance: row})."""
    if len(budget) < 2:
        return []
    parts = ", ".join(f"{imp} {r.map:.3f} ({r.gflops:.4f} GFLOPs)" for imp, r in budget.items())
    return [f"- Pruned to the same GFLOPs budget and finetuned alike, the channel rankings reach "
            f"mAP@0.5:0.95 {parts}."]


def _vs_control(row: ResultRow, controls: dict, which: str) -> str:
    """", -0.012 against <which> (0.780)" on mAP@0.5:0.95 for a row with a control in ``controls``
    ({name: control row}), else ""."""
    ctl = controls.get(row.name)
    return f", {_signed(row.map - ctl.map)} against {which} ({ctl.map:.3f})" if ctl else ""


def _weighting_lines(rows: list[ResultRow], uniform: ResultRow | None, chain: str | None) -> list[str]:
    """The FLOPs-weighted penalty against the uniform one, on the same budget prune: the prunes of a
    sparse model results.json lists beside the chain's (the demo's other sparse row is the
    FLOPs-weighted one, ``stages._flops_weighted``)."""
    controls = _controls(rows)
    branches = {r.name for r in rows if r.kind == pl.SPARSE} - {chain}
    out = []
    for w in (r for r in rows if r.kind == PRUNED and r.sparse_model in branches and not r.distill):
        vs = _vs_control(w, controls, "its own same-epoch control")
        than = f", against {uniform.map:.3f} from the uniform penalty" if uniform else ""
        out.append(f"- With the sparsity penalty weighted by each channel's FLOPs ({w.sparse_model}), the same "
                   f"budget prune ({w.gflops:.4f} GFLOPs) finetunes to mAP@0.5:0.95 {w.map:.3f}{than}{vs}.")
    return out


def _gradual_lines(rows: list[ResultRow], one_shot: ResultRow | None) -> list[str]:
    """The gradual prune against the one-shot prune to the same budget, both against their control."""
    controls = _controls(rows)
    out = []
    for g in (r for r in rows if r.kind == PRUNED and r.gradual):
        vs = _vs_control(g, controls, "the same-epoch control")
        than = f", against {one_shot.map:.3f} pruned in one shot" if one_shot else ""
        out.append(f"- Pruned to the budget in steps ({g.gradual}), the model ({g.gflops:.4f} GFLOPs) "
                   f"finetunes to mAP@0.5:0.95 {g.map:.3f}{than}{vs}.")
    return out


def _scratch_lines(rows: list[ResultRow]) -> list[str]:
    """Each from-scratch control against the pruned + finetuned model whose architecture it trains."""
    out = []
    for sc in (r for r in rows if r.kind == CONTROL_SCRATCH):
        pr = next(r for r in rows if r.name == sc.control_of)
        gain = pr.map - sc.map
        out.append(f"- Trained from scratch for the same {sc.epochs_total} epochs, the architecture of "
                   f"{pr.name} reaches {_maps(sc)} against {_maps(pr)} pruned + finetuned: "
                   f"{_signed(gain)} mAP@0.5:0.95 for inheriting the weights{_differs(gain, noise(rows, pr.name, sc.name))}.")
    return out


def _kd_lines(rows: list[ResultRow]) -> list[str]:
    """Plain finetuning of the KD target over its seeds against the control, and each KD kind against
    plain, on mAP@0.5:0.95 (mAP@0.5 beside it)."""
    kd = pd.DataFrame([{"finetune": r.distill or "plain", "map50": r.map50, "map": r.map} for r in rows
                       if r.kind == PRUNED and r.kd_target is not None])
    if not len(kd) or "plain" not in set(kd["finetune"]):
        return []
    means = kd.groupby("finetune")[["map", "map50"]].agg(["mean", "std", "count"])
    ctl = next(r for r in rows if r.kind == CONTROL_SAME_EPOCHS)
    plain = means.loc["plain"]
    lines = [f"- On the distillation target, plain finetuning reaches mAP@0.5:0.95 {_mean_std(plain['map'])} "
             f"(mAP@0.5 {plain['map50']['mean']:.3f}), {_signed(plain['map']['mean'] - ctl.map)} against the "
             f"same-epoch control ({ctl.map:.3f})."]
    for kind in (k for k in KD_KINDS if k in means.index):
        m = means.loc[kind]
        gain, tol = m["map"]["mean"] - plain["map"]["mean"], max(m["map"]["std"], plain["map"]["std"])
        if not tol == tol:            # one seed: no std to judge a difference by
            lines.append(f"- KD ({kind}): mAP@0.5:0.95 {_mean_std(m['map'])}, {_signed(gain)} against plain; "
                         "with one seed there is no std to tell a difference from noise.")
            continue
        verdict = ("beats plain finetuning by more than the larger std" if gain > tol else
                   "falls below plain finetuning by more than the larger std" if gain < -tol else
                   "is within the larger std of plain finetuning: no difference shown")
        lines.append(f"- KD ({kind}): mAP@0.5:0.95 {_mean_std(m['map'])} (mAP@0.5 {m['map50']['mean']:.3f}), "
                     f"{_signed(gain)} against plain: it {verdict} ({tol:.3f}).")
    return lines


def _mean_std(m) -> str:
    """``0.955 +- 0.003 (3 seeds)``, or ``0.955 (1 seed)`` where there is no std."""
    n = int(m["count"])
    return f"{m['mean']:.3f} (1 seed)" if n < 2 else f"{m['mean']:.3f} +- {m['std']:.3f} ({n} seeds)"


def _command(pc: pl.PipelineConfig) -> str:
    """The command that made these numbers: the preset ``pc`` is, with its make target."""
    target = {"small": "make demo", "full": "make results"}
    for name, preset in pl.PRESETS.items():
        if preset(data=pc.data, runs=pc.runs) == pc:
            how = f"`python -m yolocompress demo --preset {name} --out {pc.runs}`"
            return f"Made by {how}" + (f" (`{target[name]}`)" if name in target else "")
    return f"Made by `run_all` with the settings below (no preset), into {pc.runs}"


# ----------------------------------------------------------------------------- results.md

@dataclass
class _Doc:
    """What results.md is written from: the settings, the gathered stages, the main table, the
    results.json rows, the timing conditions, this invocation's seconds and the jobs it ran."""
    pc: pl.PipelineConfig
    c: _Collected
    table: pd.DataFrame
    records: list
    timing: dict
    seconds: float
    jobs: int = 1


def _model_text(model) -> str:
    """How results.md names the baseline: YOLOv3's layout at the base width (the filters of its
    first conv, 32 in YOLOv3) and the class count, read from the model the demo trained."""
    first = next(b for b in model.blocks if isinstance(b, Conv))
    n = model.yolo_layers[0].classes
    return f"Teaching model (YOLOv3's layout at width {first.filters}, {n} class{'es' if n != 1 else ''})"


def _weight_range(model) -> tuple[float, float]:
    """Smallest and largest w of the FLOPs-weighted penalty over the penalised channels of ``model``."""
    w = channel_weights(model, penalised_convs(model.blocks), "flops")
    return float(w.min()), float(w.max())


def _val_images(pc: pl.PipelineConfig) -> str:
    """Which validation images mAP was measured on, in words."""
    n = len(pl.data_of(pc).val)
    return f"the first {pc.max_val_images} of {n} validation images" if pc.max_val_images else f"the {n} validation images"


def _conditions_text(t: dict) -> str:
    """The latency timing conditions (``_remeasure_latency``), in words."""
    other = "unknown" if t.get("other_cores") is None else f"{t['other_cores']:.2f}"
    return (f"{t['threads']} threads, OMP_WAIT_POLICY={t['OMP_WAIT_POLICY']}, load average {t['load_1m']:.2f} "
            f"at the start, {other} cores used by other processes meanwhile")


def _markdown(d: _Doc) -> str:
    """results.md: its sections in order, each written from the gathered stages."""
    sections = [_md_intro, _md_stages, _md_cliff, _md_sparse, _md_penalty, _md_before, _md_importance,
                _md_distillation]
    return "\n".join(section(d) for section in sections)


def _md_intro(d: _Doc) -> str:
    """Where and how the numbers were made, what the columns mean, and what they say."""
    pc, c = d.pc, d.c
    trained = pd.DataFrame([st.row for st in c.trained.values()])
    train_seconds = trained.drop_duplicates("model")["time_s"].sum()
    return f"""# Results on the bundled shapes dataset

{_command(pc)} on
{platform.processor() or platform.machine()} with {torch.get_num_threads()} threads. The training stages
add up to {train_seconds / 60:.0f} minutes (every trained stage's `time_s`, all schedules, penalties, sweeps and
seeds included; {d.jobs} stage(s) trained at once, so the wall clock is shorter); this invocation took
{d.seconds / 60:.1f} minutes (stages finished earlier with the same settings are reused). {_model_text(c.trained["baseline"].model)}, {pc.img_size} px, settings: `{pc}`.

mAP is measured on {_val_images(pc)} with the COCO evaluator; latency is the median of
batch-1 forwards of the BN-folded model (`Darknet.fuse()`) on the CPU with 2 threads, every model
timed again at the end of the run in one interleaved measurement ({_conditions_text(d.timing)}); GFLOPs are 2 x conv multiply-accumulates; `time_s` is the training time of that stage.
`epochs_total` counts every epoch a model trained, its parents' included. `map50 vs control` is the
difference to the *same-epoch control*, the unpruned sparse model finetuned for as many epochs as
the pruned ones: it is the cost of pruning, free of the extra epochs. The *from scratch* control
trains the combined prune's architecture for the same total epochs (Liu et al., ICLR 2019).
Every row is also in [results.json](results.json); histories, |gamma| histograms and sweep tables
are in [pack/](pack/).

## What the numbers say

{_summary(d.records)}
"""


def _md_stages(d: _Doc) -> str:
    """The main table of every trained stage and its figures."""
    cols = ["stage", "model", "epochs_total", "params", "GFLOPs", "GFLOPs ratio", "latency_ms", "latency ratio",
            "map", "map vs control", "map50", "map50 vs control", "time_s"]
    return f"""## All stages

{_fmt_table(d.table, [c for c in cols if c in d.table])}

![training curve](training_curve.png)
![Pareto front](pareto.png)
![latency vs GFLOPs](latency_vs_gflops.png)
"""


def _md_cliff(d: _Doc) -> str:
    """The ladder: every line at every budget, before and after finetuning, with the seed std where it ran."""
    df = d.c.tables["cliff"]
    if not len(df):
        return ""
    after = df[df["stage"] == "after"].drop(columns="stage")
    before = df[df["stage"] == "before"][["line", "rung", "map50", "map"]].rename(
        columns={"map50": "map50 before", "map": "map before"})
    table = after.merge(before, on=["line", "rung"], how="left").astype({"map_std": object, "map50_std": object,
                                                                         "seeds": object})
    table = table.where(table.notna(), "-")
    cols = ["line", "rung", "model", "GFLOPs", "map", "map_std", "map50", "map50_std", "seeds", "map before", "map50 before"]
    return f"""## The cliff: each strategy down a ladder of GFLOPs budgets

Each line of the ladder pruned to {", ".join(d.pc.cliff_budgets)} of the GFLOPs (where it can reach the
budget: conservative never cuts the residual-tied convs) and layer pruning alone at
{", ".join(map(str, d.pc.cliff_blocks))} blocks, every prune finetuned {d.pc.finetune_epochs} epochs beside the same-epoch
control; `map_std` where a rung ran over seeds {list(d.pc.kd_seeds)}; `before` is the prune before finetuning.

{_fmt_table(table, [c for c in cols if c in table])}

![cliff](cliff.png)
"""


def _md_sparse(d: _Doc) -> str:
    """The sparse schedules and the FLOPs-weighted penalty, with the weights' range."""
    pc = d.pc
    sparse_df = pd.DataFrame([_sparse_row(st) for st in d.c.sparse.values()])
    w_lo, w_hi = _weight_range(d.c.trained["baseline"].model)
    title = "the three schedules" if pc.compare_schedules else f"the {pc.sparse_schedule} schedule"
    weighted = "" if not pc.flops_weighted else f"""The `-flops` row weights each channel's penalty by the
FLOPs one channel of its conv costs, relative to the mean (`--sparsity-weighting flops`; its
cheap deep channels get less than s, down to {w_lo:.2f} s, the costly high-resolution ones up to {w_hi:.1f} s).
"""
    others = "" if pc.compare_schedules else f"""This run trains only the schedule every later stage starts
from ({pc.sparse_schedule}); the three schedules side by side are in `make demo`'s report and notebook 03,
which trains them.
"""
    return f"""## Sparse training: {title}{", and a FLOPs-weighted penalty" if pc.flops_weighted else ""}

s = {pc.sparsity}, {pc.sparse_epochs} epochs from the baseline; `gamma_lt_1e-2` is the fraction of
penalised channels with |gamma| < 0.01. {others}{weighted}
{_fmt_table(sparse_df, ["schedule", "map50", "map", "gamma_lt_1e-2", "gamma_lt_1e-3", "time_s"])}

![schedules](sparse_schedules.png)
![gamma histograms](gamma_hist.png)
"""


def _md_penalty(d: _Doc) -> str:
    """The short constant-penalty runs over s (notebook 03's slider)."""
    penalty_cols = ["optimizer", "lr", "s", "epochs", "map", "map50", "min_map50_during", "gamma_lt_1e-2",
                    "gamma_lt_1e-3", "gamma_median"]
    return f"""## The penalty s: from too weak to too strong

Constant schedule, {stages.penalty_epochs(d.pc)} epochs from the baseline for each s (notebook 03's slider), with
the pipeline's optimizer and, below it, SGD: under AdamW s is a threshold on each gamma's gradient RMS and the
learning rate sets how fast gammas fall; under SGD s is a rate (benchmarks/penalty_rule.py).
`min_map50_during` is the lowest validation mAP@0.5 the run passed through:

{_fmt_table(d.c.tables["penalty"], [c for c in penalty_cols if c in d.c.tables["penalty"]])}
"""


def _md_before(d: _Doc) -> str:
    """Every prune before finetuning, the channels it kept and the what-if sweep."""
    return f"""## Pruned, before finetuning

{_fmt_table(pd.DataFrame(d.c.before), ["model", "params", "GFLOPs", "latency_ms", "map50", "map", "pruned"])}

![channels per layer](channels_per_layer.png)

What-if mAP (masked, no finetuning) of each strategy over the ratio:

![sensitivity](sensitivity.png)
"""


def _md_importance(d: _Doc) -> str:
    """The channel rankings (``IMPORTANCES``) pruned to equal GFLOPs budgets, no finetuning."""
    imp_cols = ["importance", "budget", "GFLOPs", "params", "kept |gamma|", "map50", "map"]
    return f"""## Ranking channels by |gamma| or by |gamma| per FLOP, at equal GFLOPs

`{d.pc.strategy}` channel pruning of the sparse model to each GFLOPs budget (`prune --target-gflops`),
no finetuning; `kept |gamma|` is the share of the total |gamma| the plan keeps:

{_fmt_table(d.c.tables["importance"], imp_cols)}

![importance](importance.png)
"""


def _kd_tables(kd: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(mean and std over the seeds with each kind's KD weight and T, the per-seed rows with "-"
    for plain finetuning's weight and T) of the KD seed rows."""
    summary = kd.groupby("finetune")[["map50", "map"]].agg(["mean", "std"])
    summary.columns = [f"{a} {b}" for a, b in summary.columns]
    summary = summary.reset_index()
    kd = kd.astype({"weight": object, "T": object}).fillna("-")     # plain finetuning has no KD weight or T
    setting = kd.drop_duplicates("finetune")[["finetune", "weight", "T"]]
    return summary.merge(setting, on="finetune"), kd


def _md_distillation(d: _Doc) -> str:
    """The KD weight/T sweep, then each kind at its best setting over the seeds."""
    pc = d.pc
    kd_summary, kd = _kd_tables(pd.DataFrame(d.c.kd))
    control_map50 = next(r.map50 for r in d.records if r.kind == CONTROL_SAME_EPOCHS)
    return f"""## Distillation while finetuning `{d.c.done["prune/kd-target"].name}`

First a sweep of the KD weight, temperature T and (bounded) margin, the best of each kind picked on mAP@0.5:0.95 (seed {pc.kd_seeds[0]}, {pc.finetune_epochs} epochs each):

{_fmt_table(d.c.tables["kd-sweep"], ["finetune", "weight", "T", "margin", "map", "map50", "time_s"])}

Each kind's best setting then ran over seeds {list(pc.kd_seeds)} beside plain finetuning (the seed-{pc.kd_seeds[0]}
run took part in choosing the setting, which favours KD slightly). The same-epoch control scores
{control_map50:.3f}. Mean and standard deviation over the seeds:

{_fmt_table(kd_summary, list(kd_summary.columns))}

Per seed:

{_fmt_table(kd, ["finetune", "weight", "T", "seed", "map50", "map", "time_s"])}
"""


# ----------------------------------------------------------------------------- README

README_START, README_END = "<!-- results:start (make results writes this block from docs/results.json) -->", \
    "<!-- results:end -->"


README_TOPICS = ("headline", "scratch", "kd")   # the table shows the cliff; the rest is in results.md


def _ladder_lines(rows: list[ResultRow]) -> dict[str, list[ResultRow]]:
    """{line name: its finetuned prunes to a GFLOPs budget at the pipeline's seed, largest first}:
    the cliff's lines as ``_cliff_lines`` groups them (strategy, blocks dropped, ranking, sparse model)."""
    controls = _controls(rows)
    out: dict[tuple, list[ResultRow]] = {}
    for r in rows:
        if r.kind == PRUNED and r.target_gflops and not r.distill and r.seed in (None, 0) \
                and r.name in controls and not r.gradual:
            out.setdefault((r.strategy, r.blocks_dropped, r.importance, r.sparse_model), []).append(r)
    return {s + (f" + {b} blocks" if b else ""): sorted(rs, key=lambda r: -r.gflops)
            for (s, b, _, _), rs in out.items() if len(rs) >= 2}


def _cell(r: ResultRow | None, rows: list[ResultRow] = ()) -> str:
    """A table cell: mAP@0.5:0.95, as mean +- std over seeds where the model ran over seeds (its
    seed group in ``rows``); "-" where none ran."""
    if r is None:
        return "-"
    if r.map_std is None:
        return f"{r.map:.3f}"
    group = [x.map for x in rows if x.group == r.group] or [r.map]
    return f"{sum(group) / len(group):.3f} +- {r.map_std:.3f}"


def _readme_table(rows: list[ResultRow]) -> list[str]:
    """The cliff in a few lines: one row per ladder line, one column per GFLOPs budget (share of the
    baseline's), mAP@0.5:0.95 after finetuning; then the unpruned rows and the from-scratch controls."""
    base = next(r for r in rows if r.kind == pl.BASELINE)
    lines = _ladder_lines(rows)
    share = lambda r: f"{r.target_gflops / base.gflops:.3g}"
    budgets = sorted({share(r) for rs in lines.values() for r in rs}, key=float, reverse=True)
    out = ["mAP@0.5:0.95 of each prune after finetuning, by its GFLOPs budget (the share of the baseline's "
           "GFLOPs); +- is the std over seeds where the prune ran over seeds.", "",
           "| line | " + " | ".join(f"{float(b):.1%}".replace(".0%", "%") for b in budgets) + " |",
           "|---|" + "---|" * len(budgets)]
    for name, rs in lines.items():
        at = {share(r): r for r in rs}
        out.append(f"| {name} | " + " | ".join(_cell(at.get(b), rows) for b in budgets) + " |")
    ctl = next((r for r in rows if r.kind == CONTROL_SAME_EPOCHS and r.seed in (None, 0)), None)
    unpruned = [f"baseline {_cell(base, rows)} ({base.epochs_total} epochs)"]
    if ctl:
        unpruned.append(f"same-epoch control {_cell(ctl, rows)} ({ctl.epochs_total} epochs)")
    scratch = [r for r in rows if r.kind == CONTROL_SCRATCH and r.seed in (None, 0)]
    out += ["", "Unpruned: " + ", ".join(unpruned) + "."]
    if scratch:
        out.append("Trained from scratch for the same epochs, the pruned architectures: " + ", ".join(
            f"{r.gflops / base.gflops:.1%} of the GFLOPs {_cell(r, rows)}" for r in sorted(scratch, key=lambda r: -r.gflops)) + ".")
    return out


def readme_block(records) -> str:
    """The README's results: the cliff in a small table and the lines of "what the numbers say" on
    ``README_TOPICS``, both from the rows of results.json (every row is in results.md)."""
    rows = pl.seed_groups(_one_row_per_model(pl.as_rows(records)))
    return "\n".join([README_START, *_readme_table(rows), "", "What the numbers say:", "",
                      *summary_lines(records, *README_TOPICS), README_END])


def update_readme(readme: Path, records) -> bool:
    """Replace the results block of ``readme`` (between the markers) with ``readme_block``; False
    when the file or its markers are missing (nothing written)."""
    if not readme.is_file():
        return False
    text = readme.read_text()
    if README_START not in text or README_END not in text:
        return False
    a, b = text.index(README_START), text.index(README_END) + len(README_END)
    atomic_write_text(readme, text[:a] + readme_block(records) + text[b:])
    return True
