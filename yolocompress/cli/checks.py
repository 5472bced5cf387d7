"""The checks every verb's flags pass before any work (``validate_args``): counts and sizes
positive, input sizes multiples of the stride, numbers finite, fractions in [0, 1], the device
present, --out usable. Its own module so that ``main`` and the verbs that re-check stored settings
(``train --resume``) share it without importing each other."""
from __future__ import annotations

import math
import os
from pathlib import Path

from .common import UserError

_POSITIVE = ("epochs", "batch_size", "eval_every", "micro_batches", "max_val_images", "max_images", "train",
             "val", "img_size", "eval_size", "cutoff", "max_batches", "classes", "calib_images", "latency_threads", "latency_runs")
_NON_NEGATIVE = ("workers", "blocks", "warmup_epochs", "sparsity", "distill_weight", "margin", "max_drop")
_FRACTIONS = ("conf", "iou", "min_keep", "decay_at", "local_keep")   # in [0, 1]
_RANGES = ((_POSITIVE, lambda v: v > 0, "a positive number"),
           (_NON_NEGATIVE, lambda v: v >= 0, "a number >= 0"),
           (_FRACTIONS, lambda v: 0 <= v <= 1, "a fraction in [0, 1]"),
           (("seed",), lambda v: 0 <= v < 2 ** 63, "an integer in [0, 2**63) (torch's seed range)"))
_POSITIVE_REALS = {"lr": "a positive learning rate", "temperature": "a positive number"}   # > 0, may be tiny
_STRIDE = 32   # the largest stride of every YOLO head: input sizes must be multiples of it
_STRIDED = ("img_size", "eval_size")


def _flag(dest: str) -> str:
    return "--" + dest.replace("_", "-")


def validate_args(args) -> None:
    """Every flag in range before any work: counts and sizes positive, input sizes multiples of the
    stride, numbers finite, fractions in [0, 1], the device present, --out usable. The checks every
    verb gets run first, then the verb's own (``_VERB_CHECKS``), then --out's."""
    for check in (_check_numbers, _check_positive_reals, _check_device, *_VERB_CHECKS.get(args.verb, ()),
                  _check_out_flag):
        check(args)


def _check_numbers(args) -> None:
    for dest, v in vars(args).items():
        _check_number(dest, v, args.verb)


def _check_number(dest: str, v, verb: str) -> None:
    """One flag's value: finite, in its range (``_RANGES``), input sizes a multiple of the stride."""
    if isinstance(v, float) and not math.isfinite(v):
        raise UserError(f"{_flag(dest)} {v}: expected a finite number")
    if v is None or isinstance(v, bool) or not isinstance(v, (int, float)):
        return
    for dests, ok, expected in _RANGES:
        if dest in dests and not ok(v):
            raise UserError(f"{_flag(dest)} {v}: expected {expected}")
    if dest in _STRIDED and verb != "data" and v % _STRIDE:
        raise UserError(f"{_flag(dest)} {v}: expected a multiple of {_STRIDE} (the model's largest stride), "
                        f"e.g. {max(_STRIDE, round(v / _STRIDE) * _STRIDE)}")


def _check_positive_reals(args) -> None:
    for dest, expected in _POSITIVE_REALS.items():
        v = getattr(args, dest, None)
        if v is not None and v <= 0:
            raise UserError(f"{_flag(dest)} {v}: expected {expected}")


def _check_device(args) -> None:
    if getattr(args, "device", None):
        from yolocompress.engine.precision import pick_device
        pick_device(args.device)


def _check_ratios(args) -> None:
    from yolocompress.teach.sweep import parse_ratios
    parse_ratios(args.ratios)


def _check_export_name(args) -> None:
    name = args.name
    if not name or name != Path(name).name or name in ("..", ".") or "\\" in name:
        raise UserError(f"--name {name!r}: expected a file name stem without folders or path separators")


def _check_out_flag(args) -> None:
    if getattr(args, "out", None):
        _check_out(Path(args.out), args.verb)


_VERB_CHECKS = {"sweep": (_check_ratios,), "export": (_check_export_name,)}   # verb -> its own checks, in order


def _check_out(out: Path, verb: str) -> None:
    """--out must be a folder (or not exist yet) that we may write in; sweep/detect never write into
    a training run's directory."""
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file, expected a folder")
    if verb in ("sweep", "detect") and (out / "last.pt").exists():
        raise UserError(f"--out {out} is a training run directory (it holds last.pt); choose another folder")
    anc = out
    while not anc.exists() and anc != anc.parent:
        anc = anc.parent
    if not anc.is_dir():
        raise UserError(f"--out {out}: {anc} is a file, expected a folder")
    if not os.access(anc, os.W_OK | os.X_OK):
        raise UserError(f"--out {out}: permission denied (cannot write in {anc})")
