"""Build hook (everything else is in pyproject.toml): the committed results pack of the full run
(docs/results.json, docs/results.md, docs/pack/) goes into the wheel as package data, under
yolocompress/teach/_results/, so a pip install without this repository (Colab's setup cell, a wheel
in an empty folder) still draws the full run's curves and tables beside a QUICK run
(``yolocompress.teach.nb.docs`` finds it there when the working folder has no docs/)."""
import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

PACK = ("results.json", "results.md", "pack")


class BuildPyWithResults(build_py):
    def run(self):
        super().run()
        docs = Path(__file__).resolve().parent / "docs"
        if not (docs / "results.json").is_file():          # a checkout before its first make results
            return
        out = Path(self.build_lib) / "yolocompress" / "teach" / "_results"
        out.mkdir(parents=True, exist_ok=True)
        for name in PACK:
            src = docs / name
            if src.is_dir():
                shutil.copytree(src, out / name, dirs_exist_ok=True)
            elif src.is_file():
                shutil.copy2(src, out / name)


setup(cmdclass={"build_py": BuildPyWithResults})
