# Two entry points for a fresh machine: `make demo` and `make test`.
# Both create ./.venv with the project and its dev extras on first use.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test lint bench stress

$(BIN)/banyan: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev,bench]'
	touch $@

demo: $(BIN)/banyan
	$(BIN)/banyan demo

test: $(BIN)/banyan
	$(BIN)/pytest

lint: $(BIN)/banyan
	$(BIN)/ruff check banyan tests benchmarks stress
	$(BIN)/ruff format --check banyan tests benchmarks stress
	$(BIN)/mypy banyan
	bash tests/typecheck.sh $(BIN)/mypy

bench: $(BIN)/banyan
	$(BIN)/python -m benchmarks.run

stress: $(BIN)/banyan
	$(BIN)/python -m stress.run

# Mutation testing of the core modules (mutmut 3.8, one module at a time; ~1 h on 2 cores):
# writes docs/mutation.json. `make mutate MODULES="ring delivery"` runs only those.
.PHONY: mutate
mutate: $(BIN)/banyan
	$(BIN)/python tests/mutation/mutate.py $(MODULES)
