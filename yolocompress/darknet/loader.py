"""One way in: every model in the project comes from :func:`load_model`.

    load_model("teach")                                   # a zoo architecture, freshly initialised
    load_model("yolov3", classes=20)                      # ... for 20 classes
    load_model("my.cfg", "my.weights")                    # a darknet cfg + its .weights
    load_model("runs/x/best.pt")                          # a yolocompress .pt (it holds its own cfg)
    load_model("my.cfg", "runs/x/best.pt", classes=8)     # a cfg + .pt tensors, class count checked

The CLI, the pipeline, detection, benchmarks and notebooks all call it; mistakes raise the
library's own errors (``CfgError``, ``WeightsError``) with the file and what was expected.
"""
from __future__ import annotations

from pathlib import Path

import torch

from . import zoo
from .cfg import Block, CfgError, parse_cfg, read_cfg
from .model import Darknet
from .netinput import LEGACY_PT_INPUT, RESIZE_MODES, InputSpec, set_model_input
from .weights import WeightsError, load_weights, read_pt, restore_state


def architecture(cfg: str | Path | list[Block], classes: int | None = None) -> list[Block]:
    """Blocks of a zoo name (built for ``classes``), a .cfg path, cfg text, or already parsed blocks."""
    if isinstance(cfg, list):
        return cfg
    text = str(cfg)
    if text in zoo.ARCHITECTURES and not Path(text).exists():
        return zoo.blocks(text, classes)
    if "[" in text and "\n" in text:
        return parse_cfg(text)
    if Path(text).exists():
        return read_cfg(text)
    raise CfgError(f"cfg '{text}' is neither a file nor an architecture name ({', '.join(zoo.ARCHITECTURES)})")


def load_model(source: str | Path | list[Block] | None, weights: str | Path | None = None, *,
               classes: int | None = None, device: str | torch.device | None = None) -> Darknet:
    """A ``Darknet`` from a zoo name, a .cfg (path, text or blocks) or a yolocompress .pt.

    ``weights``: darknet ``.weights`` or a yolocompress ``.pt`` whose tensors fill every layer
    (the model is then not randomly initialised first). ``classes``: the class count the model must
    have - zoo names are built with it; a cfg or .pt that disagrees is refused. ``source`` may be
    None when ``weights`` is a .pt, which holds its cfg. ``device``: where the tensors live (None:
    the current default device, so ``with torch.device("meta")`` builds a model without memory).
    """
    if source is None:
        if weights is None or Path(weights).suffix != ".pt":
            raise CfgError("a cfg (file or zoo name) is needed unless the weights are a yolocompress .pt, "
                           "which holds its cfg")
        source, weights = weights, None
    if Path(str(source)).suffix == ".pt":
        payload = read_pt(source)
        model = Darknet.uninitialized(parse_cfg(payload["cfg"], source=f"{source}:cfg"), device or "cpu")
        restore_state(model, payload["state_dict"], str(source))
        apply_stored_input(model, payload)
    else:
        blocks = architecture(source, classes)
        model = Darknet.uninitialized(blocks, device or "cpu") if weights else Darknet(blocks)
        model = model.to(device) if device is not None else model
    if weights is not None:
        if not Path(weights).exists():
            raise WeightsError(f"weights file {weights} not found")
        load_weights(model, weights)
    _check_classes(model, classes, source)
    return model


def _check_classes(model: Darknet, classes: int | None, source) -> None:
    if classes is not None and not model.head_indices:
        raise CfgError(f"{source}: the model has no [yolo] layer; training and evaluation need a detection head")
    if classes is not None and model.num_classes != classes:
        raise CfgError(f"{source}: the model's [yolo] layers have classes={model.num_classes} but {classes} "
                       "are expected (the dataset's); use a cfg, .pt or --classes that matches the dataset")


def apply_stored_input(model: Darknet, payload: dict) -> None:
    """Set the model's input from a .pt's ``input`` entry; a .pt from before it was stored ran at
    the size it was trained at (its train_config), else 128 px, letterboxed - the old rule."""
    rec = payload.get("input")
    if isinstance(rec, dict) and rec.get("resize") in RESIZE_MODES and isinstance(rec.get("size"), int):
        height = rec.get("height")
        set_model_input(model, InputSpec(rec["size"], rec["resize"], height if isinstance(height, int) else None))
        return
    size = (payload.get("train_config") or {}).get("img_size", LEGACY_PT_INPUT[0])
    set_model_input(model, InputSpec(int(size), LEGACY_PT_INPUT[1]))
