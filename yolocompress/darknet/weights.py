"""Darknet ``.weights`` read/write with exact byte accounting, and plain-data ``.pt`` checkpoints.

Layout (``src/parser.c``): int32 major, minor, revision; then ``seen`` (images trained on) as
uint64 when major*10 + minor >= 2, else uint32. Then, per [convolutional] layer in cfg order,
float32: with BN - beta, gamma, running mean, running var, weights; without BN - bias, weights.

Darknet silently accepts a file of the wrong size (it just stops reading); we refuse it and say
how many floats the cfg needs and how many the file holds, so a cfg/weights mismatch never
produces a quietly broken model. Loading then saving gives the same bytes.
"""
from __future__ import annotations

import pickle
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from yolocompress.files import atomic_torch_save, atomic_write_bytes
from .model import ConvLayer, Darknet
from .netinput import input_record

CHECKPOINT_FORMAT = "yolocompress-darknet/1"   # the "format" key of every .pt this package writes


class WeightsError(ValueError):
    """A .weights or .pt file that does not fit its cfg; the message says expected vs found."""


@dataclass
class WeightsHeader:
    major: int = 0
    minor: int = 2
    revision: int = 0
    seen: int = 0         # images darknet trained on

    @property
    def seen_bytes(self) -> int:
        """Width of the ``seen`` field: 8 bytes from format 0.2 on, 4 bytes before."""
        return 8 if self.major * 10 + self.minor >= 2 else 4

    @property
    def nbytes(self) -> int:
        return 12 + self.seen_bytes

    def to_bytes(self) -> bytes:
        head = np.array([self.major, self.minor, self.revision], dtype="<i4").tobytes()
        return head + np.array([self.seen], dtype="<u8" if self.seen_bytes == 8 else "<u4").tobytes()

    @classmethod
    def from_bytes(cls, data: bytes, source: str = "<weights>") -> "WeightsHeader":
        if len(data) < 12:
            raise WeightsError(f"{source}: {len(data)} bytes is too short for a darknet header (12+ bytes)")
        major, minor, revision = (int(v) for v in np.frombuffer(data[:12], dtype="<i4"))
        if not (0 <= major <= 1000 and 0 <= minor <= 1000):
            raise WeightsError(f"{source}: header version {major}.{minor} is not a darknet .weights header "
                               "(darknet writes 0.1 or 0.2; a value over 1000 would mark its unsupported "
                               "transposed format) - is this a darknet .weights file?")
        hdr = cls(major, minor, revision, 0)
        end = 12 + hdr.seen_bytes
        if len(data) < end:
            raise WeightsError(f"{source}: file ends inside the header ({len(data)} of {end} bytes)")
        hdr.seen = int(np.frombuffer(data[12:end], dtype="<u8" if hdr.seen_bytes == 8 else "<u4")[0])
        return hdr


def _conv_tensors(layer: ConvLayer) -> list[torch.Tensor]:
    """The tensors of one conv layer in darknet's file order."""
    if layer.bn is not None:
        bn = layer.bn
        return [bn.bias, bn.weight, bn.running_mean, bn.running_var, layer.conv.weight]
    return [layer.conv.bias, layer.conv.weight]


def weights_float_count(model: Darknet) -> int:
    """Number of float32 values a .weights file for this model holds after the header."""
    return sum(t.numel() for m in model.conv_layers().values() for t in _conv_tensors(m))


def load_darknet_weights(model: Darknet, path: str | Path) -> WeightsHeader:
    """Read a darknet .weights file into ``model`` (in place); returns its header.

    Raises WeightsError unless the file holds exactly the floats the cfg needs.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise WeightsError(f"{path}: cannot read weights file ({e})") from None
    header = WeightsHeader.from_bytes(data, str(path))
    body = data[header.nbytes:]
    need = weights_float_count(model)
    if len(body) != 4 * need:
        found = f"{len(body) // 4} floats" + (f" and {len(body) % 4} stray bytes" if len(body) % 4 else "")
        hint = "fewer" if len(body) < 4 * need else "more"
        raise WeightsError(
            f"{path}: the cfg needs {need:,} float32 values ({4 * need + header.nbytes:,} bytes with the "
            f"{header.nbytes}-byte header, format {header.major}.{header.minor}), the file holds {found} "
            f"({len(data):,} bytes): {hint} than expected - is this the .weights file of this cfg?")
    floats = np.frombuffer(body, dtype="<f4")
    offset = 0
    with torch.no_grad():
        for i, layer in model.conv_layers().items():
            chunk = floats[offset:offset + sum(t.numel() for t in _conv_tensors(layer))]
            _check_values(chunk, layer, f"{path}: layer {i} [convolutional]")
            for t in _conv_tensors(layer):
                n = t.numel()
                t.copy_(torch.from_numpy(floats[offset:offset + n].copy()).view_as(t))
                offset += n
    model.darknet_header = header  # so a later save writes the same header back
    return header


MAX_ABS = 1e15     # no trained weight is near this; a product of two such values already nears float32's 3.4e38


def _check_values(chunk: np.ndarray, layer: ConvLayer, where: str) -> None:
    """Refuse a conv layer's floats that cannot be trained weights: NaN/inf, |value| > MAX_ABS, or
    a negative BN running variance (the forward takes its square root)."""
    bad = ~np.isfinite(chunk)
    if bad.any():
        raise WeightsError(f"{where} holds {int(bad.sum())} NaN/inf values; refusing to load diverged or corrupt weights")
    if np.abs(chunk).max(initial=0) > MAX_ABS:
        raise WeightsError(f"{where} holds a value of {float(np.abs(chunk).max()):.3g}, beyond {MAX_ABS:g}: "
                           "not trained weights (a corrupt or tampered file)")
    if layer.bn is not None:
        n = layer.bn.weight.numel()
        var = chunk[3 * n:4 * n]                    # file order: beta, gamma, mean, var, conv weights
        if (var < 0).any():
            raise WeightsError(f"{where}: BN running_var has {int((var < 0).sum())} negative values (min "
                               f"{float(var.min()):.3g}); a variance cannot be negative")


def darknet_weights_bytes(model: Darknet, header: WeightsHeader | None = None) -> bytes:
    """The .weights file content for ``model`` (float32, little-endian)."""
    header = header or getattr(model, "darknet_header", None) or WeightsHeader()
    chunks = [header.to_bytes()]
    for layer in model.conv_layers().values():
        for t in _conv_tensors(layer):
            chunks.append(t.detach().to("cpu", torch.float32).numpy().astype("<f4").tobytes())
    return b"".join(chunks)


def save_darknet_weights(model: Darknet, path: str | Path, header: WeightsHeader | None = None) -> None:
    """Write ``model`` as a darknet .weights file (atomically)."""
    atomic_write_bytes(path, darknet_weights_bytes(model, header))


# ----------------------------------------------------------------------------- .pt checkpoints

def save_pt(model: Darknet, path: str | Path, **meta) -> None:
    """A .pt holding plain data only: cfg text, state dict, metadata (never a pickled module)."""
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    payload = {"format": CHECKPOINT_FORMAT, "cfg": model.cfg_text(), "state_dict": state,
               "input": input_record(model), "meta": meta}
    atomic_torch_save(payload, path)


def safe_load(path: str | Path) -> dict:
    """``torch.load`` with ``weights_only=True`` (plain tensors, numbers, strings, lists, dicts: a
    pickle that would run code is refused, never executed); any failure is one WeightsError line."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"{path}: checkpoint not found" if not path.exists() else f"{path}: is not a file")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        glob = next((ln.split("GLOBAL", 1)[1].split()[0] for ln in str(e).splitlines() if "GLOBAL " in ln), None)
        if glob is None:
            first = (str(e).splitlines() or ["?"])[-1].strip()[:160]
            raise WeightsError(f"{path}: not a readable PyTorch checkpoint (UnpicklingError: {first})") from None
        raise WeightsError(f"{path}: refused - the file's pickle calls {glob}, which could run code on load "
                           "(only plain data is read: weights_only=True); not a yolocompress checkpoint") from None
    except OSError:
        raise
    except Exception as e:  # torch reports a truncated or non-torch file with many exception types
        first = (str(e).splitlines() or [type(e).__name__])[0][:160]
        raise WeightsError(f"{path}: not a readable PyTorch checkpoint ({type(e).__name__}: {first})") from None


def read_pt(path: str | Path) -> dict:
    """Load a yolocompress .pt (weights_only: never runs pickled code)."""
    path = Path(path)
    payload = safe_load(path)
    if not isinstance(payload, dict) or "cfg" not in payload or "state_dict" not in payload:
        raise WeightsError(f"{path}: not a yolocompress checkpoint (expected keys 'cfg' and 'state_dict')")
    return payload


def restore_state(model: Darknet, state: dict, source: str) -> None:
    """Load a checkpoint's state dict into ``model``, refusing (with the first mismatches named) one
    that does not fit its cfg."""
    mine = model.state_dict()
    bad = [k for k, v in state.items() if k in mine and mine[k].shape != v.shape]
    missing = sorted(set(mine) - set(state))
    if bad or missing:
        detail = "; ".join([f"{k}: cfg wants {tuple(mine[k].shape)}, file has {tuple(state[k].shape)}"
                            for k in bad[:3]] + ([f"missing {missing[:3]}"] if missing else []))
        raise WeightsError(f"{source}: state dict does not fit the cfg ({detail})")
    check_finite_state(state, source)
    model.load_state_dict(state, strict=False)


def check_finite_state(state: dict, source: str) -> None:
    """Refuse a state dict that cannot be trained weights (NaN/inf, |value| > MAX_ABS, a negative
    running_var), naming the first layer that holds them."""
    for k, v in state.items():
        if not (torch.is_tensor(v) and v.is_floating_point()):
            continue
        parts = k.split(".")
        layer = f"layer {parts[1]} ({k})" if parts[0] == "module_list" and len(parts) > 1 else k
        if not torch.isfinite(v).all():
            raise WeightsError(f"{source}: {layer} holds {int((~torch.isfinite(v)).sum())} NaN/inf values; "
                               "refusing to load diverged or corrupt weights")
        if v.numel() and float(v.abs().max()) > MAX_ABS:
            raise WeightsError(f"{source}: {layer} holds a value of {float(v.abs().max()):.3g}, beyond {MAX_ABS:g}: "
                               "not trained weights (a corrupt or tampered file)")
        if k.endswith("running_var") and (v < 0).any():
            raise WeightsError(f"{source}: {layer} has {int((v < 0).sum())} negative values; a variance cannot be negative")


def load_weights(model: Darknet, path: str | Path) -> dict:
    """Load .weights or .pt weights into an existing model, by extension; returns metadata."""
    path = Path(path)
    if path.suffix == ".pt":
        payload = read_pt(path)
        restore_state(model, payload["state_dict"], str(path))
        return dict(payload.get("meta", {}))
    return {"header": asdict(load_darknet_weights(model, path))}


@torch.no_grad()
def randomize(model: Darknet, seed: int = 0, small_gamma: float = 0.0) -> Darknet:
    """Fill ``model`` with well-scaled random weights (deterministic in ``seed``), in place.

    Conv weights ~ N(0, 1/fan_in); BN gamma ~ U(0.5, 1.5), beta ~ N(0, 0.1), running mean
    ~ N(0, 0.1), running var ~ U(0.5, 1.5): activations stay O(1) through deep nets, so outputs
    can be compared at tight tolerance. ``small_gamma`` is the fraction of BN channels whose gamma
    is instead ~ U(-1e-3, 1e-3), as after sparse training (for pruning tests and demos).
    """
    g = torch.Generator().manual_seed(seed)
    for layer in model.conv_layers().values():
        w = layer.conv.weight
        fan_in = w[0].numel()
        w.copy_(torch.randn(w.shape, generator=g) / fan_in ** 0.5)
        if layer.conv.bias is not None:
            layer.conv.bias.copy_(torch.randn(w.shape[0], generator=g) * 0.1)
        if layer.bn is not None:
            n = w.shape[0]
            bn = layer.bn
            bn.weight.copy_(torch.rand(n, generator=g) + 0.5)
            small = torch.rand(n, generator=g) < small_gamma
            bn.weight[small] = (torch.rand(int(small.sum()), generator=g) - 0.5) * 2e-3
            bn.bias.copy_(torch.randn(n, generator=g) * 0.1)
            bn.running_mean.copy_(torch.randn(n, generator=g) * 0.1)
            bn.running_var.copy_(torch.rand(n, generator=g) + 0.5)
    return model
