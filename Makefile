# Two commands on a fresh machine: `make run` and `make test`. Everything installs into .venv,
# pinned by constraints.txt (torch==2.13.0: an unpinned torch pulls GBs of CUDA wheels).
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-dev

.PHONY: run test lint

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e '.[dev]'
	touch $@

lint: $(STAMP)
	$(PY) -m ruff check server worker tests benchmarks

test: $(STAMP) lint
	$(PY) -m pytest -q
