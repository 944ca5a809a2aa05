# Two entry points for a fresh machine: `make demo` and `make test`.
# Both create ./.venv on first use and install from requirements-lock.txt, the lock
# of every package they install: demo only the server, the others every tool too.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
LOCK := requirements-lock.txt
GROUPS := dev bench compat101 bootstrap
# The project builds with the locked setuptools in the venv: nothing unpinned is fetched.
INSTALL := $(BIN)/pip install --quiet --no-build-isolation -c $(LOCK)

.PHONY: demo test lint bench stress lock test-latest test-lowest

$(BIN)/python:
	$(PY) -m venv $(VENV)

$(VENV)/.bootstrap: $(BIN)/python $(LOCK)
	$(BIN)/pip install --quiet -c $(LOCK) pip setuptools
	touch $@

$(VENV)/.demo: $(VENV)/.bootstrap pyproject.toml
	$(INSTALL) -e '.[server]'
	touch $@

$(VENV)/.dev: $(VENV)/.bootstrap pyproject.toml
	$(INSTALL) -e '.[server,zstd,postgres]' --group dev --group bench
	touch $@

demo: $(VENV)/.demo
	$(BIN)/banyan demo

test: $(VENV)/.dev
	$(BIN)/pytest

lint: $(VENV)/.dev
	$(BIN)/ruff check banyan tests benchmarks stress
	$(BIN)/ruff format --check banyan tests benchmarks stress
	$(BIN)/mypy banyan
	bash tests/typecheck.sh $(BIN)/mypy

bench: $(VENV)/.dev
	$(BIN)/python -m benchmarks.run

stress: $(VENV)/.dev
	$(BIN)/python -m stress.run

# After editing pyproject.toml; LOCK_ARGS=--upgrade moves every pin to the newest release.
lock: $(VENV)/.dev
	$(BIN)/uv pip compile pyproject.toml --all-extras $(addprefix --group ,$(GROUPS)) \
		--universal --python-version 3.10 --custom-compile-command 'make lock' \
		--quiet -o $(LOCK) $(LOCK_ARGS)

# The mutation sample tests our tests with the lock's mutmut (a dev tool, not a dependency):
# it runs in `make test`, not against other versions (where CI set would fail it).
VERSIONS_ARGS = --ignore=tests/mutation

# The suite against the newest release of every dependency, in .venv-latest (mypy too:
# tests/unit/test_readme_types.py type-checks the README's examples).
test-latest:
	rm -rf .venv-latest && $(PY) -m venv .venv-latest
	.venv-latest/bin/pip install --quiet --upgrade pip setuptools
	.venv-latest/bin/pip install --quiet --upgrade --no-build-isolation \
		-e '.[server,zstd,postgres]' --group test --group lint
	.venv-latest/bin/pytest -p no:cacheprovider $(VERSIONS_ARGS) $(ARGS)

# The suite against the lowest version pyproject.toml declares of each direct dependency.
test-lowest: $(VENV)/.dev
	rm -rf .venv-lowest && $(PY) -m venv .venv-lowest
	$(BIN)/uv pip compile pyproject.toml --extra server --extra zstd --extra postgres --group test \
		--group lint --resolution lowest-direct --python .venv-lowest/bin/python --quiet \
		-o .venv-lowest/requirements.txt
	.venv-lowest/bin/pip install --quiet -r .venv-lowest/requirements.txt
	.venv-lowest/bin/pip install --quiet --no-deps --no-build-isolation -e .
	.venv-lowest/bin/pytest -p no:cacheprovider $(VERSIONS_ARGS) $(ARGS)

# Mutation testing of the core modules (mutmut 3.8, one module at a time; ~1 h on 2 cores):
# writes docs/mutation.json. `make mutate MODULES="ring delivery"` runs only those.
.PHONY: mutate
mutate: $(VENV)/.dev
	$(BIN)/python tests/mutation/mutate.py $(MODULES)
