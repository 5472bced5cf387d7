"""How strong is s? Sparse training under AdamW and under SGD from the demo's baseline, and the
rule that predicts where the gammas go (issue 37: the penalty sweep showed no trade-off, and the
main sparse run collapsed mid-way).

The penalty adds s * sign(gamma) to each penalised gamma's gradient g. What one optimizer step
then does to |gamma| differs by optimizer:

* SGD (momentum mu): the step is lr * (g + s sign(gamma)), so the penalty alone moves |gamma| by
  lr * s per step, lr * s / (1 - mu) once momentum has built up. s is a *rate*: over the run,
  |gamma| travels about  sum(lr) * s / (1 - mu)  ("SGD travel"), whatever the gradient.
* AdamW: the step is lr * m / sqrt(v) - the gradient divided by its own RMS. Where s is well above
  a channel's gradient RMS sigma_c, m / sqrt(v) -> sign(gamma) and |gamma| falls by lr per step,
  however large s is; where s << sigma_c it falls by about lr * s / sigma_c. s is a *threshold*
  measured against sigma_c, and lr sets the speed: the fastest |gamma| can travel is sum(lr)
  ("Adam travel"). When s exceeds sigma_c for almost every channel, every gamma falls at the same
  rate and the whole network goes dark together once sum(lr) passes the median |gamma|: the
  collapse of the demo's main run (s = 0.1 against a median sigma of a few 1e-3).

The script measures sigma_c on the baseline (per-channel RMS of dL/dgamma over `--batches`
training batches, no augmentation, BN in train mode as in training), picks AdamW values of s at
percentiles of sigma_c (plus the values given with `--adam`), runs each for `--epochs` of the
constant schedule, and prints for each: its travel bound, the fraction of penalised gammas below
0.01 and the median |gamma| at every evaluation, and the final mAP. Uses the demo's cached
baseline (runs/demo; trained first when missing).

    OMP_WAIT_POLICY=PASSIVE python benchmarks/penalty_rule.py
    OMP_WAIT_POLICY=PASSIVE python benchmarks/penalty_rule.py --epochs 6 --percentiles 50 --adam 0.1 --sgd 1e-3
"""
import argparse
import copy
import dataclasses
import json
import math

import numpy as np
import torch

from yolocompress.teach import pipeline as pl
from yolocompress.compress.sparsity import penalised_convs
from yolocompress.data.dataset import YoloDataset, make_loader
from yolocompress.engine.loss import YoloLoss


def gamma_grad_rms(model, pc: pl.PipelineConfig, batches: int) -> np.ndarray:
    """sigma_c: the RMS over ``batches`` training batches of dL/dgamma_c, every penalised channel (N,)."""
    net = copy.deepcopy(model).train()
    layers = penalised_convs(net.blocks)
    data = pl.data_of(pc)
    loader = make_loader(YoloDataset(data.train, pc.img_size, augment=None, nc=data.nc), pc.batch_size, shuffle=True)
    loss_fn, sq, n = YoloLoss(net), None, 0
    for images, targets, _ in loader:
        net.zero_grad(set_to_none=True)
        loss_fn(net(images), targets, images.shape[-2:])["total"].backward()
        g = torch.cat([net.module_list[i].bn.weight.grad.reshape(-1) for i in layers])   # (N,)
        sq = g ** 2 if sq is None else sq + g ** 2
        n += 1
        if n == batches:
            break
    return (sq / n).sqrt().numpy()


def lr_sum(pc: pl.PipelineConfig, optimizer: str, lr: float, epochs: int, steps: int) -> float:
    """sum over the run's steps of the learning rate (the run's warm-up and cosine schedule)."""
    from yolocompress.engine.train import lr_factor
    tc = dataclasses.replace(pc.train_config(epochs, lr), optimizer=optimizer)
    return lr * sum(lr_factor(tc, k, steps) for k in range(epochs * steps))


def run(pc, base, s: float, optimizer: str, lr: float, epochs: int, steps: int, rms: np.ndarray) -> dict:
    """One constant-penalty run from the baseline; its travel bound and what it did."""
    q = dataclasses.replace(pc, optimizer=optimizer, sparse_lr=lr, eval_every=2)
    name = f"penalty-{optimizer}-s{s:g}-lr{lr:g}-e{epochs}"
    st = pl.sparse(q, schedule="constant", s=s, epochs=epochs, name=name, base=base, progress=False)
    total = lr_sum(pc, optimizer, lr, epochs, steps)
    momentum = pc.train_config(1, lr).momentum
    travel = total * s / (1 - momentum) if optimizer == "sgd" else total
    h = st.history
    evals = h[h["map50"].notna()]
    return {"optimizer": optimizer, "s": s, "lr": lr, "epochs": epochs,
            "s_over_median_sigma": s / float(np.median(rms)),
            "share_sigma_below_s": float((rms < s).mean()) if optimizer == "adam" else None,
            "travel_bound": total if optimizer == "adam" else travel,
            "lt_1e-2": [round(x, 3) for x in h["gamma_lt_1e-2"]],
            "median": [round(x, 4) for x in h["gamma_median"]],
            "map50_evals": [round(x, 3) for x in evals["map50"]], "map_evals": [round(x, 3) for x in evals["map"]],
            "final_lt_1e-2": float(h["gamma_lt_1e-2"].iloc[-1]), "map50": st.row["map50"], "map": st.row["map"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epochs", type=int, default=8, help="sparse epochs of every run (constant schedule)")
    ap.add_argument("--batches", type=int, default=16, help="training batches sigma_c is measured over")
    ap.add_argument("--percentiles", default="10,50,90", help="AdamW runs at these percentiles of sigma_c")
    ap.add_argument("--adam", default="0.1", help="AdamW values of s besides the percentiles (comma list)")
    ap.add_argument("--adam-lr", type=float, default=None, help="AdamW sparse lr (default: the demo's)")
    ap.add_argument("--sgd", default="1e-3,1e-2", help="SGD values of s (1e-3: the original repository's)")
    ap.add_argument("--sgd-lr", type=float, default=1e-2, help="SGD sparse lr")
    ap.add_argument("--threads", type=int, default=2, help="torch threads")
    ap.add_argument("--quick", action="store_true", help="the QUICK settings (runs/quick): a smoke test in a minute")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    pc = pl.PipelineConfig.quick() if args.quick else pl.PipelineConfig()
    base = pl.baseline(pc, progress=False)
    rms = gamma_grad_rms(base.model, pc, args.batches)
    pct = {p: float(np.percentile(rms, p)) for p in (10, 25, 50, 75, 90, 99)}
    print(json.dumps({"sigma_percentiles": pct, "channels": len(rms)}), flush=True)
    steps = min(math.ceil(len(pl.data_of(pc).train) / pc.batch_size), pc.max_batches or math.inf)
    adam_lr = args.adam_lr or pc.sparse_lr
    wanted = [("adam", float(f"{pct[int(p)] if int(p) in pct else np.percentile(rms, int(p)):.2g}"), adam_lr)
              for p in args.percentiles.split(",") if p]
    wanted += [("adam", float(s), adam_lr) for s in args.adam.split(",") if s]
    wanted += [("sgd", float(s), args.sgd_lr) for s in args.sgd.split(",") if s]
    rows = []
    for opt, s, lr in wanted:
        rows.append(run(pc, base, s, opt, lr, args.epochs, steps, rms))
        print(json.dumps(rows[-1]), flush=True)
    print(f"\n{'optimizer':<9} {'s':>8} {'s/med sigma':>11} {'sigma<s':>7} {'travel':>7} {'<0.01':>6} "
          f"{'median':>7} {'mAP@.5':>7} {'mAP':>6}  min mAP@.5 on the way")
    for r in rows:
        share = "" if r["share_sigma_below_s"] is None else f"{r['share_sigma_below_s']:.2f}"
        print(f"{r['optimizer']:<9} {r['s']:>8.2g} {r['s_over_median_sigma']:>11.2g} {share:>7} "
              f"{r['travel_bound']:>7.3f} {r['final_lt_1e-2']:>6.3f} {r['median'][-1]:>7.4f} "
              f"{r['map50']:>7.3f} {r['map']:>6.3f}  {min(r['map50_evals']):.3f}")


if __name__ == "__main__":
    main()
