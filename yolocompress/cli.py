"""``python -m yolocompress <verb>``: a thin command line over the package's functions.

Each verb lives in a small ``_add_<verb>`` function that declares its flags and a ``_run_<verb>``
that calls the library. A user's mistake (bad cfg, weights that do not fit, malformed dataset,
an existing run directory) prints one clear ``error:`` line and exits with status 2 - never a
traceback from deep inside torch.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .cfg import CfgError
from .weights import WeightsError

USER_ERRORS = (CfgError, WeightsError, FileExistsError, FileNotFoundError)


class UserError(ValueError):
    """A mistake in what the user asked for; printed as one line, exit status 2."""


def _user_errors() -> tuple:
    errors = list(USER_ERRORS) + [UserError]
    try:
        from .data import DataError
        errors.append(DataError)
    except ImportError:  # pragma: no cover - data.py always ships
        pass
    return tuple(errors)


def resolve_cfg(cfg: str, classes: int | None = None):
    """A cfg path, or the name of a zoo architecture (``teach``, ``yolov3``, ...) -> blocks."""
    from . import zoo
    from .cfg import read_cfg
    if Path(cfg).exists():
        if classes is not None:
            raise UserError(f"--classes only applies to zoo names, but '{cfg}' is a file")
        return read_cfg(cfg)
    if cfg in zoo.ARCHITECTURES:
        return zoo.blocks(cfg, classes)
    raise UserError(f"cfg '{cfg}' is neither a file nor an architecture name "
                    f"({', '.join(zoo.ARCHITECTURES)})")


# ----------------------------------------------------------------------------- info

def _add_info(sub) -> None:
    p = sub.add_parser("info", help="per-layer table and totals (params, GFLOPs) of a cfg",
                       description="Print a Darknet cfg's layers with output shapes, parameters and "
                                   "GFLOPs (2 x conv multiply-accumulates, torch's FLOP counter).")
    p.add_argument("cfg", help="a .cfg file, or a zoo name: teach, yolov3, yolov3-spp, yolov3-tiny, "
                               "yolov4, yolov4-tiny")
    p.add_argument("--img-size", type=int, default=None,
                   help="square input size in px (default: the cfg's [net] width)")
    p.add_argument("--classes", type=int, default=None, help="class count, for zoo names only")
    p.add_argument("--json", action="store_true", help="print a JSON summary instead of the table")
    p.set_defaults(run=_run_info)


def _run_info(args) -> None:
    from .model import Darknet
    from .profile import layer_table, summarize
    blocks = resolve_cfg(args.cfg, args.classes)
    size = args.img_size or blocks[0].width
    if size % 32:
        raise UserError(f"--img-size {size} must be a multiple of 32")
    model = Darknet(blocks)
    summary = summarize(model, size)
    if args.json:
        print(json.dumps(summary.as_dict()))
        return
    table = layer_table(model, size)
    with _pandas_wide():
        print(table.to_string(index=False, formatters={"GFLOPs": "{:.3f}".format,
                                                       "params": "{:,}".format}))
    print(f"\n{args.cfg} @ {size}x{size}: {summary.layers} layers, {summary.params:,} parameters, "
          f"{summary.gflops:.3f} GFLOPs (2 x conv MACs), heads {summary.heads}")


class _pandas_wide:
    def __enter__(self):
        import pandas as pd
        self._ctx = pd.option_context("display.width", 200, "display.max_rows", None)
        self._ctx.__enter__()

    def __exit__(self, *exc):
        self._ctx.__exit__(*exc)


# ----------------------------------------------------------------------------- main

VERBS = [_add_info]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m yolocompress",
        description="Shrink Darknet YOLO detectors: train, sparse-train, prune channels and layers, "
                    "finetune with distillation, export back to Darknet.")
    sub = parser.add_subparsers(dest="verb", metavar="<verb>", required=True)
    for add in VERBS:
        add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.run(args)
    except _user_errors() as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 0
