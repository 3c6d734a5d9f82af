# The two commands of the README: `make demo` (train + evaluate on the bundled data) and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.meddx-installed
export OMP_WAIT_POLICY ?= PASSIVE
export PYTHONDONTWRITEBYTECODE = 1

.PHONY: install demo test test-fast lint bench lock clean chromium reliability

install: $(STAMP)

$(STAMP): requirements.lock pyproject.toml
	@test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.lock
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	@touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/meddx demo

# One pytest worker per core the process may use (pytest-xdist), at most 4 (each holds its own trained fixtures), each
# test file on one worker so its module fixtures are made once. TEST_WORKERS=0: one process.
TEST_WORKERS ?= auto
test: lint chromium
	$(PY) -m pytest -p no:cacheprovider -n $(TEST_WORKERS) --maxprocesses 4 --dist loadfile

# The fast tier (no training, no extra processes), under 2 minutes on 2 cores.
test-fast: lint
	$(PY) -m pytest -p no:cacheprovider -m "not slow"

# ruff: pyflakes, pycodestyle, import order, bugbear, and the formatter's check (pyproject.toml [tool.ruff]).
lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

# The report's browser test drives Debian's chromium (never a downloaded browser).
chromium:
	@command -v chromium >/dev/null 2>&1 || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } \
	  || echo "warning: could not install Debian's chromium; the browser test will be skipped"

bench: $(STAMP)
	$(PY) bench/pneumoniamnist_plain_vs_meddx.py
	$(PY) bench/overhead.py
	$(PY) bench/scaling.py
	$(PY) bench/memory.py   # writes a 6 GB decoded cache in a temporary folder
	$(PY) bench/bootstrap_speed.py
	$(PY) bench/serve.py
	$(PY) bench/serve_batching.py
	$(PY) bench/domain_check.py
	$(PY) bench/transfer.py --seeds 2 --source-epochs 6 --target-epochs 12
	$(PY) bench/plan.py --budget 15   # about 2 hours on 2 cores: every shared image set, planned and fixed
	$(PY) bench/plan_rules.py --seeds 2 --curve 10   # hours on 2 cores: each plan rule against its alternative

lock:
	$(PY) -m pip freeze --exclude-editable | sed '1i # Exact versions of every package meddx was tested with (pip freeze, Python 3.11, x86_64).\n# Regenerate: make lock' > requirements.lock

clean:
	rm -rf $(VENV) runs test-artifacts

reliability: $(STAMP)   # every reliability test (more fuzzing than CI), the load test; writes docs/reliability.md
	$(PY) bench/reliability.py
