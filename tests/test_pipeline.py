"""The pipeline's stages on a tiny dataset: fair controls train exactly as long as the pruned model,
results.json rows say what each model is (cache keys: tests/test_pipeline_cache.py)."""
import pytest

from yolocompress import pipeline as pl
from yolocompress.synth import ShapesConfig, make_shapes


@pytest.fixture(scope="module")
def pc(tmp_path_factory):
    root = tmp_path_factory.mktemp("pipe")
    make_shapes(root / "d", ShapesConfig(n_train=8, n_val=4, img_size=64, seed=3), workers=1, progress=False)
    return pl.PipelineConfig.quick(data=str(root / "d" / "data.yaml"), runs=str(root / "runs"), img_size=64,
                                   baseline_epochs=1, sparse_epochs=1, finetune_epochs=1, max_batches=1,
                                   batch_size=4, max_val_images=4, latency_runs=1)


def test_controls_train_as_long_as_the_pruned_model(pc):
    base = pl.baseline(pc, progress=False)
    sparse = pl.sparse(pc, progress=False)
    pruned = pl.prune(pc, sparse, "union", 0.5, 1)
    ft = pl.finetune(pc, pruned, progress=False)
    same = pl.control_same_epochs(pc, sparse, progress=False)
    scratch = pl.control_scratch(pc, pruned, progress=False)
    assert base.row["epochs_total"] == 1 and sparse.row["epochs_total"] == 2 and pruned.row["epochs_total"] == 2
    assert ft.row["epochs_total"] == same.row["epochs_total"] == scratch.row["epochs_total"] == 3
    assert scratch.model.blocks == pruned.model.blocks and same.model.blocks == sparse.model.blocks
    rec = pl.record(ft, "pruned")
    assert (rec["strategy"], rec["ratio"], rec["blocks_dropped"], rec["epochs_total"]) == ("union", 0.5, 1, 3)
    assert rec["gflops"] < pl.record(base, "baseline")["gflops"]
    assert pl.record(scratch, "control-scratch", control_of=rec["name"])["control_of"] == rec["name"]
