"""CLI verbs ``train`` (flags -> configs -> the library's training recipe) and ``partial`` (darknet's
backbone cutoff, the file a later ``train --weights`` starts from)."""
from __future__ import annotations

import json
from functools import partial
from pathlib import Path

from .common import DefaultsFormatter, UserError, add_model_args, announce_input, add_protect_args, field_default, \
    model_from_flags, protect_options
from yolocompress.compress.distill import KINDS, DistillConfig
from yolocompress.engine.precision import MODES
from yolocompress.compress.sparsity import ALL, SCHEDULES, WEIGHTINGS, SparseConfig, scopes
from yolocompress.darknet.netinput import RESIZE_MODES
from yolocompress.engine.train import TrainConfig


def add_train(sub) -> None:
    p = sub.add_parser("train", help="train a model: baseline, sparse training, finetune, distillation",
                       formatter_class=DefaultsFormatter,
                       description="Train a Darknet model on a YOLO-format dataset. The same command does "
                                   "baseline training, sparse training (--sparsity) and finetuning with "
                                   "knowledge distillation (--teacher-cfg/--teacher-weights/--distill).")
    add_model_args(p, weights_help="initial weights (.weights or .pt); omit to train from scratch")
    p.add_argument("--data", help="dataset: Ultralytics-style .yaml or darknet .data (required, except with "
                                  "--resume, which reuses the run's own)")
    p.add_argument("--out", required=True, help="run directory (refused if it exists, unless --resume/--exist-ok)")
    _add_schedule_flags(p)
    _add_run_flags(p)
    _add_augment_flags(p.add_argument_group("augmentation (training images only)"))
    _add_sparsity_flags(p.add_argument_group("sparse training (L1 on BN gamma)"))
    _add_distill_flags(p.add_argument_group("knowledge distillation"))
    p.add_argument("--cutoff", type=int, default=None, metavar="N",
                   help="load only layers < N of --weights (darknet's backbone cutoff, e.g. 74 for darknet53, "
                        "15 for yolov3-tiny); without it, weights for another class count load every layer whose "
                        "shapes match and the rest are initialised (both listed)")
    p.add_argument("--no-figures", action="store_true",
                   help="skip results.png, pr_curve.png, confusion_matrix.png and val_predictions.png")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(run=run_train)


def _add_schedule_flags(p) -> None:
    """What is trained and how fast; every default is TrainConfig's."""
    t = partial(field_default, TrainConfig)
    p.add_argument("--epochs", type=int, default=t("epochs"), help="passes over the training set")
    p.add_argument("--img-size", type=int, default=None,
                   help="square input size, px (multiple of 32); default: the model's own ([net] width of the cfg, "
                        "or what a .pt was trained at)")
    p.add_argument("--resize", choices=list(RESIZE_MODES), default=None,
                   help="how images reach the network: stretch (darknet's own training and test input) or "
                        "letterbox (aspect kept, padded); default: the model's own ([net] letter_box=1 means "
                        "letterbox, absent stretch). Recorded in config.json, the .pt and an exported cfg")
    p.add_argument("--batch-size", type=int, default=t("batch_size"), help="global batch (all processes together)")
    p.add_argument("--optimizer", choices=["sgd", "adam"], default=t("optimizer"), help="sgd or adam (AdamW)")
    p.add_argument("--lr", type=float, default=t("lr"), help="peak learning rate")
    p.add_argument("--schedule", choices=["cosine", "step"], default=t("schedule"), help="learning-rate decay")
    p.add_argument("--warmup-epochs", type=float, default=t("warmup_epochs"), help="linear lr warm-up")
    p.add_argument("--amp", choices=list(MODES), default=t("amp"),
                   help="mixed precision: auto = fp16 on CUDA, bf16 on a CPU with native bf16 units "
                        "(AVX512-BF16/AMX; ~1.5x faster there), fp32 otherwise - emulated bf16 is ~10x slower; "
                        "the choice and its reason go to the log and config.json")
    p.add_argument("--seed", type=int, default=t("seed"), help="the run's only source of randomness")
    p.add_argument("--micro-batches", type=int, default=t("micro_batches"),
                   help="split each batch into this many chunks (gradient accumulation: less memory, and "
                        "the exact arithmetic of a run on that many processes)")


def _add_run_flags(p) -> None:
    """Where and how the run executes; every default is TrainConfig's."""
    t = partial(field_default, TrainConfig)
    p.add_argument("--device", default=t("device"), help="auto, cpu, cuda, cuda:1, ...")
    p.add_argument("--workers", type=int, default=None,
                   help=f"data-loading worker processes; default: what this machine has to spare "
                        f"({auto_workers()} here: 0 on 2 cores or fewer, where a loader process takes the "
                        f"cores training needs, else half the cores up to 8). With workers > 0 a resumed "
                        f"run's augmentation differs from the uninterrupted one's")
    p.add_argument("--ema", type=float, default=t("ema"), metavar="DECAY",
                   help="evaluate and save an exponential moving average of the weights (e.g. 0.999); 0: off")
    p.add_argument("--patience", type=int, default=t("patience"),
                   help="early stopping: stop after this many evaluations without a better val mAP@0.5")
    p.add_argument("--tensorboard", action="store_true",
                   help="also log every loss term and metric to OUT/tensorboard (needs the tensorboard package)")
    p.add_argument("--eval-every", type=int, default=t("eval_every"), help="evaluate every k epochs (and after the last)")
    p.add_argument("--max-val-images", type=int, default=t("max_val_images"),
                   help="evaluate on at most this many val images")
    p.add_argument("--max-batches", type=int, default=t("max_batches"),
                   help="stop each epoch after this many batches (quick runs)")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in --out exactly where it stopped, with the run's own settings "
                        "(from its config.json); other flags are refused if they differ, except --device, "
                        "--workers and --quiet")
    p.add_argument("--exist-ok", action="store_true", help="replace the files of an existing run in --out")
    p.add_argument("--sync-bn", action="store_true", help="SyncBatchNorm across processes (torchrun, CUDA)")
    p.add_argument("--skip-bad", action="store_true",
                   help="skip images whose file or label file is unreadable (each listed in a warning) "
                        "instead of stopping at the first")


_AUGMENT_HELP = {
    "hflip": "probability of a left-right mirror", "brightness": "brightness gain drawn from 1 +- this",
    "contrast": "contrast gain drawn from 1 +- this", "saturation": "saturation gain drawn from 1 +- this",
    "hue": "hue rotation drawn from +- this, in turns", "scale": "zoom range about the centre, LOW HIGH",
    "translate": "largest shift per axis, fraction of the side", "mosaic": "probability of a 4-image mosaic",
    "min_box": "px: boxes thinner than this after augmenting are dropped",
    "min_kept": "boxes with less than this fraction of their area left in view are dropped",
}


def _add_augment_flags(g) -> None:
    """One flag per AugmentConfig field (its default), and --no-augment."""
    from dataclasses import fields
    from yolocompress.data.augment import AugmentConfig
    for f in fields(AugmentConfig):
        flag = "--" + f.name.replace("_", "-")
        if isinstance(f.default, tuple):
            g.add_argument(flag, type=float, nargs=len(f.default), default=list(f.default), metavar=("LOW", "HIGH"),
                           help=_AUGMENT_HELP[f.name])
        else:
            g.add_argument(flag, type=float, default=f.default, help=_AUGMENT_HELP[f.name])
    g.add_argument("--no-augment", action="store_true", help="train on the images as they are")


def augment_from_args(args):
    """The AugmentConfig the flags ask for (None with --no-augment; defaults where a saved run lacks them)."""
    from dataclasses import fields
    from yolocompress.data.augment import AugmentConfig
    if getattr(args, "no_augment", False):
        return None
    return AugmentConfig(**{f.name: getattr(args, f.name, f.default) for f in fields(AugmentConfig)})


def auto_workers(cpus: int | None = None) -> int:
    """Data-loader processes for this machine: 0 on 2 cores or fewer (two 2-thread processes on 2
    cores slow each other several-fold), else half the cores, at most 8."""
    import os
    cpus = cpus if cpus is not None else (os.cpu_count() or 1)
    return 0 if cpus <= 2 else min(8, cpus // 2)


def _add_sparsity_flags(g) -> None:
    """Every default but --sparsity's (0: off) is SparseConfig's."""
    s = partial(field_default, SparseConfig)
    g.add_argument("--sparsity", type=float, default=0.0, metavar="S",
                   help=f"penalty s (0: off). SGD: a rate, each step moves |gamma| by lr*s/(1-momentum) "
                        f"(the original's {s('s'):g} needs hundreds of epochs); AdamW: a threshold against each "
                        "gamma's gradient RMS, lr sets the speed - choose s between the RMS's median and 90th "
                        "percentile (benchmarks/penalty_rule.py prints them; above all of it every gamma falls "
                        "together and accuracy collapses before it recovers)")
    g.add_argument("--sparsity-schedule", choices=list(SCHEDULES), default=s("schedule"), help="how s changes")
    g.add_argument("--sparsity-scope", choices=list(scopes()), default=s("scope"), help=_scope_help())
    g.add_argument("--sparsity-weighting", choices=list(WEIGHTINGS), default=s("weighting"),
                   help="uniform: the same s for every channel (Network Slimming); flops: s x the FLOPs one "
                        "channel of its conv costs, relative to the mean (aims at costly high-resolution "
                        "channels; pair with prune --importance gamma-per-flop; with AdamW it did not pay on the "
                        "teaching model, see notebook 03)")
    g.add_argument("--decay-at", type=float, default=s("decay_at"), help="fraction of training after which s decays")
    g.add_argument("--local-keep", type=float, default=s("local_keep"),
                   help="local-decay: channels surviving a prune at this ratio get s x decay factor")
    add_protect_args(g, also=" (and penalising it, in sparse training; give prune the same flag)")


def _scope_help() -> str:
    """Which convs each --sparsity-scope penalises, the strategies read from their registry."""
    from yolocompress.compress.strategies import STRATEGIES
    return (f"{ALL}: every conv some prune can cut (for layer pruning too); a strategy's name: only the convs "
            f"that strategy prunes ({', '.join(STRATEGIES)})")


def _add_distill_flags(g) -> None:
    """Every default is DistillConfig's."""
    d = partial(field_default, DistillConfig)
    g.add_argument("--teacher-cfg", help="teacher cfg (or zoo name); not needed for a yolocompress .pt")
    g.add_argument("--teacher-weights", help="teacher weights (.weights or .pt)")
    g.add_argument("--distill", choices=list(KINDS), help="distillation variant")
    g.add_argument("--distill-weight", type=float, default=d("weight"), help="alpha, multiplies every KD term")
    g.add_argument("--temperature", type=float, default=d("temperature"), help="T of the soft targets")
    g.add_argument("--margin", type=float, default=d("margin"), help="bounded: margin m")


def _configs(args):
    tc = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, img_size=args.img_size, resize=args.resize,
                     optimizer=args.optimizer, lr=args.lr, schedule=args.schedule,
                     warmup_epochs=args.warmup_epochs, amp=args.amp, eval_every=args.eval_every,
                     seed=args.seed, workers=auto_workers() if args.workers is None else args.workers,
                     device=args.device, ema=getattr(args, "ema", 0.0), patience=getattr(args, "patience", None),
                     max_val_images=args.max_val_images, max_batches=getattr(args, "max_batches", None),
                     sync_bn=args.sync_bn, micro_batches=getattr(args, "micro_batches", 1),
                     skip_bad=getattr(args, "skip_bad", False), augment=augment_from_args(args),
                     from_scratch=args.weights is None)
    sc = SparseConfig(s=args.sparsity, schedule=args.sparsity_schedule, scope=args.sparsity_scope,
                      weighting=args.sparsity_weighting, decay_at=args.decay_at, local_keep=args.local_keep,
                      protect=protect_options(args)) if args.sparsity > 0 else None
    if args.distill and not args.teacher_weights:
        raise UserError("--distill needs --teacher-weights (and --teacher-cfg unless they are a yolocompress .pt)")
    if (args.teacher_cfg or args.teacher_weights) and not args.distill:
        raise UserError("a teacher was given but no --distill {hinton,bounded}")
    dc = DistillConfig(kind=args.distill, weight=args.distill_weight, temperature=args.temperature,
                       margin=args.margin) if args.distill else None
    return tc, sc, dc


_PATH_ARGS = ("data", "cfg", "weights", "teacher_cfg", "teacher_weights")
_RESUME_FREE = {"out", "resume", "quiet", "device", "workers", "no_figures", "tensorboard"}   # may differ from the run's own on --resume


def run_train(args) -> None:
    from yolocompress.compress.recipe import train_recipe
    from yolocompress.data.dataset import load_data_config
    from yolocompress.darknet.loader import load_model
    out = Path(args.out)
    if args.resume:
        args = _args_from_saved(args, out)
    elif not args.data:
        raise UserError("--data is required (only --resume reuses the run's own dataset)")
    data = load_data_config(args.data)
    model = load_model(out / "last.pt") if args.resume else _start_model(args, data.nc)
    spec = announce_input(model, args)
    args.img_size, args.resize = spec.size, spec.resize          # config.json records what was used
    tc, sc, dc = _configs(args)
    teacher = model_from_flags(args.teacher_cfg, args.teacher_weights, classes=args.classes, data_nc=data.nc) \
        if dc else None
    saved = {k: v for k, v in vars(args).items() if k not in ("run", "explicit")}
    saved.update({k: str(Path(saved[k]).resolve()) for k in _PATH_ARGS if saved.get(k) and Path(saved[k]).exists()})
    hooks = [tensorboard_hook(out)] if getattr(args, "tensorboard", False) else []
    result = train_recipe(model, data, tc, out, sparsity=sc, teacher=teacher, distill=dc, resume=args.resume,
                          exist_ok=args.exist_ok, progress=not args.quiet, meta={"args": saved}, hooks=hooks)
    print(f"best mAP@0.5 {result.best_map50:.4f}; weights: {out / 'best.pt'} (best), {out / 'last.pt'} (last)")
    if not args.no_figures and (out / "best.pt").is_file():
        from yolocompress.engine.figures import write_training_figures
        paths = write_training_figures(load_model(out / "best.pt"), data, out, tc.img_size, tc.max_val_images,
                                       resize=tc.resize)
        print("figures: " + ", ".join(str(p) for p in paths))


def tensorboard_hook(out: Path):
    """The --tensorboard hook logging to OUT/tensorboard; a missing package is a one-line error."""
    from yolocompress.engine.hooks import TensorBoardHook
    try:
        return TensorBoardHook(out / "tensorboard")
    except ImportError as e:
        raise UserError(str(e)) from None


def _start_model(args, nc: int):
    """The model from --cfg/--weights: loaded whole, or transferred (another class count, a cutoff)."""
    if args.weights is None:
        if args.cutoff is not None:
            raise UserError("--cutoff needs --weights (the file whose first layers are loaded)")
        return model_from_flags(args.cfg, None, classes=args.classes, data_nc=nc)
    if args.classes and args.classes != nc:
        raise UserError(f"--classes {args.classes} but the dataset has {nc} classes")
    from yolocompress.darknet.transfer import load_for_training
    model, report = load_for_training(args.cfg, args.weights, nc, args.cutoff)
    if report is not None:
        print(report.describe())
    return model


def _stored_path(value: str | None, run_dir: Path) -> str | None:
    """A path stored in config.json: absolute, or (older runs) relative to the run directory or the cwd."""
    if not value or Path(value).is_absolute():
        return value
    beside = run_dir / value
    return str(beside) if beside.exists() else value


def _args_from_saved(args, out: Path):
    """--resume: every setting comes from the run's config.json, so the run continues unchanged;
    a flag that differs from the run's setting is refused, naming it."""
    import argparse
    if not (out / "last.pt").is_file():
        raise UserError(f"--resume: {out / 'last.pt'} does not exist; nothing to resume")
    try:
        saved = json.loads((out / "config.json").read_text())["meta"]["args"]
    except (OSError, ValueError, KeyError, TypeError):
        raise UserError(f"--resume: {out / 'config.json'} is missing or holds no command-line settings; "
                        "was this run started by the train command?") from None
    saved = {**saved, **{k: _stored_path(saved.get(k), out) for k in _PATH_ARGS}}
    given = getattr(args, "explicit", set(vars(args))) - _RESUME_FREE
    conflicts = [f"--{k.replace('_', '-')} {getattr(args, k)} (the run has {saved.get(k)})" for k in sorted(given)
                 if k in saved and not _same(k, getattr(args, k), saved[k])]
    if args.exist_ok:
        conflicts.append("--exist-ok (a resumed run keeps its files)")
    if conflicts:
        raise UserError("--resume continues the run with its own settings, but these flags differ: "
                        + "; ".join(conflicts) + "; drop them, or start a new run in another --out")
    merged = dict(saved)
    merged.update(resume=True, exist_ok=False, out=args.out, run=args.run,
                  **{k: getattr(args, k) for k in _RESUME_FREE - {"out", "resume"}})
    merged = argparse.Namespace(**merged)
    _check_saved(saved, args, merged, out / "config.json")
    return merged


def _check_saved(saved: dict, args, merged, where: Path) -> None:
    """The settings read back from a run's config.json, held to the flags' own rules: each of the
    type its flag parses to (an int where the flag is an int, ...) and in the flag's range
    (``validate_args``), so a hand-edited or damaged file is named with its field instead of
    failing deep inside training."""
    from .checks import validate_args
    for key, value in saved.items():
        default = getattr(args, key, None)
        if default is None or value is None or key in _PATH_ARGS:
            continue
        kinds = (int, float) if isinstance(default, float) else (type(default),)
        if isinstance(value, bool) != isinstance(default, bool) or not isinstance(value, kinds):
            raise UserError(f"--resume: {where}: field {key!r}: expected {type(default).__name__} "
                            f"(as --{key.replace('_', '-')} takes), found {value!r}")
    try:
        validate_args(merged)
    except UserError as e:
        raise UserError(f"--resume: {where} holds a setting its flag refuses: {e}") from None


def _same(key: str, given, saved) -> bool:
    if key in _PATH_ARGS and given and saved and Path(given).exists():
        return Path(given).resolve() == Path(saved).resolve()
    return given == saved


def add_partial(sub) -> None:
    p = sub.add_parser("partial", help="write the first N layers of a model's weights (a darknet backbone cutoff)",
                       description="Darknet's partial: write OUT with the weights of layers < N, e.g. "
                                   "yolov3-tiny.conv.15; train --cfg C --weights OUT then starts from that backbone.")
    add_model_args(p, weights_required=True)
    p.add_argument("--cutoff", type=int, required=True, metavar="N", help="keep layers 0 .. N-1")
    p.add_argument("--out", dest="out_file", required=True, metavar="FILE",
                   help="the .weights-format file to write (refused if it exists)")
    p.set_defaults(run=run_partial)


def run_partial(args) -> None:
    from yolocompress.darknet.transfer import save_partial
    out = Path(args.out_file)
    if out.exists():
        raise UserError(f"{out} exists; choose another --out (nothing was written)")
    if args.cutoff < 1:
        raise UserError(f"--cutoff must be >= 1, got {args.cutoff}")
    model = model_from_flags(args.cfg, args.weights, classes=args.classes)
    n = save_partial(model, out, args.cutoff)
    print(f"wrote {out}: {n} conv layers (layers < {args.cutoff}) of {args.weights}")
