"""Benchmark: prune a full-size model from files to files (cfg + .weights in, cfg + .weights + plan out).

    python benchmarks/prune_speed.py [--arch yolov4] [--strategy union] [--ratio 0.5] [--blocks 0]

Random weights with half the gammas near zero stand in for a sparse-trained model (no downloads
here); the work done is the same as for real weights. Prints a table of the phases, in seconds.
"""
import argparse
import tempfile
import time
from pathlib import Path

import torch

from yolocompress.darknet.cfg import write_cfg
from yolocompress.compress.plan import PruneConfig, make_plan
from yolocompress.compress.surgery import apply_plan
from yolocompress.darknet.loader import load_model
from yolocompress.darknet.weights import randomize, save_darknet_weights


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arch", default="yolov4")
    ap.add_argument("--strategy", default="union")
    ap.add_argument("--ratio", type=float, default=0.5)
    ap.add_argument("--blocks", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        src = randomize(load_model(args.arch), seed=0, small_gamma=0.5)
        write_cfg(src.blocks, tmp / "in.cfg")
        save_darknet_weights(src, tmp / "in.weights")
        size_mb = (tmp / "in.weights").stat().st_size / 2**20
        del src
        t = [time.perf_counter()]
        model = load_model(tmp / "in.cfg", tmp / "in.weights")
        t.append(time.perf_counter())
        plan = make_plan(model, PruneConfig(strategy=args.strategy, ratio=args.ratio, drop_blocks=args.blocks))
        t.append(time.perf_counter())
        compact = apply_plan(model, plan)
        t.append(time.perf_counter())
        write_cfg(compact.blocks, tmp / "pruned.cfg")
        save_darknet_weights(compact, tmp / "pruned.weights")
        plan.save(tmp / "plan.json")
        t.append(time.perf_counter())
    phases = ["read cfg + weights", "plan", "surgery", "write cfg + weights + plan"]
    print(f"{args.arch} ({size_mb:.0f} MB of weights), {args.strategy} ratio {args.ratio}, "
          f"{args.blocks} blocks, {args.threads} threads")
    print(f"{'phase':28}{'seconds':>9}")
    for name, a, b in zip(phases, t, t[1:]):
        print(f"{name:28}{b - a:9.2f}")
    print(f"{'total (files to files)':28}{t[-1] - t[0]:9.2f}")


if __name__ == "__main__":
    main()
