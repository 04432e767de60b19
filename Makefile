# `make demo` and `make test` work on a fresh machine: each sets up .venv first.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DATA_DIR ?= $(abspath ../shared/data)
export DGM_DATA_DIR ?= $(DATA_DIR)

.PHONY: install demo test lint format bench clean peers

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[dev]'
	@touch $(STAMP)

# The main job on embedded data: train the independent baseline on binarised 8x8 digits by gradient
# descent, report test NLL (nats, bits/dim), write samples.png, metrics.csv, curves.png.
demo: $(STAMP)
	@rm -rf runs/demo
	$(BIN)/dgm train independent --data digits-binary --method gradient --epochs 30 --lr 0.05 \
		--batch-size 64 --out runs/demo
	$(BIN)/dgm eval runs/demo --split test
	$(BIN)/dgm sample runs/demo -n 100 --out runs/demo/samples.png
	@echo "--- the same model by its closed-form maximum-likelihood fit, for comparison:"
	@rm -rf runs/demo-closed-form
	$(BIN)/dgm train independent --data digits-binary --out runs/demo-closed-form --no-progress

test: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

format: $(STAMP)
	$(BIN)/ruff format src tests benchmarks
	$(BIN)/ruff check --fix src tests benchmarks

bench: $(STAMP)
	$(BIN)/python -m benchmarks.foundation

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache

# The peer libraries (nflows, zuko) for the flow benchmarks, in their own environment: never dgm's
# dependencies. Then: python -m benchmarks.flows_toy --peers .peers/bin/python
peers:
	$(PYTHON) -m venv .peers
	.peers/bin/pip install --quiet --disable-pip-version-check -c constraints.txt torch
	.peers/bin/pip install --quiet --disable-pip-version-check -c constraints.txt -r benchmarks/peers/requirements.txt
