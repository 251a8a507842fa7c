#!/usr/bin/env bash
# The whole test suite, from a fresh clone on a fresh Debian machine with
# Python 3.11: creates .venv, installs the project and its test requirements,
# then runs the unit, trainer and functional (real Nova 34) tests.
set -euo pipefail
cd "$(dirname "$0")/.."
. tools/setup-venv.sh

status=0
# Nova must be monkey patched before anything else imports, so the tests
# that run a real Nova get a process of their own.
python -m pytest -q -p no:cacheprovider tests/unit tests/trainer || status=$?
python -m pytest -q -p no:cacheprovider tests/functional || status=$?
exit $status
