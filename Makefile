# Two commands on a fresh machine: `make run` and `make test`. Everything installs into .venv,
# pinned by constraints.txt (torch==2.13.0: an unpinned torch pulls GBs of CUDA wheels).
# `make help` lists every target.
PYTHON    ?= python3
VENV      := .venv
PY        := $(VENV)/bin/python
# Extra pip options, e.g. a CPU-only torch index (see docs/configuration.md, "Installing elsewhere").
PIP_ARGS  ?=
RUN_STAMP := $(VENV)/.installed-run
DEV_STAMP := $(VENV)/.installed-dev
COMPOSE   ?= docker-compose
export MPLCONFIGDIR ?= $(CURDIR)/$(VENV)/mplconfig

.PHONY: help run test lint bench figures compose-check clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

# The runtime (client, API, engine, and pyarrow for `decaylab export --format parquet`); the dev
# install below includes it, so it marks both as done.
$(RUN_STAMP): pyproject.toml constraints.txt | $(VENV)/bin/python
	@echo "Installing decaylab and torch into $(VENV) (the first time downloads several GB; see README.md for the CPU wheels)"
	$(PY) -m pip install --progress-bar on $(PIP_ARGS) -c constraints.txt -e '.[worker,parquet]'
	touch $@

$(DEV_STAMP): pyproject.toml constraints.txt | $(VENV)/bin/python
	@echo "Installing decaylab, torch and the test tools into $(VENV) (the first time downloads several GB)"
	$(PY) -m pip install --progress-bar on $(PIP_ARGS) -c constraints.txt -e '.[dev]'
	touch $(RUN_STAMP) $@

run: $(RUN_STAMP) ## serve the API and one worker (SQLite under ./data); Ctrl-C stops both; the CLI is .venv/bin/decaylab
	$(PY) scripts/run_all.py

# Two test processes (pytest-xdist; more on a larger machine); tests sharing a module fixture
# stay together (tests/conftest.py: pytest_collection_modifyitems).
TEST_PROCESSES ?= auto --maxprocesses 4

test: lint ## ruff, then the whole pytest suite (in parallel: docs/testing.md)
	$(PY) -m pytest -q -n $(TEST_PROCESSES) --dist loadgroup

lint: $(DEV_STAMP) ## ruff check
	$(PY) -m ruff check decaylab server worker tests benchmarks scripts

bench: $(DEV_STAMP) ## quick mode of every benchmarks/*.py (full runs: see docs/benchmarks.md)
	@set -e; for script in $(wildcard benchmarks/*.py); do \
		echo "== $$script"; $(PY) $$script --quick; done

figures: $(DEV_STAMP) ## scripts/make_figures.py (figures of the seed's experiment)
	$(PY) scripts/make_figures.py

compose-check: ## validate every docker-compose file combination (needs docker-compose)
	$(COMPOSE) -f docker-compose.yml -f docker-compose.override.yml config -q
	$(COMPOSE) -f docker-compose.yml -f docker-compose.cpu.yml config -q
	$(COMPOSE) -f docker-compose.yml -f docker-compose.override.yml \
		-f docker-compose.postgres.yml config -q
	$(COMPOSE) -f docker-compose.yml -f docker-compose.cpu.yml \
		-f docker-compose.postgres.yml config -q
	$(COMPOSE) -f docker-compose.yml -f docker-compose.override.yml \
		-f docker-compose.postgres.yml -f docker-compose.minio.yml config -q
	$(COMPOSE) -f docker-compose.yml -f docker-compose.cpu.yml \
		-f docker-compose.postgres.yml -f docker-compose.minio.yml config -q

clean: ## remove .venv and caches (keeps ./data: runs, datasets)
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis build *.egg-info
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
