"""The plans of ``make results``'s prunes, byte for byte, on a fixed teaching model.

``tests/fixtures/demo_plan_sha256.json`` holds the sha256 of ``plan.json`` (``PrunePlan.save``'s
text) for each prune the demo makes, computed before the house redesign (issue 35) moved and
re-expressed the planning code. A refactor must leave every hash as it is; a change that means to
plan differently (a new tie rule, say) regenerates the fixture with ``python tests/test_plan_golden.py --write``
and says so in its commit. The model is deterministic on any machine: gammas come from numpy's
seeded generator (exact float32 values), and plans only compare and sort them, and count integers.
"""
from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from yolocompress.compress.plan import PruneConfig, make_plan
from yolocompress.darknet.loader import load_model
from yolocompress.teach import pipeline as pl, stages

FIXTURE = Path(__file__).parent / "fixtures" / "demo_plan_sha256.json"
SPEC_KEYS = ("blocks", "importance", "ratio", "strategy", "budget", "suffix")


def sparse_like_model():
    """The teaching model with lognormal |gamma|, half of them scaled by 1e-3 (as after sparse
    training), 10% exactly zero (as strong sparse training leaves them), random signs."""
    torch.manual_seed(0)
    model = load_model("teach", classes=1)
    rng = np.random.default_rng(0)
    for conv in model.conv_layers().values():
        if conv.bn is None:
            continue
        n = conv.bn.weight.numel()
        g = rng.lognormal(-1.0, 1.2, n) * rng.choice([1e-3, 1.0], n, p=[0.5, 0.5])
        g[rng.random(n) < 0.1] = 0.0
        conv.bn.weight.data = torch.tensor(g * rng.choice([-1, 1], n), dtype=torch.float32)
    return model


def spec_key(spec: dict) -> str:
    """The fixture's key of one prune: its arguments, spelled as before the redesign (``budget``
    was then called ``target_gflops``)."""
    d = {k: spec[k] for k in SPEC_KEYS if k in spec}
    d["target_gflops"] = d.pop("budget")
    return json.dumps(d, sort_keys=True)


def demo_specs(pc: pl.PipelineConfig) -> list[dict]:
    """The ``pl.prune`` arguments of every prune stage of the demo's stage list (``stages.demo_stages``)."""
    return [s.kwargs for s in stages.demo_stages(pc) if s.call == "prune"]


def plan_hashes() -> dict[str, str]:
    pc, model, out = pl.PipelineConfig(flops_weighted=True), sparse_like_model(), {}   # every prune make results can make
    for spec in demo_specs(pc):
        config = PruneConfig(strategy=spec["strategy"], ratio=spec["ratio"], min_keep=pc.min_keep,
                             drop_blocks=spec["blocks"], budget=spec["budget"],
                             importance=spec["importance"], img_size=pc.img_size)
        text = json.dumps(make_plan(model, config, source="sparse").to_dict(), indent=1)
        out[spec_key(spec)] = hashlib.sha256(text.encode()).hexdigest()
    return out


def test_the_demo_plans_are_byte_identical_to_the_fixture():
    expected, got = json.loads(FIXTURE.read_text()), plan_hashes()
    assert set(got) <= set(expected), f"prunes the fixture does not know: {sorted(set(got) - set(expected))}"
    changed = [k for k in got if got[k] != expected[k]]
    assert not changed, f"plans changed: {changed}"


if __name__ == "__main__":
    if "--write" not in sys.argv:
        sys.exit(pytest.main([__file__]))
    FIXTURE.write_text(json.dumps(plan_hashes(), indent=1, sort_keys=True))
