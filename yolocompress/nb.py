"""What every notebook's first cell needs: one call that sets the stage.

``setup()`` finds the project root, reads the QUICK flag (``YOLOCOMPRESS_QUICK=1``, set by
``make test``: small data, few epochs, each notebook within ~2 minutes on 2 CPU cores), seeds
everything, picks the device, prepares the shared run directory (``runs/notebooks``) where each
notebook leaves its artifact for the next, and prints one line about the environment.
"""
from __future__ import annotations

import os
import platform
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

COLAB_REPO = "https://github.com/yolocompress/yolocompress"


def in_colab() -> bool:
    try:
        import google.colab  # noqa: F401
        return True
    except ImportError:
        return False


def project_root(start: Path | None = None) -> Path:
    """The folder holding pyproject.toml above ``start`` (the notebook's folder), else the CWD."""
    here = (start or Path.cwd()).resolve()
    for p in [here, *here.parents]:
        if (p / "pyproject.toml").exists() and (p / "yolocompress").is_dir():
            return p
    return Path.cwd()


@dataclass
class Settings:
    quick: bool             # small, fast settings (CI) instead of the real thing
    root: Path              # project root
    runs: Path              # shared run directory of the notebook series
    data: Path              # the bundled dataset's yaml (generated on first use)
    device: torch.device
    seed: int

    def epochs(self, full: int, quick: int) -> int:
        """Pick an epoch count for the current mode."""
        return quick if self.quick else full


def setup(seed: int = 0, threads: int | None = None) -> Settings:
    """Seed, device, QUICK flag, run directory; prints one line. Call it first in a notebook."""
    quick = os.environ.get("YOLOCOMPRESS_QUICK", "0") not in ("", "0", "false", "False")
    root = project_root()
    runs = root / "runs" / ("notebooks-quick" if quick else "demo")   # full mode shares make demo's results
    runs.mkdir(parents=True, exist_ok=True)
    if threads:
        torch.set_num_threads(threads)
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    s = Settings(quick, root, runs, root / "data" / "shapes" / "data.yaml", device, seed)
    print(f"yolocompress | torch {torch.__version__} | {device} | {torch.get_num_threads()} threads | "
          f"python {platform.python_version()} | QUICK={quick} | runs: {runs}")
    return s
