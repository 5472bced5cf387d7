"""Darknet.fuse(): BN folded into the convs gives the unfused model's outputs, on every
architecture; the fused model stays a valid darknet cfg + weights and exports to ONNX. Also the
interleaved latency measurement that times eager, fused and ONNX Runtime side by side."""
import copy
import os
import shutil
import time

import pytest
import torch
from torch import nn

from yolocompress.darknet.cfg import Conv
from yolocompress.deploy.export import export_darknet, reload_matches
from yolocompress.darknet.model import Darknet
from yolocompress.deploy import footprint as profile
from yolocompress.deploy.footprint import OtherLoad, latency, load_warning, time_interleaved
from yolocompress.darknet.weights import randomize
from yolocompress.darknet.loader import load_model

U = 2.0 ** -24  # float32 unit roundoff
ARCHS = ["teach", "yolov3-tiny", "yolov4-tiny", "yolov3", "yolov3-spp", "yolov4"]


def error_bound(model: Darknet, scale: float) -> float:
    """Max |float32 output - exact output| expected for a head of magnitude ``scale``.

    A conv output is a length-K dot product (K = C_in/groups * k * k); its float32 rounding error
    is about sqrt(K) * u relative to the sum of |terms| (Higham & Mary 2019, probabilistic
    bound). BN, activation, shortcut add and the fold's rounding of each weight (<= u/2, the fold
    is computed in float64) add a few u more: we allow 4. ``randomize`` scales weights as
    N(0, 1/K) with BN gains near 1, so activations stay O(1) and relative errors add from layer to
    layer; summing over all conv layers (not only the longest path) over-counts the depth, so
    |y32 - y| <= u * scale * sum_l (sqrt(K_l) + 4) holds with margin. Measured errors (the six
    architectures, 1 and 2 threads) stay below 1/20 of it; a fold with eps 1e-3 instead of 1e-5
    exceeds it 4-100x (test below).
    """
    ks = [m.conv.weight[0].numel() for m in model.conv_layers().values()]
    return U * scale * sum(k ** 0.5 + 4 for k in ks)


def _models(name: str, seed: int = 1):
    """(unfused float32, fused float32, unfused float64 reference), non-trivial BN statistics:
    gamma ~ U(0.5, 1.5), beta ~ N(0, 0.1), running mean ~ N(0, 0.1), running var ~ U(0.5, 1.5)."""
    model = randomize(load_model(name, classes=3), seed=seed).eval()
    return model, copy.deepcopy(model).fuse(), copy.deepcopy(model).double()


def _check_heads(model, fused, ref, x, threads: int):
    torch.set_num_threads(threads)
    with torch.no_grad():
        exact, a, b = ref.heads(x.double()), model.heads(x), fused.heads(x)
    for h_exact, h_unfused, h_fused in zip(exact, a, b):  # each (1, A, H, W, 5 + C)
        scale = float(h_exact.abs().max())
        tol = error_bound(model, scale)
        e_unfused = float((h_unfused.double() - h_exact).abs().max())
        e_fused = float((h_fused.double() - h_exact).abs().max())
        assert e_unfused <= tol, f"float32 model itself off by {e_unfused:.3g} > {tol:.3g}"
        assert e_fused <= tol, f"fused off by {e_fused:.3g} > bound {tol:.3g} (unfused: {e_unfused:.3g})"
        assert float((h_fused - h_unfused).abs().max()) <= 2 * tol


@pytest.mark.parametrize("name", ARCHS)
def test_fused_equals_unfused(name):
    """Raw heads of the fused model equal the unfused ones within float32 error, 1 and 2 threads."""
    model, fused, ref = _models(name)
    x = torch.rand(1, 3, 64, 96, generator=torch.Generator().manual_seed(0))  # (1, 3, H, W), non-square
    before = torch.get_num_threads()
    try:
        for threads in (1, 2):
            _check_heads(model, fused, ref, x, threads)
    finally:
        torch.set_num_threads(before)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in fused.modules())
    assert sum(isinstance(m, nn.BatchNorm2d) for m in model.modules()) == len(
        [b for b in model.layers if isinstance(b, Conv) and b.batch_normalize])


def test_tolerance_sees_a_wrong_fold():
    """The bound is tight enough to catch a fold with the wrong epsilon (1e-3 instead of 1e-5)."""
    model, _, ref = _models("teach")
    wrong = copy.deepcopy(model)
    for m in wrong.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.eps = 1e-3
    wrong.fuse()
    x = torch.rand(1, 3, 64, 96, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        exact, bad = ref.heads(x.double()), wrong.heads(x)
    errors = [float((b.double() - e).abs().max()) / error_bound(model, float(e.abs().max()))
              for e, b in zip(exact, bad)]
    assert max(errors) > 1.0


def _box_tolerance(model: Darknet, out: torch.Tensor) -> float:
    """Tolerance for decoded (B, N, 5 + C) outputs of a model whose raw logits are below 1 in
    magnitude (teach's heads are ~0.45, see the test above), so each logit is within
    error_bound(model, 1) of exact. A logit error d moves cx, cy by <= d * stride / 4 (sigmoid'
    <= 1/4), w, h by ~ d * w (exp) and scores by <= d / 4: all <= d * max|box value|."""
    return error_bound(model, 1.0) * float(out[..., :4].abs().max())


def test_decoded_boxes_match():
    model, fused, _ = _models("teach", seed=2)
    x = torch.rand(2, 3, 96, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        a, b = model(x), fused(x)  # (2, N, 5 + C): boxes in pixels, sigmoid scores
    assert a.shape == b.shape == (2, 3 * (2 * 3 + 4 * 6 + 8 * 12), 5 + 3)
    # both within the tolerance of exact, so within twice of each other
    torch.testing.assert_close(b, a, rtol=0, atol=2 * _box_tolerance(model, a))


def test_fuse_contract():
    """Eval only, in place, returns the model, idempotent, and the cfg says what the module is."""
    model = randomize(load_model("teach"), seed=0)
    with pytest.raises(RuntimeError, match="eval mode"):
        model.train().fuse()
    model.eval()
    assert model.fuse() is model
    state = {k: v.clone() for k, v in model.state_dict().items()}
    model.fuse()
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())
    convs = [b for b in model.layers if isinstance(b, Conv)]
    assert convs and all(b.batch_normalize == 0 for b in convs)
    assert all(m.conv.bias is not None and m.bn is None for m in model.conv_layers().values())
    assert "batch_normalize=1" not in model.cfg_text()
    assert not model.training and not any(m.training for m in model.modules())


def test_fused_model_saves_as_darknet(tmp_path):
    """cfg (batch_normalize=0) + .weights (bias, weights per conv) written and reloaded agree."""
    _, fused, _ = _models("yolov4-tiny")
    paths = export_darknet(fused, tmp_path, "fused")
    reload_matches(fused, paths["cfg"], paths["weights"], img_size=64, atol=1e-6)  # raises if not
    weights = [m.conv.weight for m in fused.conv_layers().values()]
    header = 20  # int32 major, minor, revision + uint64 seen
    assert paths["weights"].stat().st_size == header + 4 * sum(w.numel() + w.shape[0] for w in weights)


def test_fused_onnx_matches(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    from yolocompress.deploy.export import export_onnx
    model, fused, _ = _models("teach")
    path = export_onnx(model, tmp_path / "m.onnx", img_size=64)
    assert any(isinstance(m, nn.BatchNorm2d) for m in model.modules())  # export fused a copy
    x = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(3))
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = torch.from_numpy(sess.run(None, {"images": x.numpy()})[0])
    with torch.no_grad():
        want = fused(x)  # (1, N, 5 + C)
    # same float32 weights, different kernels: each within tolerance of exact
    torch.testing.assert_close(got, want, rtol=0, atol=2 * _box_tolerance(model, want))


def test_compiled_inference_matches():
    """torch.compile with frozen weights (export.compile_inference): other kernels on the same
    float32 weights, so, like ONNX Runtime above, within twice the tolerance of the fused model."""
    if shutil.which(os.environ.get("CXX", "g++")) is None and shutil.which("c++") is None:
        pytest.skip("torch.compile on the CPU needs a C++ compiler (g++ or c++ on PATH)")
    from yolocompress.deploy.export import compile_inference
    model, fused, _ = _models("teach")
    compiled = compile_inference(model, img_size=64)
    assert any(isinstance(m, nn.BatchNorm2d) for m in model.modules())  # the model is left alone
    x = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        got, want = compiled(x), fused(x)  # (1, N, 5 + C)
    torch.testing.assert_close(got, want, rtol=0, atol=2 * _box_tolerance(model, want))


# ----------------------------------------------------------------------------- latency measurement

def test_time_interleaved_rotates_and_counts():
    order = []
    runners = {n: (lambda n=n: order.append(n)) for n in "abc"}
    times = time_interleaved(runners, runs=4, warmup=2, threads=1)
    assert {k: len(v) for k, v in times.items()} == {"a": 4, "b": 4, "c": 4}
    assert order[:9] == list("abcbcacab")  # round k starts at runner k mod 3


def test_time_interleaved_measures_wall_time():
    times = time_interleaved({"sleep": lambda: time.sleep(0.005)}, runs=3, warmup=0)
    assert all(4.9 <= t < 500 for t in times["sleep"])  # perf_counter ms; sleep never returns early


def test_load_warning():
    cond = {"load_1m": 1.5, "cores": 2}
    assert "1.50 on 2 cores" in load_warning(cond)
    assert load_warning({"load_1m": 0.9, "cores": 2}) is None


def test_latency_fused_leaves_model_alone():
    model = randomize(load_model("teach"), seed=0).train()
    r = latency(model, img_size=64, runs=3, warmup=1, threads=1, fuse=True)
    assert r["ms"] > 0 and r["threads"] == 1 and r["runs"] == 3 and r["p90_ms"] >= r["ms"]
    assert model.training and any(isinstance(m, nn.BatchNorm2d) for m in model.modules())


def test_other_load_subtracts_own_cpu(monkeypatch):
    """others = (machine busy seconds - own CPU seconds) / wall seconds, from fake counters."""
    busy, own, clock = iter([100.0, 103.5]), iter([10.0, 12.0]), iter([50.0, 52.0])
    monkeypatch.setattr(profile, "_machine_busy_s", lambda: next(busy))
    monkeypatch.setattr(profile, "_own_cpu_s", lambda: next(own))
    monkeypatch.setattr(profile.time, "perf_counter", lambda: next(clock))
    with OtherLoad() as o:
        pass
    assert o.cores == pytest.approx((3.5 - 2.0) / 2.0)
