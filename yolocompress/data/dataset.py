"""YOLO-format datasets: data configs (ultralytics yaml or darknet .data), a letterboxing Dataset
with augmentation, collate and a seeded DataLoader.

Every label file and image header is checked when the dataset is built, so a bad file is reported
(`file:line: expected ..., found ...`) before training starts, never mid-epoch. The synthetic
"shapes" generator lives in `synth.py`.
"""
from __future__ import annotations

import random
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import yaml
from torch.utils.data import DataLoader, Dataset, get_worker_info

from .augment import AugmentConfig
from .augment import augment as _augment_sample
from .augment import mosaic as _mosaic
from .labels import IMG_EXTS, image_hw, label_path, letterbox, letterbox_geometry, letterbox_labels, load_rgb, read_labels
from yolocompress.darknet.netinput import RESIZE_MODES

__all__ = ["DataError", "DataConfig", "load_data_config", "label_path", "AugmentConfig", "YoloDataset",
           "collate", "make_loader"]


class DataError(ValueError):
    """A user's dataset is malformed; the message names the file (and line), what was expected and found."""


@dataclass(frozen=True)
class DataConfig:
    root: Path                   # dataset root (yaml `path`, or the .data file's folder)
    train: tuple[Path, ...]      # training image paths
    val: tuple[Path, ...]        # validation image paths
    names: tuple[str, ...]       # class names, index = class id

    @property
    def nc(self) -> int:
        return len(self.names)


def load_data_config(path: str | Path) -> DataConfig:
    """Read an ultralytics data yaml (`path`, `train`, `val`, `names` list or {id: name}, optional `nc`)
    or a darknet `.data` file (`classes`, `train`, `valid`, `names`). Sources may be an image folder,
    a .txt list of image paths, or a list of those; yaml sources are relative to `path`, itself
    relative to the yaml's folder."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: data config file not found")
    if path.suffix == ".data":
        return _load_darknet(path)
    d = load_yaml(read_text(path), path)
    if not isinstance(d, dict):
        raise DataError(f"{path}: expected a mapping with keys path/train/val/names, found {type(d).__name__}")
    root = (path.parent / str(d.get("path") or ".")).resolve()
    if not root.is_dir():
        raise DataError(f"{path}: path: folder {root} not found")
    names = parse_names(d.get("names"), d.get("nc"), path)
    split = {k: tuple(p for s in _as_list(d.get(k), k, path) for p in _images(s, root, [root], f"{path}: {k}"))
             for k in ("train", "val")}
    return DataConfig(root, split["train"], split["val"], names)


def read_text(path: Path) -> str:
    """A config or list file as UTF-8 text; anything else is refused naming the file and the byte."""
    try:
        return Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: expected UTF-8 text, found byte 0x{e.object[e.start]:02x} at offset {e.start} "
                        "(save it as UTF-8)") from None


def _as_list(v, key: str, where: Path) -> list:
    if v is None:
        raise DataError(f"{where}: expected key {key!r} (image folder, .txt list or a list of those), found none")
    return list(v) if isinstance(v, (list, tuple)) else [v]


def parse_names(names, nc, where: Path) -> tuple[str, ...]:
    if nc is not None:
        try:
            nc = int(nc)
        except (TypeError, ValueError, OverflowError):
            raise DataError(f"{where}: nc/classes: expected an integer class count, found {nc!r}") from None
    if isinstance(names, dict):
        if any(not isinstance(k, int) for k in names) or sorted(names) != list(range(len(names))):
            raise DataError(f"{where}: names: expected ids 0..{len(names) - 1}, found {sorted(map(str, names))}")
        names = [names[i] for i in range(len(names))]
    elif names is None and nc is not None:
        names = [str(i) for i in range(nc)]
    elif not isinstance(names, (list, tuple)):
        raise DataError(f"{where}: names: expected a list or {{id: name}} mapping, found {names!r}")
    if nc is not None and nc != len(names):
        raise DataError(f"{where}: nc/classes is {nc} but {len(names)} names are given")
    for i, n in enumerate(names):     # a .names file holds one name per line: a line break would shift every class
        if isinstance(n, (dict, list, tuple)) or any(c in str(n) for c in "\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"):
            raise DataError(f"{where}: names[{i}]: expected a one-line class name, found {n!r}")
    return tuple(str(n) for n in names)


class _NoAliasLoader(yaml.SafeLoader):
    """yaml's SafeLoader without anchors and aliases: a data config has no use for them, and a few
    nested aliases expand to gigabytes (the "billion laughs"); refused at the alias's line."""

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            mark = self.peek_event().start_mark
            raise DataError(f"{self.name}:{mark.line + 1}: YAML aliases (*name) are not accepted in a config "
                            "file (they can expand without bound); write the value out")
        return super().compose_node(parent, index)


def load_yaml(text: str, path: Path):
    """``text`` (the file ``path``) as YAML: safe tags only, no aliases; a parse error names the file."""
    loader = _NoAliasLoader(text)
    loader.name = str(path)
    try:
        return loader.get_single_data()
    except yaml.YAMLError as e:
        raise DataError(f"{path}: expected YAML, found a parse error: {e}") from None
    finally:
        loader.dispose()


def _first_existing(rel: str, bases: list[Path]) -> Path:
    p = Path(rel)
    if p.is_absolute():
        return p
    cands = [b / p for b in bases]
    return next((c for c in cands if c.exists()), cands[0])


def _images(src, root: Path, bases: list[Path], where: str) -> list[Path]:
    """Image paths of one source: a folder (searched recursively), a .txt list or one image."""
    p = _first_existing(str(src), bases)
    if p.is_dir():
        imgs = sorted(q for q in p.rglob("*") if q.suffix.lower() in IMG_EXTS)
        if not imgs:
            raise DataError(f"{where}: expected images ({', '.join(IMG_EXTS)}) in {p}, found none")
        return imgs
    if p.is_file() and p.suffix.lower() == ".txt":
        lines = [ln.strip() for ln in read_text(p).splitlines() if ln.strip()]
        return [_first_existing(ln, [p.parent, root, root.parent, Path.cwd()]) for ln in lines]
    if p.is_file() and p.suffix.lower() in IMG_EXTS:
        return [p]
    raise DataError(f"{where}: {src} -> {p} not found (expected an image folder, .txt list or image)")


def _load_darknet(path: Path) -> DataConfig:
    kv = {}
    for i, line in enumerate(read_text(path).splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if line:
            if "=" not in line:
                raise DataError(f"{path}:{i}: expected 'key = value', found {line!r}")
            k, v = (s.strip() for s in line.split("=", 1))
            kv[k] = v
    bases = [path.parent.resolve(), path.parent.resolve().parent, Path.cwd()]
    for key in ("train", "names"):
        if key not in kv:
            raise DataError(f"{path}: expected key {key!r}, found keys {sorted(kv)}")
    names_file = _first_existing(kv["names"], bases)
    if not names_file.is_file():
        raise DataError(f"{path}: names = {kv['names']} -> {names_file} not found")
    names = [ln.strip() for ln in read_text(names_file).splitlines() if ln.strip()]
    names = parse_names(names, kv.get("classes"), path)
    val = kv.get("valid", kv.get("val"))
    if val is None:
        raise DataError(f"{path}: expected key 'valid', found keys {sorted(kv)}")
    train = _images(kv["train"], path.parent, bases, f"{path}: train")
    return DataConfig(path.parent.resolve(), tuple(train), tuple(_images(val, path.parent, bases, f"{path}: valid")), names)


class YoloDataset(Dataset):
    """Letterboxed (or, with resize="stretch", stretched) images with YOLO labels. Item i: (float32 (3, S, S) RGB in [0,1], float32 (n, 5)
    [cls, cx, cy, w, h] normalised to the S x S input, meta {path, orig_hw, ratio, pad}); meta maps
    letterboxed px back to the original: x_orig = (x - pad[0]) / ratio[0] (augmentation aside).

    All label files and image headers are validated in __init__. on_error="raise" raises DataError
    at the first bad file; on_error="skip" drops each image whose label file or header is bad (the whole
    image, not just the bad line: half-labelled images teach the model that objects are background),
    records why in `.skipped` and warns once with the count. `verify` also decodes every image now
    (PIL verify + full load), so a truncated or corrupt image is caught before training, not in the
    middle of an epoch; with `cache` the decoded images are kept, so this costs no extra decode.
    `cache` keeps letterboxed uint8 images in RAM after their first load (call `preload()` before
    forking loader workers to share one copy). `resize="stretch"` scales each image to S x S without
    keeping its aspect (darknet's training input); labels are then the files' own and meta's pad is 0.
    Augmentation draws from this dataset's own torch.Generator (seeded by `seed`; `make_loader`
    reseeds it per worker), so it never disturbs or depends on global RNG state.
    """

    def __init__(self, images: Sequence[str | Path], img_size: int, augment: AugmentConfig | None = None,
                 on_error: str = "raise", cache: bool = True, nc: int | None = None, seed: int = 0,
                 verify: bool = False, resize: str = "letterbox"):
        if resize not in RESIZE_MODES:
            raise ValueError(f"resize must be one of {', '.join(RESIZE_MODES)}, got {resize!r}")
        if img_size <= 0 or img_size % 32:
            raise ValueError(f"img_size must be a positive multiple of 32 (the YOLO stride), got {img_size}")
        if on_error not in ("raise", "skip"):
            raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
        self.img_size, self.augment, self.seed, self.resize = img_size, augment, seed, resize
        images = [Path(p) for p in images]
        self.images, self.labels, self.hw, self._skipped = [], [], [], []
        decoded = []
        for p in images:
            try:
                hw = image_hw(p)
                lab = read_labels(label_path(p), nc)
                pixels = _verified(p, img_size, resize) if verify else None
            except ValueError as e:
                if on_error == "raise":
                    raise DataError(str(e)) from None
                self._skipped.append(str(e))
                continue
            decoded.append(pixels)
            self.images.append(p)
            self.hw.append(hw)
            self.labels.append(lab if resize == "stretch" else letterbox_labels(lab, hw, img_size))
        if not self.images:
            raise DataError(f"no usable images among {len(images)}" + (f"; first problem: {self._skipped[0]}" if self._skipped else ""))
        if self._skipped:
            warnings.warn(f"skipped {len(self._skipped)} of {len(images)} images with bad files; see .skipped", stacklevel=2)
        self._cache = decoded if cache else None
        self._gen = None

    @property
    def skipped(self) -> list[str]:
        """One `file[:line]: reason` string per image skipped with on_error='skip'."""
        return list(self._skipped)

    def __len__(self) -> int:
        return len(self.images)

    def __getstate__(self):
        return {**self.__dict__, "_gen": None}  # a Generator is per process; rebuilt from seed

    def reseed(self, seed: int) -> None:
        """Restart the augmentation RNG (make_loader calls this in each worker)."""
        self._gen = torch.Generator().manual_seed(int(seed) % 2**63)

    def preload(self) -> None:
        """Decode and letterbox every image into the cache now."""
        for i in range(len(self)):
            self._image(i)

    def _image(self, i: int) -> np.ndarray:
        """Letterboxed (or stretched) uint8 (3, S, S)."""
        if self._cache is not None and self._cache[i] is not None:
            return self._cache[i]
        try:
            img = fit_image(load_rgb(self.images[i]), self.img_size, self.resize)
        except ValueError as e:
            raise DataError(str(e)) from None
        if self._cache is not None:
            self._cache[i] = img
        return img

    def __getitem__(self, i: int):
        s = self.img_size
        ratio, pad = fit_geometry(self.hw[i], s, self.resize)
        meta = {"path": str(self.images[i]), "orig_hw": self.hw[i], "ratio": ratio, "pad": pad}
        if self.augment is None:
            return torch.from_numpy(self._image(i)).float().div_(255), torch.from_numpy(self.labels[i].copy()), meta
        if self._gen is None:
            self.reseed(self.seed)
        idx = [i]
        if torch.rand((), generator=self._gen) < self.augment.mosaic:
            idx += torch.randint(len(self), (3,), generator=self._gen).tolist()
        imgs = [torch.from_numpy(self._image(j)) for j in idx]
        labs = [torch.from_numpy(self.labels[j]) for j in idx]
        boxes = [_cxcywh_to_xyxy(lab[:, 1:]) * s for lab in labs]
        cls = [lab[:, 0] for lab in labs]
        if len(idx) == 4:
            corner = torch.randint(s + 1, (2,), generator=self._gen).tolist()
            img, xyxy, c = _mosaic(imgs, boxes, cls, (corner[0], corner[1]))
        else:
            img, xyxy, c = imgs[0], boxes[0], cls[0]
        x, xyxy, c = _augment_sample(img, xyxy, c, self.augment, self._gen)
        return x, torch.cat([c[:, None], _xyxy_to_cxcywh(xyxy / s)], 1), meta


def fit_image(rgb: np.ndarray, size: int, resize: str) -> np.ndarray:
    """uint8 (H, W, 3) -> uint8 (3, size, size), letterboxed or stretched (PIL bilinear)."""
    if resize == "letterbox":
        return letterbox(rgb, size)
    from PIL import Image
    if rgb.shape[:2] != (size, size):
        rgb = np.asarray(Image.fromarray(rgb).resize((size, size), Image.Resampling.BILINEAR))
    return np.ascontiguousarray(rgb.transpose(2, 0, 1))


def fit_geometry(hw: tuple[int, int], size: int, resize: str):
    """(ratio (rx, ry), pad (left, top)) of ``fit_image``: x_input = x_orig * rx + left."""
    if resize == "letterbox":
        _, ratio, pad = letterbox_geometry(hw, size)
        return ratio, pad
    return (size / hw[1], size / hw[0]), (0, 0)


def _verified(path: Path, img_size: int, resize: str = "letterbox") -> np.ndarray:
    """Letterboxed (or stretched) uint8 (3, S, S) of an image that passed PIL's verify() and a full decode."""
    from PIL import Image
    try:
        with Image.open(path) as im:
            im.verify()                      # chunk structure and checksums (PNG CRC, ...)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise ValueError(f"{path}: corrupt image ({type(e).__name__}: {e})") from None
    return fit_image(load_rgb(path), img_size, resize)   # the pixels themselves (a truncated file fails here)


def _cxcywh_to_xyxy(b: torch.Tensor) -> torch.Tensor:
    return torch.cat([b[:, :2] - b[:, 2:] / 2, b[:, :2] + b[:, 2:] / 2], 1)


def _xyxy_to_cxcywh(b: torch.Tensor) -> torch.Tensor:
    return torch.cat([(b[:, :2] + b[:, 2:]) / 2, b[:, 2:] - b[:, :2]], 1)


def collate(batch):
    """-> images (B, 3, S, S), targets (n, 6) [image index in batch, cls, cx, cy, w, h], metas list."""
    imgs, labels, metas = zip(*batch)
    targets = [torch.cat([torch.full((len(t), 1), float(k)), t], 1) for k, t in enumerate(labels)]
    return torch.stack(imgs), torch.cat(targets), list(metas)


def _seed_worker(worker_id: int) -> None:
    seed = torch.initial_seed()  # DataLoader sets base_seed (from its generator) + worker_id
    random.seed(seed)
    np.random.seed(seed % 2**32)
    ds = get_worker_info().dataset
    while not hasattr(ds, "reseed") and hasattr(ds, "dataset"):  # unwrap Subset and friends
        ds = ds.dataset
    if hasattr(ds, "reseed"):
        ds.reseed(seed)


def make_loader(dataset, batch_size: int, shuffle: bool, workers: int = 0, seed: int = 0, sampler=None,
                drop_last: bool = False, pin_memory: bool | None = None, batch_sampler=None) -> DataLoader:
    """A DataLoader with `collate`, a generator seeded by `seed` (shuffle order, worker seeds) and
    persistent workers; with workers=0 the dataset's augmentation RNG is reseeded from `seed`.
    With `batch_sampler`, it alone decides the batches (batch_size, shuffle, drop_last unused)."""
    gen = torch.Generator().manual_seed(seed)
    if workers == 0 and hasattr(dataset, "reseed"):
        dataset.reseed(seed)
    if batch_sampler is not None:
        return DataLoader(dataset, batch_sampler=batch_sampler, num_workers=workers, collate_fn=collate,
                          generator=gen, worker_init_fn=_seed_worker, persistent_workers=workers > 0,
                          pin_memory=torch.cuda.is_available() if pin_memory is None else pin_memory)
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle and sampler is None, sampler=sampler,
                      num_workers=workers, collate_fn=collate, generator=gen, worker_init_fn=_seed_worker,
                      persistent_workers=workers > 0, drop_last=drop_last,
                      pin_memory=torch.cuda.is_available() if pin_memory is None else pin_memory)


def box_table(dataset: "YoloDataset", names: Sequence[str] = ()):
    """One row per labelled object: image, class, name, width and height in original pixels."""
    import pandas as pd
    rows = []
    for i, (lab, (h, w)) in enumerate(zip(dataset.labels, dataset.hw)):
        for c, _, _, bw, bh in np.asarray(lab).reshape(-1, 5):
            rows.append({"image": i, "class": int(c), "name": names[int(c)] if int(c) < len(names) else str(int(c)),
                         "w_px": bw * w, "h_px": bh * h})
    return pd.DataFrame(rows, columns=["image", "class", "name", "w_px", "h_px"])
