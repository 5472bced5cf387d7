"""Pieces several CLI verbs share: the user-error type, the model, protection and resize flags,
output folders, table printing."""
from __future__ import annotations

import argparse


class UserError(ValueError):
    """A mistake in what the user asked for; printed as one line, exit status 2."""


def add_model_args(p, weights_required: bool = False, weights_help: str | None = None) -> None:
    p.add_argument("--cfg", help="a .cfg file or a zoo name (teach, yolov3, yolov3-spp, yolov3-tiny, yolov4, "
                                 "yolov4-tiny); may be omitted when --weights is a yolocompress .pt")
    p.add_argument("--weights", required=weights_required,
                   help=weights_help or "weights: darknet .weights or a yolocompress .pt")
    p.add_argument("--classes", type=int, default=None,
                   help="class count for zoo names (default: the dataset's)")


def model_from_flags(cfg: str | None, weights: str | None, classes: int | None = None, data_nc: int | None = None):
    """--cfg/--weights/--classes -> :func:`yolocompress.darknet.loader.load_model`; the class count is
    --classes or the dataset's, and the two must agree when both are given."""
    from yolocompress.darknet.loader import load_model
    if classes and data_nc and classes != data_nc:
        raise UserError(f"--classes {classes} but the dataset has {data_nc} classes")
    return load_model(cfg, weights, classes=data_nc or classes)


def add_protect_args(p, also: str = "") -> None:
    """--no-protect-spp / --no-protect-upsample: the protections of the pruning graph. ``prune`` cuts
    under them and ``train --sparsity`` penalises under them, so both verbs take the same flags;
    ``also`` is appended to each help."""
    p.add_argument("--no-protect-spp", action="store_true", help="allow pruning the conv that feeds SPP" + also)
    p.add_argument("--no-protect-upsample", action="store_true",
                   help="allow pruning the convs before upsamples" + also)


def protect_options(args):
    """The ``ProtectOptions`` the protection flags ask for (the defaults where a namespace lacks
    them, e.g. the saved settings of a run made before they were train flags)."""
    from yolocompress.compress.graph import ProtectOptions
    return ProtectOptions(spp=not getattr(args, "no_protect_spp", False),
                          upsample=not getattr(args, "no_protect_upsample", False))


RESIZE_HELP = ("how images reach the network: 'stretch' = darknet's resize_image to the full input size "
               "(what darknet detector test does and what darknet-trained weights expect), 'letterbox' = "
               "keep the aspect ratio and pad. Default: the model's own - [net] letter_box=1 in its cfg means "
               "letterbox, absent means stretch (darknet's default); a .pt trained here records what it "
               "was trained with, and so does the cfg it exports")
IMG_SIZE_HELP = "square input side, px (multiple of 32); default: the model's own ([net] width, or what a .pt was trained at)"


def add_resize_arg(p) -> None:
    """--resize and --img-size, for the verbs that feed images to a model (eval, detect, sweep)."""
    from yolocompress.darknet.netinput import RESIZE_MODES
    p.add_argument("--resize", choices=list(RESIZE_MODES), default=None, help=RESIZE_HELP)
    p.add_argument("--img-size", type=int, default=None, help=IMG_SIZE_HELP)


def announce_input(model, args, to_stderr: bool = False):
    """The input the verb feeds (the model's own, or --img-size/--resize), printed before any work:
    ``input: 416x416 px, stretch (the model's own)``. Returns the ``InputSpec``."""
    import sys
    from yolocompress.darknet.netinput import resolve_input
    spec = resolve_input(model, getattr(args, "img_size", None), getattr(args, "resize", None))
    if spec.size <= 0 or spec.size % 32:
        raise UserError(f"--img-size {spec.size} must be a positive multiple of 32 (the YOLO stride)")
    given = {"img_size", "resize"} & getattr(args, "explicit", set())
    why = "set by " + "/".join("--" + k.replace("_", "-") for k in sorted(given)) if given else "the model's own"
    print(f"input: {spec.describe()} ({why})", file=sys.stderr if to_stderr else sys.stdout)
    return spec


def out_dir(path: str, exist_ok: bool):
    """Check --out before any work; the set is then written with ``files.atomic_dir`` (all or nothing)."""
    from yolocompress.files import check_output_dir
    return check_output_dir(path, exist_ok)


class DefaultsFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """--help shows each flag's default, except where there is none (None or an off switch)."""

    def _get_help_string(self, action):
        if action.default in (None, False) or action.default is argparse.SUPPRESS:
            return action.help
        return super()._get_help_string(action)


def field_default(cls, name: str):
    """A dataclass field's default, so a CLI flag's default is the config's, written once."""
    return cls.__dataclass_fields__[name].default


def print_table(df, floats: str = "{:.3f}") -> None:
    import pandas as pd
    with pd.option_context("display.width", 200, "display.max_rows", None, "display.max_columns", None):
        print(df.to_string(index=False, float_format=floats.format))
