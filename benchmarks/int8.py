"""Benchmark: the four corners of deployment - dense and pruned, each in fp32 and int8 - through ONNX
Runtime on the CPU: mAP on the validation images and batch-1 latency, one table.

Each model is exported as `export --onnx` does (BN folded, metadata), then quantized as
`export --onnx --int8` does (static QDQ on the convs, calibrated on the first --calib-images train
images); mAP is scored as `eval --onnx` scores it; the four sessions are timed interleaved in one
process (median of --runs batch-1 forwards after warm-up), and the conditions are printed with the
table (threads, OMP_WAIT_POLICY, load, and how many cores other processes used while timing).

    OMP_WAIT_POLICY=PASSIVE python benchmarks/int8.py \\
        --dense runs/demo/baseline/best.pt --pruned runs/demo/ft-union-t20pct-b16-gamma-per-flop/best.pt
"""
import argparse
import platform
import tempfile
from pathlib import Path

import pandas as pd
import torch
from tqdm.auto import tqdm

from yolocompress.cli.common import print_table
from yolocompress.darknet.loader import load_model
from yolocompress.data.dataset import load_data_config
from yolocompress.deploy.export import OnnxModel, export_onnx
from yolocompress.deploy.footprint import OtherLoad, conditions, gflops, load_warning, median_p90, ort_runner, \
    time_interleaved
from yolocompress.deploy.quantize import quantize_int8
from yolocompress.engine.evaluate import evaluate_on


def _files(label: str, weights: str, data, args, tmp: Path) -> tuple[dict, float]:
    """{"<label> fp32": path, "<label> int8": path} and the model's GFLOPs."""
    model = load_model(weights).eval()
    fp32 = export_onnx(model, tmp / f"{label}.onnx", args.img_size, names=data.names)
    int8 = quantize_int8(fp32, tmp / f"{label}.int8.onnx", data.train, args.calib_images, args.calib_method)
    return {f"{label} fp32": fp32, f"{label} int8": int8}, gflops(model, args.img_size)


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dense", required=True, help="the unpruned model (.pt)")
    ap.add_argument("--pruned", required=True, help="the pruned, finetuned model (.pt)")
    ap.add_argument("--data", default="data/shapes/data.yaml", help="dataset: val scores, train calibrates")
    ap.add_argument("--img-size", type=int, default=128, help="input side, px")
    ap.add_argument("--calib-images", type=int, default=128, help="calibration images (first N of train)")
    ap.add_argument("--calib-method", default="minmax", choices=["minmax", "entropy", "percentile"])
    ap.add_argument("--max-val-images", type=int, default=None, help="score on the first N val images")
    ap.add_argument("--runs", type=int, default=50, help="timed forwards per model")
    ap.add_argument("--warmup", type=int, default=5, help="untimed rounds before timing")
    ap.add_argument("--threads", type=int, default=2, help="ONNX Runtime intra-op threads")
    return ap


def main(argv=None) -> None:
    args = _parser().parse_args(argv)
    torch.set_num_threads(args.threads)
    cond = conditions(args.threads)
    data = load_data_config(args.data)
    with tempfile.TemporaryDirectory() as scratch:
        tmp, files, flops = Path(scratch), {}, {}
        for label, weights in (("dense", args.dense), ("pruned", args.pruned)):
            got, flops[label] = _files(label, weights, data, args, tmp)
            files.update(got)
        scores = {name: evaluate_on(OnnxModel(path, threads=args.threads), data, img_size=args.img_size,
                                    max_images=args.max_val_images)
                  for name, path in tqdm(files.items(), desc="eval", leave=False)}
        x = torch.rand(1, 3, args.img_size, args.img_size)
        runners = {name: ort_runner(path, x, args.threads) for name, path in files.items()}
        with OtherLoad() as others:
            times = time_interleaved(runners, args.runs, args.warmup, args.threads, progress=True)
        sizes = {name: path.stat().st_size / 1e6 for name, path in files.items()}
    rows = []
    for name in files:
        ms, p90 = median_p90(times[name])
        rows.append({"model": name, "GFLOPs": flops[name.split()[0]], "MB": sizes[name], "mAP@0.5:0.95": scores[name].map,
                     "mAP@0.5": scores[name].map50, "median_ms": ms, "p90_ms": p90})
    df = pd.DataFrame(rows)
    df["speedup vs dense fp32"] = df.loc[0, "median_ms"] / df["median_ms"]
    print(f"{args.dense} and {args.pruned} at {args.img_size}px on {args.data}; int8 calibrated on "
          f"{args.calib_images} train images ({args.calib_method}); batch 1, median of {args.runs} interleaved "
          f"runs; onnxruntime CPU, {args.threads} threads, OMP_WAIT_POLICY={cond['OMP_WAIT_POLICY']}, "
          f"{cond['cores']} cores, load at start {cond['load_1m']:.2f}; {platform.machine()}")
    warning = load_warning(cond)
    if warning:
        print(f"WARNING: {warning}")
    print_table(df, floats="{:.3f}")
    if others.cores is not None:
        print(f"other processes used {others.cores:.2f} of {cond['cores']} cores on average while timing")


if __name__ == "__main__":
    main()
