"""Channel pruning: strategies, plans as data, and compact == masked what-if on every architecture."""
import numpy as np
import pytest
import torch

from yolocompress import zoo
from yolocompress.cfg import Route, parse_cfg, read_cfg
from yolocompress.export import export_darknet, reload_matches
from yolocompress.graph import ProtectOptions, build_graph
from yolocompress.model import Darknet
from yolocompress.plan import PlanError, PrunePlan, bn_gammas, check_plan, plan_channels
from yolocompress.surgery import apply_masks, apply_plan
from yolocompress.weights import randomize

from conftest import UPSTREAM_NAMES, upstream_cfg

STRATEGIES = ["conservative", "shared", "union"]
_CACHE = {}


def sparse_model(name: str) -> Darknet:
    """Random weights in which half the gammas are tiny, as after sparse training (cached)."""
    if name not in _CACHE:
        blocks = zoo.blocks("teach") if name == "teach" else read_cfg(upstream_cfg(name))
        _CACHE[name] = randomize(Darknet(blocks), seed=1, small_gamma=0.5).eval()
    return _CACHE[name]


def assert_compact_equals_what_if(model, plan, size=64):
    x = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(0))
    compact = apply_plan(model, plan).eval()
    with torch.no_grad():
        a, b = apply_masks(model, plan).eval()(x), compact(x)
    assert a.shape == b.shape
    torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-4 * float(a.abs().max()))
    return compact


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("name", UPSTREAM_NAMES)
def test_compact_equals_what_if_upstream(name, strategy):
    model = sparse_model(name)
    plan = plan_channels(model, strategy, 0.6)
    compact = assert_compact_equals_what_if(model, plan)
    assert sum(m.conv.weight.numel() for m in compact.conv_layers().values()) < \
        sum(m.conv.weight.numel() for m in model.conv_layers().values())


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("ratio", [0.1, 0.4, 0.7, 0.95])
def test_compact_equals_what_if_teach(strategy, ratio):
    assert_compact_equals_what_if(sparse_model("teach"), plan_channels(sparse_model("teach"), strategy, ratio), 128)


def test_residual_groups():
    for name in ("yolov3", "yolov4"):
        graph = build_graph(read_cfg(upstream_cfg(name)))
        assert [len(g) for g in graph.groups] == [2, 3, 9, 9, 5]
    graph = build_graph(read_cfg(upstream_cfg("yolov3")))
    assert graph.groups[0] == [1, 3] and graph.groups[1] == [5, 7, 10]


def test_protections_follow_the_original_method():
    g = build_graph(read_cfg(upstream_cfg("yolov3-spp")))
    assert {77, 91, 103} <= set(g.protected)            # SPP feeder, convs before upsample
    g2 = build_graph(read_cfg(upstream_cfg("yolov3-spp")), ProtectOptions(spp=False, upsample=False))
    assert {77, 91, 103}.isdisjoint(g2.protected)
    tiny = build_graph(read_cfg(upstream_cfg("yolov4-tiny")))
    assert {2, 10, 18} <= set(tiny.protected)           # feed grouped routes: never prunable


def test_yolov4_tiny_grouped_routes_stay_valid():
    model = sparse_model("yolov4-tiny")
    plan = plan_channels(model, "union", 0.8)
    compact = assert_compact_equals_what_if(model, plan)
    for i, b in enumerate(compact.layers):
        if isinstance(b, Route) and b.groups > 1:
            src = compact.layers[i + b.layers[0]]
            assert src.filters == model.layers[i + b.layers[0]].filters   # untouched, slices intact
    assert plan.pruned_fraction > 0.3


def test_conservative_never_touches_residual_convs():
    model = sparse_model("yolov3")
    plan = plan_channels(model, "conservative", 0.7)
    tied = build_graph(model.blocks).residual_tied
    assert all(len(plan.keep[c]) == plan.filters[c] for c in tied)
    assert any(len(plan.keep[c]) < plan.filters[c] for c in plan.keep if c not in tied)


def test_shared_groups_take_the_first_mask():
    model = sparse_model("yolov3")
    plan = plan_channels(model, "shared", 0.5)
    gam = bn_gammas(model)
    for group in build_graph(model.blocks).groups:
        first = plan.keep[group[0]]
        assert all(plan.keep[c] == first for c in group)
        assert first == np.flatnonzero(gam[group[0]] >= plan.threshold).tolist() or len(first) == 1


def test_union_floor_and_union():
    model = sparse_model("teach")
    plan = plan_channels(model, "union", 0.95, min_keep=0.25)
    graph = build_graph(model.blocks)
    for c in graph.prunable():
        assert len(plan.keep[c]) >= int(np.ceil(0.25 * plan.filters[c]))
    gam = bn_gammas(model)
    for group in graph.groups:
        expect = sorted(set().union(*[set(np.flatnonzero(gam[c] >= plan.threshold)) for c in group]))
        if len(expect) >= max(int(np.ceil(0.25 * plan.filters[c])) for c in group):
            assert plan.keep[group[0]] == expect


def test_threshold_removes_the_requested_share_of_the_pool():
    plan = plan_channels(sparse_model("yolov3"), "union", 0.3)
    assert plan.pool_pruned == int(0.3 * plan.pool_size)
    assert "requested ratio 0.30" in plan.describe() and "of all BN convs" in plan.describe()


def test_plan_json_round_trip(tmp_path):
    plan = plan_channels(sparse_model("teach"), "shared", 0.5, source="x.weights")
    plan.save(tmp_path / "plan.json")
    again = PrunePlan.load(tmp_path / "plan.json")
    assert again == plan
    assert list(plan.summary().columns) == ["layer", "before", "after", "% kept", "dropped"]
    with pytest.raises(PlanError, match="not a readable prune plan"):
        (tmp_path / "bad.json").write_text("{")
        PrunePlan.load(tmp_path / "bad.json")


def test_bad_plans_are_refused():
    model = sparse_model("yolov3")
    graph = build_graph(model.blocks)
    plan = plan_channels(model, "union", 0.5)
    plan.keep[84] = [0, 1]
    with pytest.raises(PlanError, match="layer 84 cannot be pruned: feeds an upsample"):
        check_plan(plan, graph)
    plan = plan_channels(model, "union", 0.5)
    plan.keep[3] = plan.keep[3][:-1]
    with pytest.raises(PlanError, match=r"residual group \[1, 3\] must keep the same channels"):
        check_plan(plan, graph)
    with pytest.raises(PlanError, match="strategy must be one of"):
        plan_channels(model, "greedy", 0.5)
    with pytest.raises(PlanError, match=r"ratio must be in \[0, 1\)"):
        plan_channels(model, "union", 1.0)


@pytest.mark.parametrize("name", ["teach", "yolov4-tiny", "yolov3"])
def test_export_reloads_to_the_same_outputs(tmp_path, name):
    model = sparse_model(name)
    compact = apply_plan(model, plan_channels(model, "union", 0.5)).eval()
    paths = export_darknet(compact, tmp_path, "pruned")
    assert reload_matches(compact, paths["cfg"], paths["weights"], img_size=64) < 1e-4
    assert read_cfg(paths["cfg"]) == compact.blocks


FOLD_CFG = """[net]
width=32
height=32
channels=3
[convolutional]
batch_normalize=1
filters=4
size=3
stride=1
pad=1
activation=leaky
[convolutional]
batch_normalize=1
filters=3
size={k}
stride=1
pad=1
activation=linear
"""


@pytest.mark.parametrize("k", [1, 3])
def test_fold_is_exact_inside_and_approximate_at_borders(k):
    """Removing channel 0 of layer 0 (gamma exactly 0): the consumer's output is unchanged where
    its kernel sees no padding; with a 3x3 kernel the one-pixel border ring differs."""
    model = randomize(Darknet(parse_cfg(FOLD_CFG.format(k=k))), seed=0).eval()
    with torch.no_grad():
        model.module_list[0].bn.weight[0] = 0.0     # channel 0 is now the constant act(beta)
    plan = plan_channels(model, "union", 0.0)
    plan.keep[0] = [1, 2, 3]
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        ref = model.module_list[1](model.module_list[0](x))
        compact = apply_plan(model, plan).eval()
        got = compact.module_list[1](compact.module_list[0](x))
    diff = (ref - got).abs()[0]
    assert float(diff[:, 1:-1, 1:-1].max()) < 1e-5
    if k == 1:
        assert float(diff.max()) < 1e-5
    else:
        assert float(diff[:, 0, :].max()) > 1e-3   # the gap at zero-padded borders
