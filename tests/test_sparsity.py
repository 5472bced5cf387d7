"""Sparse training: the hook's arithmetic, the penalised layer sets, and the schedules."""
import types

import numpy as np
import pytest
import torch

from yolocompress.darknet import zoo
from yolocompress.darknet.weights import randomize
from yolocompress.compress.sparsity import SparseConfig, SparsityHook, local_decay_mask, penalised_convs, sparsity_stats
from yolocompress.darknet.loader import load_model


def _ctx(progress):
    return types.SimpleNamespace(progress=progress, artifacts={}, epoch=0)


def test_hook_adds_exactly_s_sign_gamma_to_penalised_gammas_only():
    model = load_model("teach").train()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.uniform_(-1, 1)
    sum(h.sum() for h in model(torch.rand(2, 3, 64, 64))).backward()
    before = {n: p.grad.clone() for n, p in model.named_parameters()}
    hook = SparsityHook(model, SparseConfig(s=0.003, scope="conservative"))
    hook.after_backward(_ctx(0.1))
    penalised = {f"module_list.{i}.bn.weight" for i in hook.layers}
    assert len(penalised) == 42      # teach has yolov3's layout: the 42 convs of yolov3's conservative scope
    for n, p in model.named_parameters():
        if n in penalised:
            assert torch.equal(p.grad, before[n] + 0.003 * torch.sign(p.detach())), n
        else:
            assert torch.equal(p.grad, before[n]), n


@pytest.mark.parametrize("name, bn, scope_all, conservative", [("yolov3", 72, 70, 42), ("yolov4", 107, 104, 76)])
def test_scopes_match_the_original_method(name, bn, scope_all, conservative):
    blocks = zoo.blocks(name, 80)
    n_bn = sum(getattr(b, "batch_normalize", 0) for b in blocks[1:])
    assert n_bn == bn
    assert len(penalised_convs(blocks, "all")) == scope_all
    assert len(penalised_convs(blocks, "conservative")) == conservative
    if name == "yolov3":   # scope all leaves out exactly the two convs before the upsamples
        assert set(i for i, b in enumerate(blocks[1:]) if getattr(b, "batch_normalize", 0)) - \
            set(penalised_convs(blocks, "all")) == {84, 96}


def test_global_decay_switches_at_the_right_step():
    model = load_model("teach")
    hook = SparsityHook(model, SparseConfig(s=1e-3, schedule="global-decay", decay_at=0.5))
    steps, per_epoch = 100, 10                       # 10 epochs of 10 steps
    factors = [hook.factor(step / steps) for step in range(steps)]
    assert factors[:50] == [1.0] * 50 and factors[50:] == [0.01] * 50
    assert per_epoch * 5 == factors.index(0.01)


def test_constant_never_decays():
    hook = SparsityHook(load_model("teach"), SparseConfig(s=2e-3))
    assert torch.all(hook.penalty(0.99) == 2e-3)


def test_local_decay_relaxes_the_largest_gammas():
    g = torch.tensor([0.9, -0.01, 0.5, 0.002, -0.8, 0.3, 0.05, 0.0, 0.7, 0.1])
    mask = local_decay_mask(g, 0.7)                     # top 30% by |gamma|: 0.9, -0.8, 0.7
    assert mask.tolist() == [True, False, False, False, True, False, False, False, True, False]
    model = randomize(load_model("teach"), seed=0)
    hook = SparsityHook(model, SparseConfig(s=1e-3, schedule="local-decay", decay_at=0.5, local_keep=0.85))
    before, after = hook.penalty(0.4), hook.penalty(0.6)
    assert torch.all(before == 1e-3)
    relaxed = after < 1e-3
    assert torch.allclose(after[relaxed], torch.tensor(1e-5))
    n = hook.gammas().numel()
    assert relaxed.sum() == n - int(0.85 * n)
    assert hook.gammas().abs()[relaxed].min() >= hook.gammas().abs()[~relaxed].max()


def test_stats_and_bad_config():
    s = sparsity_stats(np.array([1e-4, 5e-3, 0.2, 1.0]))
    assert s["gamma_lt_1e-2"] == 0.5 and s["gamma_lt_1e-3"] == 0.25
    with pytest.raises(ValueError, match="schedule must be one of"):
        SparseConfig(schedule="cosine")
    with pytest.raises(ValueError, match="scope must be one of"):
        SparseConfig(scope="some")


def test_flops_weighting_scales_s_by_each_channels_relative_price():
    """weighting="flops": the penalty of a channel is s x w_c, w_c = the FLOPs one channel of its conv
    costs over the mean price of the prunable convs (the denominator of gamma-per-flop)."""
    model = randomize(load_model("teach"), seed=0)
    flat = SparsityHook(model, SparseConfig(s=0.1))
    hook = SparsityHook(model, SparseConfig(s=0.1, weighting="flops"))
    w, sizes = hook.weight, [bn.weight.numel() for bn in hook.bns]
    per_conv = torch.stack([chunk[0] for chunk in torch.split(w, sizes)])         # (convs,)
    assert all(torch.all(chunk == chunk[0]) for chunk in torch.split(w, sizes))   # one price per conv
    assert per_conv.mean().item() == pytest.approx(1.0, rel=1e-6)                # float32 mean of ~70 values
    # teach (width 8) at 128 px, by hand: layer 0 (3 -> 8, 3x3, 128x128) and the 3x3 stride-2 conv that
    # reads it (16 filters, 64x64): one channel of layer 0 costs 2*9*3*128^2 + 2*9*16*64^2 = 2,064,384 FLOPs
    from yolocompress.compress.cost import CostModel
    from yolocompress.compress.graph import build_graph
    assert CostModel(build_graph(model.blocks), 128).channel_price()[0] == 2_064_384
    assert per_conv[0] / per_conv.min() > 30              # the stem costs > 30x a channel of a 4x4 conv
    assert torch.allclose(hook.penalty(0.1), 0.1 * w) and torch.all(flat.penalty(0.1) == 0.1)
    for bn in hook.bns:
        bn.weight.grad = None
    hook.after_backward(_ctx(0.1))
    grads = torch.cat([bn.weight.grad for bn in hook.bns])
    assert torch.allclose(grads, 0.1 * w * torch.sign(hook.gammas()))


def test_flops_weighted_local_decay_relaxes_by_gamma_per_flop():
    model = randomize(load_model("teach"), seed=0)
    hook = SparsityHook(model, SparseConfig(s=1e-3, schedule="local-decay", weighting="flops", local_keep=0.85))
    relaxed = hook.penalty(0.6) < 1e-3 * hook.weight * 0.5          # decayed by 0.01, well below half
    per_flop = hook.gammas().abs() / hook.weight
    assert relaxed.sum() == hook.gammas().numel() - int(0.85 * hook.gammas().numel())
    assert per_flop[relaxed].min() >= per_flop[~relaxed].max()


def test_unknown_weighting_is_refused():
    with pytest.raises(ValueError, match="weighting must be one of uniform, flops"):
        SparseConfig(weighting="latency")


def test_zeros_by_price_counts_small_gammas_in_each_price_band():
    """Zero the gammas of the costliest penalised conv only: its band reports exactly its share of
    zeros, the other bands none; the shares add up to 1 (counts of channels, exact)."""
    from yolocompress.compress.sparsity import channel_weights, zeros_by_price
    model = randomize(load_model("teach", classes=1), seed=0)
    layers = penalised_convs(model.blocks)
    w = channel_weights(model, layers, "flops")
    sizes = [model.module_list[i].bn.weight.numel() for i in layers]
    prices = [float(chunk[0]) for chunk in torch.split(w, sizes)]
    top = layers[int(np.argmax(prices))]
    with torch.no_grad():
        for i in layers:
            model.module_list[i].bn.weight.fill_(0.0 if i == top else 0.5)
    rows = zeros_by_price(model, 1e-2)
    assert sum(r["channels"] for r in rows) == len(w) and sum(r["share"] for r in rows) == pytest.approx(1.0)
    costly = rows[-1]                                   # [1, inf): the top conv's band
    n_costly = int((w >= 1).sum())
    assert costly["channels"] == n_costly
    assert costly["|gamma| < 0.01"] == pytest.approx(model.module_list[top].bn.weight.numel() / n_costly)
    assert all(r["|gamma| < 0.01"] == 0 for r in rows[:-1])


@pytest.mark.parametrize("spp, upsample", [(True, True), (False, True), (True, False), (False, False)])
def test_sparse_training_and_prune_agree_on_the_prunable_convs(spp, upsample):
    """For every protection setting and scope, the hook penalises exactly the convs a prune with
    the same protections can cut: a strong prune changes no conv outside the hook's layers, and
    every penalised conv is one the strategy may cut (a conv never penalised is never pruned)."""
    from yolocompress.compress.graph import ProtectOptions, build_graph
    from yolocompress.compress.plan import PruneConfig, make_plan
    from yolocompress.compress.strategies import STRATEGIES
    protect = ProtectOptions(spp=spp, upsample=upsample)
    model = load_model("yolov3-spp", classes=1)          # has both an SPP block and upsamples
    torch.manual_seed(0)
    for conv in model.conv_layers().values():             # distinct gammas (fresh BN ones all tie at 1)
        if conv.bn is not None:
            conv.bn.weight.data.uniform_(0.01, 1.0)
    graph = build_graph(model.blocks, protect)
    for name in STRATEGIES:
        hook = SparsityHook(model, SparseConfig(scope=name, protect=protect))
        assert hook.layers == STRATEGIES[name].cuttable(graph), name
        plan = make_plan(model, PruneConfig(strategy=name, ratio=0.9, protect=protect), graph)
        cut = {c for c, k in plan.keep.items() if len(k) < plan.filters[c]}
        assert cut and cut <= set(hook.layers), name
    everything = SparsityHook(model, SparseConfig(protect=protect)).layers
    assert everything == graph.prunable()
    before_upsample = {i for i, b in enumerate(graph.layers[1:]) if isinstance(b, zoo.Upsample)}
    assert before_upsample and (before_upsample <= set(everything)) == (not upsample)


def test_protections_travel_in_the_sparse_config():
    from yolocompress.compress.graph import ProtectOptions
    config = SparseConfig(protect=ProtectOptions(spp=False))
    assert SparseConfig(**config.to_dict()) == config                   # JSON-able and back
    assert "protect" not in SparseConfig().to_dict()                    # default: the keys of older runs
