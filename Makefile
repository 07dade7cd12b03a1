# CoroNetGAN: data -> compress -> evaluate -> export/quantize -> bench -> release
# `make all` sets up and runs the main job; `make test` runs the tests. See docs/pipeline.md.
#
#   make pipeline                 every stage on RUN (default runs/main); unchanged stages are skipped
#   make compress                 CycleGAN on horse2zebra, 75% of MACs removed, PRESET (auto: paper on CUDA, else small)
#   make evaluate [RUN=dir]       FID/KID of the run (latest finished run under runs/ when RUN is not given)
#   make export DTYPE=fp32|fp16|int8|all [RUN=dir] [SIZE=256] [ORIGINAL=init|runs/baseline|file.pt|none]
#                                 the compressed generator and the original (unpruned) one at SIZE x SIZE
#   make check-photos PHOTOS=dir [RUN=dir]
#                                 the installed export measured on your own photos: the export's gates, both runtimes
#   make bench [DEVICE=sm8450]    both, on the attached phone if any, else the host CPU and the virtual device
#   make release [RUN=dir]        release/<run name>/index.md (+ one HTML file) and everything it links to
#   make gpu-data                 a few MB of the data mirror in gpu_data/ (git-ignored), carried to a GPU machine
#   make gpu-check                the prepared GPU check: CUDA smoke runs, step cost, peak GPU memory (< 8 min)
#   make gpu-profile              the GPU profile: where a step's time goes, eq. 4 formulations, bf16 vs fp32 search
#
# PY=/path/to/python uses that interpreter instead of .venv (and does not set .venv up).
SHELL := /bin/bash
PY ?= .venv/bin/python
export CORONETGAN_DATA_MIRROR ?= $(abspath ../shared/data)
RUN ?=
DTYPE ?= all
DEVICE ?= sm8450
PRESET ?= auto
MODEL ?= cyclegan
DATASET ?= horse2zebra
TARGET ?= 0.75
RELEASE ?= release
SERIAL ?=
# export/bench input size (pixels; 0 = the training size) and the original's weights (docs/pipeline.md)
SIZE ?= 256
ORIGINAL ?= init
# extra flags for bench.pipeline, e.g. PIPELINE_ARGS="--phone never --bench-arg=--runs=20"
PIPELINE_ARGS ?=

# The pipeline's run folder is fixed (runs/main) so that a rerun finds and skips its finished stages.
PIPELINE_RUN := $(or $(RUN),runs/main)
# Single stages after compress work on RUN, else on the newest finished run under runs/ (runs/bench-*/ left out:
# benchmark runs); they take model,
# dataset and target from that run's config.json, so only data/compress/pipeline pass MODEL/DATASET/TARGET.
STAGE_RUN := $(if $(RUN),--run-dir $(RUN),--latest runs)
PIPE = $(PY) -m bench.pipeline --dtype $(DTYPE) --device $(DEVICE) --input-size $(SIZE) --original-weights $(ORIGINAL) \
	--release-dir $(RELEASE) $(if $(SERIAL),--serial $(SERIAL)) $(PIPELINE_ARGS)
WHAT = --model $(MODEL) --dataset $(DATASET) --target $(TARGET) --preset $(PRESET)
# The .venv is set up when it is the interpreter used; PY=... points elsewhere and skips it.
SETUP := $(if $(filter .venv/bin/python,$(PY)),setup)

.PHONY: all setup test test-fast test-slow pipeline data compress evaluate export bench release clean-venv macs \
	check-photos \
	gpu-data gpu-check gpu-profile

all: setup pipeline

setup: .venv/.installed

.venv/.installed: pyproject.toml
	python3 -m venv .venv
	.venv/bin/pip install --quiet --upgrade pip
	.venv/bin/pip install --quiet -e .
	touch $@

# The whole suite (CI): every tier, `slow` and `real_data` cases in their small form, the small pipeline on real
# images included; prints the 15 slowest tests. Tiers: DEVELOPERS.md ("Tests").
# CORONETGAN_EVERY_ROW: every row of docs/errors.md must run here (none may skip for want of privileges).
test: $(SETUP)
	CORONETGAN_EVERY_ROW=1 $(PY) -m pytest -q --durations=15

# The edit loop: unit tests on synthetic inputs only (no data mirror, no training beyond a few steps).
test-fast: $(SETUP)
	$(PY) -m pytest -q -m "not slow and not real_data" --durations=10

# Only the slow and real-data cases (their small forms), e.g. the end-to-end pipeline of tests/test_pipeline.py.
test-slow: $(SETUP)
	$(PY) -m pytest -q -m "slow or real_data" --durations=15

macs: $(SETUP)
	$(PY) -m compress.macs

# Each target runs one stage; its skip-if-unchanged logic lives in bench/pipeline/ (record.py, stages.py).
pipeline: $(SETUP)
	$(PIPE) $(WHAT) all --run-dir $(PIPELINE_RUN)

data: $(SETUP)
	$(PIPE) $(WHAT) data --run-dir $(PIPELINE_RUN)

compress: $(SETUP)
	$(PIPE) $(WHAT) compress --run-dir $(PIPELINE_RUN)

evaluate: $(SETUP)
	$(PIPE) evaluate $(STAGE_RUN)

export: $(SETUP)
	$(PIPE) export $(STAGE_RUN)

bench: $(SETUP)
	$(PIPE) bench $(STAGE_RUN)

# The installed export of RUN (else the newest finished run under runs/) measured on the photos of PHOTOS (folders).
PHOTOS ?=
check-photos: $(SETUP)
	$(if $(PHOTOS),,$(error PHOTOS is empty; expected folders of photos: make check-photos PHOTOS=dir [RUN=dir]))
	$(PY) -m export.check_photos $(or $(RUN),--latest runs) --photos $(PHOTOS)

release: $(SETUP)
	$(PIPE) release $(STAGE_RUN)

clean-venv:
	rm -rf .venv

# The prepared GPU check (issue 18; docs/compress.md, "GPU"): one results folder, GPU_CHECK_OUT. It reads only the
# data subset GPU_DATA, which `make gpu-data` copies from the mirror (name it in the device tool's carry).
# No `setup` prerequisite: a GPU machine brings its own CUDA torch (PY=python).
GPU_DATA ?= gpu_data
GPU_CHECK_OUT ?= runs/gpu-check
GPU_DEVICE ?= cuda

gpu-data: $(GPU_DATA)/cifar10_partial/cifar10_partial.npz

$(GPU_DATA)/cifar10_partial/cifar10_partial.npz:
	$(PY) scripts/gpu_check.py --make-data $(GPU_DATA) --mirror $(CORONETGAN_DATA_MIRROR)

gpu-check: $(GPU_DATA)/cifar10_partial/cifar10_partial.npz
	$(PY) scripts/gpu_check.py --data $(GPU_DATA) --device $(GPU_DEVICE) --out $(GPU_CHECK_OUT)

# Where a step's time goes on the GPU (profiler, eq. 4 formulations) and the search in bf16 against fp32.
gpu-profile: $(GPU_DATA)/cifar10_partial/cifar10_partial.npz
	$(PY) scripts/gpu_check.py --data $(GPU_DATA) --device $(GPU_DEVICE) --out $(GPU_CHECK_OUT)-profile \
		--sections profile,precision
