"""The whole method as a few cached stage functions, shared by the notebooks and ``make demo``.

    baseline(pc) -> sparse(pc) -> prune(pc, ...) -> finetune(pc, ...)

Each training stage writes a run directory under ``pc.runs`` and a ``done.json`` keyed by the
settings that produced it: calling a stage again with the same settings loads the result instead
of training again (so any notebook can be opened on its own, and ``make demo`` can be resumed),
while changed settings retrain. Every result carries the numbers the comparison needs: params,
GFLOPs, CPU latency, mAP@0.5, mAP@0.5:0.95 and training time.
"""
from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import pandas as pd
import torch

from . import zoo
from .data import DataConfig, load_data_config
from .distill import DistillConfig
from .io import atomic_write_text
from .model import Darknet
from .plan import PrunePlan, plan_combined
from .profile import count_params, gflops, latency
from .sparsity import SparseConfig
from .stages import run_stage
from .surgery import apply_plan
from .train import TrainConfig, evaluate_on
from .weights import load_pt, save_pt


@dataclass(frozen=True)
class PipelineConfig:
    data: str = "data/shapes/data.yaml"   # dataset yaml
    runs: str = "runs/demo"               # where every stage's run directory goes
    arch: str = "teach"                   # zoo name of the baseline architecture
    img_size: int = 128                   # px
    batch_size: int = 32
    optimizer: str = "adam"               # adam (AdamW) | sgd
    lr: float = 4e-3                      # baseline peak lr (measured: 4e-3 -> 0.79 mAP@0.5, 2e-3 -> 0.77)
    amp: str = "bf16"                     # bf16 is ~1.6x faster on CPU; use "auto" for fp16 on CUDA
    baseline_epochs: int = 35
    sparse_epochs: int = 30
    sparsity: float = 0.1                 # s; with AdamW, s is compared with the gradient (~6e-3 median)
    sparse_schedule: str = "local-decay"  # measured best: 76% of gammas < 1e-2 at -1 pt mAP@0.5
    sparse_lr: float = 3e-3
    strategy: str = "union"               # default channel strategy of the demo
    ratio: float = 0.7                    # requested prune ratio (measured: the largest lossless union ratio)
    min_keep: float = 0.01
    blocks: int = 4                       # residual blocks dropped by layer / combined pruning
    kd_ratio: float = 0.95                # the aggressive prune that distillation is tried on:
    kd_blocks: int = 6                    # union at kd_ratio + kd_blocks blocks (~93% fewer GFLOPs)
    finetune_epochs: int = 15
    finetune_lr: float = 1e-3
    distill_weight: float = 1.0
    temperature: float = 3.0
    seed: int = 0
    max_batches: int | None = None        # QUICK: batches per epoch
    max_val_images: int | None = None     # QUICK: val images per evaluation
    latency_runs: int = 20                # batch-1 forwards timed per model
    eval_every: int = 5                   # evaluate during training every k epochs (and at the end)

    @classmethod
    def quick(cls, **kw) -> "PipelineConfig":
        """Tiny settings that exercise every stage in seconds (CI, QUICK notebooks)."""
        base = dict(baseline_epochs=2, sparse_epochs=2, finetune_epochs=1, max_batches=4, max_val_images=32,
                    batch_size=16, latency_runs=3, runs="runs/quick", amp="off")   # bf16 kernels take ~30 s to warm up
        base.update(kw)
        return cls(**base)

    def train_config(self, epochs: int, lr: float, seed: int | None = None) -> TrainConfig:
        return TrainConfig(epochs=epochs, batch_size=self.batch_size, img_size=self.img_size,
                           optimizer=self.optimizer, lr=lr, amp=self.amp, seed=self.seed if seed is None else seed,
                           max_batches=self.max_batches, max_val_images=self.max_val_images,
                           warmup_epochs=min(1.0, epochs / 3), eval_every=min(self.eval_every, epochs))


@dataclass
class Stage:
    """A finished stage: its model and the numbers that describe it."""
    name: str
    model: Darknet
    history: pd.DataFrame = field(default_factory=pd.DataFrame)
    row: dict = field(default_factory=dict)     # params, GFLOPs, latency_ms, map50, map, time_s, ...
    extra: dict = field(default_factory=dict)   # e.g. the plan, gamma histograms
    key: str = ""                               # identifies the settings (and parents) that made it


def _key(*parts) -> str:
    return hashlib.sha1(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:12]


def data_key(path: str | Path) -> str:
    """The dataset's part of a cache key: a hash of its config file's text (yaml or darknet .data)
    and, for the bundled set, of the generator stamp beside it (``shapes.json``) - never of how
    the path was spelled, so absolute, relative and symlinked spellings (the notebooks vs
    ``make demo``) and another clone of the same repository share their finished runs."""
    p = Path(path)
    if not p.is_file():
        return f"missing:{p.resolve()}"       # load_data_config reports it when the stage runs
    h = hashlib.sha1(p.read_bytes())
    stamp = p.parent / "shapes.json"
    if stamp.is_file():
        h.update(stamp.read_bytes())
    return h.hexdigest()[:12]


def data_of(pc: PipelineConfig) -> DataConfig:
    return load_data_config(pc.data)


def measure(pc: PipelineConfig, name: str, model: Darknet, data: DataConfig | None = None, **extra) -> dict:
    """The comparison row of a model: size, cost, speed (batch 1, 2 threads, CPU) and accuracy."""
    model = model.cpu().eval()
    data = data or data_of(pc)
    m = evaluate_on(model, data, img_size=pc.img_size, max_images=pc.max_val_images)
    lat = latency(model, pc.img_size, runs=pc.latency_runs, threads=2, device="cpu")
    return {"model": name, "params": count_params(model), "GFLOPs": gflops(model, pc.img_size),
            "latency_ms": lat["ms"], "map50": m.map50, "map": m.map, **extra}


def _train_cached(pc: PipelineConfig, name: str, model: Darknet, epochs: int, lr: float,
                  sparsity: SparseConfig | None = None, teacher: Darknet | None = None,
                  distill: DistillConfig | None = None, seed: int | None = None, parent: Stage | None = None,
                  progress: bool = True, eval_every: int | None = None) -> Stage:
    """Train one stage, or load it when ``done.json`` says these exact settings already ran.
    The key covers the stage's own settings, the data, and its parent's key (a retrained
    parent retrains its children)."""
    out = Path(pc.runs) / name
    tc = pc.train_config(epochs, lr, seed)
    if eval_every:
        tc = replace(tc, eval_every=eval_every)
    key = _key(data_key(pc.data), name, tc.to_dict(), sparsity and sparsity.to_dict(), distill and distill.to_dict(),
               model.cfg_text(), parent.key if parent else "scratch", pc.latency_runs)
    done = out / "done.json"
    if done.exists() and json.loads(done.read_text()).get("key") == key:
        info = json.loads(done.read_text())
        hist = pd.read_csv(out / "history.csv")
        extra = torch.load(out / "last.pt", map_location="cpu", weights_only=False).get("artifacts", {})
        return Stage(name, load_pt(out / "final.pt"), hist, info["row"], extra, key)
    t0 = time.time()
    result = run_stage(model, data_of(pc), tc, out, sparsity=sparsity, teacher=teacher, distill=distill,
                       exist_ok=True, progress=progress, from_scratch=parent is None, meta={"stage": name})
    took = time.time() - t0
    save_pt(result.model, out / "final.pt", stage=name)
    row = measure(pc, name, result.model, time_s=took, epochs=epochs)
    extra = torch.load(out / "last.pt", map_location="cpu", weights_only=False).get("artifacts", {})
    atomic_write_text(done, json.dumps({"key": key, "row": row}, indent=1))
    return Stage(name, result.model, result.history, row, extra, key)


# ----------------------------------------------------------------------------- stages

def baseline(pc: PipelineConfig, progress: bool = True) -> Stage:
    """Train the baseline from scratch."""
    data = data_of(pc)
    model = zoo.build(pc.arch, data.nc)
    return _train_cached(pc, "baseline", model, pc.baseline_epochs, pc.lr, progress=progress)


def sparse(pc: PipelineConfig, schedule: str | None = None, s: float | None = None, scope: str = "all",
           name: str | None = None, epochs: int | None = None, progress: bool = True) -> Stage:
    """Sparse training (L1 on BN gamma) starting from the baseline."""
    base = baseline(pc, progress)
    sc = SparseConfig(s=pc.sparsity if s is None else s, schedule=schedule or pc.sparse_schedule, scope=scope)
    epochs = epochs or pc.sparse_epochs
    name = name or (f"sparse-{sc.schedule}-s{sc.s:g}" + ("" if scope == "all" else f"-{scope}")
                    + ("" if epochs == pc.sparse_epochs else f"-e{epochs}"))
    start = load_pt(Path(pc.runs) / "baseline" / "final.pt")
    return _train_cached(pc, name, start, epochs, pc.sparse_lr, sparsity=sc, parent=base, progress=progress)


def prune(pc: PipelineConfig, source: Stage, strategy: str | None = None, ratio: float | None = None,
          blocks: int = 0, name: str | None = None) -> Stage:
    """Plan + surgery on a (sparse) stage's model; the pruned model is measured before finetuning
    (what-if and compact are the same function, so one evaluation serves both)."""
    strategy = strategy or pc.strategy
    ratio = pc.ratio if ratio is None else ratio
    plan = plan_combined(source.model, strategy, ratio, blocks, min_keep=pc.min_keep, source=source.name)
    compact = apply_plan(source.model, plan).eval()
    name = name or f"{strategy}-r{ratio:g}" + (f"-b{blocks}" if blocks else "")
    out = Path(pc.runs) / f"prune-{name}"
    out.mkdir(parents=True, exist_ok=True)
    plan.save(out / "plan.json")
    save_pt(compact, out / "pruned.pt", plan=plan.to_dict())
    row = measure(pc, f"{name} (no finetune)", compact, pruned=plan.pruned_fraction)
    return Stage(name, compact, extra={"plan": plan}, row=row, key=_key(source.key, plan.to_dict()))


def prune_aggressive(pc: PipelineConfig, source: Stage) -> Stage:
    """The aggressive combined prune the distillation stages start from: nearly all accuracy is gone
    before finetuning, which is where a teacher could help most (if the student has the capacity)."""
    return prune(pc, source, pc.strategy, pc.kd_ratio, pc.kd_blocks)


def finetune(pc: PipelineConfig, pruned: Stage, teacher: Stage | None = None, kind: str | None = None,
             seed: int | None = None, epochs: int | None = None, progress: bool = True) -> Stage:
    """Finetune a pruned model, optionally distilling from ``teacher`` (kind: hinton | bounded)."""
    distill = DistillConfig(kind=kind, weight=pc.distill_weight, temperature=pc.temperature) if kind else None
    name = f"ft-{pruned.name}" + (f"-{kind}" if kind else "") + (f"-seed{seed}" if seed is not None else "")
    model = load_pt(Path(pc.runs) / f"prune-{pruned.name}" / "pruned.pt")
    stage = _train_cached(pc, name, model, epochs or pc.finetune_epochs, pc.finetune_lr,
                          teacher=teacher.model if teacher else None, distill=distill, seed=seed,
                          parent=pruned, progress=progress, eval_every=1)
    stage.extra["plan"] = pruned.extra.get("plan")
    return stage


def results_table(stages: list[Stage]) -> pd.DataFrame:
    """One row per stage, in order, with ratios relative to the first (the baseline)."""
    df = pd.DataFrame([s.row for s in stages])
    base = df.iloc[0]
    df["GFLOPs ratio"] = df["GFLOPs"] / base["GFLOPs"]
    df["latency ratio"] = df["latency_ms"] / base["latency_ms"]
    return df


def with_runs(pc: PipelineConfig, runs: str | Path) -> PipelineConfig:
    return replace(pc, runs=str(runs))


def add_demo(sub) -> None:
    p = sub.add_parser("demo", help="run the whole pipeline on the bundled data and write docs/results.md",
                       description="Baseline, sparse training, the three channel strategies, layer-only and "
                                   "combined pruning, finetuning with and without distillation; writes "
                                   "docs/results.md and PNG figures. Finished stages are reused.")
    p.add_argument("--out", default="runs/demo", help="run directory")
    p.add_argument("--docs", default="docs", help="where results.md and figures go")
    p.add_argument("--data", default="data/shapes/data.yaml")
    p.add_argument("--quick", action="store_true", help="tiny settings (a smoke run of every stage)")
    p.set_defaults(run=run_demo)


def run_demo(args) -> None:
    from .report import run_all
    pc = PipelineConfig.quick(data=args.data, runs=args.out) if args.quick else \
        PipelineConfig(data=args.data, runs=args.out)
    run_all(pc, Path(args.docs))


def for_notebook(settings) -> PipelineConfig:
    """The pipeline settings of the notebook series: QUICK or full, with the series' run directory
    and the bundled dataset (``settings`` comes from ``nb.setup()``)."""
    kw = dict(runs=str(settings.runs), data=str(settings.data))
    return PipelineConfig.quick(**kw) if settings.quick else PipelineConfig(**kw)
