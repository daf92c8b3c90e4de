# Two commands on a fresh machine:  `make demo`  and  `make test`.
# Torch is installed first, pinned here only for this project's own environment (the package
# itself accepts any torch >= 2.2, so users keep their own CUDA build).

VENV    ?= .venv
PY      := $(VENV)/bin/python
ARCH    := $(shell uname -m)
TORCH_x86_64  := torch==2.14.1 torchvision==0.29.1
TORCH_aarch64 := torch==2.9.1 torchvision==0.24.1
TORCH   ?= $(TORCH_$(ARCH))
STAMP   := $(VENV)/.installed

.PHONY: demo test bench lint clean

$(STAMP): pyproject.toml Makefile
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH)
	$(PY) -m pip install -q -e '.[images,audio,models,dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/cbembed demo

test: $(STAMP)
	$(PY) -m pytest -q -p no:cacheprovider

bench: $(STAMP)
	$(PY) bench/bench_pipeline.py

lint: $(STAMP)
	$(VENV)/bin/ruff check connector encoders index_defs tests bench tools

clean:
	rm -rf $(VENV) cbembed-demo.db* cbembed-demo.toml cbembed-demo-images
