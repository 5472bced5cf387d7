"""Benchmark (issue 38): when does inheriting weights pay? On a small target task, pruning the
tutorial's pretrained source model against training the same pruned architecture from scratch,
at equal total epochs on the target, over seeds.

The source is the committed `data/pretrained/teach-shapes8.pt` (the teaching model trained on the
eight-class source set, `make source`); the target is the bundled one-class task at a small size
(`--train-images`, default 300, its own seed). Three arms, each `--sparse-epochs + --finetune-epochs`
epochs on the target:

  (a) source -> sparse training on the target -> prune to a GFLOPs budget -> finetune;
  (b) the same pruned architecture from scratch (Liu et al., ICLR 2019);
  (c) the source finetuned unpruned (the control);

at each of `--budgets` (one easy, one on the cliff), for each of `--seeds`. Every stage is a cached
pipeline stage in `--runs` (rerunning trains only what is missing). Prints one row per (arm, budget)
with mAP@0.5:0.95 and mAP@0.5 as mean +- std over the seeds, and writes every model's row to
`--json` (kind and control_of set, as results.json's rows).

    OMP_WAIT_POLICY=PASSIVE python benchmarks/transfer_arms.py
    OMP_WAIT_POLICY=PASSIVE python benchmarks/transfer_arms.py --train-images 2000   # the large-target check
"""
import argparse
import hashlib
import json
import statistics
from dataclasses import replace
from pathlib import Path

import torch

from yolocompress.darknet.transfer import load_for_training
from yolocompress.data.dataset import load_data_config
from yolocompress.data.synth import BUNDLED, ensure_shapes
from yolocompress.teach import pipeline as pl
from yolocompress.teach.source import SOURCE_WEIGHTS


def source_stage(pc: pl.PipelineConfig, weights: Path) -> pl.Stage:
    """The source model with its heads for the target's classes (the shape-matched layers of the
    source, ``darknet/transfer.py``), as the stage every arm starts from; its key is the file's hash."""
    data = load_data_config(pc.data)
    model, _ = load_for_training(pc.arch, weights, classes=data.nc)
    key = hashlib.sha1(weights.read_bytes()).hexdigest()[:12]
    row = pl.measure(pc, "source", model, epochs=0, epochs_total=0)
    return pl.Stage("source", model, row=row, key=key)


def arms(pc: pl.PipelineConfig, source: pl.Stage, budgets: list[str], seeds: list[int], strategy: str,
         blocks: int) -> list[dict]:
    """Every model of the three arms, as rows: name, arm, budget, seed, kind, control_of, numbers."""
    total = pc.sparse_epochs + pc.finetune_epochs
    out = []
    for seed in seeds:
        ps = replace(pc, seed=seed)
        control = pl.control_same_epochs(ps, source, epochs=total, seed=seed)
        out.append(dict(control.row, name=control.name, arm="c: source finetuned, unpruned", budget=None, seed=seed,
                        kind=pl.CONTROL_SAME_EPOCHS))
        sparse = pl.sparse(ps, base=source, name=f"sparse-source-seed{seed}")
        for budget in budgets:
            pruned = pl.prune(ps, sparse, strategy, blocks=blocks, budget=budget, importance="gamma-per-flop",
                              suffix=f"-seed{seed}")
            tuned = pl.finetune(ps, pruned)
            scratch = pl.control_scratch(ps, pruned)
            out.append(dict(tuned.row, name=tuned.name, arm="a: source, sparse, pruned, finetuned", budget=budget,
                            seed=seed, kind=pl.PRUNED, control_of=None))
            out.append(dict(scratch.row, name=scratch.name, arm="b: pruned architecture from scratch",
                            budget=budget, seed=seed, kind=pl.CONTROL_SCRATCH, control_of=[tuned.name]))
    return out


def summary(rows: list[dict]) -> list[dict]:
    """One line per (arm, budget): mean +- std (ddof 1) of mAP@0.5:0.95 and mAP@0.5 over the seeds."""
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["arm"], r["budget"]), []).append(r)
    out = []
    for (arm, budget), rs in sorted(groups.items(), key=lambda kv: (kv[0][1] or "", kv[0][0])):
        line = {"arm": arm, "budget": budget or "-", "seeds": len(rs), "GFLOPs": statistics.mean(r["GFLOPs"] for r in rs)}
        for key, label in (("map", "mAP@0.5:0.95"), ("map50", "mAP@0.5")):
            values = [r[key] for r in rs]
            sd = statistics.stdev(values) if len(values) > 1 else float("nan")
            line[label] = f"{statistics.mean(values):.3f} +- {sd:.3f}"
        out.append(line)
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--train-images", type=int, default=300, help="training images of the target task")
    ap.add_argument("--val-images", type=int, default=400, help="validation images of the target task")
    ap.add_argument("--target-seed", type=int, default=303, help="generator seed of the target set")
    ap.add_argument("--weights", default=str(SOURCE_WEIGHTS), help="the pretrained source model")
    ap.add_argument("--budgets", default="20%,5%", help="GFLOPs budgets of the prunes (easy, on the cliff)")
    ap.add_argument("--seeds", default="0,1,2", help="seeds of every arm")
    ap.add_argument("--sparse-epochs", type=int, default=8, help="arm (a): sparse epochs on the target")
    ap.add_argument("--finetune-epochs", type=int, default=16, help="arm (a): finetune epochs after the prune")
    ap.add_argument("--strategy", default="union", help="channel strategy of the prunes")
    ap.add_argument("--blocks", type=int, default=16, help="residual blocks dropped with the channels")
    ap.add_argument("--max-batches", type=int, default=None, help="batches per epoch (a smoke test)")
    ap.add_argument("--threads", type=int, default=2, help="torch threads")
    ap.add_argument("--runs", default=None, help="run directory (default runs/transfer-N, N the train images)")
    ap.add_argument("--json", default=None, help="write every model's row here")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    target = replace(BUNDLED, n_train=args.train_images, n_val=args.val_images, seed=args.target_seed)
    folder = Path("data") / f"shapes-target-{args.train_images}"
    yaml_path = ensure_shapes(folder, target, workers=args.threads, progress=True)
    pc = replace(pl.PipelineConfig(), data=str(yaml_path), runs=args.runs or f"runs/transfer-{args.train_images}",
                 baseline_epochs=0, sparse_epochs=args.sparse_epochs, finetune_epochs=args.finetune_epochs,
                 max_batches=args.max_batches)
    source = source_stage(pc, Path(args.weights))
    rows = arms(pc, source, args.budgets.split(","), [int(s) for s in args.seeds.split(",")], args.strategy,
                args.blocks)
    print(f"target: {args.train_images} train / {args.val_images} val images ({folder}); every arm "
          f"{args.sparse_epochs + args.finetune_epochs} epochs on the target; source {args.weights} scores "
          f"mAP@0.5:0.95 {source.row['map']:.3f} on the target before training (its heads are new)")
    from yolocompress.cli.common import print_table
    import pandas as pd
    print_table(pd.DataFrame(summary(rows)), floats="{:.3f}")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1, default=str) + "\n")


if __name__ == "__main__":
    main()
