# Two commands do everything on a fresh machine:
#   make run    create .venv, install the locked dependencies, materialize every asset on the shipped sample
#   make test   create .venv, install, run the whole test suite (what CI runs)
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# the lock for the interpreter: requirements.lock's numpy, scipy and scikit-learn need Python 3.11+
LOCK := $(shell $(PYTHON) -c "import sys; print('requirements.lock' if sys.version_info >= (3, 11) else 'requirements-py310.lock')" 2>/dev/null || echo requirements.lock)
export DAGSTER_HOME := $(CURDIR)/.dagster_home
export DAGSTER_DISABLE_TELEMETRY := 1

.PHONY: setup bytecode run dev test test-fast bench bench-metrics clean-warehouse

setup: $(VENV)/.installed

# Our own modules' bytecode, compiled ahead (only what changed): Python caches it by itself, except
# where PYTHONDONTWRITEBYTECODE is set (this build machine), and then every run process compiled
# customer_assets again (N=20 weekly refresh: 19.30/18.20, 17.73/17.49, 18.22/17.99 s without/with).
bytecode: setup
	$(BIN)/python -m compileall -q customer_assets > /dev/null

$(VENV)/.installed: $(LOCK) pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -r $(LOCK)
	$(BIN)/pip install -q --no-deps -e .
	touch $@

run: bytecode
	$(BIN)/dagster asset materialize -m customer_assets --select '*'
	$(BIN)/python -m customer_assets.summary

dev: bytecode
	$(BIN)/dagster dev

test: setup
	$(BIN)/python -m pytest -q

test-fast: setup
	$(BIN)/python -m pytest -q -m "not slow"

bench: bytecode
	$(BIN)/python -m bench.run_pipeline $(BENCH_ARGS)

bench-metrics: setup
	$(BIN)/python -m bench.metric_queries

clean-warehouse:
	rm -rf warehouse/*.duckdb warehouse/*.wal warehouse/models warehouse/reports
