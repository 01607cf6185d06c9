# The two commands of the README. Both create .venv if missing and install torch's CPU build
# *before* the project, so that pip never resolves torch to a multi-GB CUDA build.
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
# Which torch build: on a machine without an NVIDIA GPU, the CPU wheel (torch==…+cpu) from PyTorch's CPU index
# (PyPI's default Linux wheel is the multi-GB CUDA build); where `nvidia-smi` exists, PyPI's default build. When
# the index cannot be reached (a 5-second probe) or lacks the wheel, it falls back to `pip install torch==…`.
# Override: make install TORCH_SPEC=torch==2.13.0 TORCH_INDEX=https://download.pytorch.org/whl/cu126
TORCH_VERSION := 2.13.0
TORCH_INDEX ?= https://download.pytorch.org/whl/cpu
HAS_GPU := $(shell command -v nvidia-smi >/dev/null 2>&1 && echo yes)
TORCH_SPEC ?= $(if $(HAS_GPU),torch==$(TORCH_VERSION),torch==$(TORCH_VERSION)+cpu)
TORCH_FROM := $(if $(HAS_GPU),,--extra-index-url $(TORCH_INDEX))

.PHONY: run test test-slow install install-dev bench clean

$(BIN)/python:
	$(PY) -m venv $(VENV) || python3 -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(VENV)/.torch: $(BIN)/python
	if [ -z "$(HAS_GPU)" ] && ! $(BIN)/python -c "import urllib.request as u; u.urlopen('$(TORCH_INDEX)/', timeout=5)" 2>/dev/null; then \
	  echo "torch: $(TORCH_INDEX) unreachable; installing torch==$(TORCH_VERSION) from the default index"; \
	  $(BIN)/pip install -q torch==$(TORCH_VERSION); \
	else \
	  $(BIN)/pip install -q $(TORCH_FROM) "$(TORCH_SPEC)" || $(BIN)/pip install -q torch==$(TORCH_VERSION); \
	fi
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
