"""Layer pruning: whole residual blocks dropped, every reference remapped, combined with channels."""
import copy

import pytest
import torch

from yolocompress.darknet.cfg import Route, Shortcut, infer_shapes, parse_cfg, resolve, to_text
from yolocompress.compress.graph import build_graph
from yolocompress.compress.plan import PlanError, PruneConfig, bn_gammas, plan_layers, rank_blocks
from yolocompress.compress.surgery import apply_masks, apply_plan

from prune_helpers import assert_compact_equals_what_if, plan_for, sparse_model


def _layer_outputs(model, x):
    """Every layer's output (eval), by layer index."""
    outs, hooks = {}, []
    for i, m in enumerate(model.module_list):
        hooks.append(m.register_forward_hook(lambda mod, inp, out, i=i: outs.__setitem__(i, out)))
    with torch.no_grad():
        model.eval().heads(x)
    for h in hooks:
        h.remove()
    return outs


def _old_target(blocks, dropped, j):
    """Where a reference to layer j lands once dropped shortcuts are bypassed."""
    while j in dropped:
        j = resolve(blocks[1 + j].from_, j)
    return j


@pytest.mark.parametrize("n", [1, 8, 16, 23])
@pytest.mark.parametrize("name", ["yolov3", "yolov4"])
def test_drop_blocks(name, n):
    """Every layer of the compact model outputs the tensor of its layer in the what-if (the heads
    included), and every route/shortcut points at the right layer; compared in float64 with the
    tolerance derived in ``prune_helpers.assert_compact_equals_what_if`` (1e-6 of each layer's scale)."""
    model = sparse_model(name)
    plan = plan_for(model, strategy="none", drop_blocks=n)
    assert len(plan.dropped_blocks) == n and len(plan.dropped_layers) == 3 * n
    compact = apply_plan(model, plan).eval()
    assert len(compact.layers) == len(model.layers) - 3 * n
    assert parse_cfg(to_text(compact.blocks)) == compact.blocks          # a valid cfg
    infer_shapes(compact.blocks, 608, 608)
    dropped = set(plan.dropped_layers)
    old_of_new = [i for i in range(len(model.layers)) if i not in dropped]
    new_of_old = {o: k for k, o in enumerate(old_of_new)}
    x = torch.rand(1, 3, 64, 64, dtype=torch.float64)
    a = _layer_outputs(apply_masks(model, plan).double(), x)
    b = _layer_outputs(copy.deepcopy(compact).double(), x)
    for k, blk in enumerate(compact.layers):                          # same tensors as before
        old = old_of_new[k]
        torch.testing.assert_close(b[k], a[old], rtol=0, atol=1e-6 * float(a[old].abs().max()))
        refs = {Route: lambda bl, i: [resolve(v, i) for v in bl.layers],
                Shortcut: lambda bl, i: [resolve(bl.from_, i)]}.get(type(blk))
        if refs is not None:
            want = [new_of_old[_old_target(model.blocks, dropped, t)] for t in refs(model.blocks[1 + old], old)]
            assert refs(blk, k) == want


def test_ranking_and_errors():
    model = sparse_model("yolov3")
    gammas, graph = bn_gammas(model), build_graph(model.blocks)
    ranked = rank_blocks(gammas, graph)
    assert len(ranked) == 23 and ranked["score"].is_monotonic_increasing
    plan = plan_layers(gammas, graph, PruneConfig(strategy="none", drop_blocks=3))
    assert sorted(plan.dropped_blocks) == sorted(ranked["shortcut"].head(3))
    assert rank_blocks(gammas, graph, rank="max")["score"].is_monotonic_increasing
    with pytest.raises(PlanError, match="cannot drop 24 residual blocks: this model has 23"):
        plan_layers(gammas, graph, PruneConfig(strategy="none", drop_blocks=24))


@pytest.mark.parametrize("strategy", ["conservative", "shared", "union"])
def test_combined_on_the_teaching_model(strategy):
    model = sparse_model("teach")
    plan = plan_for(model, strategy=strategy, ratio=0.5, drop_blocks=3)
    assert len(plan.dropped_layers) == 9
    assert all(plan.keep[c] == [] for blk in plan.dropped_layers for c in [blk] if c in plan.keep)
    compact = assert_compact_equals_what_if(model, plan, 128)
    assert len(compact.layers) == len(model.layers) - 9
    channel_only = apply_plan(model, plan_for(model, strategy=strategy, ratio=0.5))
    assert sum(p.numel() for p in compact.parameters()) < sum(p.numel() for p in channel_only.parameters())
