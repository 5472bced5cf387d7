"""detect: darknet's resize_image, darknet's postprocessing, result.json, names on boxes, eval --resize.

The references are tests/darknet_ref.py's NumPy ports of darknet's loops (image.c resize_image,
yolo_layer.c get_yolo_detections, box.c do_nms_sort / diounms_sort). Real pretrained weights
cannot ship with the tests; random weights exercise the same arithmetic.
"""
import copy
import json

import numpy as np
import pytest
import torch
from PIL import Image

from yolocompress.darknet import zoo
from yolocompress.darknet.cfg import to_text
from yolocompress.cli.main import main
from yolocompress.deploy.detect import darknet_json_frame, draw_detections, nms_settings, predict
from yolocompress.engine.metrics import darknet_nms, darknet_postprocess
from yolocompress.darknet.model import Darknet
from yolocompress.data.resize import StretchDataset, darknet_resize, to_darknet_float
from yolocompress.data.synth import ShapesConfig, make_shapes
from yolocompress.darknet.weights import darknet_weights_bytes, randomize

from darknet_ref import box_diou, darknet_heads, do_nms_sort, get_network_boxes, reported, resize_image
from yolocompress.darknet.loader import load_model

CLASSES = 3


# ----------------------------------------------------------------------------- resize

@pytest.mark.parametrize("src_hw, dst_hw", [((23, 37), (64, 32)),   # up in y, down in x
                                            ((70, 50), (32, 32)),   # down in both
                                            ((1, 9), (6, 8)),       # one-row image
                                            ((5, 1), (4, 4)),       # one-column image
                                            ((31, 7), (416, 8)),    # last row hits darknet's quirk
                                            ((12, 12), (12, 12))])  # same size: a copy
def test_resize_is_darknets_loop_bit_for_bit(src_hw, dst_hw):
    """Same float32 operations in the same order as image.c, so equality is exact, not approximate."""
    rgb = np.random.default_rng(sum(src_hw)).integers(0, 256, (*src_hw, 3), dtype=np.uint8)
    im = to_darknet_float(rgb)
    out = darknet_resize(im, dst_hw[1], dst_hw[0])
    assert out.dtype == np.float32 and out.shape == (3, *dst_hw)
    np.testing.assert_array_equal(out, resize_image(im, dst_hw[1], dst_hw[0]))


def test_resize_keeps_darknets_last_row_quirk():
    """31 -> 416 rows: in float32, 415 * (30 / 415) < 30, so darknet's last row is (1 - dy) * row 29
    with dy ~ 1 - its last row comes out almost black. A 'correct' bilinear would copy row 30."""
    f = np.float32
    assert f(415) * (f(30) / f(415)) < 30
    im = np.ones((1, 31, 4), np.float32)
    out = darknet_resize(im, 4, 416)
    assert out[0, -1].max() < 1e-5 and out[0, :-1].min() > 0.99999


def test_resize_corners_and_midpoints():
    """Sampling at c * (W - 1) / (w - 1): corners map to corners, the midpoint of 3 -> 5 is exact."""
    im = np.array([[[0.0, 0.5, 1.0]] * 3], np.float32)            # (1, 3, 3): a ramp along x
    out = darknet_resize(im, 5, 3)
    np.testing.assert_array_equal(out[0, 0], np.array([0, 0.25, 0.5, 0.75, 1.0], np.float32))


# ----------------------------------------------------------------------------- postprocessing

def _model(seed: int = 1, h: int = 64, w: int = 96, head_gain: float = 1.0):
    """yolov3-tiny, CLASSES classes, at w x h, random weights; head_gain spreads the head logits."""
    blocks = zoo.blocks("yolov3-tiny", CLASSES)
    blocks[0].width, blocks[0].height = w, h
    model = randomize(Darknet(blocks), seed=seed).eval()
    with torch.no_grad():
        for i in model.head_indices:
            model.module_list[i - 1].conv.weight.mul_(head_gain)
    return model


def _grids(model, h, w):
    with torch.no_grad():
        return [tuple(p.shape[1:4]) for p in model.heads(torch.zeros(1, 3, h, w))]


def _ours_relative(det, hw):
    """(k, 6) xyxy px rows -> sorted list of (class, prob, cx, cy, w, h) relative to hw = (H, W)."""
    h, w = hw
    rows = [(int(c), float(s), (x1 + x2) / 2 / w, (y1 + y2) / 2 / h, (x2 - x1) / w, (y2 - y1) / h)
            for x1, y1, x2, y2, s, c in det.tolist()]
    return sorted(rows)


def _assert_same_reports(ours, ref, prob_tol, box_tol):
    assert len(ours) == len(ref)
    for a, b in zip(ours, sorted(ref)):
        assert a[0] == b[0]
        np.testing.assert_allclose(a[1], b[1], atol=prob_tol)
        np.testing.assert_allclose(a[2:], b[2:], atol=box_tol)


@pytest.mark.parametrize("kind, beta", [("default", 0.6), ("greedynms", 0.6), ("diounms", 0.8)])
def test_postprocess_matches_darknets_loops(kind, beta):
    """Same raw output into both; the reference computes in float64, ours in float32.

    Tolerances: a float32 score is within 1 ulp (6e-8 at <= 1) of the float64 product -> 1e-7;
    a relative coordinate goes through ~4 float32 operations on values <= 3 (cx -/+ w/2, / size,
    back) -> 4 x 3 x 6e-8 < 1e-6. Decisions cannot flip if no score is within 1e-7 of the
    threshold and no overlap within 20 x 1e-6 / smallest box side of 0.45 (moving one of the 8
    edges of a pair by d moves an IoU by at most 2 d / the smaller side: 16 d / side; moving the
    centres moves the DIoU term (d2/c)^e, 0.5 <= e <= 1, by at most 2 x 2 e d / diagonal: 4 d / side);
    both are checked.
    """
    h, w, thresh = 64, 96, 0.25
    model = _model()
    x = torch.rand(1, 3, h, w, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        pred = model(x)
    sizes = [a * gh * gw for a, gh, gw in _grids(model, h, w)]
    heads = [r.double().numpy() for r in pred[0].split(sizes)]
    dets = get_network_boxes(heads, _grids(model, h, w), w, h, thresh)
    min_side = min(min(d["bbox"][2:]) for d in dets)
    probs = np.array([d["prob"] for d in dets]).ravel()
    before = int((probs > thresh).sum())
    margin = do_nms_sort(dets, CLASSES, 0.45, kind, beta)
    ref = reported(dets, thresh)
    ours = darknet_postprocess(pred, (h, w), thresh, 0.45, kind, beta)[0].numpy()
    assert 20 * 1e-6 / min_side < margin < np.inf
    raw = pred[0, :, 4:5].double() * pred[0, :, 5:].double()
    assert (raw - thresh).abs().min() > 1e-7
    assert 0 < len(ref) < before                     # NMS had work to do
    _assert_same_reports(_ours_relative(ours, (h, w)), ref, prob_tol=1e-7, box_tol=1e-6)


def test_diou_kinds_decide_differently_on_a_known_pair():
    """[0,0,10,10] and [3.5,0,13.5,10]: IoU 65/135 = 0.481 > 0.45; c = 13.5^2 + 10^2, d = 3.5^2,
    d/c = 0.0434: greedynms (exponent 0.6) gives 0.481 - 0.152 = 0.329 and keeps both; diounms
    with beta 1 gives 0.438 (keeps both), with beta 2 gives 0.479 (suppresses); default suppresses.
    A box of another class is never suppressed."""
    boxes = torch.tensor([[0, 0, 10, 10], [3.5, 0, 13.5, 10], [0, 0, 10, 10]]) / 20
    scores, classes = torch.tensor([0.9, 0.8, 0.7]), torch.tensor([0, 0, 1])
    kept = [darknet_nms(boxes, scores, classes, 0.45, kind, beta).tolist()
            for kind, beta in [("default", 0.6), ("greedynms", 0.6), ("diounms", 1.0), ("diounms", 2.0)]]
    assert kept == [[0, 2], [0, 1, 2], [0, 1, 2], [0, 2]]
    a, b = (0.25, 0.25, 0.5, 0.5), (0.425, 0.25, 0.5, 0.5)          # the same pair, darknet's x, y, w, h
    assert box_diou(a, b, 0.6) == pytest.approx(0.48148 - (12.25 / 282.25) ** 0.6, abs=1e-4)


def test_unknown_nms_kind_is_refused_naming_it():
    model = _model()
    model.layers[model.head_indices[-1]].extra["nms_kind"] = "cornersnms"
    with pytest.raises(ValueError, match="nms_kind=cornersnms is not supported"):
        nms_settings(model)
    assert nms_settings(load_model("yolov4-tiny", classes=2)) == ("greedynms", 0.6)


# ----------------------------------------------------------------------------- end to end

@pytest.fixture
def darknet_files(tmp_path):
    """A darknet-style cfg + .weights + .names (yolov3-tiny, 3 classes, net 96 x 64) and two photos
    of sizes other than the network's, as PNG (lossless: every decoder gives the same pixels)."""
    model = _model(seed=2, head_gain=4.0)
    cfg, weights, names = tmp_path / "m.cfg", tmp_path / "m.weights", tmp_path / "m.names"
    cfg.write_text(to_text(model.blocks))
    weights.write_bytes(darknet_weights_bytes(model))
    names.write_text("cat\ndog\ndont_show_me\n")
    photos = tmp_path / "photos"
    photos.mkdir()
    rng = np.random.default_rng(5)
    for i, (h, w) in enumerate([(75, 101), (50, 40)]):
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(photos / f"p{i}.png")
    return model, cfg, weights, names, photos


def _darknet_detector_test(model, photo, thresh):
    """The whole of `darknet detector test` on one photo, from the NumPy reference alone; also the
    largest differences between our raw outputs (of the BN-folded model the CLI runs) and the
    reference's on that photo."""
    rgb = np.asarray(Image.open(photo).convert("RGB"))
    net_h, net_w = model.net.height, model.net.width
    x = resize_image(to_darknet_float(rgb), net_w, net_h)
    heads = darknet_heads(model.blocks, darknet_weights_bytes(model), x)
    ref = np.concatenate(heads)                                       # (N, 5+C) float64
    fused = copy.deepcopy(model).eval().fuse()                        # what the detect CLI runs
    with torch.no_grad():
        ours = fused(torch.from_numpy(x)[None])[0].double().numpy()   # darknet_resize == resize_image
    err = {"score": np.abs(ours[:, 4:5] * ours[:, 5:] - ref[:, 4:5] * ref[:, 5:]).max(),
           "rel": (np.abs(ours[:, :4] - ref[:, :4]) / [net_w, net_h, net_w, net_h]).max(),
           "min_side": (ref[ref[:, 4] > thresh, 2:4] / [net_w, net_h]).min()}
    dets = get_network_boxes(heads, _grids(model, net_h, net_w), net_w, net_h, thresh)
    margin = do_nms_sort(dets, CLASSES, 0.45)
    return reported(dets, thresh), margin, ref, err


def test_detect_cli_gives_darknets_boxes_and_result_json(darknet_files, capsys):
    """.weights -> stretch by default; boxes, classes and scores equal the reference pipeline.

    Tolerances come from the measured gap between our raw outputs and the reference's (float32
    vs float64 forward): a reported score differs by at most that gap in objectness x class score
    (+ 1e-7 for computing it once more in float32); a relative coordinate by the gap in centre or
    size, twice (width = x2 - x1 takes two), + 1e-6 for float32 rounding of the round trip
    through corner pixels of the photo. Decisions cannot flip if no score lies closer to the
    threshold than the score tolerance, and no NMS overlap closer to 0.45 than 16 x box tolerance
    / smallest box side (moving one of the 8 edges of a pair by d changes the IoU by at most
    2 d / the smaller side); both are checked."""
    model, cfg, weights, names, photos = darknet_files
    thresh = 0.4                                       # ~20 reports per photo, NMS decisions among them
    out = photos.parent / "det"
    assert main(["detect", "--cfg", str(cfg), "--weights", str(weights), "--source", str(photos),
                 "--out", str(out), "--names", str(names), "--conf", str(thresh), "--json"]) == 0
    frames = json.loads((out / "result.json").read_text())
    assert [f["frame_id"] for f in frames] == [1, 2]
    assert [f["filename"] for f in frames] == [str(photos / "p0.png"), str(photos / "p1.png")]
    total = 0
    for frame in frames:
        ref, margin, raw, err = _darknet_detector_test(model, frame["filename"], thresh)
        prob_tol, box_tol = err["score"] + 1e-7, 2 * err["rel"] + 1e-6
        assert prob_tol < 1e-4 and box_tol < 1e-4                      # the forward agrees closely
        assert 16 * box_tol / err["min_side"] < margin < np.inf       # NMS decided something, safely
        assert np.abs(raw[:, 4:5] * raw[:, 5:] - thresh).min() > prob_tol
        assert np.abs(raw[:, 4] - thresh).min() > prob_tol
        shown = sorted(r for r in ref if r[0] != 2)                 # class 2 is named dont_show...
        ours = sorted((o["class_id"], o["confidence"], *o["relative_coordinates"].values()) for o in frame["objects"])
        assert {o["name"] for o in frame["objects"]} <= {"cat", "dog"}
        _assert_same_reports(ours, shown, prob_tol=prob_tol, box_tol=box_tol)
        txt = (out / f"{frame['filename'].rsplit('/', 1)[-1][:-4]}.txt").read_text().splitlines()
        assert len(txt) == len(ref)                                 # the .txt keeps every class
        total += len(ref)
    assert total > 0
    assert len(list(out.glob("*.png"))) == 2


def test_detect_cli_refuses_names_of_the_wrong_count(darknet_files, capsys):
    model, cfg, weights, names, photos = darknet_files
    names.write_text("cat\ndog\n")
    assert main(["detect", "--cfg", str(cfg), "--weights", str(weights), "--source", str(photos),
                 "--out", str(photos.parent / "x"), "--names", str(names)]) == 2
    assert f"{names}: expected 3 class names" in capsys.readouterr().err


def test_stretch_maps_boxes_back_by_scaling():
    """A 2:1 photo on a square network: x scales by W / net_w, y by H / net_h (correct_yolo_boxes,
    letter = 0), nothing is clipped (darknet's relative coordinates are not either)."""
    model = _model(seed=3, h=64, w=64, head_gain=4.0)
    wide = np.random.default_rng(2).integers(0, 256, (64, 128, 3), dtype=np.uint8)
    det = predict(model, wide, 64, 0.2, resize="stretch")
    x = torch.from_numpy(darknet_resize(to_darknet_float(wide), 64, 64))[None]
    with torch.no_grad():
        raw = darknet_postprocess(model(x), (64, 64), 0.2)[0].numpy()
    assert len(det) > 0
    np.testing.assert_allclose(det[:, [0, 2]], raw[:, [0, 2]] * 2, rtol=1e-6)
    np.testing.assert_allclose(det[:, [1, 3]], raw[:, [1, 3]], rtol=1e-6)
    np.testing.assert_array_equal(det[:, 4:], raw[:, 4:])


def test_letterbox_maps_boxes_back_through_the_padding():
    """A 1:2 photo letterboxed to 64: 32 px wide, 16 px of padding left; x_orig = (x - 16) * 2."""
    model = _model(seed=3, h=64, w=64, head_gain=4.0)
    tall = np.random.default_rng(3).integers(0, 256, (128, 64, 3), dtype=np.uint8)
    det = predict(model, tall, 64, 0.2, resize="letterbox")
    from yolocompress.data.labels import letterbox
    x = torch.from_numpy(letterbox(tall, 64)).float().div(255)[None]
    with torch.no_grad():
        raw = darknet_postprocess(model(x), (64, 64), 0.2)[0].numpy()
    assert len(det) > 0
    np.testing.assert_allclose(det[:, [0, 2]], ((raw[:, [0, 2]] - 16) * 2).clip(0, 64), rtol=1e-6)
    np.testing.assert_allclose(det[:, [1, 3]], (raw[:, [1, 3]] * 2).clip(0, 128), rtol=1e-6)



def test_result_json_layout_and_labels_drawn_legibly():
    det = np.array([[10, 20, 110, 220, 0.83, 1], [10, 20, 110, 220, 0.31, 0], [300, 50, 400, 90, 0.5, 2]],
                   np.float32)
    frame = darknet_json_frame(7, "a.jpg", det, (480, 640), ["person", "bicycle", "car"])
    assert frame["frame_id"] == 7 and frame["filename"] == "a.jpg"
    objs = frame["objects"]
    assert [(o["class_id"], o["name"]) for o in objs] == [(0, "person"), (1, "bicycle"), (2, "car")]
    assert objs[1]["relative_coordinates"] == pytest.approx({"center_x": 60 / 640, "center_y": 120 / 480,
                                                             "width": 100 / 640, "height": 200 / 480})
    assert objs[1]["confidence"] == pytest.approx(0.83)
    img = np.asarray(draw_detections(np.zeros((480, 640, 3), np.uint8), det, ["person", "bicycle", "car"]))
    # the label of the first box sits in a filled band above it: font 2.5 % of 640 = 16 px
    band = img[:20, 10:60]
    filled = (band != 0).any(-1).sum(0)
    assert filled.max() >= 16
    assert img[5:15, 12:40].reshape(-1, 3).std(0).sum() > 0      # text drawn on the band, not just fill


# ----------------------------------------------------------------------------- eval

@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    root = tmp_path_factory.mktemp("shapes")
    make_shapes(root, ShapesConfig(n_train=4, n_val=6, img_size=64, seed=3), workers=1, progress=False)
    return root


def test_stretch_dataset_items(shapes):
    from yolocompress.data.dataset import load_data_config
    data = load_data_config(shapes / "data.yaml")
    ds = StretchDataset(data.val, 96, nc=data.nc)
    x, lab, meta = ds[0]
    rgb = np.asarray(Image.open(data.val[0]).convert("RGB"))
    np.testing.assert_array_equal(x.numpy(), darknet_resize(to_darknet_float(rgb), 96, 96))
    from yolocompress.data.labels import label_path, read_labels
    np.testing.assert_array_equal(lab.numpy(), read_labels(label_path(data.val[0])))


def test_eval_cli_resize_choice(shapes, tmp_path, capsys):
    """A .weights file evaluates stretched by default. On 64 px square images at --img-size 64
    stretch and letterbox both feed the image unchanged, so the metrics must be identical; with
    --names a .names file renames the per-class table."""
    model = randomize(load_model("teach", classes=8), seed=0)
    weights = tmp_path / "t.weights"
    weights.write_bytes(darknet_weights_bytes(model))
    cfg = tmp_path / "t.cfg"
    cfg.write_text(to_text(model.blocks))
    names = tmp_path / "s.names"
    names.write_text("\n".join(f"shape{i}" for i in range(8)) + "\n")
    common = ["eval", "--cfg", str(cfg), "--weights", str(weights), "--data", str(shapes / "data.yaml"),
              "--img-size", "64", "--json"]
    results = []
    for extra in ([], ["--resize", "letterbox"], ["--names", str(names)]):
        assert main(common + extra) == 0
        results.append(json.loads(capsys.readouterr().out.strip().splitlines()[-1]))
    assert results[0]["map50"] == results[1]["map50"] and results[0]["map"] == results[1]["map"]
    assert all(r["name"].startswith("shape") for r in results[2]["per_class"])
