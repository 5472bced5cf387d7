"""Where yolocompress decides differently from the original repository
(tanluren/yolov3-channel-and-layer-pruning), one test per decision of ours; docs/from-original.md
states each difference and points here."""
import numpy as np
import pytest

from prune_helpers import assert_compact_equals_what_if, sparse_model
from yolocompress.compress.graph import build_graph
from yolocompress.compress.plan import PruneConfig, make_plan, plan_channels
from yolocompress.darknet import zoo


def test_union_floor_rounds_up():
    """The original keeps int(C * layer_keep) channels at least (rounded down, so 0.15 of 10 is 1);
    we keep ceil(C * min_keep) (2): a floor is a promise of at least that share."""
    graph = build_graph(zoo.blocks("yolov3-tiny", 1))
    gammas = {c: np.zeros(graph.layers[c].filters, np.float32) for c in graph.bn_convs}   # all tie at 0
    plan = plan_channels(gammas, graph, PruneConfig(strategy="union", ratio=0.99, min_keep=0.15))
    floors = {c: int(np.ceil(0.15 * graph.layers[c].filters)) for c in graph.prunable()}
    assert all(len(plan.keep[c]) >= f for c, f in floors.items())
    at_floor = [c for c, f in floors.items() if len(plan.keep[c]) == f]
    assert at_floor and all(int(0.15 * graph.layers[c].filters) < floors[c] for c in at_floor)   # rounding mattered


def test_shared_mask_never_empties_a_group_and_members_stay_identical():
    """The original's shared strategy ('never empty a layer') runs per member after the members
    copied the first conv's empty mask, so each keeps a different single channel and its compact
    model is not its masked model. Ours floors the first conv before the group copies its mask:
    one mask per group, never empty, and compact == masked what-if."""
    model = sparse_model("teach")
    graph = build_graph(model.blocks)
    plan = make_plan(model, PruneConfig(strategy="shared", ratio=0.99), graph)
    for group in graph.groups:
        masks = {tuple(plan.keep[c]) for c in group}
        assert len(masks) == 1 and len(next(iter(masks))) >= 1, group
    assert_compact_equals_what_if(model, plan)


@pytest.mark.parametrize("strategy", ["conservative", "shared", "union"])
def test_ties_at_the_threshold_are_broken_not_kept_or_all_removed(strategy):
    """The original's union keeps |gamma| > t (every tied channel goes), its other scripts keep
    |gamma| >= t (every tied channel stays). Ours removes exactly int(ratio * pool) channels,
    ties broken by layer then channel index: with every gamma 0, ratio 0.5 removes half the pool."""
    graph = build_graph(zoo.blocks("teach", 1))
    gammas = {c: np.zeros(graph.layers[c].filters, np.float32) for c in graph.bn_convs}
    plan = plan_channels(gammas, graph, PruneConfig(strategy=strategy, ratio=0.5))
    assert plan.pool_pruned == int(0.5 * plan.pool_size) > 0
