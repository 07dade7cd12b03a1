# CoroNetGAN: data -> compress -> export -> quantize -> bench
# `make all` sets up and runs the main job; `make test` runs the tests.
SHELL := /bin/bash
PY ?= .venv/bin/python
export CORONETGAN_DATA_MIRROR ?= $(abspath ../shared/data)
RUN ?=
DTYPE ?= all

.PHONY: all setup test test-fast pipeline compress export bench clean-venv macs

all: setup pipeline

setup: .venv/.installed

.venv/.installed: pyproject.toml
	python3 -m venv .venv
	.venv/bin/pip install --quiet --upgrade pip
	.venv/bin/pip install --quiet -e .
	touch $@

# The whole suite; cases marked `slow` run in their small form (see tests/README.md).
test: setup
	$(PY) -m pytest -q

test-fast: setup
	$(PY) -m pytest -q -m "not slow"

macs: setup
	$(PY) -m compress.macs

compress: setup
	$(PY) -m compress --model cyclegan --dataset horse2zebra --target 0.75 --preset small

pipeline: compress
