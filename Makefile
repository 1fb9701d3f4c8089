# Two entry points (see README): `make run` installs and runs the workflow, `make test` installs
# and runs the test suite. Both create a virtual environment in .venv the first time.
# Containers (docs/containers.md): `make image` builds the Docker image holly:$(VARIANT) (cuda, or
# VARIANT=cpu), `make sif` converts it into holly.sif, the default `container_image` of
# `snakemake --sdm apptainer`. DOCKER_BUILD_ARGS passes more, e.g. the base or a site's index.
VENV ?= .venv
VARIANT ?= cuda
IMAGE ?= holly
DOCKER_BUILD_ARGS ?=
PYTHON ?= python3
STAMP := $(VENV)/.installed

.PHONY: install run test lint clean image sif

$(STAMP): pyproject.toml requirements/constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --upgrade --quiet pip
	$(VENV)/bin/pip install -c requirements/constraints.txt -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	. $(VENV)/bin/activate && snakemake --cores all

# Every test tier this machine can run, with the time each took (tools/run-tiers);
# `make test TIERS=fast` runs only the fast tier (what plain `pytest` runs).
test: $(STAMP)
	bash tools/system-deps.sh
	. $(VENV)/bin/activate && python tools/run-tiers $(TIERS)

image:
	docker build -t $(IMAGE):$(VARIANT) --build-arg TORCH_VARIANT=$(VARIANT) \
		--build-arg REVISION="$$(git rev-parse HEAD 2>/dev/null || echo unknown)" $(DOCKER_BUILD_ARGS) .

sif:
	apptainer build holly.sif docker-daemon://$(IMAGE):$(VARIANT)

clean:
	rm -rf results logs benchmarks report.html .snakemake
