"""Benchmark: the unpruned forward next to pytorchyolo's ``Darknet`` (eriklindernoren/PyTorch-YOLOv3),
same cfg, same weights, same process, interleaved runs - is our generic module as fast?

    pip install --no-deps --target /tmp/pytorchyolo pytorchyolo     # not into the project's venv
    OMP_WAIT_POLICY=PASSIVE python benchmarks/vs_pytorchyolo.py --pytorchyolo /tmp/pytorchyolo

Random weights (``randomize``) are written as a darknet .weights file and read by both models; the
script prints the largest relative output difference (both compute darknet's arithmetic; w, h are
exp(logit) x anchor, so random weights give huge boxes and only a relative difference means
anything), then the median and best batch-1 forward times of: pytorchyolo, ours eager, ours fused (``Darknet.fuse()``).
pytorchyolo imports ``imgaug`` only to seed its augmenter; when imgaug is missing a stand-in module
takes its place (no augmentation runs here).
"""
import argparse
import sys
import tempfile
import types
from pathlib import Path

import pandas as pd
import torch

from yolocompress.cli.common import print_table
from yolocompress.deploy.footprint import OtherLoad, conditions, load_warning, median_p90, time_interleaved, torch_runner
from yolocompress.darknet.weights import randomize, save_darknet_weights
from yolocompress.darknet.loader import load_model


def _their_model(path: str, cfg: Path, weights: Path):
    sys.path.insert(0, path)
    try:
        import imgaug  # noqa: F401
    except ImportError:
        sys.modules["imgaug"] = types.ModuleType("imgaug")  # only ia.seed() uses it, in training
    from pytorchyolo.models import Darknet as TheirDarknet
    model = TheirDarknet(str(cfg))
    model.load_darknet_weights(str(weights))
    return model.eval()


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pytorchyolo", required=True, help="folder holding the pytorchyolo package (pip --target)")
    ap.add_argument("--arch", default="yolov3", help="zoo architecture (pytorchyolo needs square input)")
    ap.add_argument("--img-size", type=int, default=416, help="square input side, px")
    ap.add_argument("--runs", type=int, default=15, help="timed forwards per model")
    ap.add_argument("--warmup", type=int, default=2, help="untimed rounds first")
    ap.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    cond = conditions(args.threads)
    ours = randomize(load_model(args.arch), seed=0).eval()
    with tempfile.TemporaryDirectory() as tmp:
        cfg, weights = Path(tmp) / "m.cfg", Path(tmp) / "m.weights"
        cfg.write_text(ours.cfg_text())
        save_darknet_weights(ours, weights)
        theirs = _their_model(args.pytorchyolo, cfg, weights)
    fused = randomize(load_model(args.arch), seed=0).eval().fuse()
    x = torch.rand(1, 3, args.img_size, args.img_size)  # (1, 3, S, S)
    runners = {"pytorchyolo": torch_runner(theirs, x), "ours eager": torch_runner(ours, x),
               "ours fused": torch_runner(fused, x)}
    ref = runners["pytorchyolo"]()
    diffs = {k: float(((r() - ref).abs() / (ref.abs() + 1)).max()) for k, r in runners.items()}
    with OtherLoad() as others:
        times = time_interleaved(runners, args.runs, args.warmup, args.threads, progress=True)
    rows = [{"model": k, "median_ms": median_p90(t)[0], "best_ms": min(t), "max_rel_diff": f"{diffs[k]:.1e}"}
            for k, t in times.items()]
    df = pd.DataFrame(rows)
    df["median vs pytorchyolo"] = df["median_ms"] / df.loc[0, "median_ms"]
    print(f"{args.arch} @{args.img_size}, batch 1, median of {args.runs} interleaved runs; threads "
          f"{cond['threads']}, OMP_WAIT_POLICY={cond['OMP_WAIT_POLICY']}, {cond['cores']} cores, load at start "
          f"{cond['load_1m']:.2f} (1 min); max_rel_diff = max |output - pytorchyolo's| / (|pytorchyolo's| + 1)")
    if load_warning(cond):
        print("WARNING: " + load_warning(cond))
    print_table(df)
    if others.cores is not None:
        print(f"other processes used {others.cores:.2f} of {cond['cores']} cores on average while timing")


if __name__ == "__main__":
    main()
