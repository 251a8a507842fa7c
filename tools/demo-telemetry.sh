#!/bin/bash
# The telemetry loop on a simulated month, with one command.
#
# Starts PostgreSQL, Gnocchi 4.7 and Placement on 127.0.0.1 (the tests'
# servers, from .venv-telemetry and .venv), writes a month of a simulated
# cloud's telemetry through Ceilometer's own Gnocchi publisher and a
# decision log through the weigher's own Scorer, then runs what an
# operator runs and prints what each step produced:
#
#   ingest -> cluster --from-placement -> snapshot -> outcomes -> retrain
#   -> publish
#
# The servers are stopped at the end, on error and on Ctrl-C.
#
#   tools/demo-telemetry.sh              # about 5 minutes on 2 cores
#   tools/demo-telemetry.sh --keep DIR   # keep the steps' outputs in DIR
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/python ] || [ ! -x .venv-telemetry/bin/gnocchi-api ]; then
    echo "demo-telemetry: needs .venv and .venv-telemetry" \
         "(tools/setup-telemetry-venv.sh)" >&2
    exit 2
fi
export PATH="$PWD/.venv/bin:$PATH"
.venv/bin/python -m tests.telemetry.demo "$@" &
demo=$!
# The demo stops its servers on SIGTERM; pass Ctrl-C and exits on to it.
trap 'kill -TERM "$demo" 2>/dev/null || true; wait "$demo" || true' INT TERM
trap 'kill -TERM "$demo" 2>/dev/null || true' EXIT
wait "$demo"
