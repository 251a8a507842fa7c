"""Placement's API for :mod:`nova_rl_trainer.telemetry.placement`: the
authentication and connection options, the connections and the client
(every failure one line).

Requests (through a keystoneauth1 session, as every OpenStack client):
``GET /resource_providers`` (Placement does not paginate it: the handler
of openstack-placement 16 takes no ``limit`` or ``marker``), then
``GET /resource_providers/{uuid}/inventories`` for each provider.
"""

from __future__ import annotations

import argparse
import os
import urllib.parse
from typing import Any, Callable, Sequence

from nova_rl_trainer.telemetry import auth
from nova_rl_trainer.telemetry.sources import SourceError

SERVICE_TYPE = 'placement'


class _Malformed(Exception):
    """The answer parsed but is not what Placement sends."""


# -- options and connections ---------------------------------------------

def default_auth_type(argv: Sequence[str]) -> str | None:
    """``password`` when Keystone credentials are in sight, else none (the
    user says which): a standalone Placement has no plugin of its own."""
    found = auth.default_auth_type(argv)
    return None if found in auth.STANDALONE_PLUGINS else found


def add_arguments(parser: argparse.ArgumentParser,
                  argv: Sequence[str]) -> None:
    """keystoneauth1's auth, session and adapter options for Placement
    (``--os-*``, the ``OS_*`` variables, ``--os-cloud``) and
    ``--retries``. Raises ValueError for an unknown auth type."""
    from keystoneauth1 import adapter
    from keystoneauth1 import exceptions as ka_exc
    from keystoneauth1 import loading

    g = parser.add_argument_group(
        'Placement: authentication and connection',
        "keystoneauth1's options and OS_* variables, as the openstack "
        'command line takes them, or --os-cloud; a Placement without '
        'Keystone ([api] auth_strategy = noauth2): --os-auth-type '
        'admin_token --os-endpoint URL --os-token admin')
    g.add_argument('--os-cloud', default=os.environ.get('OS_CLOUD'),
                   metavar='NAME',
                   help='a cloud of clouds.yaml (env OS_CLOUD)')
    g.add_argument('--retries', type=int, default=auth.DEFAULT_RETRIES,
                   metavar='N',
                   help='connection retries and retries on HTTP '
                        f'{"/".join(map(str, auth.RETRIABLE_STATUS_CODES))}'
                        ', with exponential backoff (default %(default)s)')
    loading.register_session_argparse_arguments(parser)
    parser.set_defaults(timeout=auth.DEFAULT_TIMEOUT_S)
    try:
        loading.register_auth_argparse_arguments(
            parser, list(argv), default=default_auth_type(argv))
    except ka_exc.NoMatchingPlugin as e:
        raise ValueError(f'unknown auth type: {e}') from None
    adapter.register_adapter_argparse_arguments(parser,
                                                service_type=SERVICE_TYPE)


def connect(args: argparse.Namespace) -> auth.Connection:
    """The connection :func:`add_arguments`' options describe."""
    return auth.connect(args, service_type=SERVICE_TYPE)


def cloud_connection(cloud: str, retries: int) -> auth.Connection:
    """Placement through a clouds.yaml cloud (any auth type it names)."""
    return auth.connect(argparse.Namespace(os_cloud=cloud, retries=retries),
                        service_type=SERVICE_TYPE)


def shared_connection(conn: auth.Connection,
                      endpoint: str | None = None) -> auth.Connection:
    """Placement through another service's Keystone session (the same
    credentials, the catalog's ``placement`` endpoint unless
    ``endpoint``). SourceError for a session without Keystone."""
    if conn.auth_type in auth.STANDALONE_PLUGINS:
        raise SourceError(
            f'--from-placement: the metrics source authenticates with '
            f'{conn.auth_type}, which gives no Keystone session for '
            'Placement; give --placement-cloud NAME (a clouds.yaml cloud '
            'for Placement) or --cluster FILE')
    options = {k: v for k, v in conn.adapter_options.items()
               if k in ('connect_retries', 'status_code_retries',
                        'retriable_status_codes', 'interface',
                        'region_name')}
    options['service_type'] = SERVICE_TYPE
    if endpoint:
        options['endpoint_override'] = endpoint
    return auth.Connection(conn.session, options, conn.auth_type,
                           conn.describe, auth_url=conn.auth_url)


# -- the API ----------------------------------------------------------------

class PlacementClient:
    """The two GETs this module needs, every failure one line."""

    def __init__(self, connection: auth.Connection) -> None:
        from keystoneauth1 import adapter
        self.connection = connection
        self.adapter = adapter.Adapter(session=connection.session,
                                       **connection.adapter_options)
        self.requests = 0

    @property
    def endpoint(self) -> str:
        """Placement's URL (from the options or the catalog)."""
        override = self.connection.adapter_options.get('endpoint_override')
        if override:
            return str(override).rstrip('/')
        try:
            return str(self.adapter.get_endpoint()).rstrip('/')
        except Exception:  # noqa: BLE001 - only for messages
            return "the catalog's placement endpoint"

    def _where(self, e: Any = None) -> str:
        url = getattr(e, 'url', None) if e is not None else None
        if url:
            parts = urllib.parse.urlsplit(str(url))
            if parts.netloc:
                return f'{parts.scheme}://{parts.netloc}'
        return self.endpoint

    def _call(self, what: str, fn: Callable[[], Any]) -> Any:
        from keystoneauth1 import exceptions as ka_exc
        conn = self.connection
        errors = auth.RequestErrors('Placement', "'placement'", conn,
                                    self._where)
        try:
            return fn()
        except ka_exc.SSLError as e:
            raise errors.tls(e, auth.one_line(e)) from None
        except (ka_exc.ConnectFailure, ka_exc.ConnectionError) as e:
            raise errors.unreachable(e, what, _reason(e),
                                     _keystone(errors, e)) from None
        except ka_exc.HttpError as e:
            code = e.http_status or 0
            keystone = _keystone(errors, e)
            if keystone:
                raise errors.keystone_answered(
                    code, auth.one_line(e, 200), keystone) from None
            where = self._where(e)
            detail = auth.one_line(getattr(e, 'details', None)
                                   or e.message or e, 200)
            if code == 401:
                raise SourceError(
                    f'Placement at {where} refused the credentials '
                    f'({conn.describe}): HTTP 401 on {what}; check '
                    '--os-auth-type and its options (or the OS_* '
                    'variables, --os-cloud)') from None
            if code == 403:
                raise SourceError(
                    f'Placement at {where} forbids {what} to '
                    f'{conn.describe}: HTTP 403 ({detail}); listing '
                    'resource providers needs the admin role or a policy '
                    'granting it') from None
            if code == 404:
                raise SourceError(
                    f'no Placement API at {where}: HTTP 404 on {what} '
                    f'({_path(e)}); check the endpoint (--os-endpoint, '
                    '--os-endpoint-override or the catalog)') from None
            raise errors.http_status(where, what, code, detail) from None
        except (ka_exc.MissingAuthPlugin, ka_exc.AuthorizationFailure) as e:
            raise SourceError(
                f'no valid authentication for Placement ({conn.describe}): '
                f'{auth.one_line(e, 120)}; is an option of the auth type '
                f'missing? (--help with --os-auth-type {conn.auth_type} '
                'lists them)') from None
        except (ka_exc.ClientException, _Malformed, ValueError) as e:
            raise errors.common(e, what) from None

    def _get(self, path: str, what: str) -> Any:
        def get() -> Any:
            self.requests += 1
            resp = self.adapter.get(path, raise_exc=True,
                                    headers={'Accept': 'application/json'})
            return resp.json()
        return self._call(what, get)

    def providers(self) -> list[dict]:
        """Every resource provider: ``[{'uuid', 'name', ...}, ...]``."""
        what = 'GET /resource_providers'

        def check(doc: Any) -> list[dict]:
            rps = doc.get('resource_providers') if isinstance(
                doc, dict) else None
            if not isinstance(rps, list):
                raise _Malformed('no resource_providers list')
            for rp in rps:
                if not isinstance(rp, dict) or not isinstance(
                        rp.get('uuid'), str) or not isinstance(
                            rp.get('name'), str):
                    raise _Malformed('a provider without a uuid or name')
            return rps
        doc = self._get('/resource_providers', what)
        return self._call(what, lambda: check(doc))

    def inventories(self, uuid: str) -> dict[str, dict]:
        """``{resource class: {'total', 'reserved', 'allocation_ratio',
        ...}}`` of one provider."""
        path = f'/resource_providers/{urllib.parse.quote(uuid)}/inventories'
        what = f'GET {path}'

        def check(doc: Any) -> dict[str, dict]:
            inv = doc.get('inventories') if isinstance(doc, dict) else None
            if not isinstance(inv, dict):
                raise _Malformed('no inventories object')
            return inv
        doc = self._get(path, what)
        return self._call(what, lambda: check(doc))

    def close(self) -> None:
        inner = getattr(self.connection.session, 'session', None)
        if inner is not None and hasattr(inner, 'close'):
            inner.close()


def _keystone(errors: auth.RequestErrors, e: Any) -> str | None:
    """Keystone's address when the failed request went to it."""
    url = str(getattr(e, 'url', None) or '')
    return errors.keystone_in(
        (url + ' ' + str(getattr(e, 'message', None) or e)).lower())


def _reason(e: Any) -> str:
    return auth.connection_reason(
        e, closed='the server closed the connection without answering')


def _path(e: Any) -> str:
    url = getattr(e, 'url', None)
    method = getattr(e, 'method', None) or ''
    if not url:
        return method or 'request'
    return f'{method} {urllib.parse.urlsplit(str(url)).path}'.strip()
