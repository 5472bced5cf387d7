"""Export of a pruned model: darknet cfg + .weights that reload to the same model."""
import pytest
import torch

from yolocompress.darknet.cfg import read_cfg
from yolocompress.deploy.export import export_darknet, reload_matches
from yolocompress.compress.surgery import apply_plan
from yolocompress.darknet.loader import load_model

from prune_helpers import plan_for, sparse_model


@pytest.mark.parametrize("name, blocks", [("teach", 2), ("yolov4-tiny", 0), ("yolov3", 4)])
def test_export_reloads_to_the_same_outputs(tmp_path, name, blocks):
    """The .weights format stores float32, the tensors' own dtype, so the reload holds bit-identical
    parameters in the same graph: the same kernels on the same input give the same bits (diff 0)."""
    model = sparse_model(name)
    compact = apply_plan(model, plan_for(model, strategy="union", ratio=0.5, drop_blocks=blocks)).eval()
    paths = export_darknet(compact, tmp_path, "pruned")
    assert read_cfg(paths["cfg"]) == compact.blocks
    again = load_model(paths["cfg"], paths["weights"])
    for (k, a), b in zip(compact.state_dict().items(), again.state_dict().values()):
        assert torch.equal(a, b), k
    assert reload_matches(compact, paths["cfg"], paths["weights"], img_size=64) == 0.0


def test_onnx_export_is_silent_self_describing_and_scores_as_pytorch(tmp_path, capsys):
    """export --onnx prints no warning, the file carries names, input size, resize mode, strides
    and anchors, and eval --onnx gives the PyTorch model's mAP. Tolerance: the two outputs differ by
    ~1e-5 (float32 sums in another order); mAP moves only when a score crosses a rank or a
    threshold, and one detection changing its match moves AP by at most 1 / (ground-truth boxes),
    so the mAPs must agree within that."""
    import json
    import warnings
    from yolocompress.cli.main import main
    from yolocompress.data.synth import ShapesConfig, make_shapes
    from yolocompress.darknet.loader import load_model
    from yolocompress.darknet.weights import save_pt
    from yolocompress.deploy.export import onnx_metadata
    data = make_shapes(tmp_path / "d", ShapesConfig(n_train=4, n_val=6, img_size=64, seed=2), workers=1, progress=False)
    model = load_model("teach", classes=8)
    torch.manual_seed(0)
    save_pt(model, tmp_path / "m.pt")
    (tmp_path / "n.names").write_text("\n".join(ShapesConfig().names) + "\n")
    with warnings.catch_warnings():
        warnings.simplefilter("error")                      # any warning fails the export
        assert main(["export", "--weights", str(tmp_path / "m.pt"), "--out", str(tmp_path / "e"), "--name", "m",
                     "--onnx", "--img-size", "64", "--names", str(tmp_path / "n.names")]) == 0
    meta = onnx_metadata(tmp_path / "e" / "m.onnx")
    assert meta["names"] == list(ShapesConfig().names) and meta["input_size"] == 64 and meta["strides"] == [32, 16, 8]
    assert meta["resize"] in ("letterbox", "stretch") and len(meta["anchors"]) == 3
    capsys.readouterr()
    common = ["--data", str(data), "--json", "--img-size", "64"]
    assert main(["eval", "--weights", str(tmp_path / "m.pt"), "--resize", meta["resize"], *common]) == 0
    torch_m = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert main(["eval", "--onnx", str(tmp_path / "e" / "m.onnx"), *common]) == 0
    onnx_m = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    n_gt = sum(len(p.read_text().splitlines()) for p in (tmp_path / "d" / "labels" / "val").iterdir())
    for k in ("map50", "map"):
        assert abs(onnx_m[k] - torch_m[k]) <= 1 / max(n_gt, 1), (k, onnx_m[k], torch_m[k])
