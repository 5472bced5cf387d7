"""Benchmark: training and evaluation throughput (images/s) of the teaching model and of YOLOv3.

    python benchmarks/train_speed.py [--threads 2] [--steps 10] [--skip-yolov3]

Times optimizer steps (forward, loss, backward, step) on random images with random boxes, and
eval-mode forwards, after warm-up, in fp32 and bf16 autocast; data loading is measured
separately from the real bundled dataset when it exists. Prints one table.
"""
import argparse
import time

import torch

from yolocompress.engine.loss import YoloLoss
from yolocompress.engine.precision import choose_amp, cpu_bf16_native, cpu_capability
from yolocompress.darknet.loader import load_model


def _targets(batch: int, n: int = 4) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    idx = torch.arange(batch).repeat_interleave(n).float()[:, None]
    cls = torch.randint(0, 8, (batch * n, 1), generator=g).float()
    xy = torch.rand(batch * n, 2, generator=g) * 0.8 + 0.1
    wh = torch.rand(batch * n, 2, generator=g) * 0.3 + 0.05
    return torch.cat([idx, cls, xy, wh], 1)


def train_speed(model, size: int, batch: int, steps: int, dtype) -> float:
    model.train()
    loss_fn = YoloLoss(model)
    opt = torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9)
    x, t = torch.rand(batch, 3, size, size), _targets(batch)
    for k in range(steps + 2):
        if k == 2:
            t0 = time.perf_counter()
        with torch.autocast("cpu", dtype=dtype, enabled=dtype is not None):
            heads = model(x)
        loss = loss_fn([h.float() for h in heads], t, (size, size))["total"]
        opt.zero_grad()
        loss.backward()
        opt.step()
    return steps * batch / (time.perf_counter() - t0)


@torch.no_grad()
def eval_speed(model, size: int, batch: int, steps: int, dtype) -> float:
    model.eval()
    x = torch.rand(batch, 3, size, size)
    for k in range(steps + 2):
        if k == 2:
            t0 = time.perf_counter()
        with torch.autocast("cpu", dtype=dtype, enabled=dtype is not None):
            model(x)
    return steps * batch / (time.perf_counter() - t0)


def data_speed(n: int = 512) -> float | None:
    from pathlib import Path
    from yolocompress.data.dataset import AugmentConfig, YoloDataset, load_data_config, make_loader
    path = Path("data/shapes/data.yaml")
    if not path.exists():
        return None
    data = load_data_config(path)
    ds = YoloDataset(data.train[:n], 128, augment=AugmentConfig(), nc=data.nc)
    ds.preload()
    loader = make_loader(ds, 32, shuffle=True)
    t0 = time.perf_counter()
    for _ in loader:
        pass
    return n / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--skip-yolov3", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cases = [("teach", 128, 32, args.steps)]
    if not args.skip_yolov3:
        cases.append(("yolov3", 416, 2, max(2, args.steps // 4)))
    choice = choose_amp("auto", torch.device("cpu"))
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU capability {cpu_capability()}, "
          f"native bf16: {'yes' if cpu_bf16_native() else 'no'} (--amp auto trains in {choice.name} here)")
    print(f"{'model':8}{'size':>6}{'batch':>7}{'precision':>11}{'train img/s':>13}{'eval img/s':>12}")
    for name, size, batch, steps in cases:
        model = load_model(name, classes=8 if name == "teach" else 80)
        for label, dtype in (("fp32", None), ("bf16", torch.bfloat16)):
            tr = train_speed(model, size, batch, steps, dtype)
            ev = eval_speed(model, size, batch, steps, dtype)
            print(f"{name:8}{size:>6}{batch:>7}{label:>11}{tr:>13.1f}{ev:>12.1f}")
    d = data_speed()
    if d is not None:
        print(f"data loading + augmentation (bundled set, 128 px, main process): {d:.0f} img/s")


if __name__ == "__main__":
    main()
