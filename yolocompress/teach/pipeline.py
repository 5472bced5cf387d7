"""The whole method as a few cached stage functions, shared by the notebooks and ``make results``.

    baseline(pc) -> sparse(pc) -> prune(pc, ...) -> finetune(pc, ...)

Each training stage writes a run directory under ``pc.runs`` and a ``done.json`` keyed by the
settings that produced it: calling a stage again with the same settings loads the result instead
of training again (so any notebook can be opened on its own, and ``make results`` can be resumed),
while changed settings retrain. Every result carries the numbers the comparison needs: params,
GFLOPs, CPU latency, mAP@0.5, mAP@0.5:0.95 and training time.
"""
from __future__ import annotations

import copy
import functools
import hashlib
import json
import re
import time
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Sequence

import pandas as pd

from yolocompress.data.dataset import DataConfig, load_data_config
from yolocompress.compress.distill import DistillConfig
from yolocompress.files import atomic_write_text
from yolocompress.darknet.model import Darknet
from yolocompress.compress.budget import Budget
from yolocompress.compress.plan import PruneConfig, make_plan
from yolocompress.deploy.footprint import cost_row
from yolocompress.compress.sparsity import SparseConfig
from yolocompress.compress.strategies import DEFAULT_STRATEGY
from yolocompress.compress.recipe import train_recipe
from yolocompress.compress.surgery import apply_plan
from yolocompress.engine.evaluate import evaluate_on
from yolocompress.engine.train import TrainConfig
from yolocompress.darknet.loader import load_model
from yolocompress.darknet.weights import safe_load, save_pt


@dataclass(frozen=True)
class PipelineConfig:
    data: str = "data/shapes/data.yaml"   # dataset yaml
    runs: str = "runs/demo"               # where every stage's run directory goes
    arch: str = "teach"                   # zoo name of the baseline architecture
    img_size: int = 128                   # px
    batch_size: int = 32
    optimizer: str = "adam"               # adam (AdamW) | sgd
    lr: float = 4e-3                      # baseline peak lr (measured: 4e-3 -> 0.79 mAP@0.5, 2e-3 -> 0.77)
    amp: str = "auto"                     # fp16 on CUDA, bf16 on a CPU with native bf16, else fp32 (precision.py)
    baseline_epochs: int = 24             # 30 / 20 / 6 before make results had to fit one 3-hour session
    sparse_epochs: int = 16               # (demo --dry-run: 2.8 h estimated; 24 / 16 / 5 and one schedule: ~2 h)
    sparsity: float = 0.1                 # s; with AdamW, s is compared with the gradient (~6e-3 median)
    sparse_schedule: str = "local-decay"  # measured best: 76% of gammas < 1e-2 at -1 pt mAP@0.5
    sparse_lr: float = 3e-3
    strategy: str = DEFAULT_STRATEGY      # channel strategy of the demo's combined and budget prunes
    ratio: float = 0.7                    # requested prune ratio of the three channel strategies
    min_keep: float = 0.01
    blocks: int = 16                      # residual blocks dropped by layer / combined pruning (the seed: 16 of 23)
    budget: str = "20%"                   # GFLOPs budget of the budget prunes (union + blocks), each importance
    kd_importance: str = "gamma-per-flop"  # channel ranking of the budget prunes (and the distillation target)
    kd_budget: str | None = "5%"          # GFLOPs budget of the distillation target, a prune that plain
                                          # finetuning recovers only partly (None: `budget`). Measured on the
                                          # one-class set, plain ft 10 against the control's 0.987 mAP@0.5:
                                          # 20% 0.986, 10% 0.986, 5% 0.952
    finetune_epochs: int = 5              # every finetune and same-epoch control (10 before the cliff ladder)
    compare_schedules: bool = False       # also train the two other sparse schedules from the baseline (the
                                          # demo and notebook 03 do; make results leaves them out to fit its budget)
    gradual_steps: tuple = ("40%",)       # GFLOPs budgets the gradual prune passes through on its way to
                                          # `budget` (benchmarks/gradual_prune.py, mAP@0.5 against the control:
                                          # width 6, easier set: -6.2 points, one-shot -9.5; width 8: -6.6, -6.1)
    gradual_between: int = 3              # sparse epochs after each step; the final finetune gets the rest
    finetune_lr: float = 4e-3             # the training lr, as the seed finetunes (measured on the 20% budget
                                          # prune, 10 epochs: 0.671 mAP@0.5 at 4e-3; 0.624 at 1e-3 in an earlier run)
    distill_weight: float = 1.0
    temperature: float = 3.0
    kd_sweep: tuple = ((0.1, 3.0), (0.3, 3.0), (0.3, 1.0))   # (weight, T) tried besides the
                                          # default (1, 3) for each KD kind, seed kd_seeds[0]
    kd_margins: tuple = (0.05,)           # bounded KD's margin m tried besides 0 (at the default weight and T)
    kd_seeds: tuple = (0, 1, 2)           # plain, Hinton and bounded finetuning, each over these seeds
    penalty_values: tuple = (1e-3, 0.1)   # s of the constant-penalty runs (slider), AdamW: near the median of
                                          # the baseline's per-channel gamma-gradient RMS and above all of it
                                          # (measured: p50 1.3e-3, p99 0.023, every channel < 0.1;
                                          # benchmarks/penalty_rule.py)
    penalty_epochs: int | None = 8        # epochs of each penalty run (None: sparse_epochs // 2): too few for any
                                          # s to move a gamma to 0 under AdamW (its travel, sum of lr, < |gamma|),
                                          # enough under SGD (travel lr * s * steps / (1 - momentum)): the lesson
    penalty_sgd: tuple = ((1e-3, 1e-2), (1e-2, 1e-2), (3e-2, 1e-2))   # (s, lr) of the SGD penalty runs: the
                                          # original's s at lr 0.01, then 10 and 30 times it (travel 0.04 / 0.4 / 1.3)
    cliff_budgets: tuple = ("30%", "20%", "10%", "5%", "2.5%")   # GFLOPs ladder of every strategy, finetuned
    cliff_blocks: tuple = (12, 16, 20)    # residual blocks dropped by the layer-only prunes of the ladder
    seed_budgets: tuple = ("20%", "5%")   # ladder budgets (one before the cliff, one on it) where the combined
                                          # prune and the control run over kd_seeds and the scratch control trains
    sweep_ratios: tuple = (0.5, 0.7, 0.8, 0.9)   # what-if sensitivity of each channel strategy
    budgets: tuple = ("40%", "20%", "10%", "5%")  # GFLOPs budgets of the importance comparison
    seed: int = 0
    max_batches: int | None = None        # QUICK: batches per epoch
    max_val_images: int | None = None     # QUICK: val images per evaluation
    latency_runs: int = 20                # batch-1 forwards timed per model
    scratch_controls: bool = True         # train the combined prune's architecture from scratch as a control
    flops_weighted: bool = False          # the FLOPs-weighted sparse branch (notebook 03, section 6; its question
                                          # is answered - no gain at equal budget - so make results leaves it out)
    eval_every: int = 5                   # evaluate during training every k epochs (and at the end)

    @classmethod
    def quick(cls, **kw) -> "PipelineConfig":
        """Tiny settings that exercise every stage in seconds (CI, QUICK notebooks, ``demo --preset quick``)."""
        base = dict(baseline_epochs=2, sparse_epochs=2, finetune_epochs=2, gradual_between=1, max_batches=4, max_val_images=32,
                    batch_size=16, latency_runs=3, runs="runs/quick", amp="off", kd_sweep=((3.0, 3.0),),
                    kd_margins=(), kd_seeds=(0, 1), penalty_values=(0.01, 0.3), penalty_sgd=((0.03, 0.01),),
                    sweep_ratios=(0.5, 0.9), budgets=("20%",), cliff_budgets=("20%", "5%"), cliff_blocks=(16,),
                    flops_weighted=True, penalty_epochs=None, compare_schedules=True)   # fp32: bf16 kernels take ~30 s to warm up, more than a quick run
        base.update(kw)
        return cls(**base)

    @classmethod
    def small(cls, **kw) -> "PipelineConfig":
        """The whole method end to end in minutes on 2 CPU cores (``make demo``): every stage of the
        full run, with 12 batches an epoch, 8 / 5 / 4 epochs of baseline / sparse / finetuning (30 /
        20 / 6 in full), one KD seed, two of each sweep and one rung of the cliff ladder. Its numbers show the shape of the
        method, not the published results (``make results`` makes those).
        Measured on 2 cores (AMD EPYC): 7.8 min, 9.7 with install and data on a fresh clone (``time make demo``)."""
        # amp off (fp32, as quick): in bf16 (--amp auto on a CPU with AVX512-BF16) the baseline's
        # 12-step warm-up diverged at 2 threads (non-finite loss at epoch 3; 1 thread trained) - measured
        # 2026-12-07 on an AMD EPYC, with this version and the one before it alike
        base = dict(baseline_epochs=8, sparse_epochs=5, finetune_epochs=4, gradual_between=1, max_batches=12, amp="off",
                    max_val_images=128, eval_every=2, latency_runs=5, runs="runs/demo-small", kd_seeds=(0,),
                    kd_sweep=((0.3, 3.0),), kd_margins=(), penalty_values=(0.01, 0.3), penalty_sgd=((0.03, 0.01),),
                    sweep_ratios=(0.5, 0.8), budgets=("20%", "5%"), cliff_budgets=("5%",), cliff_blocks=(16,),
                    seed_budgets=("5%",), penalty_epochs=None, compare_schedules=True)
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
    ``make results``) and another clone of the same repository share their finished runs."""
    p = Path(path)
    if not p.is_file():
        return f"missing:{p.resolve()}"       # load_data_config reports it when the stage runs
    h = hashlib.sha1(p.read_bytes())
    stamp = p.parent / "shapes.json"
    # the generator's stamp identifies the bundled set anywhere; another dataset is its resolved folder,
    # so two datasets whose yaml reads the same ("path: .") never share runs
    h.update(stamp.read_bytes() if stamp.is_file() else str(p.parent.resolve()).encode())
    return h.hexdigest()[:12]


def data_of(pc: PipelineConfig) -> DataConfig:
    return load_data_config(pc.data)


def measure(pc: PipelineConfig, name: str, model: Darknet, data: DataConfig | None = None, **extra) -> dict:
    """The comparison row of a model: size, cost, speed (batch 1, 2 threads, CPU) and accuracy."""
    model = model.cpu().eval()
    m = evaluate_on(model, data or data_of(pc), img_size=pc.img_size, max_images=pc.max_val_images)
    return {"model": name, **cost_row(model, pc.img_size, pc.latency_runs), "map50": m.map50, "map": m.map,
            **extra}


@dataclass(frozen=True)
class StageRun:
    """What one training stage of the pipeline runs: its schedule and the method's plug-ins."""
    epochs: int
    lr: float                                  # peak learning rate
    sparsity: SparseConfig | None = None       # sparse training (L1 on BN gamma)
    distill: DistillConfig | None = None       # distillation from the teacher given beside it
    seed: int | None = None                    # None: the pipeline's seed
    eval_every: int | None = None              # None: the pipeline's


def _train_cached(pc: PipelineConfig, name: str, model: Darknet, run: StageRun, parent: Stage | None = None,
                  teacher: Darknet | None = None, progress: bool = True) -> Stage:
    """Train one stage, or load it when ``done.json`` says these exact settings already ran.
    The key covers the stage's own settings, the data, and its parent's key (a retrained
    parent retrains its children)."""
    out = Path(pc.runs) / name
    tc = replace(pc.train_config(run.epochs, run.lr, run.seed), from_scratch=parent is None)
    if run.eval_every:
        tc = replace(tc, eval_every=run.eval_every)
    key = _key(data_key(pc.data), name, tc.to_dict(), run.sparsity and run.sparsity.to_dict(),
               run.distill and run.distill.to_dict(), model.cfg_text(), parent.key if parent else "scratch",
               pc.latency_runs)
    cached = _read_cached(out, name, key)
    if cached is not None:
        return cached
    t0 = time.time()
    result = train_recipe(model, data_of(pc), tc, out, sparsity=run.sparsity, teacher=teacher,
                          distill=run.distill, exist_ok=True, progress=progress, meta={"stage": name})
    took = time.time() - t0
    save_pt(result.model, out / "final.pt", stage=name)
    total = run.epochs + (parent.row.get("epochs_total", 0) if parent else 0)
    row = measure(pc, name, result.model, time_s=took, epochs=run.epochs, epochs_total=total)
    atomic_write_text(out / "done.json", json.dumps({"key": key, "row": row}, indent=1))
    return Stage(name, result.model, result.history, row, _artifacts(out), key)


def _read_cached(out: Path, name: str, key: str) -> Stage | None:
    """The finished stage in ``out`` when its ``done.json`` holds ``key``; None when it is not
    there or was made with other settings. A damaged stage (done.json not a JSON object with a
    ``row``, history.csv or final.pt unreadable) is named in a warning and None is returned, so
    it is trained again instead of stopping the notebook or ``make results``."""
    import warnings
    done = out / "done.json"
    if not done.exists():
        return None
    try:
        info = json.loads(done.read_text())
        if not isinstance(info, dict) or not isinstance(info.get("row"), dict):
            raise ValueError("expected a JSON object with a 'row' object")
        if info.get("key") != key:
            return None
        return Stage(name, load_model(out / "final.pt"), pd.read_csv(out / "history.csv"), info["row"],
                     _artifacts(out), key)
    except Exception as e:             # noqa: BLE001 - any damage means: not done
        warnings.warn(f"stage {name}: its cached run in {out} is damaged ({type(e).__name__}: {e}); "
                      "training it again", stacklevel=3)
        return None


def store_latency(pc: PipelineConfig, name: str, latency_ms: float, conditions: dict) -> bool:
    """Record a stage's latency measured under fixed conditions (``report``'s interleaved timing) in
    its done.json, replacing the figure taken right after training, so every reader of the stage
    (results.md, the notebooks) sees one measurement per model. False when ``name`` is not a
    finished stage of ``pc.runs`` (e.g. a pruned model before finetuning)."""
    done = Path(pc.runs) / name / "done.json"
    if not done.is_file():
        return False
    info = json.loads(done.read_text())
    info["row"] |= {"latency_ms": latency_ms, "latency_conditions": conditions}
    atomic_write_text(done, json.dumps(info, indent=1))
    return True


def _artifacts(out: Path) -> dict:
    """The per-run arrays a training run kept in its checkpoint (e.g. gamma histograms)."""
    return safe_load(out / "last.pt").get("artifacts", {})


# ----------------------------------------------------------------------------- stages

def baseline(pc: PipelineConfig, progress: bool = True) -> Stage:
    """Train the baseline from scratch."""
    data = data_of(pc)
    model = load_model(pc.arch, classes=data.nc)
    return _train_cached(pc, "baseline", model, StageRun(pc.baseline_epochs, pc.lr), progress=progress)


def sparse(pc: PipelineConfig, schedule: str | None = None, s: float | None = None, scope: str = "all",
           name: str | None = None, epochs: int | None = None, progress: bool = True,
           weighting: str = "uniform", base: Stage | None = None, optimizer: tuple | None = None) -> Stage:
    """Sparse training (L1 on BN gamma) starting from the baseline (``base``; None: ``baseline(pc)``);
    ``weighting="flops"`` weights each channel's penalty by what it costs (``sparsity.channel_weights``).
    ``optimizer``: (name, lr) replacing the pipeline's (the SGD penalty runs); the name then says so."""
    base = base or baseline(pc, progress)
    sc = SparseConfig(s=pc.sparsity if s is None else s, schedule=schedule or pc.sparse_schedule, scope=scope,
                      weighting=weighting)
    epochs = epochs or pc.sparse_epochs
    optimizer, lr = optimizer or (None, None)
    other = optimizer not in (None, pc.optimizer) or lr not in (None, pc.sparse_lr)
    name = name or (f"sparse-{sc.schedule}-s{sc.s:g}" + ("" if scope == "all" else f"-{scope}")
                    + ("" if weighting == "uniform" else f"-{weighting}")
                    + ("" if epochs == pc.sparse_epochs else f"-e{epochs}")
                    + (f"-{optimizer or pc.optimizer}-lr{lr or pc.sparse_lr:g}" if other else ""))
    start = copy.deepcopy(base.model)          # training changes it in place; the baseline stays
    q = replace(pc, optimizer=optimizer or pc.optimizer)
    return _train_cached(q, name, start, StageRun(epochs, lr or pc.sparse_lr, sparsity=sc), base, progress=progress)


def prune(pc: PipelineConfig, source: Stage, strategy: str | None = None, ratio: float | None = None,
          blocks: int = 0, name: str | None = None, budget: str | float | None = None,
          importance: str = "gamma", suffix: str = "") -> Stage:
    """Plan + surgery on a (sparse) stage's model; the pruned model is measured before finetuning
    (what-if and compact are the same function, so one evaluation serves both). ``budget``
    (e.g. "20%", a ``Budget`` spelling) replaces the ratio by the one that meets it. ``suffix`` tells
    apart the same prune of another source (its run directories would collide otherwise)."""
    strategy = strategy or pc.strategy
    ratio = pc.ratio if ratio is None else ratio
    config = PruneConfig(strategy=strategy, ratio=ratio, min_keep=pc.min_keep, drop_blocks=blocks,
                         budget=budget, importance=importance, img_size=pc.img_size)
    plan = make_plan(source.model, config, source=source.name)
    compact = apply_plan(source.model, plan).eval()
    size = f"-t{str(budget).rstrip('%')}pct" if budget else f"-r{ratio:g}"
    name = name or (strategy + size + (f"-b{blocks}" if blocks else "")
                    + ("" if importance == "gamma" else f"-{importance}")) + suffix
    out = Path(pc.runs) / f"prune-{name}"
    out.mkdir(parents=True, exist_ok=True)
    plan.save(out / "plan.json")
    save_pt(compact, out / "pruned.pt", plan=plan.to_dict())
    row = measure(pc, f"{name} (no finetune)", compact, pruned=plan.pruned_fraction,
                  epochs_total=source.row.get("epochs_total", 0))
    return Stage(name, compact, extra={"plan": plan}, row=row, key=_key(source.key, plan.to_dict()))


def prune_gradual(pc: PipelineConfig, source: Stage, progress: bool = True) -> Stage:
    """Beyond the seed: reach the budget prune's budget (``budget_spec``) in steps. Prune to
    each of ``pc.gradual_steps`` (a share of ``source``'s GFLOPs; the blocks go in the first step),
    sparse-train the pruned model ``pc.gradual_between`` epochs so the next cut finds small gammas
    again, and finally prune to ``pc.budget``. Returns that last prune, before finetuning: finetune
    it for ``gradual_finetune_epochs(pc)`` and the whole chain has trained as long as the one-shot
    prune + finetune, so both stand beside the same same-epoch control."""
    spec = budget_spec(pc)
    gflops = source.row["GFLOPs"]
    sc = SparseConfig(s=pc.sparsity, schedule=pc.sparse_schedule)
    stage, name = source, "gradual"
    for k, step in enumerate([*pc.gradual_steps, pc.budget]):
        budget = Budget.parse(step).of(gflops)                               # GFLOPs, of the original model
        name += f"-{str(step).rstrip('%')}" + ("pct" if str(step).endswith("%") else "g")
        pruned = prune(pc, stage, **(spec | {"budget": budget, "blocks": spec["blocks"] if k == 0 else 0,
                                             "name": name}))
        if k == len(pc.gradual_steps):
            return pruned
        run = StageRun(pc.gradual_between, pc.finetune_lr, sparsity=sc, eval_every=pc.gradual_between)
        stage = _train_cached(pc, f"sparse-{name}", copy.deepcopy(pruned.model), run, pruned, progress=progress)


def gradual_finetune_epochs(pc: PipelineConfig) -> int:
    """The final finetune of the gradual prune: the finetune epochs less the sparse runs between steps."""
    epochs = pc.finetune_epochs - pc.gradual_between * len(pc.gradual_steps)
    if epochs < 1:
        raise ValueError(f"gradual_between={pc.gradual_between} x {len(pc.gradual_steps)} steps leaves no "
                         f"epoch of the {pc.finetune_epochs} finetune epochs for the final finetune")
    return epochs


def finetune_gradual(pc: PipelineConfig, pruned: Stage, progress: bool = True) -> Stage:
    """Finetune ``prune_gradual``'s last prune for the epochs its steps left (``gradual_finetune_epochs``)."""
    return finetune(pc, pruned, epochs=gradual_finetune_epochs(pc), progress=progress)


def reachable(pc: PipelineConfig, strategy: str, budget: str, blocks: int = 0) -> bool:
    """Whether ``strategy`` (with ``blocks`` residual blocks dropped) can prune the baseline
    architecture to ``budget`` at all: its smallest plan (every pool channel at its floor) fits.
    Known before any training - the floor depends on the architecture and ``min_keep``, not on the
    gammas - so the ladder leaves out a prune that could never run (conservative never cuts the
    residual-tied convs, which carry most of the GFLOPs)."""
    return _reachable(pc.arch, _classes(pc), strategy, str(budget), blocks, pc.min_keep, pc.img_size)


def _classes(pc: PipelineConfig) -> int:
    """The dataset's class count (1 when its config is not there yet: the head's few GFLOPs aside,
    reachability does not depend on it)."""
    try:
        return data_of(pc).nc
    except Exception:          # a missing or bad dataset is reported by the stage that reads it
        return 1


@functools.lru_cache(maxsize=None)
def _reachable(arch: str, classes: int, strategy: str, budget: str, blocks: int, min_keep: float,
               img_size: int) -> bool:
    from yolocompress.compress.errors import PlanError
    model = load_model(arch, classes=classes)
    config = PruneConfig(strategy=strategy, ratio=0.5, min_keep=min_keep, drop_blocks=blocks, budget=budget,
                         importance="gamma", img_size=img_size)
    try:
        make_plan(model, config)
    except PlanError:
        return False
    return True


def budget_spec(pc: PipelineConfig, budget: str | None = None) -> dict:
    """The ``prune`` arguments of the budget prune: ``pc.strategy`` + ``pc.blocks`` blocks at
    ``budget`` (default ``pc.budget``) of the GFLOPs, channels ranked by ``pc.kd_importance``."""
    return dict(strategy=pc.strategy, ratio=pc.ratio, blocks=pc.blocks, budget=budget or pc.budget,
                importance=pc.kd_importance, name=None)


def kd_target_spec(pc: PipelineConfig) -> dict:
    """The ``prune`` arguments of the distillation target (``prune_aggressive``): the budget prune at
    ``pc.kd_budget``."""
    return budget_spec(pc, pc.kd_budget)


def prune_budget(pc: PipelineConfig, source: Stage) -> Stage:
    """The budget prune (``budget_spec``): the one the gradual prune is compared with."""
    return prune(pc, source, **budget_spec(pc))


def prune_aggressive(pc: PipelineConfig, source: Stage) -> Stage:
    """The prune the distillation stages start from: the budget prune at ``pc.kd_budget`` of the
    GFLOPs, which plain finetuning recovers only partly - where a teacher has something left to teach."""
    return prune(pc, source, **kd_target_spec(pc))


def finetune(pc: PipelineConfig, pruned: Stage, teacher: Stage | None = None, kind: str | None = None,
             seed: int | None = None, epochs: int | None = None, progress: bool = True,
             weight: float | None = None, temperature: float | None = None, margin: float = 0.0) -> Stage:
    """Finetune a pruned model, optionally distilling from ``teacher`` (kind: hinton | bounded) with
    the pipeline's KD weight and T unless ``weight``/``temperature`` are given, and bounded KD's
    ``margin`` (the name says each setting that differs from the pipeline's)."""
    w = pc.distill_weight if weight is None else weight
    t = pc.temperature if temperature is None else temperature
    distill = DistillConfig(kind=kind, weight=w, temperature=t, margin=margin) if kind else None
    wt = f"-w{w:g}-T{t:g}" if kind and (w, t) != (pc.distill_weight, pc.temperature) else ""
    wt += f"-m{margin:g}" if kind and margin else ""
    name = f"ft-{pruned.name}" + (f"-{kind}{wt}" if kind else "") + (f"-seed{seed}" if seed is not None else "")
    model = copy.deepcopy(pruned.model)
    run = StageRun(epochs or pc.finetune_epochs, pc.finetune_lr, distill=distill, seed=seed, eval_every=1)
    stage = _train_cached(pc, name, model, run, pruned, teacher.model if teacher else None, progress)
    stage.extra["plan"] = pruned.extra.get("plan")
    stage.extra["settings"] = {"kind": kind, "weight": w if kind else None, "T": t if kind else None,
                               "margin": margin if kind else None}
    return stage


def finetune_best(pc: PipelineConfig, pruned: Stage, teacher: Stage, sweep: Sequence[Stage], kind: str,
                  seed: int | None = None, progress: bool = True) -> Stage:
    """``finetune`` with distillation ``kind`` at the KD weight and T of the best ``kind`` run of
    ``sweep`` (highest mAP@0.5:0.95, the first on a tie; each run's settings are in its
    ``extra["settings"]``): the KD seed runs, which need the sweep's results before they can start."""
    best = max((st for st in sweep if st.extra["settings"]["kind"] == kind), key=lambda st: st.row["map"])
    got = best.extra["settings"]
    return finetune(pc, pruned, teacher, kind, seed, progress=progress, weight=got["weight"], temperature=got["T"],
                    margin=got.get("margin") or 0.0)


# ----------------------------------------------------------------------------- controls

def control_same_epochs(pc: PipelineConfig, source: Stage, epochs: int | None = None,
                        progress: bool = True, seed: int | None = None) -> Stage:
    """The control of every pruned + finetuned model: the unpruned ``source`` finetuned for the same
    epochs at the same lr, without a penalty. Both then have trained equally long, so the difference
    between them is the effect of pruning, not of the extra epochs. ``seed``: as ``finetune``'s."""
    epochs = epochs or pc.finetune_epochs
    run = StageRun(epochs, pc.finetune_lr, eval_every=1, seed=seed)
    name = f"control-{source.name}-ft{epochs}" + (f"-seed{seed}" if seed is not None else "")
    return _train_cached(pc, name, copy.deepcopy(source.model), run, source, progress=progress)


def control_scratch(pc: PipelineConfig, pruned: Stage, progress: bool = True) -> Stage:
    """Liu et al. (ICLR 2019, "Rethinking the Value of Network Pruning"): the pruned architecture
    trained from scratch for the same total epochs as baseline + sparse training + finetuning. If it
    matches the pruned + finetuned model, the prune found an architecture, not inherited weights."""
    epochs = pc.baseline_epochs + pc.sparse_epochs + pc.finetune_epochs
    model = load_model(pruned.model.blocks)
    return _train_cached(pc, f"scratch-{pruned.name}", model, StageRun(epochs, pc.lr), progress=progress)


# the kinds of result rows (``ResultRow.kind``)
BASELINE, SPARSE, PRUNED = "baseline", "sparse", "pruned"
CONTROL_SAME_EPOCHS = "control-same-epochs"    # the unpruned model finetuned as long as the pruned ones
CONTROL_SCRATCH = "control-scratch"            # a pruned architecture trained from scratch as long


@dataclass(frozen=True)
class ResultRow:
    """One row of docs/results.json, one per model: what the model is, how it was made, and what it
    measures. ``to_json`` writes the 17 fields up to ``control_of`` on every row; ``gradual`` only
    on the gradual prune's row; the three ``kd_`` fields only on the KD seed runs' rows (where
    ``kd_target`` is set); ``ladder`` only on the cliff's own rows; and ``seeds``, ``map_std``,
    ``map50_std`` only on the rows of a model
    trained over several seeds (each run of the group carries the group's std), so results.json
    reads back unchanged (``from_json(d).to_json() == d``)."""
    name: str
    kind: str                              # BASELINE | SPARSE | PRUNED | CONTROL_SAME_EPOCHS | CONTROL_SCRATCH
    strategy: str | None = None            # the plan's, for pruned models
    ratio: float | None = None
    blocks_dropped: int = 0
    importance: str | None = None
    target_gflops: float | None = None     # the plan's GFLOPs budget, when it had one
    sparse_model: str | None = None        # the run the prune started from
    distill: str | None = None             # the KD kind of a finetune (None: plain)
    seed: int | None = None                # set on the runs of a seed group
    epochs_total: int | None = None
    params: int | None = None
    gflops: float | None = None
    latency_ms: float | None = None
    map50: float | None = None
    map: float | None = None
    control_of: str | list | None = None   # a control's: the model(s) it controls (a list for a same-epoch
                                           # control, the one model for a from-scratch control)
    gradual: str | None = None             # the gradual prune's steps (``report.gradual_label``)
    kd_weight: float | None = None         # a KD seed run's weight and T (None for plain finetuning)
    kd_T: float | None = None
    kd_target: str | None = None           # the prune a KD seed run finetunes
    ladder: str | None = None              # a cliff-only row's line and rung ("shared 10%"; not on chain rows)
    seeds: int | None = None               # runs in its seed group (the same settings, seeds kd_seeds)
    map_std: float | None = None           # std over the group's seeds (ddof 1)
    map50_std: float | None = None

    OPTIONAL = {"gradual": ("gradual",), "kd_target": ("kd_weight", "kd_T", "kd_target"), "ladder": ("ladder",),
                "seeds": ("seeds", "map_std", "map50_std")}

    def to_json(self) -> dict:
        """The row as results.json holds it (see the class docstring for which keys appear)."""
        d = asdict(self)
        for flag, keys in self.OPTIONAL.items():
            if getattr(self, flag) is None:
                for k in keys:
                    del d[k]
        return d

    @classmethod
    def from_json(cls, d: dict) -> "ResultRow":
        """A row of results.json (or a dict with some of its keys; the others take their defaults)."""
        unknown = set(d) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"result row {d.get('name')!r}: unknown keys {sorted(unknown)}")
        return cls(**d)

    @property
    def controls(self) -> list[str]:
        """The names of the models it controls ([] for a row that is no control)."""
        c = self.control_of
        return [] if c is None else [c] if isinstance(c, str) else list(c)

    @property
    def group(self) -> str:
        """Its seed group: the name without a ``-seed<n>`` suffix (a run at the pipeline's seed has none)."""
        return re.sub(r"-seed\d+$", "", self.name)


def seed_groups(rows: list[ResultRow], base_seed: int = 0) -> list[ResultRow]:
    """``rows`` with ``seeds``, ``map_std`` and ``map50_std`` set on every run of a group of two or
    more runs of one model over seeds (``ResultRow.group``), and ``seed`` on each (``base_seed``,
    the pipeline's, where the name has no suffix)."""
    groups: dict[str, list[ResultRow]] = {}
    for r in rows:
        groups.setdefault(r.group, []).append(r)
    out = []
    for r in rows:
        g = groups[r.group]
        if len(g) > 1:
            seed = r.seed if r.seed is not None else int(r.name[len(r.group) + 5:] or base_seed)
            r = replace(r, seed=seed, seeds=len(g), map_std=_std([x.map for x in g]),
                        map50_std=_std([x.map50 for x in g]))
        out.append(r)
    return out


def _std(xs) -> float:
    """Sample std (ddof 1) of two or more numbers."""
    m = sum(xs) / len(xs)
    return (sum((x - m) ** 2 for x in xs) / (len(xs) - 1)) ** 0.5


def as_rows(records) -> list[ResultRow]:
    """``records`` as ``ResultRow``s: rows already typed, or dicts as results.json holds them."""
    return [r if isinstance(r, ResultRow) else ResultRow.from_json(r) for r in records]


def record(stage: Stage, kind: str, control_of: str | None = None, distill: str | None = None,
           seed: int | None = None) -> ResultRow:
    """The results.json row of ``stage``: its plan's settings (for a pruned model), how it was
    finetuned, and what it measures."""
    plan = stage.extra.get("plan")
    made = dict(strategy=plan.strategy, ratio=plan.ratio, blocks_dropped=len(plan.dropped_blocks),
                importance=getattr(plan, "importance", "gamma"), target_gflops=getattr(plan, "target_gflops", None),
                sparse_model=plan.source) if plan else {}
    row = stage.row
    return ResultRow(name=row.get("model", stage.name), kind=kind, **made, distill=distill, seed=seed,
                     epochs_total=row.get("epochs_total"), params=row.get("params"), gflops=row.get("GFLOPs"),
                     latency_ms=row.get("latency_ms"), map50=row.get("map50"), map=row.get("map"),
                     control_of=control_of)


def results_table(stages: list[Stage]) -> pd.DataFrame:
    """One row per stage, in order, with ratios relative to the first (the baseline)."""
    df = pd.DataFrame([s.row for s in stages])
    base = df.iloc[0]
    df["GFLOPs ratio"] = df["GFLOPs"] / base["GFLOPs"]
    df["latency ratio"] = df["latency_ms"] / base["latency_ms"]
    return df


def for_notebook(settings) -> PipelineConfig:
    """The pipeline settings of the notebook series: QUICK or full, with the series' run directory
    and the bundled dataset (``settings`` comes from ``nb.setup()``)."""
    kw = dict(runs=str(settings.runs), data=str(settings.data))
    return PipelineConfig.quick(**kw) if settings.quick else PipelineConfig(**kw)


PRESETS = {"quick": PipelineConfig.quick, "small": PipelineConfig.small, "full": PipelineConfig}
"""``demo --preset``: a smoke run of every stage, the minutes-long tour (``make demo``), and the full
reproduction that regenerates docs/ (``make results``)."""
