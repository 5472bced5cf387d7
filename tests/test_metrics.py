"""metrics.py: postprocess by hand, and COCO mAP / P / R on cases whose answer is known exactly."""
import json
import math

import pytest
import torch

from yolocompress.engine.metrics import DetectionEvaluator, postprocess

S = 320  # input size, pixels
NAMES = ["cat", "dog", "bird"]


def approx(x):
    """COCOeval divides by tp + fp + np.spacing(1), so a perfect AP is 1 - 1e-16, not 1."""
    return pytest.approx(x, abs=1e-9)


def raw_pred(targets: torch.Tensor, batch: int, n_classes: int, score: float = 0.9,
             shift_px: float = 0.0) -> torch.Tensor:
    """Raw (B, N, 5+C) detector output with one box per GT row: obj = score, its class = 1."""
    n = max(int((targets[:, 0] == b).sum()) for b in range(batch)) if len(targets) else 0
    pred = torch.zeros(batch, max(n, 1), 5 + n_classes)
    for b in range(batch):
        rows = targets[targets[:, 0] == b]
        for j, (_, c, cx, cy, w, h) in enumerate(rows.tolist()):
            pred[b, j, :4] = torch.tensor([cx * S + shift_px, cy * S, w * S, h * S])
            pred[b, j, 4] = score
            pred[b, j, 5 + int(c)] = 1.0
    return pred


def gt_boxes() -> torch.Tensor:
    """3 images: image 0 has a cat and a dog, image 1 two cats, image 2 nothing; no birds."""
    return torch.tensor([[0, 0, 0.30, 0.30, 0.3125, 0.3125],   # 100 x 100 px
                         [0, 1, 0.70, 0.70, 0.2, 0.25],
                         [1, 0, 0.25, 0.50, 0.3125, 0.3125],
                         [1, 0, 0.75, 0.50, 0.1, 0.2]])


def evaluate(pred, targets, names=NAMES):
    ev = DetectionEvaluator(names, S)
    ev.update(pred, targets)
    return ev.compute()


def test_postprocess_score_is_obj_times_cls_and_boxes_are_xyxy():
    pred = torch.tensor([[[50., 60., 20., 40., 0.8, 0.5, 0.25],
                          [200., 200., 10., 10., 0.0005, 1.0, 1.0]]])  # objectness under conf_thres
    out = postprocess(pred)[0]
    assert out.shape == (2, 6)
    first, second = [40, 40, 60, 80, 0.4, 0], [40, 40, 60, 80, 0.2, 1]  # float32: rel 1e-6
    assert out.flatten().tolist() == pytest.approx(first + second)
    assert postprocess(pred, conf_thres=0.3)[0].flatten().tolist() == pytest.approx(first)
    assert postprocess(pred, multi_label=False)[0].flatten().tolist() == pytest.approx(first)


def test_postprocess_nms_is_class_aware():
    box = [100., 100., 50., 50.]
    dup = [102., 100., 50., 50.]  # IoU 48/52 = 0.92 with box
    same = torch.tensor([[box + [0.9, 1.0, 0.0], dup + [0.8, 1.0, 0.0]]])
    other = torch.tensor([[box + [0.9, 1.0, 0.0], dup + [0.8, 0.0, 1.0]]])
    kept = postprocess(same)[0]
    assert kept.shape == (1, 6) and kept[0, 4].item() == pytest.approx(0.9)
    kept = postprocess(other)[0]
    assert kept.shape == (2, 6) and sorted(kept[:, 5].tolist()) == [0.0, 1.0]


def test_postprocess_max_det_and_empty():
    pred = torch.zeros(2, 10, 6)
    pred[0, :, :2] = torch.arange(10.)[:, None] * 30 + 20  # ten disjoint boxes
    pred[0, :, 2:4], pred[0, :, 4], pred[0, :, 5] = 10, torch.linspace(0.5, 0.9, 10), 1
    out = postprocess(pred, max_det=3)
    assert out[0][:, 4].tolist() == pytest.approx([0.9, 0.9 - 0.4 / 9, 0.9 - 0.8 / 9])
    assert out[1].shape == (0, 6)


def test_perfect_predictions():
    t = gt_boxes()
    m = evaluate(raw_pred(t, 3, len(NAMES)), t)
    assert (m.map50, m.map, m.precision, m.recall) == approx((1.0, 1.0, 1.0, 1.0))
    assert m.conf == pytest.approx(0.9) and m.n_images == 3
    pc = m.per_class  # birds never appear: no row
    assert pc["name"].tolist() == ["cat", "dog"]
    assert pc["images"].tolist() == [2, 1] and pc["instances"].tolist() == [3, 1]
    assert pc["AP50"].tolist() == approx([1.0, 1.0]) and pc["AP"].tolist() == approx([1.0, 1.0])


@pytest.mark.parametrize("shift_px, n_thresholds", [(20.0, 4), (16.0, 5), (4.0, 9), (2.0, 10)])
def test_shifted_box_counts_the_iou_thresholds_it_passes(shift_px, n_thresholds):
    # a 100 x 100 px box shifted sideways by d px: IoU = (100 - d) / (100 + d).
    # d = 20: 80/120 = 0.667 passes 0.50 ... 0.65 (4 of the 10 COCO thresholds), AP 0 above;
    # d = 16: 84/116 = 0.724 passes 0.50 ... 0.70 (5); d = 4: 96/104 = 0.923 passes 0.50 ... 0.90
    # (9); d = 2: 98/102 = 0.961 passes all 10.
    # One box per image, so AP is 1 where it matches and 0 where not: mAP = n / 10.
    t = gt_boxes()[:1]
    m = evaluate(raw_pred(t, 1, len(NAMES), shift_px=shift_px), t)
    assert m.map50 == approx(1.0)
    assert m.map == approx(n_thresholds / 10)
    assert (m.precision, m.recall) == (1.0, 1.0)


def test_missed_object_halves_recall_single_class():
    t = torch.tensor([[0, 0, 0.3, 0.3, 0.2, 0.2], [0, 0, 0.7, 0.7, 0.2, 0.2]])
    m = evaluate(raw_pred(t[:1], 1, 1), t, names=["thing"])
    assert (m.precision, m.recall) == (1.0, 0.5)
    # COCO's 101-point AP: precision 1 at recall thresholds 0.00 ... 0.50, 0 above -> 51/101
    assert m.map50 == approx(51 / 101) and m.map == approx(51 / 101)
    assert m.per_class["instances"].tolist() == [2] and m.per_class["AP50"].tolist() == approx([51 / 101])


def test_duplicate_detection_is_removed_before_scoring():
    t = gt_boxes()[:1]
    pred = raw_pred(t, 1, len(NAMES))
    pred = torch.cat([pred, pred + torch.tensor([3., 0, 0, 0, -0.1, 0, 0, 0])], 1)  # shifted twin
    m = evaluate(pred, t)
    assert (m.map50, m.precision, m.recall) == approx((1.0, 1.0, 1.0))


def test_zero_detections():
    t = gt_boxes()
    m = evaluate(torch.zeros(3, 5, 5 + len(NAMES)), t)
    assert (m.map50, m.map, m.precision, m.recall, m.conf) == (0.0, 0.0, 0.0, 0.0, 0.0)
    assert m.per_class["AP"].tolist() == [0.0, 0.0] and m.per_class["instances"].tolist() == [3, 1]
    json.dumps(m.as_dict(), allow_nan=False)


def test_no_ground_truth_and_no_detections():
    m = evaluate(torch.zeros(2, 5, 5 + len(NAMES)), torch.zeros(0, 6))
    assert (m.map50, m.map, m.precision, m.recall, m.n_images) == (0.0, 0.0, 0.0, 0.0, 2)
    assert len(m.per_class) == 0


def test_false_positive_of_absent_class_sets_precision_not_map():
    # two perfect cats at 0.9 plus a confident bird (no bird GT) at 0.95: best F1 is at 0.9 with
    # P = 2/3, R = 1; COCO mAP averages only classes with GT, so it stays 1.
    t = torch.tensor([[0, 0, 0.3, 0.3, 0.2, 0.2], [0, 0, 0.7, 0.7, 0.2, 0.2]])
    dets = [torch.tensor([[64., 64, 128, 128, 0.9, 0], [192, 192, 256, 256, 0.9, 0],
                          [10, 10, 40, 40, 0.95, 2]])]
    m = evaluate(dets, t)
    assert m.precision == pytest.approx(2 / 3) and m.recall == 1.0
    assert m.conf == pytest.approx(0.9) and (m.map50, m.map) == approx((1.0, 1.0))
    assert m.per_class["name"].tolist() == ["cat", "bird"]
    assert m.per_class["AP"].iloc[0] == approx(1.0) and math.isnan(m.per_class["AP"].iloc[1])
    d = m.as_dict()
    assert d["per_class"][1] == {"class": 2, "name": "bird", "images": 0, "instances": 0,
                                 "AP50": None, "AP": None}
    json.dumps(d, allow_nan=False)


def test_batches_accumulate_and_bad_inputs_raise():
    t = gt_boxes()
    ev = DetectionEvaluator(NAMES, S)
    for b in range(3):  # one image per batch, same answer as one batch of three
        tb = t[t[:, 0] == b].clone()
        tb[:, 0] = 0
        ev.update(raw_pred(tb, 1, len(NAMES)), tb)
    m = ev.compute()
    assert (m.map, m.n_images) == approx((1.0, 3)) and m.per_class["instances"].tolist() == [3, 1]
    with pytest.raises(ValueError, match="image id 0 was already added"):
        ev.update(raw_pred(t, 1, len(NAMES)), t[:0], img_ids=[0])
    with pytest.raises(ValueError, match="2 class columns but the evaluator has 3 names"):
        ev.update(torch.zeros(1, 4, 7), t[:0])
    with pytest.raises(ValueError, match="class ids 0..5 but the evaluator has 3 names"):
        ev.update([torch.zeros(0, 6)], torch.tensor([[0, 5, 0.5, 0.5, 0.1, 0.1], [0, 0, 0.5, 0.5, 0.1, 0.1]]))


def test_matches_plain_pycocotools_on_random_boxes():
    """Same numbers as the textbook pycocotools path: JSON-style GT, loadRes, default areaRng."""
    import contextlib
    import io

    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    g = torch.Generator().manual_seed(0)
    n_img, n_gt = 12, 40
    t = torch.cat([torch.randint(0, n_img, (n_gt, 1), generator=g).float(),
                   torch.randint(0, 3, (n_gt, 1), generator=g).float(),
                   torch.rand(n_gt, 2, generator=g) * 0.6 + 0.2,
                   torch.rand(n_gt, 2, generator=g) * 0.3 + 0.05], 1)
    dets = []
    for b in range(n_img):
        rows = t[t[:, 0] == b]
        xyxy = torch.cat([rows[:, 2:4] - rows[:, 4:6] / 2, rows[:, 2:4] + rows[:, 4:6] / 2], 1) * S
        noisy = xyxy + torch.randn(xyxy.shape, generator=g) * 6
        junk = torch.rand(5, 2, generator=g) * 250
        junk = torch.cat([junk, junk + 40], 1)
        boxes = torch.cat([noisy, junk])
        score = torch.rand(len(boxes), 1, generator=g)
        cls = torch.cat([rows[:, 1], torch.randint(0, 3, (5,), generator=g).float()])[:, None]
        dets.append(torch.cat([boxes, score, cls], 1))
    m = evaluate(dets, t)

    gt = {"images": [{"id": i} for i in range(n_img)], "categories": [{"id": c} for c in range(3)],
          "annotations": [{"id": k + 1, "image_id": int(b), "category_id": int(c), "iscrowd": 0,
                           "bbox": [(cx - w / 2) * S, (cy - h / 2) * S, w * S, h * S], "area": w * h * S * S}
                          for k, (b, c, cx, cy, w, h) in enumerate(t.tolist())]}
    res = [{"image_id": b, "category_id": int(c), "score": s, "bbox": [x1, y1, x2 - x1, y2 - y1]}
           for b, d in enumerate(dets) for x1, y1, x2, y2, s, c in d.tolist()]
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO()
        coco.dataset = gt
        coco.createIndex()
        ref = COCOeval(coco, coco.loadRes(res), "bbox")
        ref.evaluate(), ref.accumulate(), ref.summarize()
    assert 0.1 < m.map < m.map50 < 0.99
    assert (m.map, m.map50) == approx((ref.stats[0], ref.stats[1]))


def test_per_class_ap_and_map_is_the_mean_over_classes_with_gt():
    # cats found perfectly, the dog missed, a false-positive dog elsewhere at 0.5:
    # cat AP 1, dog AP 0 -> mAP 0.5; pooled best F1 at 0.9: P = 3/3, R = 3/4.
    t = gt_boxes()
    pred = raw_pred(t, 3, len(NAMES))
    pred[0, 1, :] = 0  # drop the dog
    pred[2, 0, :6] = torch.tensor([40., 40., 30., 30., 0.5, 0.0])
    pred[2, 0, 5 + 1] = 1.0  # image 2 (no GT): a dog at 0.5
    m = evaluate(pred, t)
    assert (m.map50, m.map) == approx((0.5, 0.5))
    assert (m.precision, m.recall) == approx((1.0, 0.75)) and m.conf == pytest.approx(0.9)
    pc = m.per_class
    assert pc["name"].tolist() == ["cat", "dog"] and pc["images"].tolist() == [2, 1]
    assert pc["AP50"].tolist() == approx([1.0, 0.0]) and pc["AP"].tolist() == approx([1.0, 0.0])


@pytest.mark.parametrize("max_det", [1, 5, 100, 300])
def test_map_does_not_depend_on_max_det_being_100(max_det):
    # regression: COCOeval.summarize() reads stats[0] at maxDets=100 whatever params.maxDets is,
    # so any other max_det used to give map = 0 while map50 was right.
    t = torch.tensor([[0, 0, 0.3, 0.3, 0.2, 0.2], [0, 0, 0.7, 0.7, 0.2, 0.2]])
    dets = [torch.tensor([[64., 64, 128, 128, 0.9, 0], [192, 192, 256, 256, 0.8, 0]])]
    ev = DetectionEvaluator(["thing"], S, max_det=max_det)
    ev.update(dets, t)
    m = ev.compute()
    if max_det == 1:  # only the best detection per image and class is scored: recall 1/2
        assert (m.map50, m.map, m.recall) == approx((51 / 101, 51 / 101, 0.5))
    else:
        assert (m.map50, m.map, m.recall) == approx((1.0, 1.0, 1.0))


def test_failed_update_adds_nothing_and_stray_targets_raise():
    ev = DetectionEvaluator(NAMES, S)
    t = gt_boxes()[:1]
    with pytest.raises(ValueError, match="image id 7 was already added"):
        ev.update([torch.zeros(0, 6)] * 2, t, img_ids=[7, 7])
    with pytest.raises(ValueError, match="targets refer to images 0..1 of a batch of 1"):
        ev.update([torch.zeros(0, 6)], gt_boxes()[:3])  # image 1's boxes would be dropped silently
    with pytest.raises(ValueError, match="1 img_ids for a batch of 2"):
        ev.update([torch.zeros(0, 6)] * 2, t, img_ids=[3])
    assert ev.compute().n_images == 0
    ev.update(raw_pred(t, 1, len(NAMES)), t, img_ids=[7])
    m = ev.compute()
    assert (m.n_images, m.map) == (1, approx(1.0))
