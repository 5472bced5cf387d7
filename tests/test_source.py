"""The tutorial's source model (teach/source.py): trained, saved in half precision, loadable."""
import torch

from yolocompress.data.synth import ShapesConfig
from yolocompress.darknet.loader import load_model
from yolocompress.darknet.weights import safe_load
from yolocompress.teach.source import train_source


def test_the_source_is_saved_in_half_precision_and_loads_as_float32(tmp_path):
    record = train_source(epochs=1, out=tmp_path / "run", data_dir=tmp_path / "d", weights=tmp_path / "s.pt",
                          max_batches=1, progress=False, dataset=ShapesConfig(n_train=32, n_val=2, img_size=64, seed=1))
    state = safe_load(tmp_path / "s.pt")["state_dict"]
    assert all(v.dtype == torch.float16 for v in state.values() if v.is_floating_point())
    model = load_model(tmp_path / "s.pt")
    assert next(model.parameters()).dtype == torch.float32 and model.num_classes == 8
    assert record["epochs"] == 1 and 0 <= record["map"] <= record["map50"] <= 1
    assert safe_load(tmp_path / "s.pt")["meta"]["command"].startswith("python -m yolocompress.teach.source")


def test_the_committed_source_loads_with_its_record():
    """data/pretrained/teach-shapes8.pt: the tutorial's source, eight classes, half precision, its
    command and measured mAP in the file (a fresh clone has it: no learner or CI run pretrains)."""
    from yolocompress.teach.source import SOURCE_WEIGHTS, SOURCE_SET
    payload = safe_load(SOURCE_WEIGHTS)
    meta = payload["meta"]
    assert meta["command"].startswith("python -m yolocompress.teach.source") and meta["data"] == repr(SOURCE_SET)
    assert 0 < meta["map"] < meta["map50"] <= 1 and SOURCE_WEIGHTS.stat().st_size < 10 * 2 ** 20
    assert load_model(SOURCE_WEIGHTS).num_classes == 8
