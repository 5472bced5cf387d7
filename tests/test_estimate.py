"""``demo --dry-run``'s estimate, the cliff ladder's specs and the seed groups of results.json."""
import json

import pandas as pd
import pytest

from yolocompress.teach import estimate as es, pack, pipeline as pl, stages


def test_wall_clock_packs_each_wave_on_the_jobs_longest_first():
    df = pd.DataFrame({"wave": [0, 1, 1, 1, 2], "minutes": [3.0, 10.0, 5.0, 5.0, 4.0]})
    assert es.wall_minutes(df, 2) == 3 + 10 + 4           # wave 1: 10 on one process, 5 + 5 on the other
    assert es.wall_minutes(df, 1) == df["minutes"].sum()


def test_epoch_cost_is_the_line_through_the_packs_epoch_times(tmp_path):
    """Three plain runs on t = 10 + 50 f and a KD run 12 s above its line: the fit returns them
    (exactly: a least-squares line through collinear points; 1e-9 covers the float sums)."""
    rows = [{"name": n, "kind": k, "gflops": g, "distill": d} for n, k, g, d in
            [("b", pl.BASELINE, 0.4, None), ("p", pl.PRUNED, 0.2, None), ("q", pl.PRUNED, 0.04, None),
             ("h", pl.PRUNED, 0.04, "hinton")]]
    (tmp_path / "results.json").write_text(json.dumps(rows))
    for name, t in (("b", 60.0), ("p", 35.0), ("q", 15.0), ("h", 27.0)):
        pack.write_history(tmp_path, name, pd.DataFrame({"epoch": [1, 2, 3], "time_s": [t - 1, t, t + 5]}))
    cost = es.fit_epoch_cost(tmp_path)
    assert cost.fixed == pytest.approx(10.0, abs=1e-9) and cost.per_gflops == pytest.approx(50.0, abs=1e-9)
    assert cost.teacher == pytest.approx(12.0, abs=1e-9) and cost.runs == 4
    assert cost.seconds(0.5, distill=True) == pytest.approx(10 + 25 + 12)
    assert es.fit_epoch_cost(tmp_path / "nowhere") is None


def test_the_full_run_estimate_lists_every_training_stage_once():
    """Every training stage of make results appears once (by signature), with its epochs; the KD
    seed runs at the first seed cost nothing (they are a sweep run)."""
    pc = pl.PipelineConfig()
    cost = es.EpochCost(10.0, 50.0, 10.0, 3)
    df = es.estimate(pc, cost)
    assert len(df) == len(set(df["stage"])) == sum(len(w) for w in stages.waves(stages.demo_stages(pc)))
    assert df.loc[df["stage"] == "baseline", "epochs"].item() == pc.baseline_epochs
    assert df.loc[df["stage"] == "kd/hinton/seed0", "minutes"].item() == 0
    assert df.loc[df["stage"] == "finetune/cliff/shared/5%", "GFLOPs share"].item() == pytest.approx(0.05)


def test_the_ladder_leaves_out_budgets_a_strategy_cannot_reach():
    """Conservative never cuts the residual-tied convs, so the deepest rungs are out of its reach
    (known from the architecture, before any training); the other lines run every rung."""
    pc = pl.PipelineConfig()
    ids = {s.id for s in stages.demo_stages(pc)}
    assert not pl.reachable(pc, "conservative", "5%") and pl.reachable(pc, "shared", "2.5%")
    assert "finetune/cliff/conservative/5%" not in ids and "finetune/cliff/conservative/20%" in ids
    for line in ("shared", "union", "combined"):
        assert {f"finetune/cliff/{line}/{b}" for b in pc.cliff_budgets} <= ids
    for b in pc.seed_budgets:
        assert {f"finetune/cliff/combined/{b}/seed{s}" for s in pc.kd_seeds[1:]} <= ids and f"scratch/{b}" in ids


def test_seed_groups_carry_the_std_of_their_runs():
    rows = [pl.ResultRow("ft-a", pl.PRUNED, map=0.60, map50=0.9), pl.ResultRow("ft-a-seed1", pl.PRUNED, map=0.62, map50=0.9),
            pl.ResultRow("ft-a-seed2", pl.PRUNED, map=0.64, map50=0.9), pl.ResultRow("ft-b", pl.PRUNED, map=0.5, map50=0.8)]
    out = pl.seed_groups(rows)
    assert [r.seed for r in out] == [0, 1, 2, None] and out[0].map_std == pytest.approx(0.02)
    assert out[0].seeds == 3 and out[3].seeds is None and out[0].map50_std == 0
    assert "map_std" in out[0].to_json() and "map_std" not in out[3].to_json()
    assert pl.ResultRow.from_json(out[1].to_json()) == out[1]


def test_make_results_trains_one_schedule_and_the_demo_all_three():
    """The full run leaves the two other schedules out to fit its budget (compare_schedules=False);
    make demo and QUICK train all three, which notebook 03 and the demo's report compare."""
    from yolocompress.compress.sparsity import SCHEDULES
    ids = lambda pc: {s.id for s in stages.demo_stages(pc)}
    full, small = pl.PipelineConfig(), pl.PipelineConfig.small()
    assert "sparse" in ids(full) and not any(f"sparse/{s}" in ids(full) for s in SCHEDULES)
    assert {f"sparse/{s}" for s in SCHEDULES if s != small.sparse_schedule} <= ids(small)
