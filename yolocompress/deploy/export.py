"""Export a (pruned) model: Darknet cfg + .weights (any darknet-compatible tool loads them), a
plain-data .pt, and ONNX; each can be reloaded and checked against the model it came from."""
from __future__ import annotations

import copy
from pathlib import Path

import torch

from yolocompress.darknet.cfg import write_cfg
from yolocompress.darknet.model import Darknet
from yolocompress.darknet.loader import load_model
from yolocompress.darknet.weights import save_darknet_weights, save_pt


def export_darknet(model: Darknet, out_dir: str | Path, name: str = "pruned", **meta) -> dict[str, Path]:
    """Write ``name.cfg``, ``name.weights`` and ``name.pt`` into ``out_dir``; returns their paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"cfg": out_dir / f"{name}.cfg", "weights": out_dir / f"{name}.weights", "pt": out_dir / f"{name}.pt"}
    write_cfg(model.blocks, paths["cfg"])
    save_darknet_weights(model, paths["weights"])
    save_pt(model, paths["pt"], **meta)
    return paths


@torch.no_grad()
def reload_matches(model: Darknet, cfg: str | Path, weights: str | Path, img_size: int = 128,
                   atol: float = 1e-5) -> float:
    """Reload cfg + weights and return the max |difference| of eval outputs on a random image;
    raises AssertionError if it exceeds ``atol`` (relative to the output scale)."""
    again = load_model(cfg, weights).eval()
    model = model.eval()
    x = torch.rand(1, model.net.channels, img_size, img_size)
    a, b = model.cpu()(x), again(x)
    diff = float((a - b).abs().max())
    scale = float(a.abs().max()) or 1.0
    if not diff <= atol * scale:            # written so that a NaN difference fails too
        raise AssertionError(f"reloaded model differs by {diff:.3g} (output scale {scale:.3g})")
    return diff


def export_onnx(model: Darknet, path: str | Path, img_size: int = 416, opset: int = 17,
                fuse: bool = True) -> Path:
    """Write an ONNX graph of the eval-mode model (input 'images' (B, 3, S, S) -> 'detections'
    (B, N, 5 + C)), with a dynamic batch dimension.

    ``fuse`` exports a BN-folded copy (:meth:`Darknet.fuse`, folded in float64), so the graph
    holds one Conv (with bias) per [convolutional] and equals the fused PyTorch model; ``model``
    itself is not changed. (Without it torch's exporter folds BN itself, in float32.)"""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = model.eval().cpu()
    if fuse:
        model = copy.deepcopy(model).fuse()
    x = torch.zeros(1, model.net.channels, img_size, img_size)
    torch.onnx.export(model, (x,), str(path), input_names=["images"], output_names=["detections"],
                      dynamic_axes={"images": {0: "batch"}, "detections": {0: "batch"}}, opset_version=opset,
                      dynamo=False)
    return path


def onnx_matches(model: Darknet, path: str | Path, img_size: int = 416) -> float:
    """Run the ONNX file with onnxruntime and return max |difference| to PyTorch on a random image."""
    import numpy as np
    import onnxruntime as ort
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = torch.rand(1, model.net.channels, img_size, img_size)
    with torch.no_grad():
        ref = model.eval().cpu()(x).numpy()
    out = sess.run(None, {"images": x.numpy()})[0]
    return float(np.abs(out - ref).max())


def compile_inference(model: Darknet, img_size: int) -> torch.nn.Module:
    """The BN-folded model compiled by ``torch.compile`` (inductor) with its weights frozen in:
    constants folded, conv weights prepacked for oneDNN once and convs fused with their
    activations, which eager PyTorch redoes or runs apart on every call. On a CPU it needs a C++
    compiler, and compiling takes seconds (6.6 s for a pruned yolov3, 27 s for the full one, 2
    cores). The model itself is left as it is; inputs of another size compile again."""
    import torch._inductor.config as inductor_config
    compiled = torch.compile(copy.deepcopy(model).eval().fuse())
    example = torch.rand(1, model.net.channels, img_size, img_size, device=next(model.parameters()).device)
    with inductor_config.patch(freezing=True), torch.no_grad():
        compiled(example)                       # compiles now, with the weights frozen in
    return compiled
