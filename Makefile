# Everything a fresh machine needs goes through these targets: `make demo`, `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint typecheck bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# Until the demo study exists (issue 5), the demo shows the design space of two questions
# (a 1M-parameter budget for CIFAR ResNets; the study's method on DenseNet-BC-40-12), then
# trains and measures one ensemble on the offline digits set (about a minute on 2 cores).
demo: $(STAMP)
	$(BIN)/paramsplit describe resnet-20
	$(BIN)/paramsplit plan --family resnet --budget 1M --members 2,4,8
	$(BIN)/paramsplit plan --single densenet-bc-40-12 --members 4,6,8
	$(BIN)/paramsplit train --family resnet --budget 50k --design deq --members 4 \
		--dataset digits --epochs 30 --batch-size 64 --label-smoothing 0.1

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
	$(BIN)/python benchmarks/store.py
	$(BIN)/python benchmarks/study.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
