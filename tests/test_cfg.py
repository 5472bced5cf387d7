"""cfg text <-> blocks: darknet's parsing rules, round trips, and clear errors for bad input."""
import pytest

from yolocompress.darknet.cfg import (BLOCK_TYPES, CfgError, Conv, MaxPool, Net, Route, Shortcut, Yolo, block_type,
                                      infer_shapes, parse_cfg, read_cfg, to_text)

from yolocompress.darknet import zoo

from conftest import ARCHS


@pytest.mark.parametrize("name", ARCHS)
def test_architecture_round_trip(name):
    blocks = parse_cfg(zoo.cfg_text(name, 80))
    again = parse_cfg(to_text(blocks))
    assert again == blocks
    assert to_text(again) == to_text(blocks)


def test_layer_counts():
    counts = {n: len(zoo.blocks(n, 80)) - 1 for n in ARCHS}
    assert counts == {"yolov3": 107, "yolov3-spp": 114, "yolov3-tiny": 24, "yolov4": 162, "yolov4-tiny": 38}


def test_darknet_whitespace_comments_and_defaults():
    text = ("[net]\n width = 64\nheight=6 4\n# c\n; c\n\n[conv]\nfilters= 4\nsize=3\n"
            "\t pad = 1\nunused_training_key_is_an_error=0\n")
    with pytest.raises(CfgError, match=r"<cfg>:11: key 'unused_training_key_is_an_error'"):
        parse_cfg(text)
    blocks = parse_cfg("[net]\n width = 64\nheight=6 4\n# c\n; c\n\n[conv]\nfilters= 4\nsize=3\n\t pad = 1\n")
    net, conv = blocks
    assert (net.width, net.height) == (64, 64)  # every whitespace character removed, as darknet
    assert isinstance(conv, Conv) and conv.activation == "logistic"  # darknet's default
    assert conv.pad_px == 1 and conv.stride == 1 and conv.batch_normalize == 0


def test_value_split_at_first_equals_and_extra_kept_verbatim():
    blocks = parse_cfg("[net]\nwidth=32\nheight=32\npolicy=a=b\n[convolutional]\nfilters=12\n"
                       "[yolo]\nanchors=1.5,2, 3,4\nclasses=1\nnum=2\nmask=0,1\njitter=.3\n")
    assert blocks[0].extra == {"policy": "a=b"}
    yolo = blocks[2]
    assert yolo.anchors == ((1.5, 2.0), (3.0, 4.0)) and yolo.extra == {"jitter": ".3"}
    assert parse_cfg(to_text(blocks)) == blocks


def test_relative_and_absolute_references(tiny_cfg_text):
    blocks = parse_cfg(tiny_cfg_text)
    shapes = infer_shapes(blocks)
    route = blocks[1 + 6]
    assert isinstance(route, Route) and route.groups == 2 and shapes[6] == (8, 16, 16)
    assert isinstance(blocks[1 + 5], Shortcut) and shapes[5] == (16, 16, 16)
    assert isinstance(blocks[1 + 8], MaxPool) and shapes[8] == (16, 14, 14)  # size 2 stride 1 keeps size
    assert shapes[9] == (16, 14, 14)                                        # SPP-style 5/1
    assert shapes[-1] == (14, 32, 32)


def test_maxpool_defaults():
    mp = parse_cfg("[net]\nwidth=32\nheight=32\n[maxpool]\nstride=2\n")[1]
    assert (mp.size, mp.stride, mp.padding) == (2, 2, 1)


BAD_CFGS = [
    ("[net]\nwidth=32\nheight=32\n[dropout]\nprobability=.5\n", r"<cfg>:4: unknown section \[dropout\]"),
    ("[net]\nwidth=32\nheight=32\n[convolutional]\nfilters=abc\n", r"<cfg>:5: filters= expects an integer, found 'abc'"),
    ("[net]\nwidth=32\nheight=32\n[route]\nlayers=1\n[convolutional]\nfilters=2\n",
     r"<cfg>:4: layer 0 \[route\]: layers=1 refers to layer 1, expected an earlier layer"),
    ("[net]\nwidth=32\nheight=32\n[convolutional]\nfilters=2\n[route]\nlayers=-5\n",
     r"<cfg>:6: layer 1 \[route\]: layers=-5 refers to layer -4"),
    ("[net]\nwidth=32\nheight=32\n[convolutional]\nfilters=2\n[convolutional]\nfilters=4\n[shortcut]\nfrom=-2\n",
     r"<cfg>:8: layer 2 \[shortcut\]: from=-2 gives shape \(2, 32, 32\).*previous layer gives \(4, 32, 32\)"),
    ("[net]\nwidth=32\nheight=32\n[convolutional]\nfilters 2\n", r"<cfg>:5: expected 'key=value', found 'filters 2'"),
    ("width=32\n[net]\n", r"<cfg>:1: 'width=32' comes before the first \[section\]"),
    ("[convolutional]\nfilters=2\n[net]\n", r"<cfg>:1: the first section must be \[net\]"),
    ("[net]\nwidth=32\nheight=32\n[convolutional]\nactivation=gelu\n", r"<cfg>:5: activation 'gelu' is not supported"),
    ("[net]\nwidth=32\nheight=32\n[convolutional]\nfilters=20\n[yolo]\nclasses=2\nanchors=1,1,2,2\nnum=2\n",
     r"<cfg>:6: layer 1 \[yolo\]: expects len\(mask\) \* \(classes \+ 5\) = 2 \* \(2 \+ 5\) = 14 input channels, the layer before gives 20"),
    ("[net]\nwidth=32\nheight=32\n[convolutional]\nfilters=7\n[yolo]\nclasses=2\nanchors=1,1,2\nnum=1\n",
     r"<cfg>:8: anchors= expects \(w, h\) pairs, found 3 numbers"),
    ("[net]\nwidth=32\nheight=32\n[convolutional]\nfilters=7\n[yolo]\nclasses=2\nanchors=1,1\nmask=3\n",
     r"<cfg>:6: mask= refers to anchors \[3\], but only 1 are listed"),
    ("[net]\nwidth=32\nheight=32\n[convolutional]\nfilters=2\nfilters=3\n", r"<cfg>:6: key 'filters' already given on line 5"),
    ("[net]\nwidth=32\nheight=32\n[convolutional]\ndilation=2\n", r"<cfg>:5: key 'dilation' is not supported in \[convolutional\]"),
    ("[net]\nwidth=32\nheight=32\n[convolutional]\nfilters=3\n[route]\nlayers=-1\ngroups=2\n",
     r"<cfg>:6: layer 1 \[route\]: layer 0 has 3 channels, not divisible by groups=2"),
    ("[net]\nwidth=32\nheight=32\n[convolutional]\nfilters=3\n[maxpool]\nstride=2\n[route]\nlayers=-1,-2\n",
     r"<cfg>:8: layer 2 \[route\]: layers=-1,-2 have different sizes"),
    ("[net]\nwidth=32\nheight=32\n[route]\nlayers=0\ngroups=2\ngroup_id=2\n", r"<cfg>:4: group_id=2 must be less than groups=2"),
    ("", r"<cfg>: no sections found"),
    ("[net\nwidth=3\n", r"<cfg>:1: section header '\[net' has no closing '\]'"),
    ("[net]\nwidth=32\nheight=32\n[convolutional]\nfilters=4\ngroups=3\n", r"<cfg>:4: filters=4 is not divisible by groups=3"),
    ("[net]\nwidth=32\nheight=32\n[convolutional]\nsize=0\n", r"<cfg>:4: size=0 must be >= 1"),
    ("[net]\nwidth=32\nheight=32\n[convolutional]\nfilters=4\nsize=64\n", r"<cfg>:4: layer 0 \[convolutional\]: output would be -31x-31 pixels"),
    ("[net]\nwidth=32\nheight=32\n[yolo]\nclasses=2\nanchors=1,1\nnew_coords=1\n", r"<cfg>:7: new_coords=1 .* is not supported"),
    ("[net]\nwidth=32\nheight=32\n[shortcut]\nactivation=linear\n", r"<cfg>:4: \[shortcut\] needs from="),
]


@pytest.mark.parametrize("text, message", BAD_CFGS)
def test_malformed_cfg_names_the_line(text, message):
    with pytest.raises(CfgError, match=message):
        parse_cfg(text)


def test_error_names_the_file(tmp_path):
    p = tmp_path / "mine.cfg"
    p.write_text("[net]\nwidth=32\nheight=32\n\n[convolutional]\nfilters=x\n")
    with pytest.raises(CfgError, match=r"mine.cfg:6: filters= expects an integer"):
        read_cfg(p)
    with pytest.raises(CfgError, match="cannot read cfg file"):
        read_cfg(tmp_path / "missing.cfg")


def test_yolo_defaults_mask_to_all_anchors():
    y = parse_cfg("[net]\nwidth=32\nheight=32\n[convolutional]\nfilters=14\n[yolo]\nclasses=2\nanchors=1,2,3,4\n")[2]
    assert isinstance(y, Yolo) and y.mask == (0, 1) and y.num == 2 and y.head_anchors == ((1, 2), (3, 4))


def test_the_layer_kind_table_names_every_section():
    """Each kind is found by its section name (and darknet's aliases); its keys come from the class."""
    assert all(block_type(name) is cls and cls.kind == name for name, cls in BLOCK_TYPES.items())
    assert [block_type(s) for s in ("network", "conv", "max", "foo")] == [Net, Conv, MaxPool, None]
    with pytest.raises(CfgError, match=r"supported: from, activation$"):
        parse_cfg("[net]\nwidth=32\nheight=32\n[convolutional]\n[shortcut]\nfrom=-1\ngroups=2\n")
