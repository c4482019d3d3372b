# The two set-up commands of the README:
#   make demo   install into .venv, then run the whole job on a synthetic capture
#   make test   install the test tools (tshark, softflowd... via apt-get when root) and run every test
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test lint format bench bench-quick system-deps clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(VENV)/.test-installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test,bench]'
	touch $(VENV)/.installed $@

demo: $(VENV)/.installed
	$(BIN)/egress demo --dir egress-demo

system-deps:
	sh scripts/install-system-deps.sh

test: system-deps $(VENV)/.test-installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	$(BIN)/python -m pytest -m "not slow"
	$(BIN)/python -m benchmarks run --quick

lint: $(VENV)/.test-installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(VENV)/.test-installed
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: system-deps $(VENV)/.test-installed
	$(BIN)/python -m benchmarks run

bench-quick: $(VENV)/.test-installed
	$(BIN)/python -m benchmarks run --quick

clean:
	rm -rf $(VENV) egress-demo .pytest_cache
