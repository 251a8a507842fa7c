# Sourced by the tools/*.sh scripts: create and activate .venv with the
# project, the trainer and the test requirements installed. Idempotent.
# shellcheck shell=bash
PYTHON=${PYTHON:-$(command -v python3.11 || command -v python3)}
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
# shellcheck source=/dev/null
. .venv/bin/activate
# torch is pinned in trainer/requirements.txt: 2.13.0 is the CPU build this
# machine holds; an unpinned torch would pull a multi-GB CUDA build.
echo "installing into .venv (log: .venv/pip.log) ..."
if ! pip install --disable-pip-version-check \
        -r requirements.txt -r test-requirements.txt \
        -r trainer/requirements.txt -e . -e ./trainer \
        > .venv/pip.log 2>&1; then
    grep -v '^WARNING: Location' .venv/pip.log | tail -40
    echo "pip install failed" >&2
    exit 1
fi
