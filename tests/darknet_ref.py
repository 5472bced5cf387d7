"""An independent NumPy re-implementation of darknet's CPU forward pass, for tests only.

Written from darknet's C loops (src/convolutional_layer.c, maxpool_layer.c, route_layer.c,
shortcut_layer.c, upsample_layer.c, yolo_layer.c, blas.c, activations.c; and for detector test,
image.c resize_image, yolo_layer.c get_yolo_detections / correct_yolo_boxes and box.c
do_nms_sort / diounms_sort), on flat float buffers
and index arithmetic, in float64, and reading the .weights float stream itself. It shares no code
with yolocompress.darknet.model, so agreement between the two is evidence that the model computes what
darknet computes.
"""
import numpy as np

from yolocompress.darknet.cfg import Conv, MaxPool, Route, Shortcut, Upsample, Yolo


def _act(x, name):
    if name == "leaky":
        return np.where(x > 0, x, 0.1 * x)
    if name == "linear":
        return x
    if name == "logistic":
        return 1.0 / (1.0 + np.exp(-x))
    if name == "relu":
        return np.maximum(x, 0)
    if name == "swish":
        return x / (1.0 + np.exp(-x))
    if name == "mish":  # darknet: softplus with threshold 20
        sp = np.where(x > 20, x, np.where(x < -20, np.exp(x), np.log1p(np.exp(np.minimum(x, 20)))))
        return x * np.tanh(sp)
    raise ValueError(name)


class _Stream:
    def __init__(self, data: bytes):
        major, minor, _ = np.frombuffer(data[:12], "<i4")
        off = 12 + (8 if major * 10 + minor >= 2 else 4)
        self.f = np.frombuffer(data[off:], "<f4").astype(np.float64)
        self.pos = 0

    def take(self, n):
        self.pos += n
        assert self.pos <= len(self.f), "weights file too short"
        return self.f[self.pos - n:self.pos]


def _conv(x, b: Conv, s: _Stream):
    c, h, w = x.shape
    n, k, st, pad, g = b.filters, b.size, b.stride, b.pad_px, b.groups
    biases = s.take(n)
    if b.batch_normalize:
        scales, mean, var = s.take(n), s.take(n), s.take(n)
    weights = s.take(n * (c // g) * k * k).reshape(n, c // g, k, k)
    oh, ow = (h + 2 * pad - k) // st + 1, (w + 2 * pad - k) // st + 1
    xp = np.zeros((c, h + 2 * pad, w + 2 * pad))
    xp[:, pad:pad + h, pad:pad + w] = x
    out = np.zeros((n, oh, ow))
    for gi in range(g):  # im2col + gemm, one group at a time
        xs = xp[gi * c // g:(gi + 1) * c // g]
        ws = weights[gi * n // g:(gi + 1) * n // g]
        for ky in range(k):
            for kx in range(k):
                patch = xs[:, ky:ky + st * (oh - 1) + 1:st, kx:kx + st * (ow - 1) + 1:st]
                out[gi * n // g:(gi + 1) * n // g] += np.einsum("oc,chw->ohw", ws[:, :, ky, kx], patch)
    if b.batch_normalize:  # normalize_cpu, scale_bias, add_bias
        out = (out - mean[:, None, None]) / np.sqrt(var[:, None, None] + .00001)
        out = out * scales[:, None, None]
    out = out + biases[:, None, None]
    return _act(out, b.activation)


def _maxpool(x, b: MaxPool):
    c, h, w = x.shape
    oh, ow = (h + b.padding - b.size) // b.stride + 1, (w + b.padding - b.size) // b.stride + 1
    off = -(b.padding // 2)
    out = np.full((c, oh, ow), -np.finfo(np.float32).max)
    for i in range(oh):
        for j in range(ow):
            for n in range(b.size):
                for m in range(b.size):
                    ch, cw = off + i * b.stride + n, off + j * b.stride + m
                    if 0 <= ch < h and 0 <= cw < w:
                        out[:, i, j] = np.maximum(out[:, i, j], x[:, ch, cw])
    return out


def _route(b: Route, i, outs):
    parts = []
    for v in b.layers:
        src = outs[i + v if v < 0 else v]
        flat = src.reshape(-1)
        part = flat.size // b.groups
        parts.append(flat[part * b.group_id: part * (b.group_id + 1)])
    h, w = outs[i + b.layers[0] if b.layers[0] < 0 else b.layers[0]].shape[1:]
    return np.concatenate(parts).reshape(-1, h, w)


def _yolo(x, b: Yolo, netw, neth):
    c, lh, lw = x.shape
    nc = b.classes
    out = x.reshape(len(b.mask), 5 + nc, lh, lw).copy()
    logistic = lambda v: 1.0 / (1.0 + np.exp(-v))  # noqa: E731
    out[:, 0:2] = logistic(out[:, 0:2])
    out[:, 4:] = logistic(out[:, 4:])
    out[:, 0:2] = out[:, 0:2] * b.scale_x_y - 0.5 * (b.scale_x_y - 1)
    rows = []
    for n in range(len(b.mask)):
        aw, ah = b.anchors[b.mask[n]]
        for i in range(lh):
            for j in range(lw):
                bx = (j + out[n, 0, i, j]) / lw          # get_yolo_box, normalised
                by = (i + out[n, 1, i, j]) / lh
                bw = np.exp(out[n, 2, i, j]) * aw / netw
                bh = np.exp(out[n, 3, i, j]) * ah / neth
                rows.append([bx * netw, by * neth, bw * netw, bh * neth, *out[n, 4:, i, j]])
    return np.array(rows)


def darknet_forward(blocks, weights: bytes, image: np.ndarray) -> np.ndarray:
    """image (C, H, W) -> (N, 5+C) rows of every [yolo] head: x, y, w, h (px), objectness, classes."""
    return np.concatenate(darknet_heads(blocks, weights, image))


def darknet_heads(blocks, weights: bytes, image: np.ndarray) -> list:
    """image (C, H, W) -> per [yolo] head (A*H*W, 5+C) rows, ordered (anchor, y, x)."""
    s = _Stream(weights)
    x = image.astype(np.float64)
    neth, netw = x.shape[1:]
    outs, dets = [], []
    for i, b in enumerate(blocks[1:]):
        if isinstance(b, Conv):
            x = _conv(x, b, s)
        elif isinstance(b, MaxPool):
            x = _maxpool(x, b)
        elif isinstance(b, Route):
            x = _route(b, i, outs)
        elif isinstance(b, Shortcut):
            x = _act(x + outs[i + b.from_ if b.from_ < 0 else b.from_], b.activation)
        elif isinstance(b, Upsample):
            x = x.repeat(b.stride, axis=1).repeat(b.stride, axis=2)
        elif isinstance(b, Yolo):
            dets.append(_yolo(x, b, netw, neth))
        outs.append(x)
    assert s.pos == len(s.f), f"weights file has {len(s.f) - s.pos} unused floats"
    return dets


# ----------------------------------------------------------------------------- detector test

def resize_image(im: np.ndarray, w: int, h: int) -> np.ndarray:
    """image.c resize_image, loop for loop, in float32 scalars: (C, H, W) -> (C, h, w)."""
    f = np.float32
    chans, H, W = im.shape
    if W == w and H == h:
        return im.copy()
    part = np.zeros((chans, H, w), np.float32)
    resized = np.zeros((chans, h, w), np.float32)
    w_scale = f(W - 1) / f(w - 1)
    h_scale = f(H - 1) / f(h - 1)
    for k in range(chans):
        for r in range(H):
            for c in range(w):
                if c == w - 1 or W == 1:
                    val = im[k, r, W - 1]
                else:
                    sx = f(c) * w_scale
                    ix = int(sx)
                    dx = sx - f(ix)
                    val = (f(1) - dx) * im[k, r, ix] + dx * im[k, r, ix + 1]
                part[k, r, c] = val
    for k in range(chans):
        for r in range(h):
            sy = f(r) * h_scale
            iy = int(sy)
            dy = sy - f(iy)
            for c in range(w):
                resized[k, r, c] = (f(1) - dy) * part[k, iy, c]
            if r == h - 1 or H == 1:
                continue
            for c in range(w):
                resized[k, r, c] += dy * part[k, iy + 1, c]
    return resized


def get_network_boxes(heads: list, grids: list, netw: int, neth: int, thresh: float) -> list:
    """get_yolo_detections + correct_yolo_boxes (letter = 0, relative = 1) over every head.

    heads: per head (A*lh*lw, 5+C) rows as darknet_heads gives them; grids: per head (A, lh, lw).
    -> dets: dicts with bbox (x, y, w, h relative to the image), objectness, prob (C,) list.
    """
    dets = []
    for rows, (a, lh, lw) in zip(heads, grids):
        rows = rows.reshape(a, lh * lw, -1)
        for i in range(lh * lw):          # cell outer, anchor inner, as darknet
            for n in range(a):
                obj = rows[n, i, 4]
                if obj > thresh:
                    x, y, w, h = rows[n, i, :4] / np.array([netw, neth, netw, neth])
                    prob = [obj * p if obj * p > thresh else 0.0 for p in rows[n, i, 5:]]
                    dets.append({"bbox": (x, y, w, h), "objectness": obj, "prob": prob})
    return dets  # correct_yolo_boxes with letter = 0: new_w = netw, so relative boxes are unchanged


def _overlap(x1, w1, x2, w2):
    return min(x1 + w1 / 2, x2 + w2 / 2) - max(x1 - w1 / 2, x2 - w2 / 2)


def box_iou(a, b):
    w, h = _overlap(a[0], a[2], b[0], b[2]), _overlap(a[1], a[3], b[1], b[3])
    inter = 0.0 if w < 0 or h < 0 else w * h
    return inter / (a[2] * a[3] + b[2] * b[3] - inter)


def box_diou(a, b, exponent):
    """box_diou (exponent 0.6) / box_diounms (exponent beta1)."""
    top, bot = min(a[1] - a[3] / 2, b[1] - b[3] / 2), max(a[1] + a[3] / 2, b[1] + b[3] / 2)
    left, right = min(a[0] - a[2] / 2, b[0] - b[2] / 2), max(a[0] + a[2] / 2, b[0] + b[2] / 2)
    c = (right - left) ** 2 + (bot - top) ** 2
    iou = box_iou(a, b)
    if c == 0:
        return iou
    d = (a[0] - b[0]) ** 2 + (a[1] - b[1]) ** 2
    return iou - (d / c) ** exponent


def do_nms_sort(dets: list, classes: int, thresh: float, kind: str = "default", beta: float = 0.6) -> float:
    """do_nms_sort (kind default) / diounms_sort (greedynms, diounms), in place on dets' prob.

    Returns the smallest |overlap - thresh| met by a decision, so a test can check that float
    rounding cannot have flipped any decision.
    """
    margin = np.inf
    for k in range(classes):
        order = sorted(range(len(dets)), key=lambda i: -dets[i]["prob"][k])
        for pos, i in enumerate(order):
            if dets[i]["prob"][k] == 0:
                continue
            for j in order[pos + 1:]:
                if dets[j]["prob"][k] == 0:   # zero either way: the decision changes nothing
                    continue
                a, b = dets[i]["bbox"], dets[j]["bbox"]
                v = box_iou(a, b) if kind == "default" else box_diou(a, b, 0.6 if kind == "greedynms" else beta)
                margin = min(margin, abs(v - thresh))
                if v > thresh:
                    dets[j]["prob"][k] = 0.0
    return margin


def reported(dets: list, thresh: float) -> list:
    """(class, prob, x, y, w, h) of every (box, class) darknet reports (prob > thresh)."""
    return [(k, p, *d["bbox"]) for d in dets for k, p in enumerate(d["prob"]) if p > thresh]
