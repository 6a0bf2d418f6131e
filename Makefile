# logpipe: `make run` and `make test` work on a fresh clone (the venv is created on first use).
PY ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
CONFIG ?= configs/laptop.toml

.PHONY: venv lock bytecode run test test-slow test-all lint format sample bench bench-scaling bench-parse clean

# Exact versions from the lock file (a Dask cluster's workers must run the driver's versions; docs/remote-and-dask.md,
# "Same versions everywhere"), then the package itself without resolving anything again.
$(STAMP): pyproject.toml requirements-dev.lock
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -r requirements-dev.lock
	$(BIN)/python -m pip install -q --no-deps -e .
	touch $(STAMP)

## regenerate the lock files from pyproject.toml (requirements.lock: what a run needs; -dev: and the tests)
lock: $(STAMP)
	$(BIN)/pip-compile -q --strip-extras --no-emit-index-url --no-emit-find-links -o requirements.lock pyproject.toml
	$(BIN)/pip-compile -q --strip-extras --no-emit-index-url --no-emit-find-links --extra dev -o requirements-dev.lock pyproject.toml

venv: $(STAMP)

# Compiled bytecode for the package, as a regular (non-editable) install has. Without it, a shell with
# PYTHONDONTWRITEBYTECODE=1 (common in containers) compiles every module on every run: ~0.2 CPU-s.
# compileall skips files that are up to date. Then the engine's Numba loops, compiled once into their
# cache (a few seconds on a fresh clone, said when it happens; instant afterwards).
bytecode: $(STAMP)
	$(BIN)/python -m compileall -q pipeline
	$(BIN)/python -c 'from pipeline.formats.compiled import main; main()'

## run the pipeline: make run [CONFIG=configs/server.toml] [ARGS="--set parse.workers=4"]
run: bytecode
	$(BIN)/logpipe run --config $(CONFIG) $(ARGS)

# pytest with bytecode written even where the shell sets PYTHONDONTWRITEBYTECODE=1 (common in containers):
# otherwise pytest rewrites every test module's asserts again on each run (~4 CPU-s in each pytest process)
# and each of the tests' `logpipe` subprocesses compiles the package again (~0.15 CPU-s each).
PYTEST := PYTHONDONTWRITEBYTECODE= $(BIN)/pytest

## lint, then the default test suite (no slow tests), a test module to each of two processes (pytest-xdist):
## much of a test's time is a subprocess starting or waiting, which leaves a core idle
test: lint
	$(PYTEST) -n 2 --dist loadfile

# pytest exits with 5 when nothing is marked slow: that is not a failure
test-slow: $(STAMP)
	$(PYTEST) -m slow; status=$$?; [ $$status -eq 0 ] || [ $$status -eq 5 ]

test-all: lint
	$(PYTEST) -m ""

lint: $(STAMP)
	$(BIN)/ruff check pipeline tests bench
	$(BIN)/ruff format --check pipeline tests bench
	$(BIN)/mypy pipeline tests bench

format: $(STAMP)
	$(BIN)/ruff format pipeline tests bench
	$(BIN)/ruff check --fix pipeline tests bench

## a larger deterministic data set under data/generated (make sample SAMPLE_ARGS="--lines 1000000")
sample: $(STAMP)
	$(BIN)/logpipe sample --output data/generated $(SAMPLE_ARGS)

## the pipeline beside the reference peers (../shared/bench), medians of alternating runs
bench: bytecode
	$(BIN)/python -m bench $(BENCH_ARGS)

bench-scaling: bytecode
	$(BIN)/python -m bench --scaling $(BENCH_ARGS)

## the parse stage alone with 1 and 2 worker processes (bench/parse_scaling.py)
bench-parse: bytecode
	$(BIN)/python -m bench parse $(BENCH_ARGS)

clean:
	rm -rf out .pytest_cache .mypy_cache .ruff_cache
