"""A latency budget for pruning (``prune --budget 8ms``): a cost model that predicts the batch-1 CPU
latency of any plan's compact model, fitted on this machine, in the spirit of HALP (Shen et al.,
"Structural Pruning via Latency-Saliency Knapsack", NeurIPS 2022).

GFLOPs predict latency poorly on a small model: every layer also costs a fixed launch (dispatch,
a kernel chosen, a pass over memory) and moves its output through memory, and neither shrinks
with the multiply-adds. So each surviving layer l of a plan is charged

    t_l = a + b * FLOPs_l + c * elements_l        (elements_l: its output's C x H x W)

and a plan's latency is d + sum_l t_l = d + a * layers + b * GFLOPs + c * M-elements: four numbers
fitted by least squares to the measured latency of real compact models of this model (the plan's
own strategy at several ratios, with and without dropped blocks), timed interleaved on the
runtime that will run it. ``fit_latency_model`` reports its error on those models; ``prune`` then
measures the model it wrote and prints predicted against measured.

Runtimes (``RUNTIMES``): ``fused`` - eager PyTorch after ``Darknet.fuse()`` (BN folded), the path
of the results tables' latency column; ``onnxruntime`` - the exported (fused) graph in ONNX Runtime.
"""
from __future__ import annotations

import copy
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from yolocompress.compress.cost import CostModel
from yolocompress.compress.graph import Graph
from yolocompress.darknet.cfg import infer_shapes
from yolocompress.registry import Registry

FEATURES = ("constant", "layers", "GFLOPs", "M-elements")


def _fused_runner(model, x, tmp: Path, threads: int):
    from .footprint import torch_runner
    return torch_runner(copy.deepcopy(model).eval().fuse(), x)


def _ort_runner(model, x, tmp: Path, threads: int):
    from .export import export_onnx
    from .footprint import ort_runner
    path = export_onnx(model, tmp / f"m{len(list(tmp.iterdir()))}.onnx", x.shape[-1])
    return ort_runner(path, x, threads)


@dataclass(frozen=True)
class Runtime:
    """A way to run a model for which a latency model can be fitted: ``runner(model, x, tmp,
    threads)`` returns a zero-argument callable that runs one forward of ``x``."""
    name: str
    runner: Callable


RUNTIMES = Registry("latency runtime")
RUNTIMES.register(Runtime("fused", _fused_runner))
RUNTIMES.register(Runtime("onnxruntime", _ort_runner))


class LatencyModel(CostModel):
    """``CostModel`` whose ``measure`` is predicted latency in ms (``unit = "ms"``), so a ``Budget``
    in ms resolves against it and ``plan_combined`` bisects on it; GFLOPs, channel prices and the
    |gamma| per FLOP ranking stay the parent's."""

    unit = "ms"

    def __init__(self, graph: Graph, img_size: int | None = None, coef=None, runtime: str = "fused"):
        super().__init__(graph, img_size)
        shapes = infer_shapes(graph.blocks, self.img_size, self.img_size)   # per layer (C, H, W)
        self.pixels = np.array([h * w for _, h, w in shapes], float)
        self.coef = np.zeros(len(FEATURES)) if coef is None else np.asarray(coef, float)
        self.runtime = runtime

    def features(self, plan=None) -> np.ndarray:
        """(4,) [1, surviving layers, GFLOPs, million output elements] of ``plan``'s compact model."""
        keep, dropped = (plan.keep, set(plan.dropped_layers)) if plan is not None else ({}, set())
        flat = self._kept_slots(keep, dropped)
        alive = [i for i in range(len(self.graph.layers)) if i not in dropped]
        elements = sum(int(flat[self.flat_index[i]].sum()) * self.pixels[i] for i in alive)
        gflops = sum(self.conv_flops(keep, dropped).values()) / 1e9
        return np.array([1.0, len(alive), gflops, elements / 1e6])

    def measure(self, plan=None) -> float:
        """Predicted latency (ms) of ``plan``'s compact model (None: the unpruned one)."""
        return float(self.features(plan) @ self.coef)


@dataclass
class LatencyFit:
    """A fitted ``LatencyModel`` and the models it was fitted on: their features, measured and
    predicted latency (ms)."""
    model: LatencyModel
    features: np.ndarray                     # (n, 4)
    measured: np.ndarray                     # (n,) ms
    labels: list[str] = field(default_factory=list)

    @property
    def predicted(self) -> np.ndarray:
        return self.features @ self.model.coef

    @property
    def max_error(self) -> float:
        """Largest |predicted - measured| / measured over the fitted models."""
        return float(np.max(np.abs(self.predicted - self.measured) / self.measured))

    def describe(self) -> str:
        a = dict(zip(FEATURES, self.model.coef))
        return (f"latency model ({self.model.runtime}, {self.model.img_size} px): {a['constant']:.3g} ms + "
                f"{a['layers']:.3g} ms per layer + {a['GFLOPs']:.3g} ms per GFLOP + {a['M-elements']:.3g} ms "
                f"per million output elements; fitted on {len(self.measured)} compact models, largest error "
                f"{self.max_error:.1%}")


def sample_configs(config, n_blocks: int) -> list:
    """The plans a latency model is fitted on: ``config``'s strategy at six ratios, each with no,
    half and all of ``config.drop_blocks`` (at least half of the model's blocks) dropped."""
    most = max(config.drop_blocks, n_blocks // 2)
    depths = sorted({0, most // 2, most})
    return [replace(config, ratio=r, drop_blocks=b, budget=None)
            for r in (0.0, 0.3, 0.5, 0.7, 0.85, 0.95) for b in depths]


def fit_latency_model(model, config, runtime: str = "fused", runs: int = 10, warmup: int = 3,
                      threads: int = 2, progress: bool = False) -> LatencyFit:
    """Measure the compact models of ``sample_configs(config)`` on ``runtime`` (median of ``runs``
    interleaved batch-1 forwards each, on random input) and fit ``LatencyModel``'s four
    coefficients to them by least squares. ``config``: the ``PruneConfig`` whose plan will be
    searched (its strategy, floors, protections and input size)."""
    from yolocompress.compress.graph import build_graph
    from yolocompress.compress.plan import bn_gammas, plan_combined
    from yolocompress.compress.surgery import apply_plan
    from .footprint import median_p90, time_interleaved
    make = RUNTIMES[runtime].runner
    graph = build_graph(model.blocks, config.protect)
    cost = LatencyModel(graph, config.img_size, runtime=runtime)
    gammas = bn_gammas(model)
    configs = sample_configs(config, len(graph.residual_blocks))
    x = torch.rand(1, model.net.channels, cost.img_size, cost.img_size)      # (1, C, S, S)
    feats, runners, labels = [], {}, []
    with tempfile.TemporaryDirectory() as tmp:
        for c in configs:
            plan = plan_combined(gammas, graph, c, cost)
            label, f = f"ratio {c.ratio:g}, {c.drop_blocks} blocks", cost.features(plan)
            if any(np.array_equal(f, seen) for seen in feats):
                continue                                               # the same model again
            feats.append(f)
            runners[label] = make(apply_plan(model, plan, graph).eval(), x, Path(tmp), threads)
            labels.append(label)
        times = time_interleaved(runners, runs, warmup, threads, progress=progress)
    measured = np.array([median_p90(times[k])[0] for k in labels])
    feats = np.stack(feats)
    coef, *_ = np.linalg.lstsq(feats / measured[:, None], np.ones(len(measured)), rcond=None)   # relative error
    cost.coef = coef
    return LatencyFit(cost, feats, measured, labels)


def measured_latency(model, img_size: int, runtime: str = "fused", runs: int = 20, warmup: int = 10,
                     threads: int = 2) -> float:
    """Median batch-1 latency (ms) of ``model`` on ``runtime``, timed as the fit times."""
    from .footprint import median_p90, time_interleaved
    x = torch.rand(1, model.net.channels, img_size, img_size)
    with tempfile.TemporaryDirectory() as tmp:
        runner = RUNTIMES[runtime].runner(model.eval(), x, Path(tmp), threads)
        return median_p90(time_interleaved({"m": runner}, runs, warmup, threads)["m"])[0]
