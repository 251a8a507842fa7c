"""A real Placement API for the tests: openstack-placement from PyPI (the
main virtualenv has it beside nova), its WSGI application
(``placement.wsgi.api``, what DevStack serves) under uWSGI (the telemetry
virtualenv's, as for Gnocchi) on 127.0.0.1, a SQLite database created at
start-up (``sync_on_startup``), ``[api] auth_strategy = noauth2``: a request
needs an ``X-Auth-Token`` of the form ``user[:project]``, and ``admin`` is
an admin (keystoneauth1's ``admin_token`` plugin sends one).

Resource providers and inventories are created through the HTTP API, as
Nova's compute service does.
"""

from __future__ import annotations

import os
from pathlib import Path
import subprocess
import sys
import tempfile
import uuid as uuid_mod

import pytest

from tests.telemetry import servers

PLACEMENT_CONF = """\
[DEFAULT]
debug = false
[api]
auth_strategy = noauth2
[placement_database]
connection = sqlite:///{db}
sync_on_startup = true
"""

#: The microversion the helpers speak (parents for nested providers).
MICROVERSION = '1.20'


class Placement:
    """One Placement API process and its SQLite database in a temporary
    directory."""

    def __init__(self) -> None:
        self.venv = servers.TELEMETRY_VENV
        uwsgi = self.venv / 'bin' / 'uwsgi'
        if not uwsgi.exists():
            raise servers.ServerError(
                f'{uwsgi} is missing: run bash tools/setup-telemetry-venv.sh '
                '(tools/run-tests.sh does)')
        self.base = Path(tempfile.mkdtemp(prefix='nova-rl-placement-'))
        self.port = servers.free_port()
        self.endpoint = f'http://127.0.0.1:{self.port}'
        self.log = self.base / 'placement.log'
        self.proc: subprocess.Popen | None = None

    def start(self) -> 'Placement':
        (self.base / 'placement.conf').write_text(PLACEMENT_CONF.format(
            db=self.base / 'placement.sqlite'))
        cmd = [str(self.venv / 'bin' / 'uwsgi'),
               '--http11-socket', f'127.0.0.1:{self.port}',
               '--master', '--processes', '1', '--threads', '2',
               '--need-app', '--die-on-term', '--chdir', '/',
               # The virtualenv running the tests has openstack-placement.
               '--home', sys.prefix,
               '--wsgi', 'placement.wsgi.api',
               '--disable-logging', '--log-4xx', '--log-5xx']
        env = {k: v for k, v in os.environ.items()
               if not k.startswith('OS_')}
        env['OS_PLACEMENT_CONFIG_DIR'] = str(self.base)
        with open(self.log, 'ab') as out:
            self.proc = subprocess.Popen(
                cmd, stdout=out, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True, env=env)

        def ready() -> bool:
            status, _ = self.request('GET', '/resource_providers',
                                     timeout=2)
            return status == 200
        servers.wait_until(ready, f'Placement API on {self.endpoint}',
                           self.log, self.proc)
        return self

    def stop(self) -> None:
        servers.stop_group(self.proc, deadline_s=2.0)
        self.proc = None

    def close(self) -> None:
        self.stop()
        import shutil
        shutil.rmtree(self.base, ignore_errors=True)

    # -- the HTTP API -------------------------------------------------
    def request(self, method: str, path: str, body: object = None,
                token: str = 'admin', timeout: float = 10.0):
        """(status, decoded JSON or None); status 0 when unreachable."""
        status, answer = servers.http_json(
            self.endpoint + path, user=None, method=method, body=body,
            timeout=timeout, headers={
                'X-Auth-Token': token,
                'OpenStack-API-Version': f'placement {MICROVERSION}',
                'Accept': 'application/json'})
        # An empty answer (204) is no body, not an empty text.
        return status, None if answer == '' else answer

    def add_provider(self, name: str, inventories: dict[str, dict],
                     parent: str | None = None) -> str:
        """A resource provider with these inventories (``{'VCPU': {'total':
        64, 'reserved': 0, 'allocation_ratio': 4.0}, ...}``); its uuid."""
        rp = str(uuid_mod.uuid5(uuid_mod.NAMESPACE_URL, 'rp:' + name))
        body = {'name': name, 'uuid': rp}
        if parent:
            body['parent_provider_uuid'] = parent
        status, answer = self.request('POST', '/resource_providers', body)
        if status != 200:
            raise servers.ServerError(
                f'POST /resource_providers {name}: HTTP {status}: {answer}')
        if inventories:
            status, answer = self.request(
                'PUT', f'/resource_providers/{rp}/inventories',
                {'resource_provider_generation': answer['generation'],
                 'inventories': inventories})
            if status != 200:
                raise servers.ServerError(
                    f'PUT inventories of {name}: HTTP {status}: {answer}')
        return rp


def inventory(total: int, reserved: int = 0, ratio: float = 1.0) -> dict:
    return {'total': total, 'reserved': reserved, 'allocation_ratio': ratio}


@pytest.fixture(scope='module')
def placement():
    """A Placement API for this test module, stopped at its end."""
    try:
        p = Placement()
    except servers.ServerError as e:
        pytest.fail(str(e), pytrace=False)
    yield from servers.serve(p, p.close)


def clouds_yaml(path: Path, clouds: dict[str, str]) -> Path:
    """A clouds.yaml with an ``admin_token`` cloud per name -> endpoint
    (what a Placement in noauth2 mode takes)."""
    lines = ['clouds:']
    for name, endpoint in clouds.items():
        lines += [f'  {name}:', '    auth_type: admin_token', '    auth:',
                  f'      endpoint: {endpoint}', '      token: admin']
    path.write_text('\n'.join(lines) + '\n')
    return path
