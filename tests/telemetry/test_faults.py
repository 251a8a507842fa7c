"""Faults of the ``gnocchi`` source against real servers: each one ends
with exit status 2 and one line saying what is wrong, and never leaves a
half-written output.

Stopped server, wrong credentials (401), a policy refusing the user (403),
wrong endpoint (404), a Gnocchi whose database was never upgraded (500), a
Gnocchi without Ceilometer's resource types; a malformed answer and an
overloaded server (503) need a server that misbehaves, which Gnocchi does
not do on demand: a small stand-in HTTP server plays that part.
"""

from __future__ import annotations

import http.server
import json
import os
import threading
import time

import pytest

from tests.telemetry.conftest import run_ingest
from tests.telemetry.servers import free_port

#: A window with nothing in it: faults show before any data is read.
START, STOP = '2025-06-01T00:00:00Z', '2025-06-01T06:00:00Z'
WINDOW = ['--source', 'gnocchi', '--start', START, '--stop', STOP]


@pytest.fixture
def clean_env(monkeypatch):
    for key in list(os.environ):
        if key.startswith(('OS_', 'GNOCCHI_')):
            monkeypatch.delenv(key)
    return monkeypatch


def basic(monkeypatch, endpoint, user='admin'):
    monkeypatch.setenv('OS_AUTH_TYPE', 'gnocchi-basic')
    monkeypatch.setenv('GNOCCHI_USER', user)
    monkeypatch.setenv('GNOCCHI_ENDPOINT', endpoint)


def test_server_stopped(telemetry, clean_env, tmp_path):
    """Up: a trace. Stopped: 'cannot reach', after the retries (with
    backoff: 0.5 + 1 + 2 s for the default 3), and the trace written
    before is still there, whole."""
    api = telemetry.start_api('stopped')
    basic(clean_env, api.endpoint)
    out = tmp_path / 'trace.csv'
    ok = run_ingest(WINDOW, out)
    assert ok.rc == 0, ok.err
    before = out.read_bytes()
    api.stop()
    t = time.monotonic()
    down = run_ingest(WINDOW, out)
    elapsed = time.monotonic() - t
    assert down.rc == 2
    assert down.error == (
        f'nova-rl-trainer: error: cannot reach Gnocchi at {api.endpoint} '
        "(the 'instance' resource type): connection refused, 4 attempts")
    assert 3.0 <= elapsed < 20.0
    quick = run_ingest([*WINDOW, '--retries', '0'], out)
    assert quick.error.endswith('connection refused, 1 attempt')
    assert out.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ['trace.csv']


def test_wrong_credentials_401(telemetry, clean_env, tmp_path):
    """gnocchiclient's noauth plugin against a Gnocchi in basic mode sends
    no Authorization header: Gnocchi answers 401."""
    clean_env.setenv('OS_AUTH_TYPE', 'gnocchi-noauth')
    clean_env.setenv('GNOCCHI_USER_ID', 'admin')
    clean_env.setenv('GNOCCHI_PROJECT_ID', 'admin')
    clean_env.setenv('GNOCCHI_ENDPOINT', telemetry.endpoint)
    run = run_ingest(WINDOW, tmp_path / 'trace.csv')
    assert run.rc == 2
    assert run.error == (
        f'nova-rl-trainer: error: Gnocchi at {telemetry.endpoint} refused '
        'the credentials (auth type gnocchi-noauth, user admin): HTTP 401 '
        "on the 'instance' resource type; check --os-auth-type and its "
        'options (GNOCCHI_USER and GNOCCHI_ENDPOINT for gnocchi-basic, the '
        'OS_* variables for Keystone)')
    assert not (tmp_path / 'trace.csv').exists()


def test_forbidden_403(telemetry, clean_env, tmp_path):
    """A Gnocchi whose policy keeps resource types to admins: a plain user
    is refused (403), the admin is not. (In basic mode Gnocchi filters
    nothing by project, so its own policy is what forbids.)"""
    api = telemetry.start_api('admin-only',
                              policy={'get resource type': 'role:admin'})
    basic(clean_env, api.endpoint, user='bob')
    run = run_ingest(WINDOW, tmp_path / 'trace.csv')
    assert run.rc == 2
    assert run.error.startswith(
        f'nova-rl-trainer: error: Gnocchi at {api.endpoint} forbids the '
        "'instance' resource type to auth type gnocchi-basic, user bob: "
        'HTTP 403 (')
    assert run.error.endswith(
        "reading every project's instances needs the admin role or a "
        'policy granting it')
    basic(clean_env, api.endpoint, user='admin')
    assert run_ingest(WINDOW, tmp_path / 'trace.csv').rc == 0


def test_wrong_endpoint_404(telemetry, clean_env, tmp_path):
    basic(clean_env, telemetry.endpoint + '/metric')
    run = run_ingest(WINDOW, tmp_path / 'trace.csv')
    assert run.rc == 2
    assert run.error == (
        f'nova-rl-trainer: error: no Gnocchi API at {telemetry.endpoint}: '
        "HTTP 404 on the 'instance' resource type (GET "
        '/metric/v1/resource_type/instance); check the endpoint '
        '(GNOCCHI_ENDPOINT, --endpoint, --os-endpoint-override or the '
        'catalog)')


@pytest.fixture(scope='module')
def no_schema(telemetry):
    """A database nobody ran gnocchi-upgrade on: Gnocchi fails on every
    request that reads it."""
    return telemetry.gnocchi_db('noschema', upgrade=False)


def test_server_error_500(telemetry, no_schema, clean_env, tmp_path):
    """Under a WSGI server that turns the failure into HTTP 500 (wsgiref,
    as mod_wsgi would): reported at once, 500 is not retried."""
    api = telemetry.start_api('no-schema-wsgiref', indexer=no_schema,
                              server='wsgiref')
    basic(clean_env, api.endpoint)
    t = time.monotonic()
    run = run_ingest(WINDOW, tmp_path / 'trace.csv')
    assert time.monotonic() - t < 3
    assert run.rc == 2
    assert run.error.startswith(
        f'nova-rl-trainer: error: Gnocchi at {api.endpoint} failed on the '
        "'instance' resource type: HTTP 500: ")


def test_server_failure_under_uwsgi(telemetry, no_schema, clean_env,
                                    tmp_path):
    """Under uWSGI the same failure drops the connection without an
    answer: retried, then reported as the server's failure, not as an
    unreachable server."""
    api = telemetry.start_api('no-schema-uwsgi', indexer=no_schema)
    basic(clean_env, api.endpoint)
    run = run_ingest([*WINDOW, '--retries', '0'], tmp_path / 'trace.csv')
    assert run.rc == 2
    assert run.error == (
        f'nova-rl-trainer: error: Gnocchi at {api.endpoint} closed the '
        "connection without answering the 'instance' resource type, 1 "
        "attempt: the server failed (see Gnocchi's log)")


def test_gnocchi_without_ceilometer(telemetry, clean_env, tmp_path):
    """A working Gnocchi that Ceilometer never set up."""
    api = telemetry.start_api('plain', indexer=telemetry.gnocchi_db('plain'))
    basic(clean_env, api.endpoint)
    run = run_ingest(WINDOW, tmp_path / 'trace.csv')
    assert run.rc == 2
    assert run.error == (
        f'nova-rl-trainer: error: Gnocchi at {api.endpoint} has no resource '
        "type 'instance': Ceilometer has not created its resource types "
        'there (ceilometer-upgrade), or this is not the Gnocchi Ceilometer '
        'publishes to')


class _StandIn(http.server.BaseHTTPRequestHandler):
    """Answers as configured per path prefix: ``(status, content type,
    body)``; counts requests."""

    routes: dict = {}
    hits: list = []

    def _answer(self):
        self.hits.append((self.command, self.path))
        length = int(self.headers.get('Content-Length') or 0)
        if length:
            self.rfile.read(length)
        for prefix, (status, ctype, body) in self.routes.items():
            if self.path.startswith(prefix):
                break
        else:
            status, ctype, body = 404, 'text/plain', 'no route'
        data = body.encode()
        self.send_response(status)
        self.send_header('Content-Type', ctype)
        self.send_header('Content-Length', str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = _answer

    def log_message(self, *args):
        pass


@pytest.fixture
def stand_in():
    handler = type('Handler', (_StandIn,), {'routes': {}, 'hits': []})
    server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield handler, f'http://127.0.0.1:{server.server_address[1]}'
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


RESOURCE_TYPE = json.dumps({'name': 'instance', 'state': 'active',
                            'attributes': {a: {'type': 'string'} for a in (
                                'host', 'flavor_id', 'launched_at',
                                'deleted_at')}})


def test_malformed_answers(stand_in, clean_env, tmp_path):
    handler, endpoint = stand_in
    basic(clean_env, endpoint)
    out = tmp_path / 'trace.csv'
    # Not JSON at all: a web page where Gnocchi should be.
    handler.routes = {'/': (200, 'text/html', '<html>welcome</html>')}
    run = run_ingest(WINDOW, out)
    assert run.rc == 2
    assert run.error.startswith(
        f'nova-rl-trainer: error: Gnocchi at {endpoint} sent a malformed '
        "answer to the 'instance' resource type: not JSON (")
    # JSON, but not a list of resources.
    handler.routes = {'/v1/resource_type/': (200, 'application/json',
                                             RESOURCE_TYPE),
                      '/v1/search/': (200, 'application/json',
                                      '{"resources": []}')}
    run = run_ingest(WINDOW, out)
    assert run.error == (
        f'nova-rl-trainer: error: Gnocchi at {endpoint} sent a malformed '
        'answer to the instance search: expected a list of resources, got '
        'dict')
    # A resource whose launched_at is not a date.
    bad = [{'id': 'x', 'project_id': 'p', 'launched_at': 'soon',
            'metrics': {}}]
    handler.routes['/v1/search/'] = (200, 'application/json',
                                     json.dumps(bad))
    run = run_ingest(WINDOW, out)
    assert run.error == (
        f'nova-rl-trainer: error: Gnocchi at {endpoint} sent a malformed '
        "answer to the instance search: launched_at 'soon' is not a "
        'date-time')
    # Aggregates that are not groups.
    good = [{'id': 'i-1', 'project_id': 'p', 'host': 'h',
             'flavor_id': 'f', 'launched_at': '2025-06-01T01:00:00+00:00',
             'deleted_at': None, 'started_at': '2025-06-01T01:00:00+00:00',
             'ended_at': None, 'metrics': {'vcpus': 'm1', 'memory': 'm2',
                                           'cpu': 'm3'}}]
    handler.routes['/v1/search/'] = (200, 'application/json',
                                     json.dumps(good))
    handler.routes['/v1/aggregates'] = (200, 'application/json',
                                        '{"measures": 1}')
    run = run_ingest(WINDOW, out)
    assert run.error == (
        f'nova-rl-trainer: error: Gnocchi at {endpoint} sent a malformed '
        'answer to the size aggregates (vcpus, memory, disk): expected a '
        'list of groups, got dict')
    assert not out.exists()


def test_overloaded_server_is_retried(stand_in, clean_env, tmp_path):
    """503 is retried with backoff, then reported."""
    handler, endpoint = stand_in
    handler.routes = {'/': (503, 'application/json',
                            '{"code": 503, "description": "busy"}')}
    basic(clean_env, endpoint)
    run = run_ingest([*WINDOW, '--retries', '2'], tmp_path / 't.csv')
    assert run.rc == 2
    assert run.error == (
        f'nova-rl-trainer: error: Gnocchi at {endpoint} failed on the '
        "'instance' resource type: HTTP 503 after 2 retries: busy")
    assert len(handler.hits) == 3


def test_missing_keystone_options(clean_env, tmp_path):
    clean_env.setenv('OS_AUTH_TYPE', 'password')
    run = run_ingest(WINDOW, tmp_path / 't.csv')
    assert run.rc == 2
    assert run.error == ('nova-rl-trainer: error: auth type password needs '
                         '--os-auth-url (or the matching OS_* variables)')


def test_keystone_unreachable(clean_env, tmp_path):
    """Keystone credentials (OS_* variables, auth type password by
    default when OS_PASSWORD is set) with Keystone down."""
    port = free_port()
    for key, value in (('OS_AUTH_URL', f'http://127.0.0.1:{port}/v3'),
                       ('OS_USERNAME', 'trainer'), ('OS_PASSWORD', 'x'),
                       ('OS_PROJECT_NAME', 'admin'),
                       ('OS_USER_DOMAIN_NAME', 'Default'),
                       ('OS_PROJECT_DOMAIN_NAME', 'Default')):
        clean_env.setenv(key, value)
    run = run_ingest([*WINDOW, '--retries', '0'], tmp_path / 't.csv')
    assert run.rc == 2
    assert run.error == (
        'nova-rl-trainer: error: cannot reach Keystone at '
        f'http://127.0.0.1:{port} (auth type password, user trainer): '
        'connection refused')


def test_unknown_source_and_auth_type(clean_env, tmp_path):
    run = run_ingest(['--source', 'influx', '--start', START, '--stop',
                      STOP], tmp_path / 't.csv')
    assert run.rc == 2
    assert "no metrics source 'influx'; installed: csv, gnocchi" in run.err
    run = run_ingest([*WINDOW, '--os-auth-type', 'kerberos-magic'],
                     tmp_path / 't.csv')
    assert run.rc == 2
    assert 'unknown auth type' in run.err
