"""``make demo`` on N cores at once: train the demo's stages in N processes, in dependency waves,
before ``report.run_all`` reads every one of them back from the stage cache.

Why: one training process keeps only ~1.2 of 2 cores busy (``workers=0``: loading and augmenting
a batch runs between the steps, on one core), so two one-thread stages side by side each take
about as long as one two-thread stage alone (measured: 26 s per epoch alone; a 20-epoch sparse run
took 8.5-9.6 min beside another; compute only: ``benchmarks/parallel_jobs.py``). Each job calls the same
cached pipeline function with the same settings as ``run_all``, so the keys match and ``run_all``
then trains nothing (``tests/test_pipeline.py`` checks that with training switched off). Which
stages: the waves below, built from ``report``'s own lists (``prune_specs``, ``kd_sweep_settings``).

    wave 0: the baseline
    wave 1: every sparse run (the chain's schedule first, the other schedules, the FLOPs-weighted
            run, the short penalty runs)
    wave 2: the same-epoch controls, every finetune, the gradual prune's chain (its steps in one job),
            the from-scratch control, the KD sweep and the plain-finetuning seeds
    wave 3: the KD seeds at each kind's best sweep setting (which needs wave 2's sweep)
"""
from __future__ import annotations

import json
import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor, as_completed

import torch
from tqdm.auto import tqdm

from . import pipeline as pl

Job = tuple   # (what, keyword arguments): plain data, so it can travel to a worker process


def _sparse_runs(pc: pl.PipelineConfig) -> list[dict]:
    from .report import SCHEDULES
    short = pc.sparse_epochs // 3 or 1
    return ([dict(schedule=s) for s in sorted(SCHEDULES, key=lambda s: s != pc.sparse_schedule)]
            + [dict(weighting="flops")]
            + [dict(schedule="constant", s=s, epochs=short) for s in pc.penalty_values])


def waves(pc: pl.PipelineConfig) -> list[list[Job]]:
    """Waves 0-2 (wave 3 depends on the results of wave 2: ``kd_seed_jobs``)."""
    from .report import flops_weighted_spec, has_scratch_control, kd_sweep_settings, prune_specs, seed_arg
    chain, weighted, target = {}, dict(weighting="flops"), pl.kd_target_spec(pc)
    second = [("control", dict(sparse=chain)), ("control", dict(sparse=weighted)), ("gradual", dict(sparse=chain)),
              ("finetune", dict(sparse=weighted, prune=flops_weighted_spec(pc)))]
    for spec in prune_specs(pc):
        second.append(("finetune", dict(sparse=chain, prune=spec)))
        if has_scratch_control(pc, spec):
            second.append(("scratch", dict(sparse=chain, prune=spec)))
    first = pc.kd_seeds[0]
    second += [("finetune", dict(sparse=chain, prune=target, kd=(kind, w, t), seed=seed_arg(pc, first)))
               for kind, w, t in kd_sweep_settings(pc)]
    second += [("finetune", dict(sparse=chain, prune=target, seed=seed_arg(pc, s))) for s in pc.kd_seeds]
    longest_first = sorted(_unique(second), key=lambda job: job[0] != "scratch")   # a wave waits for its last job
    return [[("baseline", {})], [("sparse", kw) for kw in _sparse_runs(pc)], longest_first]


def kd_seed_jobs(pc: pl.PipelineConfig) -> list[Job]:
    """Wave 3: each KD kind over every seed at its best sweep setting (read back from the cache)."""
    from .report import best_kd_settings, kd_sweep_settings, seed_arg
    target = pl.kd_target_spec(pc)
    sweep = []
    for kind, w, t in kd_sweep_settings(pc):
        st = run_job(pc, ("finetune", dict(sparse={}, prune=target, kd=(kind, w, t), seed=seed_arg(pc, pc.kd_seeds[0]))))
        sweep.append({"finetune": kind, "weight": w, "T": t, "map50": st.row["map50"]})
    return [("finetune", dict(sparse={}, prune=target, kd=(kind, w, t), seed=seed_arg(pc, s)))
            for kind, (w, t) in best_kd_settings(sweep).items() if kind for s in pc.kd_seeds]


def _unique(jobs: list[Job]) -> list[Job]:
    """Each stage once: two processes must never train the same stage (one run directory) at once."""
    seen, out = set(), []
    for job in jobs:
        what, kw = job
        key = json.dumps((what, {k: v for k, v in kw.items() if v is not None}), sort_keys=True, default=str)
        if key not in seen:
            seen.add(key)
            out.append(job)
    return out


def run_job(pc: pl.PipelineConfig, job: Job) -> pl.Stage:
    """One stage, trained or read from the cache: the pipeline call ``run_all`` makes for it."""
    what, kw = job
    if what == "baseline":
        return pl.baseline(pc, progress=False)
    if what == "sparse":
        return pl.sparse(pc, progress=False, **kw)
    sparse = pl.sparse(pc, progress=False, **kw.get("sparse", {}))
    if what == "control":
        return pl.control_same_epochs(pc, sparse, progress=False)
    if what == "gradual":
        return pl.finetune_gradual(pc, pl.prune_gradual(pc, sparse, progress=False), progress=False)
    pruned = pl.prune(pc, sparse, **kw["prune"])
    if what == "scratch":
        return pl.control_scratch(pc, pruned, progress=False)
    kind, w, t = kw.get("kd") or (None, None, None)
    return pl.finetune(pc, pruned, sparse if kind else None, kind, kw.get("seed"), progress=False,
                       weight=w, temperature=t)


def _worker(pc: pl.PipelineConfig, job: Job, threads: int) -> tuple[str, float]:
    torch.set_num_threads(threads)
    t0 = time.time()
    stage = run_job(pc, job)
    return stage.name, time.time() - t0


def prefetch(pc: pl.PipelineConfig, jobs: int = 2, threads: int | None = None) -> None:
    """Train every stage of ``make demo`` in ``jobs`` worker processes (each job with ``threads``
    torch threads; default: the cores over the jobs the wave runs at once, at least 1, so the lone
    baseline gets every core and never more threads than cores run at once - measured, two
    2-thread bf16 trainings on 2 cores ran 6x slower each). Stages already in the cache take a
    moment to load. A failing stage stops the run with its job named."""
    cores = torch.get_num_threads()
    ctx = multiprocessing.get_context("spawn")        # fork after torch has started threads can hang
    with ProcessPoolExecutor(jobs, mp_context=ctx) as pool:
        for i, wave in enumerate([*waves(pc), None]):
            wave = kd_seed_jobs(pc) if wave is None else wave
            each = threads or max(1, cores // min(jobs, len(wave)))
            futures = {pool.submit(_worker, pc, job, each): job for job in wave}
            for f in tqdm(as_completed(futures), total=len(futures), desc=f"demo stages, wave {i}"):
                try:
                    name, seconds = f.result()
                except Exception as e:
                    raise RuntimeError(f"demo stage {futures[f]} failed: {e}") from e
                tqdm.write(f"  {name}: {seconds / 60:.1f} min")
