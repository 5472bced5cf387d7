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

from . import pack
from . import pipeline as pl
from . import viz
from yolocompress.darknet.cfg import Conv
from yolocompress.files import atomic_write_text
from yolocompress.compress.importance import IMPORTANCES
from yolocompress.compress.plan import bn_gammas
from yolocompress.compress.strategies import LAYERS_ONLY, STRATEGIES
from yolocompress.compress.sparsity import channel_weights, penalised_convs, penalised_gammas, sparsity_stats

SCHEDULES = ("constant", "global-decay", "local-decay")


def _round3(x: float) -> float:
    """x to 3 decimals, with a negative value that rounds to zero made +0.0 (so it prints 0.000, not -0.000)."""
    return round(float(x), 3) + 0.0


def _signed(x: float) -> str:
    """A difference with its sign, to 3 decimals; one that rounds to zero reads +0.000, not -0.000."""
    return f"{_round3(x):+.3f}"


def _fmt_table(df: pd.DataFrame, cols: list[str]) -> str:
    """A markdown table with sensible number formats."""
    def cell(c, v):
        if isinstance(v, float):
            if c in ("params",):
                return f"{v:,.0f}"
            return f"{_round3(v):.3f}" if abs(v) < 100 else f"{v:,.0f}"
        return f"{v:,}" if isinstance(v, (int, np.integer)) else str(v)
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(cell(c, r[c]) for c in cols) + " |" for _, r in df.iterrows()]
    return "\n".join(lines)


def _sparse_row(stage: pl.Stage) -> dict:
    return {"schedule": stage.name, **stage.row, **sparsity_stats(penalised_gammas(stage.model))}


@dataclass
class _Collected:
    """What ``run_all`` gathers: the main table's rows, the rows before finetuning, the plans, the
    distillation rows, every (row, model) whose latency is measured again at the end, and every
    trained stage (its history goes into the results pack)."""
    rows: list = field(default_factory=list)
    before: list = field(default_factory=list)
    plans: dict = field(default_factory=dict)
    kd: list = field(default_factory=list)
    kd_sweep: list = field(default_factory=list)
    timed: list = field(default_factory=list)
    records: list = field(default_factory=list)   # the rows of docs/results.json
    trained: dict = field(default_factory=dict)   # {run name: Stage}
    tables: dict = field(default_factory=dict)    # {pack table name: DataFrame}

    def add(self, row: dict, model, before: bool = False) -> None:
        (self.before if before else self.rows).append(row)
        self.timed.append((row, model))

    def add_pruned(self, pruned: pl.Stage) -> None:
        if pruned.name in self.plans:          # the KD target can be one of the prunes above
            return
        self.plans[pruned.name] = pruned.extra["plan"]
        self.add(pruned.row | {"stage": "pruned, no finetune"}, pruned.model, before=True)

    def keep(self, *stages: pl.Stage) -> None:
        self.trained.update({st.name: st for st in stages})


def run_all(pc: pl.PipelineConfig, docs: Path, readme: Path | None = None, started: float | None = None,
            jobs: int = 1) -> pd.DataFrame:
    """Every stage; returns the results table and writes ``docs/results.md``, ``results.json``, the
    figures and the results pack (``pack.py``), and the results block of ``readme`` when given.
    ``started``: when the whole command began (``prefetch`` before it, with ``jobs`` processes)."""
    matplotlib.use("Agg")
    t_start = started or time.time()
    docs.mkdir(parents=True, exist_ok=True)
    c = _Collected()
    base = pl.baseline(pc)
    # the chosen schedule first: every later stage starts from it
    order = sorted(SCHEDULES, key=lambda s: s != pc.sparse_schedule)
    sparse = {s: pl.sparse(pc, schedule=s) for s in order}
    penalty = _penalty_sweep(pc, c)
    sparse_df = pd.DataFrame([_sparse_row(st) for st in sparse.values()])
    chosen = sparse[pc.sparse_schedule]
    c.keep(base, *sparse.values())
    c.add(base.row | {"stage": "baseline"}, base.model)
    c.add(chosen.row | {"stage": f"sparse ({pc.sparse_schedule})"}, chosen.model)
    c.records += [pl.record(base, "baseline"), pl.record(chosen, "sparse")]
    control = pl.control_same_epochs(pc, chosen)
    c.keep(control)
    c.add(control.row | {"stage": "control: unpruned, same total epochs"}, control.model)
    _prune_and_finetune(pc, chosen, control, c)
    _gradual(pc, chosen, control, c)
    weighted = _flops_weighted(pc, c)
    sparse_df = pd.concat([sparse_df, pd.DataFrame([_sparse_row(weighted)])], ignore_index=True)
    sparse = sparse | {f"{pc.sparse_schedule}, FLOPs-weighted": weighted}
    _what_if_tables(pc, chosen, c)
    target = _distillation(pc, chosen, control, c)
    timing = _remeasure_latency(pc, c.timed)
    table = pl.results_table([pl.Stage("", base.model, row=r) for r in c.rows])
    table["stage"] = [r["stage"] for r in c.rows]
    before, kd = pd.DataFrame(c.before), pd.DataFrame(c.kd)
    _figures(docs, base, chosen, sparse, c, table, before)
    own = table["control map50"] if "control map50" in table else pd.Series(float("nan"), index=table.index)
    table["map50 vs control"] = table["map50"] - own.fillna(control.row["map50"])   # each row's own control
    records = _latency_synced(c.records, [row for row, _ in c.timed])
    _write_pack(docs, c, base, sparse, penalty)
    _write_markdown(docs, pc, table, sparse_df, before, kd, c, target.name, time.time() - t_start, timing, records,
                    jobs)
    atomic_write_text(docs / "results.json", json.dumps(records, indent=1))
    if readme is not None:
        update_readme(readme, records)
    return table


def _penalty_sweep(pc: pl.PipelineConfig, c: _Collected) -> dict:
    """Short constant-penalty runs over ``pc.penalty_values`` (notebook 03's slider): from too weak to
    too strong, a third of the sparse epochs each."""
    epochs = pc.sparse_epochs // 3 or 1
    runs = {s: pl.sparse(pc, schedule="constant", s=s, epochs=epochs) for s in pc.penalty_values}
    c.keep(*runs.values())
    c.tables["penalty"] = pd.DataFrame([{"s": s, "run": st.name, "epochs": epochs, "map50": st.row["map50"],
                                         "map": st.row["map"], **sparsity_stats(penalised_gammas(st.model))}
                                        for s, st in runs.items()])
    return runs


def prune_specs(pc: pl.PipelineConfig) -> list[dict]:
    """The ``pl.prune`` arguments of the finetuned prunes of the seed's chain: the three channel
    strategies at ``pc.ratio``, layer-only, combined, and the budget prune under each importance."""
    return [_spec(s, pc.ratio, 0) for s in STRATEGIES] + [_spec(LAYERS_ONLY, 0.0, pc.blocks), _spec(pc.strategy, pc.ratio, pc.blocks)] \
        + [_spec(pc.strategy, pc.ratio, pc.blocks, pc.budget, imp) for imp in IMPORTANCES]


def _spec(strategy, ratio, blocks, budget=None, importance="gamma") -> dict:
    return dict(strategy=strategy, ratio=ratio, blocks=blocks, budget=budget, importance=importance,
                name="layers-only" if strategy == LAYERS_ONLY else None)


def has_scratch_control(pc: pl.PipelineConfig, spec: dict) -> bool:
    """The combined prune (``pc.strategy`` at ``pc.ratio`` + ``pc.blocks`` blocks) is also trained from scratch."""
    return pc.scratch_controls and spec["budget"] is None and \
        (spec["strategy"], spec["ratio"], spec["blocks"]) == (pc.strategy, pc.ratio, pc.blocks)


def flops_weighted_spec(pc: pl.PipelineConfig) -> dict:
    """The ``pl.prune`` arguments of the FLOPs-weighted sparse model's budget prune."""
    return _spec(pc.strategy, pc.ratio, pc.blocks, pc.budget, "gamma-per-flop") | {"suffix": "-wflops"}


def kd_sweep_settings(pc: pl.PipelineConfig) -> list[tuple]:
    """(kind, weight, T) of the distillation sweep, seed ``pc.kd_seeds[0]``."""
    return [(kind, w, t) for kind in ("hinton", "bounded") for w, t in [(pc.distill_weight, pc.temperature), *pc.kd_sweep]]


def best_kd_settings(sweep: list[dict]) -> dict:
    """{kind: (weight, T)} with the highest mAP@0.5 in the sweep rows; plain finetuning: (None, None)."""
    best = {None: (None, None)}
    for kind in dict.fromkeys(r["finetune"] for r in sweep):
        top = max((r for r in sweep if r["finetune"] == kind), key=lambda r: r["map50"])
        best[kind] = (top["weight"], top["T"])
    return best


def _prune_and_finetune(pc: pl.PipelineConfig, chosen: pl.Stage, control: pl.Stage, c: _Collected) -> None:
    """The three channel strategies, layer-only and combined pruning, each finetuned and set beside
    its controls: the unpruned model trained as long (all of them) and, for the combined prune, its
    architecture trained from scratch as long."""
    for spec in prune_specs(pc):
        pruned = pl.prune(pc, chosen, **spec)
        c.add_pruned(pruned)
        ft = pl.finetune(pc, pruned)
        c.keep(ft)
        c.add(ft.row | {"stage": "pruned + finetune", "pruned": pruned.row["pruned"]}, ft.model)
        name = ft.row["model"]
        c.records += [pl.record(ft, "pruned"), pl.record(control, "control-same-epochs", control_of=name)]
        if has_scratch_control(pc, spec):
            scratch = pl.control_scratch(pc, pruned)
            c.keep(scratch)
            c.add(scratch.row | {"stage": "control: pruned architecture from scratch"}, scratch.model)
            c.records.append(pl.record(scratch, "control-scratch", control_of=name))


def gradual_label(pc: pl.PipelineConfig) -> str:
    """How the gradual prune reached its budget, e.g. "40% -> 20%, 3 sparse epochs between"."""
    return " -> ".join(map(str, [*pc.gradual_steps, pc.budget])) + f", {pc.gradual_between} sparse epochs between"


def _gradual(pc: pl.PipelineConfig, chosen: pl.Stage, control: pl.Stage, c: _Collected) -> None:
    """Beyond the seed: the budget prune reached in steps (``pl.prune_gradual``),
    finetuned for the epochs the steps left, beside the same same-epoch control as the one-shot prune."""
    pruned = pl.prune_gradual(pc, chosen)
    # not in c.plans: its last plan indexes the layers of an already pruned model, not the baseline's
    c.add(pruned.row | {"stage": "pruned, no finetune"}, pruned.model, before=True)
    ft = pl.finetune_gradual(pc, pruned)
    c.keep(ft)
    c.add(ft.row | {"stage": f"gradual prune ({gradual_label(pc)}) + finetune", "pruned": pruned.row["pruned"]},
          ft.model)
    c.records += [pl.record(ft, "pruned") | {"gradual": gradual_label(pc)},
                  pl.record(control, "control-same-epochs", control_of=ft.row["model"])]


def _flops_weighted(pc: pl.PipelineConfig, c: _Collected) -> pl.Stage:
    """Beyond the seed: sparse training whose penalty is weighted by what each channel costs
    (``SparseConfig.weighting="flops"``), then the budget prune of the uniform chain (``pc.strategy``
    + ``pc.blocks`` blocks at ``pc.budget``, ranked by |gamma| per FLOP) finetuned alike, beside this
    sparse model's own same-epoch control. One setting differs from the uniform budget row: the
    penalty's weighting."""
    weighted = pl.sparse(pc, weighting="flops")
    control = pl.control_same_epochs(pc, weighted)
    pruned = pl.prune(pc, weighted, **flops_weighted_spec(pc))
    c.add_pruned(pruned)
    ft = pl.finetune(pc, pruned)
    c.keep(weighted, control, ft)
    own = {"control map50": control.row["map50"]}          # "map50 vs control": this branch's own control
    c.add(weighted.row | own | {"stage": f"sparse ({pc.sparse_schedule}, FLOPs-weighted penalty)"}, weighted.model)
    c.add(control.row | own | {"stage": "control: FLOPs-weighted sparse, unpruned, same total epochs"}, control.model)
    c.add(ft.row | own | {"stage": "pruned + finetune", "pruned": pruned.row["pruned"]}, ft.model)
    c.records += [pl.record(weighted, "sparse"), pl.record(ft, "pruned"),
                  pl.record(control, "control-same-epochs", control_of=ft.row["model"])]
    return weighted


def _what_if_tables(pc: pl.PipelineConfig, chosen: pl.Stage, c: _Collected) -> None:
    """Measured without finetuning (what-if = compact): each strategy's mAP over ``pc.sweep_ratios``,
    and the two channel rankings (|gamma|, |gamma| per FLOP) pruned to equal GFLOPs budgets."""
    from yolocompress.compress.plan import PruneConfig
    from .sweep import importance_sweep, sensitivity_sweep
    data = pl.data_of(pc)
    for strategy in STRATEGIES:
        config = PruneConfig(strategy=strategy, min_keep=pc.min_keep)
        c.tables[f"sensitivity-{strategy}"] = sensitivity_sweep(
            chosen.model, data, config, pc.sweep_ratios, pc.img_size, pc.max_val_images)
    config = PruneConfig(strategy=pc.strategy, min_keep=pc.min_keep, img_size=pc.img_size)
    c.tables["importance"] = importance_sweep(chosen.model, config, pc.budgets, data, pc.max_val_images)


def _distillation(pc: pl.PipelineConfig, chosen: pl.Stage, control: pl.Stage, c: _Collected) -> pl.Stage:
    """Distillation on a prune that plain finetuning recovers only partly. First a sweep of KD weight
    and T (seed ``kd_seeds[0]``) per kind; each kind's best setting then runs over every seed beside
    plain finetuning, so each variant is a mean +- std over ``pc.kd_seeds``."""
    target = pl.prune_aggressive(pc, chosen)
    c.add_pruned(target)
    first = pc.kd_seeds[0]
    for kind, w, t in kd_sweep_settings(pc):
        st = pl.finetune(pc, target, chosen, kind, seed_arg(pc, first), weight=w, temperature=t)
        c.keep(st)
        c.kd_sweep.append({"finetune": kind, "weight": w, "T": t, "seed": first, "run": st.name,
                           "map50": st.row["map50"], "map": st.row["map"], "time_s": st.row["time_s"]})
    c.tables["kd-sweep"] = pd.DataFrame(c.kd_sweep)
    for kind, (w, t) in best_kd_settings(c.kd_sweep).items():
        for seed in pc.kd_seeds:
            st = pl.finetune(pc, target, chosen if kind else None, kind, seed_arg(pc, seed), weight=w, temperature=t)
            c.keep(st)
            c.kd.append(st.row | {"finetune": kind or "plain", "seed": seed, "weight": w, "T": t})
            c.records.append(pl.record(st, "pruned", distill=kind, seed=seed)
                             | {"kd_weight": w, "kd_T": t, "kd_target": target.name})
            if seed == first and not any(r["model"] == st.row["model"] for r in c.rows):
                c.add(st.row | {"stage": "KD target + finetune" + (f" + KD ({kind})" if kind else "")}, st.model)
                if kind is None:
                    c.records.append(pl.record(control, "control-same-epochs", control_of=st.row["model"]))
            elif not any(r["model"] == st.row["model"] for r, _ in c.timed):
                c.timed.append((dict(st.row), st.model))      # timed with the rest, not in the stages table
    return target


def seed_arg(pc: pl.PipelineConfig, seed: int) -> int | None:
    return None if seed == pc.seed else seed     # the pipeline's own seed names the run without a suffix


def _write_pack(docs: Path, c: _Collected, base: pl.Stage, sparse: dict, penalty: dict) -> None:
    """The committed results pack (``pack.py``): histories, |gamma| histograms, sweep tables."""
    for name, st in c.trained.items():
        pack.write_history(docs, name, st.history)
    pack.drop_stale_histories(docs, c.trained)
    runs = {"baseline": base, **{st.name: st for st in sparse.values()}, **{st.name: st for st in penalty.values()}}
    pack.write_gammas(docs, {k: penalised_gammas(st.model) for k, st in runs.items()})
    pack.write_gamma_epochs(docs, {k: st.extra["gamma_hist"] for k, st in runs.items() if "gamma_hist" in st.extra})
    for name, df in c.tables.items():
        pack.write_table(docs, name, df)


def _latency_synced(records: list[dict], rows: list[dict]) -> list[dict]:
    """results.json rows with the latency re-measured at the end (``rows``: every timed row, matched
    by model name; the KD seed runs are timed too, so one architecture reads one latency)."""
    latest = {r["model"]: r["latency_ms"] for r in rows}
    return [r | {"latency_ms": latest.get(r["name"], r["latency_ms"])} for r in records]


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


def _figures(docs: Path, base, chosen, sparse, c: _Collected, table, before) -> None:
    import matplotlib.pyplot as plt
    _pareto_figure(table, before).savefig(docs / "pareto.png", dpi=120, bbox_inches="tight")
    fig = viz.plot_pareto(table, "GFLOPs", "latency_ms", "model", title="CPU latency (batch 1, 2 threads) vs GFLOPs")
    fig.axes[0].lines[-1].remove()
    fig.savefig(docs / "latency_vs_gflops.png", dpi=120, bbox_inches="tight")
    gam = {"baseline": np.concatenate(list(bn_gammas(base.model).values())),
           **{f"sparse ({st.name})": np.concatenate(list(bn_gammas(st.model).values()))
              for st in sparse.values() if st is chosen or st.name.endswith("-flops")}}
    viz.plot_gamma_hist(gam).savefig(docs / "gamma_hist.png", dpi=120, bbox_inches="tight")
    viz.plot_channels(c.plans, title="channels per BN conv after each prune").savefig(
        docs / "channels_per_layer.png", dpi=120, bbox_inches="tight")
    viz.plot_history({k: v.history for k, v in sparse.items()}, ["map50", "gamma_lt_1e-2"],
                     "sparse training schedules").savefig(docs / "sparse_schedules.png", dpi=120, bbox_inches="tight")
    _training_curve(docs, base, chosen, c)
    viz.plot_importance(c.tables["importance"]).savefig(docs / "importance.png", dpi=120, bbox_inches="tight")
    viz.plot_sweep({k.split("-", 1)[1]: v for k, v in c.tables.items() if k.startswith("sensitivity-")}).savefig(
        docs / "sensitivity.png", dpi=120, bbox_inches="tight")
    plt.close("all")


def _kind_of(stage: str) -> str:
    """The legend group of a row of the stages table, from its ``stage`` text."""
    if stage.startswith("control: pruned architecture"):
        return "pruned architecture from scratch"
    for prefix, kind in (("baseline", "baseline"), ("sparse", "sparse, unpruned"), ("control", "same-epoch control")):
        if stage.startswith(prefix):
            return kind
    return "pruned + finetune with KD" if "KD (" in stage else "pruned + finetune"


def _pareto_figure(table: pd.DataFrame, before: pd.DataFrame):
    """docs/pareto.png: mAP@0.5 vs GFLOPs after finetuning (coloured by kind, the Pareto front
    labelled: most finetuned models crowd just under the baseline) and, beside it on the full
    0-1 scale, every prune before finetuning (each labelled)."""
    import matplotlib.pyplot as plt
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 4.8), gridspec_kw={"width_ratios": [1.25, 1]})
    after = table.assign(kind=table["stage"].map(_kind_of))
    viz.plot_pareto(after, "GFLOPs", "map50", "model", ax=left, hue="kind", annotate="front",
                    title="trained models: mAP@0.5 vs GFLOPs (front dashed, labelled)")
    base = after.loc[after["kind"] == "baseline", "map50"]
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
    for r in c.records:     # the same-epoch control and each prune finetuned without KD, one seed
        if r["kind"] in ("pruned", "control-same-epochs") and not r["distill"] and r["seed"] is None:
            chains[r["name"]] = [(n_base + n_sparse, c.trained[r["name"]].history)]
    viz.plot_total_epochs(chains).savefig(docs / "training_curve.png", dpi=120, bbox_inches="tight")


def _val_images(pc: pl.PipelineConfig) -> str:
    n = len(pl.data_of(pc).val)
    return f"the first {pc.max_val_images} of {n} validation images" if pc.max_val_images else f"the {n} validation images"


def _conditions_text(t: dict) -> str:
    other = "unknown" if t.get("other_cores") is None else f"{t['other_cores']:.2f}"
    return (f"{t['threads']} threads, OMP_WAIT_POLICY={t['OMP_WAIT_POLICY']}, load average {t['load_1m']:.2f} "
            f"at the start, {other} cores used by other processes meanwhile")


def headline(records: list[dict], baseline_gflops: float, min_cut: float = 0.8, max_drop: float = 0.01) -> dict | None:
    """The smallest pruned + finetuned model (no distillation) whose mAP@0.5 is within ``max_drop``
    of its same-epoch control, among those with at least ``min_cut`` fewer GFLOPs than the baseline;
    None when there is none (results.md then says so). The factor 1 + 1e-9 lets a model at exactly
    the cut pass despite the rounding of (1 - min_cut) * baseline_gflops."""
    controls = {r["control_of"]: r for r in records if r["kind"] == "control-same-epochs"}
    ok = [r for r in records if r["kind"] == "pruned" and not r["distill"] and r["name"] in controls
          and r["gflops"] <= (1 - min_cut) * baseline_gflops * (1 + 1e-9) and r["map50"] >= controls[r["name"]]["map50"] - max_drop]
    if not ok:
        return None
    best = min(ok, key=lambda r: r["gflops"])
    return best | {"control": controls[best["name"]]}


def _summary(records: list[dict]) -> str:
    """What the numbers say, computed from the rows (so the text cannot drift from the table)."""
    base = next(r for r in records if r["kind"] == "baseline")
    control_map50 = next(r["map50"] for r in records if r["kind"] == "control-same-epochs")
    kd = pd.DataFrame([{"finetune": r["distill"] or "plain", "map50": r["map50"]} for r in records
                       if r["kind"] == "pruned" and r["seed"] is not None])   # the KD seed runs
    lines = []
    h = headline(records, base["gflops"])
    if h:
        lines.append(f"- **{h['name']}** has {1 - h['gflops'] / base['gflops']:.0%} fewer GFLOPs and "
                     f"{1 - h['params'] / base['params']:.0%} fewer parameters than the baseline at mAP@0.5 "
                     f"{h['map50']:.3f}, against {h['control']['map50']:.3f} for its same-epoch control "
                     f"({_signed(h['map50'] - h['control']['map50'])}).")
    else:
        lines.append("- No prune with at least 80% fewer GFLOPs stays within 1 point of its same-epoch control here.")
        best = headline(records, base["gflops"], min_cut=0.0)
        if best:
            lines.append(f"- The largest cut within 1 point: **{best['name']}**, {1 - best['gflops'] / base['gflops']:.0%} "
                         f"fewer GFLOPs at mAP@0.5 {best['map50']:.3f} against {best['control']['map50']:.3f} "
                         f"({_signed(best['map50'] - best['control']['map50'])}).")
    chain = next((r["name"] for r in records if r["kind"] == "sparse"), None)   # the seed's (uniform) sparse model
    budget = {r["importance"]: r for r in records if r["kind"] == "pruned" and r.get("target_gflops")
              and not r["distill"] and r["seed"] is None and r.get("sparse_model") in (None, chain)}
    if len(budget) > 1:
        parts = ", ".join(f"{imp} {r['map50']:.3f} ({r['gflops']:.4f} GFLOPs)" for imp, r in budget.items())
        why = (": ranking by |gamma| alone spends the budget on costly high-resolution channels"
               if budget.get("gamma-per-flop", {}).get("map50", 0) > budget.get("gamma", {}).get("map50", 1) else "")
        lines.append(f"- Pruned to the same GFLOPs budget and finetuned alike, the channel rankings reach mAP@0.5 "
                     f"{parts}{why}.")
    lines += _weighting_lines(records, budget.get("gamma-per-flop"), chain)
    lines += _gradual_lines(records, budget.get("gamma-per-flop"))
    scratch = [r for r in records if r["kind"] == "control-scratch"]
    for sc in scratch:
        pr = next(r for r in records if r["name"] == sc["control_of"])
        lines.append(f"- Trained from scratch for the same {sc['epochs_total']} epochs, the architecture of "
                     f"{pr['name']} reaches {sc['map50']:.3f} against {pr['map50']:.3f} pruned + finetuned "
                     f"({_signed(pr['map50'] - sc['map50'])} for inheriting the weights).")
    means = kd.groupby("finetune")["map50"].agg(["mean", "std"]) if len(kd) else pd.DataFrame()
    if "plain" in means.index:
        plain = means.loc["plain"]
        lines.append(f"- On the distillation target, plain finetuning reaches {plain['mean']:.3f} +- {plain['std']:.3f}, "
                     f"{_signed(plain['mean'] - control_map50)} against the same-epoch control ({control_map50:.3f}).")
        for kind in ("hinton", "bounded"):
            if kind in means.index:
                m = means.loc[kind]
                gain, noise = m["mean"] - plain["mean"], max(m["std"], plain["std"])
                verdict = ("beats plain finetuning by more than the larger std" if gain > noise else
                           "falls below plain finetuning by more than the larger std" if gain < -noise else
                           "is within the larger std of plain finetuning: no difference shown")
                lines.append(f"- KD ({kind}): {m['mean']:.3f} +- {m['std']:.3f}, {_signed(gain)} against plain: it {verdict} "
                             f"({noise:.3f}).")
    return "\n".join(lines)


def _flops_weighted_name(sparse_model: str | None) -> bool:
    """Whether a sparse stage's name says its penalty was FLOPs-weighted (``pipeline.sparse`` adds a
    ``-flops`` token): another sparse branch (a shorter run, ``-e10``) is not a weighting."""
    return bool(sparse_model) and "flops" in sparse_model.split("-")


def _vs_control(row: dict, controls: dict, which: str) -> str:
    """", -0.012 against <which> (0.780)" for a row with a control in ``controls`` ({name: control row}), else ""."""
    ctl = controls.get(row["name"])
    return f", {_signed(row['map50'] - ctl['map50'])} against {which} ({ctl['map50']:.3f})" if ctl else ""


def _weighting_lines(records: list[dict], uniform: dict | None, chain: str) -> list[str]:
    """The FLOPs-weighted penalty against the uniform one, on the same budget prune."""
    controls = {r["control_of"]: r for r in records if r["kind"] == "control-same-epochs"}
    weighted = [r for r in records if r["kind"] == "pruned" and _flops_weighted_name(r.get("sparse_model"))
                and not r["distill"]]
    out = []
    for w in weighted:
        vs = _vs_control(w, controls, "its own same-epoch control")
        than = f", against {uniform['map50']:.3f} from the uniform penalty" if uniform else ""
        out.append(f"- With the sparsity penalty weighted by each channel's FLOPs ({w['sparse_model']}), the same "
                   f"budget prune ({w['gflops']:.4f} GFLOPs) finetunes to mAP@0.5 {w['map50']:.3f}{than}{vs}.")
    return out


def _gradual_lines(records: list[dict], one_shot: dict | None) -> list[str]:
    """The gradual prune against the one-shot prune to the same budget, both against their control."""
    controls = {r["control_of"]: r for r in records if r["kind"] == "control-same-epochs"}
    out = []
    for g in (r for r in records if r["kind"] == "pruned" and r.get("gradual")):
        vs = _vs_control(g, controls, "the same-epoch control")
        than = f", against {one_shot['map50']:.3f} pruned in one shot" if one_shot else ""
        out.append(f"- Pruned to the budget in steps ({g['gradual']}), the model ({g['gflops']:.4f} GFLOPs) "
                   f"finetunes to mAP@0.5 {g['map50']:.3f}{than}{vs}.")
    return out


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


def _write_markdown(docs, pc, table, sparse_df, before, kd, c: _Collected, kd_target, seconds, timing: dict,
                    records: list[dict], jobs: int = 1) -> None:
    trained = pd.DataFrame([st.row for st in c.trained.values()])
    train_seconds = trained.drop_duplicates("model")["time_s"].sum()
    cols = ["stage", "model", "epochs_total", "params", "GFLOPs", "GFLOPs ratio", "latency_ms", "latency ratio",
            "map50", "map50 vs control", "map", "time_s"]
    kd_summary = kd.groupby("finetune")[["map50", "map"]].agg(["mean", "std"])
    kd_summary.columns = [f"{a} {b}" for a, b in kd_summary.columns]
    kd_summary = kd_summary.reset_index()
    kd = kd.astype({"weight": object, "T": object}).fillna("-")     # plain finetuning has no KD weight or T
    kd_setting = kd.drop_duplicates("finetune")[["finetune", "weight", "T"]]
    kd_summary = kd_summary.merge(kd_setting, on="finetune")
    control_map50 = next(r["map50"] for r in records if r["kind"] == "control-same-epochs")
    penalty_cols = ["s", "epochs", "map50", "map", "gamma_lt_1e-2", "gamma_lt_1e-3"]
    w_lo, w_hi = _weight_range(c.trained["baseline"].model)
    imp_cols = ["importance", "budget", "GFLOPs", "params", "kept |gamma|", "map50", "map"]
    text = f"""# Results on the bundled shapes dataset

Regenerated by `make demo` (`python -m yolocompress demo --out {pc.runs}`) on
{platform.processor() or platform.machine()} with {torch.get_num_threads()} threads. The training stages
add up to {train_seconds / 60:.0f} minutes (every trained stage's `time_s`, all schedules, penalties, sweeps and
seeds included; {jobs} stage(s) trained at once, so the wall clock is shorter); this invocation took
{seconds / 60:.1f} minutes (stages finished earlier with the same settings are reused). {_model_text(c.trained["baseline"].model)}, {pc.img_size} px, settings: `{pc}`.

mAP is measured on {_val_images(pc)} with the COCO evaluator; latency is the median of
batch-1 forwards of the BN-folded model (`Darknet.fuse()`) on the CPU with 2 threads, every model
timed again at the end of the run in one interleaved measurement ({_conditions_text(timing)}); GFLOPs are 2 x conv multiply-accumulates; `time_s` is the training time of that stage.
`epochs_total` counts every epoch a model trained, its parents' included. `map50 vs control` is the
difference to the *same-epoch control*, the unpruned sparse model finetuned for as many epochs as
the pruned ones: it is the cost of pruning, free of the extra epochs. The *from scratch* control
trains the combined prune's architecture for the same total epochs (Liu et al., ICLR 2019).
Every row is also in [results.json](results.json); histories, |gamma| histograms and sweep tables
are in [pack/](pack/).

## What the numbers say

{_summary(records)}

## All stages

{_fmt_table(table, [c for c in cols if c in table])}

![training curve](training_curve.png)
![Pareto front](pareto.png)
![latency vs GFLOPs](latency_vs_gflops.png)

## Sparse training: the three schedules, and a FLOPs-weighted penalty

s = {pc.sparsity}, {pc.sparse_epochs} epochs from the baseline; `gamma_lt_1e-2` is the fraction of
penalised channels with |gamma| < 0.01. The `-flops` row weights each channel's penalty by the
FLOPs one channel of its conv costs, relative to the mean (`--sparsity-weighting flops`; its
cheap deep channels get less than s, down to {w_lo:.2f} s, the costly high-resolution ones up to {w_hi:.1f} s).

{_fmt_table(sparse_df, ["schedule", "map50", "map", "gamma_lt_1e-2", "gamma_lt_1e-3", "time_s"])}

![schedules](sparse_schedules.png)
![gamma histograms](gamma_hist.png)

## The penalty s: from too weak to too strong

Constant schedule, {pc.sparse_epochs // 3 or 1} epochs from the baseline for each s (notebook 03's slider):

{_fmt_table(c.tables["penalty"], penalty_cols)}

## Pruned, before finetuning

{_fmt_table(before, ["model", "params", "GFLOPs", "latency_ms", "map50", "map", "pruned"])}

![channels per layer](channels_per_layer.png)

What-if mAP (masked, no finetuning) of each strategy over the ratio:

![sensitivity](sensitivity.png)

## Ranking channels by |gamma| or by |gamma| per FLOP, at equal GFLOPs

`{pc.strategy}` channel pruning of the sparse model to each GFLOPs budget (`prune --target-gflops`),
no finetuning; `kept |gamma|` is the share of the total |gamma| the plan keeps:

{_fmt_table(c.tables["importance"], imp_cols)}

![importance](importance.png)

## Distillation while finetuning `{kd_target}`

First a sweep of the KD weight and temperature T (seed {pc.kd_seeds[0]}, {pc.finetune_epochs} epochs each):

{_fmt_table(c.tables["kd-sweep"], ["finetune", "weight", "T", "map50", "map", "time_s"])}

Each kind's best setting then ran over seeds {list(pc.kd_seeds)} beside plain finetuning (the seed-{pc.kd_seeds[0]}
run took part in choosing the setting, which favours KD slightly). The same-epoch control scores
{control_map50:.3f}. Mean and standard deviation over the seeds:

{_fmt_table(kd_summary, list(kd_summary.columns))}

Per seed:

{_fmt_table(kd, ["finetune", "weight", "T", "seed", "map50", "map", "time_s"])}
"""
    atomic_write_text(docs / "results.md", text)


# ----------------------------------------------------------------------------- README

README_START, README_END = "<!-- results:start (make demo writes this block from docs/results.json) -->", \
    "<!-- results:end -->"


def readme_block(records: list[dict]) -> str:
    """The README's results table and "what the numbers say", both from the rows of results.json
    (one seed per model: the KD seeds are summarised in the last lines)."""
    base = next(r for r in records if r["kind"] == "baseline")
    controls = {r["control_of"]: r for r in records if r["kind"] == "control-same-epochs"}
    control = next(r for r in records if r["kind"] == "control-same-epochs")
    shown, seen = [], set()
    for r in records:
        first_seed = r["seed"] in (None, 0)
        if r["name"] in seen or not first_seed:
            continue
        seen.add(r["name"])
        ctl = controls.get(r["name"]) or (control if r["kind"] == "pruned" and r["epochs_total"] == control["epochs_total"]
                                          else None)
        vs = _signed(r['map50'] - ctl['map50']) if ctl else ""
        what = r["kind"] + (f" of {r['control_of']}" if r.get("control_of") and r["kind"] == "control-scratch" else "")
        shown.append(f"| {r['name']} | {what} | {r['epochs_total']} | {r['params'] / 1e6:.2f} M | {r['gflops']:.3f} "
                     f"({r['gflops'] / base['gflops'] - 1:+.0%}) | {r['latency_ms']:.1f} ms | {r['map50']:.3f} | {vs} |")
    head = ["| model | kind | epochs | params | GFLOPs (vs baseline) | latency | mAP@0.5 | vs same-epoch control |",
            "|---|---|---|---|---|---|---|---|"]
    return "\n".join([README_START, *head, *shown, "", "What the numbers say:", "",
                      _summary(records), README_END])


def update_readme(readme: Path, records: list[dict]) -> bool:
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
