"""CLI verbs of deployment: ``export`` (darknet cfg + weights, .pt, ONNX) and ``detect`` (boxes
drawn on images, YOLO .txt and darknet's result.json)."""
from __future__ import annotations

import json
from pathlib import Path

from .common import UserError, add_model_args, add_resize_arg, announce_input, model_from_flags, out_dir


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
    q = p.add_argument_group("int8 (with --onnx): ONNX Runtime static quantization, QDQ, calibrated on your images")
    q.add_argument("--int8", action="store_true", help="also write NAME.int8.onnx, its convs in int8")
    q.add_argument("--calib-data", metavar="DATA", help="dataset (yaml or .data) whose train images calibrate int8")
    q.add_argument("--calib-images", type=int, default=128, help="calibration images (the first N of train)")
    q.add_argument("--calib-method", default="minmax", choices=["minmax", "entropy", "percentile"],
                   help="how each activation's int8 range is chosen from the calibration run")
    p.set_defaults(run=run_export)


def run_export(args) -> None:
    from yolocompress.data.dataset import load_data_config
    from yolocompress.darknet.netinput import model_input
    from yolocompress.deploy.export import export_darknet, export_onnx, onnx_matches, reload_matches
    from yolocompress.files import atomic_dir
    if args.int8 and not (args.onnx and args.calib_data):
        raise UserError("--int8 quantizes the ONNX model: give it with --onnx and --calib-data DATA "
                        "(the images that calibrate the int8 ranges)")
    calib = load_data_config(args.calib_data) if args.int8 else None     # a bad dataset fails before any work
    out = out_dir(args.out, args.exist_ok)
    model = model_from_flags(args.cfg, args.weights, classes=args.classes).eval()
    if args.names:
        from yolocompress.data.names import check_names, load_names
        names = check_names(load_names(args.names), model.num_classes, args.names)
    with atomic_dir(out, replace=args.exist_ok) as tmp:    # every file of the set appears together
        staged = export_darknet(model, tmp, args.name)
        if args.names:
            staged["names"] = tmp / f"{args.name}.names"
            staged["names"].write_text("\n".join(names) + "\n")
        diff = reload_matches(model, staged["cfg"], staged["weights"], img_size=64)
        if args.onnx:
            size = args.img_size or model.net.width
            staged["onnx"] = export_onnx(model, tmp / f"{args.name}.onnx", size, names=names if args.names else ())
            onnx_diff = onnx_matches(model, staged["onnx"], size)
        if args.int8:
            from yolocompress.deploy.quantize import quantize_int8
            staged["int8"] = quantize_int8(staged["onnx"], tmp / f"{args.name}.int8.onnx", calib.train,
                                           args.calib_images, args.calib_method)
    paths = {k: out / p.name for k, p in staged.items()}
    print(f"wrote {paths['cfg']}, {paths['weights']}, {paths['pt']} (reload max |diff| {diff:.2e})")
    spec = model_input(model)
    print(f"input: {spec.describe()} (written into the cfg's [net]: width, height"
          + (", letter_box=1)" if spec.resize == "letterbox" else "; no letter_box: darknet stretches)"))
    if args.onnx:
        print(f"wrote {paths['onnx']} (onnxruntime max |diff| {onnx_diff:.2e})")
    if args.int8:
        print(f"wrote {paths['int8']} (int8 convs, calibrated on {min(args.calib_images, len(calib.train))} "
              f"images of {args.calib_data}; score it with eval --onnx)")
    print(json.dumps({k: str(v) for k, v in paths.items() if k not in ("onnx", "int8")}))


def add_detect(sub) -> None:
    p = sub.add_parser("detect", help="draw detections on images",
                       description="Run a model on an image or a folder of images; writes annotated PNGs "
                                   "and YOLO-format .txt predictions (class cx cy w h score) into --out, "
                                   "and with --json darknet's -out result.json. Postprocessing is "
                                   "darknet's: score = objectness x class probability, every class above "
                                   "--conf reported per box, per-class NMS of the cfg's nms_kind.")
    add_model_args(p, weights_required=True)
    p.add_argument("--source", required=True, help="an image file or a folder of images")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--conf", type=float, default=0.25, help="score threshold (darknet's -thresh)")
    p.add_argument("--iou", type=float, default=0.45, help="NMS threshold (darknet's 0.45)")
    p.add_argument("--names", help="class names: a darknet .names or .data file, or a dataset yaml")
    add_resize_arg(p)
    p.add_argument("--json", action="store_true",
                   help="also write OUT/result.json in darknet's 'detector test -out' layout")
    p.set_defaults(run=run_detect)


def run_detect(args) -> None:
    from yolocompress.deploy.detect import detect_folder
    from yolocompress.data.names import check_names, load_names
    model = model_from_flags(args.cfg, args.weights, classes=args.classes).eval().fuse()   # BN folded: inference only
    spec = announce_input(model, args)
    names = check_names(load_names(args.names), model.num_classes, args.names) if args.names else ()
    n = detect_folder(model, args.source, args.out, None if spec.height else spec.size, args.conf, args.iou, names,
                      resize=spec.resize, write_json=args.json, progress=True)
    print(f"wrote {n} annotated images to {args.out}" + (f" and {Path(args.out) / 'result.json'}" if args.json else ""))
