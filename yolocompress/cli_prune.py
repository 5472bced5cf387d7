"""CLI verbs ``prune``, ``sweep`` and ``export``."""
from __future__ import annotations

import json
from pathlib import Path

from .cli_common import UserError, add_model_args, model_from_flags, print_table


def _out_dir(path: str, exist_ok: bool) -> Path:
    """Check --out before any work; the set is then written with ``io.atomic_dir`` (all or nothing)."""
    from .io import check_output_dir
    return check_output_dir(path, exist_ok)


def add_prune(sub) -> None:
    p = sub.add_parser("prune", help="channel and/or layer pruning: cfg + weights in, smaller cfg + weights out",
                       description="Prune a (sparse-trained) model. Writes OUT/pruned.cfg, OUT/pruned.weights, "
                                   "OUT/pruned.pt and OUT/plan.json, and prints a before/after table.")
    add_model_args(p, weights_required=True)
    p.add_argument("--strategy", choices=["conservative", "shared", "union", "none"], required=True,
                   help="channel strategy; 'none' with --blocks prunes layers only")
    p.add_argument("--ratio", type=float, default=0.5, help="fraction of the threshold pool to remove")
    p.add_argument("--min-keep", type=float, default=0.01, help="union: per-layer floor, fraction of channels")
    p.add_argument("--blocks", type=int, default=0, help="also drop this many residual blocks (layer pruning)")
    p.add_argument("--rank", choices=["mean", "max"], default="mean", help="block score for layer pruning")
    p.add_argument("--no-protect-spp", action="store_true", help="allow pruning the conv that feeds SPP")
    p.add_argument("--no-protect-upsample", action="store_true", help="allow pruning the convs before upsamples")
    p.add_argument("--img-size", type=int, default=None, help="input size for GFLOPs (default: the cfg's)")
    p.add_argument("--data", help="also report mAP of the original, the what-if and the compact model")
    p.add_argument("--eval-size", type=int, default=128, help="input size for --data evaluation")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--exist-ok", action="store_true",
                   help="replace the set of files a previous prune/export wrote in --out (as a whole)")
    p.set_defaults(run=run_prune)


def run_prune(args) -> None:
    from .export import export_darknet, reload_matches
    from .graph import ProtectOptions
    from .io import atomic_dir
    from .plan import plan_combined
    from .profile import summarize_blocks
    from .surgery import apply_plan
    if args.strategy == "none" and not args.blocks:
        raise UserError("--strategy none prunes nothing unless --blocks N is given")
    out = _out_dir(args.out, args.exist_ok)
    model = model_from_flags(args.cfg, args.weights, classes=args.classes).eval()
    protect = ProtectOptions(spp=not args.no_protect_spp, upsample=not args.no_protect_upsample)
    plan = plan_combined(model, args.strategy, args.ratio, args.blocks, args.rank, args.min_keep, protect,
                         source=str(args.weights))
    compact = apply_plan(model, plan).eval()
    with atomic_dir(out, replace=args.exist_ok) as tmp:   # cfg, weights, pt and plan appear together
        staged = export_darknet(compact, tmp, "pruned", plan=plan.to_dict(), source=str(args.weights))
        plan.save(tmp / "plan.json")
        reload_matches(compact, staged["cfg"], staged["weights"], img_size=64)
    paths = {k: out / p.name for k, p in staged.items()}
    size = args.img_size or model.net.width
    before, after = summarize_blocks(model.blocks, size), summarize_blocks(compact.blocks, size)
    print(plan.describe())
    changed = plan.summary()
    print_table(changed[changed["after"] < changed["before"]], floats="{:.1f}")
    print(f"\n{'':14}{'before':>14}{'after':>14}{'ratio':>8}")
    for name, a, b in (("layers", before.layers, after.layers), ("params", before.params, after.params),
                       (f"GFLOPs@{size}", before.gflops, after.gflops)):
        print(f"{name:14}{a:>14,.3f}{b:>14,.3f}{b / a:>8.3f}" if isinstance(a, float) else
              f"{name:14}{a:>14,}{b:>14,}{b / a:>8.3f}")
    if args.data:
        _report_map(model, plan, compact, args)
    print(f"\nwrote {paths['cfg']}, {paths['weights']}, {paths['pt']}, {out / 'plan.json'}")


def _report_map(model, plan, compact, args) -> None:
    from .data import load_data_config
    from .surgery import apply_masks
    from .evaluate import evaluate_on
    data = load_data_config(args.data)
    if model.num_classes != data.nc:
        raise UserError(f"the model has {model.num_classes} classes, the dataset {data.nc}")
    print(f"\nmAP on {args.data} (val, {args.eval_size} px):")
    for name, m in (("original", model), ("what-if", apply_masks(model, plan)), ("compact", compact)):
        r = evaluate_on(m, data, img_size=args.eval_size)
        print(f"  {name:9} mAP@0.5 {r.map50:.4f}   mAP@0.5:0.95 {r.map:.4f}")


def add_sweep(sub) -> None:
    p = sub.add_parser("sweep", help="mAP and GFLOPs of the what-if across prune ratios",
                       description="Sensitivity sweep: prune at each ratio, evaluate the masked what-if "
                                   "(no finetune), and report mAP and GFLOPs as a table and a plot.")
    add_model_args(p, weights_required=True)
    p.add_argument("--data", required=True)
    p.add_argument("--strategy", choices=["conservative", "shared", "union"], default="union")
    p.add_argument("--ratios", default="0.1:0.95:0.05", help="start:stop:step or a comma list")
    p.add_argument("--min-keep", type=float, default=0.01)
    p.add_argument("--img-size", type=int, default=128)
    p.add_argument("--max-drop", type=float, default=0.01, help="report the largest ratio within this mAP drop")
    p.add_argument("--max-images", type=int, default=None, help="evaluate on at most this many val images")
    p.add_argument("--out", default="runs/sweep", help="folder for sweep.csv and sweep.png")
    p.set_defaults(run=run_sweep)


def run_sweep(args) -> None:
    import io
    from .data import load_data_config
    from .io import atomic_write_bytes, atomic_write_text
    from .sweep import largest_ratio_within, parse_ratios, sensitivity_sweep
    from .viz import plot_sweep
    data = load_data_config(args.data)
    model = model_from_flags(args.cfg, args.weights, classes=args.classes, data_nc=data.nc).eval()
    df = sensitivity_sweep(model, data, args.strategy, parse_ratios(args.ratios), args.img_size, args.min_keep,
                           args.max_images)
    out = Path(args.out)
    atomic_write_text(out / "sweep.csv", df.to_csv(index=False))
    png = io.BytesIO()
    plot_sweep({args.strategy: df}).savefig(png, format="png", dpi=120, bbox_inches="tight")
    atomic_write_bytes(out / "sweep.png", png.getvalue())
    print_table(df, floats="{:.4f}")
    best = largest_ratio_within(df, args.max_drop)
    print(f"\nlargest ratio with mAP@0.5 within {args.max_drop} of unpruned: {best}")
    print(f"wrote {out / 'sweep.csv'} and {out / 'sweep.png'}")


def add_export(sub) -> None:
    p = sub.add_parser("export", help="write a model as darknet cfg + weights, .pt and (optionally) ONNX",
                       description="Export weights to Darknet cfg + .weights, a plain-data .pt, and ONNX "
                                   "(checked with onnxruntime).")
    add_model_args(p, weights_required=True)
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--name", default="model", help="file name stem")
    p.add_argument("--onnx", action="store_true", help="also write NAME.onnx and check it with onnxruntime")
    p.add_argument("--img-size", type=int, default=None, help="ONNX input size (default: the cfg's)")
    p.add_argument("--exist-ok", action="store_true",
                   help="replace the set of files a previous prune/export wrote in --out (as a whole)")
    p.add_argument("--names", help="class names (.names, .data or yaml): also write OUT/NAME.names for darknet")
    p.set_defaults(run=run_export)


def run_export(args) -> None:
    from .export import export_darknet, export_onnx, onnx_matches, reload_matches
    from .io import atomic_dir
    out = _out_dir(args.out, args.exist_ok)
    model = model_from_flags(args.cfg, args.weights, classes=args.classes).eval()
    if args.names:
        from .names import check_names, load_names
        names = check_names(load_names(args.names), model.num_classes, args.names)
    with atomic_dir(out, replace=args.exist_ok) as tmp:    # every file of the set appears together
        staged = export_darknet(model, tmp, args.name)
        if args.names:
            staged["names"] = tmp / f"{args.name}.names"
            staged["names"].write_text("\n".join(names) + "\n")
        diff = reload_matches(model, staged["cfg"], staged["weights"], img_size=64)
        if args.onnx:
            size = args.img_size or model.net.width
            staged["onnx"] = export_onnx(model, tmp / f"{args.name}.onnx", size)
            onnx_diff = onnx_matches(model, staged["onnx"], size)
    paths = {k: out / p.name for k, p in staged.items()}
    print(f"wrote {paths['cfg']}, {paths['weights']}, {paths['pt']} (reload max |diff| {diff:.2e})")
    if args.onnx:
        print(f"wrote {paths['onnx']} (onnxruntime max |diff| {onnx_diff:.2e})")
    print(json.dumps({k: str(v) for k, v in paths.items() if k != "onnx"}))
