"""Training throughput of the teaching model with one or two processes at once, and how many
threads each: why ``make results`` trains two stages at once with one thread each (``demo --jobs 2``).

Each process trains ``--steps`` AdamW steps on a random batch (no data loading, so this is the
compute alone) after 3 warm-up steps, and reports images per second. Configurations run one after
another in this order; the table prints each process's rate and the total.

    OMP_WAIT_POLICY=PASSIVE python benchmarks/parallel_jobs.py            # bf16 where native (auto)
    OMP_WAIT_POLICY=PASSIVE python benchmarks/parallel_jobs.py --amp off  # fp32
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import time

CONFIGS = [(1, 2), (1, 1), (2, 1), (2, 2)]   # (processes, threads each)


def worker(threads: int, steps: int, amp: str, batch: int, img_size: int) -> None:
    import torch
    from yolocompress.darknet.loader import load_model
    from yolocompress.engine.precision import choose_amp
    torch.set_num_threads(threads)
    model = load_model("teach", classes=8).train()
    opt = torch.optim.AdamW(model.parameters(), 1e-3)
    x = torch.rand(batch, 3, img_size, img_size)                     # (B, 3, H, W)
    dtype = choose_amp(amp, torch.device("cpu")).dtype

    def step():
        with torch.autocast("cpu", dtype=dtype, enabled=dtype is not None):
            loss = sum(o.float().mean() for o in model(x))
        opt.zero_grad()
        loss.backward()
        opt.step()

    for _ in range(3):
        step()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    print(f"{steps * batch / (time.perf_counter() - t0):.1f}", flush=True)


def run(processes: int, threads: int, args) -> list[float]:
    cmd = [sys.executable, __file__, "--worker", str(threads), "--steps", str(args.steps), "--amp", args.amp,
           "--batch", str(args.batch), "--img-size", str(args.img_size)]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True) for _ in range(processes)]
    return [float(p.communicate()[0].strip().splitlines()[-1]) for p in procs]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=15, help="timed steps per process (default 15)")
    p.add_argument("--amp", default="auto", choices=["auto", "off", "bf16"], help="precision (default auto)")
    p.add_argument("--batch", type=int, default=32, help="batch size (default 32, the demo's)")
    p.add_argument("--img-size", type=int, default=128, help="input size (default 128, the demo's)")
    p.add_argument("--worker", type=int, default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker is not None:
        return worker(args.worker, args.steps, args.amp, args.batch, args.img_size)
    from yolocompress.engine.precision import cpu_capability
    print(f"teach, batch {args.batch}, {args.img_size} px, amp {args.amp}, {args.steps} timed steps per process, "
          f"CPU: {cpu_capability()}")
    print("| processes | threads each | img/s per process | img/s total |")
    print("|---|---|---|---|")
    for processes, threads in CONFIGS:
        rates = run(processes, threads, args)
        print(f"| {processes} | {threads} | {', '.join(f'{r:.1f}' for r in rates)} | {sum(rates):.1f} |", flush=True)


if __name__ == "__main__":
    main()
