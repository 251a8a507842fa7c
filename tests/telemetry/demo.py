"""The telemetry loop on a simulated month, with one command
(``tools/demo-telemetry.sh``): real PostgreSQL, Gnocchi and Placement on
loopback (the tests' servers), the month of :mod:`month_cloud` written
through Ceilometer's publisher, then every command of the loop run as the
operator runs it, each step's command line and what it produced printed.
The servers are stopped and their files removed at the end (also on
Ctrl-C or SIGTERM); ``--keep DIR`` keeps the steps' outputs in DIR.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time

from tests.telemetry import month_cloud
from tests.telemetry.placement_server import Placement
from tests.telemetry import servers


def _command(argv: list[str], env: dict[str, str]
             ) -> tuple[int, str, str]:
    """``nova-rl-trainer ARGV`` in a child process, as an operator runs
    it."""
    full = {k: v for k, v in os.environ.items()
            if not k.startswith(('OS_', 'GNOCCHI_'))}
    full.update(env)
    exe = shutil.which('nova-rl-trainer') or 'nova-rl-trainer'
    done = subprocess.run([exe, *argv], env=full, capture_output=True,
                          text=True)
    return done.returncode, done.stdout, done.stderr


def _describe(label: str, path: Path) -> str:
    if path.is_dir() or path.is_symlink():
        manifest = path / 'manifest.json'
        if manifest.exists():
            m = json.loads(manifest.read_text())
            return (f'{label}: {path} (policy {m.get("policy_version")}, '
                    f'objective {m.get("objective")})')
        return f'{label}: {path} (directory)'
    if not path.exists():
        return f'{label}: {path} (not written)'
    text = path.read_text()
    lines = text.count('\n')
    if path.suffix == '.json':
        doc = json.loads(text)
        keys = ', '.join(f'{k}={v}' for k, v in list(doc.items())[:8]
                         if isinstance(v, (int, float, str)))
        return f'{label}: {path} ({len(text)} bytes; {keys})'
    return f'{label}: {path} ({lines} lines)'


def _stop_on_sigterm() -> None:
    def stop(signum, frame):
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, stop)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--keep', metavar='DIR',
                        help='write the steps\' outputs here and keep them')
    args = parser.parse_args()
    _stop_on_sigterm()
    base = Path(args.keep or tempfile.mkdtemp(prefix='nova-rl-demo-'))
    base.mkdir(parents=True, exist_ok=True)
    gnocchi = placement = None
    try:
        print('== starting PostgreSQL, Gnocchi, Placement on 127.0.0.1',
              flush=True)
        gnocchi = servers.Telemetry()
        gnocchi.start()
        placement = Placement()
        placement.start()
        month_cloud.add_hosts(placement)
        print(f'   Gnocchi {gnocchi.endpoint}, Placement '
              f'{placement.endpoint}', flush=True)
        print(f'== a month of {month_cloud.VMS} VMs on '
              f'{len(month_cloud.HOSTS)} hosts: place, log decisions, '
              'publish telemetry', flush=True)
        cloud = month_cloud.build(base, gnocchi)
        t = cloud['timings']
        print(f"   {cloud['samples']} samples through Ceilometer's "
              f"publisher in {t['publish_s']:.0f} s (placed in "
              f"{t['place_s']:.0f} s); "
              f"decision log in {cloud['decisions']}", flush=True)
        for step in month_cloud.loop(base, cloud, gnocchi.endpoint,
                                     placement.endpoint):
            print(f'== {step.name}: nova-rl-trainer '
                  + ' '.join(shlex.quote(a) for a in step.argv), flush=True)
            started = time.monotonic()
            rc, out, err = _command(step.argv, step.env)
            print(f'   exit {rc} in {time.monotonic() - started:.1f} s')
            for line in (out.strip().splitlines()[-6:]
                         + [ln for ln in err.splitlines()
                            if 'nova-rl-trainer:' in ln]):
                print('   | ' + line)
            for label, path in step.writes.items():
                print('   ' + _describe(label, path))
            # publish exits 3 when its gate refuses the candidate.
            if rc not in ((0, 3) if step.name == 'publish' else (0,)):
                print(f'== {step.name} failed', file=sys.stderr)
                return 1
        print('== done' + (f'; outputs in {base}' if args.keep else ''))
        return 0
    except KeyboardInterrupt:
        print('== interrupted', file=sys.stderr)
        return 130
    finally:
        if placement is not None:
            placement.close()
        if gnocchi is not None:
            gnocchi.stop()
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)


if __name__ == '__main__':
    sys.exit(main())
