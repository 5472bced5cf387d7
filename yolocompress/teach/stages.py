"""``make results`` declared once, as data: every stage it trains or measures, in the order it reports them.

``demo_stages(pc)`` is a list of ``StageSpec``. Each names its pipeline call (``pipeline.<call>``),
the stages that call starts from (``inputs``, by spec id), its other arguments, and what the report
makes of it: its row in results.md's tables (``label``), its kind in results.json (``record``) and
its same-epoch control. Three readers walk the one list:

* ``report.run_all`` in order (``run``), collecting rows, records and tables as it goes;
* ``prefetch`` in waves (``waves``): a training stage starts once every stage it reads is done;
* notebook 10, which keeps the models it compares and runs only those (``run(pc, specs, wanted)``).

The channel-strategy stages come from ``STRATEGIES`` and the budget prunes from ``IMPORTANCES``,
so a registered strategy or importance adds its stages here with no other edit. A spec is plain
data (a frozen dataclass of strings, numbers and tuples), so it travels to a worker process; a
strategy registered at run time exists in the process that registered it only.
"""
from __future__ import annotations

import inspect
import json
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

from yolocompress.compress.distill import KINDS as KD_KINDS
from yolocompress.compress.importance import IMPORTANCES
from yolocompress.compress.sparsity import SCHEDULES
from yolocompress.compress.strategies import LAYERS_ONLY, STRATEGIES
from . import pipeline as pl

# the pipeline functions a stage may call; every one but ``prune`` trains (``prune`` only measures)
CALLS = ("baseline", "sparse", "prune", "prune_gradual", "finetune", "finetune_gradual", "finetune_best",
         "control_same_epochs", "control_scratch")
MEASURED_ONLY = ("prune",)
PRUNES = ("prune", "prune_gradual")       # calls whose stage is a pruned model before finetuning


@dataclass(frozen=True)
class StageSpec:
    """One stage of the demo: ``pipeline.<call>(pc, **inputs, **args)`` and what the report does with it."""
    id: str                                  # unique in the list, e.g. "finetune/strategy/union"
    call: str                                # a name of ``CALLS``
    inputs: tuple = ()                       # ((argument, spec id or tuple of ids), ...): the stages it gets
    args: tuple = ()                         # ((argument, value), ...): its other arguments
    tags: frozenset = frozenset()            # what readers select it by ("strategy", "kd", "flops", ...)
    label: str | None = None                 # its "stage" text in results.md's tables (None: not there)
    legend: str | None = None                # how the sparse figures name it
    record: str | None = None                # its results.json kind (None: no row)
    control: str | None = None               # id of the same-epoch control its row is compared with
    control_of: str | None = None            # a from-scratch control: id of the stage it controls
    fields: tuple = ()                       # ((key, value), ...): what it states besides (seed, gradual, ...)

    def __post_init__(self):
        """An unknown pipeline call fails when the list is built, not when the stage runs."""
        if self.call not in CALLS:
            raise ValueError(f"stage {self.id!r}: unknown pipeline call {self.call!r}: expected one of {', '.join(CALLS)}")

    @property
    def kwargs(self) -> dict:
        """Its other arguments, as keywords of its pipeline call."""
        return dict(self.args)

    @property
    def facts(self) -> dict:
        """What its results.json row states besides its numbers (seed, distill, gradual)."""
        return dict(self.fields)

    @property
    def needs(self) -> tuple[str, ...]:
        """Ids of every stage it is given, in order."""
        return tuple(i for _, ids in self.inputs for i in ((ids,) if isinstance(ids, str) else ids))

    @property
    def trains(self) -> bool:
        """Whether it trains (a prefetch job of its own); a prune is recomputed by whoever needs it."""
        return self.call not in MEASURED_ONLY

    @property
    def is_prune(self) -> bool:
        """Whether it is a pruned model before finetuning (a row of the before-finetuning table)."""
        return self.call in PRUNES


def spec(id: str, call: str, inputs: dict | None = None, tags: Iterable[str] = (), **kw) -> StageSpec:
    """A ``StageSpec`` from dicts: ``inputs`` {argument: spec id(s)}, ``args`` {argument: value}."""
    args, fields_ = kw.pop("args", {}), kw.pop("fields", {})
    return StageSpec(id, call, tuple((inputs or {}).items()), tuple(args.items()), frozenset(tags),
                     fields=tuple(fields_.items()), **kw)


# ----------------------------------------------------------------------------- the demo's stages

def demo_stages(pc: pl.PipelineConfig) -> list[StageSpec]:
    """Every stage of ``make results``, in the order results.md and results.json list them (each
    spec after the specs it reads)."""
    return [*_chain(pc), *_prunes(pc), *_gradual(pc), *_flops_weighted(pc), *_distillation(pc)]


def _chain(pc: pl.PipelineConfig) -> list[StageSpec]:
    """The baseline, the sparse schedules (the chosen one, ``"sparse"``, first: every later stage
    starts from it), the short constant-penalty runs (notebook 03's slider) and the same-epoch control."""
    chosen = pc.sparse_schedule
    out = [spec("baseline", "baseline", label="baseline", record=pl.BASELINE, tags={"chain"}),
           spec("sparse", "sparse", {"base": "baseline"}, {"chain", "schedule"}, args={"schedule": chosen},
                label=f"sparse ({chosen})", legend=chosen, record=pl.SPARSE)]
    out += [spec(f"sparse/{s}", "sparse", {"base": "baseline"}, {"schedule"}, args={"schedule": s}, legend=s)
            for s in SCHEDULES if s != chosen and pc.compare_schedules]
    return out + _penalties(pc) + [spec("control", "control_same_epochs", {"source": "sparse"}, {"chain"},
                                        label="control: unpruned, same total epochs", record=pl.CONTROL_SAME_EPOCHS)]


def penalty_epochs(pc: pl.PipelineConfig) -> int:
    """Epochs of each constant-penalty run: half the sparse run's (at least 1) unless set."""
    return pc.penalty_epochs or pc.sparse_epochs // 2 or 1


def _penalties(pc: pl.PipelineConfig) -> list[StageSpec]:
    """The constant-penalty runs from the baseline: each s of ``pc.penalty_values`` with the
    pipeline's optimizer (notebook 03's slider), then each (s, lr) of ``pc.penalty_sgd`` under SGD,
    where s is a rate rather than a threshold (benchmarks/penalty_rule.py)."""
    epochs, base = penalty_epochs(pc), {"base": "baseline"}
    args = {"schedule": "constant", "epochs": epochs}
    out = [spec(f"penalty/{s:g}", "sparse", base, {"penalty"}, args=args | {"s": s},
                fields={"optimizer": pc.optimizer, "lr": pc.sparse_lr}) for s in pc.penalty_values]
    if pc.optimizer != "sgd":
        out += [spec(f"penalty/sgd/{s:g}", "sparse", base, {"penalty"},
                     args=args | {"s": s, "optimizer": ("sgd", lr)}, fields={"optimizer": "sgd", "lr": lr})
                for s, lr in pc.penalty_sgd]
    return out


def _chain_prunes(pc: pl.PipelineConfig) -> list[tuple[str, dict]]:
    """(id, ``pl.prune`` arguments) of the finetuned prunes of the seed's chain: each registered
    channel strategy at ``pc.ratio``, layer-only, combined, and the budget prune under each importance."""
    return [(f"strategy/{s}", _prune_args(s, pc.ratio, 0)) for s in STRATEGIES] \
        + [("layers-only", _prune_args(LAYERS_ONLY, 0.0, pc.blocks)),
           ("combined", _prune_args(pc.strategy, pc.ratio, pc.blocks))] \
        + [(f"budget/{imp}", _prune_args(pc.strategy, pc.ratio, pc.blocks, pc.budget, imp)) for imp in IMPORTANCES]


def prune_specs(pc: pl.PipelineConfig) -> list[dict]:
    """The ``pl.prune`` arguments of the chain's finetuned prunes (``_chain_prunes``)."""
    return [args for _, args in _chain_prunes(pc)]


def _prune_args(strategy, ratio, blocks, budget=None, importance="gamma") -> dict:
    """The ``pl.prune`` keyword arguments, in the order plan.json's cache key was always built from;
    the layer-only prune is named ``layers-only`` (its run names are unchanged)."""
    return dict(strategy=strategy, ratio=ratio, blocks=blocks, budget=budget, importance=importance,
                name="layers-only" if strategy == LAYERS_ONLY else None)


def _prunes(pc: pl.PipelineConfig) -> list[StageSpec]:
    """Each prune of ``prune_specs`` before and after finetuning, beside the same-epoch control."""
    out = []
    for pid, args in _chain_prunes(pc):
        tags = {pid.split("/")[0]}
        out += [spec(f"prune/{pid}", "prune", {"source": "sparse"}, tags | {"plan"}, args=args,
                     label="pruned, no finetune"),
                spec(f"finetune/{pid}", "finetune", {"pruned": f"prune/{pid}"}, tags, label="pruned + finetune",
                     record=pl.PRUNED, control="control")]
    return out + _cliff(pc)


# the ladder's lines: (name, channel strategy, blocks dropped: None = pc.blocks)
COMBINED = "combined"


def cliff_lines(pc: pl.PipelineConfig) -> list[tuple[str, str, int]]:
    """(line, strategy, blocks) of every channel line of the ladder: each registered strategy alone,
    then ``pc.strategy`` with ``pc.blocks`` blocks dropped (channel + layer combined)."""
    return [(s, s, 0) for s in STRATEGIES] + [(COMBINED, pc.strategy, pc.blocks)]


def cliff_args(pc: pl.PipelineConfig, strategy: str, blocks: int, budget: str) -> dict:
    """``pl.prune`` arguments of a ladder prune: ranked by ``pc.kd_importance`` (the GFLOPs budget
    prunes' ranking), so the combined line's 20% and 5% rungs are the budget prune and the KD target."""
    return _prune_args(strategy, pc.ratio, blocks, budget, pc.kd_importance)


def _cliff(pc: pl.PipelineConfig) -> list[StageSpec]:
    """The cliff (issue 37): every line of ``cliff_lines`` pruned to each GFLOPs budget of
    ``pc.cliff_budgets`` it can reach (``pl.reachable``), and layer pruning alone at each block
    count of ``pc.cliff_blocks``, each finetuned beside the same-epoch control; at each budget of
    ``pc.seed_budgets`` the combined prune over the other seeds of ``pc.kd_seeds`` and its
    architecture trained from scratch. Specs that repeat a chain stage share its run (``waves``)."""
    out = []
    for line, strategy, blocks in cliff_lines(pc):
        for budget in (b for b in pc.cliff_budgets if pl.reachable(pc, strategy, b, blocks)):
            out += _rung(f"cliff/{line}/{budget}", cliff_args(pc, strategy, blocks, budget), line, budget)
    for blocks in pc.cliff_blocks:
        name = "layers-only" if blocks == pc.blocks else f"layers-only-b{blocks}"
        out += _rung(f"cliff/layers-only/b{blocks}", _prune_args(LAYERS_ONLY, 0.0, blocks) | {"name": name},
                     "layers-only", f"{blocks} blocks")
    out += [spec(f"control/seed{seed}", "control_same_epochs", {"source": "sparse"}, {"cliff-seed"},
                 args={"seed": seed_arg(pc, seed)}, record=pl.CONTROL_SAME_EPOCHS, fields={"seed": seed})
            for seed in pc.kd_seeds[1:] if pc.seed_budgets]
    for budget in pc.seed_budgets:
        rung = f"cliff/{COMBINED}/{budget}"
        out += [spec(f"finetune/{rung}/seed{seed}", "finetune", {"pruned": f"prune/{rung}"}, {"cliff", "cliff-seed"},
                     args={"seed": seed_arg(pc, seed)}, record=pl.PRUNED, control=f"control/seed{seed}",
                     fields={"seed": seed}) for seed in pc.kd_seeds[1:]]
        if pc.scratch_controls:
            out.append(spec(f"scratch/{budget}", "control_scratch", {"pruned": f"prune/{rung}"}, {"cliff", "scratch"},
                            label="control: pruned architecture from scratch", record=pl.CONTROL_SCRATCH,
                            control_of=f"finetune/{rung}"))
    return out


def _rung(rid: str, args: dict, line: str, rung: str) -> list[StageSpec]:
    """One prune of the ladder before and after finetuning; ``line`` and ``rung`` (its budget, or
    its block count) say where it sits in the cliff table and figure. Its rows are in results.json
    and the cliff table, not in results.md's stage table (which has the chain's prunes)."""
    tags, facts = {"cliff", line}, {"line": line, "rung": rung}
    return [spec(f"prune/{rid}", "prune", {"source": "sparse"}, tags, args=args, label="pruned, no finetune",
                 fields=facts),
            spec(f"finetune/{rid}", "finetune", {"pruned": f"prune/{rid}"}, tags, record=pl.PRUNED,
                 control="control", fields=facts)]


def gradual_label(pc: pl.PipelineConfig) -> str:
    """How the gradual prune reached its budget, e.g. "40% -> 20%, 3 sparse epochs between"."""
    return " -> ".join(map(str, [*pc.gradual_steps, pc.budget])) + f", {pc.gradual_between} sparse epochs between"


def _gradual(pc: pl.PipelineConfig) -> list[StageSpec]:
    """Beyond the seed: the budget prune reached in steps (``pl.prune_gradual``), finetuned for the
    epochs the steps left, beside the same same-epoch control as the one-shot prune."""
    how = gradual_label(pc)
    return [spec("prune/gradual", "prune_gradual", {"source": "sparse"}, {"gradual"}, label="pruned, no finetune"),
            spec("finetune/gradual", "finetune_gradual", {"pruned": "prune/gradual"}, {"gradual"},
                 label=f"gradual prune ({how}) + finetune", record=pl.PRUNED, control="control",
                 fields={"gradual": how})]


def flops_weighted_spec(pc: pl.PipelineConfig) -> dict:
    """The ``pl.prune`` arguments of the FLOPs-weighted sparse model's budget prune."""
    return _prune_args(pc.strategy, pc.ratio, pc.blocks, pc.budget, "gamma-per-flop") | {"suffix": "-wflops"}


def _flops_weighted(pc: pl.PipelineConfig) -> list[StageSpec]:
    """Beyond the seed: sparse training whose penalty is weighted by what each channel costs, then
    the uniform chain's budget prune (ranked by |gamma| per FLOP) finetuned alike, beside this sparse
    model's own same-epoch control: one setting differs from the uniform budget row, the weighting."""
    if not pc.flops_weighted:
        return []
    sched, own, tags = pc.sparse_schedule, "control/flops", {"flops"}
    return [spec("sparse/flops", "sparse", {"base": "baseline"}, tags | {"schedule"}, args={"weighting": "flops"},
                 label=f"sparse ({sched}, FLOPs-weighted penalty)", legend=f"{sched}, FLOPs-weighted",
                 record=pl.SPARSE, control=own),
            spec(own, "control_same_epochs", {"source": "sparse/flops"}, tags,
                 label="control: FLOPs-weighted sparse, unpruned, same total epochs", control=own,
                 record=pl.CONTROL_SAME_EPOCHS),
            spec("prune/flops", "prune", {"source": "sparse/flops"}, tags | {"plan"}, args=flops_weighted_spec(pc),
                 label="pruned, no finetune"),
            spec("finetune/flops", "finetune", {"pruned": "prune/flops"}, tags, label="pruned + finetune",
                 record=pl.PRUNED, control=own)]


def seed_arg(pc: pl.PipelineConfig, seed: int) -> int | None:
    """The ``seed`` argument of a finetune: the pipeline's own seed names the run without a suffix."""
    return None if seed == pc.seed else seed


def kd_sweep_settings(pc: pl.PipelineConfig) -> list[tuple]:
    """(kind, weight, T, margin) of the distillation sweep, seed ``pc.kd_seeds[0]``: each kind at the
    default weight and T and at each of ``pc.kd_sweep``, then bounded KD at each of ``pc.kd_margins``."""
    out = [(kind, w, t, 0.0) for kind in KD_KINDS for w, t in [(pc.distill_weight, pc.temperature), *pc.kd_sweep]]
    bounded = [("bounded", pc.distill_weight, pc.temperature, m) for m in pc.kd_margins if "bounded" in KD_KINDS]
    return out + bounded


def _distillation(pc: pl.PipelineConfig) -> list[StageSpec]:
    """Distillation on a prune that plain finetuning recovers only partly (``pl.kd_target_spec``):
    a sweep of KD weight and T per kind (seed ``kd_seeds[0]``), then plain finetuning and each kind
    at its best sweep setting over every seed of ``pc.kd_seeds``."""
    first, target = pc.kd_seeds[0], {"pruned": "prune/kd-target"}
    out = [spec("prune/kd-target", "prune", {"source": "sparse"}, {"kd", "plan"}, args=pl.kd_target_spec(pc),
                label="pruned, no finetune")]
    sweep = {kind: [] for kind in KD_KINDS}
    for kind, w, t, m in kd_sweep_settings(pc):
        sweep[kind].append(f"kd-sweep/{kind}/w{w:g}-T{t:g}" + (f"-m{m:g}" if m else ""))
        args = dict(kind=kind, seed=seed_arg(pc, first), weight=w, temperature=t) | ({"margin": m} if m else {})
        out.append(spec(sweep[kind][-1], "finetune", target | {"teacher": "sparse"}, {"kd", "kd-sweep"},
                        args=args, fields={"seed": first}))
    for kind in (None, *KD_KINDS):
        for seed in pc.kd_seeds:
            shown = seed == first
            call, inputs = ("finetune", target) if kind is None else \
                ("finetune_best", target | {"teacher": "sparse", "sweep": tuple(sweep[kind])})
            out.append(spec(f"kd/{kind or 'plain'}/seed{seed}", call, inputs, {"kd", "kd-seed"},
                            args=dict(kind=kind, seed=seed_arg(pc, seed)) if kind else {"seed": seed_arg(pc, seed)},
                            label=("KD target + finetune" + (f" + KD ({kind})" if kind else "")) if shown else None,
                            record=pl.PRUNED, control="control" if shown and kind is None else None,
                            fields={"distill": kind, "seed": seed}))
    return out


# ----------------------------------------------------------------------------- running them

def by_id(specs: Sequence[StageSpec]) -> dict[str, StageSpec]:
    """{id: spec}; raises on a repeated id or an input that no earlier spec makes."""
    out = {}
    for s in specs:
        missing = [i for i in s.needs if i not in out]
        if s.id in out or missing:
            raise ValueError(f"stage {s.id!r}: " + (f"inputs {missing} come from no earlier stage" if missing
                                                    else "id used twice"))
        out[s.id] = s
    return out


def closure(specs: Sequence[StageSpec], wanted: Iterable[StageSpec | str]) -> list[StageSpec]:
    """``wanted`` and every stage they read, in the order of ``specs``."""
    index, todo, keep = by_id(specs), [w if isinstance(w, str) else w.id for w in wanted], set()
    while todo:
        i = todo.pop()
        if i not in keep:
            keep.add(i)
            todo += index[i].needs
    return [s for s in specs if s.id in keep]


def run_one(pc: pl.PipelineConfig, s: StageSpec, done: dict, progress: bool = True) -> pl.Stage:
    """``pipeline.<call>(pc, **inputs, **args)`` with the inputs' stages taken from ``done`` ({id: Stage})."""
    fn = getattr(pl, s.call)
    given = {arg: done[ids] if isinstance(ids, str) else tuple(done[i] for i in ids) for arg, ids in s.inputs}
    extra = {"progress": progress} if "progress" in inspect.signature(fn).parameters else {}
    return fn(pc, **given, **s.kwargs, **extra)


def run(pc: pl.PipelineConfig, specs: Sequence[StageSpec], wanted: Iterable | None = None, progress: bool = True,
        on_stage=None) -> dict[str, pl.Stage]:
    """Run ``wanted`` (default: every spec) and the stages they read, in list order; each trains or
    loads from the stage cache. ``on_stage(spec, stage, done)`` is called after each. Returns {id: Stage}."""
    done: dict[str, pl.Stage] = {}
    for s in closure(specs, specs if wanted is None else wanted):
        done[s.id] = run_one(pc, s, done, progress)
        if on_stage:
            on_stage(s, done[s.id], done)
    return done


def signature(s: StageSpec, index: dict[str, StageSpec]) -> str:
    """What a stage computes, as text: its call, its arguments (None ones left out: the pipeline's
    defaults) and its inputs' signatures. Two specs with one signature are one run directory."""
    def sig(x: StageSpec) -> Any:
        """The stage's call, its set arguments and its inputs' signatures, nested."""
        inputs = {a: sig(index[i]) if isinstance(i, str) else [sig(index[j]) for j in i] for a, i in x.inputs}
        return [x.call, {k: v for k, v in x.args if v is not None}, inputs]
    return json.dumps(sig(s), sort_keys=True, default=str)


def waves(specs: Sequence[StageSpec]) -> list[list[StageSpec]]:
    """The training stages in dependency waves: a stage's wave is one more than the latest wave of
    a training stage it reads (through prunes, which train nothing). Each stage once (by
    ``signature``): two processes must never train one run directory at once."""
    index, depth, out, seen = by_id(specs), {}, [], set()
    for s in specs:
        depth[s.id] = max((depth[i] + index[i].trains for i in s.needs), default=0)
        key = signature(s, index)
        if s.trains and key not in seen:
            seen.add(key)
            out += [[] for _ in range(depth[s.id] + 1 - len(out))]
            out[depth[s.id]].append(s)
    return out


def select(specs: Sequence[StageSpec], *tags: str, record: Sequence[str] | None = None) -> list[StageSpec]:
    """The specs carrying any of ``tags`` (none given: all) whose results.json kind is in ``record``
    (None: any), in list order."""
    return [s for s in specs if (not tags or s.tags & set(tags)) and (record is None or s.record in record)]

