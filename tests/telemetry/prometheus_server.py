"""A real Prometheus for the telemetry tests: Debian's ``prometheus`` package
(``/usr/bin/prometheus``, ``/usr/bin/promtool``; ``tools/setup-prometheus.sh``
installs it), over data backfilled with ``promtool tsdb
create-blocks-from openmetrics``.

Each server runs in a process group of its own on 127.0.0.1 (a free port),
its storage a copy of the backfilled blocks in a temporary directory, no
scrape targets; optionally with a web configuration (TLS, basic auth) and
extra flags (``--query.max-samples``). Ready when ``/-/ready`` answers 200
(polled with a deadline), stopped by its group's id.
"""

from __future__ import annotations

import base64
import os
from pathlib import Path
import shutil
import ssl
import subprocess
import time
import urllib.error
import urllib.request

from tests.telemetry.servers import free_port
from tests.telemetry.servers import run
from tests.telemetry.servers import ServerError
from tests.telemetry.servers import stop_group
from tests.telemetry.servers import TELEMETRY_VENV
from tests.telemetry.servers import wait_until

PROMETHEUS = os.environ.get('NOVA_RL_PROMETHEUS', '/usr/bin/prometheus')
PROMTOOL = os.environ.get('NOVA_RL_PROMTOOL', '/usr/bin/promtool')
EXPORT_SCRIPT = Path(__file__).resolve().parent / 'prometheus_export.py'

#: bcrypt (cost 4) of BASIC_PASSWORD, for ``basic_auth_users``.
BASIC_USER = 'nova-rl'
BASIC_PASSWORD = 'prom-secret'
BASIC_HASH = '$2b$04$S8uDydCIlEHZTcGavOFG7u.UMrYlBY5QdsFOquOfVShxnM5aWQ8p6'


def missing_binaries() -> str | None:
    """Why the Prometheus tests cannot run, or None."""
    missing = [p for p in (PROMETHEUS, PROMTOOL)
               if not (os.path.isfile(p) and os.access(p, os.X_OK))]
    if missing:
        return (f'{" and ".join(missing)} missing: Debian\'s prometheus '
                'package is not installed (bash tools/setup-prometheus.sh)')
    return None


def export_openmetrics(spec_json: Path, out: Path, log: Path) -> None:
    """Ceilometer's exporter over the cycles and scrapes of ``spec_json``
    (:mod:`tests.telemetry.prometheus_export`), with the telemetry venv's
    python."""
    python = TELEMETRY_VENV / 'bin' / 'python'
    if not python.exists():
        raise ServerError(f'{python} missing: run bash '
                          'tools/setup-telemetry-venv.sh (tools/run-tests.sh '
                          'does)')
    run([str(python), str(EXPORT_SCRIPT), str(spec_json), str(out)],
        "Ceilometer's Prometheus exporter", log, timeout=120)


def backfill(openmetrics: Path, blocks: Path, log: Path) -> None:
    run([PROMTOOL, 'tsdb', 'create-blocks-from', 'openmetrics', '--quiet',
         str(openmetrics), str(blocks)], 'promtool backfill', log,
        timeout=120)


def self_signed(directory: Path, log: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key (openssl)."""
    cert, key = directory / 'cert.pem', directory / 'key.pem'
    run(['openssl', 'req', '-x509', '-newkey', 'ec', '-pkeyopt',
         'ec_paramgen_curve:prime256v1', '-nodes', '-days', '2',
         '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1',
         '-keyout', str(key), '-out', str(cert)], 'openssl', log)
    return cert, key


class Prometheus:
    """``prometheus`` on 127.0.0.1 over a copy of ``blocks``."""

    def __init__(self, base: Path, name: str, blocks: Path | None = None,
                 tls: tuple[Path, Path] | None = None,
                 basic_auth: bool = False,
                 flags: tuple[str, ...] = ()) -> None:
        self.dir = base / name
        self.blocks = blocks
        self.tls = tls
        self.basic_auth = basic_auth
        self.flags = tuple(flags)
        self.port = free_port()
        self.log = self.dir / 'prometheus.log'
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        scheme = 'https' if self.tls else 'http'
        return f'{scheme}://127.0.0.1:{self.port}'

    def start(self, deadline_s: float = 60.0) -> 'Prometheus':
        self.dir.mkdir(parents=True)
        storage = self.dir / 'data'
        if self.blocks is not None:
            shutil.copytree(self.blocks, storage)
        else:
            storage.mkdir()
        config = self.dir / 'prometheus.yml'
        config.write_text('global:\n  scrape_interval: 1m\n')
        cmd = [PROMETHEUS, f'--config.file={config}',
               f'--storage.tsdb.path={storage}',
               '--storage.tsdb.retention.time=100y',
               f'--web.listen-address=127.0.0.1:{self.port}',
               '--log.level=warn', *self.flags]
        if self.tls or self.basic_auth:
            web = self.dir / 'web.yml'
            lines = []
            if self.tls:
                cert, key = self.tls
                lines += ['tls_server_config:', f'  cert_file: {cert}',
                          f'  key_file: {key}']
            if self.basic_auth:
                lines += ['basic_auth_users:',
                          f"  {BASIC_USER}: '{BASIC_HASH}'"]
            web.write_text('\n'.join(lines) + '\n')
            cmd.append(f'--web.config.file={web}')
        with open(self.log, 'ab') as out:
            self.proc = subprocess.Popen(
                cmd, stdout=out, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, cwd=self.dir,
                start_new_session=True)
        try:
            wait_until(self.ready, f'Prometheus {self.dir.name}', self.log,
                       self.proc, deadline_s)
        except BaseException:
            self.stop()
            raise
        return self

    def ready(self) -> bool:
        req = urllib.request.Request(self.url + '/-/ready')
        if self.basic_auth:
            token = base64.b64encode(
                f'{BASIC_USER}:{BASIC_PASSWORD}'.encode()).decode()
            req.add_header('Authorization', f'Basic {token}')
        context = None
        if self.tls:
            context = ssl.create_default_context(cafile=str(self.tls[0]))
        try:
            with urllib.request.urlopen(req, timeout=2,
                                        context=context) as resp:
                return resp.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def stop(self) -> None:
        stop_group(self.proc)

    def __enter__(self) -> 'Prometheus':
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def wait_closed(port: int, deadline_s: float = 10.0) -> None:
    """Until nothing accepts connections on ``port`` (a stopped server)."""
    import socket
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        with socket.socket() as s:
            s.settimeout(0.5)
            if s.connect_ex(('127.0.0.1', port)) != 0:
                return
        time.sleep(0.05)
    raise ServerError(f'port {port} still accepts connections')
