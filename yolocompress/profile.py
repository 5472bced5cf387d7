"""Model size and speed, measured: parameters, GFLOPs (torch's own FLOP counter), CPU/GPU latency.

* Parameters are counted as PyTorch counts them: conv weights, conv biases, BN gamma and beta
  (BN running statistics are buffers, not parameters).
* GFLOPs are 2 x multiply-accumulates of the convolutions, from ``torch.utils.flop_counter``
  (darknet's "BFLOPS" figure counts convolutions the same way). BN, activations, adds and
  upsampling are not counted.
* Latency is the median wall time of batch-1 forwards after warm-up, at a stated thread count.
"""
from __future__ import annotations

import statistics
import time
from dataclasses import dataclass

import pandas as pd
import torch
from torch.utils.flop_counter import FlopCounterMode

from .cfg import Conv, MaxPool, Route, Shortcut, Upsample, Yolo, infer_shapes
from .model import Darknet

_CONV_OPS = {torch.ops.aten.convolution, torch.ops.aten._convolution, torch.ops.aten.convolution.default,
             torch.ops.aten._convolution.default}


def count_params(model: torch.nn.Module) -> int:
    """Trainable-tensor count as PyTorch reports it (BN gamma/beta included, running stats not)."""
    return sum(p.numel() for p in model.parameters())


def _conv_flops(counts: dict) -> int:
    return sum(v for op, v in counts.items() if op in _CONV_OPS or "convolution" in str(op))


@torch.no_grad()
def layer_flops(model: Darknet, img_size: int | tuple[int, int] = 416) -> list[int]:
    """Convolution FLOPs (2 x MACs) of each layer for one image, measured by FlopCounterMode.

    Per-layer figures come from reading the counter's running total before and after each
    module (forward hooks), so they always add up to the model total.
    """
    h, w = (img_size, img_size) if isinstance(img_size, int) else img_size
    p = next(model.parameters())
    x = torch.zeros(1, model.net.channels, h, w, dtype=p.dtype, device=p.device)
    counter = FlopCounterMode(display=False)
    per_layer = [0] * len(model.module_list)
    total = lambda: _conv_flops(counter.get_flop_counts().get("Global", {}))  # noqa: E731
    start = {}
    hooks = []
    for i, m in enumerate(model.module_list):
        hooks.append(m.register_forward_pre_hook(lambda mod, inp, i=i: start.__setitem__(i, total())))
        hooks.append(m.register_forward_hook(
            lambda mod, inp, out, i=i: per_layer.__setitem__(i, total() - start[i])))
    was_training = model.training
    model.eval()
    try:
        with counter:
            model.heads(x)
    finally:
        model.train(was_training)
        for hk in hooks:
            hk.remove()
    return per_layer


def gflops(model: Darknet, img_size: int | tuple[int, int] = 416) -> float:
    """Total GFLOPs (2 x conv MACs) for one image of ``img_size``."""
    return sum(layer_flops(model, img_size)) / 1e9


def _describe(block) -> str:
    if isinstance(block, Conv):
        return f"{block.size}x{block.size}/{block.stride}" + (f" g{block.groups}" if block.groups > 1 else "")
    if isinstance(block, Route):
        return "layers=" + ",".join(map(str, block.layers)) + (f" g{block.groups}:{block.group_id}"
                                                               if block.groups > 1 else "")
    if isinstance(block, Shortcut):
        return f"from={block.from_}"
    if isinstance(block, MaxPool):
        return f"{block.size}x{block.size}/{block.stride}"
    if isinstance(block, Upsample):
        return f"x{block.stride}"
    if isinstance(block, Yolo):
        return f"mask={','.join(map(str, block.mask))}"
    return ""


def layer_table(model: Darknet, img_size: int = 416) -> pd.DataFrame:
    """Per-layer table: i, type, filters, detail, output C x H x W, params, GFLOPs."""
    shapes = infer_shapes(model.blocks, img_size, img_size)
    flops = layer_flops(model, img_size)
    rows = []
    for i, (b, m, s, f) in enumerate(zip(model.layers, model.module_list, shapes, flops)):
        rows.append({"i": i, "type": b.kind, "filters": b.filters if isinstance(b, Conv) else None,
                     "detail": _describe(b), "output": f"{s[0]} x {s[1]} x {s[2]}",
                     "params": count_params(m), "GFLOPs": f / 1e9})
    df = pd.DataFrame(rows)
    df["filters"] = df["filters"].astype("Int64")
    return df


@dataclass
class Summary:
    """Whole-model figures, as printed by ``yolocompress info``."""
    layers: int
    params: int
    gflops: float
    heads: list            # [[C, H, W], ...] per [yolo] head
    img_size: int

    def as_dict(self) -> dict:
        return {"layers": self.layers, "params": self.params, "gflops": round(self.gflops, 6),
                "heads": self.heads, "img_size": self.img_size}


def summarize_blocks(blocks, img_size: int = 416) -> Summary:
    """``summarize`` for cfg blocks, on PyTorch's meta device: no memory, no arithmetic."""
    with torch.device("meta"):
        return summarize(Darknet(blocks), img_size)


def summarize(model: Darknet, img_size: int = 416) -> Summary:
    shapes = infer_shapes(model.blocks, img_size, img_size)
    heads = [list(shapes[i]) for i in model.head_indices]
    return Summary(len(model.layers), count_params(model), gflops(model, img_size), heads, img_size)


@torch.no_grad()
def latency(model: torch.nn.Module, img_size: int = 416, runs: int = 20, warmup: int = 3,
            threads: int | None = None, device: str | torch.device | None = None) -> dict:
    """Median forward time (ms) of one image; returns {"ms", "p90_ms", "threads", "device", "runs"}.

    ``threads`` sets torch's intra-op thread count for the measurement (restored afterwards).
    """
    device = torch.device(device) if device else next(model.parameters()).device
    old_threads = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    was_training = model.training
    model.eval()
    x = torch.rand(1, 3, img_size, img_size, device=device)
    try:
        times = []
        for k in range(warmup + runs):
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            t0 = time.perf_counter()
            model(x)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            if k >= warmup:
                times.append((time.perf_counter() - t0) * 1e3)
    finally:
        torch.set_num_threads(old_threads)
        model.train(was_training)
    times.sort()
    return {"ms": statistics.median(times), "p90_ms": times[int(0.9 * (len(times) - 1))],
            "threads": threads or old_threads, "device": str(device), "runs": runs}


def cost_row(model: Darknet, img_size: int, latency_runs: int = 0, threads: int = 2) -> dict:
    """The cost columns of every comparison table: params, GFLOPs and (with ``latency_runs``) the
    median batch-1 CPU latency in ms."""
    row = {"params": count_params(model), "GFLOPs": gflops(model, img_size)}
    if latency_runs:
        row["latency_ms"] = latency(model, img_size, runs=latency_runs, threads=threads, device="cpu")["ms"]
    return row


def flops_by_stride(model: Darknet, img_size: int = 416) -> pd.DataFrame:
    """Share of the convolution FLOPs spent at each output stride (2, 4, ..., 32): where a network's
    cost sits, and so how much channel pruning of its deep, redundant layers can save."""
    shapes = infer_shapes(model.blocks, img_size, img_size)
    flops = layer_flops(model, img_size)
    df = pd.DataFrame({"stride": [img_size // s[1] for s in shapes], "GFLOPs": [f / 1e9 for f in flops]})
    df = df.groupby("stride", as_index=False)["GFLOPs"].sum()
    df["share"] = df["GFLOPs"] / df["GFLOPs"].sum()
    df.insert(1, "resolution", [f"{img_size // s} x {img_size // s}" for s in df["stride"]])
    return df
