"""Notebook helpers: one setup cell (one install URL) in every notebook, command lines that parse back
to the settings that ran, the full-run reference reader, and the |gamma| threshold -> ratio map."""
import json
import re
import shlex
import types
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
import pytest
import torch

from yolocompress.teach import nb, pipeline, viz
from yolocompress.cli.main import build_parser
from yolocompress.cli.train import _configs
from yolocompress.compress.distill import DistillConfig
from yolocompress.compress.plan import PruneConfig, make_plan
from yolocompress.compress.sparsity import SparseConfig
from yolocompress.teach.whatif import pool_gammas, ratio_at_threshold

matplotlib.use("Agg")
NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))


def _cells(path, kind):
    return ["".join(c["source"]) for c in json.loads(path.read_text())["cells"] if c["cell_type"] == kind]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_every_notebook_opens_with_the_one_setup_cell(path):
    assert _cells(path, "code")[0] == nb.setup_cell()
    assert nb.INSTALL in nb.setup_cell() and nb.INSTALL == f"git+{nb.COLAB_REPO}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_no_hand_written_command_lines_with_settings(path):
    """train/prune/sweep/export command lines are rendered from the settings that ran, never typed."""
    text = "\n".join(_cells(path, "markdown"))
    assert not re.search(r"python -m yolocompress (train|prune|sweep|export)\b", text)
    assert "--amp bf16" not in text


def test_sync_setup_cells_is_idempotent(tmp_path):
    book = {"cells": [{"cell_type": "markdown", "metadata": {}, "source": ["# x"]},
                      {"cell_type": "code", "metadata": {}, "source": ["old"], "outputs": [], "execution_count": None}],
            "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    path = tmp_path / "x.ipynb"
    path.write_text(json.dumps(book))
    assert nb.sync_setup_cells([path]) == [path]
    assert nb.sync_setup_cells([path]) == []
    assert _cells(path, "code")[0] == nb.setup_cell()


def _argv(command: str) -> list[str]:
    """The words a POSIX shell reads from a rendered command (backslash-newline joins lines)."""
    return shlex.split(command.replace("\\\n", " "))


def _run(tmp_path, name, tc, sparsity=None, distill=None):
    out = tmp_path / "runs" / name
    out.mkdir(parents=True)
    (out / "config.json").write_text(json.dumps({"train": tc.to_dict(), "meta": {
        "stage": name, "sparsity": sparsity and sparsity.to_dict(), "distill": distill and distill.to_dict()}}))
    return types.SimpleNamespace(name=name)


@pytest.mark.parametrize("kind", [None, "sparse", "sparse-flops", "hinton", "bounded"])
def test_train_command_parses_back_to_the_settings_that_ran(tmp_path, kind):
    pc = pipeline.PipelineConfig.quick(runs=str(tmp_path / "runs"), data=str(tmp_path / "data.yaml"))
    tc = pc.train_config(2, 2.5e-3, seed=3)     # 2 epochs: warm-up 2/3, a float that %g would round
    sc = SparseConfig(s=0.03, schedule="global-decay") if kind == "sparse" else \
        SparseConfig(s=0.1, schedule="local-decay", weighting="flops") if kind == "sparse-flops" else None
    dc = DistillConfig(kind=kind, weight=0.5, temperature=2.0, margin=0.1) if kind in ("hinton", "bounded") else None
    stage = _run(tmp_path, "stage", tc, sc, dc)
    start = _run(tmp_path, "start", tc) if kind else None
    teacher = _run(tmp_path, "teacher", tc) if dc else None
    settings = types.SimpleNamespace(root=tmp_path)
    argv = _argv(nb.train_command(settings, pc, stage, start=start, teacher=teacher))
    assert argv[:3] == ["python", "-m", "yolocompress"]
    args = build_parser().parse_args(argv[3:])
    tc2, sc2, dc2 = _configs(args)
    same = ("epochs", "batch_size", "img_size", "optimizer", "lr", "warmup_epochs", "eval_every", "seed",
            "max_batches", "max_val_images", "schedule")
    assert {k: getattr(tc2, k) for k in same} == {k: getattr(tc, k) for k in same}
    assert sc2 == sc
    if dc and dc.kind == "hinton":
        dc = DistillConfig(**{**dc.to_dict(), "margin": 0.0})    # margin only matters to bounded
    assert dc2 == dc
    assert args.data == "data.yaml" and (args.weights is None) == (start is None)


def test_prune_command_parses_back_to_the_plan():
    model = viz.toy_residual_model()
    plan = make_plan(model, PruneConfig(strategy="union", ratio=0.5, drop_blocks=1, min_keep=0.25))
    pc = pipeline.PipelineConfig(min_keep=0.25, runs="/nonexistent")
    settings = types.SimpleNamespace(root=Path.cwd())
    cmd = nb.prune_command(settings, pc, types.SimpleNamespace(name="p", extra={"plan": plan}),
                           types.SimpleNamespace(name="sparse"))
    args = build_parser().parse_args(_argv(cmd)[3:])
    assert (args.strategy, args.ratio, args.drop_blocks, args.min_keep) == ("union", 0.5, 1, 0.25)


def test_full_run_reads_the_results_tables(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "results.md").write_text(
        "# R\n\n| stage | model | params | map50 |\n|---|---|---|---|\n| baseline | baseline | 2,267,629 | 0.796 |\n"
        "\ntext\n\n| schedule | map50 | gamma_lt_1e-2 |\n|---|---|---|\n| sparse-constant-s0.1 | 0.799 | 0.768 |\n")
    settings = types.SimpleNamespace(root=tmp_path)
    assert nb.full_run(settings, "baseline", "map50") == 0.796
    assert nb.full_run(settings, "baseline", "params") == 2267629
    assert nb.full_run(settings, "sparse-constant-s0.1", "gamma_lt_1e-2") == 0.768
    assert nb.full_run(settings, "nothing", "map50") is None
    assert nb.full_run(types.SimpleNamespace(root=tmp_path / "none"), "baseline", "map50") is None
    (tmp_path / "docs" / "results.json").write_text(json.dumps([{"name": "baseline", "map50": 0.81, "map": None}]))
    assert nb.full_run(settings, "baseline", "map50") == 0.81        # results.json first, where it has the value
    assert nb.full_run(settings, "baseline", "params") == 2267629    # ...else results.md


def test_penalty_values_adds_finished_runs_of_the_same_schedule_and_length(tmp_path):
    """A run counts when its saved settings (config.json: schedule, scope, weighting, epochs) and its
    done.json (epochs from the baseline) say it is a run of the slider - never read from its name."""
    pc = pipeline.PipelineConfig(runs=str(tmp_path), sparse_epochs=30, baseline_epochs=40)

    def run(name, s, schedule="constant", epochs=10, scope="all", weighting="uniform", done=True, total=None):
        (tmp_path / name).mkdir()
        sparsity = {"s": s, "schedule": schedule, "scope": scope, "weighting": weighting}
        (tmp_path / name / "config.json").write_text(json.dumps({"train": {"epochs": epochs},
                                                                 "meta": {"sparsity": sparsity}}))
        if done:                                        # unfinished: no done.json
            row = {"epochs_total": total or pc.baseline_epochs + epochs}
            (tmp_path / name / "done.json").write_text(json.dumps({"row": row}))
    run("a", 0.05)
    run("b", 0.2, epochs=5)                             # another length
    run("c", 0.3, schedule="local-decay")               # another schedule
    run("d", 0.07, scope="conservative")                # another scope
    run("e", 0.08, weighting="flops")                   # another weighting
    run("f", 0.09, total=100)                           # not started from the baseline
    run("g", 0.5, done=False)
    (tmp_path / "h").mkdir()
    (tmp_path / "h" / "done.json").write_text("{}")     # no config.json: not a training run of this kind
    assert nb.penalty_values(pc, [0.01, 0.1], "constant", 10) == [0.01, 0.05, 0.1]


def test_threshold_maps_to_the_union_ratio_whose_threshold_marks_exactly_the_channels_below_it():
    model = viz.toy_residual_model()       # gammas 0.001..0.009 (small) and 0.5..1.0 (large)
    g = pool_gammas(model)
    for t in (0.0005, 0.005, 0.1, 0.75):
        plan = make_plan(model, PruneConfig(strategy="union", ratio=ratio_at_threshold(model, t), min_keep=0.0))
        assert plan.pool_pruned == int((g < t).sum())
        assert plan.threshold >= t or plan.pool_pruned == 0


def test_plot_history_keeps_one_colour_per_run_across_panels():
    h1 = pd.DataFrame({"epoch": [1, 2], "map50": [0.1, 0.2], "kd_cls": [0.5, 0.4]})
    h2 = pd.DataFrame({"epoch": [1, 2], "map50": [0.15, 0.25]})     # no kd_cls: the next run must not shift
    h3 = pd.DataFrame({"epoch": [1, 2], "map50": [0.1, 0.3], "kd_cls": [0.6, 0.2]})
    full_b = pd.DataFrame({"epoch": [1, 5, 9], "map50": [0.2, 0.4, 0.5]})   # b's full run, from the pack
    fig = viz.plot_history({"a": h2, "b": h1, "c": h3}, ["map50", "kd_cls"], reference={"b": full_b})
    left, right = fig.axes[:2]
    colours = lambda ax: [tuple(l.get_color()) if not isinstance(l.get_color(), str) else l.get_color()  # noqa: E731
                          for l in ax.get_lines() if len(l.get_xdata()) == 2 and l.get_xdata()[0] == 1]
    assert colours(left)[1:] == colours(right)          # b and c keep their colours where a is absent
    dashed = [l for l in left.get_lines() if l.get_linestyle() == "--"]
    assert len(dashed) == 1 and np.allclose(dashed[0].get_ydata(), [0.2, 0.4, 0.5])
    assert dashed[0].get_color() == left.get_lines()[1].get_color()


@pytest.mark.parametrize("quick", ["1", "0"])
def test_setup_makes_the_data_and_names_the_run_directory(tmp_path, monkeypatch, quick):
    """A fresh clone: no data/, no runs/. setup() asks the generator for data/shapes (which makes
    it only when missing) and names runs/notebooks-quick or, in full mode, make results's runs/demo."""
    (tmp_path / "pyproject.toml").write_text("")
    (tmp_path / "yolocompress").mkdir()
    (tmp_path / "notebooks").mkdir()
    monkeypatch.chdir(tmp_path / "notebooks")
    monkeypatch.setenv("YOLOCOMPRESS_QUICK", quick)
    asked = []

    def fake_ensure(out, *a, **k):
        asked.append(Path(out))
        return Path(out) / "data.yaml"
    monkeypatch.setattr("yolocompress.data.synth.ensure_shapes", fake_ensure)
    s = nb.setup()
    assert asked == [tmp_path.resolve() / "data" / "shapes"]
    assert s.data == asked[0] / "data.yaml" and s.root == tmp_path.resolve()
    assert s.quick == (quick == "1")
    assert s.runs == tmp_path.resolve() / "runs" / ("notebooks-quick" if quick == "1" else "demo") and s.runs.is_dir()


def test_depth_vs_width_cuts_and_times_each_variant():
    from yolocompress.deploy.footprint import gflops
    from yolocompress.compress.surgery import apply_plan
    from yolocompress.teach.whatif import depth_vs_width
    model = viz.toy_residual_model()          # 10 layers, 2 residual blocks of 3 layers each
    base = PruneConfig(strategy="union", drop_blocks=1, min_keep=0.01, img_size=64)
    df = depth_vs_width(model, base, channel_ratios=[0.5], block_counts=[1, 2], combined_ratios=[0.5],
                        rounds=2, runs=1, progress=False)
    assert df["kind"].tolist() == ["original", "channels only", "layers only", "layers only", "combined"]
    assert df["layers"].tolist() == [10, 10, 7, 4, 7]
    assert df.loc[0, "GFLOPs"] == pytest.approx(gflops(model, 64))
    cut = apply_plan(model, make_plan(model, PruneConfig(strategy="union", ratio=0.5, drop_blocks=1, min_keep=0.01)))
    assert df.loc[4, "GFLOPs"] == pytest.approx(gflops(cut, 64))
    assert (df["GFLOPs"].iloc[1:] < df.loc[0, "GFLOPs"]).all() and (df["ms"] > 0).all()


def test_what_if_evaluates_each_position_once(monkeypatch):
    from yolocompress.teach import sweep, whatif
    from yolocompress.deploy.footprint import gflops
    from yolocompress.compress.surgery import apply_plan
    calls = []
    monkeypatch.setattr(sweep, "evaluate_at",      # WhatIf measures each plan through sweep.plan_row
                        lambda m, d, spec, **k: calls.append({"img_size": spec.size, **k})
                        or types.SimpleNamespace(map50=0.5, map=0.25))
    model = viz.toy_residual_model()
    w = whatif.WhatIf(model, data=types.SimpleNamespace(), img_size=64, min_keep=0.0, max_images=7)
    first = w(0.5)
    assert w(0.5) is first and len(calls) == 1 and calls[0] == {"img_size": 64, "max_images": 7}
    cut = apply_plan(model, make_plan(model, PruneConfig(strategy="union", ratio=0.5, drop_blocks=0, min_keep=0.0)))
    assert first["GFLOPs"] == pytest.approx(gflops(cut, 64))
    t = w.at_threshold(0.1)                    # the small gammas (< 0.01) are exactly those below 0.1
    assert t["ratio"] == pytest.approx(ratio_at_threshold(model, 0.1))
    assert t["plan"].pool_pruned == int((pool_gammas(model) < 0.1).sum())
    assert list(w.table([0.5])) == ["ratio", "pruned", "params", "GFLOPs", "map50", "map"]
    from yolocompress.compress.strategies import STRATEGIES
    for strategy in STRATEGIES:              # each strategy's threshold marks its own pool's small gammas
        t = whatif.WhatIf(model, None, strategy=strategy, min_keep=0.0).at_threshold(0.1)
        assert t["plan"].pool_pruned == int((pool_gammas(model, strategy) < 0.1).sum()), strategy


def _quick_settings(root, quick=True):
    return types.SimpleNamespace(root=root, quick=quick)


def test_plot_history_maps_a_quick_stage_to_its_full_run_by_name(tmp_path, capsys):
    """Under QUICK a stage whose name carries its epoch count (control ...-ft1) is drawn beside the full
    run named differently (...-ft10) when the notebook maps it; a run the pack lacks is named, not fatal."""
    from yolocompress.teach import pack
    pack.write_history(tmp_path / "docs", "control-x-ft10", pd.DataFrame({"epoch": [1, 10], "map50": [0.3, 0.6]}))
    pack.write_history(tmp_path / "docs", "baseline", pd.DataFrame({"epoch": [1, 30], "map50": [0.1, 0.8]}))
    h = pd.DataFrame({"epoch": [1], "map50": [0.05]})
    stages = {"control": pipeline.Stage("control-x-ft1", None, h), "baseline": pipeline.Stage("baseline", None, h),
              "other": pipeline.Stage("other-ft1", None, h)}
    fig = nb.plot_history(_quick_settings(tmp_path), stages, ["map50"], "t", full_names={"control": "control-x-ft10"})
    dashed = [l for l in fig.axes[0].get_lines() if l.get_linestyle() == "--"]
    assert sorted(tuple(l.get_ydata()) for l in dashed) == [(0.1, 0.8), (0.3, 0.6)]
    assert "other-ft1" in capsys.readouterr().out
    texts = [t.get_text() for t in fig.legends[0].get_texts()]
    assert "dashed: full run (make results, docs/pack)" in texts
    fig = nb.plot_history(_quick_settings(tmp_path, quick=False), stages, ["map50"], "t")   # full mode: its own runs
    assert not [l for l in fig.axes[0].get_lines() if l.get_linestyle() == "--"]


def test_penalty_reference_and_table_put_the_full_runs_beside_the_quick_ones(tmp_path, monkeypatch):
    from yolocompress.teach import pack, widgets
    docs = tmp_path / "docs"
    pack.write_table(docs, "penalty", pd.DataFrame({"s": [0.01, 0.1], "run": ["sparse-constant-s0.01-e6",
                     "sparse-constant-s0.1-e6"], "epochs": [6, 6], "map50": [0.7, 0.5], "map": [0.3, 0.2],
                     "gamma_lt_1e-2": [0.1, 0.8]}))
    pack.write_gammas(docs, {"sparse-constant-s0.01-e6": np.full(10, 0.5)})
    ref = nb.penalty_reference(_quick_settings(tmp_path))
    assert set(ref) == {0.01, 0.1} and ref[0.1]["hist"] is None and ref[0.01]["hist"][1].sum() == 10
    assert nb.penalty_reference(_quick_settings(tmp_path, quick=False)) == {}
    assert nb.penalty_reference(_quick_settings(tmp_path / "none")) == {}
    model = viz.toy_residual_model()
    short = {0.01: pipeline.Stage("q", model, row={"map50": 0.02}), 0.3: pipeline.Stage("q3", model, row={"map50": 0.01})}
    df = nb.penalty_table(short, ref)
    assert df["s"].tolist() == [0.01, 0.1, 0.3]
    assert df["full run: map50"].tolist()[:2] == [0.7, 0.5] and np.isnan(df["full run: map50"].iloc[2])
    assert np.isnan(df["map50"].iloc[1]) and "full run: epochs" not in nb.penalty_table(short, {})
    shown = {}
    monkeypatch.setattr(widgets, "_slider", lambda values, value, desc, show, **k: shown.update(values=values, show=show))
    widgets.sparsity_slider(short, reference=ref)
    assert shown["values"] == [0.01, 0.1, 0.3]
    for s in shown["values"]:              # every position draws: quick only, full only, or both
        fig = shown["show"](s)
        assert ("full run (6 epochs)" in fig.axes[0].get_title()) == (s in ref)
        assert ("this QUICK run" in fig.axes[0].get_title())
    assert len(shown["show"](0.01).axes[0].patches) > 0


def test_gamma_figures_draw_the_full_runs_beside_the_quick_ones(tmp_path, capsys):
    from yolocompress.teach import pack
    docs = tmp_path / "docs"
    pack.write_gammas(docs, {"baseline": np.full(8, 0.3)})
    hist = {"edges": np.linspace(-4, 1, 11).tolist(), "epochs": [1, 2], "counts": np.ones((2, 10)).tolist()}
    pack.write_gamma_epochs(docs, {"sparse-a-s0.1": hist})
    s = _quick_settings(tmp_path)
    ref = nb.full_gamma_hists(s, {"baseline": "baseline", "b": "nothing"})
    assert list(ref) == ["baseline"] and "nothing" in capsys.readouterr().out
    fig = viz.plot_gamma_hist({"baseline": np.full(8, 0.2)}, reference=ref)
    labels = fig.axes[0].get_legend_handles_labels()[1]
    assert labels == ["baseline: this QUICK run", "baseline: full run (make results)"]
    epochs = nb.full_gamma_epochs(s, {"a": "sparse-a-s0.1", "b": "sparse-b-s0.1"})
    assert list(epochs) == ["a"] and nb.full_gamma_epochs(_quick_settings(tmp_path, False), {"a": "x"}) == {}
    fig = viz.plot_gamma_heatmaps({"a": hist, "b": hist}, reference=epochs, title="t")
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert titles == ["a: this QUICK run", "b: this QUICK run", "a: full run (make results)", "b: full run (make results)"]
    assert len(viz.plot_gamma_heatmaps({"a": hist}).axes) == 2      # one heatmap and its colour bar


def test_kd_seeds_table_averages_each_finetune_over_its_seeds():
    def row(name, distill, seed, map50, target="union-t20pct-b16", w=None, t=None, kind="pruned"):
        return {"name": name, "kind": kind, "strategy": "union", "ratio": 0.9, "blocks_dropped": 16,
                "distill": distill, "seed": seed, "map50": map50, "map": map50 / 2, "kd_weight": w, "kd_T": t,
                "kd_target": target}
    rows = [row("ft", None, 0, 0.2), row("ft-seed1", None, 1, 0.4),
            row("h", "hinton", 0, 0.3, w=1.0, t=3.0), row("h1", "hinton", 1, 0.5, w=1.0, t=3.0),
            row("h-sweep", "hinton", None, 0.9, w=3.0, t=3.0),            # a sweep run without a seed
            row("other", None, 0, 0.9, target="union-r0.7"), row("c", None, 0, 0.9, kind="control-same-epochs")]
    df = nb.kd_seeds_table(rows, "union-t20pct-b16")
    assert df["finetune"].tolist() == ["plain", "hinton"] and df["seeds"].tolist() == [2, 2]
    assert np.allclose(df["map50 mean"], [0.3, 0.4]) and np.allclose(df["map50 std"], [0.1414, 0.1414], atol=1e-4)
    assert df["weight"].tolist()[1] == 1.0
    assert nb.kd_seeds_table([], "union-t20pct-b16").empty


def test_full_kd_tables_read_the_sweep_and_the_seeds_of_the_kd_target(tmp_path, capsys):
    from yolocompress.teach import pack
    plan = types.SimpleNamespace(strategy="union", ratio=0.9, dropped_blocks=list(range(16)))
    target = pipeline.Stage("union-r0.9-b16", None, extra={"plan": plan})
    s = _quick_settings(tmp_path)
    sweep, seeds = nb.full_kd_tables(s, target)
    assert sweep.empty and seeds.empty and "kd-sweep" in capsys.readouterr().out
    sweep = pd.DataFrame({"finetune": ["hinton", "hinton"], "weight": [1, 3], "T": [3, 3],
                          "run": ["ft-union-r0.9-b16-hinton", "ft-union-r0.8-b16-hinton"], "map50": [0.1, 0.2],
                          "kd_target": ["union-r0.9-b16", "union-r0.8-b16"]})
    pack.write_table(tmp_path / "docs", "kd-sweep", sweep.drop(columns="kd_target"))   # a pack from before the column
    assert len(nb.full_kd_tables(s, target)[0]) == 2             # ... holds one target's sweep: all of it
    capsys.readouterr()
    pack.write_table(tmp_path / "docs", "kd-sweep", sweep)
    (tmp_path / "docs" / "results.json").write_text(json.dumps([
        {"name": "ft-union-r0.9-b16", "kind": "pruned", "strategy": "union", "ratio": 0.9, "blocks_dropped": 16,
         "distill": None, "seed": 0, "map50": 0.1, "map": 0.05, "kd_target": "union-r0.9-b16"}]))
    sweep, seeds = nb.full_kd_tables(s, target)
    assert sweep["run"].tolist() == ["ft-union-r0.9-b16-hinton"] and seeds["finetune"].tolist() == ["plain"]
    assert capsys.readouterr().out == ""


def test_sweep_and_pareto_show_the_full_run_beside_a_quick_one(tmp_path, capsys):
    from yolocompress.teach import pack
    docs = tmp_path / "docs"
    sweep = pd.DataFrame({"ratio": [0, 0.5], "GFLOPs": [0.2, 0.1], "map50": [0.8, 0.7]})
    pack.write_table(docs, "sensitivity-union", sweep)
    s = _quick_settings(tmp_path)
    ref = nb.full_sensitivity(s, ["union", "shared"])
    assert list(ref) == ["union"] and "sensitivity-shared" in capsys.readouterr().out
    fig = viz.plot_sweep({"union": sweep, "shared": sweep}, reference=ref)
    assert [l.get_linestyle() for l in fig.axes[0].get_lines()] == ["-", "--", "-"]
    assert nb.full_sensitivity(_quick_settings(tmp_path, False), ["union"]) == {}
    table = pd.DataFrame({"model": ["baseline", "x"], "GFLOPs": [0.2, 0.1], "map50": [0.01, 0.02]})
    assert len(nb.plot_pareto(s, table, "t").axes) == 1 and "results.json" in capsys.readouterr().out
    (docs / "results.json").write_text(json.dumps([
        {"name": "baseline", "kind": "baseline", "seed": None, "gflops": 0.22, "map50": 0.8, "map": 0.5},
        {"name": "ft-a", "kind": "pruned", "seed": None, "gflops": 0.1, "map50": 0.7, "map": 0.4},
        {"name": "ft-a-seed1", "kind": "pruned", "seed": 1, "gflops": 0.1, "map50": 0.6, "map": 0.4},
        {"name": "control-x", "kind": "control-same-epochs", "seed": None, "gflops": 0.2, "map50": 0.8, "map": 0.5}]))
    assert nb.full_models(s)["model"].tolist() == ["baseline", "ft-a"]
    assert nb.full_models(_quick_settings(tmp_path, False)).empty
    fig = nb.plot_pareto(s, table, "t")
    assert [ax.get_title() for ax in fig.axes] == ["this QUICK run", "full run (make results, docs/results.json)"]


def test_budget_prunes_pairs_each_sparse_models_budget_prune_with_its_own_control():
    rows = [{"name": "u", "kind": "pruned", "target_gflops": 0.04, "importance": "gamma-per-flop", "sparse_model": "sp",
             "seed": None, "distill": None, "gflops": 0.044, "params": 7e4, "map50": 0.60},
            {"name": "g", "kind": "pruned", "target_gflops": 0.04, "importance": "gamma", "sparse_model": "sp",
             "seed": None, "distill": None, "gflops": 0.044, "params": 5e4, "map50": 0.20},
            {"name": "w", "kind": "pruned", "target_gflops": 0.04, "importance": "gamma-per-flop", "sparse_model": "sp-flops",
             "seed": None, "distill": None, "gflops": 0.043, "params": 9e4, "map50": 0.70},
            {"name": "w-hinton", "kind": "pruned", "target_gflops": 0.04, "importance": "gamma-per-flop",
             "sparse_model": "sp", "seed": 1, "distill": "hinton", "gflops": 0.044, "params": 7e4, "map50": 0.61},
            {"name": "c", "kind": "control-same-epochs", "control_of": "u", "map50": 0.77},
            {"name": "cw", "kind": "control-same-epochs", "control_of": "w", "map50": 0.75}]
    df = nb.budget_prunes(rows)
    assert df["sparse model"].tolist() == ["sp", "sp-flops"]          # not the |gamma| ranking, not a KD seed
    assert df["vs control"].round(3).tolist() == [-0.17, -0.05]
    assert nb.budget_prunes([]).empty


def test_where_zeros_reports_what_a_threshold_cut_would_keep():
    """A model with no small gamma keeps all its GFLOPs; the toy with tiny gammas on most channels
    keeps less, and the fractions per price band lie in [0, 1]."""
    import torch
    from yolocompress.darknet import zoo
    from yolocompress.darknet.model import Darknet
    dense = Darknet(zoo.teach(classes=1, width=4))
    with torch.no_grad():
        for m in dense.conv_layers().values():
            if m.bn is not None:
                m.bn.weight.fill_(0.5)
    table = nb.where_zeros({"dense": dense, "toy": viz.toy_residual_model()})
    kept = table.set_index("sparse model").filter(like="GFLOPs kept").iloc[:, 0]
    assert kept["dense"] == 1.0 and kept["toy"] < 1.0
    bands = table.filter(like="w in")
    assert ((bands.fillna(0) >= 0) & (bands.fillna(0) <= 1)).all().all()


def test_results_table_reads_latency_from_the_full_run_under_quick(tmp_path):
    """QUICK's few timings are replaced by the full run's stored latency (a prune before finetuning
    by its finetuned twin's); the ratio is recomputed from them; full mode keeps its own timings."""
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "results.json").write_text(json.dumps([{"name": "sparse", "latency_ms": 20.0},
                                                   {"name": "ft-p", "latency_ms": 5.0}]))
    row = lambda name, ms: {"model": name, "params": 1, "GFLOPs": 1.0, "latency_ms": ms, "map50": 0.5, "map": 0.3}
    stages = [pipeline.Stage(n, None, row=row(n, ms)) for n, ms in (("sparse", 9.0), ("p", 30.0), ("ft-p", 31.0),
                                                                    ("new", 1.0))]
    settings = lambda quick: nb.Settings(quick=quick, root=tmp_path, runs=tmp_path / "runs", data=tmp_path / "d.yaml",
                                         device=None, seed=0)
    quick = nb.results_table(settings(True), stages)
    assert list(quick["latency_ms (full run)"].iloc[:3]) == [20.0, 5.0, 5.0] and np.isnan(quick.iloc[3, 4])
    assert list(quick["latency ratio (full run)"].iloc[:3]) == [1.0, 0.25, 0.25]
    full = nb.results_table(settings(False), stages)
    assert list(full["latency_ms"]) == [9.0, 30.0, 31.0, 1.0] and "latency ratio" in full


@pytest.mark.parametrize("colab, gpu, env, quick", [(False, False, None, False), (True, False, None, True),
                                                    (True, True, None, False), (True, False, "0", False),
                                                    (False, False, "1", True)])
def test_quick_is_the_default_only_on_a_colab_cpu_runtime(monkeypatch, colab, gpu, env, quick):
    monkeypatch.setattr(nb, "in_colab", lambda: colab)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: gpu)
    if env is None:
        monkeypatch.delenv("YOLOCOMPRESS_QUICK", raising=False)
    else:
        monkeypatch.setenv("YOLOCOMPRESS_QUICK", env)
    assert nb.quick_flag() is quick
    note = nb.mode_note(quick)
    assert bool(note) == (colab and env is None)          # said only where the notebook chose for the learner
    if note:
        assert ("YOLOCOMPRESS_QUICK" in note) and (("no GPU" in note) == quick)


def test_full_run_tables_read_todays_results_json_and_md(tmp_path):
    """Regression (CI of this session): results.json's controls list the models they control, and
    results.md has a table whose header holds a bare |gamma|; both read without error."""
    rows = [{"name": "ctl", "kind": "control-same-epochs", "control_of": ["p", "g"], "map50": 0.9},
            {"name": "old", "kind": "control-same-epochs", "control_of": "q", "map50": 0.8},
            {"name": "p", "kind": "pruned", "target_gflops": 0.1, "seed": None, "importance": "gamma-per-flop",
             "sparse_model": "s", "gflops": 0.1, "params": 5, "map50": 0.85, "epochs_total": 9},
            {"name": "g", "kind": "pruned", "gradual": "40% -> 20%", "epochs_total": 9, "gflops": 0.1, "map50": 0.8}]
    assert list(nb.budget_prunes(rows)["control map50"]) == [0.9]
    assert nb._controls_by_name(rows)["q"]["name"] == "old"
    assert len(nb.gradual_prunes(rows, "p")) == 2
    md = tmp_path / "docs" / "results.md"
    md.parent.mkdir()
    md.write_text("| importance | kept |gamma| | map50 |\n|---|---|---|\n| gamma | 0.9 | 0.5 |\n\n"
                  "| model | map50 |\n|---|---|\n| m | 0.7 |\n")
    assert [list(t.columns) for t in nb.results_tables(md)] == [["model", "map50"]]
    assert nb.full_run(types.SimpleNamespace(root=tmp_path), "m", "map50") == 0.7
