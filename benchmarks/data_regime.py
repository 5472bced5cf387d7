"""Does the 20% GFLOPs budget prune keep its same-epoch control's mAP on a given version of the
bundled set? The demo's main chain only - baseline -> sparse -> the budget
prune (`pipeline.budget_spec`) -> finetune, beside the same-epoch control - with the demo's own
cached stage functions and settings. Prints one JSON line per stage, then the gap.

`--shapes` changes the generator's settings (`synth.ShapesConfig` fields, from the bundled set's
`synth.BUNDLED`: one class; `--shapes n_classes=8` is the eight-class set); the set is then made
in its own folder and the runs go to their own directory, so nothing of the bundled set or of
runs/demo is touched. Without `--shapes`, it runs on data/shapes into runs/demo, and `make results`
reuses every stage it trained.
`--width W` builds the teaching model at base width W, and `--set FIELD=VALUE` changes any
PipelineConfig number or text (e.g. `baseline_epochs=90`); with either, runs go to runs/NAME.

    OMP_WAIT_POLICY=PASSIVE python benchmarks/data_regime.py
    OMP_WAIT_POLICY=PASSIVE python benchmarks/data_regime.py --name c8 --shapes n_classes=8
    OMP_WAIT_POLICY=PASSIVE python benchmarks/data_regime.py --name c8-w6 --width 6 --shapes n_classes=8
    OMP_WAIT_POLICY=PASSIVE python benchmarks/data_regime.py --name c8-long --shapes n_classes=8 --set baseline_epochs=90
"""
import argparse
import dataclasses
import json
import time

import torch

from yolocompress.teach import pipeline as pl

from yolocompress.darknet import zoo
from yolocompress.data.synth import BUNDLED, ShapesConfig, ensure_shapes


def shapes_config(pairs: list[str]) -> ShapesConfig:
    """The bundled set's ShapesConfig with `field=value` overrides, each value cast to the field's type."""
    defaults = BUNDLED
    over = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not hasattr(defaults, key):
            fields = ", ".join(f.name for f in dataclasses.fields(ShapesConfig))
            raise SystemExit(f"--shapes: expected field=value with a field among {fields}; got {pair!r}")
        over[key] = type(getattr(defaults, key))(value)
    return dataclasses.replace(defaults, **over)


def pipeline_overrides(pairs: list[str]) -> dict:
    """PipelineConfig fields from `field=value` pairs, each value cast to the field's default's type."""
    defaults, over = pl.PipelineConfig(), {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        default = getattr(defaults, key, None)
        if not sep or key not in {f.name for f in dataclasses.fields(pl.PipelineConfig)} \
                or not isinstance(default, (int, float, str)):
            raise SystemExit(f"--set: expected field=value with a number or text field of PipelineConfig; got {pair!r}")
        over[key] = value.lower() in ("1", "true", "yes") if isinstance(default, bool) else type(default)(value)
    return over


def add_regime_args(ap: argparse.ArgumentParser) -> None:
    """--threads, --shapes and --name, shared with the other probes of issue 15."""
    ap.add_argument("--threads", type=int, default=2, help="torch threads (never more than cores over processes)")
    ap.add_argument("--shapes", nargs="*", default=[], metavar="FIELD=VALUE",
                    help="generator settings that differ from the bundled set's (synth.ShapesConfig)")
    ap.add_argument("--name", default="regime", help="with --shapes, --set or --width: runs/NAME (and data/shapes-NAME)")
    ap.add_argument("--set", nargs="*", default=[], metavar="FIELD=VALUE",
                    help="PipelineConfig settings that differ from the demo's (e.g. finetune_epochs=20); "
                         "runs go to runs/NAME")
    ap.add_argument("--width", type=int, default=None,
                    help="base width of the teaching model (zoo.teach; default: its own, 8); runs go to runs/NAME")


def regime_config(args: argparse.Namespace) -> pl.PipelineConfig:
    """The demo's settings; with --shapes, on that set (made when missing) and in its own runs dir."""
    torch.set_num_threads(args.threads)
    pc = pl.PipelineConfig(**pipeline_overrides(args.set))
    if args.set:
        pc = dataclasses.replace(pc, runs=f"runs/{args.name}")
    shapes = shapes_config(args.shapes)
    if args.width is not None:         # cfg text: the pipeline builds any architecture load_model reads
        pc = dataclasses.replace(pc, arch=zoo.cfg_text("teach", len(shapes.names), width=args.width),
                                 runs=f"runs/{args.name}")
    if not args.shapes:
        return pc
    data = ensure_shapes(f"data/shapes-{args.name}", shapes)
    return dataclasses.replace(pc, data=str(data), runs=f"runs/{args.name}")


def log(stage: pl.Stage, tag: str) -> pl.Stage:
    """One JSON line with the stage's size, cost and accuracy."""
    keys = ("model", "epochs_total", "params", "GFLOPs", "map50", "map", "time_s")
    print(json.dumps({k: stage.row.get(k) for k in keys} | {"tag": tag}), flush=True)
    return stage


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_regime_args(ap)
    pc = regime_config(ap.parse_args())
    t0 = time.time()
    base = log(pl.baseline(pc, progress=False), "baseline")
    sp = log(pl.sparse(pc, progress=False), "sparse")
    pr = log(pl.prune_budget(pc, sp), "budget what-if")
    ft = log(pl.finetune(pc, pr, progress=False), "budget ft")
    ctl = log(pl.control_same_epochs(pc, sp, progress=False), "control")
    print(f"GFLOPs {ft.row['GFLOPs'] / base.row['GFLOPs']:.3f} of the baseline; "
          f"map50 gap {ft.row['map50'] - ctl.row['map50']:+.3f}; done in {time.time() - t0:.0f} s", flush=True)


if __name__ == "__main__":
    main()
