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
    p.add_argument("--data", required=True, help="dataset: Ultralytics-style .yaml or darknet .data")
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
    p.add_argument("--max-batches", type=int, default=None, help="stop each epoch after this many batches (quick runs)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out exactly where it stopped")
    p.add_argument("--exist-ok", action="store_true", help="replace the files of an existing run in --out")
    p.add_argument("--sync-bn", action="store_true", help="SyncBatchNorm across processes (torchrun, CUDA)")
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
                     max_val_images=args.max_val_images, max_batches=getattr(args, "max_batches", None),
                     sync_bn=args.sync_bn,
                     micro_batches=getattr(args, "micro_batches", 1), augment=AugmentConfig())
    sc = SparseConfig(s=args.sparsity, schedule=args.sparsity_schedule, scope=args.sparsity_scope,
                      decay_at=args.decay_at, local_keep=args.local_keep) if args.sparsity > 0 else None
    if args.distill and not args.teacher_weights:
        raise UserError("--distill needs --teacher-weights (and --teacher-cfg unless they are a yolocompress .pt)")
    if (args.teacher_cfg or args.teacher_weights) and not args.distill:
        raise UserError("a teacher was given but no --distill {hinton,bounded}")
    dc = DistillConfig(kind=args.distill, weight=args.distill_weight, temperature=args.temperature,
                       margin=args.margin) if args.distill else None
    return tc, sc, dc


def run_train(args) -> None:
    from .stages import run_stage
    from .data import load_data_config
    out = Path(args.out)
    if args.resume:
        saved = json.loads((out / "config.json").read_text()) if (out / "config.json").exists() else None
        if saved is None:
            raise UserError(f"--resume: {out / 'config.json'} not found; is {out} a run directory?")
        args = _args_from_saved(args, saved["meta"]["args"])
    data = load_data_config(args.data)
    tc, sc, dc = _configs(args)
    model = build_model(args.cfg, args.weights, classes=args.classes, data_nc=data.nc)
    teacher = build_model(args.teacher_cfg, args.teacher_weights, classes=args.classes, data_nc=data.nc) \
        if dc else None
    result = run_stage(model, data, tc, out, sparsity=sc, teacher=teacher, distill=dc, resume=args.resume,
                       exist_ok=args.exist_ok, progress=not args.quiet, from_scratch=args.weights is None,
                       meta={"args": {k: v for k, v in vars(args).items() if k != "run"}})
    print(f"best mAP@0.5 {result.best_map50:.4f}; weights: {out / 'best.pt'} (best), {out / 'last.pt'} (last)")


def _args_from_saved(args, saved: dict):
    """--resume: every setting comes from the run's config.json, so the run continues unchanged."""
    import argparse
    merged = dict(saved)
    merged.update(resume=True, exist_ok=False, quiet=args.quiet, run=args.run)
    return argparse.Namespace(**merged)


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
