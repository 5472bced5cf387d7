"""README's results block is generated from docs/results.json (``report.readme_block``), so the
table a learner reads cannot drift from the rows ``make results`` measured."""
import json
from pathlib import Path

import pytest

from yolocompress.teach.report import README_END, README_START, readme_block, update_readme

ROOT = Path(__file__).resolve().parents[1]


def test_readme_results_block_matches_results_json():
    rows = ROOT / "docs" / "results.json"
    if not rows.is_file():
        pytest.skip("docs/results.json is written by make results")
    text = (ROOT / "README.md").read_text()
    block = text[text.index(README_START):text.index(README_END) + len(README_END)]
    assert block == readme_block(json.loads(rows.read_text())), "README is stale: rerun make results"


def test_update_readme_replaces_only_the_block(tmp_path):
    rows = [{"name": "baseline", "kind": "baseline", "seed": None, "epochs_total": 3, "params": 2e6, "gflops": 0.2,
             "latency_ms": 9.0, "map50": 0.7, "map": 0.5, "control_of": None, "distill": None},
            {"name": "ctl", "kind": "control-same-epochs", "seed": None, "epochs_total": 5, "params": 2e6,
             "gflops": 0.2, "latency_ms": 9.0, "map50": 0.75, "map": 0.55, "control_of": ["p"], "distill": None},
            {"name": "p", "kind": "pruned", "seed": None, "epochs_total": 5, "params": 2e5, "gflops": 0.03,
             "latency_ms": 4.0, "map50": 0.745, "map": 0.545, "control_of": None, "distill": None}]
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{README_START}\nold\n{README_END}\noutro\n")
    assert update_readme(readme, rows)
    text = readme.read_text()
    assert text.startswith("intro\n") and text.endswith("\noutro\n") and "old" not in text
    assert "**p** has 85% fewer GFLOPs" in text           # the headline: within 1 point of its control
    assert "Unpruned: baseline 0.500 (3 epochs), same-epoch control 0.550 (5 epochs)." in text
    assert not update_readme(tmp_path / "missing.md", rows)


def test_the_readme_table_is_the_cliff_by_budget():
    """One row per ladder line, one column per budget, seeds' std where they ran; a rung a line
    did not run reads "-"."""
    def row(name, gflops, m, strategy="union", seed=None, blocks=0):
        return {"name": name, "kind": "pruned", "seed": seed, "epochs_total": 5, "params": 1e5, "gflops": gflops,
                "target_gflops": gflops, "strategy": strategy, "blocks_dropped": blocks, "importance": "gamma",
                "latency_ms": 1.0, "map50": 0.9, "map": m, "control_of": None, "distill": None}
    rows = [{"name": "baseline", "kind": "baseline", "seed": None, "epochs_total": 3, "params": 2e6, "gflops": 1.0,
             "latency_ms": 9.0, "map50": 0.9, "map": 0.6, "control_of": None, "distill": None},
            {"name": "ctl", "kind": "control-same-epochs", "seed": None, "epochs_total": 5, "params": 2e6,
             "gflops": 1.0, "latency_ms": 9.0, "map50": 0.9, "map": 0.62, "control_of": ["u30", "u5", "s30", "s5", "s5-seed1"],
             "distill": None},
            row("u30", 0.3, 0.61), row("u5", 0.05, 0.50),
            row("s30", 0.3, 0.615, "shared"), row("s5", 0.05, 0.52, "shared", seed=0),
            row("s5-seed1", 0.05, 0.54, "shared", seed=1)]
    block = readme_block(rows)
    assert "| line | 30% | 5% |" in block
    assert "| union | 0.610 | 0.500 |" in block
    assert "| shared | 0.615 | 0.530 +- 0.014 |" in block      # the std of 0.52 and 0.54 (ddof 1)
