"""Device and mixed precision, chosen by what the hardware does natively.

bf16 autocast pays off on a CPU only where it has bf16 units (AVX512-BF16 or AMX on x86; the bf16
extension on Arm): measured there 1.5x faster than fp32 for training (153 vs 103 img/s, teaching
model, 2 threads, AMD EPYC with AVX512-BF16, quiet machine). Without them oneDNN emulates
bf16, and the same training ran 10x slower than fp32 (evaluation 22x slower) on an AMD EPYC with
AVX2 only. So ``--amp auto`` (the default everywhere) picks fp16 on CUDA, bf16 on a CPU that runs
it natively, and fp32 otherwise, and says which and why.
"""
from __future__ import annotations

import platform
import warnings
from dataclasses import dataclass

import torch

MODES = ("auto", "off", "bf16", "fp16")
EMULATED_BF16_COST = ("bf16 autocast without native bf16 units measured 10x slower training and 22x "
                      "slower evaluation than fp32 (AMD EPYC, AVX2)")


@dataclass(frozen=True)
class AmpChoice:
    mode: str                       # what was asked: auto | off | bf16 | fp16
    dtype: torch.dtype | None       # the autocast dtype (None: full precision)
    reason: str                     # one line for the log and config.json

    @property
    def name(self) -> str:
        return {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[self.dtype]

    def to_dict(self) -> dict:
        return {"amp_requested": self.mode, "amp_used": self.name, "amp_reason": self.reason}


def cpu_capability() -> str:
    """What torch's CPU kernels were dispatched for (e.g. AVX2, AVX512), plus the bf16 extensions."""
    cap = torch.backends.cpu.get_cpu_capability()
    extra = [n for n, f in (("AVX512-BF16", "_is_avx512_bf16_supported"), ("AMX", "_is_amx_tile_supported"))
             if getattr(torch.cpu, f, lambda: False)()]
    return " + ".join([cap, *extra])


def cpu_bf16_native() -> bool:
    """True when this CPU computes bf16 in hardware, so bf16 autocast is faster than fp32.

    oneDNN's own check (``_is_mkldnn_bf16_supported``) also says yes for plain AVX512, where bf16 is
    emulated; on x86 we require AVX512-BF16 or AMX as well. On other CPUs (Arm) oneDNN's check is the
    hardware check."""
    if not _onednn_bf16():
        return False
    if platform.machine().lower() in ("x86_64", "amd64", "i386", "i686"):
        return _x86_bf16_units()
    return True


def _onednn_bf16() -> bool:
    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def _x86_bf16_units() -> bool:
    return any(getattr(torch.cpu, f, lambda: False)() for f in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"))


def choose_amp(mode: str, device: torch.device) -> AmpChoice:
    """The autocast dtype for ``mode`` on ``device``, with the reason; warns (once per call site) when
    an explicit bf16 runs on a CPU that would emulate it."""
    if mode not in MODES:
        raise ValueError(f"amp must be one of {', '.join(MODES)}, got {mode!r}")
    if device.type == "cuda":
        if mode == "auto":
            return AmpChoice(mode, torch.float16, "auto: fp16 on CUDA")
    elif mode == "auto":
        if cpu_bf16_native():
            return AmpChoice(mode, torch.bfloat16, f"auto: this CPU ({cpu_capability()}) has native bf16")
        return AmpChoice(mode, None, f"auto: fp32, this CPU ({cpu_capability()}) has no native bf16")
    elif mode == "bf16" and not cpu_bf16_native():
        warnings.warn(f"--amp bf16 on a CPU without native bf16 ({cpu_capability()}): {EMULATED_BF16_COST}; "
                      "use --amp auto (fp32 here)", stacklevel=2)
    dtype = {"off": None, "bf16": torch.bfloat16, "fp16": torch.float16}[mode]
    return AmpChoice(mode, dtype, f"{mode}: as requested")


class DeviceError(ValueError):
    """A --device this machine does not have, or a malformed name; one line for the user."""


def pick_device(name: str = "auto") -> torch.device:
    """``auto``: CUDA when there is a GPU, else the CPU; otherwise the device called ``name``,
    refused (one line) when malformed or absent on this machine."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise DeviceError(f"--device {name!r}: expected auto, cpu, cuda or cuda:N") from None
    if device.type not in ("cpu", "cuda", "mps"):
        raise DeviceError(f"--device {name}: expected auto, cpu, cuda, cuda:N or mps (a {device.type} device "
                          "cannot train or evaluate)")
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise DeviceError(f"--device {name}: CUDA is not available on this machine; use --device cpu or auto")
        if device.index is not None and device.index >= count:
            raise DeviceError(f"--device {name}: this machine has {count} CUDA device(s), 0..{count - 1}")
    elif device.type == "mps" and not torch.backends.mps.is_available():
        raise DeviceError(f"--device {name}: MPS is not available on this machine; use --device cpu or auto")
    return device
