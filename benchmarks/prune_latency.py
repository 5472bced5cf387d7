"""Benchmark: CPU latency of compact models next to their GFLOPs, for channel-only, layer-only and
combined pruning - does latency follow width or depth?

    python benchmarks/prune_latency.py [--arch yolov3] [--img-size 416] [--ratio 0.8] [--blocks 16]
    python benchmarks/prune_latency.py --arch teach --img-size 128 --weights runs/demo/sparse-.../final.pt

Without --weights, random weights in which ``--small-gamma`` of the gammas are near zero stand in for
a sparse-trained model: the plan prunes the same number of channels, so the cost of the compact
model is what a real prune at that ratio gives. Latency is the median of batch-1 forwards after a
warm-up, with the stated thread count. Prints one row per plan with the ratios to the original.
"""
import argparse

import pandas as pd
import torch

from yolocompress import zoo
from yolocompress.plan import PruneConfig, make_plan
from yolocompress.profile import count_params, gflops, latency
from yolocompress.surgery import apply_plan
from yolocompress.loader import load_model
from yolocompress.weights import randomize


def _source(args):
    if args.weights:
        return load_model(args.cfg, args.weights)
    return randomize(zoo.build(args.arch), seed=0, small_gamma=args.small_gamma)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arch", default="yolov3", help="zoo name used when --weights is not given")
    ap.add_argument("--cfg", help="cfg for --weights (omit for a yolocompress .pt)")
    ap.add_argument("--weights", help="a sparse-trained model (.pt or .weights)")
    ap.add_argument("--img-size", type=int, default=416)
    ap.add_argument("--ratio", type=float, default=0.8, help="channel prune ratio of every plan")
    ap.add_argument("--blocks", type=int, default=16, help="residual blocks dropped by layer plans")
    ap.add_argument("--small-gamma", type=float, default=0.8, help="random weights: share of near-zero gammas")
    ap.add_argument("--runs", type=int, default=10, help="timed forwards per model")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model = _source(args).eval()
    plans = [("original", None, 0.0, 0)] + [(s, s, args.ratio, 0) for s in ("conservative", "shared", "union")]
    plans += [("layers only", "none", 0.0, args.blocks), ("union + layers", "union", args.ratio, args.blocks)]
    rows = []
    for label, strategy, ratio, blocks in plans:
        config = PruneConfig(strategy=strategy, ratio=ratio, drop_blocks=blocks) if strategy else None
        compact = model if strategy is None else apply_plan(model, make_plan(model, config))
        lat = latency(compact, args.img_size, runs=args.runs, threads=args.threads, device="cpu")
        rows.append({"model": label, "layers": len(compact.blocks), "params": count_params(compact),
                     "GFLOPs": gflops(compact, args.img_size), "latency_ms": lat["ms"]})
    df = pd.DataFrame(rows)
    df["GFLOPs ratio"] = df["GFLOPs"] / df["GFLOPs"].iloc[0]
    df["latency ratio"] = df["latency_ms"] / df["latency_ms"].iloc[0]
    src = args.weights or f"random {args.arch} ({args.small_gamma:.0%} small gammas)"
    print(f"{src} at {args.img_size}px, ratio {args.ratio}, {args.blocks} blocks, {args.threads} threads, "
          f"median of {args.runs} batch-1 forwards; GFLOPs = 2 x conv MACs")
    with pd.option_context("display.width", 200):
        print(df.to_string(index=False, float_format="{:.3f}".format))


if __name__ == "__main__":
    main()
