"""The public API: ``import yolocompress as yc`` is cheap, offers the pipeline, and README's
example runs as written (on a tiny generated dataset, one batch per epoch)."""
import re
import subprocess
import sys
from pathlib import Path

import yolocompress as yc
from yolocompress.data.synth import ShapesConfig, make_shapes

ROOT = Path(__file__).resolve().parents[1]


def readme_example() -> str:
    text = (ROOT / "README.md").read_text()
    match = re.search(r"<!-- api-example[^>]*-->\n```python\n(.*?)```", text, re.S)
    assert match, "README.md lost its api-example block"
    return match.group(1)


def test_import_is_lazy_and_names_resolve():
    code = "import sys, yolocompress; print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "False"
    for name in yc.__all__:
        assert getattr(yc, name) is not None, name
    assert yc.__version__


def test_readme_example_runs(tmp_path, monkeypatch):
    make_shapes(tmp_path / "data" / "shapes", ShapesConfig(n_train=4, n_val=2, img_size=64, seed=1),
                workers=1, progress=False)
    code = readme_example()
    quick = code.replace("yc.TrainConfig(epochs=3)", "yc.TrainConfig(epochs=1, max_batches=1, batch_size=2, img_size=64)")
    assert quick != code and len(code.strip().splitlines()) == 6      # the import + five steps
    monkeypatch.chdir(tmp_path)
    exec(compile(quick, "README.md api-example", "exec"), {})
    out = tmp_path / "runs" / "api-pruned"
    assert (out / "pruned.cfg").is_file() and (out / "pruned.weights").is_file()
    assert (tmp_path / "runs" / "api-sparse").is_dir()
