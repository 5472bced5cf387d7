"""A deterministic synthetic detection dataset ("shapes") in YOLO format, made in seconds on a CPU.

Why: the notebooks and tests need a detection task that trains on a laptop and is real: small
objects (6 px at 128 px), rotation, occlusion (each object keeps >= `min_visible` of its area
visible), cluttered backgrounds and unlabelled distractors; with more classes, confusable ones
(square/rhombus, circle/hexagon/ring at small sizes).

`BUNDLED` is the set the tutorial trains on (`make data`, every notebook): one class, circles, the way
the seed prunes YOLOv3 trained on a one-class hand set - a model far larger than its task needs, which
is the regime where pruning most of it costs little. `ShapesConfig()` itself draws all eight classes
(the tests' sets, and `data make --classes 8`), a task the same model is barely large enough for:
there the -80% GFLOPs prune of the tutorial falls 6-9 points of mAP@0.5 short of its control
(benchmarks/data_regime.py, measured in the issue-15 notes).

Image k of split s is a pure function of (seed, s, k): the output is byte-identical for any number of
worker processes. Layout written by `make_shapes`:
    out/images/{train,val}/NNNNN.png, out/labels/{train,val}/NNNNN.txt, out/data.yaml, out/shapes.json
"""
from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import yaml

from .synth_draw import CLASS_NAMES, render
from yolocompress.files import atomic_write_text, remove_stale_temps

__all__ = ["BUNDLED", "CLASS_NAMES", "ShapesConfig", "make_shapes", "ensure_shapes", "render_image"]

SHAPES_VERSION = 2  # bump when drawing changes, so ensure_shapes regenerates old folders
SPLITS = ("train", "val")


@dataclass(frozen=True)
class ShapesConfig:
    n_train: int = 2000            # images, training split
    n_val: int = 400               # images, validation split
    img_size: int = 128            # px, side of the square images
    seed: int = 0                  # -, root of every image's RNG
    min_size: float = 9.0          # px, smallest object (diameter of its circumscribed circle; box >= ~6.4 px)
    max_size: float = 60.0         # px, largest object; sizes are log-uniform in between
    max_objects: int = 8           # objects per image are 1..max_objects (fewer if placement fails)
    empty_prob: float = 0.05       # probability, an image has no objects at all
    min_visible: float = 0.6       # fraction of each object's area kept visible (occlusion, border)
    place_tries: int = 10          # -, positions tried per object before it is dropped
    min_contrast: float = 60.0     # 0..255 RGB distance, object colour vs mean background under it
    object_shade: float = 40.0     # 0..255, brightness ramp across an object (not a flat fill)
    rhombus_aspect: float = 0.65   # short/long diagonal of a rhombus (1 = a square); +-10% jitter
    n_distractors: int = 6         # -, unlabelled lines/arcs/polygons/blobs per image, 0..this
    front_lines_prob: float = 0.3  # probability, 1-2 thin lines are drawn over the objects
    blotch_strength: float = 40.0  # 0..255, amplitude of low-frequency background blotches
    stripes_prob: float = 0.3      # probability, the background carries sinusoidal stripes
    bg_noise: float = 8.0          # 0..255, std of the background's pixel texture
    blur_prob: float = 0.3         # probability, the finished image is Gaussian-blurred
    blur_max: float = 1.0          # px, largest blur radius
    noise_max: float = 6.0         # 0..255, largest std of sensor noise added last
    n_classes: int = 8             # -, classes drawn: the first n of CLASS_NAMES (1 = circles only)
    n_labelled: int = 0            # -, classes labelled: the first k drawn (0 = all); the rest are
                                   #    drawn unlabelled, look-alikes the detector must learn to ignore

    def __post_init__(self):
        if not 0 < self.min_size <= self.max_size:
            raise ValueError(f"need 0 < min_size <= max_size, got {self.min_size}, {self.max_size}")
        if self.img_size < 16 or self.max_objects < 0 or not 0 <= self.min_visible <= 1:
            raise ValueError(f"bad ShapesConfig: {self}")
        if not 1 <= self.n_classes <= len(CLASS_NAMES):
            raise ValueError(f"n_classes: expected 1..{len(CLASS_NAMES)}, got {self.n_classes}")
        if not 0 <= self.n_labelled <= self.n_classes:
            raise ValueError(f"n_labelled: expected 0..n_classes ({self.n_classes}), got {self.n_labelled}")

    @property
    def names(self) -> tuple[str, ...]:
        """The class names this set labels, index = class id."""
        return CLASS_NAMES[:self.n_labelled or self.n_classes]


BUNDLED = ShapesConfig(n_classes=1)   # the tutorial's set: data/shapes (see the module docstring)


def render_image(config: ShapesConfig, split: str, k: int):
    """Image k of `split` as (PIL.Image, labels (n, 5) [class, cx, cy, w, h] normalised)."""
    rng = np.random.default_rng([config.seed, SPLITS.index(split), k])
    return render(rng, config)


def _label_text(labels: np.ndarray) -> str:
    return "".join(f"{int(c)} {x:.6f} {y:.6f} {w:.6f} {h:.6f}\n" for c, x, y, w, h in labels)


def _write_one(job) -> int:
    out, config, split, k = job
    img, labels = render_image(config, split, k)
    img.save(out / "images" / split / f"{k:05d}.png", compress_level=1)
    (out / "labels" / split / f"{k:05d}.txt").write_text(_label_text(labels))
    return 1


def _yaml_text(config: ShapesConfig) -> str:
    data = {"path": ".", "train": "images/train", "val": "images/val",
            "nc": len(config.names), "names": dict(enumerate(config.names))}
    return yaml.safe_dump(data, sort_keys=False)


def _stamp(config: ShapesConfig) -> dict:
    return {"version": SHAPES_VERSION, "config": asdict(config)}


def make_shapes(out: str | Path, config: ShapesConfig = ShapesConfig(), workers: int = 2,
                progress: bool = True, overwrite: bool = False) -> Path:
    """Write the dataset into `out` (see module doc) and return the path of its data.yaml.

    `workers` processes share the images; the output does not depend on their number. An existing
    dataset in `out` raises FileExistsError unless `overwrite` (then it is replaced). The set is
    written in a folder beside `out` and moved in when complete, shapes.json last, so an
    interrupted run (a kill, a full disk) is never mistaken for a finished one.
    """
    out = Path(out)
    parts = ("images", "labels", "data.yaml", "shapes.json")        # the order they are moved in: the stamp last
    if any((out / p).exists() for p in parts) and not overwrite:
        raise FileExistsError(f"{out} already holds a dataset; pass overwrite=True or use ensure_shapes")
    if any((out / p).exists() for p in parts) and not (out / "shapes.json").is_file():
        raise FileExistsError(f"{out} holds a dataset yolocompress did not generate (no shapes.json in it), so it "
                              "is not replaced; choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(out.parent, (out.name,))
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmpdir", dir=out.parent))
    try:                        # the whole set is written beside `out` first: a full disk or a kill leaves no part of it in `out`
        _write_all(tmp, config, workers, progress, str(out))
        for p in parts:         # then it replaces the old set part by part; until shapes.json lands, `out` is unfinished
            if (out / p).is_dir():
                shutil.rmtree(out / p)
            else:
                (out / p).unlink(missing_ok=True)
        for p in parts:
            os.replace(tmp / p, out / p)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out / "data.yaml"


def _write_all(out: Path, config: ShapesConfig, workers: int, progress: bool, shown: str) -> None:
    """Every image and label of the set, then data.yaml and shapes.json, into ``out``."""
    for kind in ("images", "labels"):
        for split in SPLITS:
            (out / kind / split).mkdir(parents=True, exist_ok=True)
    jobs = [(out, config, "train", k) for k in range(config.n_train)] + [(out, config, "val", k) for k in range(config.n_val)]
    from tqdm.auto import tqdm
    bar = tqdm(total=len(jobs), desc=f"shapes -> {shown}", unit="img", disable=not progress)
    if workers <= 1:
        for job in jobs:
            bar.update(_write_one(job))
    else:
        with multiprocessing.get_context().Pool(workers) as pool:
            for n in pool.imap_unordered(_write_one, jobs, chunksize=16):
                bar.update(n)
    bar.close()
    atomic_write_text(out / "data.yaml", _yaml_text(config))
    atomic_write_text(out / "shapes.json", json.dumps(_stamp(config), indent=1))


def ensure_shapes(out: str | Path, config: ShapesConfig = ShapesConfig(), **kw) -> Path:
    """Return out/data.yaml, generating the dataset only if it is missing or was made with another
    config or drawing version (recorded in out/shapes.json). `kw` goes to `make_shapes`."""
    out = Path(out)
    yaml_path = out / "data.yaml"
    try:
        same = json.loads((out / "shapes.json").read_text()) == json.loads(json.dumps(_stamp(config)))
    except (OSError, ValueError):
        same = False
    if not (same and yaml_path.exists()):
        return make_shapes(out, config, overwrite=True, **kw)
    if yaml_path.read_text() != _yaml_text(config):  # written by an older version: refresh
        atomic_write_text(yaml_path, _yaml_text(config))
    return yaml_path
