#!/usr/bin/env bash
# Lint the project's Python code as `tox -e pep8` does: flake8 with
# OpenStack's hacking checks, configured by tox.ini's [flake8] section
# (which also says what is excluded: the venvs, out/, build output).
#
# flake8 and hacking come from test-requirements.txt in .venv; either one
# missing is an error, not a skip (without hacking flake8 would still pass,
# silently checking less).
#
#   bash tools/lint-python.sh [FLAKE8 ARGUMENT...]  # default: the whole tree
set -euo pipefail
cd "$(dirname "$0")/.."

if [ -d .venv/bin ]; then
    PATH="$PWD/.venv/bin:$PATH"
fi
command -v flake8 > /dev/null \
    || { echo "lint-python: flake8 not found (pip install -r test-requirements.txt)" >&2; exit 1; }
flake8 --version | grep -q 'hacking' \
    || { echo "lint-python: flake8 lacks the hacking plugin (pip install -r test-requirements.txt)" >&2; exit 1; }

flake8 "$@"
echo "lint-python: clean (flake8 with hacking)"
