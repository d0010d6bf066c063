# flchain: two commands on a fresh machine: `make demo` and `make test`.
PY      := .venv/bin/python
PIP     := .venv/bin/pip
STAMP   := .venv/.installed
NPMSTAMP:= node_modules/.installed
VENDOR  := fl_chain/dashboard/static/vendor
LOCK    := requirements.lock
ARTIFACTS := fl_chain/chain/setup/contracts.json

.PHONY: setup browser nginx demo dashboard test lint format docs dist lock artifacts bench bench-robustness \
	bench-attacks bench-install notebooks clean

setup: $(STAMP) $(NPMSTAMP) $(VENDOR)/.copied browser nginx

# The dashboard's chart library, from the pinned npm package into the Python package (no CDN at run time).
$(VENDOR)/.copied: $(NPMSTAMP)
	mkdir -p $(VENDOR)
	cp node_modules/uplot/dist/uPlot.iife.min.js node_modules/uplot/dist/uPlot.min.css $(VENDOR)/
	touch $@

# The browser for the dashboard's tests: Debian's Chromium and ChromeDriver (never a browser download);
# where apt cannot install them (no root), setup goes on and the browser tests are skipped, saying why.
browser:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || \
	  (apt-get install -y -q chromium chromium-driver >/dev/null 2>&1 || \
	   (apt-get update -q >/dev/null 2>&1 && apt-get install -y -q chromium chromium-driver >/dev/null)) || \
	  (echo "make: cannot install Debian's chromium and chromium-driver (needs root and apt);" \
	        "the dashboard's browser tests will be skipped" >&2)

# Debian's nginx: `flchain server --host` on a non-loopback address exposes only Flower's Fleet API through
# it (fl_chain/runners/fleet_proxy.py), as its own process with its own configuration per run.
nginx:
	@command -v nginx >/dev/null || test -x /usr/sbin/nginx || \
	  (apt-get install -y -q nginx >/dev/null 2>&1 || \
	   (apt-get update -q >/dev/null 2>&1 && apt-get install -y -q nginx >/dev/null)) || \
	  (echo "make: cannot install Debian's nginx (needs root and apt); flchain server refuses a" \
	        "non-loopback --host without it" >&2)

# Our own installs come from the lock (exact versions of everything, the dev/demo/dashboard extras
# included); flchain itself goes in editable, without resolving again. Re-installs only when the lock or
# pyproject.toml change (idempotent and quick when done).
$(STAMP): pyproject.toml $(LOCK)
	test -x $(PY) || python3 -m venv .venv
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -r $(LOCK)
	$(PIP) install -q --no-deps --no-build-isolation -e .
	touch $@

# Re-resolve the lock from pyproject.toml's ranges with uv (Flower depends on it), keeping the versions
# already locked unless a range excludes them; pip's own find-links are passed on (CPU torch here).
lock:
	$(PY) -m uv pip compile pyproject.toml --extra demo --extra dashboard --extra s3 --extra dev \
	  --python-version 3.11 --python-platform x86_64-manylinux_2_28 --annotation-style line \
	  --custom-compile-command "make lock" $(patsubst %,--find-links %,$(shell $(PIP) config get global.find-links 2>/dev/null)) \
	  -o $(LOCK)

# The compiled contracts the package ships (deploying needs no compiler); rebuilt when a source changes.
# `make test` does not rebuild them: tests/test_artifacts.py fails if they differ from a compile of contracts/.
artifacts: $(ARTIFACTS)
$(ARTIFACTS): $(wildcard contracts/*.sol contracts/*/*.sol) package-lock.json | $(STAMP) $(NPMSTAMP)
	$(PY) -m fl_chain.chain.setup.compile
	touch $@

# The wheel and sdist a Flower user installs (metadata with ranges and extras), into dist/.
dist: setup artifacts
	rm -rf dist
	$(PY) -m build --no-isolation --outdir dist .
	@ls -l dist

# The documentation site (mkdocs-material), strict: a broken link or reference fails the build.
docs: setup
	NO_MKDOCS_2_WARNING=1 $(PY) -m mkdocs build --strict --site-dir build/site

$(NPMSTAMP): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

demo: setup
	.venv/bin/flchain demo

# The demo with its dashboard open beside it (http://127.0.0.1:8600/); stays up until Ctrl-C.
dashboard: setup
	.venv/bin/flchain demo --dashboard

lint: setup
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .

test: setup lint docs
	.venv/bin/pytest -q

format: setup
	.venv/bin/ruff format .
	.venv/bin/ruff check --fix .

# Executes every notebook in place with its outputs and plots, for readers of the repository
# (about 2 minutes); `make test` executes copies of them and writes nothing back.
notebooks: setup
	$(PY) scripts/execute_notebooks.py

# Measurements outside `make test`; each writes its table to docs/.
bench: setup
	$(PY) bench/gas.py
	$(PY) bench/pow.py
	$(PY) bench/audit.py
	$(PY) bench/verified.py
	$(PY) bench/score_tolerance.py
	$(PY) bench/anchor_calibration.py
	$(PY) bench/scale.py
	$(PY) bench/scale_projection.py

# About 45 minutes on 2 cores: 99 + 15 federated runs (the grid, then its headline cells over 3 seeds).
bench-robustness: setup
	$(PY) bench/robustness.py
	$(PY) bench/robustness_seeds.py

# issue 25's grid (hours: resumable, split it with PART=k/n) and the evidence calibrations (minutes)
bench-attacks: setup
	$(PY) bench/late_calibration.py
	$(PY) bench/evidence_calibration.py
	$(PY) bench/robustness_attacks.py --part $(or $(PART),1/1)

# What a node installs (the core without extras): size on disk and the mod's import time.
bench-install: setup
	$(PY) bench/node_install.py

clean:
	rm -rf build dist .flchain .pytest_cache
