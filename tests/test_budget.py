"""Cost counted from shapes, pruning to a GFLOPs budget, and the cost-aware importance."""
import pytest

from yolocompress.darknet import zoo
from yolocompress.cli.main import main
from yolocompress.compress.cost import CostModel
from yolocompress.compress.graph import build_graph
from yolocompress.compress.plan import PlanError, PrunePlan, PruneConfig, importance_scores, plan_combined
from yolocompress.deploy.footprint import summarize_blocks
from yolocompress.compress.surgery import compact_blocks
from yolocompress.teach.sweep import importance_sweep, kept_gamma_share, round_to_table
from yolocompress.teach.viz import plot_importance
from yolocompress.darknet.weights import save_pt

from prune_helpers import plan_for, realistic_gammas, sparse_model

BUDGET_TOL = 0.02       # the acceptance criterion of issue 15: within 2% of the requested GFLOPs


@pytest.mark.parametrize("name, size, config", [
    ("teach", 128, dict(strategy="union", ratio=0.7, drop_blocks=3)),
    ("yolov3-tiny", 416, dict(strategy="conservative", ratio=0.5)),
    ("yolov4-tiny", 320, dict(strategy="union", ratio=0.8, round_to=8)),
    ("yolov3", 416, dict(strategy="union", ratio=0.8, drop_blocks=16)),
])
def test_counted_gflops_equal_torchs_flop_counter(name, size, config):
    """Both count integers (2 x MACs per conv); the sums are exact, so the floats are equal."""
    model = sparse_model(name)
    plan = plan_for(model, img_size=size, **config)
    assert plan.gflops == summarize_blocks(compact_blocks(model, plan), size).gflops
    assert CostModel(build_graph(model.blocks), size).gflops() == summarize_blocks(model.blocks, size).gflops


@pytest.mark.parametrize("name, cases", [
    ("yolov3", [dict(strategy="union", drop_blocks=16, budget="10%"),
                dict(strategy="union", budget=13.0, importance="gamma-per-flop"),
                dict(strategy="shared", budget="30%", round_to=8),
                dict(strategy="conservative", drop_blocks=8, budget="25%")]),
    ("teach", [dict(strategy="union", drop_blocks=4, budget="20%"),
               dict(strategy="union", budget=0.05, importance="gamma-per-flop", round_to=8),
               dict(strategy="shared", budget="40%")]),
])
def test_budget_lands_within_two_percent(name, cases):
    """yolov3 at its 416 px and the teaching model at its 128 px, with gammas distributed as after
    sparse training: the plan never exceeds the budget and falls short by less than 2%."""
    graph = build_graph(zoo.blocks(name, 80 if name == "yolov3" else 8))
    gammas = realistic_gammas(graph)
    full = CostModel(graph).gflops()
    for case in cases:
        plan = plan_combined(gammas, graph, PruneConfig(**case))
        target = PruneConfig(**case).parsed_budget().of(full)
        assert plan.target_gflops == pytest.approx(target)
        assert (1 - BUDGET_TOL) * target <= plan.gflops <= target, case
        assert f"GFLOPs budget {target:.4g}" in plan.describe()


def test_an_unreachable_budget_is_refused():
    graph = build_graph(zoo.blocks("teach"))
    with pytest.raises(PlanError, match="cannot reach .* the smallest plan has"):
        plan_combined(realistic_gammas(graph), graph, PruneConfig(strategy="conservative", budget="5%"))


@pytest.mark.parametrize("name, budget", [("yolov3", "20%"), ("yolov3", "10%"), ("teach", "10%")])
def test_gamma_per_flop_keeps_more_gamma_at_equal_gflops(name, budget):
    """The knapsack argument: at the same budget, ranking by |gamma| per FLOP keeps a larger sum of
    |gamma| than ranking by |gamma| (union, no layer drops: the plain greedy setting)."""
    graph = build_graph(zoo.blocks(name))
    gammas = realistic_gammas(graph)
    plans = {imp: plan_combined(gammas, graph, PruneConfig(budget=budget, importance=imp))
             for imp in ("gamma", "gamma-per-flop")}
    assert abs(plans["gamma"].gflops - plans["gamma-per-flop"].gflops) <= BUDGET_TOL * plans["gamma"].target_gflops
    assert kept_gamma_share(plans["gamma-per-flop"], gammas) > kept_gamma_share(plans["gamma"], gammas) + 0.02


def test_gamma_per_flop_scores_divide_by_the_channel_price():
    graph = build_graph(zoo.blocks("teach"))
    gammas = realistic_gammas(graph)
    scores = importance_scores(gammas, graph, "gamma-per-flop")
    price = CostModel(graph).channel_price()
    ratio = {c: float(gammas[c][0] / scores[c][0]) for c in graph.prunable()}
    c0, c1 = graph.prunable()[:2]
    # scores are float32 (gamma * a float64 factor, rounded once): each ratio carries <= 2 float32
    # roundings (2 * 6e-8 relative), the quotient of two ratios <= 4; rel=1e-6 covers that 4x over
    assert ratio[c0] / ratio[c1] == pytest.approx(price[graph.space[c0]] / price[graph.space[c1]], rel=1e-6)
    # the first conv (128 x 128, 3x3) costs more per channel than a 4 x 4 1x1 conv deep inside
    deep = max(graph.prunable())
    assert price[graph.space[0]] > 10 * price[graph.space[deep]]


def test_sweeps_return_tables():
    model = sparse_model("teach")
    df = importance_sweep(model, PruneConfig(), ["50%", "20%"], progress=False)
    assert len(df) == 4 and set(df["importance"]) == {"gamma", "gamma-per-flop"}
    assert ((df["GFLOPs"] <= df["target GFLOPs"]) & (df["GFLOPs"] >= 0.98 * df["target GFLOPs"])).all()
    fig = plot_importance(df)
    assert len(fig.axes[0].get_lines()) >= 2 and fig.axes[0].get_ylabel() == "kept share of sum |gamma|"
    table = round_to_table(model, PruneConfig(strategy="union", ratio=0.7), (1, 8, 16))
    assert list(table["round_to"]) == [1, 8, 16]
    assert table["GFLOPs"].is_monotonic_increasing and table["GFLOPs vs round_to=1"].iloc[0] == 1.0


def test_cli_prune_to_a_budget(tmp_path, capsys):
    model = sparse_model("teach")
    save_pt(model, tmp_path / "sparse.pt")
    # round_to 2, not 8: teach's layers are 6-192 channels wide, where steps of 8 are too coarse to land
    # within 2% of a budget (measured: 0.288 of the GFLOPs for a 30% budget)
    code = main(["prune", "--weights", str(tmp_path / "sparse.pt"), "--strategy", "union", "--budget",
                 "30%", "--round-to", "2", "--drop-blocks", "2", "--out", str(tmp_path / "out")])
    assert code == 0
    plan = PrunePlan.load(tmp_path / "out" / "plan.json")
    full = summarize_blocks(model.blocks, 128).gflops
    assert 0.98 * 0.3 * full <= plan.gflops <= 0.3 * full
    assert plan.round_to == 2 and len(plan.dropped_blocks) == 2
    assert "GFLOPs budget" in capsys.readouterr().out
    assert main(["prune", "--weights", str(tmp_path / "sparse.pt"), "--strategy", "union", "--budget",
                 "lots", "--out", str(tmp_path / "bad")]) == 2
    assert "expected a percentage (20%), GFLOPs (5.2)" in capsys.readouterr().err
