# Two entry points (see README): `make run` installs and runs the workflow, `make test` installs
# and runs the test suite (fast, workflow and slow tiers). Both create a virtual environment in
# .venv the first time.
#
#   make run                 # torch for this machine: CUDA build if nvidia-smi sees a GPU, else CPU
#   make run TORCH=cpu       # the CPU wheel of torch 2.13.0 (~200 MB instead of several GB)
#   make run TORCH=cuda      # PyPI's Linux wheel (a CUDA build)
#
# `make run` installs only what the workflow needs; `make test` adds the test tools.
#
# Containers (docs/containers.md): `make image` builds the Docker image holly:$(VARIANT) (cuda, or
# VARIANT=cpu), `make sif` converts it into holly.sif, the default `container_image` of
# `snakemake --sdm apptainer`. DOCKER_BUILD_ARGS passes more, e.g. the base or a site's index.
VENV ?= .venv
VARIANT ?= cuda
IMAGE ?= holly
DOCKER_BUILD_ARGS ?=
PYTHON ?= python3
TORCH ?= auto
TORCH_VERSION := 2.13.0
TORCH_CPU_INDEX ?= https://download.pytorch.org/whl/cpu
PIP = $(VENV)/bin/pip
RUN_STAMP := $(VENV)/.installed-run
TEST_STAMP := $(VENV)/.installed-test

.PHONY: install run test results-table paper-length gpu-wheels lint clean image sif

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade --quiet pip

# torch first, the build chosen by tools/torch-choice.sh; then holly, whose pin (torch==2.13.0,
# requirements/constraints.txt) the installed build already satisfies, so pip keeps it. The CPU
# wheel comes from a local wheel directory (pip's find-links) when there is one, else from
# the PyTorch CPU index.
$(RUN_STAMP): pyproject.toml requirements/constraints.txt | $(VENV)/bin/python
	@choice=$$(sh tools/torch-choice.sh $(TORCH)) || exit 2; \
	echo "make: torch $(TORCH_VERSION), $$choice build (TORCH=$(TORCH); set TORCH=cpu or TORCH=cuda to choose)"; \
	if [ "$$choice" = cpu ]; then \
	  $(PIP) install --quiet --no-deps --no-index "torch==$(TORCH_VERSION)+cpu" 2>/dev/null || \
	  $(PIP) install --no-deps --index-url $(TORCH_CPU_INDEX) "torch==$(TORCH_VERSION)+cpu" || exit 1; \
	fi
	$(PIP) install -c requirements/constraints.txt -e .
	touch $@

$(TEST_STAMP): $(RUN_STAMP)
	$(PIP) install -c requirements/constraints.txt -e '.[test]'
	touch $@

install: $(RUN_STAMP)

run: $(RUN_STAMP)
	. $(VENV)/bin/activate && snakemake --cores all

# The README's test command: the fast, workflow and slow tiers, with the time each took
# (tools/run-tiers; ~15 min on 2 cores). `make test TIERS=fast` runs only the fast tier (what
# plain `pytest` runs); `make test TIERS="container gpu"` the rest (.ci/run does both);
# `make test TIERS=all` every tier this machine can run.
test: $(TEST_STAMP)
	bash tools/system-deps.sh
	. $(VENV)/bin/activate && python tools/run-tiers $(TIERS)

# The README's results table: the workflow once per seed, mean ± sd (tools/results-table.py).
SEEDS ?= 0 1 2
results-table: $(RUN_STAMP)
	. $(VENV)/bin/activate && python tools/results-table.py --seeds $(SEEDS)

# The README's paper-length comparison: bunny-baseline's settings and the improved defaults at
# 1.6 M presentations on the built-in tetrapod (hours on a CPU; re-running resumes each run
# exactly from its newest checkpoint; a finished run only rewrites its identical final files),
# then their scores, learning curves and a figure of both.
PAPER_LENGTH ?= results/paper-length
paper-length: $(RUN_STAMP)
	. $(VENV)/bin/activate && for run in tetrapod tetrapod-improved; do \
	  holly train --config config/paper-length-$$run.yaml --out $(PAPER_LENGTH)/$$run --resume auto && \
	  holly evaluate $(PAPER_LENGTH)/$$run --snapshots || exit $$?; \
	done; \
	holly figures $(PAPER_LENGTH)/tetrapod --out $(PAPER_LENGTH) --only learning_curve \
	  --with $(PAPER_LENGTH)/tetrapod-improved

# Wheels that tools/gpu-check.sh installs on a GPU machine that cannot fetch anything (the
# device tool's machines: CPython 3.12, x86-64), named in tools/gpu-wheels.txt, at the versions
# of requirements/lock-cpu.txt. Carry .gpu-wheels with the working tree.
GPU_WHEELS := $(shell grep -v '^\#' tools/gpu-wheels.txt)
gpu-wheels: | $(VENV)/bin/python
	$(PIP) download --quiet --dest .gpu-wheels --no-deps --only-binary=:all: \
	  --implementation cp --python-version 3.12 --platform manylinux_2_28_x86_64 \
	  --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
	  $$(for p in $(GPU_WHEELS); do grep -i "^$$p==" requirements/lock-cpu.txt | cut -d' ' -f1; done)
	@ls .gpu-wheels && du -sh .gpu-wheels

image:
	docker build -t $(IMAGE):$(VARIANT) --build-arg TORCH_VARIANT=$(VARIANT) \
		--build-arg REVISION="$$(git rev-parse HEAD 2>/dev/null || echo unknown)" $(DOCKER_BUILD_ARGS) .

sif:
	apptainer build holly.sif docker-daemon://$(IMAGE):$(VARIANT)

clean:
	rm -rf results logs benchmarks report.html .snakemake
