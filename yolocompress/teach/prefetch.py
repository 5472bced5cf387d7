"""``make results`` on N cores at once: train the demo's stages in N processes, in dependency waves,
before ``report.run_all`` reads every one of them back from the stage cache.

Why: one training process keeps only ~1.2 of 2 cores busy (``workers=0``: loading and augmenting
a batch runs between the steps, on one core), so two one-thread stages side by side each take
about as long as one two-thread stage alone (measured: 26 s per epoch alone; a 20-epoch sparse run
took 8.5-9.6 min beside another; compute only: ``benchmarks/parallel_jobs.py``). Which stages: the
training stages of ``stages.demo_stages``, the list ``run_all`` walks, so each job makes the same
pipeline call with the same settings, the keys match and ``run_all`` then trains nothing
(``tests/test_pipeline.py`` checks that with training switched off). The waves come from the
stages' inputs (``stages.waves``):

    wave 0: the baseline
    wave 1: every sparse run (the schedules, the FLOPs-weighted run, the short penalty runs)
    wave 2: the same-epoch controls, every finetune, the gradual prune's steps, the from-scratch
            control, the KD sweep and the plain-finetuning seeds
    wave 3: the gradual prune's finetune, the KD seeds at each kind's best sweep setting
"""
from __future__ import annotations

import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor, as_completed

import torch
from tqdm.auto import tqdm

from . import pipeline as pl
from . import stages


def waves(pc: pl.PipelineConfig) -> list[list[stages.StageSpec]]:
    """The demo's training stages in waves (``stages.waves`` of ``stages.demo_stages``)."""
    return stages.waves(stages.demo_stages(pc))


def run_job(pc: pl.PipelineConfig, needed: list[stages.StageSpec]) -> pl.Stage:
    """The last of ``needed`` (a stage and every stage it reads, ``stages.closure``), trained or
    read from the cache: what ``run_all`` calls for it. The stages it reads are done by an earlier
    wave, so they load (a prune is recomputed: it trains nothing)."""
    done = stages.run(pc, needed, progress=False)
    return done[needed[-1].id]


def _worker(pc: pl.PipelineConfig, needed: list[stages.StageSpec], threads: int) -> tuple[str, float]:
    """One job in a worker process, on ``threads`` threads: (its run name, seconds)."""
    torch.set_num_threads(threads)
    t0 = time.time()
    stage = run_job(pc, needed)
    return stage.name, time.time() - t0


def _watch_parent(parent: int, every_s: float = 1.0) -> None:
    """Worker initializer: end this worker when ``parent`` is gone. A SIGKILLed parent cannot stop
    its pool, and its workers would go on training and writing the stage cache unseen (issue 43);
    a daemon thread polls the parent pid (portable, unlike Linux's PR_SET_PDEATHSIG)."""
    import os
    import threading

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(every_s)
        os._exit(1)

    threading.Thread(target=watch, name="watch-parent", daemon=True).start()


def worker_pool(jobs: int) -> ProcessPoolExecutor:
    """``jobs`` spawned worker processes that end with this one, however it ends."""
    import os
    ctx = multiprocessing.get_context("spawn")        # fork after torch has started threads can hang
    return ProcessPoolExecutor(jobs, mp_context=ctx, initializer=_watch_parent, initargs=(os.getpid(),))


def prefetch(pc: pl.PipelineConfig, jobs: int = 2, threads: int | None = None) -> None:
    """Train every stage of ``make results`` in ``jobs`` worker processes (each job with ``threads``
    torch threads; default: the cores over the jobs the wave runs at once, at least 1, so the lone
    baseline gets every core and never more threads than cores run at once - measured, two
    2-thread bf16 trainings on 2 cores ran 6x slower each). Stages already in the cache take a
    moment to load. A failing stage stops the run with its job named."""
    cores = torch.get_num_threads()
    specs = stages.demo_stages(pc)
    with worker_pool(jobs) as pool:
        for i, wave in enumerate(stages.waves(specs)):
            wave = sorted(wave, key=lambda s: s.call != "control_scratch")   # longest first: a wave waits for its last job
            each = threads or max(1, cores // min(jobs, len(wave)))
            futures = {pool.submit(_worker, pc, stages.closure(specs, [s]), each): s.id for s in wave}
            for f in tqdm(as_completed(futures), total=len(futures), desc=f"demo stages, wave {i}"):
                try:
                    name, seconds = f.result()
                except Exception as e:
                    raise RuntimeError(f"demo stage {futures[f]} failed: {e}") from e
                tqdm.write(f"  {name}: {seconds / 60:.1f} min")
