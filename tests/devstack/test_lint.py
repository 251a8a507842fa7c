"""The shell code passes bashate and ShellCheck (``tools/lint-shell.sh``)."""

import subprocess

from tests.devstack import sandbox as sb

LINT = sb.REPO / 'tools' / 'lint-shell.sh'


def test_shell_code_passes_bashate_and_shellcheck():
    proc = subprocess.run(['bash', str(LINT)], capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_the_linters_report_a_finding(tmp_path):
    bad = tmp_path / 'bad.sh'
    bad.write_text('#!/bin/bash\nfoo=$1\n  echo $foo\n')
    proc = subprocess.run(['bash', str(LINT), str(bad)], capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 1
    assert 'E003' in proc.stdout + proc.stderr           # bashate
    assert 'SC2086' in proc.stdout + proc.stderr         # ShellCheck
