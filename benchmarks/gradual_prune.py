"""Gradual against one-shot pruning to the 20% GFLOPs budget, at equal total epochs. One-shot
(the demo's distillation target): sparse model -> prune to 20% of its GFLOPs -> finetune
`finetune_epochs`. Gradual (`--steps 40%,20%`): sparse model -> prune to 40% (the blocks are
dropped here) -> sparse training of the pruned model for 1/2 of the finetune epochs -> prune to
20% of the *original* GFLOPs -> finetune for the rest; with n steps, each prune but the last is
followed by 1/n of the finetune epochs of sparse training (`--between` sets it). Both total
baseline + sparse + finetune epochs, so both stand beside the same same-epoch control (the
unpruned sparse model finetuned as long).

Uses the demo's cached stages (runs/demo, data/shapes; the baseline and sparse model are trained
first when missing), or with `--shapes` another version of the set (see data_regime.py). Prints
one JSON line per stage, then the gaps.

    OMP_WAIT_POLICY=PASSIVE python benchmarks/gradual_prune.py
    OMP_WAIT_POLICY=PASSIVE python benchmarks/gradual_prune.py --name easy \\
        --shapes min_size=16 max_objects=6 n_distractors=3 front_lines_prob=0.15
"""
import argparse
import copy
import time

from yolocompress.teach import pipeline as pl
from yolocompress.compress.plan import PlanError, PruneConfig
from yolocompress.compress.sparsity import SparseConfig

from data_regime import add_regime_args, log, regime_config   # a sibling script: benchmarks/ is on sys.path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_regime_args(ap)
    ap.add_argument("--steps", default="40%,20%",
                    help="GFLOPs budgets of the successive prunes, each a percentage of the sparse model's GFLOPs "
                         "or absolute GFLOPs; the last is the budget both are compared at")
    ap.add_argument("--between", type=int, default=None,
                    help="sparse epochs after each prune but the last (default: finetune epochs / steps); the "
                         "final finetune gets the rest of the finetune epochs")
    args = ap.parse_args()
    pc, t0 = regime_config(args), time.time()
    spec = pl.budget_spec(pc)
    try:                                    # the plan's own reading of a budget ("40%" or GFLOPs), before any training
        configs = [PruneConfig(strategy=pc.strategy, budget=b) for b in args.steps.split(",")]
    except PlanError as e:
        raise SystemExit(f"--steps {args.steps}: {e}") from None
    sp = log(pl.sparse(pc, progress=False), "sparse")
    budgets = [c.parsed_budget().of(sp.row["GFLOPs"]) for c in configs]           # GFLOPs
    steps = [b / sp.row["GFLOPs"] for b in budgets]                   # fractions of the sparse model's
    spec |= {"budget": args.steps.split(",")[-1].strip()}   # as spelled: the demo's run name ("20%")
    one_shot = log(pl.finetune(pc, pl.prune(pc, sp, **spec), progress=False), "one-shot + ft")
    ctl = log(pl.control_same_epochs(pc, sp, progress=False), "control")
    between = pc.finetune_epochs // len(steps) if args.between is None else args.between
    if not 0 < between * (len(steps) - 1) < pc.finetune_epochs:
        raise SystemExit(f"--between {between}: the sparse run(s) between the {len(steps)} prunes must leave "
                         f"some of the {pc.finetune_epochs} finetune epochs for the final finetune")
    sc = SparseConfig(s=pc.sparsity, schedule=pc.sparse_schedule)
    stage, name = sp, ""
    for k, (frac, budget) in enumerate(zip(steps, budgets)):
        name += f"-g{100 * frac:g}pct" + (f"-e{between}" if args.between is not None and k < len(steps) - 1 else "")
        blocks = spec["blocks"] if k == 0 else 0                  # the blocks go in the first prune
        pruned = log(pl.prune(pc, stage, **(spec | {"budget": budget, "blocks": blocks,
                                                  "name": f"gradual{name}"})), f"prune {k + 1}")
        if k < len(steps) - 1:
            run = pl.StageRun(between, pc.finetune_lr, sparsity=sc, eval_every=between)
            stage = log(pl._train_cached(pc, f"sparse-gradual{name}", copy.deepcopy(pruned.model), run, pruned,
                                         progress=False), "sparse the pruned model")
    gradual = log(pl.finetune(pc, pruned, epochs=pc.finetune_epochs - between * (len(steps) - 1), progress=False),
                  "gradual + ft")
    for tag, st in (("one-shot", one_shot), ("gradual", gradual)):
        print(f"{tag}: {st.row['GFLOPs'] / sp.row['GFLOPs']:.3f} of the GFLOPs, {st.row['epochs_total']} epochs, "
              f"map50 {st.row['map50']:.3f}, {st.row['map50'] - ctl.row['map50']:+.3f} against the control "
              f"({ctl.row['map50']:.3f})", flush=True)
    print(f"done in {time.time() - t0:.0f} s", flush=True)


if __name__ == "__main__":
    main()
