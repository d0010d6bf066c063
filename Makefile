# flchain: two commands on a fresh machine: `make demo` and `make test`.
PY      := .venv/bin/python
PIP     := .venv/bin/pip
STAMP   := .venv/.installed
NPMSTAMP:= node_modules/.installed

.PHONY: setup demo test lint format bench bench-robustness clean

setup: $(STAMP) $(NPMSTAMP)

# Re-install only when the pinned dependency files change (idempotent and quick when done).
$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv .venv
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -e '.[dev]'
	touch $@

$(NPMSTAMP): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

demo: setup
	.venv/bin/flchain demo

lint: setup
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .

test: setup lint
	.venv/bin/pytest -q

format: setup
	.venv/bin/ruff format .
	.venv/bin/ruff check --fix .

# Measurements outside `make test`; each writes its table to docs/.
bench: setup
	$(PY) bench/gas.py
	$(PY) bench/pow.py
	$(PY) bench/audit.py
	$(PY) bench/anchor_calibration.py

# About 45 minutes on 2 cores: 99 + 15 federated runs (the grid, then its headline cells over 3 seeds).
bench-robustness: setup
	$(PY) bench/robustness.py
	$(PY) bench/robustness_seeds.py

clean:
	rm -rf build .flchain .pytest_cache
