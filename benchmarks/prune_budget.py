"""Benchmark: what hardware-friendly widths cost (``--round-to``), and |gamma| against |gamma| per
FLOP at equal GFLOPs (``--target-gflops`` with each ``--importance``). Structure only: counted
GFLOPs and params of the compact models (latency: benchmarks/prune_latency.py).

    python benchmarks/prune_budget.py                       # yolov3@416 and teach@128, random weights
    python benchmarks/prune_budget.py --weights runs/demo/sparse-.../final.pt --data data/shapes/data.yaml

Without --weights, random weights in which ``--small-gamma`` of the gammas are near zero stand in
for a sparse-trained model (as in prune_latency.py). With --weights and --data the importance table
also has the what-if mAP (no finetune) of each plan.
"""
import argparse
from dataclasses import replace

import pandas as pd
import torch

from yolocompress.darknet.loader import load_model
from yolocompress.compress.plan import PruneConfig
from yolocompress.teach.sweep import importance_sweep, round_to_table
from yolocompress.darknet.weights import randomize

# (architecture, input px, the prune issue 20 measures): union 0.8 + 16 blocks on yolov3, union 0.7 on teach
CASES = [("yolov3", 416, PruneConfig(strategy="union", ratio=0.8, drop_blocks=16)),
         ("teach", 128, PruneConfig(strategy="union", ratio=0.7))]


def _models(args):
    if args.weights:
        model = load_model(args.cfg, args.weights).eval()
        return [(str(args.weights), model, args.img_size or model.net.width,
                 PruneConfig(strategy="union", ratio=args.ratio, drop_blocks=args.drop_blocks))]
    return [(f"random {name} ({args.small_gamma:.0%} small gammas)",
             randomize(load_model(name), seed=0, small_gamma=args.small_gamma).eval(), size, config)
            for name, size, config in CASES]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cfg", help="cfg for --weights (omit for a yolocompress .pt)")
    ap.add_argument("--weights", help="a sparse-trained model (.pt or .weights) instead of the random ones")
    ap.add_argument("--data", help="with --weights: evaluate the what-if mAP of each importance plan")
    ap.add_argument("--img-size", type=int, default=None, help="with --weights: input px (default: the cfg's)")
    ap.add_argument("--ratio", type=float, default=0.7, help="with --weights: union ratio of the round_to table")
    ap.add_argument("--drop-blocks", type=int, default=0, help="with --weights: blocks dropped")
    ap.add_argument("--small-gamma", type=float, default=0.8, help="random weights: share of near-zero gammas")
    ap.add_argument("--budgets", default="50%,30%,20%,10%", help="GFLOPs budgets for the importance table")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    data = None
    if args.data:
        from yolocompress.data.dataset import load_data_config
        data = load_data_config(args.data)
    with pd.option_context("display.width", 200, "display.max_columns", None):
        for label, model, size, config in _models(args):
            config = replace(config, img_size=size)
            print(f"\n{label} at {size} px, {config.strategy} ratio {config.ratio} + {config.drop_blocks} blocks:")
            print(round_to_table(model, config).to_string(index=False, float_format="{:.4f}".format))
            budget = replace(config, drop_blocks=0)
            print(f"\n{label}: union to each GFLOPs budget, |gamma| vs |gamma| per FLOP:")
            df = importance_sweep(model, budget, args.budgets.split(","), data, progress=False)
            print(df.to_string(index=False, float_format="{:.4f}".format))


if __name__ == "__main__":
    main()
