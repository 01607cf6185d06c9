# The two commands of the README. Both create .venv if missing and install torch's CPU build
# *before* the project, so that pip never resolves torch to a multi-GB CUDA build.
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
TORCH := torch==2.13.0

.PHONY: run test test-slow install install-dev bench clean

$(BIN)/python:
	$(PY) -m venv $(VENV) || python3 -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(VENV)/.torch: $(BIN)/python
	$(BIN)/pip install -q $(TORCH)
	touch $@

install: $(VENV)/.torch
	$(BIN)/pip install -q -e .

install-dev: $(VENV)/.torch
	$(BIN)/pip install -q -e '.[dev]'

run: install
	$(BIN)/hydranet train

test: install-dev
	$(BIN)/python -m pytest

test-slow: install-dev
	$(BIN)/python -m pytest -m slow

bench: install
	$(BIN)/python benchmarks/seed_cnn.py

clean:
	rm -rf $(VENV) runs .pytest_cache
