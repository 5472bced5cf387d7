"""Sparse training (Network Slimming): an L1 penalty s * |gamma| on BatchNorm scale factors.

Its subgradient ``s * sign(gamma)`` is added to ``gamma.grad`` of the penalised BN layers once per
optimizer step - after AMP has unscaled the gradients (and DDP has averaged them), before the
step - by ``SparsityHook.after_backward``, a hook of the one ``train()``. L1 (unlike weight decay,
which is L2) pushes unimportant gammas all the way to ~0, so their channels can be cut with
almost no change to the output.

Which layers are penalised follows the pruning that will be used (``scope``), derived from the
block graph built with the same protections (``SparseConfig.protect``) the prune will use:
``all`` = every prunable BN conv (for the shared and union strategies and layer pruning); a
strategy's name = the convs it can cut (``Strategy.cuttable``; ``conservative`` leaves out the
residual-tied convs, which it never prunes).

Weighting (``weighting``), beyond the seed:
* ``uniform``: every penalised channel gets the same s (Network Slimming, the seed);
* ``flops``: channel c gets s * w_c, w_c = the FLOPs one of its channels costs over the mean
  (``CostModel.relative_price``), i.e. the penalty is a FLOPs-weighted L1, s * sum_c w_c |gamma_c|
  (as in MorphNet's FLOPs regulariser, Gordon et al., CVPR 2018). A gamma then survives only
  where |dL/dgamma| > s * w_c: what it buys per FLOP it costs, the same criterion by which
  ``importance="gamma-per-flop"`` ranks channels against a GFLOPs budget. In YOLOv3's layout a
  channel of a high-resolution conv costs up to ~60x one of a 4 x 4 conv, and uniform L1 leaves
  the costly narrow layers nearly untouched (what limits a budget prune); this aims at them. On
  the teaching model under AdamW it does move the zeros into the costly layers, yet the budget
  prune - which already ranks channels by |gamma| per FLOP - finetunes to the same mAP@0.5 from
  either sparse model (measured, notebook 03).

Schedules (``schedule``):
* ``constant``: s throughout;
* ``global-decay``: s until fraction ``decay_at`` of training, then s * ``decay_factor``;
* ``local-decay``: after ``decay_at``, the channels that would survive a prune at ratio
  ``local_keep`` (the top 1 - local_keep by |gamma| over the penalised layers, recomputed every
  step) get s * ``decay_factor``; the rest keep s. The relaxed channels are the *important* ones:
  they are let go to recover accuracy while the rest keep being pushed to zero. Under ``flops``
  weighting the survivors are ranked by |gamma| / w_c, the way the budget prune ranks them.
"""
from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass

import numpy as np
import torch

from .cost import CostModel
from .graph import Graph, ProtectOptions, build_graph
from .strategies import STRATEGIES
from yolocompress.darknet.model import Darknet
from yolocompress.engine.hooks import TrainHook

SCHEDULES = ("constant", "global-decay", "local-decay")
ALL = "all"                                  # the scope that penalises every prunable conv
WEIGHTINGS = ("uniform", "flops")
HIST_EDGES = np.linspace(-5.0, 1.0, 61)     # log10 |gamma| bins for the per-epoch histograms


@dataclass(frozen=True)
class SparseConfig:
    s: float = 1e-3                  # L1 penalty on |gamma| (the original's -s / --s)
    schedule: str = "constant"       # constant | global-decay | local-decay
    scope: str = ALL                 # all | a strategy name: which BN convs are penalised
    decay_at: float = 0.5            # fraction of training after which the schedule decays
    decay_factor: float = 0.01       # s is multiplied by this where it decays
    local_keep: float = 0.85         # local-decay: prune ratio whose survivors are relaxed
    warn_drop: float = 0.05          # warn when val mAP@0.5 falls this far below its start
    weighting: str = "uniform"       # uniform | flops: s per channel, or s x its relative FLOPs price
    protect: ProtectOptions = ProtectOptions()   # the protections the prune will use (same graph)

    def __post_init__(self):
        if isinstance(self.protect, dict):                 # as to_dict() / JSON spell it
            object.__setattr__(self, "protect", ProtectOptions(**self.protect))
        if self.schedule not in SCHEDULES:
            raise ValueError(f"sparsity schedule must be one of {', '.join(SCHEDULES)}, got {self.schedule!r}")
        if self.scope not in scopes():
            raise ValueError(f"sparsity scope must be one of {', '.join(scopes())}, got {self.scope!r}")
        if self.weighting not in WEIGHTINGS:
            raise ValueError(f"sparsity weighting must be one of {', '.join(WEIGHTINGS)}, got {self.weighting!r}")
        if self.s < 0 or not 0 <= self.decay_at <= 1 or not 0 <= self.local_keep < 1:
            raise ValueError("need s >= 0, 0 <= decay_at <= 1 and 0 <= local_keep < 1")

    def to_dict(self) -> dict:
        """The settings as JSON; ``protect`` only when not the default, so the cache keys and
        records of runs made before it was a setting stay as they were."""
        d = asdict(self)
        if self.protect == ProtectOptions():
            del d["protect"]
        return d


def scopes() -> tuple[str, ...]:
    """Every ``SparseConfig.scope``: all, then each registered strategy's name."""
    return (ALL, *STRATEGIES)


def penalised_convs(blocks, scope: str = ALL, protect: ProtectOptions = ProtectOptions()) -> list[int]:
    """Layer indices of the BN convs sparse training penalises under ``scope``. ``blocks``: config
    blocks, or a ``Graph`` already built (then ``protect`` is the graph's own)."""
    graph = blocks if isinstance(blocks, Graph) else build_graph(blocks, protect)
    if scope == ALL:
        return graph.prunable()
    if scope not in STRATEGIES:
        raise ValueError(f"scope must be one of {', '.join(scopes())}, got {scope!r}")
    return STRATEGIES[scope].cuttable(graph)


def local_decay_mask(gammas: torch.Tensor, keep_ratio: float) -> torch.Tensor:
    """True for channels that survive a prune at ``keep_ratio`` (|gamma| >= the global threshold)."""
    a = gammas.abs()
    k = int(keep_ratio * a.numel())
    if k >= a.numel():
        return torch.zeros_like(a, dtype=torch.bool)
    threshold = torch.sort(a).values[k]
    return a >= threshold


def sparsity_stats(gammas: np.ndarray) -> dict:
    """Fractions of channels with |gamma| below 1e-2 and 1e-3, and the median |gamma|."""
    a = np.abs(gammas)
    return {"gamma_lt_1e-2": float((a < 1e-2).mean()), "gamma_lt_1e-3": float((a < 1e-3).mean()),
            "gamma_median": float(np.median(a))}


def channel_weights(model: Darknet, layers: list[int], weighting: str = "uniform",
                    protect: ProtectOptions = ProtectOptions()) -> torch.Tensor:
    """w_c of every channel of the BN convs ``layers``, concatenated (N,): 1 (``uniform``), or the
    relative FLOPs price of one channel of its conv (``flops``, mean 1 over the prunable convs,
    the normalisation ``plan.importance_scores`` divides by)."""
    sizes = [model.module_list[i].bn.weight.numel() for i in layers]
    if weighting == "uniform" or not layers:
        return torch.ones(sum(sizes))
    graph = build_graph(model.blocks, protect)
    relative = CostModel(graph).relative_price(layers, graph.prunable() or layers)
    return torch.cat([torch.full((n,), relative[i]) for i, n in zip(layers, sizes)])


class SparsityHook(TrainHook):
    """``train()`` hook adding s * sign(gamma) to the penalised gammas' gradients every step; the
    penalised convs are those the prune can cut under ``config.scope`` and ``config.protect``."""

    def __init__(self, model: Darknet, config: SparseConfig = SparseConfig(), baseline_map50: float | None = None):
        self.config = config
        self.layers = penalised_convs(model.blocks, config.scope, config.protect)
        self.bns = [model.module_list[i].bn for i in self.layers]
        self.weight = channel_weights(model, self.layers, config.weighting, config.protect)   # (N,) w_c
        self.baseline_map50 = baseline_map50
        self.warned = False

    def factor(self, progress: float) -> float:
        """Global multiplier of s at a point of training (global-decay only)."""
        if self.config.schedule == "global-decay" and progress >= self.config.decay_at:
            return self.config.decay_factor
        return 1.0

    def gammas(self) -> torch.Tensor:
        return torch.cat([bn.weight.detach().reshape(-1) for bn in self.bns]) if self.bns else torch.zeros(0)

    @torch.no_grad()
    def penalty(self, progress: float) -> torch.Tensor:
        """Per-channel penalty (over the penalised layers, concatenated) at ``progress``."""
        g = self.gammas()                                          # (N,)
        w = self.weight.to(g.device, g.dtype)
        s = self.config.s * self.factor(progress) * w
        if self.config.schedule == "local-decay" and progress >= self.config.decay_at:
            s[local_decay_mask(g / w, self.config.local_keep)] *= self.config.decay_factor
        return s

    @torch.no_grad()
    def after_backward(self, ctx) -> None:
        s = self.penalty(ctx.progress)
        offset = 0
        for bn in self.bns:
            n = bn.weight.numel()
            term = s[offset:offset + n].to(bn.weight.dtype) * torch.sign(bn.weight)
            if bn.weight.grad is None:
                bn.weight.grad = term.clone()
            else:
                bn.weight.grad.add_(term)
            offset += n

    # -- visibility ----------------------------------------------------------------------------
    def on_train_start(self, ctx) -> None:
        self.bns = [ctx.model.module_list[i].bn for i in self.layers]   # after any SyncBN conversion
        hist = ctx.artifacts.setdefault("gamma_hist", {"edges": HIST_EDGES.tolist(), "epochs": [], "counts": []})
        if not hist["epochs"]:
            self._record(hist, 0)

    def on_epoch_end(self, ctx, log: dict) -> None:
        self._record(ctx.artifacts["gamma_hist"], ctx.epoch + 1)
        log.update(sparsity_stats(self.gammas().float().cpu().numpy()))
        log["s_effective"] = float(self.penalty(ctx.progress).mean())
        if "map50" in log:
            if self.baseline_map50 is None:
                self.baseline_map50 = log["map50"]
            drop = self.baseline_map50 - log["map50"]
            if drop > self.config.warn_drop and not self.warned:
                self.warned = True
                warnings.warn(f"sparse training: val mAP@0.5 fell {drop:.3f} below {self.baseline_map50:.3f} "
                              f"at epoch {ctx.epoch + 1}; s={self.config.s} may be too strong (try s/2) - "
                              "a decay schedule lets accuracy recover at the end", stacklevel=2)

    def _record(self, hist: dict, epoch: int) -> None:
        a = self.gammas().abs().float().cpu().numpy()
        counts, _ = np.histogram(np.log10(np.clip(a, 10 ** HIST_EDGES[0], 10 ** HIST_EDGES[-1])), HIST_EDGES)
        hist["epochs"].append(epoch)
        hist["counts"].append(counts.tolist())


def penalised_gammas(model: Darknet, scope: str = ALL) -> np.ndarray:
    """|gamma| of every channel sparse training penalises under ``scope``, concatenated (N,)."""
    layers = model.conv_layers()
    return np.concatenate([layers[i].bn.weight.detach().abs().float().cpu().numpy()
                           for i in penalised_convs(model.blocks, scope)])


PRICE_BANDS = ((0.0, 0.5), (0.5, 1.0), (1.0, float("inf")))   # w bands: cheap, middle, costly


def zeros_by_price(model: Darknet, threshold: float = 1e-2, bands=PRICE_BANDS) -> list[dict]:
    """Where sparse training put its zeros: for each band [lo, hi) of the FLOPs price w of a channel
    (``channel_weights(..., "flops")``), the penalised channels in it, their share of all penalised
    channels, and the fraction of them with |gamma| < ``threshold``. Compares a uniform and a
    FLOPs-weighted penalty on the same architecture (notebook 03)."""
    w = channel_weights(model, penalised_convs(model.blocks), "flops").numpy()           # (N,)
    g = penalised_gammas(model)                                                          # (N,) |gamma|, same order
    rows = []
    for lo, hi in bands:
        inside = (w >= lo) & (w < hi)
        rows.append({"w band": f"[{lo:g}, {hi:g})", "channels": int(inside.sum()), "share": float(inside.mean()),
                     f"|gamma| < {threshold:g}": float((g[inside] < threshold).mean()) if inside.any() else float("nan")})
    return rows
