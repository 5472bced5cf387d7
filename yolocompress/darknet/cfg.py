"""Darknet ``.cfg`` text <-> a list of small typed blocks, with darknet's own parsing rules.

Why typed blocks: the cfg is both the architecture and the pruning graph. Every later stage
(model building, shape inference, pruning dependencies, export) reads these blocks, so they are
validated once, here, with errors that name ``file:line``.

The layer kinds form one table, ``BLOCK_TYPES``: each ``Block`` subclass is the entry of its kind
and carries its section name (``kind``), its keys (``int_keys``, ``value_keys``), its defaults
and range checks (``finish``, ``check``), its shape rule (``shape``) and its writer (``lines``).
This module is the only place a section name is spelled; every other module names the class.
The torch module each kind builds is in ``model.BUILDERS`` (keyed by class: this module stays
torch-free), the pruning rules in ``compress.layer_rules.RULES``.

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
from typing import ClassVar

ACTIVATIONS = ("leaky", "mish", "linear", "logistic", "relu", "swish")
MAX_PARAMS = 2_000_000_000       # 8 GB of float32 weights: far above any YOLO (yolov4: 64 M)
MAX_ACTIVATIONS = 8_000_000_000  # floats of one image's layer outputs (32 GB); yolov4 @ 608: 0.17 G

# Keys darknet reads but that only steer training in darknet itself; kept verbatim, never interpreted.
_TRAINING_ONLY_KEYS = {"stopbackward", "dontload", "dontloadscales", "train", "learning_rate",
                       "burnin_update", "freeze", "stop_backward"}


class CfgError(ValueError):
    """A cfg that darknet would misread or reject; the message names ``file:line`` (or the layer)."""


# ----------------------------------------------------------------------------- values

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


def _one_ref(key, value, where) -> int:
    ref = _int_list(key, value, where)
    if len(ref) != 1:
        raise CfgError(f"{where}: {key}= expects one layer index, found '{value}'")
    return ref[0]


def _activation(key, value, where) -> str:
    if value not in ACTIVATIONS:
        raise CfgError(f"{where}: activation '{value}' is not supported; expected one of " + ", ".join(ACTIVATIONS))
    return value


def _anchors(key, value, where) -> tuple:
    nums = [_float(key, v, where) for v in value.split(",") if v != ""]
    if len(nums) % 2:
        raise CfgError(f"{where}: anchors= expects (w, h) pairs, found {len(nums)} numbers")
    if any(n <= 0 for n in nums):
        raise CfgError(f"{where}: anchors= expects positive sizes in px, found {min(nums):g}")
    return tuple(zip(nums[0::2], nums[1::2]))


def _fmt(v) -> str:
    if isinstance(v, float):
        return str(int(v)) if v.is_integer() else repr(v)
    return str(v)


def _ref(index: int, i: int, shapes: list, where: str, key: str) -> tuple[int, int, int]:
    j = resolve(index, i)
    if not 0 <= j < i:
        raise CfgError(f"{where}: {key}={index} refers to layer {j}, expected an earlier layer 0..{i - 1}")
    return shapes[j]


# ----------------------------------------------------------------------------- the layer kinds

@dataclass
class Block:
    """One cfg section. ``line`` (where the section starts) is for error messages only and is
    ignored by ``==`` so that text -> blocks -> text -> blocks compares equal.

    A subclass is one layer kind: the class attributes and methods below are its row of the table
    (what a new kind fills in)."""
    line: int = field(default=0, compare=False, repr=False)
    extra: dict = field(default_factory=dict)  # keys kept verbatim (str -> str), written back as-is

    kind = "block"                              # the cfg section name, [kind]
    int_keys: ClassVar[tuple] = ()              # keys parsed as int into the field of that name
    value_keys: ClassVar[dict] = {}             # other keys: key -> (field, parser(key, value, where))
    keeps_other_keys: ClassVar[bool] = False    # True: any other key is kept verbatim in ``extra``

    @classmethod
    def parse_value(cls, key: str, value: str, where: str) -> tuple[str, object] | None:
        """(field, parsed value) for a key that changes what the layer computes; None for any other key."""
        if key in cls.int_keys:
            return key, _int(key, value, where)
        if key in cls.value_keys:
            name, parse = cls.value_keys[key]
            return name, parse(key, value, where)
        return None

    @classmethod
    def supported_keys(cls) -> list[str]:
        return [*cls.int_keys, *cls.value_keys]

    @classmethod
    def check_other_key(cls, key: str, value: str, where: str) -> None:
        """Refuse a key kept in ``extra`` whose value would change what the layer computes."""

    @classmethod
    def finish(cls, values: dict, where: str) -> None:
        """Apply darknet's defaults that depend on other keys (in ``values``, in place) and
        refuse missing required keys."""

    def range_checks(self) -> list[tuple[str, object, object]]:
        """(key, value, lowest allowed value) of every field with a lower bound."""
        return []

    def check(self, where: str) -> None:
        """Refuse values darknet would reject or misread (``where`` names the section)."""
        for key, value, low in self.range_checks():
            if value < low:
                raise CfgError(f"{where}: {key}={value} must be >= {low}")

    def shape(self, i: int, prev: tuple, shapes: list, where: str) -> tuple[int, int, int]:
        """Output (C, H, W) of this block as layer ``i``; ``prev`` is the layer before's output,
        ``shapes`` every earlier layer's."""
        raise CfgError(f"{where}: unexpected block")  # pragma: no cover - parse_cfg only makes layer kinds

    def lines(self) -> list[str]:
        """Canonical ``key=value`` lines (defaults written only where darknet needs them), ``extra`` aside."""
        raise TypeError(self)  # pragma: no cover


@dataclass
class Net(Block):
    width: int = 416     # px, default input width
    height: int = 416    # px, default input height
    channels: int = 3    # input channels
    kind = "net"
    int_keys = ("width", "height", "channels")
    keeps_other_keys = True   # training settings darknet reads (batch, momentum, ...)

    def range_checks(self):
        return [("width", self.width, 1), ("height", self.height, 1), ("channels", self.channels, 1)]

    def lines(self):
        return [f"width={self.width}", f"height={self.height}", f"channels={self.channels}"]


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
    int_keys = ("filters", "size", "stride", "pad", "padding", "groups", "batch_normalize")
    value_keys = {"activation": ("activation", _activation)}

    @property
    def pad_px(self) -> int:
        """Zero padding on each side, as darknet computes it."""
        return self.size // 2 if self.pad else self.padding

    def range_checks(self):
        return [("filters", self.filters, 1), ("size", self.size, 1), ("stride", self.stride, 1),
                ("groups", self.groups, 1), ("padding", self.padding, 0)]

    def check(self, where):
        super().check(where)                 # ranges first: groups=0 is refused before it divides
        if self.filters % self.groups:
            raise CfgError(f"{where}: filters={self.filters} is not divisible by groups={self.groups}")

    def shape(self, i, prev, shapes, where):
        c, h, w = prev
        if c % self.groups:
            raise CfgError(f"{where}: groups={self.groups} does not divide its {c} input channels")
        oh = (h + 2 * self.pad_px - self.size) // self.stride + 1
        ow = (w + 2 * self.pad_px - self.size) // self.stride + 1
        return (self.filters, oh, ow)

    def lines(self):
        lines = ([f"batch_normalize={self.batch_normalize}"] if self.batch_normalize else []) + [
            f"filters={self.filters}", f"size={self.size}", f"stride={self.stride}"]
        lines += [f"pad={self.pad}"] if self.pad else ([f"padding={self.padding}"] if self.padding else [])
        return lines + ([f"groups={self.groups}"] if self.groups != 1 else []) + [f"activation={self.activation}"]


@dataclass
class Shortcut(Block):
    from_: int = 0            # as written: negative = relative
    activation: str = "linear"
    kind = "shortcut"
    value_keys = {"from": ("from_", _one_ref), "activation": ("activation", _activation)}

    @classmethod
    def finish(cls, values, where):
        if "from_" not in values:
            raise CfgError(f"{where}: [{cls.kind}] needs from=")

    def shape(self, i, prev, shapes, where):
        src = _ref(self.from_, i, shapes, where, "from")
        if src != prev:
            raise CfgError(f"{where}: from={self.from_} gives shape {src} (C, H, W) but the previous "
                           f"layer gives {prev}; a shortcut adds tensors of the same shape")
        return prev

    def lines(self):
        return [f"from={self.from_}", f"activation={self.activation}"]


@dataclass
class Route(Block):
    layers: tuple = ()        # as written: negative = relative
    groups: int = 1           # each input is cut into `groups` channel slices ...
    group_id: int = 0         # ... and slice `group_id` of each is concatenated
    kind = "route"
    int_keys = ("groups", "group_id")
    value_keys = {"layers": ("layers", _int_list)}

    @classmethod
    def finish(cls, values, where):
        if "layers" not in values:
            raise CfgError(f"{where}: [{cls.kind}] needs layers=")

    def range_checks(self):
        return [("groups", self.groups, 1), ("group_id", self.group_id, 0)]

    def check(self, where):
        if self.group_id >= self.groups:
            raise CfgError(f"{where}: group_id={self.group_id} must be less than groups={self.groups}")
        super().check(where)

    def shape(self, i, prev, shapes, where):
        srcs = [_ref(v, i, shapes, where, "layers") for v in self.layers]
        if not srcs:
            raise CfgError(f"{where}: layers= is empty")
        hw = {s[1:] for s in srcs}
        if len(hw) > 1:
            raise CfgError(f"{where}: layers={','.join(map(str, self.layers))} have different sizes "
                           f"{[s[1:] for s in srcs]} (H, W); a route concatenates equal sizes")
        for v, s in zip(self.layers, srcs):
            if s[0] % self.groups:
                raise CfgError(f"{where}: layer {resolve(v, i)} has {s[0]} channels, "
                               f"not divisible by groups={self.groups}")
        return (sum(s[0] for s in srcs) // self.groups,) + srcs[0][1:]

    def lines(self):
        lines = [f"layers={','.join(map(str, self.layers))}"]
        return lines + ([f"groups={self.groups}", f"group_id={self.group_id}"] if self.groups != 1 else [])


@dataclass
class Upsample(Block):
    stride: int = 2           # nearest-neighbour factor
    kind = "upsample"
    int_keys = ("stride",)

    def range_checks(self):
        return [("stride", self.stride, 1)]

    def shape(self, i, prev, shapes, where):
        c, h, w = prev
        return (c, h * self.stride, w * self.stride)

    def lines(self):
        return [f"stride={self.stride}"]


@dataclass
class MaxPool(Block):
    size: int = 1
    stride: int = 1
    padding: int = 0          # total padding; out-of-range pixels are skipped (not zeros)
    kind = "maxpool"
    int_keys = ("size", "stride", "padding")

    @classmethod
    def finish(cls, values, where):
        values.setdefault("stride", 1)
        values.setdefault("size", values["stride"])
        values.setdefault("padding", values["size"] - 1)

    def range_checks(self):
        return [("stride", self.stride, 1), ("size", self.size, 1), ("padding", self.padding, 0)]

    def shape(self, i, prev, shapes, where):
        c, h, w = prev
        return (c, (h + self.padding - self.size) // self.stride + 1, (w + self.padding - self.size) // self.stride + 1)

    def lines(self):
        lines = [f"size={self.size}", f"stride={self.stride}"]
        return lines + ([f"padding={self.padding}"] if self.padding != self.size - 1 else [])


@dataclass
class Yolo(Block):
    mask: tuple = ()          # indices into anchors used by this head
    anchors: tuple = ()       # ((w, h), ...) in input pixels; fractional allowed
    classes: int = 20
    num: int = 1              # number of anchors listed
    scale_x_y: float = 1.0    # v4: xy = sigmoid * s - (s - 1) / 2
    kind = "yolo"
    int_keys = ("classes", "num")
    value_keys = {"mask": ("mask", _int_list), "anchors": ("anchors", _anchors),
                  "scale_x_y": ("scale_x_y", _float)}
    keeps_other_keys = True   # training settings darknet reads (jitter, ignore_thresh, ...)

    @property
    def head_anchors(self) -> tuple:
        """The (w, h) anchors this head predicts with, in mask order."""
        return tuple(self.anchors[m] for m in self.mask)

    @classmethod
    def check_other_key(cls, key, value, where):
        if key == "new_coords" and value != "0":
            raise CfgError(f"{where}: new_coords={value} (scaled-YOLOv4 decoding) is not supported")

    @classmethod
    def finish(cls, values, where):
        anchors = values.get("anchors", ())
        values.setdefault("num", len(anchors) or 1)
        values.setdefault("mask", tuple(range(values["num"])))
        if len(anchors) != values["num"]:
            raise CfgError(f"{where}: num={values['num']} but anchors= lists {len(anchors)} (w, h) pairs")
        bad = [m for m in values["mask"] if not 0 <= m < len(anchors)]
        if bad:
            raise CfgError(f"{where}: mask= refers to anchors {bad}, but only {len(anchors)} are listed")

    def range_checks(self):
        return [("classes", self.classes, 1), ("scale_x_y", self.scale_x_y, 1e-9)]

    def shape(self, i, prev, shapes, where):
        c = prev[0]
        need = len(self.mask) * (self.classes + 5)
        if c != need:
            raise CfgError(f"{where}: expects len(mask) * (classes + 5) = {len(self.mask)} * "
                           f"({self.classes} + 5) = {need} input channels, the layer before gives {c}")
        return prev

    def lines(self):
        lines = [f"mask={','.join(map(str, self.mask))}",
                 "anchors=" + ", ".join(f"{_fmt(w)},{_fmt(h)}" for w, h in self.anchors),
                 f"classes={self.classes}", f"num={self.num}"]
        return lines + ([f"scale_x_y={_fmt(self.scale_x_y)}"] if self.scale_x_y != 1.0 else [])


# The table of layer kinds: section name -> block class, in the order error messages list them.
BLOCK_TYPES = {b.kind: b for b in (Net, Conv, Shortcut, Route, Upsample, MaxPool, Yolo)}

# Other section names darknet accepts for the same kinds.
_SECTION_ALIASES = {"network": Net, "conv": Conv, "max": MaxPool}


def block_type(section: str) -> type[Block] | None:
    """The block class of a section name (an alias included), None for an unknown section."""
    return BLOCK_TYPES.get(section) or _SECTION_ALIASES.get(section)


def lookup(table: dict, block: Block):
    """``table``'s entry for the block's class, or for its nearest base class that has one (a
    subclass of a kind inherits its rules); None where no class in its line is registered.
    How every per-kind table (module builders, pruning rules) is read."""
    return next((table[c] for c in type(block).__mro__ if c in table), None)


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


def _make_block(name: str, line: int, options: list, src: str) -> Block:
    """One section's options -> its typed block, checking keys and values."""
    cls = block_type(name)
    if cls is None:
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
        parsed = cls.parse_value(key, value, where)
        if parsed is not None:
            values[parsed[0]] = parsed[1]
        elif cls.keeps_other_keys or key in _TRAINING_ONLY_KEYS:
            cls.check_other_key(key, value, where)
            extra[key] = value
        else:
            raise CfgError(f"{where}: key '{key}' is not supported in [{cls.kind}] (it changes what the "
                           f"layer computes); supported: {', '.join(cls.supported_keys())}")
    cls.finish(values, f"{src}:{line}")
    block = cls(line=line, extra=extra, **values)
    block.check(f"{src}:{line}")
    return block


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


def _layer_shape(b: Block, i: int, prev: tuple, shapes: list, where: str) -> tuple[int, int, int]:
    out = b.shape(i, prev, shapes, where)
    if out[1] < 1 or out[2] < 1:
        raise CfgError(f"{where}: output would be {out[1]}x{out[2]} pixels; the input is too small")
    return out


# ----------------------------------------------------------------------------- writing

def to_text(blocks: list[Block]) -> str:
    """Blocks -> cfg text that darknet (and :func:`parse_cfg`) reads back to the same blocks."""
    parts = []
    for i, b in enumerate(blocks):
        header = f"[{b.kind}]" if i == 0 else f"# layer {i - 1}\n[{b.kind}]"
        parts.append("\n".join([header] + b.lines() + [f"{k}={v}" for k, v in b.extra.items()]))
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
