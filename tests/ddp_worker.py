"""Worker for the 2-process CPU (gloo) tests: sets the environment torchrun would set, then calls
``train()`` exactly as ``python -m yolocompress train`` does under torchrun."""
import os

import torch
from yolocompress.darknet.loader import load_model


class CrashAt:
    """A hook that raises at a given optimizer step on every rank (simulates a killed job)."""
    def __init__(self, step):
        self.step = step

    def after_backward(self, ctx):
        if ctx.step == self.step:
            raise RuntimeError("simulated crash")


def run(rank: int, world: int, port: int, kwargs: dict) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), LOCAL_RANK=str(rank),
                      WORLD_SIZE=str(world))
    torch.set_num_threads(1)
    from yolocompress.data.dataset import load_data_config
    from yolocompress.compress.sparsity import SparseConfig, SparsityHook
    from yolocompress.engine.train import TrainConfig, train
    data = load_data_config(kwargs["data"])
    torch.manual_seed(0)
    model = load_model("teach", classes=data.nc).to(kwargs.get("dtype", torch.float32))
    hooks = [SparsityHook(model, SparseConfig(s=kwargs["sparsity"]))] if kwargs.get("sparsity") else []
    if kwargs.get("crash_at") is not None:
        hooks.append(CrashAt(kwargs["crash_at"]))
    try:
        train(model, data, TrainConfig(**kwargs["cfg"], from_scratch=True), kwargs["out"], hooks=hooks,
              resume=kwargs.get("resume", False), progress=False, exist_ok=True)
    except RuntimeError as e:
        if "simulated crash" not in str(e):
            raise
