"""The block graph: residual groups, channel spaces and protections, from the cfg alone."""
from dataclasses import dataclass

import pytest

from yolocompress.darknet import zoo
from yolocompress.darknet.cfg import BLOCK_TYPES, Block, Net, Upsample, Yolo
from yolocompress.compress.graph import ProtectOptions, build_graph
from yolocompress.compress.layer_rules import RULES, LayerRuleError


def test_residual_groups():
    for name in ("yolov3", "yolov4"):
        graph = build_graph(zoo.blocks(name, 3))
        assert [len(g) for g in graph.groups] == [2, 3, 9, 9, 5]      # one group per Darknet-53 stage
    graph = build_graph(zoo.blocks("yolov3", 3))
    assert graph.groups[0] == [1, 3] and graph.groups[1] == [5, 7, 10]
    assert len(graph.residual_blocks) == 23


def test_protections_follow_the_original_method():
    g = build_graph(zoo.blocks("yolov3-spp", 3))
    assert {77, 91, 103} <= set(g.protected)            # SPP feeder, convs before upsample
    assert g.protect == ProtectOptions()
    g2 = build_graph(zoo.blocks("yolov3-spp", 3), ProtectOptions(spp=False, upsample=False))
    assert {77, 91, 103}.isdisjoint(g2.protected)
    tiny = build_graph(zoo.blocks("yolov4-tiny", 3))
    assert {2, 10, 18} <= set(tiny.protected)           # feed grouped routes: never prunable


def test_head_convs_are_protected_and_spaces_are_named_by_their_first_conv():
    g = build_graph(zoo.blocks("yolov3", 3))
    heads = [i for i, b in enumerate(g.layers) if isinstance(b, Yolo)]
    assert all("no batch norm" in g.protected[h - 1] for h in heads)
    assert all(g.space[c] == group[0] for group in g.groups for c in group)


@dataclass
class Foo(Block):
    """A layer kind the pruning rules do not know."""
    kind = "foo"


def test_every_layer_kind_has_pruning_rules():
    assert set(RULES) == set(BLOCK_TYPES.values()) - {Net}


def test_a_layer_kind_without_rules_is_refused_not_passed_through():
    blocks = zoo.blocks("yolov3-tiny", 3)
    up = next(i for i, b in enumerate(blocks[1:]) if isinstance(b, Upsample))
    blocks[up + 1] = Foo()
    with pytest.raises(LayerRuleError, match=rf"layer {up} \[foo\]: no channel-map rule; "
                                             r"register one in yolocompress/compress/layer_rules.py"):
        build_graph(blocks)
