"""Data configs, label validation, letterbox and augmentation geometry, loaders."""
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import tv_tensors
from torchvision.transforms.v2 import functional as F

from yolocompress.data.augment import affine_boxes, colour_matrix, jitter_colour, sanitize
from yolocompress.data.dataset import (AugmentConfig, DataError, YoloDataset, collate, label_path, load_data_config,
                               make_loader)

NO_COLOUR = dict(brightness=0.0, contrast=0.0, saturation=0.0, hue=0.0)


def _write(root: Path, name: str, size=(64, 48), label: str | None = "0 0.5 0.5 0.25 0.5\n", rect=None) -> Path:
    """An image root/images/train/name.png (w, h = size), black with an optional white xyxy rect."""
    img = root / "images" / "train" / f"{name}.png"
    img.parent.mkdir(parents=True, exist_ok=True)
    a = np.zeros((size[1], size[0], 3), np.uint8)
    if rect:
        a[rect[1]:rect[3], rect[0]:rect[2]] = 255
    Image.fromarray(a).save(img)
    if label is not None:
        lp = root / "labels" / "train" / f"{name}.txt"
        lp.parent.mkdir(parents=True, exist_ok=True)
        lp.write_text(label)
    return img


def test_label_path():
    assert label_path(Path("/d/images/x/images/a.b.jpg")) == Path("/d/images/x/labels/a.b.txt")
    assert label_path(Path("d/img/a.png")) == Path("d/img/a.txt")


@pytest.mark.parametrize("wh, rect, expect, pad", [
    ((200, 100), (50, 25, 150, 75), (0.5, 0.5, 0.5, 0.25), (0, 16)),   # wide: 64x32 at top 16
    ((100, 200), (0, 0, 50, 100), (0.375, 0.25, 0.25, 0.5), (16, 0)),  # tall: 32x64 at left 16
])
def test_letterbox_maps_boxes_exactly(tmp_path, wh, rect, expect, pad):
    w, h = wh
    x0, y0, x1, y1 = rect
    label = f"1 {(x0 + x1) / 2 / w} {(y0 + y1) / 2 / h} {(x1 - x0) / w} {(y1 - y0) / h}\n"
    ds = YoloDataset([_write(tmp_path, "a", wh, label, rect)], 64)
    img, lab, meta = ds[0]
    assert meta["ratio"] == (0.32, 0.32) and meta["pad"] == pad and meta["orig_hw"] == (h, w)
    assert lab.tolist()[0] == pytest.approx([1, *expect], abs=1e-6) and len(lab) == 1
    # the white rectangle sits where the label says (px 16..48 x 24..40 for the wide case)
    c, cy, bw, bh = expect[0] * 64, expect[1] * 64, expect[2] * 64, expect[3] * 64
    white = (img[0] > 0.5).nonzero()
    assert white[:, 1].min() == c - bw / 2 and white[:, 1].max() == c + bw / 2 - 1
    assert white[:, 0].min() == cy - bh / 2 and white[:, 0].max() == cy + bh / 2 - 1
    grey = img[:, :pad[1], :] if pad[1] else img[:, :, :pad[0]]
    assert torch.all(grey == 114 / 255)


def test_flip_maps_cx_to_one_minus_cx(tmp_path):
    p = _write(tmp_path, "a", (64, 64), "2 0.25 0.375 0.25 0.5\n0 0.8 0.5 0.1 0.2\n", (8, 8, 24, 40))
    plain = YoloDataset([p], 64)[0]
    flipped = YoloDataset([p], 64, AugmentConfig(hflip=1.0, scale=(1, 1), translate=0, **NO_COLOUR))[0]
    assert torch.equal(flipped[0], plain[0].flip(-1))
    want = plain[1].clone()
    want[:, 1] = 1 - want[:, 1]
    assert torch.allclose(flipped[1], want, atol=1e-6)


@pytest.mark.parametrize("seed", range(4))
def test_augmented_boxes_follow_the_pixels(tmp_path, seed):
    """Random zoom/shift/flip: the white square's pixel extent equals its label (to 1 px)."""
    p = _write(tmp_path, "a", (64, 64), "0 0.5 0.4375 0.375 0.375\n", (20, 16, 44, 40))
    ds = YoloDataset([p], 64, AugmentConfig(scale=(0.6, 1.4), translate=0.2, **NO_COLOUR), seed=seed)
    img, lab, _ = ds[0]
    white = (img[0] > 0.5).nonzero().float()
    _, cx, cy, w, h = (lab[0] * 64).tolist()
    got = [white[:, 1].min(), white[:, 0].min(), white[:, 1].max() + 1, white[:, 0].max() + 1]
    assert got == pytest.approx([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], abs=1.0)


def test_box_maps_equal_torchvision_v2():
    boxes = torch.tensor([[10.0, 12, 30, 40], [50, 5, 63, 20], [0, 0, 64, 64]])
    gain, off, s = 1.25, (-11.0, 4.0), 64
    mine, _ = sanitize(affine_boxes(boxes, gain, off, True, s), torch.zeros(3), s, 0, 0)
    bb = tv_tensors.BoundingBoxes(boxes, format="XYXY", canvas_size=(s, s))
    t = [off[0] - s / 2 * (1 - gain), off[1] - s / 2 * (1 - gain)]  # v2 scales about the centre
    ref = F.horizontal_flip(F.clamp_bounding_boxes(F.affine(bb, angle=0.0, translate=t, scale=gain, shear=[0.0, 0.0])))
    # coordinates up to 64 px after 2-3 float32 ops each: ulp(64) = 7.6e-6, so 1e-4 is ~10 ulps
    assert torch.allclose(mine, ref.as_subclass(torch.Tensor), atol=1e-4)


def test_sanitize_drops_thin_and_mostly_outside():
    boxes = torch.tensor([[10.0, 10, 11, 30], [-30, 0, 10, 10], [-5, 0, 15, 10], [5, 5, 20, 20]])
    kept, cls = sanitize(boxes, torch.arange(4.0), 64, min_box=2, min_kept=0.5)
    assert cls.tolist() == [2, 3] and kept[0].tolist() == [0, 0, 15, 10]


def test_colour_jitter_equals_torchvision_v2_without_hue():
    x = torch.rand(3, 16, 16) * 0.3 + 0.3  # no clipping for these gains
    ref = F.adjust_saturation(F.adjust_contrast(F.adjust_brightness(x, 1.1), 0.8), 1.3)
    assert torch.allclose(jitter_colour(x, 1.1, 0.8, 1.3, 0.0), ref, atol=1e-5)


def test_hue_rotation_keeps_grey_and_turns_full_circle():
    grey = torch.ones(3)
    assert torch.allclose(colour_matrix(1.0, 0.13) @ grey, grey, atol=1e-5)
    assert torch.allclose(colour_matrix(1.0, 1.0), torch.eye(3), atol=1e-5)
    red = torch.tensor([0.8, 0.2, 0.2])
    assert (colour_matrix(1.0, 1 / 3) @ red).argmax() == 1  # a third of a turn: red -> green
    x = torch.rand(3, 32, 32, generator=torch.Generator().manual_seed(0)) * 0.6 + 0.2
    for h in (0.05, -0.05):  # a linear stand-in for HSV: moves colours the same way as v2's adjust_hue
        mine, ref = jitter_colour(x, 1, 1, 1, h) - x, F.adjust_hue(x, h) - x
        assert torch.nn.functional.cosine_similarity(mine.flatten(), ref.flatten(), 0) > 0.6


def test_augment_is_seeded_and_loader_reproducible(tmp_path):
    paths = [_write(tmp_path, f"{i}", (64, 64), "0 0.5 0.5 0.5 0.5\n", (16, 16, 48, 48)) for i in range(6)]
    cfg = AugmentConfig(mosaic=0.5)

    def batches(seed):
        ds = YoloDataset(paths, 64, cfg, seed=123)
        return [(x.clone(), t.clone()) for x, t, _ in make_loader(ds, 3, shuffle=True, seed=seed)]

    a, b, c = batches(0), batches(0), batches(1)
    assert all(torch.equal(x, y) and torch.equal(s, t) for (x, s), (y, t) in zip(a, b))
    assert not all(torch.equal(x, y) for (x, _), (y, _) in zip(a, c))
    for x, t in a:
        assert x.shape == (3, 3, 64, 64) and 0 <= x.min() and x.max() <= 1
        assert t.shape[1] == 6 and torch.all((t[:, 2:] >= 0) & (t[:, 2:] <= 1))


def test_collate_indices(tmp_path):
    p = [_write(tmp_path, "a", label="0 0.5 0.5 0.1 0.1\n1 0.2 0.2 0.1 0.1\n"), _write(tmp_path, "b", label=None),
         _write(tmp_path, "c", label="2 0.5 0.5 0.2 0.2\n")]
    ds = YoloDataset(p, 64)
    imgs, targets, metas = collate([ds[0], ds[1], ds[2]])
    assert imgs.shape == (3, 3, 64, 64)
    assert targets[:, 0].tolist() == [0, 0, 2] and targets[:, 1].tolist() == [0, 1, 2]
    assert [m["path"] for m in metas] == [str(q) for q in p]


@pytest.mark.parametrize("text, found", [
    ("0 0.5 0.5 0.1 0.1\n0 0.5 0.5 0.1\n", 'line 2: expected 5 columns "class cx cy w h", found 4'),
    ("0 0.5 0.5 0.1 0.1\n\n3 0.5 0.5 0.1 0.1\n", "line 3: expected an integer class id in 0..2, found 3"),
    ("1.5 0.5 0.5 0.1 0.1\n", "line 1: expected an integer class id in 0..2, found 1.5"),
    ("-1 0.5 0.5 0.1 0.1\n", "line 1: expected an integer class id in 0..2, found -1"),
    ("0 1.2 0.5 0.1 -0.3\n", "line 1: expected coordinates normalised to [0, 1], found cx=1.2, h=-0.3"),
    ("0 0.5 0.5 0 0.1\n", "line 1: expected box width and height > 0, found w=0, h=0.1"),
    ("0 0.5 a 0.1 0.1\n", "line 1: expected 5 numbers, found '0 0.5 a 0.1 0.1'"),
])
def test_bad_label_names_file_and_line(tmp_path, text, found):
    p = _write(tmp_path, "00012", label=text)
    line, msg = found.split(": ", 1)
    with pytest.raises(DataError) as e:
        YoloDataset([p], 64, nc=3)
    assert str(e.value) == f"{label_path(p)}:{line.split()[1]}: {msg}"


def test_tolerance_on_coordinates(tmp_path):
    ds = YoloDataset([_write(tmp_path, "a", (64, 64), "0 1.0000005 0.5 0.1 0.1\n")], 64)
    assert ds[0][1][0, 1] == 1.0


def test_bad_images_named(tmp_path):
    missing = tmp_path / "images" / "train" / "gone.png"
    with pytest.raises(DataError, match=f"{missing}: image file not found"):
        YoloDataset([missing], 64)
    garbage = tmp_path / "images" / "train" / "junk.png"
    garbage.parent.mkdir(parents=True, exist_ok=True)
    garbage.write_bytes(b"\x89PNG not really" * 10)
    with pytest.raises(DataError, match=f"{garbage}: cannot read image header"):
        YoloDataset([garbage], 64)


def test_skip_mode_skips_whole_images_and_counts(tmp_path):
    good = [_write(tmp_path, "g1"), _write(tmp_path, "g2", label=None)]
    bad_label = _write(tmp_path, "b1", label="0 0.5 0.5 0.1 0.1\n0 2 0.5 0.1 0.1\n")
    junk = tmp_path / "images" / "train" / "b2.png"
    junk.write_bytes(b"garbage")
    with pytest.warns(UserWarning, match="skipped 2 of 4 images"):
        ds = YoloDataset([good[0], bad_label, junk, good[1]], 64, on_error="skip")
    assert ds.images == good and len(ds) == 2
    assert [s.split(":")[0] for s in ds.skipped] == [str(label_path(bad_label)), str(junk)]
    assert ds.skipped[0].startswith(f"{label_path(bad_label)}:2:")
    with pytest.raises(DataError, match="no usable images among 2; first problem: .*b1.txt:2"):
        YoloDataset([bad_label, junk], 64, on_error="skip")


def test_img_size_must_be_multiple_of_32(tmp_path):
    with pytest.raises(ValueError, match="multiple of 32"):
        YoloDataset([_write(tmp_path, "a")], 100)


def test_cache_serves_images_after_first_load(tmp_path):
    p = _write(tmp_path, "a", (64, 64), rect=(0, 0, 8, 8))
    ds = YoloDataset([p], 64)
    first = ds[0][0]
    p.unlink()
    assert torch.equal(ds[0][0], first)


def test_vanished_image_is_a_data_error(tmp_path):
    p = _write(tmp_path, "a")
    ds = YoloDataset([p], 64, cache=False)
    p.unlink()
    with pytest.raises(DataError, match=f"{p}: cannot decode image"):
        ds[0]


def test_yaml_config_variants(tmp_path):
    imgs = [_write(tmp_path, f"{i}") for i in range(3)]
    (tmp_path / "val.txt").write_text(f"images/train/0.png\n{imgs[1]}\n")
    y = tmp_path / "cfg" / "d.yaml"
    y.parent.mkdir()
    y.write_text("path: ..\ntrain: [images/train]\nval: val.txt\nnames: [a, b]\n")
    dc = load_data_config(y)
    assert dc.names == ("a", "b") and dc.nc == 2 and dc.root == tmp_path.resolve()
    assert [p.name for p in dc.train] == ["0.png", "1.png", "2.png"] and list(dc.val) == [tmp_path / "images/train/0.png", imgs[1]]
    y.write_text("path: ..\ntrain: images/train\nval: images/nope\nnc: 2\nnames: {0: a, 1: b}\n")
    with pytest.raises(DataError, match="val: images/nope -> .*nope not found"):
        load_data_config(y)
    y.write_text("path: ..\ntrain: images/train\nval: images/train\nnc: 3\nnames: [a, b]\n")
    with pytest.raises(DataError, match="nc/classes is 3 but 2 names"):
        load_data_config(y)
    with pytest.raises(DataError, match="missing.yaml: data config file not found"):
        load_data_config(tmp_path / "missing.yaml")


def test_darknet_data_file(tmp_path):
    imgs = [_write(tmp_path, f"{i}") for i in range(3)]
    (tmp_path / "obj.names").write_text("cat\ndog\n")
    (tmp_path / "train.txt").write_text("images/train/0.png\nimages/train/1.png\n")
    (tmp_path / "valid.txt").write_text(f"{imgs[2]}\n")
    d = tmp_path / "obj.data"
    d.write_text("# darknet\nclasses = 2\ntrain = train.txt\nvalid = valid.txt\nnames = obj.names\nbackup = backup/\n")
    dc = load_data_config(d)
    assert dc.names == ("cat", "dog") and list(dc.train) == imgs[:2] and list(dc.val) == imgs[2:]
    d.write_text("classes = 3\ntrain = train.txt\nvalid = valid.txt\nnames = obj.names\n")
    with pytest.raises(DataError, match="obj.data: nc/classes is 3 but 2 names"):
        load_data_config(d)


def test_worker_loader_is_reproducible(tmp_path):
    """Two worker processes: same seed -> same augmented batches; the dataset's RNG is reseeded per worker."""
    paths = [_write(tmp_path, f"{i}", (64, 64), "0 0.5 0.5 0.5 0.5\n", (16, 16, 48, 48)) for i in range(8)]
    ds = YoloDataset(paths, 64, AugmentConfig(), seed=0)

    def run(seed):
        return torch.cat([x for x, _, _ in make_loader(ds, 2, shuffle=True, workers=2, seed=seed)])

    a, b = run(5), run(5)
    assert torch.equal(a, b) and not torch.equal(a, run(6))
    assert not torch.equal(a[:2], a[2:4])  # identical images: batch 0 (worker 0) and 1 (worker 1) differ only by RNG
