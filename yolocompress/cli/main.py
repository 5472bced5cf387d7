"""``python -m yolocompress <verb>``: a thin command line over the package's functions.

Each verb lives in a small ``_add_<verb>`` function that declares its flags and a ``_run_<verb>``
that calls the library. A user's mistake (bad cfg, weights that do not fit, malformed dataset,
an existing run directory, a flag out of range) and an OS fault (permission denied, disk full, a
file where a folder should be) print one clear ``error:`` line and exit with status 2 - never a
traceback from deep inside torch. Flags are checked up front (``validate_args``), before any
work, so nothing runs that should not and no half set of outputs is written.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from yolocompress.darknet.cfg import CfgError
from .checks import validate_args  # noqa: F401  (the verbs' checks; tests name it here)
from .common import UserError
from yolocompress.darknet.weights import WeightsError

USER_ERRORS = (CfgError, WeightsError, FileExistsError, FileNotFoundError, UserError)


def _user_errors() -> tuple:
    """Error types that mean "the user asked for something wrong": one line, exit status 2."""
    from yolocompress.data.dataset import DataError
    from yolocompress.deploy.detect import DetectError
    from yolocompress.compress.distill import DistillError
    from yolocompress.engine.precision import DeviceError
    from yolocompress.compress.plan import PlanError
    from yolocompress.engine.train import TrainingError
    return USER_ERRORS + (DataError, DetectError, DeviceError, DistillError, PlanError, TrainingError)


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
    p.add_argument("--names", help="class names (.names, .data or yaml): checked against the cfg's classes= "
                                   "and printed")
    p.set_defaults(run=_run_info)


def _run_info(args) -> None:
    from yolocompress.darknet.model import Darknet
    from yolocompress.deploy.footprint import layer_table, summarize
    if args.classes is not None and Path(args.cfg).exists():
        raise UserError(f"--classes only applies to zoo names, but '{args.cfg}' is a file")
    from yolocompress.darknet.loader import architecture
    blocks = architecture(args.cfg, args.classes)
    size = args.img_size or blocks[0].width
    if size % 32:
        raise UserError(f"--img-size {size} must be a multiple of 32")
    model = Darknet(blocks)
    summary = summarize(model, size)
    names = _info_names(args.names, model.num_classes) if model.head_indices else ()
    if args.json:
        print(json.dumps({**summary.as_dict(), **({"names": list(names)} if names else {})}))
        return
    table = layer_table(model, size)
    with _pandas_wide():
        print(table.to_string(index=False, formatters={"GFLOPs": "{:.3f}".format,
                                                       "params": "{:,}".format}))
    print(f"\n{args.cfg} @ {size}x{size}: {summary.layers} layers, {summary.params:,} parameters, "
          f"{summary.gflops:.3f} GFLOPs (2 x conv MACs), heads {summary.heads}")
    if names:
        print(f"{len(names)} classes: {', '.join(names)}")


def _info_names(path: str | None, classes: int) -> tuple[str, ...]:
    """--names: the class names, checked against the cfg's classes= (empty without --names)."""
    if not path:
        return ()
    from yolocompress.data.names import check_names, load_names
    return check_names(load_names(path), classes, path)


class _pandas_wide:
    def __enter__(self):
        import pandas as pd
        self._ctx = pd.option_context("display.width", 200, "display.max_rows", None)
        self._ctx.__enter__()

    def __exit__(self, *exc):
        self._ctx.__exit__(*exc)


# ----------------------------------------------------------------------------- data

def _add_data(sub) -> None:
    p = sub.add_parser("data", help="generate the bundled dataset, or check a YOLO-format dataset",
                       description="'data make' writes the synthetic shapes dataset (deterministic, no "
                                   "downloads); 'data check' validates a dataset and prints its statistics.")
    verbs = p.add_subparsers(dest="data_verb", metavar="{make,check}", required=True)
    from yolocompress.data.synth import BUNDLED as b      # the defaults of data make are the bundled set's
    m = verbs.add_parser("make", help="generate the synthetic shapes dataset")
    m.add_argument("--out", default="data/shapes", help="output folder (default data/shapes)")
    m.add_argument("--train", type=int, default=b.n_train, help=f"training images (default {b.n_train})")
    m.add_argument("--val", type=int, default=b.n_val, help=f"validation images (default {b.n_val})")
    m.add_argument("--img-size", type=int, default=b.img_size, help=f"image side, px (default {b.img_size})")
    m.add_argument("--seed", type=int, default=b.seed)
    m.add_argument("--classes", type=int, default=b.n_classes,
                   help="how many classes to draw: the first N of circle, hexagon, square, rhombus, "
                        f"triangle, star, cross, ring (default {b.n_classes}, the bundled set: circles only; "
                        "8 = every class, a task the teaching model is barely large enough for)")
    m.add_argument("--labelled", type=int, default=0, metavar="K",
                   help="label only the first K of the drawn classes; the others stay in the images "
                        "as unlabelled look-alikes (default 0 = label all; --classes 8 --labelled 1 = find the circles "
                        "among the other seven shapes, where the width-8 teaching model scored mAP@0.5 0.002 after "
                        "5 epochs, its loss flat through epoch 7)")
    m.add_argument("--workers", type=int, default=2, help="processes")
    m.add_argument("--overwrite", action="store_true", help="replace an existing dataset in --out")
    m.set_defaults(run=_run_data_make)
    c = verbs.add_parser("check", help="validate a dataset (.yaml or .data) and print statistics")
    c.add_argument("data", help="dataset .yaml or .data")
    c.add_argument("--skip-bad", action="store_true", help="skip bad images instead of stopping at the first")
    c.set_defaults(run=_run_data_check)


def _run_data_make(args) -> None:
    from yolocompress.data.synth import ShapesConfig, make_shapes
    try:
        config = ShapesConfig(n_train=args.train, n_val=args.val, img_size=args.img_size, seed=args.seed,
                              n_classes=args.classes, n_labelled=args.labelled)
    except ValueError as e:
        raise UserError(f"data make: {e}") from None
    try:
        path = make_shapes(args.out, config, workers=args.workers, overwrite=args.overwrite)
    except FileExistsError as e:
        raise UserError(str(e).replace("pass overwrite=True or use ensure_shapes", "pass --overwrite to replace it")) \
            from None
    print(f"wrote {args.train} train + {args.val} val images; dataset: {path}")


def _run_data_check(args) -> None:
    from yolocompress.data.dataset import YoloDataset, load_data_config
    data = load_data_config(args.data)
    for split in ("train", "val"):
        ds = YoloDataset(getattr(data, split), 32, augment=None, nc=data.nc, cache=False,
                         on_error="skip" if args.skip_bad else "raise", verify=True)
        n_obj = sum(len(l) for l in ds.labels)
        empty = sum(len(l) == 0 for l in ds.labels)
        print(f"{split}: {len(ds)} images ({len(ds.skipped)} skipped), {n_obj} objects, {empty} without objects")
        for reason in ds.skipped[:10]:
            print("  skipped:", reason)
        if n_obj == 0:
            print(f"warning: every {split} label file is empty; a model trained on it learns only background")
    print(f"{data.nc} classes: {', '.join(data.names)}")


# ----------------------------------------------------------------------------- demo

def _add_demo(sub) -> None:
    p = sub.add_parser("demo", help="run the whole pipeline on the bundled data and write its report",
                       description="Baseline, sparse training, the three channel strategies, layer-only and "
                                   "combined pruning with their controls, finetuning with and without "
                                   "distillation, export; writes results.md, results.json and PNG figures. "
                                   "Finished stages are reused, so a stopped run resumes.")
    p.add_argument("--preset", choices=["small", "full", "quick"], default="small",
                   help="small: every stage in minutes (make demo); full: the published results that "
                        "regenerate docs/ (make results, hours on 2 cores); quick: a smoke run in seconds")
    p.add_argument("--quick", action="store_true", help="the same as --preset quick")
    p.add_argument("--out", default=None, help="run directory (default: runs/demo for full, runs/demo-PRESET otherwise)")
    p.add_argument("--docs", default=None, help="where results.md, results.json and figures go (default: OUT/report)")
    p.add_argument("--data", default="data/shapes/data.yaml", help="dataset yaml (default the bundled one)")
    p.add_argument("--readme", default=None,
                   help="also rewrite the results block of this README from the new rows (make results: README.md)")
    p.add_argument("--jobs", type=int, default=2,
                   help="train this many stages at once, each in its own process with cores/jobs threads "
                        "(default 2: one process keeps only ~1.2 of 2 cores busy); 1: one after another")
    p.add_argument("--dry-run", action="store_true",
                   help="train nothing: list every training stage with its epochs and estimated minutes "
                        "(fitted to the per-epoch times of the committed full run, docs/pack), and the total")
    p.set_defaults(run=_run_demo)


def _dry_run(pc, docs_of_record: Path, jobs: int) -> None:
    """``demo --dry-run``: the estimate of ``teach.estimate``, or why there is none."""
    from yolocompress.teach.estimate import describe, estimate, fit_epoch_cost
    cost = fit_epoch_cost(docs_of_record)
    if cost is None:
        raise UserError(f"no estimate: {docs_of_record}/pack has no histories of a full run to time epochs by "
                        "(make results writes them)")
    print(describe(estimate(pc, cost), cost, docs_of_record, jobs))


def _check_readme(readme: Path) -> None:
    """--readme before any training: the file must exist and hold the results block's markers
    (otherwise the block would be skipped silently after hours of work)."""
    from yolocompress.teach.report import README_END, README_START
    if not readme.is_file():
        raise UserError(f"--readme {readme} does not exist")
    text = readme.read_text(errors="replace")
    missing = [m for m in (README_START, README_END) if m not in text]
    if missing:
        raise UserError(f"--readme {readme} has no results block to rewrite: the line {missing[0]!r} is missing")


def _run_demo(args) -> None:
    from yolocompress.teach.pipeline import PRESETS
    from yolocompress.teach.prefetch import prefetch
    from yolocompress.teach.report import run_all
    if args.jobs < 1:
        raise UserError(f"--jobs must be at least 1, got {args.jobs}")
    preset = "quick" if args.quick else args.preset
    out = args.out or ("runs/demo" if preset == "full" else f"runs/demo-{preset}")
    docs = Path(args.docs) if args.docs else Path(out) / "report"
    pc = PRESETS[preset](data=args.data, runs=out)
    if args.readme:
        _check_readme(Path(args.readme))
    if args.dry_run:
        return _dry_run(pc, Path("docs"), args.jobs)
    print(f"demo --preset {preset}: runs in {out}, report in {docs}")
    started = time.time()
    if args.jobs > 1:
        prefetch(pc, args.jobs)
    run_all(pc, docs, Path(args.readme) if args.readme else None, started=started, jobs=args.jobs)
    print(f"done in {(time.time() - started) / 60:.1f} min: {docs / 'results.md'}")


# ----------------------------------------------------------------------------- main

def _verbs() -> list:
    """Each verb's ``add_<verb>``, in --help's order; a verb lives in the module named for its stage."""
    from .deploy import add_detect, add_export
    from .evaluate import add_eval
    from .prune import add_prune, add_sweep
    from .train import add_partial, add_train
    return [_add_info, _add_data, add_train, add_partial, add_eval, add_detect, add_prune, add_sweep, add_export, _add_demo]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="yolocompress",
        description="Shrink Darknet YOLO detectors: train, sparse-train, prune channels and layers, "
                    "finetune with distillation, export back to Darknet.")
    from yolocompress import __version__
    parser.add_argument("--version", action="version", version=f"yolocompress {__version__}")
    from functools import partial
    from .common import DefaultsFormatter   # every verb's --help shows its defaults
    sub = parser.add_subparsers(dest="verb", metavar="<verb>", required=True,
                                parser_class=partial(argparse.ArgumentParser, formatter_class=DefaultsFormatter))
    for add in _verbs():
        add(sub)
    return parser


def explicit_dests(parser: argparse.ArgumentParser, argv: list[str], verb: str) -> set[str]:
    """The dests of the options the user typed (abbreviations included), for --resume's conflict check."""
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices[verb]
    opts = {o: a.dest for a in sub._actions for o in a.option_strings}
    found = set()
    for tok in argv:
        if tok.startswith("--"):
            name = tok.split("=", 1)[0]
            hits = {opts[o] for o in opts if o == name} or {opts[o] for o in opts if o.startswith(name)}
            found |= hits if len(hits) == 1 else set()
    return found


def _one_line(e: BaseException) -> str:
    from yolocompress.files import os_error_message
    if isinstance(e, OSError) and e.errno is not None:
        return os_error_message(e)
    return " ".join(str(e).split()) or type(e).__name__


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    args.explicit = explicit_dests(parser, argv, args.verb)
    try:
        validate_args(args)
        args.run(args)
    except _user_errors() as e:
        print(f"error: {_one_line(e)}", file=sys.stderr)
        return 2
    except OSError as e:        # permission denied, disk full, a file where a folder should be, ...
        print(f"error: {_one_line(e)}", file=sys.stderr)
        return 2
    except (MemoryError, RuntimeError) as e:   # torch reports a failed allocation as RuntimeError
        if not isinstance(e, MemoryError) and "allocate" not in str(e):
            raise
        print(f"error: out of memory ({_one_line(e)[:200]}); try a smaller --batch-size or --img-size",
              file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 0
