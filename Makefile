# Two entry points (see README): `make run` installs and runs the workflow, `make test` installs
# and runs the test suite. Both create a virtual environment in .venv the first time.
VENV ?= .venv
PYTHON ?= python3
STAMP := $(VENV)/.installed

.PHONY: install run test lint clean

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

clean:
	rm -rf results logs benchmarks report.html .snakemake
