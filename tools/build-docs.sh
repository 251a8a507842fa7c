#!/usr/bin/env bash
# Builds the operator documentation with warnings as errors, then lints the
# release notes. Usage: tools/build-docs.sh [OUTDIR]
#
# Without OUTDIR the HTML goes to a temporary directory, removed at exit, so
# nothing is left in the tree (doc/build is git-ignored for those who keep
# it). The pages are generated from the installed project (options, command
# line), so this runs in the active virtualenv (tox's), else in the
# project's .venv (created by tools/setup-venv.sh if missing), and installs
# doc/requirements.txt there when Sphinx, reno or an extension is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ -z "${VIRTUAL_ENV:-}" ]; then
    if [ ! -x .venv/bin/python ]; then
        . tools/setup-venv.sh
    else
        . .venv/bin/activate
    fi
fi
if ! python -c 'import sphinx, reno, myst_parser, sphinxarg' 2>/dev/null; then
    echo "installing doc/requirements.txt into $VIRTUAL_ENV ..."
    pip install --disable-pip-version-check -q -r doc/requirements.txt
fi

out=${1:-}
if [ -z "$out" ]; then
    out=$(mktemp -d)
    trap 'rm -rf "$out"' EXIT
fi
# Sphinx's doctrees go beside the HTML, not into the source tree.
python -m sphinx -W --keep-going -q -b html -d "$out/.doctrees" \
    doc/source "$out"
echo "docs built: $out/index.html"
reno lint
