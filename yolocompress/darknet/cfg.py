"""Darknet ``.cfg`` text <-> a list of small typed blocks, with darknet's own parsing rules.

Why typed blocks: the cfg is both the architecture and the pruning graph. Every later stage
(model building, shape inference, pruning dependencies, export) reads these blocks, so they are
validated once, here, with errors that name ``file:line``.

Darknet's rules reproduced here (``src/parser.c``): every whitespace character is removed from a
line; lines starting with ``#`` or ``;`` are comments; ``key=value`` splits at the first ``=``;
layers are numbered from 0 at the first section after ``[net]``; negative ``layers=`` / ``from=``
are relative to the layer that holds them. Defaults follow darknet (a convolution without
``activation=`` is ``logistic``; a maxpool without ``padding=`` pads ``size-1``).

No torch here: this module is pure data.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path

ACTIVATIONS = ("leaky", "mish", "linear", "logistic", "relu", "swish")
MAX_PARAMS = 2_000_000_000       # 8 GB of float32 weights: far above any YOLO (yolov4: 64 M)
MAX_ACTIVATIONS = 8_000_000_000  # floats of one image's layer outputs (32 GB); yolov4 @ 608: 0.17 G

# Section names darknet accepts, mapped to ours (darknet also knows [conv], [network], [max]).
_SECTION_ALIASES = {
    "net": "net", "network": "net",
    "convolutional": "convolutional", "conv": "convolutional",
    "shortcut": "shortcut", "route": "route", "upsample": "upsample",
    "maxpool": "maxpool", "max": "maxpool", "yolo": "yolo",
}

# Keys darknet reads but that only steer training in darknet itself; kept verbatim, never interpreted.
_TRAINING_ONLY_KEYS = {"stopbackward", "dontload", "dontloadscales", "train", "learning_rate",
                       "burnin_update", "freeze", "stop_backward"}


class CfgError(ValueError):
    """A cfg that darknet would misread or reject; the message names ``file:line`` (or the layer)."""


@dataclass
class Block:
    """One cfg section. ``line`` (where the section starts) is for error messages only and is
    ignored by ``==`` so that text -> blocks -> text -> blocks compares equal."""
    line: int = field(default=0, compare=False, repr=False)
    extra: dict = field(default_factory=dict)  # keys kept verbatim (str -> str), written back as-is

    kind = "block"


@dataclass
class Net(Block):
    width: int = 416     # px, default input width
    height: int = 416    # px, default input height
    channels: int = 3    # input channels
    kind = "net"


@dataclass
class Conv(Block):
    filters: int = 1
    size: int = 1             # kernel side, px
    stride: int = 1
    pad: int = 0              # darknet: when nonzero, padding = size // 2
    padding: int = 0          # explicit zero padding (used only when pad == 0)
    groups: int = 1
    batch_normalize: int = 0  # 1: conv (no bias) -> BN(eps 1e-5) ; 0: conv with bias
    activation: str = "logistic"
    kind = "convolutional"

    @property
    def pad_px(self) -> int:
        """Zero padding on each side, as darknet computes it."""
        return self.size // 2 if self.pad else self.padding


@dataclass
class Shortcut(Block):
    from_: int = 0            # as written: negative = relative
    activation: str = "linear"
    kind = "shortcut"


@dataclass
class Route(Block):
    layers: tuple = ()        # as written: negative = relative
    groups: int = 1           # each input is cut into `groups` channel slices ...
    group_id: int = 0         # ... and slice `group_id` of each is concatenated
    kind = "route"


@dataclass
class Upsample(Block):
    stride: int = 2           # nearest-neighbour factor
    kind = "upsample"


@dataclass
class MaxPool(Block):
    size: int = 1
    stride: int = 1
    padding: int = 0          # total padding; out-of-range pixels are skipped (not zeros)
    kind = "maxpool"


@dataclass
class Yolo(Block):
    mask: tuple = ()          # indices into anchors used by this head
    anchors: tuple = ()       # ((w, h), ...) in input pixels; fractional allowed
    classes: int = 20
    num: int = 1              # number of anchors listed
    scale_x_y: float = 1.0    # v4: xy = sigmoid * s - (s - 1) / 2
    kind = "yolo"

    @property
    def head_anchors(self) -> tuple:
        """The (w, h) anchors this head predicts with, in mask order."""
        return tuple(self.anchors[m] for m in self.mask)


BLOCK_TYPES = {b.kind: b for b in (Net, Conv, Shortcut, Route, Upsample, MaxPool, Yolo)}


def resolve(index: int, i: int) -> int:
    """Darknet's layer reference rule: negative indices are relative to layer ``i``."""
    return i + index if index < 0 else index


def route_inputs(block: Route, i: int) -> list[int]:
    """Absolute layer indices a route at layer ``i`` reads."""
    return [resolve(v, i) for v in block.layers]


def shortcut_source(block: Shortcut, i: int) -> int:
    """Absolute layer index a shortcut at layer ``i`` adds to its previous layer."""
    return resolve(block.from_, i)


# ----------------------------------------------------------------------------- parsing

def _split_sections(text: str, src: str) -> list[tuple[str, int, list[tuple[str, str, int]]]]:
    """Text -> [(section name, line, [(key, value, line), ...])] with darknet's line rules."""
    sections = []
    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = "".join(raw.split())  # darknet strip(): removes every whitespace character
        if not line or line[0] in "#;":
            continue
        if line[0] == "[":
            if not line.endswith("]"):
                raise CfgError(f"{src}:{lineno}: section header '{raw.strip()}' has no closing ']'")
            sections.append((line[1:-1], lineno, []))
            continue
        if not sections:
            raise CfgError(f"{src}:{lineno}: '{raw.strip()}' comes before the first [section]; "
                           "a cfg must start with [net]")
        if "=" not in line:
            raise CfgError(f"{src}:{lineno}: expected 'key=value', found '{raw.strip()}'")
        key, value = line.split("=", 1)
        sections[-1][2].append((key, value, lineno))
    return sections


def _int(key, value, where) -> int:
    try:
        return int(value)
    except ValueError:
        raise CfgError(f"{where}: {key}= expects an integer, found '{value}'") from None


def _float(key, value, where) -> float:
    try:
        v = float(value)
    except ValueError:
        raise CfgError(f"{where}: {key}= expects a number, found '{value}'") from None
    if not math.isfinite(v):
        raise CfgError(f"{where}: {key}= expects a finite number, found '{value}'")
    return v


def _int_list(key, value, where) -> tuple:
    return tuple(_int(key, v, where) for v in value.split(",") if v != "")


_INT_FIELDS = {
    "net": ("width", "height", "channels"),
    "convolutional": ("filters", "size", "stride", "pad", "padding", "groups", "batch_normalize"),
    "route": ("groups", "group_id"),
    "upsample": ("stride",),
    "maxpool": ("size", "stride", "padding"),
    "yolo": ("classes", "num"),
}


def _make_block(name: str, line: int, options: list, src: str) -> Block:
    """One section's options -> its typed block, checking keys and values."""
    kind = _SECTION_ALIASES.get(name)
    if kind is None:
        raise CfgError(f"{src}:{line}: unknown section [{name}]; supported: "
                       + ", ".join(f"[{k}]" for k in BLOCK_TYPES))
    seen: dict[str, int] = {}
    values: dict = {}
    extra: dict = {}
    for key, value, kline in options:
        where = f"{src}:{kline}"
        if key in seen:
            raise CfgError(f"{where}: key '{key}' already given on line {seen[key]} in this section")
        seen[key] = kline
        parsed = _layer_value(kind, key, value, where)
        if parsed is not None:
            values[parsed[0]] = parsed[1]
        elif kind in ("net", "yolo") or key in _TRAINING_ONLY_KEYS:
            if kind == "yolo" and key == "new_coords" and value != "0":
                raise CfgError(f"{where}: new_coords={value} (scaled-YOLOv4 decoding) is not supported")
            extra[key] = value
        else:
            raise CfgError(f"{where}: key '{key}' is not supported in [{kind}] "
                           f"(it changes what the layer computes); supported: {_supported(kind)}")
    return _finish_block(kind, line, values, extra, seen, src)


def _layer_value(kind: str, key: str, value: str, where: str) -> tuple[str, object] | None:
    """(field, parsed value) for a key that changes what a layer computes; None for any other key."""
    if key in _INT_FIELDS.get(kind, ()) or (kind == "maxpool" and key == "padding"):
        return key, _int(key, value, where)
    if key == "activation" and kind in ("convolutional", "shortcut"):
        if value not in ACTIVATIONS:
            raise CfgError(f"{where}: activation '{value}' is not supported; expected one of " + ", ".join(ACTIVATIONS))
        return key, value
    if kind == "shortcut" and key == "from":
        ref = _int_list(key, value, where)
        if len(ref) != 1:
            raise CfgError(f"{where}: from= expects one layer index, found '{value}'")
        return "from_", ref[0]
    if (kind, key) in (("route", "layers"), ("yolo", "mask")):
        return key, _int_list(key, value, where)
    if kind == "yolo" and key == "anchors":
        return key, _anchors(value, where)
    if kind == "yolo" and key == "scale_x_y":
        return key, _float(key, value, where)
    return None


def _anchors(value: str, where: str) -> tuple:
    nums = [_float("anchors", v, where) for v in value.split(",") if v != ""]
    if len(nums) % 2:
        raise CfgError(f"{where}: anchors= expects (w, h) pairs, found {len(nums)} numbers")
    if any(n <= 0 for n in nums):
        raise CfgError(f"{where}: anchors= expects positive sizes in px, found {min(nums):g}")
    return tuple(zip(nums[0::2], nums[1::2]))


def _supported(kind: str) -> str:
    keys = list(_INT_FIELDS.get(kind, ()))
    keys += {"convolutional": ["activation"], "shortcut": ["from", "activation"],
             "route": ["layers"], "yolo": ["mask", "anchors", "scale_x_y"]}.get(kind, [])
    return ", ".join(keys)


def _finish_block(kind, line, values, extra, seen, src) -> Block:
    """Apply darknet's defaults that depend on other keys, then check value ranges."""
    where = f"{src}:{line}"
    if kind == "maxpool":
        values.setdefault("stride", 1)
        values.setdefault("size", values["stride"])
        values.setdefault("padding", values["size"] - 1)
    if kind == "route" and "layers" not in values:
        raise CfgError(f"{where}: [route] needs layers=")
    if kind == "shortcut" and "from_" not in values:
        raise CfgError(f"{where}: [shortcut] needs from=")
    if kind == "yolo":
        _finish_yolo(values, where)
    block = BLOCK_TYPES[kind](line=line, extra=extra, **values)
    _check_ranges(block, where)
    return block


def _finish_yolo(values: dict, where: str) -> None:
    anchors = values.get("anchors", ())
    values.setdefault("num", len(anchors) or 1)
    values.setdefault("mask", tuple(range(values["num"])))
    if len(anchors) != values["num"]:
        raise CfgError(f"{where}: num={values['num']} but anchors= lists {len(anchors)} (w, h) pairs")
    bad = [m for m in values["mask"] if not 0 <= m < len(anchors)]
    if bad:
        raise CfgError(f"{where}: mask= refers to anchors {bad}, but only {len(anchors)} are listed")


def _check_ranges(b: Block, where: str) -> None:
    checks = []
    if isinstance(b, Net):
        checks = [("width", b.width, 1), ("height", b.height, 1), ("channels", b.channels, 1)]
    elif isinstance(b, Conv):
        checks = [("filters", b.filters, 1), ("size", b.size, 1), ("stride", b.stride, 1),
                  ("groups", b.groups, 1), ("padding", b.padding, 0)]
        if b.filters % b.groups:
            raise CfgError(f"{where}: filters={b.filters} is not divisible by groups={b.groups}")
    elif isinstance(b, (Upsample, MaxPool)):
        checks = [("stride", b.stride, 1)] + ([("size", b.size, 1), ("padding", b.padding, 0)]
                                              if isinstance(b, MaxPool) else [])
    elif isinstance(b, Route):
        checks = [("groups", b.groups, 1), ("group_id", b.group_id, 0)]
        if b.group_id >= b.groups:
            raise CfgError(f"{where}: group_id={b.group_id} must be less than groups={b.groups}")
    elif isinstance(b, Yolo):
        checks = [("classes", b.classes, 1), ("scale_x_y", b.scale_x_y, 1e-9)]
    for key, value, low in checks:
        if value < low:
            raise CfgError(f"{where}: {key}={value} must be >= {low}")


def parse_cfg(text: str, source: str = "<cfg>") -> list[Block]:
    """Cfg text -> [Net, layer 0, layer 1, ...], validated (shapes included) for the net's size.

    ``source`` names the file in error messages. Raises :class:`CfgError`.
    """
    sections = _split_sections(text.removeprefix("\ufeff"), source)  # a UTF-8 BOM (Windows editors)
    if not sections:
        raise CfgError(f"{source}: no sections found; a cfg starts with [net]")
    blocks = [_make_block(name, line, opts, source) for name, line, opts in sections]
    if not isinstance(blocks[0], Net):
        raise CfgError(f"{source}:{blocks[0].line}: the first section must be [net], "
                       f"found [{blocks[0].kind}]")
    for b in blocks[1:]:
        if isinstance(b, Net):
            raise CfgError(f"{source}:{b.line}: a second [net] section; only the first may be [net]")
    if len(blocks) == 1:
        raise CfgError(f"{source}: only a [net] section; expected layers after it ([convolutional], ..., [yolo])")
    check_size(blocks, infer_shapes(blocks, source=source), source)
    return blocks


def check_size(blocks: list[Block], shapes: list[tuple[int, int, int]], source: str = "<cfg>") -> None:
    """Refuse a cfg whose weights or one image's activations would need absurd memory (a typo such
    as ``filters=1000000`` or ``width=1000000``), computed from shapes before anything is allocated."""
    in_chs = [blocks[0].channels] + [s[0] for s in shapes[:-1]]
    params = sum(b.filters * (c // b.groups) * b.size ** 2 + 2 * b.filters
                 for b, c in zip(blocks[1:], in_chs) if isinstance(b, Conv))
    if params > MAX_PARAMS:
        raise CfgError(f"{source}: the cfg needs {params:,} parameters ({4 * params / 1e9:.0f} GB float32), "
                       f"more than the {MAX_PARAMS:,} limit; check filters= and size=")
    net = blocks[0]
    side = max(net.width, net.height)       # the tools run square inputs of the net's size
    if side != min(net.width, net.height):
        shapes = infer_shapes(blocks, side, side, source)
    floats = net.channels * side * side + sum(c * h * w for c, h, w in shapes)
    if floats > MAX_ACTIVATIONS:
        raise CfgError(f"{source}:{net.line or 1}: [net] width={net.width} height={net.height} needs "
                       f"{4 * floats / 1e9:.0f} GB for one image's layer outputs (limit "
                       f"{4 * MAX_ACTIVATIONS / 1e9:.0f} GB); expected a size like 416 or 608")


def read_cfg(path: str | Path) -> list[Block]:
    """Parse a cfg file; errors name the file."""
    path = Path(path)
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise CfgError(f"{path}: cannot read cfg file ({e})") from None
    return parse_cfg(text, source=str(path))


# ----------------------------------------------------------------------------- shapes

def _layer_where(b: Block, i: int, source: str) -> str:
    return f"{source}:{b.line}: layer {i} [{b.kind}]" if b.line else f"{source}: layer {i} [{b.kind}]"


def infer_shapes(blocks: list[Block], width: int | None = None, height: int | None = None,
                 source: str = "<cfg>") -> list[tuple[int, int, int]]:
    """Output (C, H, W) of every layer, computed as darknet does; raises CfgError on a bad graph.

    Checks: references point at existing earlier layers; shortcut inputs agree in shape; route
    inputs agree in H, W and split evenly into groups; convolution groups divide the input
    channels; a [yolo] head receives len(mask) * (classes + 5) channels.
    """
    net = blocks[0]
    h, w, c = height or net.height, width or net.width, net.channels
    shapes: list[tuple[int, int, int]] = []
    for i, b in enumerate(blocks[1:]):
        where = _layer_where(b, i, source)
        prev = shapes[-1] if shapes else (c, h, w)
        shapes.append(_layer_shape(b, i, prev, shapes, where))
    return shapes


def _ref(index: int, i: int, shapes: list, where: str, key: str) -> tuple[int, int, int]:
    j = resolve(index, i)
    if not 0 <= j < i:
        raise CfgError(f"{where}: {key}={index} refers to layer {j}, expected an earlier layer 0..{i - 1}")
    return shapes[j]


def _layer_shape(b: Block, i: int, prev: tuple, shapes: list, where: str) -> tuple[int, int, int]:
    c, h, w = prev
    if isinstance(b, Conv):
        if c % b.groups:
            raise CfgError(f"{where}: groups={b.groups} does not divide its {c} input channels")
        oh = (h + 2 * b.pad_px - b.size) // b.stride + 1
        ow = (w + 2 * b.pad_px - b.size) // b.stride + 1
        out = (b.filters, oh, ow)
    elif isinstance(b, Shortcut):
        src = _ref(b.from_, i, shapes, where, "from")
        if src != prev:
            raise CfgError(f"{where}: from={b.from_} gives shape {src} (C, H, W) but the previous "
                           f"layer gives {prev}; a shortcut adds tensors of the same shape")
        out = prev
    elif isinstance(b, Route):
        out = _route_shape(b, i, shapes, where)
    elif isinstance(b, Upsample):
        out = (c, h * b.stride, w * b.stride)
    elif isinstance(b, MaxPool):
        out = (c, (h + b.padding - b.size) // b.stride + 1, (w + b.padding - b.size) // b.stride + 1)
    elif isinstance(b, Yolo):
        need = len(b.mask) * (b.classes + 5)
        if c != need:
            raise CfgError(f"{where}: expects len(mask) * (classes + 5) = {len(b.mask)} * "
                           f"({b.classes} + 5) = {need} input channels, the layer before gives {c}")
        out = prev
    else:  # pragma: no cover - parse_cfg only makes the types above
        raise CfgError(f"{where}: unexpected block")
    if out[1] < 1 or out[2] < 1:
        raise CfgError(f"{where}: output would be {out[1]}x{out[2]} pixels; the input is too small")
    return out


def _route_shape(b: Route, i: int, shapes: list, where: str) -> tuple[int, int, int]:
    srcs = [_ref(v, i, shapes, where, "layers") for v in b.layers]
    if not srcs:
        raise CfgError(f"{where}: layers= is empty")
    hw = {s[1:] for s in srcs}
    if len(hw) > 1:
        raise CfgError(f"{where}: layers={','.join(map(str, b.layers))} have different sizes "
                       f"{[s[1:] for s in srcs]} (H, W); a route concatenates equal sizes")
    for v, s in zip(b.layers, srcs):
        if s[0] % b.groups:
            raise CfgError(f"{where}: layer {resolve(v, i)} has {s[0]} channels, "
                           f"not divisible by groups={b.groups}")
    return (sum(s[0] for s in srcs) // b.groups,) + srcs[0][1:]


# ----------------------------------------------------------------------------- writing

def _fmt(v) -> str:
    if isinstance(v, float):
        return str(int(v)) if v.is_integer() else repr(v)
    return str(v)


def _block_lines(b: Block) -> list[str]:
    """Canonical ``key=value`` lines of one block (defaults written only where darknet needs them)."""
    if isinstance(b, Net):
        lines = [f"width={b.width}", f"height={b.height}", f"channels={b.channels}"]
    elif isinstance(b, Conv):
        lines = ([f"batch_normalize={b.batch_normalize}"] if b.batch_normalize else []) + [
            f"filters={b.filters}", f"size={b.size}", f"stride={b.stride}"]
        lines += [f"pad={b.pad}"] if b.pad else ([f"padding={b.padding}"] if b.padding else [])
        lines += ([f"groups={b.groups}"] if b.groups != 1 else []) + [f"activation={b.activation}"]
    elif isinstance(b, Shortcut):
        lines = [f"from={b.from_}", f"activation={b.activation}"]
    elif isinstance(b, Route):
        lines = [f"layers={','.join(map(str, b.layers))}"]
        lines += [f"groups={b.groups}", f"group_id={b.group_id}"] if b.groups != 1 else []
    elif isinstance(b, Upsample):
        lines = [f"stride={b.stride}"]
    elif isinstance(b, MaxPool):
        lines = [f"size={b.size}", f"stride={b.stride}"]
        lines += [f"padding={b.padding}"] if b.padding != b.size - 1 else []
    elif isinstance(b, Yolo):
        lines = [f"mask={','.join(map(str, b.mask))}",
                 "anchors=" + ", ".join(f"{_fmt(w)},{_fmt(h)}" for w, h in b.anchors),
                 f"classes={b.classes}", f"num={b.num}"]
        lines += [f"scale_x_y={_fmt(b.scale_x_y)}"] if b.scale_x_y != 1.0 else []
    else:  # pragma: no cover
        raise TypeError(b)
    return lines + [f"{k}={v}" for k, v in b.extra.items()]


def to_text(blocks: list[Block]) -> str:
    """Blocks -> cfg text that darknet (and :func:`parse_cfg`) reads back to the same blocks."""
    parts = []
    for i, b in enumerate(blocks):
        header = f"[{b.kind}]" if i == 0 else f"# layer {i - 1}\n[{b.kind}]"
        parts.append("\n".join([header] + _block_lines(b)))
    return "\n\n".join(parts) + "\n"


def write_cfg(blocks: list[Block], path: str | Path) -> None:
    """Write blocks as a cfg file (atomically)."""
    from yolocompress.files import atomic_write_text
    atomic_write_text(path, to_text(blocks))


def replace(block: Block, **changes) -> Block:
    """A copy of ``block`` with fields changed (keeps its source line for messages)."""
    return dataclasses.replace(block, **changes)


def conv_indices(blocks: list[Block]) -> list[int]:
    """Layer indices (0-based, after [net]) of every [convolutional] block."""
    return [i for i, b in enumerate(blocks[1:]) if isinstance(b, Conv)]
