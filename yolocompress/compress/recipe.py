"""A training recipe: one ``TrainConfig`` plus the optional plug-ins of the method - sparse training
(an L1 hook on BN gamma) and distillation (a loss term from a teacher). Baseline, sparse training,
finetuning and distillation are all this one call to ``train()`` with different plug-ins."""
from __future__ import annotations

from pathlib import Path

from yolocompress.data.dataset import DataConfig
from .distill import DistillConfig, DistillTerm
from yolocompress.darknet.model import Darknet
from .sparsity import SparseConfig, SparsityHook
from yolocompress.engine.train import TrainConfig, TrainResult, train


def train_recipe(model: Darknet, data: DataConfig, config: TrainConfig, out: str | Path | None,
                 sparsity: SparseConfig | None = None, teacher: Darknet | None = None,
                 distill: DistillConfig | None = None, baseline_map50: float | None = None,
                 **kw) -> TrainResult:
    """Train ``model`` with the hooks/terms the recipe needs; its settings go into the run's
    config.json so ``--resume`` and later readers know what ran."""
    hooks = [SparsityHook(model, sparsity, baseline_map50=baseline_map50)] if sparsity else []
    hooks += list(kw.pop("hooks", ()))        # the caller's own (e.g. TensorBoard logging)
    if distill is not None and teacher is None:
        raise ValueError("distillation needs a teacher model")
    terms = [DistillTerm(teacher, model, distill)] if distill else []
    meta = dict(kw.pop("meta", None) or {})
    meta.update(sparsity=sparsity.to_dict() if sparsity else None, distill=distill.to_dict() if distill else None)
    return train(model, data, config, out, hooks=hooks, terms=terms, meta=meta, **kw)
