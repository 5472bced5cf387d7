"""The latency budget (deploy/latency_model.py, ``prune --target-latency``): a plan's features are
those of the compact model it builds, the fit recovers a latency law exactly when the timings
follow one, and the budget search lands on a plan predicted within the budget. Timings are
synthetic here (a runtime whose 'latency' is a known function of the model), so the tests do not
depend on this machine's speed; how close the real fit lands is a benchmark (closing note)."""
import numpy as np
import pytest

from yolocompress.cli.main import main
from yolocompress.compress.graph import build_graph
from yolocompress.compress.plan import PruneConfig, make_plan
from yolocompress.compress.surgery import apply_plan
from yolocompress.darknet.cfg import infer_shapes
from yolocompress.darknet.loader import load_model
from yolocompress.darknet.weights import randomize, save_pt
from yolocompress.deploy import footprint, latency_model as lm

LAW = np.array([0.7, 0.013, 21.0, 3.5])          # ms: constant, per layer, per GFLOP, per M elements


def _truth(model, img_size: int) -> np.ndarray:
    """The features of a built model, counted on the model itself (not the plan)."""
    layers = model.blocks[1:]
    shapes = infer_shapes(model.blocks, img_size, img_size)
    return np.array([1.0, len(layers), footprint.gflops(model, img_size), sum(c * h * w for c, h, w in shapes) / 1e6])


class _Timed:
    def __init__(self, ms):
        self.ms = ms

    def __call__(self):
        return None


@pytest.fixture
def synthetic(monkeypatch):
    """A runtime whose latency is LAW . features of the model it runs, and a timer that reports it."""
    runtime = lm.Runtime("synthetic", lambda model, x, tmp, threads: _Timed(float(_truth(model, x.shape[-1]) @ LAW)))
    lm.RUNTIMES.register(runtime)
    monkeypatch.setattr(footprint, "time_interleaved",
                        lambda runners, runs, *a, **k: {n: [r.ms] * runs for n, r in runners.items()})
    yield runtime.name
    lm.RUNTIMES.unregister(runtime.name)


def _model():
    return randomize(load_model("teach"), seed=0, small_gamma=0.8).eval()


@pytest.mark.parametrize("ratio, blocks", [(0.0, 0), (0.5, 0), (0.7, 8), (0.0, 16)])
def test_plan_features_are_the_compact_models(ratio, blocks):
    model = _model()
    config = PruneConfig(strategy="union", ratio=ratio, drop_blocks=blocks, img_size=128)
    graph = build_graph(model.blocks, config.protect)
    plan = make_plan(model, config, graph)
    cost = lm.LatencyModel(graph, 128)
    got, want = cost.features(plan), _truth(apply_plan(model, plan, graph), 128)
    assert got[1] == want[1] and got[3] == pytest.approx(want[3], rel=1e-12)
    assert got[2] == pytest.approx(want[2], rel=1e-9)      # conv GFLOPs counted two ways, exact up to float sums


def test_fit_recovers_the_law_and_the_budget_lands_under_it(synthetic):
    model = _model()
    config = PruneConfig(strategy="union", drop_blocks=8, img_size=128)
    fit = lm.fit_latency_model(model, config, runtime=synthetic, runs=3)
    assert fit.max_error < 1e-9                            # exact timings: exact fit (least squares, no noise)
    np.testing.assert_allclose(fit.model.coef, LAW, rtol=1e-6)
    full = fit.model.measure()
    target = 0.5 * full
    plan = make_plan(model, PruneConfig(strategy="union", drop_blocks=8, img_size=128, budget=f"{target}ms"),
                     cost=fit.model)
    assert plan.target_ms == pytest.approx(target) and plan.target_gflops is None
    assert fit.model.measure(plan) <= target
    compact = apply_plan(model, plan)
    assert float(_truth(compact, 128) @ LAW) == pytest.approx(fit.model.measure(plan), rel=1e-9)
    assert "latency budget" in plan.describe() and "target_ms" in plan.to_dict()
    assert "target_ms" not in make_plan(model, PruneConfig(strategy="union", ratio=0.5)).to_dict()


def test_prune_target_latency_reports_predicted_and_measured(tmp_path, capsys, synthetic):
    save_pt(_model(), tmp_path / "m.pt")
    assert main(["prune", "--weights", str(tmp_path / "m.pt"), "--strategy", "union", "--drop-blocks", "8",
                 "--target-latency", "6", "--latency-runtime", synthetic, "--out", str(tmp_path / "p")]) == 0
    out = capsys.readouterr().out
    assert "latency model (synthetic, 128 px)" in out and "latency budget 6 ms: predicted" in out
    assert '"target_ms": 6.0' in (tmp_path / "p" / "plan.json").read_text()


def test_budget_and_target_latency_together_is_one_line(tmp_path, capsys):
    save_pt(_model(), tmp_path / "m.pt")
    assert main(["prune", "--weights", str(tmp_path / "m.pt"), "--strategy", "union", "--budget", "20%",
                 "--target-latency", "6", "--out", str(tmp_path / "p")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "not both" in err and len(err.splitlines()) == 1
