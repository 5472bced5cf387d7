"""Surgery: the compact model computes the masked what-if on every zoo architecture and strategy;
the fold of removed channels' constants is exact inside the image."""
import copy
from dataclasses import dataclass

import pytest
import torch

from yolocompress.darknet import zoo
from yolocompress.darknet.cfg import Block, Route, Upsample, parse_cfg
from yolocompress.compress.graph import build_graph
from yolocompress.darknet.model import Darknet
from yolocompress.compress.plan import PlanError, PruneConfig, make_plan
from yolocompress.compress.layer_rules import LayerRuleError
from yolocompress.compress.surgery import apply_masks, apply_plan
from yolocompress.darknet.weights import randomize

from prune_helpers import assert_compact_equals_what_if, plan_for, sparse_model

STRATEGIES = ["conservative", "shared", "union"]
ARCHITECTURES = ["yolov3", "yolov3-spp", "yolov3-tiny", "yolov4", "yolov4-tiny", "teach"]


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("name", ARCHITECTURES)
def test_compact_equals_what_if(name, strategy):
    model = sparse_model(name)
    plan = plan_for(model, strategy=strategy, ratio=0.6)
    compact = assert_compact_equals_what_if(model, plan, 128 if name == "teach" else 64)
    assert sum(m.conv.weight.numel() for m in compact.conv_layers().values()) < \
        sum(m.conv.weight.numel() for m in model.conv_layers().values())


def test_every_zoo_architecture_is_covered():
    """Adding an architecture to the zoo without adding it to the equivalence test fails here."""
    marks = [m for m in test_compact_equals_what_if.pytestmark if m.name == "parametrize"]
    params = {m.args[0]: list(m.args[1]) for m in marks}
    assert set(params["name"]) == set(zoo.ARCHITECTURES)
    assert set(params["strategy"]) == set(STRATEGIES)


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("ratio", [0.1, 0.4, 0.7, 0.95])
def test_compact_equals_what_if_teach(strategy, ratio):
    model = sparse_model("teach")
    assert_compact_equals_what_if(model, plan_for(model, strategy=strategy, ratio=ratio), 128)


def test_yolov4_tiny_grouped_routes_stay_valid():
    model = sparse_model("yolov4-tiny")
    plan = plan_for(model, strategy="union", ratio=0.8)
    compact = assert_compact_equals_what_if(model, plan)
    for i, b in enumerate(compact.layers):
        if isinstance(b, Route) and b.groups > 1:
            src = compact.layers[i + b.layers[0]]
            assert src.filters == model.layers[i + b.layers[0]].filters   # untouched, slices intact
    assert plan.pruned_fraction > 0.3


def test_surgery_uses_the_callers_graph():
    model = sparse_model("teach")
    config = PruneConfig(strategy="union", ratio=0.5)
    graph = build_graph(model.blocks, config.protect)
    plan = make_plan(model, config, graph)
    assert apply_plan(model, plan, graph).blocks == apply_plan(model, plan).blocks
    other = build_graph(model.blocks, type(config.protect)(spp=False, upsample=False))
    with pytest.raises(PlanError, match="the plan was made with protections"):
        apply_plan(model, plan, other)


@dataclass
class Foo(Block):
    """A layer kind the pruning rules do not know."""
    kind = "foo"


def test_surgery_refuses_a_layer_kind_without_rules():
    """An unknown layer is an error wherever surgery meets it, never folded as a pass-through."""
    model = sparse_model("teach")
    config = PruneConfig(strategy="union", ratio=0.5)
    graph = build_graph(model.blocks, config.protect)
    plan = make_plan(model, config, graph)
    up = next(i for i, b in enumerate(model.layers) if isinstance(b, Upsample))
    strange = copy.copy(model)                   # shares the cached model's modules; only blocks differ
    strange.blocks = [*model.blocks[:up + 1], Foo(), *model.blocks[up + 2:]]
    with pytest.raises(LayerRuleError, match=rf"layer {up} \[foo\]: no channel-map rule"):
        apply_masks(strange, plan)
    graph.blocks = strange.blocks                # a graph built before the layer changed kind
    with pytest.raises(LayerRuleError, match=rf"layer {up} \[foo\]: no fold rule; register one in "
                                             r"yolocompress/compress/layer_rules.py"):
        apply_plan(model, plan, graph)


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
def test_fold_is_exact_inside_and_known_at_borders(k):
    """Removing channel 0 of layer 0 (gamma exactly 0, so it outputs the constant c = leaky(beta_0)):
    the consumer's output is unchanged where its kernel sees no padding. On the top row a 3x3
    kernel's first row reads padding, where the original saw 0 and the fold assumes c, so the
    compact model is off there by exactly c * sum_x W[o, 0, 0, x] * gamma_o / sqrt(var_o + eps).
    Tolerance: forwards run in float64 (sums of <= 36 O(1) terms: ~1e-14), but the folded running
    mean is stored in float32, rounded once: <= 2^-24 |mean_o| (relative half-ulp), times the BN
    scale gamma_o / sqrt(var_o + eps); plus 1e-12 for the float64 sums."""
    model = randomize(Darknet(parse_cfg(FOLD_CFG.format(k=k))), seed=0).eval()
    with torch.no_grad():
        model.module_list[0].bn.weight[0] = 0.0
    plan = plan_for(model, strategy="union", ratio=0.0)
    plan.keep[0] = [1, 2, 3]
    compact = apply_plan(model, plan).eval().double()
    model = model.double()
    x = torch.rand(1, 3, 32, 32, dtype=torch.float64)
    with torch.no_grad():
        diff = (model.module_list[1](model.module_list[0](x)) - compact.module_list[1](compact.module_list[0](x)))[0]
    bn = compact.module_list[1].bn
    scale = (bn.weight / torch.sqrt(bn.running_var + bn.eps)).detach()             # (3,)
    atol = (2.0 ** -24 * bn.running_mean.abs() * scale.abs() + 1e-12)[:, None, None]
    assert bool((diff[:, 1:-1, 1:-1].abs() <= atol).all())
    if k == 1:
        assert bool((diff.abs() <= atol).all())
        return
    c = torch.nn.functional.leaky_relu(model.module_list[0].bn.bias[0], 0.1)
    expected = (c * model.module_list[1].conv.weight[:, 0, 0, :].sum(1) * scale).detach()   # (3,): top row
    assert bool(((-diff[:, 0, 1:-1] - expected[:, None]).abs() <= atol[:, 0]).all())
    assert float(expected.abs().max()) > 1e-3
