# leadml — every target is a one-liner over the venv's tools or `python -m leadml`.
.DEFAULT_GOAL := help
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
PY := $(BIN)/python
STAMP := $(VENV)/.installed
DEMO_DIR ?= data/processed/demo

.PHONY: help install demo screenshot test test-fast lint format typecheck bench notebooks browser postgres spark clean

help: ## show this help
	@grep -E '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "}; {printf "  \033[36m%-11s\033[0m %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@test -n "$(PYTHON)" || { echo "need python3.11 (or python3) on PATH"; exit 1; }
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev,spark,sql]'
	touch $(STAMP)

install: $(STAMP) ## create .venv and install leadml editable with dev, spark and sql extras

demo: $(STAMP) ## synth CRM data -> train both models -> score -> report (local MLflow on SQLite)
	$(PY) -m leadml demo --dir $(DEMO_DIR)

screenshot: demo browser ## the README's docs/report.png, taken in Chromium from make demo's report
	$(PY) -m tests.test_report_browser --from $(DEMO_DIR)/report.html docs/report.png

test: $(STAMP) browser postgres ## run the whole test suite (slow, browser, spark and PostgreSQL tests included) and the docstring examples
	$(BIN)/pytest -n 2 --dist loadfile
	$(BIN)/pytest -q --doctest-modules leadml

test-fast: $(STAMP) ## run the tests not marked slow/browser/spark
	$(BIN)/pytest -n 2 --dist loadfile -m "not slow and not browser and not spark"

lint: $(STAMP) ## ruff check + format check + notebooks stripped of outputs
	$(BIN)/ruff check leadml tests benchmarks
	$(BIN)/ruff format --check leadml tests benchmarks
	$(PY) -m leadml._nbcheck notebooks

format: $(STAMP) ## apply ruff fixes and formatting
	$(BIN)/ruff check --fix leadml tests benchmarks
	$(BIN)/ruff format leadml tests benchmarks

typecheck: $(STAMP) ## mypy over the package
	$(BIN)/mypy

bench: $(STAMP) ## run the benchmarks (minutes; prints ratios against in-run baselines)
	$(PY) -m benchmarks.run

notebooks: $(STAMP) ## execute every notebook into a temporary directory
	$(BIN)/pytest tests/test_notebooks.py -p no:xdist

browser: ## install Debian's chromium for the report's browser tests (needs root or sudo)
	@command -v chromium >/dev/null || { SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq chromium >/dev/null; }

postgres: ## install Debian's PostgreSQL server binaries for the database tests (needs root or sudo)
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null || { SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq postgresql >/dev/null; }

clean: ## remove caches and generated artifacts (keeps .venv)
	rm -rf .pytest_cache .mypy_cache .ruff_cache build *.egg-info mlflow.db mlruns mlartifacts
	find . -name __pycache__ -not -path './.venv/*' -prune -exec rm -rf {} +
	find data/raw data/interim data/processed models -mindepth 1 -not -name README.md -exec rm -rf {} + 2>/dev/null || true
