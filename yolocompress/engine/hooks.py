"""What ``train()`` plugs in, as typed protocols: a :class:`TrainHook` is called at fixed points of
the loop, a :class:`LossTerm` adds named losses to the detection loss.

Sparse training is a hook (``compress/sparsity.py``), distillation a loss term
(``compress/distill.py``). A hook subclasses :class:`TrainHook` and overrides only the methods it
needs; the others are no-ops. ``train()`` also accepts a hook that does not subclass it: such an
object is wrapped once, at the start of training, by :func:`as_hook`, which fills in the methods
it lacks with the no-ops, so the loop calls every method directly.
"""
from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from torch import Tensor

Context = Any   # ``train.Context``, the run's live objects (named here without importing train.py)

HOOK_METHODS = ("on_train_start", "after_backward", "on_epoch_end")   # the loop's call points, in order


class TrainHook:
    """Base class of ``train()`` hooks; every method is a no-op until a subclass overrides it."""

    def on_train_start(self, ctx: Context) -> None:
        """Once, before the first epoch (after a resume's restore and any SyncBN conversion)."""

    def after_backward(self, ctx: Context) -> None:
        """Every optimizer step, when the gradients are final (unscaled from AMP and, under DDP,
        averaged over processes) and the optimizer has not stepped yet."""

    def on_epoch_end(self, ctx: Context, log: dict) -> None:
        """After each epoch's evaluation; may add scalars to ``log``, the epoch's history row."""


@runtime_checkable
class LossTerm(Protocol):
    """An extra loss term: called on every (micro-)batch with the student's raw heads; returns
    named losses, each added to the total and logged by name."""

    def __call__(self, ctx: Context, images: Tensor, targets: Tensor, heads: list[Tensor]) -> dict[str, Tensor]:
        ...


class _Adapted(TrainHook):
    """A hook object that does not subclass :class:`TrainHook`: its own methods where it has them,
    the no-ops elsewhere."""

    def __init__(self, hook) -> None:
        self.hook = hook
        for name in HOOK_METHODS:
            method = getattr(hook, name, None)
            if method is not None:
                setattr(self, name, method)


def as_hook(hook) -> TrainHook:
    """``hook`` itself when it is a :class:`TrainHook`, else a wrapper with its methods and no-ops
    for those it lacks."""
    return hook if isinstance(hook, TrainHook) else _Adapted(hook)


class TensorBoardHook(TrainHook):
    """Every scalar of each epoch's history row (loss terms, lr, mAP, ...) to a TensorBoard log
    in ``log_dir``, one step per epoch. ``writer`` is any object with ``add_scalar(tag, value,
    step)`` and ``flush()``; by default torch's SummaryWriter, which needs the tensorboard package."""

    def __init__(self, log_dir, writer=None) -> None:
        if writer is None:     # checked now, opened at the start of training (after the run dir is made)
            try:
                import tensorboard  # noqa: F401
            except ImportError:
                raise ImportError("TensorBoard logging needs the tensorboard package: pip install tensorboard") from None
        self.log_dir, self.writer = log_dir, writer

    def on_train_start(self, ctx: Context) -> None:
        if self.writer is None:
            from torch.utils.tensorboard import SummaryWriter
            self.writer = SummaryWriter(str(self.log_dir))

    def on_epoch_end(self, ctx: Context, log: dict) -> None:
        step = int(log["epoch"]) if "epoch" in log else ctx.epoch + 1
        for key, value in log.items():
            if key != "epoch" and isinstance(value, (int, float)) and value == value:   # NaN: not evaluated
                self.writer.add_scalar(key, float(value), step)
        self.writer.flush()
