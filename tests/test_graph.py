"""The block graph: residual groups, channel spaces and protections, from the cfg alone."""
from yolocompress.darknet import zoo
from yolocompress.compress.graph import ProtectOptions, build_graph


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
    heads = [i for i, b in enumerate(g.layers) if b.kind == "yolo"]
    assert all("no batch norm" in g.protected[h - 1] for h in heads)
    assert all(g.space[c] == group[0] for group in g.groups for c in group)
