"""The synthetic shapes dataset: deterministic bytes for any worker count, valid labels, real sizes."""
import json
import math

import numpy as np
import pytest

from yolocompress.data.dataset import load_data_config
from yolocompress.data.synth import CLASS_NAMES, ShapesConfig, _yaml_text, ensure_shapes, make_shapes, render_image

TINY = ShapesConfig(n_train=10, n_val=4, img_size=64, min_size=5, max_size=30, empty_prob=0.3, seed=3)


def _files(root):
    return {p.relative_to(root).as_posix(): p.read_bytes()
            for p in sorted(root.rglob("*")) if p.is_file() and p.suffix in (".png", ".txt")}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    out = tmp_path_factory.mktemp("shapes") / "one"
    return make_shapes(out, TINY, workers=1, progress=False).parent


def test_same_bytes_for_one_and_two_workers(tiny, tmp_path):
    two = make_shapes(tmp_path / "two", TINY, workers=2, progress=False).parent
    a, b = _files(tiny), _files(two)
    assert len(a) == 2 * (TINY.n_train + TINY.n_val)
    assert a == b


def test_other_seed_other_images():
    a, _ = render_image(TINY, "train", 0)
    b, _ = render_image(ShapesConfig(**{**TINY.__dict__, "seed": 4}), "train", 0)
    assert np.abs(np.asarray(a, float) - np.asarray(b, float)).mean() > 10


def test_labels_valid(tiny):
    counts = []
    for f in sorted((tiny / "labels").rglob("*.txt")):
        lines = f.read_text().splitlines()
        counts.append(len(lines))
        for ln in lines:
            parts = ln.split()
            assert len(parts) == 5 and all(len(p.split(".")[1]) == 6 for p in parts[1:])
            c, cx, cy, w, h = map(float, parts)
            assert c == int(c) and 0 <= c < len(CLASS_NAMES)
            assert 0 <= cx - w / 2 + 1e-6 and cx + w / 2 <= 1 + 1e-6 and 0 <= cy - h / 2 + 1e-6 and cy + h / 2 <= 1 + 1e-6
            assert w > 0 and h > 0
    assert len(counts) == TINY.n_train + TINY.n_val
    assert max(counts) <= TINY.max_objects and min(counts) == 0
    assert sum(c > 0 for c in counts) >= len(counts) // 2


def test_sizes_in_pixels_and_classes_spread():
    """Unclipped boxes have a longer side in [size / sqrt(2), size] for size in [min_size, max_size]."""
    cfg = ShapesConfig(img_size=128, empty_prob=0.0)
    sides, classes = [], []
    for k in range(30):
        _, lab = render_image(cfg, "val", k)
        for c, cx, cy, w, h in lab * [1, 128, 128, 128, 128]:
            classes.append(int(c))
            if cx - w / 2 > 0.5 and cy - h / 2 > 0.5 and cx + w / 2 < 127.5 and cy + h / 2 < 127.5:
                sides.append(max(w, h))
    sides = np.array(sides)
    assert sides.min() >= cfg.min_size / math.sqrt(2) - 0.01 and sides.max() <= cfg.max_size + 0.01
    assert (sides < 14).mean() > 0.15 and (sides > 30).mean() > 0.1  # log-uniform: many small ones
    assert len(set(classes)) == len(CLASS_NAMES) and len(CLASS_NAMES) >= 6


def test_object_colours_contrast_with_background():
    from yolocompress.data.synth_draw import _colour

    rng = np.random.default_rng(0)
    bgs = rng.uniform(0, 255, (500, 3))
    dist = [np.linalg.norm(_colour(rng, bg, 60.0) - bg) for bg in bgs]
    assert min(dist) >= 60.0


def test_yaml_loads_and_ensure_reuses(tiny, tmp_path):
    dc = load_data_config(tiny / "data.yaml")
    assert dc.names == CLASS_NAMES and dc.nc == len(CLASS_NAMES)
    assert len(dc.train) == TINY.n_train and len(dc.val) == TINY.n_val
    assert json.loads((tiny / "shapes.json").read_text())["config"]["seed"] == TINY.seed
    out = tmp_path / "e"
    y = ensure_shapes(out, TINY, workers=1, progress=False)
    stamp = (out / "images/train/00000.png").stat().st_mtime_ns
    assert ensure_shapes(out, TINY, workers=1, progress=False) == y
    assert (out / "images/train/00000.png").stat().st_mtime_ns == stamp  # not regenerated
    small = ShapesConfig(**{**TINY.__dict__, "n_train": 3})
    ensure_shapes(out, small, workers=1, progress=False)
    assert len(list((out / "images/train").iterdir())) == 3  # other config -> regenerated, old files gone


def test_refuses_to_overwrite(tiny):
    with pytest.raises(FileExistsError, match="overwrite=True"):
        make_shapes(tiny, TINY, workers=1, progress=False)


def test_fewer_classes_draw_only_those_and_name_them(tmp_path):
    """n_classes=2 labels only classes 0-1 and its yaml names exactly those two; out of range refuses."""
    cfg = ShapesConfig(**{**TINY.__dict__, "n_classes": 2, "empty_prob": 0.0})
    classes = {int(c) for k in range(20) for c in render_image(cfg, "train", k)[1][:, 0]}
    assert classes == {0, 1}                     # 20 images x >= 1 object: both are drawn
    dc = load_data_config(make_shapes(tmp_path / "two", cfg, workers=1, progress=False))
    assert dc.names == CLASS_NAMES[:2] and dc.nc == 2
    for bad in (0, len(CLASS_NAMES) + 1):
        with pytest.raises(ValueError, match="n_classes"):
            ShapesConfig(n_classes=bad)


def test_labelled_subset_keeps_the_pixels_and_drops_the_lookalikes_labels():
    """n_labelled=1 draws the same images as the full set (same RNG draws) and keeps exactly the
    class-0 rows of its labels; names and nc follow the labelled classes; k > n_classes refuses."""
    full = ShapesConfig(**{**TINY.__dict__, "empty_prob": 0.0})
    one = ShapesConfig(**{**full.__dict__, "n_labelled": 1})
    assert one.names == CLASS_NAMES[:1] and "nc: 1" in _yaml_text(one)
    dropped = 0
    for k in range(10):
        (img1, lab1), (img8, lab8) = render_image(one, "train", k), render_image(full, "train", k)
        assert np.array_equal(np.asarray(img1), np.asarray(img8))
        assert np.array_equal(lab1, lab8[lab8[:, 0] == 0])
        dropped += int((lab8[:, 0] > 0).sum())
    assert dropped > 0                           # 10 images x >= 1 object of 8 classes: look-alikes drawn
    with pytest.raises(ValueError, match="n_labelled"):
        ShapesConfig(n_classes=2, n_labelled=3)
