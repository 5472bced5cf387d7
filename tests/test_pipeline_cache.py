"""Cache keys of the pipeline's stages name the dataset by content, not by the spelling of its path:
the notebooks (absolute paths) reuse what ``make results`` (relative paths) trained."""
import os

import pytest

from yolocompress.teach import pipeline
from yolocompress.data.synth import ShapesConfig, make_shapes


@pytest.fixture(scope="module")
def tiny_set(tmp_path_factory):
    root = tmp_path_factory.mktemp("cache")
    yaml_path = make_shapes(root / "data" / "shapes", ShapesConfig(n_train=8, n_val=4), workers=1, progress=False)
    return root, yaml_path


def test_data_key_ignores_the_spelling_of_the_path(tiny_set, monkeypatch):
    root, yaml_path = tiny_set
    link = root / "linked"
    os.symlink(yaml_path.parent, link)
    monkeypatch.chdir(root)
    spellings = [yaml_path, yaml_path.resolve(), "data/shapes/data.yaml", "./data/shapes/../shapes/data.yaml",
                 link / "data.yaml"]
    keys = {pipeline.data_key(p) for p in spellings}
    assert len(keys) == 1


def test_data_key_changes_with_the_dataset(tiny_set, tmp_path):
    _, yaml_path = tiny_set
    other = tmp_path / "data.yaml"
    other.write_text(yaml_path.read_text().replace("nc: 8", "nc: 8\n# another dataset"))
    assert pipeline.data_key(other) != pipeline.data_key(yaml_path)
    stamp_free = tmp_path / "copy" / "data.yaml"           # same yaml text, no generator stamp beside it
    stamp_free.parent.mkdir()
    stamp_free.write_text(yaml_path.read_text())
    assert pipeline.data_key(stamp_free) != pipeline.data_key(yaml_path)


def test_a_stage_trained_under_one_spelling_is_loaded_under_another(tiny_set, monkeypatch):
    root, yaml_path = tiny_set
    monkeypatch.chdir(root)
    settings = dict(runs=str(root / "runs"), baseline_epochs=1, max_batches=1, max_val_images=4, batch_size=4,
                    latency_runs=1)
    first = pipeline.baseline(pipeline.PipelineConfig.quick(data="data/shapes/data.yaml", **settings), progress=False)
    written = {p.name: p.stat().st_mtime_ns for p in (root / "runs" / "baseline").iterdir() if p.is_file()}
    again = pipeline.baseline(pipeline.PipelineConfig.quick(data=str(yaml_path.resolve()), **settings), progress=False)
    assert again.key == first.key
    assert again.row == first.row
    # loaded, not trained again: no file of the run directory was rewritten
    assert {p.name: p.stat().st_mtime_ns for p in (root / "runs" / "baseline").iterdir() if p.is_file()} == written


@pytest.mark.parametrize("damage", ["", "{not json", "[1, 2]", '{"key": "k"}', "history:garbage", "history:missing",
                                    "final:missing"])
def test_a_damaged_cache_stage_is_named_and_trained_again(tiny_set, tmp_path, damage):
    """done.json empty, bad JSON, a list or without its row, or history.csv / final.pt garbage or
    missing: the stage warns with its name and trains again, and the new run reads back."""
    import json
    _, yaml_path = tiny_set
    pc = pipeline.PipelineConfig.quick(data=str(yaml_path), runs=str(tmp_path / "runs"), baseline_epochs=1,
                                       max_batches=1, max_val_images=4, batch_size=4, latency_runs=1)
    first = pipeline.baseline(pc, progress=False)
    run = tmp_path / "runs" / "baseline"
    what, _, how = damage.partition(":")
    if what == "history":
        (run / "history.csv").unlink() if how == "missing" else (run / "history.csv").write_bytes(b"\x00\xff,\n\"")
    elif what == "final":
        (run / "final.pt").unlink()
    else:
        (run / "done.json").write_text(damage)
    with pytest.warns(UserWarning, match="stage baseline: its cached run .* is damaged"):
        again = pipeline.baseline(pc, progress=False)
    assert again.key == first.key and json.loads((run / "done.json").read_text())["key"] == first.key
    assert pipeline.baseline(pc, progress=False).row == again.row          # and now it loads cleanly
