#!/usr/bin/env bash
# mypy strict over the tests, each directory the way pytest imports it: pytest puts a
# test directory (and tests/) on sys.path, so `fakes`, `prockit`, `serverkit`,
# `serverproc` are top-level modules there, and every directory has its own `conftest`.
# Usage: tests/typecheck.sh [MYPY COMMAND...]   (default: mypy on PATH)
set -euo pipefail
if [ $# -eq 0 ]; then set -- mypy; fi
cd "$(dirname "$0")/.."
for dir in unit process with_server mutation; do
    MYPYPATH=tests:tests/$dir "$@" --explicit-package-bases "tests/$dir"
done
# tests/server is a package (relative imports): checked from tests/ with the top-level files.
MYPYPATH=tests "$@" --explicit-package-bases tests/server tests/*.py
