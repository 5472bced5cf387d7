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
