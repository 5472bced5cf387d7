# Two commands for a newcomer: `make demo` and `make test` (both create .venv on first use).
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
DATA   := data/shapes/data.yaml
export OMP_WAIT_POLICY ?= PASSIVE
export PYTHONDONTWRITEBYTECODE = 1

.PHONY: demo test unit notebooks data install docs clean help

help:           ## list the targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev,export]'
	touch $(STAMP)

install: $(STAMP)  ## create .venv and install the package with its dev extras

$(DATA): $(STAMP)
	$(PY) -m yolocompress data make --out data/shapes

data: $(DATA)   ## generate the bundled synthetic dataset (data/shapes)

demo: $(DATA)   ## run the whole pipeline on the bundled data; writes docs/results.md and figures
	$(PY) -m yolocompress demo --out runs/demo --docs docs

unit: $(STAMP)  ## unit tests only
	$(PY) -m pytest -q tests

notebooks: $(DATA)  ## every notebook, in order, under QUICK settings
	YOLOCOMPRESS_QUICK=1 $(PY) -m pytest -q --nbmake -p no:randomly notebooks

test: unit notebooks  ## unit tests, then every notebook under QUICK settings

clean:          ## remove runs and generated data (keeps .venv)
	rm -rf runs data/shapes
