# Everything a fresh machine needs goes through these targets: `make demo`, `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint typecheck bench gpu-check clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# The main job: a small real study on the offline digits set (resnet, 4 budgets, single/deq/
# weq at k = 2 and 4, 3 seeds), then the EST, a recommendation and an HTML report. About
# 5 minutes on 2 CPU cores; run again, it reuses the finished runs in paramsplit-demo.db.
demo: $(STAMP)
	$(BIN)/paramsplit demo

test: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/mypy
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

typecheck: $(STAMP)
	$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/python benchmarks/planner.py
	$(BIN)/python benchmarks/executors.py --quick
	$(BIN)/python benchmarks/peers.py --quick
	$(BIN)/python benchmarks/store.py
	$(BIN)/python benchmarks/study.py
	$(BIN)/python benchmarks/report.py

# Whenever a GPU is at hand: GPU tests, fused vs loop throughput, the memory count against
# the CUDA allocator and a 2-epoch study, in one table of ratios (under 5 minutes on one
# GPU). Without CUDA it runs a small CPU version and says what it skipped.
gpu-check: $(STAMP)
	$(BIN)/python benchmarks/gpu_check.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
