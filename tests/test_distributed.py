"""Multi-process training on CPU (gloo, 2 processes): the same result as one process with the same
global batch, sparse training included; only rank 0 writes; a resumed 2-process run continues."""
import socket

import pytest
import torch
import torch.multiprocessing as mp

from yolocompress.engine import distributed as dist
from yolocompress.data.dataset import load_data_config
from yolocompress.compress.sparsity import SparseConfig, SparsityHook
from yolocompress.data.synth import ShapesConfig, make_shapes
from yolocompress.engine.train import TrainConfig, train

import ddp_worker
from yolocompress.darknet.loader import load_model

CFG = dict(epochs=2, batch_size=8, img_size=64, optimizer="sgd", lr=0.01, max_batches=3, max_val_images=2,
           amp="off", warmup_epochs=0.5, augment=None)


@pytest.fixture(scope="module")
def data_yaml(tmp_path_factory):
    root = tmp_path_factory.mktemp("ddp_shapes")
    make_shapes(root, ShapesConfig(n_train=32, n_val=4, img_size=64, seed=5), workers=1, progress=False)
    return str(root / "data.yaml")


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp(world: int, **kwargs) -> None:
    mp.spawn(ddp_worker.run, args=(world, _port(), kwargs), nprocs=world, join=True)


def _single(data_yaml, out, sparsity=0.0, dtype=torch.float32, **cfg) -> dict:
    data = load_data_config(data_yaml)
    torch.manual_seed(0)
    model = load_model("teach", classes=data.nc).to(dtype)
    hooks = [SparsityHook(model, SparseConfig(s=sparsity))] if sparsity else []
    train(model, data, TrainConfig(**{**CFG, **cfg}, from_scratch=True), out, hooks=hooks, progress=False)
    return _params(out)


def _params(out) -> dict:
    sd = torch.load(out / "last.pt", map_location="cpu", weights_only=True)["state_dict"]
    return {k: v for k, v in sd.items() if "running" not in k and "num_batches" not in k}


def _initial(data_yaml, img_size, dtype=torch.float32) -> dict:
    """The parameters every run starts from: what train() with from_scratch=True draws from seed 0 in
    ``dtype`` (float64 draws differ from float32 ones), head-bias priors applied."""
    from yolocompress.engine.train import init_head_bias, reset_weights, seed_everything
    model = load_model("teach", classes=load_data_config(data_yaml).nc).to(dtype)
    seed_everything(0)
    reset_weights(model)
    init_head_bias(model, img_size)
    return {k: v for k, v in model.state_dict().items() if "running" not in k and "num_batches" not in k}


def _update_diff(a: dict, b: dict, start: dict) -> float:
    """||(a - start) - (b - start)|| / ||b - start||: how much two training updates disagree."""
    diff = torch.sqrt(sum(((a[k] - b[k]).double() ** 2).sum() for k in a))
    return float(diff / torch.sqrt(sum(((b[k] - start[k]).double() ** 2).sum() for k in a)))


def test_one_step_is_the_same_arithmetic_as_one_process(tmp_path, data_yaml):
    """One optimizer step at a training learning rate, with a penalty large enough that adding the
    L1 term per process (or twice) would show: 2 processes == 1 process with the same global batch
    split into the same per-process chunks. In float64: the two differ only in summation order, a few
    ulps (~1e-16 relative) of one step; 1e-10 is far above that on any CPU and far below the 1e-3
    that a penalty applied per process (or gradients not averaged) moves the gammas."""
    cfg = {**CFG, "epochs": 1, "max_batches": 1}
    f64 = torch.float64
    _ddp(2, data=data_yaml, cfg=cfg, out=str(tmp_path / "ddp"), sparsity=0.5, dtype=f64)
    ddp = _params(tmp_path / "ddp")
    same = _single(data_yaml, tmp_path / "micro", 0.5, f64, epochs=1, max_batches=1, micro_batches=2)
    start = _initial(data_yaml, CFG["img_size"], f64)
    assert _update_diff(ddp, same, start) < 1e-10
    no_l1 = _single(data_yaml, tmp_path / "plain", 0.0, f64, epochs=1, max_batches=1, micro_batches=2)
    gam = [k for k in ddp if k.endswith("bn.weight")]
    assert max(float((ddp[k] - no_l1[k]).abs().max()) for k in gam) > 1e-3      # the penalty acted...
    assert max(float((ddp[k] - same[k]).abs().max()) for k in gam) < 1e-10      # ...exactly once


@pytest.mark.parametrize("sparsity", [0.0, 1e-2])
def test_trajectory_over_epochs_matches_one_process(tmp_path, data_yaml, sparsity):
    """Six steps over two epochs (sampler reseeded per epoch, evaluation between), in float64, so the
    test sees the DDP arithmetic and not the CPU's float order.

    Tolerance: 2 processes and 1 process with micro-batches compute the same sums in a different
    order (gloo's allreduce vs accumulation into .grad): a few float64 ulps (~1e-16) per step at
    most (measured: 0.0 here, since a sum of two addends is order-free). Training amplifies a
    perturbation; at lr 1e-5 by far less than 1e3 per step (the float32 chaotic regime at lr 0.01),
    so six steps stay below 1e-16 * 1e18 = 1e2 only in an absurd worst case and below 1e-10 in any
    measured one. 1e-8 keeps orders of margin for other CPUs and fails by orders of magnitude for a
    run whose processes did not average gradients (tens of %) or added the L1 term per process.
    Against one process with whole batches the update differs by 156% (measured): BN statistics
    over 8 images instead of 2 x 4 (what --sync-bn fixes on GPUs), not the DDP plumbing."""
    cfg = {**CFG, "lr": 1e-5}
    _ddp(2, data=data_yaml, cfg=cfg, out=str(tmp_path / "ddp"), sparsity=sparsity, dtype=torch.float64)
    ddp = _params(tmp_path / "ddp")
    start = _initial(data_yaml, CFG["img_size"], torch.float64)
    same = _single(data_yaml, tmp_path / "micro", sparsity, torch.float64, lr=1e-5, micro_batches=2)
    close = _update_diff(ddp, same, start)
    assert close < 1e-8
    whole = _single(data_yaml, tmp_path / "whole", sparsity, torch.float64, lr=1e-5)
    assert _update_diff(ddp, whole, start) > 0.5    # per-process BN statistics are what differs


def test_only_rank_zero_writes(tmp_path, data_yaml, monkeypatch):
    monkeypatch.setattr(dist, "rank", lambda: 1)
    data = load_data_config(data_yaml)
    train(load_model("teach", classes=data.nc), data, TrainConfig(**{**CFG, "epochs": 1}), tmp_path / "r1", progress=False)
    assert not (tmp_path / "r1").exists()


def test_resumed_two_process_run_continues_exactly(tmp_path, data_yaml):
    _ddp(2, data=data_yaml, cfg={**CFG, "epochs": 3}, out=str(tmp_path / "whole"))
    _ddp(2, data=data_yaml, cfg={**CFG, "epochs": 3}, out=str(tmp_path / "cut"), crash_at=4)
    _ddp(2, data=data_yaml, cfg={**CFG, "epochs": 3}, out=str(tmp_path / "cut"), resume=True)
    cut, whole = _params(tmp_path / "cut"), _params(tmp_path / "whole")
    assert all(torch.equal(cut[k], whole[k]) for k in whole)


def test_global_batch_sampler_is_independent_of_the_process_count():
    one = list(dist.GlobalBatchSampler(20, 8, seed=1))
    two = [list(dist.GlobalBatchSampler(20, 8, seed=1, rank_=r, world_=2)) for r in (0, 1)]
    assert len(one) == 2 and all(len(b) == 8 for b in one)
    assert [a + b for a, b in zip(*two)] == one


def test_sync_bn_round_trip_and_cpu_refusal():
    model = load_model("teach")
    with pytest.raises(ValueError, match="--sync-bn needs CUDA"):
        dist.sync_bn(model, torch.device("cpu"))
    ref = {k: v.clone() for k, v in model.state_dict().items()}
    synced = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    assert any(isinstance(m, torch.nn.SyncBatchNorm) for m in synced.modules())
    back = dist.revert_sync_bn(synced)
    assert not any(isinstance(m, torch.nn.SyncBatchNorm) for m in back.modules())
    assert all(torch.equal(ref[k], v) for k, v in back.state_dict().items())
