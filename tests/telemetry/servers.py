"""Real PostgreSQL, Gnocchi and Ceilometer for the telemetry tests.

* **PostgreSQL** from the machine's Debian packages
  (``/usr/lib/postgresql/*/bin``): ``initdb`` in a temporary directory,
  listening on 127.0.0.1 and a Unix socket in that directory, run as the
  ``postgres`` user when the tests run as root (PostgreSQL refuses root).
* **Gnocchi 4.7** from ``.venv-telemetry`` (``tools/setup-telemetry-venv.sh``):
  file storage and incoming drivers under the same directory,
  ``gnocchi-upgrade``, the API under uWSGI (an HTTP/1.1 socket with
  keep-alive) on 127.0.0.1, and
  ``gnocchi-metricd`` aggregating.
* **Ceilometer 27**: ``ceilometer-upgrade`` creates its resource types
  (``instance`` and the others) in that Gnocchi; its Gnocchi publisher
  writes measures (``publish_samples.py``, run with the telemetry venv's
  python), and creates Ceilometer's archive policies on first use.

Every server is started in a process group of its own and stopped by that
group's id; a server that does not come up within its deadline raises
:class:`ServerError` with the tail of its log.
"""

from __future__ import annotations

import base64
import glob
import json
import os
from pathlib import Path
import pwd
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

import pytest

REPO = Path(__file__).resolve().parents[2]
TELEMETRY_VENV = Path(os.environ.get('NOVA_RL_TELEMETRY_VENV',
                                     REPO / '.venv-telemetry'))
PUBLISH_SCRIPT = Path(__file__).resolve().parent / 'publish_samples.py'
WSGIREF_SCRIPT = Path(__file__).resolve().parent / 'gnocchi_wsgiref.py'

START_DEADLINE_S = 60.0
STOP_DEADLINE_S = 15.0


class ServerError(RuntimeError):
    """A server did not start, or a helper failed: says which and why,
    with the tail of its log."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def log_tail(path: str | os.PathLike, lines: int = 25) -> str:
    try:
        with open(path, 'rb') as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 16384))
            text = f.read().decode('utf-8', 'replace')
    except OSError as e:
        return f'(no log: {e})'
    return '\n'.join(text.splitlines()[-lines:])


#: A Python exception with its message, as a traceback's last line.
_EXCEPTION = re.compile(r'^[A-Za-z_][\w.]*(Error|Exception): \S')


def first_error(path: str | os.PathLike) -> str | None:
    """The log's first exception line, or None.

    The tail may not hold it: when one uWSGI worker fails to load the
    app, uWSGI stops the others mid-import, and their tracebacks (a
    KeyboardInterrupt) push the first worker's reason out of the tail
    (seen on a loaded CI machine)."""
    try:
        with open(path, encoding='utf-8', errors='replace') as f:
            for line in f:
                if _EXCEPTION.match(line):
                    return line.rstrip()
    except OSError:
        pass
    return None


def _fail(what: str, log: str | os.PathLike, reason: str) -> ServerError:
    error = first_error(log)
    first = f'; first error in {log}: {error}' if error else ''
    return ServerError(f'{what} {reason}{first}; last lines of {log}:\n'
                       + log_tail(log))


def wait_until(check, what: str, log: str | os.PathLike,
               proc: subprocess.Popen | None = None,
               deadline_s: float = START_DEADLINE_S) -> None:
    """Poll ``check()`` until it is true; :class:`ServerError` if ``proc``
    exits first or ``deadline_s`` passes."""
    end = time.monotonic() + deadline_s
    while True:
        if check():
            return
        if proc is not None and proc.poll() is not None:
            raise _fail(what, log, f'exited with status {proc.returncode}')
        if time.monotonic() > end:
            raise _fail(what, log, f'not ready after {deadline_s:g} s')
        time.sleep(0.1)


def run(cmd: list[str], what: str, log: str | os.PathLike,
        timeout: float = START_DEADLINE_S, **kw) -> None:
    """Run a set-up command, its output appended to ``log``."""
    with open(log, 'ab') as out:
        try:
            rc = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, timeout=timeout,
                                **kw).returncode
        except subprocess.TimeoutExpired:
            raise _fail(what, log, f'did not finish in {timeout:g} s') \
                from None
    if rc != 0:
        raise _fail(what, log, f'failed with status {rc}')


def stop_groups(procs: list[subprocess.Popen | None],
                deadline_s: float = STOP_DEADLINE_S) -> None:
    """SIGTERM the process groups the ``procs`` lead (all at once, each
    by its own id), SIGKILL those still there after the deadline."""
    running = [p for p in procs if p is not None and p.poll() is None]
    for p in running:
        try:
            os.killpg(p.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    end = time.monotonic() + deadline_s
    for p in running:
        try:
            p.wait(max(0.0, end - time.monotonic()))
        except subprocess.TimeoutExpired:
            pass
    for p in running:
        if p.poll() is None:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            p.wait(STOP_DEADLINE_S)


def stop_group(proc: subprocess.Popen | None,
               deadline_s: float = STOP_DEADLINE_S) -> None:
    stop_groups([proc], deadline_s)


def check_venv() -> Path:
    """The telemetry venv, or a ServerError saying how to make it."""
    missing = [t for t in ('python', 'uwsgi', 'gnocchi-upgrade',
                           'gnocchi-metricd', 'ceilometer-upgrade')
               if not (TELEMETRY_VENV / 'bin' / t).exists()]
    if missing:
        raise ServerError(
            f'{TELEMETRY_VENV} lacks {", ".join(missing)}: run '
            'bash tools/setup-telemetry-venv.sh (tools/run-tests.sh does)')
    return TELEMETRY_VENV


class Postgres:
    """A throw-away PostgreSQL cluster in ``base/pg``."""

    def __init__(self, base: Path) -> None:
        found = sorted(glob.glob('/usr/lib/postgresql/*/bin/initdb'),
                       key=lambda p: int(p.split('/')[4])
                       if p.split('/')[4].isdigit() else 0)
        if not found:
            raise ServerError('PostgreSQL is not installed (no '
                              '/usr/lib/postgresql/*/bin/initdb): run bash '
                              'tools/setup-telemetry-venv.sh')
        self.bindir = Path(found[-1]).parent
        self.dir = base / 'pg'
        self.data = self.dir / 'data'
        self.log = self.dir / 'postgres.log'
        self.setup_log = base / 'postgres-setup.log'
        self.port = free_port()
        self.as_root = os.geteuid() == 0
        self.started = False

    def _cmd(self, *args: str) -> list[str]:
        cmd = [str(self.bindir / args[0]), *args[1:]]
        if self.as_root:
            return ['runuser', '-u', 'postgres', '--', *cmd]
        return cmd

    def start(self) -> None:
        self.dir.mkdir()
        if self.as_root:
            pw = pwd.getpwnam('postgres')
            os.chown(self.dir, pw.pw_uid, pw.pw_gid)
        run(self._cmd('initdb', '-D', str(self.data), '-A', 'trust',
                      '-U', 'postgres', '-E', 'UTF8', '--locale=C.UTF-8',
                      '--no-sync'),
            'initdb', self.setup_log)
        opts = (f'-h 127.0.0.1 -p {self.port} -k {self.dir} -F '
                '-c max_connections=100 -c full_page_writes=off '
                '-c synchronous_commit=off')
        try:
            run(self._cmd('pg_ctl', '-D', str(self.data), '-l',
                          str(self.log), '-o', opts, '-w', '-t',
                          str(int(START_DEADLINE_S)), 'start'),
                'PostgreSQL', self.setup_log, timeout=START_DEADLINE_S + 5)
        except ServerError as e:
            raise ServerError(f'{e}\nlast lines of {self.log}:\n'
                              + log_tail(self.log)) from None
        self.started = True

    def createdb(self, name: str) -> str:
        """Create database ``name``; its SQLAlchemy URL (Unix socket)."""
        run(self._cmd('createdb', '-h', str(self.dir), '-p', str(self.port),
                      name), f'createdb {name}', self.setup_log)
        return (f'postgresql://postgres@/{name}?host={self.dir}'
                f'&port={self.port}')

    def url(self, name: str) -> str:
        return (f'postgresql://postgres@/{name}?host={self.dir}'
                f'&port={self.port}')

    def stop(self) -> None:
        if not self.started:
            return
        self.started = False
        # Throw-away data: no shutdown checkpoint needed.
        subprocess.run(self._cmd('pg_ctl', '-D', str(self.data), '-m',
                                 'immediate', '-w', '-t',
                                 str(int(STOP_DEADLINE_S)), 'stop'),
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                       stdin=subprocess.DEVNULL, timeout=STOP_DEADLINE_S + 5)


def basic_auth(user: str) -> str:
    return 'Basic ' + base64.b64encode(f'{user}:'.encode()).decode()


def http_json(url: str, user: str | None = 'admin', method: str = 'GET',
              body: object = None, timeout: float = 10.0,
              headers: dict[str, str] | None = None):
    """(status, decoded JSON or text) of one request; status 0 when the
    server cannot be reached."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method)
    if user is not None:
        req.add_header('Authorization', basic_auth(user))
    for name, value in (headers or {}).items():
        req.add_header(name, value)
    if data is not None:
        req.add_header('Content-Type', 'application/json')
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            status, raw = r.status, r.read()
    except urllib.error.HTTPError as e:
        status, raw = e.code, e.read()
    except (OSError, urllib.error.URLError):
        return 0, None
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, raw.decode('utf-8', 'replace')


class GnocchiApi:
    """One Gnocchi API process on 127.0.0.1: under uWSGI (``server=
    'uwsgi'``, as ``gnocchi-api`` runs it) or the standard library's
    wsgiref (``'wsgiref'``, see ``gnocchi_wsgiref.py``)."""

    def __init__(self, venv: Path, conf: Path, log: Path,
                 port: int | None = None, server: str = 'uwsgi') -> None:
        self.venv = venv
        self.conf = conf
        self.log = log
        self.port = port or free_port()
        self.endpoint = f'http://127.0.0.1:{self.port}'
        self.server = server
        self.proc: subprocess.Popen | None = None

    def start(self) -> 'GnocchiApi':
        if self.server == 'wsgiref':
            cmd = [str(self.venv / 'bin' / 'python'), str(WSGIREF_SCRIPT),
                   str(self.port), '--config-file', str(self.conf)]
        else:
            cmd = self._uwsgi()
        with open(self.log, 'ab') as out:
            self.proc = subprocess.Popen(
                cmd, stdout=out, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True)

        def ready() -> bool:
            # The root (versions) needs neither auth nor the database.
            status, _ = http_json(self.endpoint + '/', user=None, timeout=2)
            return status == 200
        wait_until(ready, f'Gnocchi API on {self.endpoint}', self.log,
                   self.proc)
        return self

    def _uwsgi(self) -> list[str]:
        # uWSGI's native HTTP/1.1 socket, with keep-alive (keystoneauth1
        # pools connections). gnocchi-api puts uWSGI's HTTP router in
        # front instead, which holds a failed request for its 60 s
        # http-timeout before dropping it; without it the drop is at once.
        return [str(self.venv / 'bin' / 'uwsgi'),
                '--http11-socket', f'127.0.0.1:{self.port}',
                '--master', '--processes', '2', '--threads', '2',
                '--lazy-apps', '--need-app', '--die-on-term',
                '--enable-threads', '--thunder-lock', '--chdir', '/',
                '--home', str(self.venv),
                '--wsgi', 'gnocchi.rest.wsgi',
                '--pyargv', f'--config-file {self.conf}',
                '--disable-logging', '--log-4xx', '--log-5xx']

    def stop(self) -> None:
        # The API keeps no state: after 2 s of uWSGI's graceful stop,
        # kill it.
        stop_group(self.proc, deadline_s=2.0)


GNOCCHI_CONF = """\
[DEFAULT]
debug = false
verbose = false
coordination_url = file://{base}/locks
parallel_operations = 2
[indexer]
url = {indexer}
[storage]
driver = file
file_basepath = {base}/storage
[incoming]
driver = file
file_basepath = {base}/storage
[metricd]
workers = 1
metric_processing_delay = 1
metric_reporting_delay = -1
metric_cleanup_delay = 30
processing_replicas = 1
[api]
auth_mode = basic
max_limit = 1000
[oslo_policy]
policy_file = {policy}
"""

CEILOMETER_CONF = """\
[DEFAULT]
debug = false
[service_credentials]
auth_type = gnocchi-basic
user = admin
endpoint = {endpoint}
"""


class Telemetry:
    """PostgreSQL + Gnocchi (API, metricd) + Ceilometer's resource types,
    in one temporary directory."""

    def __init__(self) -> None:
        self.venv = check_venv()
        self.base = Path(tempfile.mkdtemp(prefix='nova-rl-telemetry-'))
        # The postgres user must be able to reach its own directory.
        os.chmod(self.base, 0o755)
        self.pg = Postgres(self.base)
        self.api: GnocchiApi | None = None
        self.metricd: subprocess.Popen | None = None
        self.extra: list[GnocchiApi] = []
        self.timings: dict[str, float] = {}

    # -- life cycle ---------------------------------------------------
    def start(self) -> 'Telemetry':
        t0 = time.monotonic()
        self.pg.start()
        indexer = self.pg.createdb('gnocchi')
        self.timings['postgres_s'] = time.monotonic() - t0
        self.conf = self.write_gnocchi_conf('gnocchi.conf', indexer)
        t1 = time.monotonic()
        run([str(self.venv / 'bin' / 'gnocchi-upgrade'), '--config-file',
             str(self.conf), '--sacks-number', '8'],
            'gnocchi-upgrade', self.base / 'gnocchi-upgrade.log')
        self.api = GnocchiApi(self.venv, self.conf,
                              self.base / 'gnocchi-api.log').start()
        with open(self.base / 'gnocchi-metricd.log', 'ab') as out:
            self.metricd = subprocess.Popen(
                [str(self.venv / 'bin' / 'gnocchi-metricd'), '--config-file',
                 str(self.conf)], stdout=out, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True)
        wait_until(self._metricd_joined, 'gnocchi-metricd',
                   self.base / 'gnocchi-metricd.log', self.metricd)
        self.timings['gnocchi_s'] = time.monotonic() - t1
        t2 = time.monotonic()
        ceilometer_conf = self.base / 'ceilometer.conf'
        ceilometer_conf.write_text(CEILOMETER_CONF.format(
            endpoint=self.endpoint))
        run([str(self.venv / 'bin' / 'ceilometer-upgrade'), '--config-file',
             str(ceilometer_conf), '--retry', '3'],
            'ceilometer-upgrade', self.base / 'ceilometer-upgrade.log')
        self.timings['ceilometer_upgrade_s'] = time.monotonic() - t2
        self.timings['total_s'] = time.monotonic() - t0
        return self

    def stop(self) -> None:
        # The APIs keep no state and metricd's work is done once the tests
        # are: 3 s of graceful stop, then killed.
        apis = [*self.extra, self.api]
        stop_groups([a.proc for a in apis if a is not None] + [self.metricd],
                    deadline_s=3.0)
        self.pg.stop()
        shutil.rmtree(self.base, ignore_errors=True)

    # -- helpers ------------------------------------------------------
    @property
    def endpoint(self) -> str:
        return self.api.endpoint

    def write_gnocchi_conf(self, name: str, indexer: str,
                           policy: dict | None = None) -> Path:
        policy_path = self.base / (name + '.policy.yaml')
        policy_path.write_text(''.join(
            f'"{k}": "{v}"\n' for k, v in (policy or {}).items()) or '{}\n')
        path = self.base / name
        path.write_text(GNOCCHI_CONF.format(base=self.base, indexer=indexer,
                                            policy=policy_path))
        return path

    def start_api(self, name: str, indexer: str | None = None,
                  policy: dict | None = None,
                  server: str = 'uwsgi') -> GnocchiApi:
        """Another API process on the same storage (and by default the
        same indexer), e.g. to stop it or to run it with another policy;
        stopped with the others at the end."""
        conf = self.write_gnocchi_conf(
            name + '.conf', indexer or self.pg.url('gnocchi'), policy)
        api = GnocchiApi(self.venv, conf, self.base / (name + '.log'),
                         server=server)
        self.extra.append(api)
        return api.start()

    def gnocchi_db(self, name: str, upgrade: bool = True) -> str:
        """A new indexer database (``gnocchi-upgrade``d unless told, with
        none of Ceilometer's resource types); its URL."""
        url = self.pg.createdb(name)
        if upgrade:
            conf = self.write_gnocchi_conf(name + '-upgrade.conf', url)
            run([str(self.venv / 'bin' / 'gnocchi-upgrade'), '--config-file',
                 str(conf), '--skip-storage', '--skip-incoming'],
                f'gnocchi-upgrade of {name}', self.base / (name + '.log'))
        return url

    def status(self) -> dict:
        status, body = http_json(self.endpoint + '/v1/status')
        if status != 200 or not isinstance(body, dict):
            raise ServerError(f'GET /v1/status: HTTP {status}: {body}')
        return body

    def _metricd_joined(self) -> bool:
        status, body = http_json(self.endpoint + '/v1/status', timeout=2)
        return (status == 200 and isinstance(body, dict)
                and bool(body.get('metricd', {}).get('processors')))

    def wait_processed(self, deadline_s: float = 120.0) -> None:
        """Until metricd has aggregated every measure received."""
        def done() -> bool:
            return self.status()['storage']['summary']['measures'] == 0
        wait_until(done, 'gnocchi-metricd processing',
                   self.base / 'gnocchi-metricd.log', self.metricd,
                   deadline_s=deadline_s)

    def publish(self, samples: list[dict], events: list[dict] = (),
                chunk: int = 20000, wait: bool = True,
                timeout: float = 240.0) -> dict:
        """Write ``samples`` (and ``events``) with Ceilometer's Gnocchi
        publisher, then (``wait``) until metricd has processed them."""
        job = self.base / f'publish-{time.monotonic_ns()}.json'
        job.write_text(json.dumps({'endpoint': self.endpoint,
                                   'user': 'admin', 'samples': samples,
                                   'events': list(events), 'chunk': chunk}))
        log = self.base / 'publish.log'
        try:
            with open(log, 'ab') as err:
                out = subprocess.run(
                    [str(self.venv / 'bin' / 'python'), str(PUBLISH_SCRIPT),
                     str(job)], stdout=subprocess.PIPE, stderr=err,
                    stdin=subprocess.DEVNULL, timeout=timeout)
        finally:
            job.unlink()
        if out.returncode != 0:
            raise _fail("Ceilometer's publisher", log,
                        f'failed with status {out.returncode}')
        if wait:
            self.wait_processed()
        return json.loads(out.stdout.decode().strip().splitlines()[-1])


if __name__ == '__main__':
    # Start everything once, print the timings, stop: a smoke check.
    t = Telemetry()
    try:
        t.start()
        print(json.dumps({'endpoint': t.endpoint, **t.timings}, indent=1))
    finally:
        t.stop()
    sys.exit(0)


def serve(server, stop):
    """Start ``server`` for a fixture: yield it, then ``stop()`` it; a
    server that does not come up fails the test with its reason."""
    try:
        server.start()
    except ServerError as e:
        stop()
        pytest.fail(str(e), pytrace=False)
    except BaseException:
        stop()
        raise
    yield server
    stop()
