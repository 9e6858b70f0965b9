# Two-command quickstart: `make train` (set up + train the README's agent), `make test` (set up + test suite).
# Setup is idempotent: the venv is rebuilt only when pyproject.toml changes. Torch is installed first from the
# pinned CPU wheel so no multi-GB CUDA build is pulled on CPU machines (override: make TORCH_SPEC='torch==X').

PYTHON ?= python3.11
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
ALGO ?= dqs
ENV ?= HalfCheetah
TRAIN_ARGS ?=

BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup train test lint clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "$(TORCH_SPEC)"
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

train: setup
	$(BIN)/python train.py --algo $(ALGO) --env $(ENV) $(TRAIN_ARGS)

test: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest

lint: setup
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
