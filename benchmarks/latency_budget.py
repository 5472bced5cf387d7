"""Benchmark: a latency budget (`prune --target-latency`) against the GFLOPs budget, on the committed
run's sparse model. For each target (ms): fit the latency model (deploy/latency_model.py), prune to
the target with the GFLOPs budget prune's other settings (union, `blocks` dropped, |gamma| per
FLOP), finetune it as the pipeline finetunes over `--seeds` (cached stages in `--runs`), then time
every finetuned model and the GFLOPs budget prune interleaved, `--rounds` times, and print
predicted against measured latency and mAP mean +- std over the seeds.

    OMP_WAIT_POLICY=PASSIVE python benchmarks/latency_budget.py --targets 10.2,8.3
"""
import argparse
import copy
import statistics

import pandas as pd
import torch

from yolocompress.cli.common import print_table
from yolocompress.compress.graph import build_graph
from yolocompress.compress.plan import PruneConfig, make_plan
from yolocompress.compress.surgery import apply_plan
from yolocompress.deploy.footprint import OtherLoad, time_interleaved, torch_runner
from yolocompress.deploy.latency_model import fit_latency_model
from yolocompress.teach import pipeline as pl


def latency_stage(pc, sparse, target: float, blocks: int, runs: int):
    """The prune to ``target`` ms as a pipeline stage (named by its target), and the fit's prediction."""
    cfg = PruneConfig(strategy=pc.strategy, drop_blocks=blocks, importance="gamma-per-flop", img_size=pc.img_size,
                      budget=f"{target}ms", min_keep=pc.min_keep)
    fit = fit_latency_model(sparse.model, cfg, "fused", runs=runs)
    print(fit.describe())
    graph = build_graph(sparse.model.blocks, cfg.protect)
    plan = make_plan(sparse.model, cfg, graph, cost=fit.model)
    compact = apply_plan(sparse.model, plan, graph).eval()
    row = dict(pl.measure(pc, "latency-budget", compact), epochs_total=sparse.row.get("epochs_total", 0))
    stage = pl.Stage(f"{pc.strategy}-{target:.1f}ms-b{blocks}", compact, row=row, extra={"plan": plan},
                     key=pl._key("latency-budget", plan.to_dict(), sparse.key))
    return stage, fit.model.measure(plan)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", default="runs/demo", help="make results's run directory (its sparse model is read)")
    ap.add_argument("--targets", default="10.2,8.3", help="latency budgets, ms")
    ap.add_argument("--seeds", default="0,1,2", help="finetune seeds")
    ap.add_argument("--blocks", type=int, default=16, help="residual blocks dropped")
    ap.add_argument("--fit-runs", type=int, default=15, help="timed forwards per fitted model")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved timing rounds of the finetuned models")
    args = ap.parse_args(argv)
    torch.set_num_threads(2)
    pc = pl.PipelineConfig(runs=args.runs)
    sparse = pl.sparse(pc, progress=False)
    seeds = [int(s) for s in args.seeds.split(",")]
    budget = pl.prune(pc, sparse, pc.strategy, blocks=args.blocks, budget=pc.budget, importance="gamma-per-flop")
    arms = {f"GFLOPs budget {pc.budget}": (budget, None)}
    for t in (float(x) for x in args.targets.split(",")):
        arms[f"latency budget {t:g} ms"] = latency_stage(pc, sparse, t, args.blocks, args.fit_runs)
    rows, runners = [], {}
    for label, (stage, predicted) in arms.items():
        tuned = [pl.finetune(pc, stage, seed=None if s == pc.seed else s, progress=False) for s in seeds]
        maps = [t.row["map"] for t in tuned]
        rows.append({"prune": label, "GFLOPs": stage.row["GFLOPs"], "predicted_ms": predicted,
                     "mAP@0.5:0.95": f"{statistics.mean(maps):.3f} +- {statistics.stdev(maps):.3f}"})
        x = torch.rand(1, 3, pc.img_size, pc.img_size)
        runners[label] = torch_runner(copy.deepcopy(tuned[0].model).eval().fuse(), x)
    for k in range(args.rounds):
        with OtherLoad() as others:
            times = time_interleaved(runners, 100, 10, 2)
        for row in rows:
            row[f"ms, round {k + 1}"] = statistics.median(times[row["prune"]])
        print(f"round {k + 1}: other processes used {others.cores:.2f} cores")
    print_table(pd.DataFrame(rows), floats="{:.3f}")


if __name__ == "__main__":
    main()
