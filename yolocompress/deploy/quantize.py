"""int8 post-training quantization of an exported ONNX model, through ONNX Runtime's static
quantization in the QDQ format (QuantizeLinear / DequantizeLinear pairs around each Conv).

Static quantization needs calibration: a few hundred images of the user's own data are run
through the fp32 model to record each activation's range, which fixes its int8 scale and zero
point. Only the convolutions are quantized (weights per output channel, activations per tensor);
the decoding after the heads (sigmoid, exp, the anchor arithmetic) stays in float32, since an
8-bit box width would err by a whole grid step. The int8 file keeps the fp32 file's metadata, so
``eval --onnx`` and ``detect`` read it the same way.

    python -m yolocompress export --weights runs/ft/best.pt --out runs/export --onnx \\
        --int8 --calib-data data/shapes/data.yaml --calib-images 128
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from yolocompress.files import atomic_path

CALIBRATION_METHODS = ("minmax", "entropy", "percentile")


class _Images:
    """ONNX Runtime's CalibrationDataReader over the first ``n`` images of ``paths``, each
    letterboxed (or stretched, by ``resize``) to ``img_size`` as training and eval see it."""

    def __init__(self, paths, img_size: int, n: int, resize: str, input_name: str = "images"):
        from yolocompress.data.dataset import YoloDataset
        self.dataset = YoloDataset(list(paths)[:n], img_size, resize=resize)
        self.input_name, self.next_index = input_name, 0

    def get_next(self) -> dict | None:
        if self.next_index >= len(self.dataset):
            return None
        image = self.dataset[self.next_index][0]            # (3, S, S) float32 in [0, 1]
        self.next_index += 1
        return {self.input_name: image[None].numpy()}

    def rewind(self) -> None:                                # the entropy / percentile calibrators read twice
        self.next_index = 0


def quantize_int8(fp32: str | Path, out: str | Path, calibration_images, n_images: int = 128,
                  method: str = "minmax") -> Path:
    """Write ``out``, the int8 (QDQ) version of the fp32 ONNX file ``fp32`` (``export_onnx``),
    calibrated on the first ``n_images`` of ``calibration_images`` (image paths, e.g. a dataset's
    ``train``); ``method``: how a range is chosen from the recorded activations (``minmax``: their
    extremes; ``entropy`` and ``percentile`` clip outliers). Atomic: ``out`` appears complete or not
    at all."""
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process
    from .export import META_PREFIX, onnx_metadata
    if method not in CALIBRATION_METHODS:
        raise ValueError(f"calibration method {method!r}: expected one of {', '.join(CALIBRATION_METHODS)}")
    meta = onnx_metadata(fp32)
    paths = list(calibration_images)
    if not paths:
        raise ValueError("int8 calibration needs at least one image (the dataset's train list is empty)")
    reader = _Images(paths, int(meta["input_size"]), n_images, meta.get("resize", "letterbox"))
    out = Path(out)
    with atomic_path(out) as tmp:
        staged, prepared = tmp.with_suffix(".onnx"), tmp.with_suffix(".pre.onnx")
        try:
            quant_pre_process(str(fp32), str(prepared), skip_symbolic_shape=True)   # shapes inferred, graph optimised
            quantize_static(str(prepared), str(staged), reader, quant_format=QuantFormat.QDQ,
                            op_types_to_quantize=["Conv"], per_channel=True,
                            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                            calibrate_method={"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
                                              "percentile": CalibrationMethod.Percentile}[method])
            proto = onnx.load(str(staged))
        finally:
            staged.unlink(missing_ok=True)
            prepared.unlink(missing_ok=True)
        source = onnx.load(str(fp32), load_external_data=False)
        have = {p.key for p in proto.metadata_props}
        for prop in source.metadata_props:                   # names, input size, anchors, ... carried over
            if prop.key.startswith(META_PREFIX) and prop.key not in have:
                proto.metadata_props.add(key=prop.key, value=prop.value)
        proto.metadata_props.add(key=META_PREFIX + "precision",
                                 value=f"int8 QDQ (Conv), calibrated on {min(n_images, len(paths))} images, {method}")
        onnx.checker.check_model(proto)
        onnx.save(proto, str(tmp))
    return out


def quantized_ops(path: str | Path) -> dict[str, int]:
    """How many nodes of each quantization op type the ONNX file holds (0 each for an fp32 file)."""
    import onnx
    graph = onnx.load(str(path), load_external_data=False).graph
    ops = [n.op_type for n in graph.node]
    return {op: ops.count(op) for op in ("QuantizeLinear", "DequantizeLinear")}


def max_relative_gap(a: np.ndarray, b: np.ndarray) -> float:
    """max |a - b| over the range of ``a`` (a scale-free size of quantization error)."""
    return float(np.abs(a - b).max() / max(float(a.max() - a.min()), 1e-12))
