"""Real servers for the telemetry tests, started once per session.

``telemetry``: PostgreSQL (Debian's), Gnocchi 4.7 (API under uWSGI,
metricd) and Ceilometer 27's resource types, from ``.venv-telemetry``
(``tools/setup-telemetry-venv.sh``); stopped and their temporary directory
removed at the end. A server that does not come up in time fails the tests
that need it with the tail of its log.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import json
import os
from pathlib import Path
import sys

import pytest

from tests.telemetry import servers


@pytest.fixture(scope='session')
def telemetry():
    try:
        t = servers.Telemetry()
    except servers.ServerError as e:
        pytest.fail(str(e), pytrace=False)
    yield from servers.serve(t, t.stop)


@pytest.fixture
def basic_env(telemetry, monkeypatch):
    """Gnocchi's documented standalone settings, nothing else of OS_*."""
    for key in list(os.environ):
        if key.startswith(('OS_', 'GNOCCHI_')):
            monkeypatch.delenv(key)
    monkeypatch.setenv('OS_AUTH_TYPE', 'gnocchi-basic')
    monkeypatch.setenv('GNOCCHI_USER', 'admin')
    monkeypatch.setenv('GNOCCHI_ENDPOINT', telemetry.endpoint)
    return telemetry


def build_parser() -> argparse.ArgumentParser:
    """``nova-rl-trainer``'s parser, with ``ingest`` whether or not the
    command list has it yet."""
    from nova_rl_trainer import cli
    from nova_rl_trainer.cli import ingest as ingest_cli
    if ingest_cli in cli.COMMANDS:
        return cli.build_parser()
    parser = argparse.ArgumentParser(prog='nova-rl-trainer')
    sub = parser.add_subparsers(dest='command', required=True)
    for command in (*cli.COMMANDS, ingest_cli):
        command.register(sub)
    return parser


class Run:
    def __init__(self, rc, out, err, out_path, json_path):
        self.rc, self.out, self.err = rc, out, err
        self.out_path, self.json_path = out_path, json_path

    @property
    def rows(self) -> list[dict]:
        with open(self.out_path, newline='', encoding='utf-8') as f:
            return list(csv.DictReader(f))

    @property
    def header(self) -> list[str]:
        with open(self.out_path, newline='', encoding='utf-8') as f:
            return next(csv.reader(f))

    @property
    def summary(self) -> dict:
        with open(self.json_path, encoding='utf-8') as f:
            return json.load(f)

    @property
    def error(self) -> str:
        lines = [ln for ln in self.err.splitlines()
                 if ln.startswith('nova-rl-trainer: error:')]
        return lines[-1] if lines else ''


def run_ingest(args: list[str], out: Path, json_path: Path | None = None
               ) -> Run:
    """``nova-rl-trainer ingest ARGS --out OUT [--json JSON]`` in this
    process, as ``main()`` runs it."""
    argv = ['ingest', *args, '--out', str(out)]
    if json_path is not None:
        argv += ['--json', str(json_path)]
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), \
            contextlib.redirect_stderr(stderr):
        try:
            parsed = build_parser().parse_args(argv)
            rc = parsed.func(parsed)
        except SystemExit as e:
            rc = e.code if isinstance(e.code, int) else 2
        except ValueError as e:       # as cli.main reports it
            print(f'nova-rl-trainer: error: {e}', file=sys.stderr)
            rc = 2
    return Run(rc, stdout.getvalue(), stderr.getvalue(), out, json_path)


@pytest.fixture
def ingest(tmp_path):
    """Run ``ingest`` with an output path in ``tmp_path``."""
    counter = iter(range(1000))

    def go(*args: str) -> Run:
        n = next(counter)
        return run_ingest(list(args), tmp_path / f'trace-{n}.csv',
                          tmp_path / f'summary-{n}.json')
    return go
