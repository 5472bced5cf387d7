"""Benchmark: does a pruned model run as much faster as its GFLOPs promise? Each model is timed on
four CPU paths - eager PyTorch, PyTorch after ``Darknet.fuse()`` (BN folded into the convs), the
same in channels_last (NHWC) memory format, and ONNX Runtime on the exported (fused) graph - all
interleaved in one process, and each path's speedup over the original is set against the GFLOPs
speedup (ratio 1.0 = latency falls exactly as GFLOPs do).

    python benchmarks/prune_latency.py                       # yolov3 @416: original vs union 0.8 + 16 blocks
    python benchmarks/prune_latency.py --arch teach --img-size 128 --ratio 0.7 --blocks 0
    python benchmarks/prune_latency.py --plans all --runs 10 # + conservative, shared, union, layers only
    python benchmarks/prune_latency.py --arch teach --img-size 128 --weights runs/demo/sparse-.../final.pt

Without --weights, random weights in which --small-gamma of the gammas are near zero stand in for a
sparse-trained model: the plan prunes the same number of channels, so the compact model costs what a
real prune at that ratio gives. Each pruned model goes the way `yolocompress prune` sends it: plan,
surgery, written as darknet cfg + .weights, read back by the standard loader. Latency is the median
of batch-1 forwards after warm-up; round k of the timing runs every (model, path) once, starting at
a rotating position, so outside load falls on all alike. The conditions (threads, OMP_WAIT_POLICY,
machine load at the start, and how many cores other processes used while timing, from /proc/stat)
are printed with the table; on a loaded machine the figures are noise.
Run with OMP_WAIT_POLICY=PASSIVE on a shared machine (spinning OpenMP threads steal the cores).
"""
import argparse
import copy
import platform
import tempfile
import warnings
from pathlib import Path

import pandas as pd
import torch
from tqdm.auto import tqdm

from yolocompress.cli.common import print_table
from yolocompress.darknet.loader import load_model
from yolocompress.deploy.export import compile_inference, export_darknet, export_onnx
from yolocompress.compress.plan import PruneConfig, make_plan
from yolocompress.deploy.footprint import (OtherLoad, conditions, gflops, load_warning, median_p90, ort_runner,
                                  time_interleaved, torch_runner)
from yolocompress.compress.surgery import apply_plan
from yolocompress.darknet.weights import randomize

PLANS = {  # label: (strategy, uses --ratio, uses --blocks)
    "conservative": ("conservative", True, False), "shared": ("shared", True, False),
    "union": ("union", True, False), "layers only": ("none", False, True),
    "union + layers": ("union", True, True),
}
PATHS = ("eager", "fused", "fused NHWC", "compiled", "onnxruntime")


def _source(args):
    if args.weights:
        return load_model(args.cfg, args.weights)
    return randomize(load_model(args.arch), seed=args.seed, small_gamma=args.small_gamma)


def _compact(model, label: str, args, tmp: Path):
    """The model `prune` writes for this plan, read back through the standard loader."""
    strategy, use_ratio, use_blocks = PLANS[label]
    plan = make_plan(model, PruneConfig(strategy=strategy, ratio=args.ratio if use_ratio else 0.0,
                                        drop_blocks=args.blocks if use_blocks else 0, round_to=args.round_to))
    name = label.replace(" ", "").replace("+", "_")
    paths = export_darknet(apply_plan(model, plan).eval(), tmp, name)
    return load_model(str(paths["cfg"]), str(paths["weights"])).eval()


def _runners(model, label: str, paths, x, args, tmp: Path) -> dict:
    """{(model label, path): zero-argument callable} for one model."""
    out = {}
    if "eager" in paths:
        out[label, "eager"] = torch_runner(model, x)
    if "fused" in paths:
        out[label, "fused"] = torch_runner(copy.deepcopy(model).fuse(), x)
    if "fused NHWC" in paths:
        out[label, "fused NHWC"] = torch_runner(copy.deepcopy(model).fuse().to(memory_format=torch.channels_last), x)
    if "compiled" in paths:
        out[label, "compiled"] = torch_runner(compile_inference(model, args.img_size), x)
    if "onnxruntime" in paths:
        name = label.replace(" ", "").replace("+", "_")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
            onnx = export_onnx(model, tmp / f"{name}.onnx", args.img_size)
        out[label, "onnxruntime"] = ort_runner(onnx, x, args.threads)
    return out


def _max_diff(runners: dict, label: str) -> dict:
    """max |output - eager output| of each path of one model: every path computes the same thing."""
    outs = {p: run() for (lab, p), run in runners.items() if lab == label}
    outs = {p: torch.as_tensor(o[0]) if isinstance(o, list) else o for p, o in outs.items()}
    ref = outs.get("eager")
    return {p: float((o - ref).abs().max()) if ref is not None else float("nan") for p, o in outs.items()}


def _table(times: dict, flops: dict, diffs: dict, original: str) -> pd.DataFrame:
    rows = []
    for (label, path), ts in times.items():
        ms, p90 = median_p90(ts)
        rows.append({"model": label, "path": path, "GFLOPs": flops[label], "median_ms": ms, "p90_ms": p90,
                     "max_diff": diffs[label][path]})
    df = pd.DataFrame(rows)
    base = df[df["model"] == original].set_index("path")
    df["latency speedup"] = df["path"].map(base["median_ms"]) / df["median_ms"]
    df["GFLOPs speedup"] = flops[original] / df["GFLOPs"]
    df["speedup ratio"] = df["latency speedup"] / df["GFLOPs speedup"]
    df["vs eager original"] = base.loc["eager", "median_ms"] / df["median_ms"] if "eager" in base.index else None
    df["max_diff"] = df["max_diff"].map("{:.1e}".format)
    return df


def _print_conditions(cond: dict, args, src: str) -> None:
    print(f"{src} at {args.img_size}px; ratio {args.ratio}, {args.blocks} blocks; batch 1; median of "
          f"{args.runs} interleaved runs after {args.warmup} warm-up rounds; GFLOPs = 2 x conv MACs")
    print(f"threads {cond['threads']}, OMP_WAIT_POLICY={cond['OMP_WAIT_POLICY']}, {cond['cores']} cores, "
          f"load at start {cond['load_1m']:.2f} / {cond['load_5m']:.2f} / {cond['load_15m']:.2f} (1/5/15 min); "
          f"torch {torch.__version__}, {platform.machine()} {platform.processor() or ''}".rstrip())
    warning = load_warning(cond)
    if warning:
        print(f"WARNING: {warning}")
    if cond["OMP_WAIT_POLICY"].upper() != "PASSIVE":
        print("WARNING: OMP_WAIT_POLICY is not PASSIVE: threads that spin after one runtime's forward "
              "steal the cores from the next one in the interleaved loop")


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arch", default="yolov3", help="zoo architecture used when --weights is not given")
    ap.add_argument("--cfg", help="cfg for --weights (omit for a yolocompress .pt, which holds its cfg)")
    ap.add_argument("--weights", help="a sparse-trained model (.pt or darknet .weights) instead of random weights")
    ap.add_argument("--img-size", type=int, default=416, help="square input side, px (multiple of 32)")
    ap.add_argument("--ratio", type=float, default=0.8, help="channel prune ratio of the channel plans")
    ap.add_argument("--blocks", type=int, default=16, help="residual blocks dropped by the layer plans")
    ap.add_argument("--round-to", type=int, default=1,
                    help="keep each pruned conv's channel count a multiple of N (prune --round-to; 1 = off)")
    ap.add_argument("--plans", default="union + layers",
                    help=f"comma-separated plans to time next to the original, or 'all': {', '.join(PLANS)}")
    ap.add_argument("--paths", default=",".join(PATHS), help=f"comma-separated runtimes to time: {', '.join(PATHS)}")
    ap.add_argument("--small-gamma", type=float, default=0.8, help="random weights: share of near-zero gammas")
    ap.add_argument("--seed", type=int, default=0, help="random weights: seed")
    ap.add_argument("--runs", type=int, default=20, help="timed forwards per (model, path)")
    ap.add_argument("--warmup", type=int, default=3, help="untimed rounds before timing")
    ap.add_argument("--threads", type=int, default=2, help="intra-op threads for torch and ONNX Runtime")
    ap.add_argument("--out-dir", help="keep the pruned cfg/.weights and .onnx files here (default: a temp dir)")
    return ap


def main(argv=None) -> None:
    args = _parser().parse_args(argv)
    plans = list(PLANS) if args.plans == "all" else [p.strip() for p in args.plans.split(",") if p.strip()]
    paths = [p.strip() for p in args.paths.split(",")]
    bad = [p for p in plans if p not in PLANS] + [p for p in paths if p not in PATHS]
    if bad:
        raise SystemExit(f"unknown plan/path {bad}; plans: {list(PLANS)}, paths: {list(PATHS)}")
    torch.set_num_threads(args.threads)
    cond = conditions(args.threads)  # before our own work loads the machine
    model = _source(args).eval()
    x = torch.rand(1, model.net.channels, args.img_size, args.img_size)  # (1, C, S, S)
    with tempfile.TemporaryDirectory() as scratch:
        tmp = Path(args.out_dir or scratch)
        tmp.mkdir(parents=True, exist_ok=True)
        runners, flops, diffs = {}, {}, {}
        for label in tqdm(["original"] + plans, desc="prune, export", leave=False):
            m = model if label == "original" else _compact(model, label, args, tmp)
            flops[label] = gflops(m, args.img_size)
            mine = _runners(m, label, paths, x, args, tmp)
            diffs[label] = _max_diff(mine, label)
            runners.update(mine)
        with OtherLoad() as others:
            times = time_interleaved(runners, args.runs, args.warmup, args.threads, progress=True)
    src = args.weights or f"random {args.arch} ({args.small_gamma:.0%} small gammas)"
    _print_conditions(cond, args, src)
    print_table(_table(times, flops, diffs, "original"), floats="{:.3f}")
    after = conditions(args.threads)
    print(f"load at end {after['load_1m']:.2f} (1 min); speedup ratio = latency speedup / GFLOPs speedup, each "
          "path against the original on the same path; max_diff = max |output - eager output|")
    _print_others(others.cores, cond["cores"])


def _print_others(cores: float | None, total: int) -> None:
    """How busy other processes kept the machine while we timed (the figure that decides whether
    the table can be trusted; the load average at the start only hints at it)."""
    if cores is None:
        return
    print(f"other processes used {cores:.2f} of {total} cores on average while timing")
    if cores > 0.1 * total:
        print("WARNING: other processes competed for the cores during timing; rerun on a quiet machine")

if __name__ == "__main__":
    main()
