# One entry point for everything: `make demo` runs the local demo, `make test` the whole suite.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
export RECONCILER_CACHE ?= $(HOME)/.cache/reconciler-testbed

.PHONY: help venv testbed-binaries bench-binaries lint typecheck test test-unit demo testbed testbed-down bench clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-18s %s\n", $$1, $$2}'

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

venv: $(BIN)/.installed  ## create .venv with the package and its dev tools

testbed-binaries:  ## build etcd, the Kubernetes control plane, kwok, kubectl, helm 3 and 4, the registry (cached by version)
	@bash testbed/build.sh

bench-binaries: testbed-binaries  ## build helmfile, the benchmarks' peer (cached by version; not needed by `make test`)
	bash testbed/build.sh helmfile

lint: venv  ## ruff, hadolint
	$(BIN)/ruff check reconciler tests benchmarks testbed
	$(BIN)/ruff format --check reconciler tests benchmarks testbed
	$(BIN)/hadolint Dockerfile

typecheck: venv  ## mypy --strict on the package
	$(BIN)/mypy

test: venv testbed-binaries lint typecheck  ## set up everything and run the whole suite
	$(BIN)/pytest tests

test-unit: venv  ## pure-logic tests only (no testbed)
	$(BIN)/pytest tests/unit

demo: venv testbed-binaries  ## local control plane + example environments, converged and shown
	$(BIN)/python -m testbed.demo

testbed: venv testbed-binaries  ## start the testbed in the background and print what to export
	@$(BIN)/python -m testbed up

testbed-down: venv  ## stop the background testbed
	$(BIN)/python -m testbed down

bench: venv bench-binaries  ## run the benchmarks and print their figures
	$(BIN)/python benchmarks/run.py

clean:  ## remove the virtual environment and caches (not the testbed binaries)
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
