"""One ``train()`` for every stage: baseline, sparse training, finetuning and distillation.

Stages differ only in what they plug in (the protocols are in ``hooks.py``):
* ``hooks`` - ``TrainHook``s, whose methods ``on_train_start(ctx)``, ``after_backward(ctx)``
  (gradients are final: unscaled from AMP and, under DDP, averaged; the optimizer has not
  stepped) and ``on_epoch_end(ctx, log)`` (may add scalars to the epoch's history row) the loop
  calls; a hook that does not subclass ``TrainHook`` gets no-ops for the methods it lacks.
  Sparse training is such a hook (``compress/sparsity.py``).
* ``terms`` - ``LossTerm``s, callables ``term(ctx, images, targets, heads) -> {name: loss tensor}``
  added to the detection loss and logged by name. Distillation is such a term (``compress/distill.py``).

A run directory holds ``config.json``, ``history.csv``, ``last.pt`` (everything needed to resume
exactly: model, optimizer, scheduler, scaler, epoch, RNG states, history) and ``best.pt`` (the
model with the best val mAP@0.5). Every file is written atomically; a run never overwrites
another unless asked to.

One commit point per epoch: ``last.pt``. An epoch's files are written in this order:
1. weights finite and in range, or the run stops (nothing of this epoch is written);
2. if the epoch is the new best, its model goes to ``.best.pt.next`` (not yet the best);
3. ``last.pt``, atomically: **the commit**. It holds the whole history, so the best epoch and
   every history row follow from it alone;
4. ``.best.pt.next`` is renamed to ``best.pt`` and ``history.csv`` is rewritten from the history.
Steps 2 and 4 are derived from step 3, so a kill anywhere leaves ``best.pt``/``history.csv`` at
most one step behind ``last.pt`` and never ahead of it; ``resume`` first rolls them forward to
what ``last.pt`` says (renames a pending best of the committed epoch, deletes one of an
uncommitted epoch, rewrites ``history.csv``), then re-runs the interrupted epoch exactly.
Temporary files a SIGKILL left behind are removed when the directory is next used.
"""
from __future__ import annotations

import contextlib
import itertools
import json
import math
import os
import random
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from . import distributed as dist
from yolocompress.data.dataset import AugmentConfig, DataConfig, YoloDataset, make_loader
from yolocompress.files import atomic_torch_save, atomic_write_text, remove_stale_temps
from .loss import LossConfig, YoloLoss
from .metrics import DetectionMetrics
from yolocompress.darknet.model import Darknet, full_precision, model_dtype
from .evaluate import evaluate
from .hooks import LossTerm, TrainHook, as_hook
from .precision import AmpChoice, choose_amp, pick_device
from yolocompress.darknet.netinput import InputSpec, input_record, set_model_input
from yolocompress.darknet.weights import CHECKPOINT_FORMAT, safe_load, save_pt

PENDING_BEST = ".best.pt.next"   # the new best model, until last.pt commits its epoch
MAX_ABS_WEIGHT = 65504.0         # the largest float16: a weight beyond it means the run diverged


class TrainingError(RuntimeError):
    """Training cannot go on (a NaN/inf loss, a run directory in the way); the message says where."""


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 30                # passes over the training set
    batch_size: int = 32            # images per optimizer step (global, over all processes)
    img_size: int = 128             # px, square input, multiple of 32
    resize: str = "letterbox"       # "letterbox" (aspect kept, padded) or "stretch" (darknet's); written into the model's [net]
    optimizer: str = "sgd"          # "sgd" (momentum, nesterov) or "adam" (AdamW)
    lr: float = 0.01                # peak learning rate
    momentum: float = 0.937         # SGD momentum / Adam beta1
    weight_decay: float = 5e-4      # on conv weights only (never BN gamma: sparsity owns it)
    warmup_epochs: float = 1.0      # linear warm-up of the learning rate, in epochs
    schedule: str = "cosine"        # "cosine" to lr * lr_final, or "step" (x0.1 at 70% and 90%)
    lr_final: float = 0.05          # final lr as a fraction of lr (cosine)
    amp: str = "auto"               # "auto" (fp16 on CUDA, bf16 on a CPU with native bf16, else fp32), "off", "bf16", "fp16"
    eval_every: int = 1             # evaluate every k epochs (and always after the last)
    seed: int = 0
    workers: int = 0                # DataLoader worker processes
    ema: float = 0.0                # decay of an exponential moving average of the weights (0: off; e.g. 0.999)
    patience: int | None = None     # stop after this many evaluations without a better val mAP@0.5 (None: never)
    device: str = "auto"            # "auto", "cpu", "cuda", "cuda:1", ...
    max_batches: int | None = None  # stop each epoch after this many batches (quick runs, tests)
    max_val_images: int | None = None  # evaluate on at most this many val images
    from_scratch: bool = False      # re-initialise every weight from seed first (a run then depends on its seed only)
    init_head_bias: bool = True     # objectness/class bias priors when training from scratch
    conf_thres: float = 0.001       # evaluation score threshold
    nms_iou: float = 0.6            # evaluation NMS IoU
    sync_bn: bool = False           # SyncBatchNorm across processes (torchrun on CUDA)
    micro_batches: int = 1          # split each batch into chunks, one backward each, one step
    skip_bad: bool = False          # drop unreadable images/labels (listed, warned) instead of stopping
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    loss: LossConfig = field(default_factory=LossConfig)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        d = dict(d)
        d["augment"] = AugmentConfig(**d.get("augment", {}))
        d["loss"] = LossConfig(**d.get("loss", {}))
        return cls(**d)


@dataclass
class Context:
    """What hooks and loss terms see: the live objects of the run."""
    model: Darknet                  # the bare model (not the DDP wrapper)
    optimizer: torch.optim.Optimizer
    config: TrainConfig
    epoch: int = 0
    step: int = 0                   # optimizer steps so far
    steps_per_epoch: int = 1
    device: torch.device = torch.device("cpu")
    amp: torch.dtype | None = None  # autocast dtype of the forward passes (teachers use it too)
    precision: AmpChoice | None = None  # what --amp chose, and why
    artifacts: dict = field(default_factory=dict)  # per-run arrays kept in the checkpoint (e.g. gamma histograms)

    @property
    def dtype(self) -> torch.dtype:
        """The model's parameter dtype (float32, or float64 in exactness tests); inputs are cast to it."""
        return model_dtype(self.model)

    @property
    def progress(self) -> float:
        """Fraction of training done, in [0, 1]."""
        return self.step / max(1, self.config.epochs * self.steps_per_epoch)


@dataclass
class TrainResult:
    model: Darknet
    history: pd.DataFrame
    best_map50: float
    out: Path | None
    metrics: DetectionMetrics | None = None   # of the last evaluation


# ----------------------------------------------------------------------------- pieces

@torch.no_grad()
def reset_weights(model: torch.nn.Module) -> None:
    """PyTorch's default initialisation of every conv and BN, drawn from the current torch RNG."""
    for m in model.modules():
        if isinstance(m, (torch.nn.Conv2d, torch.nn.BatchNorm2d)):
            m.reset_parameters()


def init_head_bias(model: Darknet, img_size: int, objects_per_image: float = 4.0) -> None:
    """Prior biases for the convs that feed [yolo] heads (from-scratch training only):
    objectness starts at the expected fraction of positive cells and classes at 1/C, so the first
    steps are not spent learning that almost every cell is background."""
    from yolocompress.darknet.cfg import infer_shapes
    shapes = infer_shapes(model.blocks, img_size, img_size)
    with torch.no_grad():
        for i in model.head_indices:
            conv, yolo = model.module_list[i - 1].conv, model.module_list[i]
            if conv.bias is None:
                continue
            cells = shapes[i][1] * shapes[i][2]
            b = conv.bias.view(yolo.na, -1)                      # (A, 5 + C)
            b[:, 4] = math.log(objects_per_image / yolo.na / cells)
            b[:, 5:] = math.log(0.6 / max(yolo.classes - 0.99, 1e-3))


def make_optimizer(model: Darknet, config: TrainConfig) -> torch.optim.Optimizer:
    """Weight decay on conv weights only; BN gamma/beta and biases decay-free."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        (decay if name.endswith("conv.weight") else no_decay).append(p)
    groups = [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if config.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=config.lr, momentum=config.momentum, nesterov=True)
    if config.optimizer == "adam":
        return torch.optim.AdamW(groups, lr=config.lr, betas=(config.momentum, 0.999))
    raise ValueError(f"optimizer must be 'sgd' or 'adam', got {config.optimizer!r}")


def lr_factor(config: TrainConfig, step: int, steps_per_epoch: int) -> float:
    """Learning-rate multiplier at an optimizer step: linear warm-up, then cosine or step decay."""
    total = config.epochs * steps_per_epoch
    warm = int(config.warmup_epochs * steps_per_epoch)
    if step < warm:
        return (step + 1) / warm
    t = (step - warm) / max(1, total - warm)
    if config.schedule == "cosine":
        return config.lr_final + (1 - config.lr_final) * 0.5 * (1 + math.cos(math.pi * min(t, 1.0)))
    if config.schedule == "step":
        return 0.01 if t >= 0.9 else 0.1 if t >= 0.7 else 1.0
    raise ValueError(f"schedule must be 'cosine' or 'step', got {config.schedule!r}")


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _rng_state() -> dict:
    """Every RNG's state as plain data (tensors, ints, tuples), so checkpoints load with weights_only."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    state = {"python": random.getstate(), "numpy": (kind, torch.from_numpy(keys.astype(np.int64)), int(pos),
                                                    int(has_gauss), float(gauss)),
             "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    kind, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, gauss))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# ----------------------------------------------------------------------------- run directory

RUN_FILES = ("last.pt", "best.pt", "history.csv", "config.json", PENDING_BEST)


def prepare_run_dir(out: Path, resume: bool, exist_ok: bool, clear: bool = True) -> None:
    """Refuse to write into another run's directory unless resuming it or told to replace it;
    remove the temporary files a killed run left. ``clear=False`` leaves a replaced run's files
    in place (``train`` removes them with ``clear_run_files`` only once the data has been read and
    verified, so a bad image never costs the old run)."""
    if out.exists() and not out.is_dir():
        raise TrainingError(f"--out {out} is a file, expected a run directory")
    remove_stale_temps(out, RUN_FILES)
    if resume:
        if not (out / "last.pt").exists():
            raise TrainingError(f"--resume: {out / 'last.pt'} does not exist; nothing to resume")
        return
    if out.exists() and any(out.iterdir()):
        if not exist_ok:
            raise TrainingError(f"run directory {out} already exists and is not empty; choose another "
                                "--out, pass --resume to continue it, or --exist-ok to replace it")
        if clear:
            clear_run_files(out)
    out.mkdir(parents=True, exist_ok=True)


def clear_run_files(out: Path) -> None:
    """Remove the files of the run in ``out`` that a new run replaces."""
    for name in RUN_FILES:
        (out / name).unlink(missing_ok=True)


def best_epoch(history: list[dict]) -> int | None:
    """The epoch (1-based) whose model best.pt holds: the first epoch, then each epoch whose
    mAP@0.5 beats every earlier one (the rule ``_epochs`` applies)."""
    best, epoch = -1.0, None
    for row in history:
        m = row.get("map50", -1.0)
        if epoch is None or m > best:
            epoch = row["epoch"]
        best = max(best, m)
    return epoch


def _save_last(out: Path, ctx: Context, scheduler_state: dict, scaler, history: list, best: float,
               extra_meta: dict, ema=None) -> None:
    model = ctx.model
    payload = {"format": CHECKPOINT_FORMAT, "cfg": model.cfg_text(), "input": input_record(model),
               "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
               "meta": extra_meta, "optimizer": ctx.optimizer.state_dict(), "scheduler": scheduler_state,
               "scaler": scaler.state_dict() if scaler is not None else None, "epoch": ctx.epoch,
               "step": ctx.step, "rng": _rng_state(), "history": history, "best_map50": best,
               "best_epoch": best_epoch(history), "train_config": ctx.config.to_dict(), "artifacts": ctx.artifacts,
               "ema": ema.state_dict() if ema is not None else None}
    atomic_torch_save(payload, out / "last.pt")


def check_weights(model: torch.nn.Module, where: str) -> None:
    """Refuse to checkpoint a model with NaN/inf tensors or parameters beyond float16's range
    (a diverged run); the message names the tensor."""
    params = dict(model.named_parameters())
    for name, t in model.state_dict().items():
        if not t.is_floating_point():
            continue
        if not torch.isfinite(t).all():
            raise TrainingError(f"{where}: {name} holds NaN/inf values; the run diverged (checkpoint not "
                                "written) - try a lower --lr, a longer warm-up, or --amp off")
        peak = float(t.abs().max()) if name in params and t.numel() else 0.0
        if peak > MAX_ABS_WEIGHT:
            raise TrainingError(f"{where}: {name} reached max |w| {peak:.3g} > {MAX_ABS_WEIGHT:g}; the run "
                                "diverged (checkpoint not written) - try a lower --lr or a longer warm-up")


# ----------------------------------------------------------------------------- the loop

def _check_finite(losses: dict, epoch: int, batch: int) -> None:
    bad = {k: float(v.detach()) for k, v in losses.items() if not torch.isfinite(v)}
    if bad:
        raise TrainingError(f"non-finite loss at epoch {epoch + 1}, batch {batch + 1}: {bad}; "
                            "try a lower --lr, a longer warm-up, or --amp off")


@dataclass
class Run:
    """One training run's live objects, built once; the epoch loop reads them from here."""
    ctx: Context                    # what hooks and terms see (model, optimizer, config, step, ...)
    data: DataConfig
    train_set: YoloDataset
    sampler: Any                    # global-batch sampler, reseeded per epoch (distributed.py)
    train_loader: Any
    val_loader: Any
    loss_fn: YoloLoss
    scheduler: Any                  # LambdaLR over lr_factor
    scaler: Any                     # GradScaler under fp16 autocast, else None
    net: torch.nn.Module | None = None  # the model, or its DDP wrapper
    hooks: Sequence[TrainHook] = ()
    terms: Sequence[LossTerm] = ()
    out: Path | None = None         # run directory (None: nothing written)
    meta: dict = field(default_factory=dict)
    progress: bool = True
    history: list = field(default_factory=list)  # one dict per epoch
    best: float = -1.0              # best val mAP@0.5 so far
    start_epoch: int = 0
    ema: Any = None                 # torch's AveragedModel of the weights (config.ema > 0), else None

    @property
    def shipped(self) -> Darknet:
        """The model evaluated and saved as best.pt: the weights' moving average when EMA is on."""
        return self.ema.module if self.ema is not None else self.ctx.model


def train(model: Darknet, data: DataConfig, config: TrainConfig = TrainConfig(), out: str | Path | None = None,
          hooks: Sequence[TrainHook] = (), terms: Sequence[LossTerm] = (), resume: bool = False,
          exist_ok: bool = False, progress: bool = True, meta: dict | None = None) -> TrainResult:
    """Train ``model`` on ``data`` with ``config``; see the module docstring for hooks and terms.

    ``out``: run directory (None: nothing written). ``resume``: continue ``out/last.pt`` exactly.
    ``config.from_scratch``: re-initialise every weight from ``config.seed`` first.
    """
    if config.img_size % 32:
        raise ValueError(f"img_size {config.img_size} must be a multiple of 32")
    if not model.head_indices:
        raise TrainingError("the model has no [yolo] layer; training needs at least one detection head")
    ddp = dist.setup()
    out = Path(out) if out is not None else None
    device = _prepare(model, config, out, resume, exist_ok, ddp)
    run = _build_run(model, data, config, device, ddp)     # every image verified: only now may the old run go
    if out is not None and exist_ok and not resume and dist.is_main():
        clear_run_files(out)
    run.hooks = [as_hook(h) for h in hooks]    # every method present from here on (no-ops filled in)
    run.terms, run.out, run.meta, run.progress = terms, out, dict(meta or {}), progress
    run.ema = make_ema(run.ctx.model, config.ema)
    if resume:
        run.start_epoch, run.best, run.history = _restore(out / "last.pt", run.ctx, run.scheduler, run.scaler,
                                                          run.ema)
    run.net = dist.wrap(run.ctx.model, device) if ddp else run.ctx.model
    _announce(run)
    for hook in run.hooks:
        hook.on_train_start(run.ctx)
    try:
        metrics = _epochs(run)
    finally:
        if config.sync_bn:
            dist.revert_sync_bn(run.ctx.model)
        dist.cleanup(ddp)
    if run.ema is not None:       # what the run hands on is what it evaluated
        run.ctx.model.load_state_dict(run.ema.module.state_dict())
    hist = pd.DataFrame(run.history)
    best = float(hist["map50"].max()) if "map50" in hist and hist["map50"].notna().any() else -1.0
    return TrainResult(run.ctx.model, hist, best, out, metrics)


def _prepare(model: Darknet, config: TrainConfig, out: Path | None, resume: bool, exist_ok: bool,
             ddp: bool) -> torch.device:
    """Run directory (rank 0), seeds, initial weights; returns the device the model now lives on."""
    device = dist.device_for(pick_device(config.device)) if ddp else pick_device(config.device)
    if out is not None and dist.is_main():
        prepare_run_dir(out, resume, exist_ok, clear=False)
    dist.barrier()
    seed_everything(config.seed)
    set_model_input(model, InputSpec(config.img_size, config.resize))   # the .pt and exported cfg say it
    if config.from_scratch and not resume:
        reset_weights(model)
        if config.init_head_bias:
            init_head_bias(model, config.img_size)
    model.to(device)
    return device


def _build_run(model: Darknet, data: DataConfig, config: TrainConfig, device: torch.device, ddp: bool) -> Run:
    """Datasets (every image verified up front), loaders, optimizer, schedule, precision and loss."""
    if model.net.channels != 3:
        raise TrainingError(f"the cfg's [net] has channels={model.net.channels}, but the dataset's images are "
                            "read as RGB (3 channels); train a channels=3 model")
    on_error = "skip" if config.skip_bad else "raise"
    train_set = YoloDataset(data.train, config.img_size, augment=config.augment, nc=data.nc, on_error=on_error,
                            verify=True, resize=config.resize)
    val_images = data.val[: config.max_val_images] if config.max_val_images else data.val
    val_set = YoloDataset(val_images, config.img_size, augment=None, nc=data.nc, on_error=on_error, verify=True,
                          resize=config.resize)
    _warn_if_unlabelled(train_set)
    sampler = dist.make_sampler(train_set, config.batch_size, config.seed)
    train_loader = make_loader(train_set, 1, shuffle=False, workers=config.workers, seed=config.seed,
                               batch_sampler=sampler)
    val_loader = make_loader(val_set, max(1, dist.per_rank_batch(config.batch_size)), shuffle=False,
                             workers=config.workers)
    steps_per_epoch = min(len(sampler), config.max_batches or len(sampler))
    if steps_per_epoch == 0:
        raise TrainingError(f"the training set has {len(train_set)} images, fewer than one batch of "
                            f"{config.batch_size}; lower --batch-size")
    if config.sync_bn and ddp:
        model = dist.sync_bn(model, device)
    optimizer = make_optimizer(model, config)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(config, s, steps_per_epoch))
    amp = choose_amp(config.amp, device)
    scaler = torch.amp.GradScaler(device.type) if amp.dtype == torch.float16 else None
    ctx = Context(model, optimizer, config, steps_per_epoch=steps_per_epoch, device=device, amp=amp.dtype,
                  precision=amp)
    return Run(ctx, data, train_set, sampler, train_loader, val_loader, YoloLoss(model, config.loss), scheduler, scaler)


def _announce(run: Run) -> None:
    """The precision line in the log, and config.json (settings, stage metadata, precision chosen)."""
    amp = run.ctx.precision
    if run.progress and dist.is_main():
        tqdm.write(f"precision: {amp.name} ({amp.reason})")
    if run.out is not None and dist.is_main():
        record = {"train": run.ctx.config.to_dict(), "meta": run.meta, "precision": amp.to_dict()}
        atomic_write_text(run.out / "config.json", json.dumps(record, indent=2, default=str))


def _epochs(run: Run) -> DetectionMetrics | None:
    """The epoch loop: train, evaluate (rank 0), hooks, checkpoints (rank 0). Returns the last metrics."""
    ctx, config, metrics = run.ctx, run.ctx.config, None
    for epoch in range(run.start_epoch, config.epochs):
        if stop_early(run.history, config.patience):
            if run.progress and dist.is_main():
                tqdm.write(f"early stop before epoch {epoch + 1}: val mAP@0.5 not better in the last "
                           f"{config.patience} evaluations (best {run.best:.4f} at epoch {best_epoch(run.history)})")
            break
        ctx.epoch = epoch
        run.sampler.set_epoch(epoch)
        _seed_epoch(run.train_set, config, epoch)
        t0 = time.time()
        sums = _run_epoch(run)
        log = {"epoch": epoch + 1, "lr": ctx.optimizer.param_groups[0]["lr"], **sums, "time_s": time.time() - t0}
        if dist.is_main() and ((epoch + 1) % config.eval_every == 0 or epoch + 1 == config.epochs):
            metrics = evaluate(run.shipped, run.val_loader, run.data.names, config.img_size, ctx.device,
                               config.conf_thres, config.nms_iou, ctx.amp)
            log.update(map50=metrics.map50, map=metrics.map, precision=metrics.precision, recall=metrics.recall)
        for hook in run.hooks:
            hook.on_epoch_end(ctx, log)
        run.history.append(log)
        improved = log.get("map50", -1.0) > run.best
        run.best = max(run.best, log.get("map50", -1.0))
        if run.out is not None and dist.is_main():
            _write_epoch(run, improved)
        if run.progress and dist.is_main():
            tqdm.write(_epoch_line(log, config.epochs))
        dist.barrier()
    return metrics


def make_ema(model: Darknet, decay: float):
    """torch's AveragedModel keeping w_ema <- decay * w_ema + (1 - decay) * w after every step,
    BN statistics included (use_buffers); None when ``decay`` is 0."""
    if not decay:
        return None
    if not 0.0 < decay < 1.0:
        raise ValueError(f"ema decay must be in (0, 1) (0: off), got {decay}")
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
    return AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)


def stop_early(history: list, patience: int | None) -> bool:
    """True when the last ``patience`` evaluations all came after the best val mAP@0.5 (read from the
    history alone, so a resumed run decides as the uninterrupted one would)."""
    if not patience:
        return False
    evaluated = [row for row in history if row.get("map50") is not None and row["map50"] == row["map50"]]
    if len(evaluated) <= patience:
        return False
    best_i = max(range(len(evaluated)), key=lambda i: (evaluated[i]["map50"], -i))
    return len(evaluated) - 1 - best_i >= patience


def _seed_epoch(dataset, config: TrainConfig, epoch: int) -> None:
    """Augmentation of epoch ``epoch`` depends only on (seed, epoch, rank) - and the batches only on
    (seed, epoch), through the sampler - so a run resumed at an epoch boundary sees exactly the
    batches an uninterrupted run sees. (With ``workers > 0`` the persistent workers keep their own
    augmentation streams.)"""
    if config.workers == 0:
        dataset.reseed(config.seed * 1_000_003 + epoch * 7919 + dist.rank())


def _epoch_line(log: dict, epochs: int) -> str:
    parts = [f"epoch {log['epoch']}/{epochs}", f"loss {log['total']:.3f}"]
    if "map50" in log:
        parts.append(f"mAP@0.5 {log['map50']:.3f}  mAP@0.5:0.95 {log['map']:.3f}")
    return "  ".join(parts) + f"  ({log['time_s']:.0f}s)"


def _warn_if_unlabelled(dataset: YoloDataset) -> None:
    if len(dataset) and not any(len(lab) for lab in dataset.labels):
        warnings.warn(f"all {len(dataset)} training images have empty label files: the model can only "
                      "learn background and its mAP will be 0; check the labels/ folder", stacklevel=3)


def _write_epoch(run: Run, improved: bool) -> None:
    """The epoch's files in commit order (module docstring): best candidate, last.pt, then publish."""
    out, ctx, history, meta = run.out, run.ctx, run.history, run.meta
    check_weights(ctx.model, f"epoch {ctx.epoch + 1}")
    if improved or not (out / "best.pt").exists():
        save_pt(run.shipped, out / PENDING_BEST, epoch=ctx.epoch + 1, map50=history[-1].get("map50"), **meta)
    try:
        _save_last(out, ctx, run.scheduler.state_dict(), run.scaler, history, run.best, meta, run.ema)
    except BaseException:
        (out / PENDING_BEST).unlink(missing_ok=True)   # the epoch did not commit: drop its candidate
        raise
    _publish(out, history)


def _publish(out: Path, history: list[dict]) -> None:
    """Bring best.pt and history.csv up to the committed history (last.pt's): a pending best of the
    committed best epoch becomes best.pt, one of an uncommitted epoch is dropped."""
    pending = out / PENDING_BEST
    if pending.exists():
        epoch = safe_load(pending).get("meta", {}).get("epoch")
        if epoch == best_epoch(history):
            os.replace(pending, out / "best.pt")
        else:
            pending.unlink()
    atomic_write_text(out / "history.csv", pd.DataFrame(history).to_csv(index=False))


RESUME_KEYS = ("state_dict", "optimizer", "scheduler", "epoch", "step", "rng", "history", "best_map50")


def _restore(path: Path, ctx: Context, scheduler, scaler, ema=None) -> tuple[int, float, list]:
    ck = safe_load(path)
    missing = [k for k in RESUME_KEYS if not isinstance(ck, dict) or k not in ck]
    if missing:
        raise TrainingError(f"{path}: not a resumable training checkpoint (missing {', '.join(missing)}); "
                            "--resume needs the last.pt a run writes, not a best.pt or an exported .pt")
    if dist.is_main():
        _publish(path.parent, ck["history"])    # roll best.pt/history.csv forward to the commit
    ctx.model.load_state_dict(ck["state_dict"])
    ctx.optimizer.load_state_dict(ck["optimizer"])
    scheduler.load_state_dict(ck["scheduler"])
    if scaler is not None and ck.get("scaler"):
        scaler.load_state_dict(ck["scaler"])
    _set_rng_state(ck["rng"])
    ctx.step = ck["step"]
    ctx.artifacts = ck.get("artifacts", {})
    if ema is not None:
        if not ck.get("ema"):
            raise TrainingError(f"{path}: --ema is on but the run was saved without an average of its weights")
        ema.load_state_dict(ck["ema"])
    return ck["epoch"] + 1, ck["best_map50"], ck["history"]


def _micro(images: torch.Tensor, targets: torch.Tensor, k: int):
    """Split a batch into k contiguous chunks, re-indexing each chunk's targets from 0."""
    n = images.shape[0]
    if n % k:
        raise TrainingError(f"batch of {n} images does not split into {k} micro-batches")
    per = n // k
    for c in range(k):
        sel = (targets[:, 0] >= c * per) & (targets[:, 0] < (c + 1) * per)
        t = targets[sel].clone()
        t[:, 0] -= c * per
        yield images[c * per:(c + 1) * per], t


def _forward_losses(net, ctx: Context, loss_fn, terms, images, targets, batch_i) -> dict:
    with torch.autocast(ctx.device.type, dtype=ctx.amp, enabled=ctx.amp is not None):
        heads = net(images)
    heads = [full_precision(h) for h in heads]
    losses = loss_fn(heads, targets, images.shape[-2:])
    for term in terms:
        extra = term(ctx, images, targets, heads)
        losses.update(extra)
        losses["total"] = losses["total"] + sum(extra.values())
    _check_finite(losses, ctx.epoch, batch_i)
    return losses


def _run_epoch(run: Run) -> dict:
    """One pass; returns the mean of every loss term over the epoch.

    Gradient scale: the loss is (images in the batch) x (weighted means), so under DDP, where
    gradients are averaged over processes, each process's loss is multiplied by the world size:
    the step then equals one process training on the whole global batch. With ``micro_batches``
    the chunks' gradients simply add up, which reproduces an N-process run in one process.
    """
    ctx, sums, n = run.ctx, {}, 0
    run.net.train()
    bar = tqdm(itertools.islice(run.train_loader, ctx.steps_per_epoch), total=ctx.steps_per_epoch,
               desc=f"epoch {ctx.epoch + 1}/{ctx.config.epochs}", leave=False,
               disable=not (run.progress and dist.is_main()))
    for batch_i, (images, targets, _) in enumerate(bar):
        for key, v in _train_step(run, images, targets, batch_i).items():
            sums[key] = sums.get(key, 0.0) + v
        n += 1
        bar.set_postfix({key: f"{v / n:.3f}" for key, v in sums.items()})
    return {key: v / max(n, 1) for key, v in sums.items()}


def _train_step(run: Run, images: torch.Tensor, targets: torch.Tensor, batch_i: int) -> dict[str, float]:
    """One optimizer step on one (per-process) batch; micro-batches add up their gradients.
    Returns the batch's loss terms."""
    net, ctx, scaler = run.net, run.ctx, run.scaler
    images = images.to(ctx.device, dtype=ctx.dtype, non_blocking=True)     # (B, 3, S, S)
    targets = targets.to(ctx.device)                                        # (n, 6): image, class, cx, cy, w, h
    ctx.optimizer.zero_grad(set_to_none=True)
    k, scale, out = ctx.config.micro_batches, dist.world(), {}
    for c, (im, t) in enumerate(_micro(images, targets, k)):
        sync = contextlib.nullcontext() if c == k - 1 or not hasattr(net, "no_sync") else net.no_sync()
        with sync:
            losses = _forward_losses(net, ctx, run.loss_fn, run.terms, im, t, batch_i)
            total = losses["total"] * scale
            (scaler.scale(total) if scaler is not None else total).backward()
        for key, v in losses.items():
            out[key] = out.get(key, 0.0) + float(v.detach()) / k
    if scaler is not None:
        scaler.unscale_(ctx.optimizer)
    for hook in run.hooks:
        hook.after_backward(ctx)
    if scaler is not None:
        scaler.step(ctx.optimizer)
        scaler.update()
    else:
        ctx.optimizer.step()
    run.scheduler.step()
    ctx.step += 1
    if run.ema is not None:
        run.ema.update_parameters(ctx.model)
    return out
