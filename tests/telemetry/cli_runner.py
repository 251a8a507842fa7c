"""Run a ``nova-rl-trainer`` command in this process through ``main()``,
capturing what it prints."""

from __future__ import annotations

import contextlib
import io

from nova_rl_trainer import cli


class Run:
    def __init__(self, rc: int, out: str, err: str) -> None:
        self.rc, self.out, self.err = rc, out, err

    @property
    def error(self) -> str:
        """The last ``error:`` line ('' if none)."""
        lines = [ln for ln in self.err.splitlines()
                 if ln.startswith('nova-rl-trainer: error:')]
        return lines[-1] if lines else ''

    @property
    def warnings(self) -> list[str]:
        return [ln[len('nova-rl-trainer: warning: '):]
                for ln in self.err.splitlines()
                if ln.startswith('nova-rl-trainer: warning:')]


def run(argv: list[str]) -> Run:
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), \
            contextlib.redirect_stderr(stderr):
        try:
            rc = cli.main(argv)
        except SystemExit as e:       # argparse's usage errors
            rc = e.code if isinstance(e.code, int) else 2
    return Run(rc, stdout.getvalue(), stderr.getvalue())
