"""The tutorial's "COCO": a source model pretrained once on a larger, more varied set, committed,
so that no learner or CI run has to pretrain (issue 38: when inheriting weights pays).

The source is the teaching model trained from scratch on ``SOURCE_SET`` - all eight shape
classes, twice the bundled set's images, another seed than every other set of the tutorial - with
the baseline's recipe (AdamW, the pipeline's lr). Its weights are written in half precision
(``save_source``: 3.9 M parameters, about 7.7 MB) to ``SOURCE_WEIGHTS``, with what trained them
in the file's metadata. A target task then starts from it with ``train --weights`` (the class
count may differ: ``darknet/transfer.py`` loads every shape-matched layer).

    python -m yolocompress.teach.source --help
    python -m yolocompress.teach.source --epochs 30          # what made the committed weights
"""
from __future__ import annotations

import argparse
import time
from dataclasses import replace
from pathlib import Path

import torch

from yolocompress.data.synth import ShapesConfig, ensure_shapes

ROOT = Path(__file__).resolve().parents[2]
SOURCE_SET = ShapesConfig(n_classes=8, n_train=4000, n_val=400, seed=101)
SOURCE_DATA = ROOT / "data" / "source"
SOURCE_WEIGHTS = ROOT / "data" / "pretrained" / "teach-shapes8.pt"


def train_source(epochs: int = 30, out: str | Path = "runs/source", data_dir: str | Path = SOURCE_DATA,
                 weights: str | Path = SOURCE_WEIGHTS, max_batches: int | None = None,
                 progress: bool = True, dataset: ShapesConfig = SOURCE_SET) -> dict:
    """Generate ``SOURCE_SET`` (when missing), train the teaching model on it from scratch for
    ``epochs`` with the pipeline's baseline recipe into ``out``, and save its final weights in
    half precision to ``weights``. Returns what the metadata records (mAP, epochs, seconds)."""
    from yolocompress.compress.recipe import train_recipe
    from yolocompress.darknet.loader import load_model
    from yolocompress.data.dataset import load_data_config
    from yolocompress.engine.evaluate import evaluate_on
    from . import pipeline as pl
    yaml_path = ensure_shapes(data_dir, dataset, workers=2, progress=progress)
    data = load_data_config(yaml_path)
    pc = pl.PipelineConfig()
    config = replace(pc.train_config(epochs, pc.lr), from_scratch=True, max_batches=max_batches,
                     eval_every=max(1, epochs // 4))
    model = load_model(pc.arch, classes=data.nc)
    t0 = time.time()
    result = train_recipe(model, data, config, out, exist_ok=True, progress=progress, meta={"stage": "source"})
    seconds = time.time() - t0
    m = evaluate_on(result.model.eval(), data, img_size=pc.img_size)
    record = {"stage": "source", "data": repr(dataset), "epochs": epochs,
              "map50": m.map50, "map": m.map, "time_s": seconds, "threads": torch.get_num_threads(),
              "command": f"python -m yolocompress.teach.source --epochs {epochs}"}
    save_source(result.model, weights, **record)
    return record


def save_source(model, path: str | Path, **meta) -> None:
    """``model``'s weights in half precision (loading casts them back to the model's float32)."""
    import copy
    from yolocompress.darknet.weights import save_pt
    half = copy.deepcopy(model).cpu().half()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    save_pt(half, path, **meta)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m yolocompress.teach.source", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epochs", type=int, default=30, help="training epochs on the source set")
    ap.add_argument("--out", default="runs/source", help="run directory")
    ap.add_argument("--weights", default=str(SOURCE_WEIGHTS), help="where the half-precision weights go")
    ap.add_argument("--max-batches", type=int, default=None, help="batches per epoch (a smoke test)")
    args = ap.parse_args(argv)
    record = train_source(args.epochs, args.out, weights=args.weights, max_batches=args.max_batches)
    print(f"source: mAP@0.5 {record['map50']:.3f}, mAP@0.5:0.95 {record['map']:.3f} after {record['epochs']} epochs "
          f"in {record['time_s'] / 60:.1f} min ({record['threads']} threads) -> {args.weights}")


if __name__ == "__main__":
    main()
