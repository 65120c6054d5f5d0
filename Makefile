# Two entry points for a newcomer: `make demo` (the main job on embedded defaults)
# and `make test` (the test suite). Both create ./.venv on first use.
#
# TORCH_SPEC picks the torch wheel: on the project's CPU machines torch==2.13.0 is a
# CPU build that lies on disk. With a GPU, use your own CUDA torch, e.g.
#   make TORCH_SPEC='torch' demo        (or pip install -e . into an env that has it)
PY ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
BIN = $(VENV)/bin
DEMO_OUT ?= out/demo

.PHONY: setup demo test lint

$(BIN)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -c "import torch" 2>/dev/null && \
	  $(BIN)/pip install -q -e '.[test]' || \
	  $(BIN)/pip install -q '$(TORCH_SPEC)' -e '.[test]'
	touch $@

setup: $(BIN)/.installed

demo: $(BIN)/.installed
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/vae3d matflow demo --out $(DEMO_OUT) --config-dir $(DEMO_OUT)/.matflow

test: $(BIN)/.installed
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/python -m pytest -q -p no:cacheprovider tests

# ruff (lint + format check, pyproject.toml [tool.ruff]) and mypy on the library
lint: $(BIN)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
