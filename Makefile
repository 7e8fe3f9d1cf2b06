# The project's workflows, in CI order. `make help` lists them.
SHELL := /bin/bash
PYTHON ?= python3.11
# The 3.11 interpreter the venvs are built with: PYTHON when it is 3.11, else one that
# scripts/python311 finds or installs (with uv, fetched from PyPI), or it says why it cannot.
# Worked out once, and only when a recipe that builds a venv runs.
PY = $(eval PY := $$(shell scripts/python311 $(PYTHON)))$(PY)
VENV := .venv
BIN := $(VENV)/bin
LOCK := requirements/lock.txt

.PHONY: help up python venv deps lock lint format test test-unit test-integration test-container check-weights bench bench-pipe bench-venv clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-18s %s\n", $$1, $$2}'

up:  ## docker compose up with the profile this machine can run (GPU if usable, else CPU), checked before any build
	scripts/up

# What `make venv` needs from the machine, checked first so that a missing one is named, not
# buried in pip's output (sagemaker-training compiles a C extension).
VENV_NEEDS := apt-get install -y python3.11 python3.11-venv python3.11-dev gcc

$(BIN)/activate: requirements/dev.in $(LOCK)
	@test -n "$(PY)" || exit 1  # scripts/python311 said why
	@$(PY) -c 'import ensurepip' 2>/dev/null || { echo "make venv: $(PY) has no venv/ensurepip module ($(VENV_NEEDS))"; exit 1; }
	@$(PY) -c 'import os, sys, sysconfig; sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))' || { echo "make venv: the Python headers are missing ($(VENV_NEEDS))"; exit 1; }
	@command -v gcc >/dev/null || { echo "make venv: no C compiler: sagemaker-training builds a C extension ($(VENV_NEEDS))"; exit 1; }
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements/dev.in -c $(LOCK)
	requirements/headless-opencv.sh $(BIN)/pip
	$(BIN)/pip install --quiet --no-deps -e .
	touch $(BIN)/activate

TORCH_VENV := .venv-torch
TORCH_LOCK := requirements/lock-torch.txt

# The PyTorch engine runs in its own environment: GluonCV refuses torch >= 2 and torch's CUDA
# wheels collide with MXNet's on disk. The job's MXNet side starts it as a child process.
$(TORCH_VENV)/bin/activate: requirements/torch.in $(TORCH_LOCK)
	$(PY) -m venv $(TORCH_VENV)
	$(TORCH_VENV)/bin/pip install --quiet --upgrade pip
	$(TORCH_VENV)/bin/pip install --quiet -r requirements/torch.in -c $(TORCH_LOCK)
	touch $(TORCH_VENV)/bin/activate

python:  ## print the Python 3.11 the venvs are built with, installing one with uv if the system has none
	@test -n "$(PY)" && echo "$(PY)"

venv: $(BIN)/activate $(TORCH_VENV)/bin/activate  ## build .venv (MXNet, lock.txt) and .venv-torch (the PyTorch engine, lock-torch.txt)

deps: venv  ## host packages the tests need (nginx, Docker engine, debootstrap, gcc): installs as root, else lists them
	tests/host-deps

lock:  ## re-resolve requirements/*.in into requirements/lock.txt (needs the network)
	rm -rf /tmp/oic-lock && $(PY) -m venv /tmp/oic-lock
	/tmp/oic-lock/bin/pip install --quiet -r requirements/dev.in
	{ head -2 $(LOCK); /tmp/oic-lock/bin/pip freeze --exclude-editable; grep -E '^(mxnet-cu|nvidia-.*-cu1[12]==|onnxruntime-gpu==)' $(LOCK); } > $(LOCK).new
	mv $(LOCK).new $(LOCK)

lint: venv  ## ruff lint + format check
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: venv  ## apply ruff's fixes and formatting
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

test-unit: venv  ## fast tests, no training
	$(BIN)/pytest tests/unit -q

test-integration: venv deps  ## really trains small models on the CPU
	$(BIN)/pytest tests/integration -q

test-container: venv deps  ## builds the CPU and GPU images and runs them (starts a Docker engine if needed)
	$(BIN)/pytest tests/container -q

test: lint deps  ## the whole suite: lint, unit, integration, container, cloud (runs deps first)
	$(BIN)/pytest tests -q

check-weights: venv  ## online machines: download every ImageNet weight file of docs/weights.md, verify, print sha256
	$(BIN)/python -m train.pretrained --check-sources

BENCH_VENV := .venv-bench

$(BENCH_VENV)/bin/activate: requirements/bench.in $(LOCK)
	$(PY) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/pip install --quiet --upgrade pip
	$(BENCH_VENV)/bin/pip install --quiet -r requirements/bench.in -c $(LOCK)
	touch $(BENCH_VENV)/bin/activate

bench-venv: $(BENCH_VENV)/bin/activate  ## .venv-bench: torch + torchvision for the benchmark peers (gluoncv refuses torch>=2)

bench: venv bench-venv  ## trainer benchmarks: loader and ResNet-18 vs ImageIter and torchvision (~5 min), then Pipe vs File mode (~20 min)
	$(BIN)/python benchmarks/bench_train.py --torch-python $(BENCH_VENV)/bin/python
	$(BIN)/python benchmarks/bench_pipe.py

bench-pipe: venv  ## Pipe mode vs File mode on the same im2rec data: input pipeline and real jobs (~20 min)
	$(BIN)/python benchmarks/bench_pipe.py

clean:  ## remove caches (not the venv)
	rm -rf .pytest_cache .ruff_cache
	find . -name __pycache__ -prune -exec rm -rf {} +
