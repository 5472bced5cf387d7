"""Transfer from pretrained weights: start a model for *your* classes from COCO weights or a darknet
backbone cutoff, the way every real project starts.

Darknet's own ``partial`` writes the first N layers of a ``.weights`` file (``darknet53.conv.74``,
``yolov3-tiny.conv.15``, ``yolov4-tiny.conv.29``); training then loads those layers and initialises
the rest. A full COCO file holds heads for 80 classes, whose convs have another shape than a
1-class model's, so it cannot be read as this model's file. ``transfer`` does both:

* a ``.pt`` (any class count): every conv whose tensors have the same shapes, layer by layer;
* a full ``.weights`` of this cfg built for another class count (found from the file size: the
  float count is linear in the classes): read as that model, then the same shape-matched copy;
* a cutoff ``.weights`` (fewer floats): read in file order over this model's convs until the file
  ends, which must be at a layer boundary.

``cutoff=N`` keeps only layers < N. The ``TransferReport`` lists what was loaded and what kept its
fresh initialisation (the heads, typically), so a log can say both.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .cfg import Block, Conv, Yolo, parse_cfg
from .model import Darknet
from .weights import (WeightsError, WeightsHeader, darknet_weights_bytes, load_darknet_weights, read_pt,
                      restore_state)
from yolocompress.files import atomic_write_bytes


@dataclass
class TransferReport:
    source: str
    loaded: list[int] = field(default_factory=list)         # conv layers whose tensors came from the source
    initialised: list[int] = field(default_factory=list)    # conv layers left as initialised
    source_classes: int | None = None                       # classes of the source model, when known

    def describe(self) -> str:
        what = f" ({self.source_classes}-class source)" if self.source_classes else ""
        return (f"transfer from {self.source}{what}: loaded {len(self.loaded)} conv layers {_ranges(self.loaded)}; "
                f"initialised {len(self.initialised)} {_ranges(self.initialised)}")


def _ranges(layers: list[int]) -> str:
    """[0-12, 15, 17-20]: a layer list a log line can hold."""
    parts, run = [], []
    for i in layers:
        if run and i != run[-1] + 1:
            parts.append(run)
            run = []
        run.append(i)
    parts += [run] if run else []
    return "[" + ", ".join(f"{r[0]}-{r[-1]}" if len(r) > 1 else f"{r[0]}" for r in parts) + "]"


def with_classes(blocks: list[Block], classes: int) -> list[Block]:
    """The same architecture for ``classes``: each [yolo] and the conv feeding it resized."""
    out = list(blocks)
    for i, b in enumerate(blocks):
        if isinstance(b, Yolo):
            out[i] = dataclasses.replace(b, classes=classes)
            head = out[i - 1]
            if not isinstance(head, Conv):
                raise WeightsError(f"layer {i - 2} before [yolo] layer {i - 1} is not a conv: cannot resize its head")
            out[i - 1] = dataclasses.replace(head, filters=(5 + classes) * len(b.mask))
    return out


def _tensors(layer) -> list[torch.Tensor]:
    """One conv layer's tensors in darknet file order."""
    if layer.bn is not None:
        bn = layer.bn
        return [bn.bias, bn.weight, bn.running_mean, bn.running_var, layer.conv.weight]
    return [layer.conv.bias, layer.conv.weight]


def copy_matching(model: Darknet, source: Darknet, cutoff: int | None = None, name: str = "source") -> TransferReport:
    """Copy every conv layer (index < ``cutoff``) whose tensors all have the source's shapes."""
    report = TransferReport(name, source_classes=source.num_classes if source.head_indices else None)
    src = source.conv_layers()
    with torch.no_grad():
        for i, layer in model.conv_layers().items():
            theirs = src.get(i)
            fits = theirs is not None and (cutoff is None or i < cutoff) and \
                [t.shape for t in _tensors(theirs)] == [t.shape for t in _tensors(layer)]
            if fits:
                for dst, s in zip(_tensors(layer), _tensors(theirs)):
                    dst.copy_(s.to(dst.device, dst.dtype))
            (report.loaded if fits else report.initialised).append(i)
    return report


def _float_count(blocks: list[Block]) -> int:
    with torch.device("meta"):
        model = Darknet.uninitialized(blocks, "meta")
    return sum(t.numel() for layer in model.conv_layers().values() for t in _tensors(layer))


def source_classes(blocks: list[Block], n_floats: int) -> int | None:
    """The class count for which ``blocks`` needs exactly ``n_floats`` weights (None: no such count)."""
    if not any(isinstance(b, Yolo) for b in blocks):
        return None
    a, b = _float_count(with_classes(blocks, 1)), _float_count(with_classes(blocks, 2))
    per_class = b - a
    k, rest = divmod(n_floats - a, per_class)
    return k + 1 if rest == 0 and k >= 0 else None


def _read_prefix(model: Darknet, floats: np.ndarray, cutoff: int | None, name: str) -> TransferReport:
    """A cutoff file: this model's convs in file order until the floats run out (at a boundary)."""
    report, offset = TransferReport(name), 0
    with torch.no_grad():
        for i, layer in model.conv_layers().items():
            n = sum(t.numel() for t in _tensors(layer))
            if offset + n > len(floats) or (cutoff is not None and i >= cutoff):
                report.initialised.append(i)
                continue
            chunk = floats[offset:offset + n]
            if not np.isfinite(chunk).all():
                raise WeightsError(f"{name}: layer {i} [convolutional] holds non-finite values")
            for t in _tensors(layer):
                t.copy_(torch.from_numpy(floats[offset:offset + t.numel()].copy()).view_as(t))
                offset += t.numel()
            report.loaded.append(i)
    if offset != len(floats) and cutoff is None:
        raise WeightsError(f"{name}: {len(floats):,} floats do not end at a conv layer of this cfg (the first "
                           f"{len(report.loaded)} conv layers take {offset:,}): not a backbone cutoff of it")
    return report


def transfer(model: Darknet, weights: str | Path, cutoff: int | None = None) -> TransferReport:
    """Load what fits of ``weights`` (.pt or darknet .weights, full or a cutoff) into ``model``."""
    path, name = Path(weights), str(weights)
    if path.suffix == ".pt":
        payload = read_pt(path)
        source = Darknet.uninitialized(parse_cfg(payload["cfg"], source=f"{name}:cfg"))
        restore_state(source, payload["state_dict"], name)
        return copy_matching(model, source, cutoff, name)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise WeightsError(f"{name}: cannot read weights file ({e})") from None
    header = WeightsHeader.from_bytes(data, name)
    n_floats = (len(data) - header.nbytes) // 4
    classes = source_classes(model.blocks, n_floats)
    if classes is None:
        return _read_prefix(model, np.frombuffer(data[header.nbytes:header.nbytes + 4 * n_floats], "<f4"), cutoff, name)
    source = Darknet.uninitialized(with_classes(model.blocks, classes))
    load_darknet_weights(source, path)
    return copy_matching(model, source, cutoff, name)


def save_partial(model: Darknet, path: str | Path, cutoff: int) -> int:
    """Darknet's ``partial``: write the first ``cutoff`` layers' weights (a backbone file such as
    ``yolov3-tiny.conv.15``); returns the number of conv layers written."""
    header = getattr(model, "darknet_header", None) or WeightsHeader()
    kept = [i for i in model.conv_layers() if i < cutoff]
    n = sum(t.numel() for i in kept for t in _tensors(model.conv_layers()[i]))
    atomic_write_bytes(path, darknet_weights_bytes(model, header)[:header.nbytes + 4 * n])
    return len(kept)


def load_for_training(cfg, weights: str | Path, classes: int | None, cutoff: int | None = None):
    """The model a training run starts from: ``weights`` loaded whole when they are this cfg's
    (for ``classes``); otherwise - another class count, a backbone cutoff, or ``cutoff`` given -
    the cfg built for ``classes`` and ``transfer``'s shape-matched layers. Returns the model and
    the ``TransferReport`` (None when the weights were loaded whole)."""
    from .cfg import CfgError
    from .loader import architecture, load_model
    if cutoff is None:
        try:
            return load_model(cfg, weights, classes=classes), None
        except (CfgError, WeightsError) as e:
            if cfg is None:
                raise type(e)(f"{e}; to start from them for another class count, give --cfg too") from None
            first = e
    blocks = architecture(cfg, classes)
    heads = [b for b in blocks if isinstance(b, Yolo)]
    if classes is not None and heads and heads[0].classes != classes:
        blocks = with_classes(blocks, classes)
    model = Darknet(blocks)
    report = transfer(model, weights, cutoff)
    if not report.loaded:
        raise WeightsError(f"{weights}: no conv layer of it fits {cfg}" + (f" ({first})" if cutoff is None else ""))
    return model, report
