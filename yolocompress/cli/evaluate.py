"""CLI verb ``eval``: a model's mAP, precision, recall and per-class AP on a dataset split."""
from __future__ import annotations

import json

from .common import UserError, add_model_args, add_resize_arg, announce_input, model_from_flags, print_table


def add_eval(sub) -> None:
    p = sub.add_parser("eval", help="mAP@0.5, mAP@0.5:0.95, P, R and per-class AP on a dataset",
                       description="Evaluate weights on a dataset split with the COCO evaluator (pycocotools).")
    add_model_args(p, weights_help="weights: darknet .weights or a yolocompress .pt (or give --onnx)")
    p.add_argument("--onnx", default=None, metavar="MODEL.onnx",
                   help="score this ONNX file (export --onnx) through onnxruntime instead of --weights; its "
                        "input size and resize mode come from the file's metadata")
    p.add_argument("--data", required=True, help="dataset .yaml or .data")
    p.add_argument("--split", choices=["val", "train"], default="val", help="which image list of the dataset")
    p.add_argument("--batch-size", type=int, default=32, help="images per forward pass")
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda, cuda:1, ...")
    p.add_argument("--json", action="store_true", help="print the metrics as JSON")
    add_resize_arg(p)
    p.add_argument("--names", help="class names for the table: a darknet .names or .data file, or a yaml "
                                   "(default: the dataset's)")
    p.set_defaults(run=run_eval)


def run_eval(args) -> None:
    from yolocompress.data.dataset import load_data_config
    from yolocompress.engine.evaluate import evaluate_at
    from yolocompress.engine.precision import pick_device
    data = load_data_config(args.data)
    if bool(args.onnx) == bool(args.weights):
        raise UserError("eval needs --weights or --onnx (one of them)")
    model = _onnx_model(args.onnx, data.nc) if args.onnx else \
        model_from_flags(args.cfg, args.weights, classes=args.classes, data_nc=data.nc).eval().fuse()
    if args.names:
        import dataclasses
        from yolocompress.data.names import check_names, load_names
        data = dataclasses.replace(data, names=check_names(load_names(args.names), data.nc, args.names))
    spec = _onnx_input(model, args) if args.onnx else announce_input(model, args, to_stderr=args.json)
    m = evaluate_at(model, data, spec, args.split, args.batch_size, progress=not args.json,
                    device=pick_device(args.device))
    if args.json:
        print(json.dumps(m.as_dict()))
        return
    print(f"mAP@0.5 {m.map50:.4f}   mAP@0.5:0.95 {m.map:.4f}   P {m.precision:.4f}   R {m.recall:.4f}   "
          f"(at conf {m.conf:.3f}, {m.n_images} images)")
    print_table(m.per_class, floats="{:.4f}")


def _onnx_model(path: str, nc: int):
    """The ONNX file as a model the evaluator can call (``deploy.export.OnnxModel``), its class
    count checked against the dataset's."""
    from pathlib import Path
    from yolocompress.deploy.export import OnnxModel
    if not Path(path).is_file():
        raise UserError(f"--onnx {path} does not exist")
    try:
        model = OnnxModel(path)
    except Exception as e:                  # onnxruntime's own errors: a damaged or foreign file
        raise UserError(f"--onnx {path}: onnxruntime cannot load it ({type(e).__name__}: {str(e)[:200]})") from None
    names = model.meta.get("names")
    if names is not None and len(names) != nc:
        raise UserError(f"--onnx {path} was exported for {len(names)} classes but the dataset has {nc}")
    return model


def _onnx_input(model, args):
    """The input an ONNX file runs at: its metadata's size and resize mode (a file without them,
    not written by export --onnx, needs --img-size and --resize)."""
    import sys
    from yolocompress.darknet.netinput import InputSpec
    own = model.meta.get("input_size")
    if args.img_size and own and args.img_size != own:
        raise UserError(f"--img-size {args.img_size}: {args.onnx} was exported at {own} px and runs only there "
                        f"(export --onnx --img-size {args.img_size} writes another)")
    size = args.img_size or own
    resize = args.resize or model.meta.get("resize")
    if not size or not resize:
        raise UserError(f"--onnx {args.onnx} carries no input size / resize mode (not written by export --onnx); "
                        "give --img-size and --resize")
    spec = InputSpec(int(size), resize)
    print(f"input: {spec.describe()} (" + ("set by --flags" if args.img_size or args.resize else "the ONNX file's")
          + ")", file=sys.stderr if args.json else sys.stdout)
    return spec
