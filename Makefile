# Isthmus: `make demo` runs the demo, `make test` runs every check. Both install what they need first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: install test lint unit e2e demo bench-admission bench-api bench-pods bench-port-forward bench-registry bench-xds clean

install: $(STAMP)

$(STAMP): pyproject.toml requirements.lock
	scripts/system-deps.sh
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check -r requirements.lock
	$(BIN)/python -m pip install -q --disable-pip-version-check --no-deps -e .
	$(BIN)/python scripts/xds_stubs.py .stubs
	touch $(STAMP)

lint: install
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports

unit: install
	$(BIN)/pytest -q tests/unit

e2e: install
	$(BIN)/pytest -q tests/e2e

test: lint
	$(BIN)/pytest -q tests

demo: install
	scripts/demo.sh

bench-admission: install
	$(BIN)/python bench/bench_admission.py

bench-api: install
	$(BIN)/python bench/bench_api.py

bench-pods: install
	$(BIN)/python bench/bench_pods.py

bench-port-forward: install
	$(BIN)/python bench/bench_port_forward.py

bench-registry: install
	$(BIN)/python bench/bench_registry.py

bench-xds: install
	$(BIN)/python bench/bench_xds.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
