# Two commands for a newcomer: `make demo` and `make test` (both create .venv on first use).
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
DATA   := data/shapes/data.yaml
export OMP_WAIT_POLICY ?= PASSIVE
export PYTHONDONTWRITEBYTECODE = 1

.PHONY: demo results source test lint unit notebooks notebook-alone data install docs clean help

help:           ## list the targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev,export,notebooks]'
	touch $(STAMP)

install: $(STAMP)  ## create .venv and install the package with its dev extras

$(DATA): | $(STAMP)   # order-only: a reinstall must not regenerate the data
	$(PY) -m yolocompress data make --out data/shapes

data: $(DATA)   ## generate the bundled synthetic dataset (data/shapes)

demo: $(DATA)   ## every stage of the method at small scale, in minutes; its report goes to runs/demo-small/report
	$(PY) -m yolocompress demo --preset small

results: $(DATA)   ## the full reproduction (hours; cached, resumes): rewrites docs/ (results, figures, pack) and README's results
	$(PY) -m yolocompress demo --preset full --out runs/demo --docs docs --readme README.md

source: $(STAMP)   ## retrain the tutorial's pretrained source model (8 classes; ~25 min on 2 cores) -> data/pretrained/
	$(PY) -m yolocompress.teach.source

lint: $(STAMP)  ## ruff (pyproject's [tool.ruff]): syntax errors, unused and undefined names
	$(VENV)/bin/ruff check yolocompress tests benchmarks

unit: $(STAMP)  ## unit tests only
	$(PY) -m pytest -q tests

notebooks: $(DATA)  ## every notebook, in order, under QUICK settings
	YOLOCOMPRESS_QUICK=1 $(PY) -m pytest -q --nbmake -p no:randomly notebooks

# One notebook from the middle of the series, opened on its own the way a Colab badge opens it:
# on a fresh clone there is no data/ and no runs/, and the notebook must make what it needs.
NB_ALONE ?= notebooks/05_channel_prune_shared_mask.ipynb
notebook-alone: $(STAMP)  ## one notebook on its own (on a fresh clone: no data, no earlier runs)
	YOLOCOMPRESS_QUICK=1 $(PY) -m pytest -q --nbmake -p no:randomly $(NB_ALONE)

test: lint unit notebook-alone notebooks  ## lint, unit tests, one notebook alone, then every notebook (QUICK)

clean:          ## remove runs and generated data (keeps .venv)
	rm -rf runs data/shapes
