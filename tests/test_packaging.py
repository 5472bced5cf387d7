"""The wheel carries the full run's results pack as package data (setup.py), and the notebooks'
``nb.docs`` reads it where the working folder has no docs/ (Colab, a wheel in an empty folder)."""
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from yolocompress.teach import nb

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(not (ROOT / "docs" / "results.json").is_file(), reason="docs/ holds no results pack yet")
def test_the_wheel_carries_the_results_pack(tmp_path):
    """Built without isolation (the venv's setuptools: no download), the wheel holds results.json,
    results.md and every file of docs/pack under yolocompress/teach/_results/."""
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "--no-build-isolation",
                            "-q", "-w", str(tmp_path)], capture_output=True, text=True, cwd=tmp_path)
    assert build.returncode == 0, build.stderr[-2000:]
    wheel = next(tmp_path.glob("yolocompress-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    pack = {f"yolocompress/teach/_results/{p.relative_to(ROOT / 'docs').as_posix()}"
            for p in (ROOT / "docs" / "pack").rglob("*") if p.is_file()}
    assert {"yolocompress/teach/_results/results.json", "yolocompress/teach/_results/results.md"} <= names
    assert pack and pack <= names


def test_docs_falls_back_to_the_installed_pack(tmp_path, monkeypatch):
    """No docs/ in the working folder: the installed copy; docs/ with results.json: docs/ first."""
    installed = tmp_path / "site" / "_results"
    installed.mkdir(parents=True)
    (installed / "results.json").write_text("[]")
    monkeypatch.setattr(nb, "INSTALLED_RESULTS", installed)
    settings = nb.Settings(quick=True, root=tmp_path / "empty", runs=tmp_path / "runs", data=tmp_path / "d.yaml",
                           device=None, seed=0)
    assert nb.docs(settings) == installed
    (tmp_path / "empty" / "docs").mkdir(parents=True)
    (tmp_path / "empty" / "docs" / "results.json").write_text("[]")
    assert nb.docs(settings) == tmp_path / "empty" / "docs"
