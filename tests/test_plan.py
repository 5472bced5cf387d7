"""Plans: the three channel strategies, round_to, the config, and plans as data."""
import dataclasses

import numpy as np
import pytest
import torch

from yolocompress.compress.graph import ProtectOptions, build_graph
from yolocompress.compress.plan import (PlanError, PruneConfig, PrunePlan, bn_gammas, check_plan, plan_channels,
                               plan_combined)

from prune_helpers import assert_compact_equals_what_if, plan_for, sparse_model


def _pure(name, **config):
    """gammas, graph, plan_channels(...) for a zoo model: the pure API, graph built once."""
    model = sparse_model(name)
    gammas, graph = bn_gammas(model), build_graph(model.blocks)
    return gammas, graph, plan_channels(gammas, graph, PruneConfig(**config))


def test_conservative_never_touches_residual_convs():
    _, graph, plan = _pure("yolov3", strategy="conservative", ratio=0.7)
    assert all(len(plan.keep[c]) == plan.filters[c] for c in graph.residual_tied)
    assert any(len(plan.keep[c]) < plan.filters[c] for c in plan.keep if c not in graph.residual_tied)


def test_shared_groups_take_the_first_mask():
    gam, graph, plan = _pure("yolov3", strategy="shared", ratio=0.5)
    for group in graph.groups:
        first = plan.keep[group[0]]
        assert all(plan.keep[c] == first for c in group)
        assert first == np.flatnonzero(gam[group[0]] >= plan.threshold).tolist() or len(first) == 1


def test_union_floor_and_union():
    gam, graph, plan = _pure("teach", strategy="union", ratio=0.95, min_keep=0.25)
    for c in graph.prunable():
        assert len(plan.keep[c]) >= int(np.ceil(0.25 * plan.filters[c]))
    for group in graph.groups:
        above = {c: set(np.flatnonzero(gam[c] >= plan.threshold)) for c in group}
        expect = sorted(set().union(*above.values()))
        # floors act per member before the union: where every member clears its own floor, the
        # group keeps exactly the union of what passed the threshold; elsewhere a floor adds more
        if all(len(above[c]) >= int(np.ceil(0.25 * plan.filters[c])) for c in group):
            assert plan.keep[group[0]] == expect
        else:
            assert set(expect) <= set(plan.keep[group[0]])


def test_threshold_removes_the_requested_share_of_the_pool():
    _, _, plan = _pure("yolov3", strategy="union", ratio=0.3)
    assert plan.pool_pruned == int(0.3 * plan.pool_size)
    assert "requested ratio 0.30" in plan.describe() and "of all BN convs" in plan.describe()


def test_plan_functions_are_pure():
    model = sparse_model("teach")
    gammas, graph = bn_gammas(model), build_graph(model.blocks)
    config = PruneConfig(strategy="union", ratio=0.6, drop_blocks=2)
    a, b = plan_combined(gammas, graph, config), plan_combined(gammas, graph, config)
    assert a == b and a == plan_for(model, strategy="union", ratio=0.6, drop_blocks=2)
    with pytest.raises(PlanError, match="the graph was built with"):
        plan_combined(gammas, graph, dataclasses.replace(config, protect=ProtectOptions(spp=False)))


@pytest.mark.parametrize("n", [8, 16])
@pytest.mark.parametrize("strategy", ["shared", "union"])
def test_round_to_keeps_multiples_with_the_next_highest_gammas(strategy, n):
    gam, graph, base = _pure("yolov3", strategy=strategy, ratio=0.8)
    _, _, plan = _pure("yolov3", strategy=strategy, ratio=0.8, round_to=n)
    check_plan(plan, graph)                                 # residual groups still share one mask
    group_of = {c: g for g in graph.groups for c in g}
    rounded = 0
    for c, kept in plan.keep.items():
        before, full = base.keep[c], plan.filters[c]
        assert set(before) <= set(kept) and len(kept) <= full
        assert len(kept) == len(before) if len(before) == full else len(kept) == min(full, -(-len(before) // n) * n)
        back = sorted(set(kept) - set(before))
        if back:
            rounded += 1
            score = np.max([gam[k] for k in group_of.get(c, [c])], axis=0)   # a group ranks by its best
            still_out = sorted(set(range(full)) - set(kept))
            assert not still_out or score[back].min() >= score[still_out].max()
    assert rounded > 10
    if n == 16 and strategy == "union":
        assert_compact_equals_what_if(sparse_model("yolov3"), plan)


def test_round_to_on_the_teaching_model_with_layer_drops():
    model = sparse_model("teach")
    plan = plan_for(model, strategy="union", ratio=0.7, round_to=8, drop_blocks=2)
    dropped = set(plan.dropped_layers)
    for c, kept in plan.keep.items():
        if c not in dropped and len(kept) < plan.filters[c]:
            assert len(kept) % 8 == 0
    assert_compact_equals_what_if(model, plan, 128)


def test_plan_json_round_trip(tmp_path):
    plan = plan_for(sparse_model("teach"), strategy="shared", ratio=0.5, round_to=4)
    plan.source = "x.weights"
    plan.save(tmp_path / "plan.json")
    again = PrunePlan.load(tmp_path / "plan.json")
    assert again == plan and again.round_to == 4 and again.gflops == plan.gflops
    assert list(plan.summary().columns) == ["layer", "before", "after", "% kept", "dropped"]
    with pytest.raises(PlanError, match="not a readable prune plan"):
        (tmp_path / "bad.json").write_text("{")
        PrunePlan.load(tmp_path / "bad.json")


def test_bad_plans_and_configs_are_refused():
    model = sparse_model("yolov3")
    graph = build_graph(model.blocks)
    plan = plan_for(model, strategy="union", ratio=0.5)
    plan.keep[84] = [0, 1]
    with pytest.raises(PlanError, match="layer 84 cannot be pruned: feeds an upsample"):
        check_plan(plan, graph)
    plan = plan_for(model, strategy="union", ratio=0.5)
    plan.keep[3] = plan.keep[3][:-1]
    with pytest.raises(PlanError, match=r"residual group \[1, 3\] must keep the same channels"):
        check_plan(plan, graph)
    for bad, message in [({"strategy": "greedy"}, "strategy must be one of"), ({"ratio": 1.0}, r"ratio must be in \[0, 1\)"),
                         ({"round_to": 0}, "round_to must be >= 1"), ({"importance": "l2"}, "importance must be one of"),
                         ({"budget": "twenty"}, "expected a percentage"), ({"budget": "-5"}, "expected a percentage"),
                         ({"budget": "0%"}, "must be positive"), ({"strategy": "none", "budget": 3.0}, "needs a channel strategy")]:
        with pytest.raises(PlanError, match=message):
            PruneConfig(**bad)


def test_config_is_frozen_and_reads_budgets():
    config = PruneConfig()
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.ratio = 0.9
    assert PruneConfig(budget="20%").parsed_budget().of(50.0) == pytest.approx(10.0)
    assert PruneConfig(budget=7.5).parsed_budget().of(50.0) == 7.5
    assert PruneConfig(budget="7.5GFLOPs").parsed_budget() == PruneConfig(budget=7.5).parsed_budget()
    with pytest.raises(PlanError, match="a budget in ms needs a cost model that measures ms"):
        PruneConfig(budget="8ms").parsed_budget().of(50.0)          # parsed; the default cost model counts GFLOPs
    spelled = PruneConfig(round_to=8, protect=ProtectOptions(spp=False), budget="20%")
    assert PruneConfig(**spelled.to_dict()) == spelled                 # JSON-able and back


def test_a_ratio_removes_what_it_says_when_the_pool_ties_at_zero():
    """yolov3-tiny with 40% exact-zero gammas (strong sparse training leaves them): ratio 0.3 must
    remove 30% of the pool, not 0 (a bare |gamma| < t keeps the whole tie at t = 0). Ties are broken
    by layer, then channel index, so the removed channels are the first zero ones in that order."""
    from yolocompress.compress.plan import make_plan
    from yolocompress.compress.strategies import STRATEGIES
    from yolocompress.darknet.loader import load_model
    model = load_model("yolov3-tiny", classes=1)
    rng = np.random.default_rng(0)
    for conv in model.conv_layers().values():
        if conv.bn is not None:
            g = rng.uniform(0.05, 1.0, conv.bn.weight.numel())
            g[rng.random(g.size) < 0.4] = 0.0
            conv.bn.weight.data = torch.tensor(g, dtype=torch.float32)
    graph = build_graph(model.blocks)
    for name in STRATEGIES:
        plan = make_plan(model, PruneConfig(strategy=name, ratio=0.3), graph)
        pool = STRATEGIES[name].pool(graph)
        removed = sum(plan.filters[c] - len(plan.keep[c]) for c in pool)
        assert plan.pool_pruned == int(0.3 * plan.pool_size) and removed >= 0.29 * plan.pool_size, name
        assert plan.threshold == 0.0, name


def test_a_ratio_the_floors_stop_says_its_shortfall():
    """Union at ratio 0.9 with a 50% per-layer floor cannot remove 90% of the pool: the plan counts
    what its final masks remove and says how far short of the ratio they fall; a ratio the floors
    do not touch says nothing of the kind."""
    from yolocompress.compress.plan import make_plan
    from yolocompress.compress.strategies import STRATEGIES
    from yolocompress.darknet.loader import load_model
    model = load_model("yolov3-tiny", classes=1)
    rng = np.random.default_rng(1)
    for conv in model.conv_layers().values():      # spread scores: fresh BNs tie every gamma at 1
        if conv.bn is not None:
            conv.bn.weight.data = torch.tensor(rng.uniform(0.05, 1.0, conv.bn.weight.numel()), dtype=torch.float32)
    graph = build_graph(model.blocks)
    pool = STRATEGIES["union"].pool(graph)
    plan = make_plan(model, PruneConfig(strategy="union", ratio=0.9, min_keep=0.5), graph)
    removed = sum(plan.filters[c] - len(plan.keep[c]) for c in pool)
    assert plan.pool_removed == removed < plan.pool_pruned
    assert f"so {removed:,} of the pool" in plan.describe() and "short of the ratio" in plan.describe()
    assert "pool_removed" not in plan.to_dict()                      # plan.json is unchanged by it
    easy = make_plan(model, PruneConfig(strategy="union", ratio=0.1, min_keep=0.01), graph)
    assert easy.pool_removed >= easy.pool_pruned and "short of the ratio" not in easy.describe()
