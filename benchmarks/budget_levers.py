"""Probe two levers for a prune with >= 80% fewer GFLOPs (issue 15, acceptance 1), with the demo's
own cached stage functions (so each row sits beside its same-epoch control, same data, same total
epochs). Writes into runs/demo and reuses its finished stages (the baseline is trained first
when runs/demo lacks it); prints one JSON line per stage.

    A: sparse 10 + finetune 20 epochs (total 60, as the demo's 20 + 10): the 20% budget prune
       (union, |gamma| per FLOP) with 16 blocks dropped and with none, and the control finetuned 20
    B: the demo's sparse 20 + finetune 10: the 20% budget prune with no blocks dropped, the control,
       and the 16-block budget prune's architecture trained from scratch for 60 epochs

    OMP_WAIT_POLICY=PASSIVE python benchmarks/budget_levers.py A --threads 1 &
    OMP_WAIT_POLICY=PASSIVE python benchmarks/budget_levers.py B --threads 1
"""
import argparse
import time

import torch

from yolocompress.teach import pipeline as pl

from data_regime import log   # a sibling script: benchmarks/ is on sys.path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("lever", choices=("A", "B"))
    ap.add_argument("--threads", type=int, default=1, help="torch threads (never more than cores over processes)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    pc, t0 = pl.PipelineConfig(), time.time()
    target = pl.budget_spec(pc)

    if args.lever == "A":
        sp = pl.sparse(pc, epochs=10, progress=False); log(sp, "sparse-e10")
        for blocks in (pc.blocks, 0):
            pr = pl.prune(pc, sp, **(target | {"suffix": "-s10", "blocks": blocks})); log(pr, f"what-if b{blocks}")
            log(pl.finetune(pc, pr, epochs=20, progress=False), f"ft20 b{blocks}")
        log(pl.control_same_epochs(pc, sp, epochs=20, progress=False), "control20")
    else:
        sp = pl.sparse(pc, progress=False); log(sp, "sparse-e20")
        pr = pl.prune(pc, sp, **(target | {"blocks": 0})); log(pr, "what-if b0")
        log(pl.finetune(pc, pr, progress=False), "ft10 b0")
        log(pl.control_same_epochs(pc, sp, progress=False), "control10")
        pr16 = pl.prune(pc, sp, **target); log(pr16, "what-if b16")
        log(pl.control_scratch(pc, pr16, progress=False), "scratch60 b16")
    print(f"done {args.lever} in {time.time() - t0:.0f} s", flush=True)


if __name__ == "__main__":
    main()
