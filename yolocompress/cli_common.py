"""Pieces every CLI verb shares: the user-error type, model flags, model loading, table printing."""
from __future__ import annotations

from pathlib import Path


class UserError(ValueError):
    """A mistake in what the user asked for; printed as one line, exit status 2."""


def resolve_cfg(cfg: str, classes: int | None = None):
    """A cfg path, or the name of a zoo architecture (``teach``, ``yolov3``, ...) -> blocks."""
    from . import zoo
    from .cfg import read_cfg
    if Path(cfg).exists():
        return read_cfg(cfg)
    if cfg in zoo.ARCHITECTURES:
        return zoo.blocks(cfg, classes)
    raise UserError(f"cfg '{cfg}' is neither a file nor an architecture name ({', '.join(zoo.ARCHITECTURES)})")


def add_model_args(p, weights_required: bool = False, weights_help: str | None = None) -> None:
    p.add_argument("--cfg", help="a .cfg file or a zoo name (teach, yolov3, yolov3-spp, yolov3-tiny, yolov4, "
                                 "yolov4-tiny); may be omitted when --weights is a yolocompress .pt")
    p.add_argument("--weights", required=weights_required,
                   help=weights_help or "weights: darknet .weights or a yolocompress .pt")
    p.add_argument("--classes", type=int, default=None,
                   help="class count for zoo names (default: the dataset's)")


def build_model(cfg: str | None, weights: str | None, classes: int | None = None, data_nc: int | None = None):
    """Model from flags: cfg (file or zoo name) and/or weights; checks the class count."""
    from .model import Darknet
    from .weights import load_pt, load_weights
    if cfg is None:
        if not weights or not str(weights).endswith(".pt"):
            raise UserError("--cfg is required unless --weights is a yolocompress .pt (which holds its cfg)")
        model = load_pt(weights)
    else:
        from . import zoo
        is_zoo = not Path(cfg).exists() and cfg in zoo.ARCHITECTURES
        blocks = resolve_cfg(cfg, (classes or data_nc) if is_zoo else None)
        model = Darknet.uninitialized(blocks) if weights else Darknet(blocks)
        if weights:
            if not Path(weights).exists():
                raise UserError(f"weights file {weights} not found")
            load_weights(model, weights)
    if data_nc is not None and not model.head_indices:
        raise UserError(f"{cfg or weights}: the model has no [yolo] layer; training and evaluation need a "
                        "detection head")
    if data_nc is not None and model.num_classes != data_nc:
        raise UserError(f"the model's [yolo] layers have classes={model.num_classes} but the dataset has "
                        f"{data_nc} classes; use a cfg (or --classes) that matches the dataset")
    return model


def print_table(df, floats: str = "{:.3f}") -> None:
    import pandas as pd
    with pd.option_context("display.width", 200, "display.max_rows", None, "display.max_columns", None):
        print(df.to_string(index=False, float_format=floats.format))
