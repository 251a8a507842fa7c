#!/usr/bin/env bash
# The whole test suite, from a fresh clone on a fresh Debian machine with
# Python 3.11: creates .venv, installs the project and its test requirements,
# then runs the unit, trainer, functional (real Nova 34) and soak tests.
set -euo pipefail
cd "$(dirname "$0")/.."
. tools/setup-venv.sh

# Hypothesis keeps an example database; tests leave nothing in the tree.
HYPOTHESIS_STORAGE_DIRECTORY=$(mktemp -d)
export HYPOTHESIS_STORAGE_DIRECTORY
trap 'rm -rf "$HYPOTHESIS_STORAGE_DIRECTORY"' EXIT

status=0
# Operator documentation (Sphinx, warnings as errors) and reno lint; installs
# doc/requirements.txt into .venv (tests/unit/test_docs.py renders with it).
bash tools/build-docs.sh || status=$?
# flake8 with OpenStack's hacking checks (bashate and ShellCheck run in
# tests/devstack/test_lint.py).
bash tools/lint-python.sh || status=$?
# Nova must be monkey patched before anything else imports, so the tests
# that run a real Nova get a process of their own.
python -m pytest -q -p no:cacheprovider tests/unit tests/trainer tests/devstack || status=$?
python -m pytest -q -p no:cacheprovider tests/functional || status=$?
# 32 threads weighing for SOAK_SECONDS (default 60) while the policy and
# snapshot files are replaced by every method.
python -m pytest -q -p no:cacheprovider tests/soak || status=$?
# Prometheus from Debian's packages (binaries only, no service running) for
# the prometheus source's tests; they skip, saying so, without it.
bash tools/setup-prometheus.sh || status=1
# Real PostgreSQL, Gnocchi and Ceilometer's publisher (from their own venv,
# .venv-telemetry), started by the tests themselves on loopback.
if bash tools/setup-telemetry-venv.sh; then
    python -m pytest -q -p no:cacheprovider tests/telemetry || status=$?
else
    status=1
fi
exit $status
