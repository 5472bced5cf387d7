"""``Darknet``: one generic nn.Module built from cfg blocks; module ``i`` is cfg layer ``i``.

Each block type has a small builder in ``BUILDERS``. Every layer computes what darknet computes
(``src/*_layer.c``): BN with eps 1e-5 on running statistics in eval, leaky slope 0.1, maxpool that
skips out-of-range pixels, route groups that slice each input before concatenating, and yolo heads
with ``scale_x_y``.

Outputs:
* train mode: the raw head maps, a list (one per [yolo], cfg order) of (B, A, H, W, 5 + C) logits;
* eval mode: one tensor (B, sum of A*H*W, 5 + C): cx, cy, w, h in input pixels, objectness and
  class scores after sigmoid; heads in cfg order, rows in a head ordered (anchor, y, x).
``Darknet.heads(x)`` gives the raw maps in either mode (distillation uses it on the teacher).
"""
from __future__ import annotations


import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.fusion import fuse_conv_bn_weights

from .cfg import (Block, CfgError, Conv, MaxPool, Net, Route, Shortcut, Upsample, Yolo, infer_shapes, lookup,
                  route_inputs, shortcut_source, to_text)

BN_EPS = 1e-5  # darknet normalize_cpu: (x - mean) / sqrt(var + .00001f)


def activation(name: str) -> nn.Module:
    """Darknet activation by name (leaky slope 0.1, as darknet)."""
    return {
        "leaky": lambda: nn.LeakyReLU(0.1),
        "mish": nn.Mish,
        "linear": nn.Identity,
        "logistic": nn.Sigmoid,
        "relu": nn.ReLU,
        "swish": nn.SiLU,
    }[name]()


_INPLACE_ACTS = (nn.LeakyReLU, nn.ReLU, nn.SiLU, nn.Mish)  # activations with an ``inplace`` switch


class ConvLayer(nn.Module):
    """[convolutional]: conv (bias only without BN) -> BN -> activation."""

    def __init__(self, b: Conv, in_ch: int):
        super().__init__()
        bn = bool(b.batch_normalize)
        self.conv = nn.Conv2d(in_ch, b.filters, b.size, b.stride, b.pad_px, groups=b.groups, bias=not bn)
        self.bn = nn.BatchNorm2d(b.filters, eps=BN_EPS, momentum=0.03) if bn else None
        self.act = activation(b.activation)

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv(x)
        if self.bn is not None:
            x = self.bn(x)
        return self.act(x)

    @torch.no_grad()
    def fuse_bn(self) -> None:
        """Fold BN into the conv (eval): w' = w * gamma / sqrt(var + eps), b' = beta - mean * that scale.

        The fold is computed in float64 and rounded once, so the folded weights carry no more than
        half an ulp of error each; torch's ``fuse_conv_bn_weights`` does the arithmetic.
        """
        if self.bn is None:
            return
        bn, w = self.bn, self.conv.weight
        d = lambda t: None if t is None else t.detach().double()  # noqa: E731
        fw, fb = fuse_conv_bn_weights(d(w), d(self.conv.bias), d(bn.running_mean), d(bn.running_var),
                                      bn.eps, d(bn.weight), d(bn.bias))
        conv = self.conv
        self.conv = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride,
                              conv.padding, groups=conv.groups, bias=True, device=w.device, dtype=w.dtype)
        self.conv.train(conv.training)
        self.conv.weight.copy_(fw)  # (C_out, C_in / groups, k, k)
        self.conv.bias.copy_(fb)    # (C_out,)
        self.bn = None


class MaxPoolLayer(nn.Module):
    """[maxpool] as darknet: window offset -padding/2; pixels outside the input are skipped.

    Padding with -inf and pooling without padding gives exactly "skip out-of-range pixels" and
    the output size darknet computes: (H + padding - size) // stride + 1.
    """

    def __init__(self, b: MaxPool):
        super().__init__()
        self.size, self.stride = b.size, b.stride
        self.before, self.after = b.padding // 2, b.padding - b.padding // 2

    def forward(self, x: Tensor) -> Tensor:
        if self.before or self.after:
            x = F.pad(x, (self.before, self.after, self.before, self.after), value=float("-inf"))
        return F.max_pool2d(x, self.size, self.stride)


class RouteLayer(nn.Module):
    """[route]: concatenate earlier outputs along channels; with groups, slice each input first."""

    def __init__(self, sources: list[int], groups: int, group_id: int):
        super().__init__()
        self.sources, self.groups, self.group_id = sources, groups, group_id

    def forward(self, outputs: list[Tensor]) -> Tensor:
        xs = [outputs[j] for j in self.sources]
        if self.groups > 1:
            xs = [x.chunk(self.groups, dim=1)[self.group_id] for x in xs]
        return xs[0] if len(xs) == 1 else torch.cat(xs, 1)


class ShortcutLayer(nn.Module):
    """[shortcut]: previous output + output of layer ``source``, then activation."""

    def __init__(self, source: int, act: str):
        super().__init__()
        self.source = source
        self.act = activation(act)

    def forward(self, x: Tensor, outputs: list[Tensor]) -> Tensor:
        return self.act(x + outputs[self.source])


class UpsampleLayer(nn.Module):
    def __init__(self, stride: int):
        super().__init__()
        self.stride = stride

    def forward(self, x: Tensor) -> Tensor:
        return F.interpolate(x, scale_factor=self.stride, mode="nearest")


class YoloLayer(nn.Module):
    """[yolo]: reshapes a head map to (B, A, H, W, 5 + C); ``decode`` turns it into boxes."""

    def __init__(self, b: Yolo):
        super().__init__()
        self.classes = b.classes
        self.scale_x_y = b.scale_x_y
        self.register_buffer("anchors", torch.tensor(b.head_anchors, dtype=torch.float32), persistent=False)

    @property
    def na(self) -> int:
        return self.anchors.shape[0]

    def forward(self, x: Tensor) -> Tensor:
        b, _, h, w = x.shape  # (B, A*(5+C), H, W)
        return x.view(b, self.na, 5 + self.classes, h, w).permute(0, 1, 3, 4, 2).contiguous()

    def decode(self, p: Tensor, img_hw: tuple[int, int]) -> Tensor:
        """Raw (B, A, H, W, 5+C) -> (B, A*H*W, 5+C) boxes in input pixels, as darknet's get_yolo_box."""
        b, a, h, w, _ = p.shape
        stride_y, stride_x = img_hw[0] / h, img_hw[1] / w
        gy, gx = torch.meshgrid(torch.arange(h, device=p.device), torch.arange(w, device=p.device),
                                indexing="ij")
        xy = cell_xy(p[..., :2], self.scale_x_y)
        cx = (xy[..., 0] + gx) * stride_x
        cy = (xy[..., 1] + gy) * stride_y
        anchors = self.anchors.to(p.dtype).view(1, a, 1, 1, 2)
        wh = torch.exp(p[..., 2:4]) * anchors
        rest = torch.sigmoid(p[..., 4:])
        out = torch.cat([cx.unsqueeze(-1), cy.unsqueeze(-1), wh, rest], -1)
        return out.view(b, a * h * w, -1)


# The module builder of each layer kind, keyed by block class (``cfg.BLOCK_TYPES`` is the table
# of kinds; cfg stays torch-free, so their torch side lives here): (block, layer index, input
# channels) -> the nn.Module that computes it.
BUILDERS = {
    Conv: lambda b, i, in_ch: ConvLayer(b, in_ch),
    MaxPool: lambda b, i, in_ch: MaxPoolLayer(b),
    Route: lambda b, i, in_ch: RouteLayer(route_inputs(b, i), b.groups, b.group_id),
    Shortcut: lambda b, i, in_ch: ShortcutLayer(shortcut_source(b, i), b.activation),
    Upsample: lambda b, i, in_ch: UpsampleLayer(b.stride),
    Yolo: lambda b, i, in_ch: YoloLayer(b),
}


def _build(block: Block, i: int, in_ch: int) -> nn.Module:
    build = lookup(BUILDERS, block)
    if build is None:
        raise TypeError(f"no builder for {block!r}; register one in yolocompress.darknet.model.BUILDERS")
    return build(block, i, in_ch)


class Darknet(nn.Module):
    """A Darknet cfg as a PyTorch module. ``blocks[0]`` is [net]; ``module_list[i]`` is layer i."""

    def __init__(self, blocks: list[Block]):
        super().__init__()
        if not blocks or not isinstance(blocks[0], Net):
            raise ValueError("Darknet needs parsed cfg blocks starting with [net] (see parse_cfg)")
        self.blocks = list(blocks)
        shapes = infer_shapes(self.blocks)  # validates the graph
        in_chs = [self.net.channels] + [s[0] for s in shapes[:-1]]
        self.module_list = nn.ModuleList(_build(b, i, c) for i, (b, c) in enumerate(zip(self.layers, in_chs)))
        self.head_indices = [i for i, b in enumerate(self.layers) if isinstance(b, Yolo)]
        self._saved = self._referenced_layers()

    # -- structure -----------------------------------------------------------------------------
    @property
    def net(self) -> Net:
        return self.blocks[0]

    @property
    def layers(self) -> list[Block]:
        return self.blocks[1:]

    @property
    def yolo_layers(self) -> list[YoloLayer]:
        return [self.module_list[i] for i in self.head_indices]

    @property
    def num_classes(self) -> int:
        """Classes of the [yolo] heads; a model without one has none to count (CfgError, one line)."""
        if not self.yolo_layers:
            raise CfgError("the model has no [yolo] layer, so it has no class count; a detector cfg ends in [yolo] heads")
        return self.yolo_layers[0].classes

    def cfg_text(self) -> str:
        return to_text(self.blocks)

    def _referenced_layers(self) -> set[int]:
        """Layers whose output a later route or shortcut reads (kept during forward)."""
        keep = set()
        for m in self.module_list:
            if isinstance(m, RouteLayer):
                keep.update(m.sources)
            elif isinstance(m, ShortcutLayer):
                keep.add(m.source)
        return keep

    # -- forward -------------------------------------------------------------------------------
    def heads(self, x: Tensor) -> list[Tensor]:
        """Raw head maps, one (B, A, H, W, 5+C) tensor per [yolo] layer, in cfg order."""
        outputs: list = [None] * len(self.module_list)
        heads = []
        for i, m in enumerate(self.module_list):
            if isinstance(m, RouteLayer):
                x = m(outputs)
            elif isinstance(m, ShortcutLayer):
                x = m(x, outputs)
            elif isinstance(m, YoloLayer):
                heads.append(m(x))
            else:
                x = m(x)
            if i in self._saved:
                outputs[i] = x
        return heads

    @torch.no_grad()
    def fuse(self) -> "Darknet":
        """Fold every BatchNorm into its convolution, in place, and return the model (for inference).

        Each ``[convolutional]`` with ``batch_normalize=1`` becomes one with ``batch_normalize=0``
        and a bias, in the module and in ``blocks``: the fused model is itself a valid darknet cfg
        + weights (``cfg_text``, ``save_pt`` and ``save_darknet_weights`` describe it truthfully) and
        computes what the unfused one computed in eval mode, one pass over each activation fewer;
        its activations also run in place (no new tensor per layer).
        It has no BN gammas left, so prune, train or sparsify the unfused model and fuse a copy
        (``copy.deepcopy(model).fuse()``) to keep both. Calling it again changes nothing.
        Raises RuntimeError in training mode: BN then normalises with batch statistics, which a
        fixed fold cannot reproduce. On CPU, ``model.to(memory_format=torch.channels_last)`` after
        it was faster still (``benchmarks/prune_latency.py``, "fused NHWC").
        """
        if self.training:
            raise RuntimeError("Darknet.fuse() folds BatchNorm running statistics, which only eval mode "
                               "uses: call model.eval() first")
        from dataclasses import replace
        for i, layer in self.conv_layers().items():
            if layer.bn is not None:
                layer.fuse_bn()
                self.blocks[i + 1] = replace(self.blocks[i + 1], batch_normalize=0)
        for m in self.modules():  # every activation's input is a fresh conv output or sum
            if isinstance(m, _INPLACE_ACTS):
                m.inplace = True
        return self

    def decode(self, heads: list[Tensor], img_hw: tuple[int, int]) -> Tensor:
        """Raw head maps -> (B, N, 5+C) boxes in input pixels with sigmoid scores."""
        return torch.cat([y.decode(p, img_hw) for y, p in zip(self.yolo_layers, heads)], 1)

    def forward(self, x: Tensor):
        heads = self.heads(x)
        return heads if self.training else self.decode(heads, x.shape[-2:])

    # -- constructors --------------------------------------------------------------------------
    @classmethod
    def uninitialized(cls, blocks: list[Block], device: str | torch.device = "cpu") -> "Darknet":
        """A model whose conv/BN tensors are allocated but not initialised (for surgery and
        loading, which overwrite them all): skips the random init of tens of millions of weights."""
        with torch.device("meta"):
            model = cls(blocks)
        model.to_empty(device=device)
        for y, b in zip(model.yolo_layers, (model.layers[i] for i in model.head_indices)):
            y.anchors = torch.tensor(b.head_anchors, dtype=torch.float32, device=device)
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.reset_running_stats()
        return model

    def conv_layers(self) -> dict[int, ConvLayer]:
        """{layer index: ConvLayer} for every [convolutional] layer."""
        return {i: m for i, m in enumerate(self.module_list) if isinstance(m, ConvLayer)}


def cell_xy(t_xy: Tensor, scale_x_y: float) -> Tensor:
    """Darknet's get_yolo_box centre: raw (..., 2) -> offset in the cell, sigmoid(t) * s - (s - 1) / 2.
    The one place this formula lives: decoding, the loss and distillation all call it."""
    return torch.sigmoid(t_xy) * scale_x_y - 0.5 * (scale_x_y - 1)


def model_dtype(model: nn.Module) -> torch.dtype:
    """The dtype of a model's parameters (inputs are cast to it: float32, or float64 in exactness tests)."""
    return next(model.parameters()).dtype


def full_precision(t: Tensor) -> Tensor:
    """Widen an autocast output (fp16/bf16) to float32 for the loss; float32/float64 pass unchanged."""
    return t.float() if t.dtype in (torch.float16, torch.bfloat16) else t
