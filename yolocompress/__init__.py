"""yolocompress: shrink Darknet-cfg YOLO detectors (sparse training, channel and layer pruning,
distillation, export), and learn how.

The whole pipeline from one import (names load on first use, so ``import yolocompress`` is cheap)::

    import yolocompress as yc
    model = yc.load_model("yolov3-tiny.cfg", "yolov3-tiny.weights")
    yc.train(model, yc.load_data_config("data.yaml"), yc.TrainConfig(epochs=30), "runs/sparse",
             sparsity=yc.SparseConfig(s=1e-3))
    compact = yc.apply_plan(model, yc.make_plan(model, yc.PruneConfig(strategy="union", ratio=0.5)))
    yc.export(compact, "runs/pruned")          # pruned.cfg + pruned.weights (+ .pt)

The sub-packages, in pipeline order: ``files`` (atomic writes), ``darknet`` (cfg, model, weights),
``data``, ``engine`` (training loop, loss, evaluation), ``compress`` (sparsity, graph, plans,
surgery, distillation), ``deploy`` (export, footprint, detect), ``teach`` (the demo and the
notebooks' helpers), ``cli``.
"""
from __future__ import annotations

import importlib

# public name -> (module, attribute): the one table of what ``import yolocompress`` offers
_EXPORTS = {
    "load_model": ("yolocompress.darknet.loader", "load_model"),
    "Darknet": ("yolocompress.darknet.model", "Darknet"),
    "load_data_config": ("yolocompress.data.dataset", "load_data_config"),
    "DataConfig": ("yolocompress.data.dataset", "DataConfig"),
    "train": ("yolocompress.compress.recipe", "train_recipe"),
    "TrainConfig": ("yolocompress.engine.train", "TrainConfig"),
    "evaluate": ("yolocompress.engine.evaluate", "evaluate_on"),
    "SparseConfig": ("yolocompress.compress.sparsity", "SparseConfig"),
    "PruneConfig": ("yolocompress.compress.plan", "PruneConfig"),
    "PrunePlan": ("yolocompress.compress.plan", "PrunePlan"),
    "ProtectOptions": ("yolocompress.compress.graph", "ProtectOptions"),
    "Budget": ("yolocompress.compress.budget", "Budget"),
    "STRATEGIES": ("yolocompress.compress.strategies", "STRATEGIES"),
    "IMPORTANCES": ("yolocompress.compress.importance", "IMPORTANCES"),
    "make_plan": ("yolocompress.compress.plan", "make_plan"),
    "apply_plan": ("yolocompress.compress.surgery", "apply_plan"),
    "DistillConfig": ("yolocompress.compress.distill", "DistillConfig"),
    "export": ("yolocompress.deploy.export", "export_darknet"),
    "export_onnx": ("yolocompress.deploy.export", "export_onnx"),
}
__all__ = [*_EXPORTS, "__version__"]


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version
    try:
        return version("yolocompress")
    except PackageNotFoundError:          # run from a source tree that was never installed
        return "0+unknown"


__version__ = _version()


def __getattr__(name: str):
    """PEP 562: import a public name's module on first use."""
    if name not in _EXPORTS:
        raise AttributeError(f"module 'yolocompress' has no attribute {name!r}")
    module, attr = _EXPORTS[name]
    value = getattr(importlib.import_module(module), attr)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
