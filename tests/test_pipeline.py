"""The pipeline's stages on a tiny dataset: fair controls train exactly as long as the pruned model,
results.json rows say what each model is, the demo's stage list is the one list the report, the
parallel prefetch and a registered strategy all read (cache keys: tests/test_pipeline_cache.py)."""
import inspect
import json

import pandas as pd
import pytest
import torch

from yolocompress.teach import pipeline as pl, report, stages
from yolocompress.teach.pipeline import BASELINE, CONTROL_SAME_EPOCHS, CONTROL_SCRATCH, PRUNED, SPARSE

from yolocompress.darknet import zoo
from yolocompress.darknet.model import Darknet
from yolocompress.data.synth import ShapesConfig, make_shapes


@pytest.fixture(scope="module")
def pc(tmp_path_factory):
    root = tmp_path_factory.mktemp("pipe")
    make_shapes(root / "d", ShapesConfig(n_train=8, n_val=4, img_size=64, seed=3), workers=1, progress=False)
    return pl.PipelineConfig.quick(data=str(root / "d" / "data.yaml"), runs=str(root / "runs"), img_size=64,
                                   baseline_epochs=1, sparse_epochs=1, finetune_epochs=2, max_batches=1,
                                   batch_size=4, max_val_images=4, latency_runs=1)


def test_controls_train_as_long_as_the_pruned_model(pc):
    base = pl.baseline(pc, progress=False)
    sparse = pl.sparse(pc, progress=False)
    pruned = pl.prune(pc, sparse, pl.DEFAULT_STRATEGY, 0.5, 1)
    ft = pl.finetune(pc, pruned, progress=False)
    same = pl.control_same_epochs(pc, sparse, progress=False)
    scratch = pl.control_scratch(pc, pruned, progress=False)
    assert base.row["epochs_total"] == 1 and sparse.row["epochs_total"] == 2 and pruned.row["epochs_total"] == 2
    assert ft.row["epochs_total"] == same.row["epochs_total"] == scratch.row["epochs_total"] == 4
    assert scratch.model.blocks == pruned.model.blocks and same.model.blocks == sparse.model.blocks
    rec = pl.record(ft, PRUNED)
    assert (rec.strategy, rec.ratio, rec.blocks_dropped, rec.epochs_total) == (pl.DEFAULT_STRATEGY, 0.5, 1, 4)
    assert rec.gflops < pl.record(base, BASELINE).gflops
    assert pl.record(scratch, CONTROL_SCRATCH, control_of=rec.name).control_of == rec.name


def test_the_gradual_prune_trains_as_long_as_the_one_shot_prune(pc):
    """Steps of the budget, sparse training between them, a shorter final finetune: the chain ends
    at the one-shot prune's budget (within the plan's 2%, tests/test_budget.py) and its epochs."""
    sparse = pl.sparse(pc, progress=False)
    pruned = pl.prune_gradual(pc, sparse, progress=False)
    ft = pl.finetune_gradual(pc, pruned, progress=False)
    one_shot = pl.finetune(pc, pl.prune_budget(pc, sparse), progress=False)
    assert pruned.row["epochs_total"] == sparse.row["epochs_total"] + pc.gradual_between * len(pc.gradual_steps)
    assert ft.row["epochs_total"] == one_shot.row["epochs_total"] == pl.control_same_epochs(pc, sparse, progress=False).row["epochs_total"]
    assert len(pruned.extra["plan"].dropped_blocks) == 0 < pc.blocks     # the blocks went in the first step
    assert len(pruned.model.blocks) == len(one_shot.model.blocks)       # ... so both dropped as many
    # both meet the budget; how close they land is tests/test_budget.py's subject (at 128 px: at 64 px
    # one channel of a wide residual group costs several % of this small budget)
    assert max(ft.row["GFLOPs"], one_shot.row["GFLOPs"]) <= 0.2 * sparse.row["GFLOPs"]
    with pytest.raises(ValueError, match="no epoch"):
        pl.gradual_finetune_epochs(pl.PipelineConfig(finetune_epochs=6, gradual_between=3, gradual_steps=("60%", "40%")))


def test_demo_writes_results_json_markdown_and_the_pack(pc, tmp_path, monkeypatch):
    """``make results``'s writer end to end on the tiny set: every row kind with its control, the KD
    rows over every seed, results.md's sections, and a results pack the notebooks can read. The
    stages are trained by ``prefetch`` in two processes (``make results --jobs 2``); ``run_all`` then
    must find every one of them in the cache, so training is switched off while it runs."""
    import json
    from pathlib import Path
    from yolocompress.teach import pack, prefetch
    prefetch.prefetch(pc, jobs=2)

    def no_training(*a, **k):
        raise AssertionError("run_all trained a stage that prefetch did not")
    monkeypatch.setattr(pl, "train_recipe", no_training)
    pack.write_history(tmp_path, "ft-a-stage-no-longer-trained", pd.DataFrame({"epoch": [1]}))   # an earlier demo's
    report.run_all(pc, tmp_path)
    assert pack.history(tmp_path, "ft-a-stage-no-longer-trained") is None
    rows = json.loads((tmp_path / "results.json").read_text())
    assert [pl.ResultRow.from_json(r).to_json() for r in rows] == rows       # the typed row reads back unchanged
    names = [r["name"] for r in rows]
    assert len(names) == len(set(names))                                     # one row per model
    controlled = {n: r["name"] for r in rows if r["kind"] == CONTROL_SAME_EPOCHS for n in r["control_of"]}
    weighted = [r for r in rows if r["kind"] == PRUNED and r["sparse_model"] == "sparse-local-decay-s0.1-flops"]
    assert len(weighted) == 1 and controlled[weighted[0]["name"]] == "control-sparse-local-decay-s0.1-flops-ft2"
    kinds = {r["kind"] for r in rows}
    assert kinds == {BASELINE, SPARSE, PRUNED, CONTROL_SAME_EPOCHS, CONTROL_SCRATCH}
    gradual = [r for r in rows if r.get("gradual")]
    assert len(gradual) == 1 and gradual[0]["name"] in controlled
    pruned = {r["name"] for r in rows if r["kind"] == PRUNED}
    assert set(controlled) <= pruned and all(r["map"] is not None and r["map50"] is not None for r in rows)
    kd = [r for r in rows if r["kind"] == PRUNED and r.get("kd_target")]
    assert sorted((r["distill"] or "plain", r["seed"]) for r in kd) == sorted(
        (k, s) for k in ("plain", "hinton", "bounded") for s in pc.kd_seeds)
    seeded = [r for r in rows if r.get("seeds")]      # the KD seeds, the combined rung at each seed budget, the control
    assert all(r["seeds"] == len(pc.kd_seeds) and r["map_std"] >= 0 for r in seeded)
    assert {r["kind"] for r in seeded} == {PRUNED, CONTROL_SAME_EPOCHS}
    scratch = [r for r in rows if r["kind"] == CONTROL_SCRATCH]
    assert len(scratch) == len(pc.seed_budgets) and all(r["control_of"] in pruned for r in scratch)
    cliff = pack.table(tmp_path, "cliff")
    lines = set(cliff["line"])
    assert {"shared", "union", "combined", "layers-only"} <= lines and (tmp_path / "cliff.png").is_file()
    assert set(cliff["stage"]) == {"before", "after"} and "## The cliff" in (tmp_path / "results.md").read_text()
    text = (tmp_path / "results.md").read_text()
    width = inspect.signature(zoo.teach).parameters["width"].default       # the demo's model, as trained
    assert f"YOLOv3's layout at width {width}, {len(ShapesConfig().names)} classes" in text
    assert "Pruned to the budget in steps (40% -> 20%, 1 sparse epochs between)" in text
    for section in ("## What the numbers say", "## The penalty s", "## Ranking channels", "KD weight, temperature T"):
        assert section in text
    assert pack.history(tmp_path, "baseline")["epoch"].tolist() == [1]
    assert pack.gamma_hist(tmp_path, "sparse-local-decay-s0.1")[1].sum() > 0
    assert pack.gamma_epochs(tmp_path, "sparse-local-decay-s0.1")["epochs"] == list(range(pc.sparse_epochs + 1))  # 0: start
    penalty = pack.table(tmp_path, "penalty")
    assert list(penalty["s"]) == list(pc.penalty_values) + [s for s, _ in pc.penalty_sgd]
    assert list(penalty["optimizer"]) == ["adam"] * len(pc.penalty_values) + ["sgd"] * len(pc.penalty_sgd)
    assert len(pack.table(tmp_path, "kd-sweep")) == 2 * (1 + len(pc.kd_sweep)) + len(pc.kd_margins)
    assert set(pack.table(tmp_path, "kd-sweep")["kd_target"]) == {r["kd_target"] for r in kd}
    assert pack.history(tmp_path, "nothing") is None and pack.rows(Path(tmp_path) / "nowhere") == []
    # one latency per model: the stage read back from its run directory has results.json's figure
    again = pl.baseline(pc, progress=False)
    assert again.row["latency_ms"] == next(r["latency_ms"] for r in rows if r["name"] == "baseline")
    assert again.row["latency_conditions"]["threads"] == 2
    for r in kd:             # every seed run too, in the same final timing as the rest (one architecture, one figure)
        done = json.loads((Path(pc.runs) / r["name"] / "done.json").read_text())["row"]
        assert done["latency_ms"] == r["latency_ms"] and done["latency_conditions"]["threads"] == 2


def _row(name, kind, gflops, m, control_of=None, distill=None):
    """A results.json row whose mAP@0.5:0.95 and mAP@0.5 are both ``m`` (the summary reads the first)."""
    return {"name": name, "kind": kind, "gflops": gflops, "params": gflops * 10, "map50": m, "map": m,
            "control_of": control_of, "distill": distill}


def test_results_json_reads_back_unchanged_as_typed_rows():
    """docs/results.json through ``ResultRow`` and back is the same text: the same keys, in the same
    order, the optional ones (gradual, kd_*) only where they were."""
    from pathlib import Path
    path = Path(__file__).resolve().parents[1] / "docs" / "results.json"
    if not path.is_file():
        pytest.skip("docs/results.json is written by make results")
    rows = json.loads(path.read_text())
    typed = pl.as_rows(rows)
    assert json.dumps([r.to_json() for r in typed], indent=1) == json.dumps(rows, indent=1)
    with pytest.raises(ValueError, match="unknown keys"):
        pl.ResultRow.from_json(rows[0] | {"nonsense": 1})


def test_headline_is_the_smallest_prune_within_a_point_of_its_control():
    from yolocompress.teach.report import headline
    rows = [_row("base", BASELINE, 1.0, 0.70),
            _row("a", PRUNED, 0.25, 0.80), _row("b", PRUNED, 0.15, 0.795), _row("c", PRUNED, 0.10, 0.70),
            _row("d", PRUNED, 0.05, 0.80, distill="hinton")]
    rows += [_row("ctl", CONTROL_SAME_EPOCHS, 1.0, 0.80, control_of=n) for n in "abcd"]
    best, control = headline(rows, 1.0)
    assert best.name == "b" and control.map50 == 0.80    # a: too large; c: 10 pts below; d: KD
    assert headline(rows, 1.0, max_drop=0.001) is None            # b is 0.5 pt below: not within 0.1 pt


def test_summary_compares_the_penalty_weightings_on_the_same_budget_prune():
    """The budget-ranking line reads only the uniform chain's prunes; the FLOPs-weighted sparse model's
    prune (a prune of the other sparse model results.json lists) gets its own line, against its own
    same-epoch control; a sparse branch results.json does not list (a shorter run) gets none."""
    from yolocompress.teach.report import _summary
    extra = dict(seed=None, epochs_total=60, target_gflops=0.2, blocks_dropped=16)
    rows = [_row("base", "baseline", 1.0, 0.70) | dict(seed=None), _row("sp", "sparse", 1.0, 0.72) | dict(seed=None),
            _row("sp-flops", "sparse", 1.0, 0.71) | dict(seed=None),
            _row("g", "pruned", 0.2, 0.30) | extra | dict(importance="gamma", sparse_model="sp"),
            _row("gpf", "pruned", 0.2, 0.60) | extra | dict(importance="gamma-per-flop", sparse_model="sp"),
            _row("w", "pruned", 0.2, 0.75) | extra | dict(importance="gamma-per-flop", sparse_model="sp-flops"),
            _row("short", "pruned", 0.2, 0.50) | extra | dict(importance="gamma-per-flop", sparse_model="sp-e10"),
            _row("ctl", "control-same-epochs", 1.0, 0.77, control_of="g") | dict(seed=None),
            _row("ctl-w", "control-same-epochs", 1.0, 0.76, control_of="w") | dict(seed=None)]
    text = _summary(rows)
    assert "gamma 0.300 (0.2000 GFLOPs), gamma-per-flop 0.600 (0.2000 GFLOPs)" in text     # not w's 0.750
    assert ("budget prune (0.2000 GFLOPs) finetunes to mAP@0.5:0.95 0.750, against 0.600 from the uniform penalty, "
            "-0.010 against its own same-epoch control (0.760)") in text
    assert "0.500" not in text          # a uniform sparse branch (sp-e10) is not the FLOPs-weighted penalty
    assert "**w** has 80% fewer GFLOPs" in text                                         # the headline row


def test_prefetch_waves_name_each_stage_once():
    """Two processes must never train one stage at once: across the waves every training stage
    appears once (the KD target's plain seed-0 finetune, when it is the |gamma|-per-FLOP budget row,
    is listed once), and each wave reads only stages of earlier waves."""
    from yolocompress.teach import prefetch
    for pc in (pl.PipelineConfig(), pl.PipelineConfig(kd_budget=None)):
        specs = stages.demo_stages(pc)
        index, waves = stages.by_id(specs), prefetch.waves(pc)
        listed = [stages.signature(s, index) for wave in waves for s in wave]
        assert len(listed) == len(set(listed))
        assert set(listed) == {stages.signature(s, index) for s in specs if s.trains}
        finished = set()
        for wave in waves:
            for s in wave:
                trained_inputs = {i for i in stages.closure(specs, [s]) if i.trains and i.id != s.id}
                assert {stages.signature(i, index) for i in trained_inputs} <= finished, s.id
            finished |= {stages.signature(s, index) for s in wave}


def test_the_distillation_target_can_have_its_own_budget():
    """``kd_budget`` moves the KD target (and every KD and plain-seed stage of ``make results``) to another
    budget, while the budget prune, its gradual twin and their rows stay at ``budget``; unset, the KD
    target is the budget prune itself (so earlier runs keep their cache keys)."""
    same, own = pl.PipelineConfig(kd_budget=None, flops_weighted=True), pl.PipelineConfig(kd_budget="5%", flops_weighted=True)
    assert pl.kd_target_spec(same) == pl.budget_spec(same)
    assert pl.kd_target_spec(own)["budget"] == "5%"
    assert pl.budget_spec(own) == pl.budget_spec(same) and pl.budget_spec(own)["budget"] == own.budget
    specs = {s.id: s for s in stages.demo_stages(own)}
    kd = [s for s in specs.values() if "kd" in s.tags and s.trains]
    assert len(kd) == 2 * (1 + len(own.kd_sweep)) + len(own.kd_margins) + len(own.kd_seeds) * (1 + 2)   # sweep, plain + 2 KD kinds
    assert all(dict(s.inputs)["pruned"] == "prune/kd-target" for s in kd)
    assert specs["prune/kd-target"].kwargs["budget"] == "5%"
    assert specs["prune/budget/gamma-per-flop"].kwargs["budget"] == specs["prune/flops"].kwargs["budget"] == own.budget


def test_a_registered_strategy_reaches_the_cli_the_sweep_and_the_demo():
    """Register a toy strategy (Union's rules under another name) and, touching no other module,
    find it among the CLI's ``prune --strategy`` and ``sweep --strategy`` choices and in --help, in
    the sweep (a sensitivity sweep runs with it), and in the demo's stage list (a prune and its
    finetune, whose results.json row is a pruned model) - then gone again once unregistered."""
    from yolocompress.cli.main import build_parser
    from yolocompress.compress.plan import PruneConfig
    from yolocompress.compress.strategies import STRATEGIES, Union
    from yolocompress.teach import sweep, toys

    class Toy(Union):
        name, summary = "toy", "a toy strategy: union's rules under another name"

    def toy_stages():
        return [(s.call, s.record) for s in stages.demo_stages(pl.PipelineConfig()) if s.id.endswith("/toy")]

    STRATEGIES.register(Toy())
    try:
        parser = build_parser()
        args = parser.parse_args(["prune", "--weights", "w.pt", "--strategy", "toy", "--out", "o"])
        assert args.strategy == "toy"
        assert parser.parse_args(["sweep", "--weights", "w.pt", "--data", "d.yaml", "--strategy", "toy"]).strategy == "toy"
        sub = next(a for a in parser._actions if hasattr(a, "choices") and isinstance(a.choices, dict))
        assert "toy" in sub.choices["prune"].format_help()
        df = sweep.sensitivity_sweep(toys.toy_residual_model(), None, PruneConfig(strategy="toy", min_keep=0.0),
                                     [0.5], progress=False)
        assert list(df["ratio"]) == [0.0, 0.5] and df["GFLOPs"].iloc[1] < df["GFLOPs"].iloc[0]
        assert toy_stages() == [("prune", None), ("finetune", PRUNED)]
    finally:
        STRATEGIES.unregister("toy")
    assert toy_stages() == []
    with pytest.raises(SystemExit):
        build_parser().parse_args(["prune", "--weights", "w.pt", "--strategy", "toy", "--out", "o"])


def test_model_text_names_the_class_count_in_words():
    """results.md says "1 class" for the bundled one-class model and "8 classes" otherwise."""
    with torch.device("meta"):
        one, eight = Darknet(zoo.teach(classes=1, width=4)), Darknet(zoo.teach(classes=8, width=4))
    assert report._model_text(one).endswith("at width 4, 1 class)")
    assert report._model_text(eight).endswith("at width 4, 8 classes)")


@pytest.mark.parametrize("kd_maps, verdict", [((0.70, 0.71, 0.72), "beats plain"),
                                              ((0.58, 0.59, 0.60), "falls below plain"),
                                              ((0.62, 0.63, 0.64), "is within the larger std")])
def test_summary_says_whether_kd_beats_ties_or_loses_to_plain(kd_maps, verdict):
    """Plain seeds 0.62/0.63/0.64 (std 0.01): a KD mean 0.08 above is a win, 0.04 below a loss, equal
    a tie; differences that round to zero print as +0.000."""
    from yolocompress.teach.report import _signed, _summary
    rows = [_row("base", "baseline", 1.0, 0.70) | dict(seed=None),
            _row("ctl", "control-same-epochs", 1.0, 0.70, control_of="t") | dict(seed=None)]
    rows += [_row(f"t-{s}", "pruned", 0.05, m) | dict(seed=s, kd_target="t") for s, m in enumerate((0.62, 0.63, 0.64))]
    rows += [_row(f"t-h{s}", "pruned", 0.05, m, distill="hinton") | dict(seed=s, kd_target="t")
             for s, m in enumerate(kd_maps)]
    assert f"it {verdict}" in _summary(rows)
    assert _signed(-0.0004) == "+0.000" and _signed(-0.0006) == "-0.001"


def test_pareto_figure_groups_rows_by_kind_and_labels_the_front():
    """Every labelled stage of the demo gets its legend group from its spec (not from its label
    text); the left panel labels only the Pareto front, the right one every prune before finetuning."""
    import matplotlib
    matplotlib.use("Agg")
    groups = {s.label: report._group(s) for s in stages.demo_stages(pl.PipelineConfig(flops_weighted=True))
              if s.label and not s.is_prune}
    assert groups == {"baseline": "baseline", "sparse (local-decay)": "sparse, unpruned",
                      "sparse (local-decay, FLOPs-weighted penalty)": "sparse, unpruned",
                      "control: unpruned, same total epochs": "same-epoch control",
                      "control: FLOPs-weighted sparse, unpruned, same total epochs": "same-epoch control",
                      "control: pruned architecture from scratch": "pruned architecture from scratch",
                      "pruned + finetune": "pruned + finetune",
                      f"gradual prune ({report.gradual_label(pl.PipelineConfig())}) + finetune": "pruned + finetune",
                      "KD target + finetune": "pruned + finetune",
                      "KD target + finetune + KD (hinton)": "pruned + finetune with KD",
                      "KD target + finetune + KD (bounded)": "pruned + finetune with KD"}
    stages_ = {"baseline": "baseline", "sparse (local-decay)": "sparse, unpruned",
               "control: unpruned, same total epochs": "same-epoch control",
               "control: FLOPs-weighted sparse, unpruned, same total epochs": "same-epoch control",
               "control: pruned architecture from scratch": "pruned architecture from scratch",
               "pruned + finetune": "pruned + finetune", "gradual prune (40% -> 20%) + finetune": "pruned + finetune",
               "KD target + finetune": "pruned + finetune", "KD target + finetune + KD (hinton)": "pruned + finetune with KD"}
    table = pd.DataFrame({"stage": list(stages_), "group": list(stages_.values()), "model": [f"m{i}" for i in range(len(stages_))],
                          "GFLOPs": [1.0, 1.0, 1.0, 1.0, 0.3, 0.2, 0.25, 0.05, 0.05],
                          "map50": [0.90, 0.88, 0.91, 0.90, 0.92, 0.89, 0.85, 0.80, 0.78]})
    before = pd.DataFrame({"model": ["a (no finetune)", "b (no finetune)"], "GFLOPs": [0.2, 0.05], "map50": [0.5, 0.1]})
    left, right = report._pareto_figure(table, before).axes
    front = {"m7", "m5", "m4"}                          # 0.05 -> 0.80, 0.2 -> 0.89, 0.3 -> 0.92
    assert {t.get_text() for t in left.texts if t.get_text()} == front
    assert {t.get_text() for t in right.texts if t.get_text()} == {"a", "b"}


def test_demo_presets_keep_the_full_run_and_its_docs_apart(monkeypatch, tmp_path, capsys):
    """``make demo`` (preset small) writes its report under its own run directory; only the full
    preset, asked for docs/ by ``make results``, touches the published results."""
    from yolocompress.cli.main import main
    from yolocompress.teach import prefetch, report
    seen = []
    monkeypatch.setattr(report, "run_all", lambda pc, docs, readme, **kw: seen.append((pc, docs, readme)))
    monkeypatch.setattr(prefetch, "prefetch", lambda pc, jobs: None)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "README.md").write_text(f"{report.README_START}\n{report.README_END}\n")   # --readme needs its block
    assert main(["demo"]) == 0 and main(["demo", "--quick", "--jobs", "1"]) == 0
    assert main(["demo", "--preset", "full", "--out", "runs/demo", "--docs", "docs", "--readme", "README.md"]) == 0
    (small, small_docs, r1), (quick, quick_docs, _), (full, full_docs, r3) = seen
    assert (small.runs, str(small_docs), r1) == ("runs/demo-small", "runs/demo-small/report", None)
    assert (quick.runs, str(quick_docs)) == ("runs/demo-quick", "runs/demo-quick/report")
    assert (full.runs, str(full_docs), str(r3)) == ("runs/demo", "docs", "README.md")
    assert full == pl.PipelineConfig(data=full.data, runs="runs/demo")          # full is the published recipe
    assert small.max_batches and small.baseline_epochs < full.baseline_epochs and len(small.kd_seeds) == 1
    assert [s.id for s in stages.demo_stages(small)] and {s.id.split("/")[0] for s in stages.demo_stages(small)} \
        == {s.id.split("/")[0] for s in stages.demo_stages(full)}                # every kind of stage, at small scale


def test_the_report_names_the_command_and_says_one_seed_has_no_std():
    assert report._command(pl.PipelineConfig.small()) == \
        "Made by `python -m yolocompress demo --preset small --out runs/demo-small` (`make demo`)"
    assert report._command(pl.PipelineConfig()).endswith("(`make results`)")
    assert report._command(pl.PipelineConfig(lr=1.0)).startswith("Made by `run_all`")
    assert report._mean_std(pd.Series({"mean": 0.5, "std": float("nan"), "count": 1})) == "0.500 (1 seed)"
    assert report._mean_std(pd.Series({"mean": 0.5, "std": 0.01, "count": 3})) == "0.500 +- 0.010 (3 seeds)"


def test_demo_workers_end_when_their_parent_is_killed(tmp_path):
    """SIGKILL of ``demo --jobs 2`` cannot shut its pool down; its workers must not go on training
    and writing the stage cache (issue 43). A parent opens the pool, starts a long job, reports the
    worker's pid and is killed; the worker must be gone within a few of its 1-second polls (10 s:
    a spawned worker's start, torch import included, takes ~3 s here; the poll adds at most 1)."""
    import os
    import signal
    import subprocess
    import sys
    import time
    script = ("import sys, time\n"
              "from yolocompress.teach.prefetch import worker_pool\n"
              "pool = worker_pool(1)\n"
              "pool.submit(time.sleep, 120)\n"
              "time.sleep(0.5)\n"
              "print(*pool._processes, flush=True)\n"
              "time.sleep(120)\n")
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        worker = int(parent.stdout.readline().split()[0])
        os.kill(worker, 0)                                  # it runs
        parent.send_signal(signal.SIGKILL)
        parent.wait(10)
        deadline = time.time() + 10
        while time.time() < deadline:
            if not _alive(worker):
                return
            time.sleep(0.2)
        os.kill(worker, signal.SIGKILL)
        raise AssertionError(f"worker {worker} outlived its killed parent by 10 s")
    finally:
        parent.kill()


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs: a zombie (dead, not yet reaped by an init that never reaps) is not."""
    import os
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        stat = open(f"/proc/{pid}/stat").read()
    except OSError:
        return True                                          # no /proc: trust the signal
    return stat.rsplit(")", 1)[1].split()[0] != "Z"
