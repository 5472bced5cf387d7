"""Export a (pruned) model: Darknet cfg + .weights (any darknet-compatible tool loads them), a
plain-data .pt, and ONNX; each can be reloaded and checked against the model it came from."""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Sequence

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


ONNX_OPSET = 18          # the dynamo exporter's own; its ops run on onnxruntime >= 1.14
META_PREFIX = "yolocompress."


def export_onnx(model: Darknet, path: str | Path, img_size: int = 416, opset: int = ONNX_OPSET,
                fuse: bool = True, names: Sequence[str] = ()) -> Path:
    """Write an ONNX graph of the eval-mode model (input 'images' (B, 3, S, S) -> 'detections'
    (B, N, 5 + C)), with a dynamic batch dimension, through torch's torch.export-based exporter
    (the legacy TorchScript one warns on every call and is being removed), checked by
    ``onnx.checker``, and self-describing: its metadata props (``onnx_metadata``) hold the class
    names, input size, resize mode, strides and anchors a runtime needs to decode it.

    ``fuse`` exports a BN-folded copy (:meth:`Darknet.fuse`, folded in float64), so the graph
    holds one Conv (with bias) per [convolutional] and equals the fused PyTorch model; ``model``
    itself is not changed."""
    import onnx
    from yolocompress.files import atomic_path
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = model.eval().cpu()
    if fuse:
        model = copy.deepcopy(model).fuse()
    x = torch.zeros(1, model.net.channels, img_size, img_size)
    batch = torch.export.Dim("batch", min=1, max=1024)
    with atomic_path(path) as tmp:
        onnx_path = tmp.with_suffix(".onnx")
        try:
            torch.onnx.export(model, (x,), str(onnx_path), input_names=["images"], output_names=["detections"],
                              dynamic_shapes={"x": {0: batch}}, opset_version=opset, dynamo=True, verbose=False,
                              external_data=False)
            proto = onnx.load(str(onnx_path))
        finally:
            onnx_path.unlink(missing_ok=True)
        for key, value in _metadata(model, img_size, names, opset).items():
            proto.metadata_props.add(key=META_PREFIX + key, value=value)
        onnx.checker.check_model(proto)
        onnx.save(proto, str(tmp))
    return path


def _metadata(model: Darknet, img_size: int, names: Sequence[str], opset: int) -> dict[str, str]:
    """What a runtime needs beside the graph, as strings (JSON for lists)."""
    import json
    from yolocompress import __version__
    from yolocompress.darknet.netinput import model_input
    heads = model.yolo_layers
    return {"names": json.dumps(list(names) or [str(k) for k in range(model.num_classes)]),
            "input_size": str(img_size), "resize": model_input(model).resize,
            "strides": json.dumps([img_size // s for s in _grid_sizes(model, img_size)]),
            "anchors": json.dumps([h.anchors.tolist() for h in heads]),
            "output": "detections (B, N, 5 + C): cx, cy, w, h in input pixels, objectness, class probabilities",
            "opset": str(opset), "producer": f"yolocompress {__version__}"}


def _grid_sizes(model: Darknet, img_size: int) -> list[int]:
    """Each head's grid side at ``img_size`` (its stride is img_size over it), from the cfg's shapes."""
    from yolocompress.darknet.cfg import infer_shapes
    shapes = infer_shapes(model.blocks, img_size, img_size)
    return [shapes[i][1] for i in model.head_indices]


def onnx_metadata(path: str | Path) -> dict:
    """The yolocompress metadata props of an ONNX file, JSON values decoded."""
    import json
    import onnx
    props = {p.key[len(META_PREFIX):]: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props
             if p.key.startswith(META_PREFIX)}
    for key in ("names", "strides", "anchors"):
        if key in props:
            props[key] = json.loads(props[key])
    if "input_size" in props:
        props["input_size"] = int(props["input_size"])
    return props


def onnx_matches(model: Darknet, path: str | Path, img_size: int = 416) -> float:
    """Run the ONNX file with onnxruntime and return max |difference| to PyTorch on a random image."""
    import numpy as np
    x = torch.rand(1, model.net.channels, img_size, img_size)
    with torch.no_grad():
        ref = model.eval().cpu()(x).numpy()
    return float(np.abs(OnnxModel(path)(x).numpy() - ref).max())


class OnnxModel(torch.nn.Module):
    """An onnxruntime session behind the interface the evaluator and detect read a model by:
    ``forward(images) -> detections``, in float32 on the CPU. It holds one placeholder parameter
    (so ``next(model.parameters())`` names its device and dtype) and the file's metadata."""

    def __init__(self, path: str | Path, threads: int | None = None):
        super().__init__()
        import onnxruntime as ort
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.meta = onnx_metadata(path)
        self.register_parameter("placeholder", torch.nn.Parameter(torch.zeros(0), requires_grad=False))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        out = self.session.run(None, {"images": images.detach().cpu().float().numpy()})[0]
        return torch.from_numpy(out)


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
