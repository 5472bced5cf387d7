"""Model size and speed, measured: parameters, GFLOPs (torch's own FLOP counter), CPU/GPU latency.

* Parameters are counted as PyTorch counts them: conv weights, conv biases, BN gamma and beta
  (BN running statistics are buffers, not parameters).
* GFLOPs are 2 x multiply-accumulates of the convolutions, from ``torch.utils.flop_counter``
  (darknet's "BFLOPS" figure counts convolutions the same way). BN, activations, adds and
  upsampling are not counted.
* Latency is the median wall time of batch-1 forwards after warm-up, at a stated thread count,
  with the conditions it was measured under (threads, ``OMP_WAIT_POLICY``, machine load at the
  start). Several runtimes or models are timed interleaved in one process (``time_interleaved``),
  so that outside load falls on all of them alike.
"""
from __future__ import annotations

import copy
import os
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pandas as pd
import torch
from torch.utils.flop_counter import FlopCounterMode
from tqdm.auto import tqdm

from yolocompress.darknet.cfg import Conv, MaxPool, Route, Shortcut, Upsample, Yolo, infer_shapes, lookup
from yolocompress.darknet.model import Darknet

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


def _groups(b) -> str:
    return f" g{b.groups}" if b.groups > 1 else ""


# The "detail" column of each layer kind in ``layer_table``, keyed by block class.
_DETAILS = {
    Conv: lambda b: f"{b.size}x{b.size}/{b.stride}" + _groups(b),
    Route: lambda b: "layers=" + ",".join(map(str, b.layers)) + (_groups(b) + f":{b.group_id}" if b.groups > 1 else ""),
    Shortcut: lambda b: f"from={b.from_}",
    MaxPool: lambda b: f"{b.size}x{b.size}/{b.stride}",
    Upsample: lambda b: f"x{b.stride}",
    Yolo: lambda b: f"mask={','.join(map(str, b.mask))}",
}


def _describe(block) -> str:
    """Short detail of a layer (kernel/stride, references, ...); "" for a kind without one."""
    detail = lookup(_DETAILS, block)
    return detail(block) if detail else ""


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


# ----------------------------------------------------------------------------- latency

def conditions(threads: int) -> dict:
    """What a latency figure depends on besides the model: threads, OpenMP's wait policy, cores,
    and the 1/5/15-minute load averages when measuring starts (``os.getloadavg``, where it exists)."""
    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    return {"threads": threads, "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "unset"),
            "cores": os.cpu_count(), "load_1m": load[0], "load_5m": load[1], "load_15m": load[2]}


def load_warning(cond: dict, per_core: float = 0.5) -> str | None:
    """A warning when the 1-minute load is above ``per_core`` x the core count: other processes
    then share the cores, and timings (ratios included) measure them too."""
    if cond["load_1m"] > per_core * (cond["cores"] or 1):
        return (f"1-min load {cond['load_1m']:.2f} on {cond['cores']} cores is above {per_core} per core: "
                "other processes may be using the CPU (or ended within the last minute: the average "
                "lags), which inflates timings and makes them noisy")
    return None


class OtherLoad:
    """Context manager: how many cores other processes kept busy while the block ran.

    The load average at the start says little about the seconds that follow; this reads the
    machine's busy CPU time from /proc/stat (Linux) before and after, and subtracts this process's
    own CPU time (all its threads, ONNX Runtime's included). ``cores`` is the average number of
    cores others used (0.0 on a quiet machine); None where /proc/stat does not exist.
    """

    def __enter__(self) -> "OtherLoad":
        self.cores = None
        self._start = (_machine_busy_s(), _own_cpu_s(), time.perf_counter())
        return self

    def __exit__(self, *exc) -> None:
        busy0, own0, t0 = self._start
        busy1, own1, t1 = _machine_busy_s(), _own_cpu_s(), time.perf_counter()
        if busy0 is not None and busy1 is not None and t1 > t0:
            self.cores = max(0.0, ((busy1 - busy0) - (own1 - own0)) / (t1 - t0))


def _machine_busy_s() -> float | None:
    """Busy CPU seconds of the whole machine since boot (all cores), from /proc/stat; None elsewhere."""
    try:
        with open("/proc/stat") as f:
            ticks = [int(v) for v in f.readline().split()[1:9]]  # user nice system idle iowait irq softirq steal
    except (OSError, ValueError):
        return None
    return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")


def _own_cpu_s() -> float:
    t = os.times()
    return t.user + t.system


def torch_runner(model: torch.nn.Module, x: torch.Tensor) -> Callable[[], object]:
    """A zero-argument callable running ``model(x)`` without autograd; on CUDA it waits for the GPU."""
    cuda = x.device.type == "cuda"

    def run():
        with torch.no_grad():
            out = model(x)
        if cuda:
            torch.cuda.synchronize(x.device)
        return out
    return run


def ort_runner(onnx_path: str | Path, x: torch.Tensor, threads: int) -> Callable[[], object]:
    """A zero-argument callable running an ONNX file with ONNX Runtime's CPU provider on ``x``.

    ``threads`` intra-op threads and no inter-op pool, as for torch. With ``OMP_WAIT_POLICY=PASSIVE``
    its worker threads do not spin between jobs either (as torch's OpenMP threads then do not);
    otherwise ONNX Runtime's default (spin a while, then sleep) applies, as OpenMP's default does.
    Subnormals are flushed to zero, as for torch.
    """
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.intra_op_num_threads, so.inter_op_num_threads = threads, 1
    if os.environ.get("OMP_WAIT_POLICY", "").upper() == "PASSIVE":
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    so.add_session_config_entry("session.set_denormal_as_zero", "1")  # as time_interleaved does for torch
    sess = ort.InferenceSession(str(onnx_path), so, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    feed = {name: x.detach().cpu().numpy()}
    return lambda: sess.run(None, feed)


def time_interleaved(runners: dict[str, Callable[[], object]], runs: int = 20, warmup: int = 3,
                     threads: int | None = None, progress: bool = False) -> dict[str, list[float]]:
    """Wall times (ms) of ``runs`` calls of each runner, interleaved; returns {name: [ms, ...]}.

    Round k calls every runner once, starting at runner k mod n, so a burst of outside load or a
    frequency change hits every runner alike and no runner always follows the same one; medians
    of interleaved runs are comparable even on a busy machine, where back-to-back blocks are not.
    ``warmup`` untimed rounds come first (oneDNN builds its kernels on the first calls).
    Subnormal floats are flushed to zero while timing (``torch.set_flush_denormal``): weights of
    pruned or sparse-trained models hold values near 1e-40 whose arithmetic is ~100x slower on
    x86 and that change no detection. ``threads`` sets torch's intra-op threads (restored after).
    """
    names = list(runners)
    old_threads = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    flushed = torch.set_flush_denormal(True)
    times: dict[str, list[float]] = {n: [] for n in names}
    try:
        for k in tqdm(range(warmup + runs), desc="timing", disable=not progress, leave=False):
            for j in range(len(names)):
                name = names[(k + j) % len(names)]
                t0 = time.perf_counter()
                runners[name]()
                if k >= warmup:
                    times[name].append((time.perf_counter() - t0) * 1e3)
    finally:
        torch.set_num_threads(old_threads)
        if flushed:
            torch.set_flush_denormal(False)
    return times


def median_p90(times: list[float]) -> tuple[float, float]:
    """(median, 90th percentile) of a list of timings."""
    t = sorted(times)
    return statistics.median(t), t[int(0.9 * (len(t) - 1))]


@torch.no_grad()
def latency(model: torch.nn.Module, img_size: int = 416, runs: int = 20, warmup: int = 3,
            threads: int | None = None, device: str | torch.device | None = None, fuse: bool = False) -> dict:
    """Median forward time (ms) of one image; returns {"ms", "p90_ms", "threads", "device", "runs"}.

    ``threads`` sets torch's intra-op thread count for the measurement (restored afterwards).
    ``fuse`` times a BN-folded copy (:meth:`Darknet.fuse`); the model itself is left as it is.
    Timing as :func:`time_interleaved` (warm-up, subnormals flushed); record :func:`conditions`
    next to the figure.
    """
    device = torch.device(device) if device else next(model.parameters()).device
    old_threads = torch.get_num_threads()
    was_training = model.training
    model.eval()
    x = torch.rand(1, 3, img_size, img_size, device=device)  # (1, 3, S, S)
    try:
        timed = copy.deepcopy(model).fuse() if fuse else model
        times = time_interleaved({"model": torch_runner(timed, x)}, runs, warmup, threads)["model"]
    finally:
        model.train(was_training)
    ms, p90 = median_p90(times)
    return {"ms": ms, "p90_ms": p90, "threads": threads or old_threads, "device": str(device), "runs": runs}


def cost_row(model: Darknet, img_size: int, latency_runs: int = 0, threads: int = 2) -> dict:
    """The cost columns of every comparison table: params, GFLOPs and (with ``latency_runs``) the
    median batch-1 CPU latency in ms of the BN-folded model, as it would be deployed."""
    row = {"params": count_params(model), "GFLOPs": gflops(model, img_size)}
    if latency_runs:
        row["latency_ms"] = latency(model, img_size, runs=latency_runs, threads=threads, device="cpu", fuse=True)["ms"]
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


def runtime_table(model: Darknet, onnx_path: str | Path, img_size: int = 128, runs: int = 20,
                  threads: int = 2) -> pd.DataFrame:
    """Batch-1 CPU latency of one model on each runtime - eager PyTorch, ``fuse()``, ONNX Runtime -
    timed interleaved in this process (``time_interleaved``); one row per runtime."""
    x = torch.rand(1, model.net.channels, img_size, img_size)
    runners = {"PyTorch (eager)": torch_runner(model.eval(), x),
               "PyTorch fuse()": torch_runner(copy.deepcopy(model).eval().fuse(), x),
               "ONNX Runtime": ort_runner(onnx_path, x, threads)}
    times = time_interleaved(runners, runs=runs, threads=threads)
    return pd.DataFrame([{"runtime": k, "ms": median_p90(v)[0], "p90_ms": median_p90(v)[1]} for k, v in times.items()])
