"""CLI verbs ``train``, ``eval`` and ``detect``: flags -> configs -> the library's functions."""
from __future__ import annotations

import json
from pathlib import Path

from .cli_common import UserError, add_model_args, build_model, print_table


def add_train(sub) -> None:
    p = sub.add_parser("train", help="train a model: baseline, sparse training, finetune, distillation",
                       description="Train a Darknet model on a YOLO-format dataset. The same command does "
                                   "baseline training, sparse training (--sparsity) and finetuning with "
                                   "knowledge distillation (--teacher-cfg/--teacher-weights/--distill).")
    add_model_args(p, weights_help="initial weights (.weights or .pt); omit to train from scratch")
    p.add_argument("--data", help="dataset: Ultralytics-style .yaml or darknet .data (required, except with "
                                  "--resume, which reuses the run's own)")
    p.add_argument("--out", required=True, help="run directory (refused if it exists, unless --resume/--exist-ok)")
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--img-size", type=int, default=128, help="square input size, px (multiple of 32)")
    p.add_argument("--batch-size", type=int, default=32, help="global batch size (all processes together)")
    p.add_argument("--optimizer", choices=["sgd", "adam"], default="sgd")
    p.add_argument("--lr", type=float, default=0.01, help="peak learning rate")
    p.add_argument("--schedule", choices=["cosine", "step"], default="cosine")
    p.add_argument("--warmup-epochs", type=float, default=1.0)
    p.add_argument("--amp", choices=["auto", "off", "bf16", "fp16"], default="auto",
                   help="mixed precision: auto = fp16 on CUDA, off on CPU; bf16 is ~1.8x faster on recent CPUs")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, ...")
    p.add_argument("--workers", type=int, default=0, help="data-loading worker processes")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--eval-every", type=int, default=1, help="evaluate every k epochs (and after the last)")
    p.add_argument("--max-val-images", type=int, default=None, help="evaluate on at most this many val images")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in --out exactly where it stopped, with the run's own settings "
                        "(from its config.json); other flags are refused if they differ, except --device, "
                        "--workers and --quiet")
    p.add_argument("--exist-ok", action="store_true", help="replace the files of an existing run in --out")
    p.add_argument("--sync-bn", action="store_true", help="SyncBatchNorm across processes (torchrun, CUDA)")
    p.add_argument("--skip-bad", action="store_true",
                   help="skip images whose file or label file is unreadable (each listed in a warning) "
                        "instead of stopping at the first")
    p.add_argument("--micro-batches", type=int, default=1,
                   help="split each batch into this many chunks (gradient accumulation: less memory, and "
                        "the exact arithmetic of a run on that many processes)")
    s = p.add_argument_group("sparse training (L1 on BN gamma)")
    s.add_argument("--sparsity", type=float, default=0.0, metavar="S", help="penalty s (0: off). SGD (upstream): ~1e-3; AdamW: ~0.1 "
                        "(s competes with Adam-normalised gradients)")
    s.add_argument("--sparsity-schedule", choices=["constant", "global-decay", "local-decay"], default="constant")
    s.add_argument("--sparsity-scope", choices=["all", "conservative"], default="all",
                   help="all: for shared/union/layer pruning; conservative: skip residual-tied convs")
    s.add_argument("--decay-at", type=float, default=0.5, help="fraction of training after which s decays")
    s.add_argument("--local-keep", type=float, default=0.85,
                   help="local-decay: channels surviving a prune at this ratio get s x 0.01")
    d = p.add_argument_group("knowledge distillation")
    d.add_argument("--teacher-cfg", help="teacher cfg (or zoo name); not needed for a yolocompress .pt")
    d.add_argument("--teacher-weights", help="teacher weights (.weights or .pt)")
    d.add_argument("--distill", choices=["hinton", "bounded"], help="distillation variant")
    d.add_argument("--distill-weight", type=float, default=1.0, help="alpha, multiplies every KD term")
    d.add_argument("--temperature", type=float, default=3.0)
    d.add_argument("--margin", type=float, default=0.0, help="bounded: margin m")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(run=run_train)


def _configs(args):
    from .data import AugmentConfig
    from .distill import DistillConfig
    from .sparsity import SparseConfig
    from .train import TrainConfig
    tc = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, img_size=args.img_size,
                     optimizer=args.optimizer, lr=args.lr, schedule=args.schedule,
                     warmup_epochs=args.warmup_epochs, amp=args.amp, eval_every=args.eval_every,
                     seed=args.seed, workers=args.workers, device=args.device,
                     max_val_images=args.max_val_images, sync_bn=args.sync_bn,
                     micro_batches=getattr(args, "micro_batches", 1), skip_bad=getattr(args, "skip_bad", False),
                     augment=AugmentConfig())
    sc = SparseConfig(s=args.sparsity, schedule=args.sparsity_schedule, scope=args.sparsity_scope,
                      decay_at=args.decay_at, local_keep=args.local_keep) if args.sparsity > 0 else None
    if args.distill and not args.teacher_weights:
        raise UserError("--distill needs --teacher-weights (and --teacher-cfg unless they are a yolocompress .pt)")
    if (args.teacher_cfg or args.teacher_weights) and not args.distill:
        raise UserError("a teacher was given but no --distill {hinton,bounded}")
    dc = DistillConfig(kind=args.distill, weight=args.distill_weight, temperature=args.temperature,
                       margin=args.margin) if args.distill else None
    return tc, sc, dc


_PATH_ARGS = ("data", "cfg", "weights", "teacher_cfg", "teacher_weights")
_RESUME_FREE = {"out", "resume", "quiet", "device", "workers"}   # may differ from the run's own on --resume


def run_train(args) -> None:
    from .stages import run_stage
    from .data import load_data_config
    from .weights import load_pt
    out = Path(args.out)
    if args.resume:
        args = _args_from_saved(args, out)
    elif not args.data:
        raise UserError("--data is required (only --resume reuses the run's own dataset)")
    data = load_data_config(args.data)
    tc, sc, dc = _configs(args)
    model = load_pt(out / "last.pt") if args.resume else \
        build_model(args.cfg, args.weights, classes=args.classes, data_nc=data.nc)
    teacher = build_model(args.teacher_cfg, args.teacher_weights, classes=args.classes, data_nc=data.nc) \
        if dc else None
    saved = {k: v for k, v in vars(args).items() if k not in ("run", "explicit")}
    saved.update({k: str(Path(saved[k]).resolve()) for k in _PATH_ARGS if saved.get(k) and Path(saved[k]).exists()})
    result = run_stage(model, data, tc, out, sparsity=sc, teacher=teacher, distill=dc, resume=args.resume,
                       exist_ok=args.exist_ok, progress=not args.quiet, from_scratch=args.weights is None,
                       meta={"args": saved})
    print(f"best mAP@0.5 {result.best_map50:.4f}; weights: {out / 'best.pt'} (best), {out / 'last.pt'} (last)")


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
    return argparse.Namespace(**merged)


def _same(key: str, given, saved) -> bool:
    if key in _PATH_ARGS and given and saved and Path(given).exists():
        return Path(given).resolve() == Path(saved).resolve()
    return given == saved


def add_eval(sub) -> None:
    p = sub.add_parser("eval", help="mAP@0.5, mAP@0.5:0.95, P, R and per-class AP on a dataset",
                       description="Evaluate weights on a dataset split with the COCO evaluator (pycocotools).")
    add_model_args(p, weights_required=True)
    p.add_argument("--data", required=True, help="dataset .yaml or .data")
    p.add_argument("--split", choices=["val", "train"], default="val")
    p.add_argument("--img-size", type=int, default=128)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--device", default="auto")
    p.add_argument("--json", action="store_true", help="print the metrics as JSON")
    p.set_defaults(run=run_eval)


def run_eval(args) -> None:
    from .data import load_data_config
    from .train import evaluate_on, pick_device
    data = load_data_config(args.data)
    model = build_model(args.cfg, args.weights, classes=args.classes, data_nc=data.nc)
    m = evaluate_on(model, data, args.split, args.img_size, args.batch_size, progress=not args.json,
                    device=pick_device(args.device))
    if args.json:
        print(json.dumps(m.as_dict()))
        return
    print(f"mAP@0.5 {m.map50:.4f}   mAP@0.5:0.95 {m.map:.4f}   P {m.precision:.4f}   R {m.recall:.4f}   "
          f"(at conf {m.conf:.3f}, {m.n_images} images)")
    print_table(m.per_class, floats="{:.4f}")


def add_detect(sub) -> None:
    p = sub.add_parser("detect", help="draw detections on images",
                       description="Run a model on an image or a folder of images; writes annotated PNGs "
                                   "and YOLO-format .txt predictions into --out.")
    add_model_args(p, weights_required=True)
    p.add_argument("--source", required=True, help="an image file or a folder of images")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--img-size", type=int, default=128)
    p.add_argument("--conf", type=float, default=0.25, help="score threshold")
    p.add_argument("--iou", type=float, default=0.45, help="NMS IoU threshold")
    p.add_argument("--names", help="dataset .yaml/.data to name the classes (optional)")
    p.set_defaults(run=run_detect)


def run_detect(args) -> None:
    from .detect import detect_folder
    n = detect_folder(args.cfg, args.weights, args.source, args.out, args.img_size, args.conf, args.iou,
                      args.names, classes=args.classes)
    print(f"wrote {n} annotated images to {args.out}")
