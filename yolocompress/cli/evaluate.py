"""CLI verb ``eval``: a model's mAP, precision, recall and per-class AP on a dataset split."""
from __future__ import annotations

import json

from .common import add_model_args, add_resize_arg, announce_input, model_from_flags, print_table


def add_eval(sub) -> None:
    p = sub.add_parser("eval", help="mAP@0.5, mAP@0.5:0.95, P, R and per-class AP on a dataset",
                       description="Evaluate weights on a dataset split with the COCO evaluator (pycocotools).")
    add_model_args(p, weights_required=True)
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
    model = model_from_flags(args.cfg, args.weights, classes=args.classes, data_nc=data.nc).eval().fuse()
    if args.names:
        import dataclasses
        from yolocompress.data.names import check_names, load_names
        data = dataclasses.replace(data, names=check_names(load_names(args.names), data.nc, args.names))
    spec = announce_input(model, args, to_stderr=args.json)
    m = evaluate_at(model, data, spec, args.split, args.batch_size, progress=not args.json,
                    device=pick_device(args.device))
    if args.json:
        print(json.dumps(m.as_dict()))
        return
    print(f"mAP@0.5 {m.map50:.4f}   mAP@0.5:0.95 {m.map:.4f}   P {m.precision:.4f}   R {m.recall:.4f}   "
          f"(at conf {m.conf:.3f}, {m.n_images} images)")
    print_table(m.per_class, floats="{:.4f}")
