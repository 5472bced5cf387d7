"""The input a model runs at - square side and resize mode - kept in the model's own [net].

Darknet reads ``width``/``height`` and ``letter_box`` from [net]: 0 (the default) stretches every
image to the input (``resize_image``), 1 letterboxes it (aspect kept, padded). yolocompress keeps
the same two keys as the one record of how a model was trained, so a model file runs the same way
whatever its extension: a cfg + .weights says it in the cfg, a .pt in the cfg it holds (and in its
``input`` entry), and an exported cfg carries it to darknet.
"""
from __future__ import annotations

from dataclasses import dataclass

RESIZE_MODES = ("stretch", "letterbox")
LEGACY_PT_INPUT = (128, "letterbox")   # what a .pt written before the input was stored ran at


@dataclass(frozen=True)
class InputSpec:
    """How images reach a model: a ``size`` x ``size`` px input (``height`` rows where a darknet cfg
    is not square), ``resize`` one of RESIZE_MODES."""
    size: int                  # px, the input width (and height, when square); a multiple of 32
    resize: str                # "stretch" (darknet's resize_image) or "letterbox" (aspect kept, padded)
    height: int | None = None  # px, the input height where it differs from the width (stretch only)

    def describe(self) -> str:
        return f"{self.size}x{self.height or self.size} px, {self.resize}"


def model_input(model) -> InputSpec:
    """The input a model file runs at, whatever its extension: its [net] width and darknet's own
    ``letter_box`` key (1: letterbox, absent or 0: stretch). Training writes both into the model
    (``set_model_input``), so the .pt and the exported cfg carry what the model learnt on."""
    net = model[0] if isinstance(model, list) else model.net   # blocks or a Darknet
    flag = str(net.extra.get("letter_box", "0")).strip()
    return InputSpec(net.width, "stretch" if flag in ("", "0") else "letterbox",
                     net.height if net.height != net.width else None)


def set_model_input(model, spec: InputSpec) -> None:
    """Write ``spec`` into the model's [net]: width = height = size, ``letter_box=1`` when letterboxed."""
    if spec.resize not in RESIZE_MODES:
        raise ValueError(f"resize must be one of {', '.join(RESIZE_MODES)}, got {spec.resize!r}")
    net = model[0] if isinstance(model, list) else model.net   # blocks or a Darknet
    net.width, net.height = int(spec.size), int(spec.height or spec.size)
    if spec.resize == "letterbox":
        net.extra["letter_box"] = "1"
    else:
        net.extra.pop("letter_box", None)


def resolve_input(model, img_size: int | None = None, resize: str | None = None) -> InputSpec:
    """The model's own input with the caller's overrides (a flag given wins; None keeps the model's)."""
    own = model_input(model)
    if img_size is None:
        return InputSpec(own.size, resize or own.resize, own.height)
    return InputSpec(int(img_size), resize or own.resize)


def input_record(model) -> dict:
    """The ``input`` entry of a .pt: {"size": px, "resize": mode, "height": px or None}."""
    spec = model_input(model)
    return {"size": spec.size, "resize": spec.resize, "height": spec.height}
