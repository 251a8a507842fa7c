"""Authentication for the sources that talk to OpenStack services, with the
ecosystem's own options (keystoneauth1's argparse loading, as the
``gnocchi`` and ``openstack`` command lines take them):

* Keystone: ``--os-auth-type`` (``password``, ``v3applicationcredential``,
  ``token``, ...), ``--os-auth-url``, ``--os-username``, ... and the
  ``OS_*`` variables; ``--os-interface``, ``--os-region-name``,
  ``--os-endpoint-override`` choose the service's endpoint from the
  catalog.
* ``--os-cloud NAME`` (or ``OS_CLOUD``): a cloud of ``clouds.yaml``, read
  by openstacksdk's config loader, the other ``--os-*`` options overriding
  it.
* A standalone Gnocchi, as Gnocchi documents it: ``OS_AUTH_TYPE=gnocchi-basic``
  with ``GNOCCHI_USER`` and ``GNOCCHI_ENDPOINT`` in the environment, or
  ``--os-auth-type gnocchi-basic --user NAME --endpoint URL``
  (gnocchiclient's plugin; ``gnocchi-noauth`` likewise).

Without ``--os-auth-type``/``OS_AUTH_TYPE`` the type is ``password`` when
Keystone credentials are in sight (``OS_PASSWORD``/``OS_AUTH_URL`` or
``--os-auth-url``/``--os-password``), else ``gnocchi-basic`` (the
``gnocchi`` command line's default).

Retries: ``--retries N`` connection attempts and retries on 502/503/504,
with keystoneauth1's exponential backoff (0.5 s, 1 s, 2 s, ...).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import urllib.parse
import warnings
from typing import Any, Callable, Sequence

from nova_rl_trainer.telemetry.sources import SourceError

#: gnocchiclient's own plugins: the endpoint comes with the plugin, not
#: from a Keystone catalog.
STANDALONE_PLUGINS = ('gnocchi-basic', 'gnocchi-noauth')
RETRIABLE_STATUS_CODES = (502, 503, 504)
DEFAULT_RETRIES = 3
DEFAULT_TIMEOUT_S = 120.0


def _given(argv: Sequence[str], *flags: str) -> bool:
    return any(a == f or a.startswith(f + '=') for a in argv for f in flags)


def default_auth_type(argv: Sequence[str]) -> str | None:
    """The auth type when none is given (see the module doc); None when a
    clouds.yaml cloud decides."""
    if _given(argv, '--os-auth-type', '--os-auth-plugin'):
        return None        # keystoneauth1 reads it from argv
    if os.environ.get('OS_AUTH_TYPE') or os.environ.get('OS_AUTH_PLUGIN'):
        return None        # ... or from the environment
    if _given(argv, '--os-cloud') or os.environ.get('OS_CLOUD'):
        return None
    if (os.environ.get('OS_PASSWORD') or os.environ.get('OS_AUTH_URL')
            or _given(argv, '--os-auth-url', '--os-password')):
        return 'password'
    return 'gnocchi-basic'


def add_arguments(parser: argparse.ArgumentParser, argv: Sequence[str],
                  service_type: str) -> None:
    """The auth, session and endpoint options, for the plugin ``argv``
    (or the environment) selects. Raises ValueError for an unknown auth
    type."""
    from keystoneauth1 import adapter
    from keystoneauth1 import exceptions as ka_exc
    from keystoneauth1 import loading

    g = parser.add_argument_group(
        'authentication and connection',
        "keystoneauth1's options and OS_* variables; for a standalone "
        'Gnocchi: OS_AUTH_TYPE=gnocchi-basic, GNOCCHI_USER, '
        'GNOCCHI_ENDPOINT (or --user, --endpoint)')
    g.add_argument('--os-cloud', default=os.environ.get('OS_CLOUD'),
                   metavar='NAME',
                   help='a cloud of clouds.yaml (env OS_CLOUD)')
    g.add_argument('--retries', type=int, default=DEFAULT_RETRIES,
                   metavar='N',
                   help='connection retries and retries on HTTP '
                        f'{"/".join(map(str, RETRIABLE_STATUS_CODES))}, '
                        'with exponential backoff (default %(default)s)')
    loading.register_session_argparse_arguments(parser)
    parser.set_defaults(timeout=DEFAULT_TIMEOUT_S)
    try:
        plugin = loading.register_auth_argparse_arguments(
            parser, list(argv), default=default_auth_type(argv))
    except ka_exc.NoMatchingPlugin as e:
        raise ValueError(f'unknown auth type: {e}') from None
    if plugin is None or not _is_standalone(plugin):
        adapter.register_adapter_argparse_arguments(
            parser, service_type=service_type)


def _is_standalone(plugin: Any) -> bool:
    try:
        from gnocchiclient import auth as gauth
    except ImportError:
        return False
    return isinstance(plugin, (gauth.GnocchiBasicLoader,
                               gauth.GnocchiNoAuthLoader))


@dataclasses.dataclass
class Connection:
    """A keystoneauth1 session and where the service is."""

    session: Any
    adapter_options: dict
    auth_type: str
    #: What to tell the user about the credentials used.
    describe: str
    #: Keystone's URL, when Keystone authenticates.
    auth_url: str | None = None


def connect(args: argparse.Namespace, service_type: str) -> Connection:
    """The session and adapter options the parsed options describe.
    SourceError (one line) when they are incomplete."""
    from keystoneauth1 import exceptions as ka_exc
    from keystoneauth1 import loading

    retries = max(0, int(args.retries))
    adapter_options: dict = {
        'connect_retries': retries,
        'status_code_retries': retries,
        'retriable_status_codes': list(RETRIABLE_STATUS_CODES),
    }
    if getattr(args, 'os_cloud', None):
        return _connect_cloud(args, service_type, adapter_options)
    auth_type = args.os_auth_type
    try:
        auth = loading.load_auth_from_argparse_arguments(args)
        session = loading.load_session_from_argparse_arguments(
            args, auth=auth)
    except ka_exc.MissingRequiredOptions as e:
        names = ', '.join('--os-' + o.dest.replace('_', '-')
                          for o in e.options)
        raise SourceError(f'auth type {auth_type} needs {names} (or the '
                          'matching OS_* variables)') from None
    except (ka_exc.ClientException, TypeError, ValueError) as e:
        raise SourceError(f'cannot set up auth type {auth_type}: '
                          f'{one_line(e)}') from None
    if auth is None:
        raise SourceError('no authentication: give --os-auth-type (or '
                          'OS_AUTH_TYPE, or --os-cloud)')
    if auth_type in STANDALONE_PLUGINS:
        endpoint = getattr(args, 'os_endpoint', None)
        user = getattr(args, 'os_user', None) or getattr(
            args, 'os_user_id', None)
        describe = f'auth type {auth_type}, user {user}'
        adapter_options['endpoint_override'] = endpoint
    else:
        describe = f'auth type {auth_type}'
        if getattr(args, 'os_username', None):
            describe += f', user {args.os_username}'
        for key, attr in (('interface', 'os_interface'),
                          ('region_name', 'os_region_name'),
                          ('endpoint_override', 'os_endpoint_override'),
                          ('service_type', 'os_service_type'),
                          ('service_name', 'os_service_name')):
            value = getattr(args, attr, None)
            if value:
                adapter_options[key] = value
    adapter_options.setdefault('service_type', service_type)
    return Connection(session, adapter_options, str(auth_type), describe,
                      auth_url=getattr(args, 'os_auth_url', None))


def _connect_cloud(args: argparse.Namespace, service_type: str,
                   adapter_options: dict) -> Connection:
    try:
        from openstack import config as os_config
        from openstack import exceptions as os_exc
    except ImportError:
        raise SourceError('--os-cloud needs openstacksdk (pip install '
                          'openstacksdk)') from None
    try:
        with warnings.catch_warnings():
            # openstacksdk's notes about its own optional features.
            warnings.simplefilter('ignore')
            region = os_config.OpenStackConfig().get_one(
                cloud=args.os_cloud, argparse=args)
            session = region.get_session()
    except os_exc.ConfigException as e:
        raise SourceError(f'cloud {args.os_cloud!r}: {one_line(e)}') \
            from None
    except Exception as e:  # noqa: BLE001 - keystoneauth1's many kinds
        raise SourceError(f'cloud {args.os_cloud!r}: {one_line(e)}') \
            from None
    auth_type = str(region.config.get('auth_type') or 'password')
    adapter_options['service_type'] = service_type
    interface = region.get_interface(service_type)
    if interface:
        adapter_options['interface'] = interface
    if region.region_name:
        adapter_options['region_name'] = region.region_name
    override = region.get_endpoint(service_type)
    if override:
        adapter_options['endpoint_override'] = override
    elif auth_type in STANDALONE_PLUGINS:
        adapter_options['endpoint_override'] = (
            region.config.get('auth', {}).get('endpoint'))
    return Connection(session, adapter_options, auth_type,
                      f'cloud {args.os_cloud}, auth type {auth_type}',
                      auth_url=region.config.get('auth', {}).get('auth_url'))


class RequestErrors:
    """The one-line SourceErrors that the clients of OpenStack services
    (on a keystoneauth1 session) word alike, for one ``service``
    (``'Gnocchi'``); each client keeps its own branches (its exceptions,
    its advice for an HTTP status) and calls these for the rest.

    ``catalog``: the service's catalog entry as messages name it
    (``"'metric' (Gnocchi)"``); ``where(e=None)``: the failed request's
    server, else the configured endpoint."""

    def __init__(self, service: str, catalog: str, connection: Connection,
                 where: Callable[..., str]) -> None:
        self.service = service
        self.catalog = catalog
        self.connection = connection
        self.where = where
        self.tries = 1 + int(
            connection.adapter_options.get('connect_retries', 0) or 0)

    @property
    def attempts(self) -> str:
        return f'{self.tries} attempt{"s" if self.tries > 1 else ""}'

    def keystone_in(self, text: str) -> str | None:
        """Keystone's address when ``text`` (lower case: a failed
        request's message, URL) names it."""
        auth_url = self.connection.auth_url
        if not auth_url:
            return None
        parts = urllib.parse.urlsplit(auth_url)
        if parts.netloc and parts.netloc.lower() in text:
            return f'{parts.scheme}://{parts.netloc}'
        return None

    def unreachable(self, e: Any, what: str, reason: str,
                    keystone: str | None = None) -> SourceError:
        """A connection failed: to Keystone (at ``keystone``) or to the
        service, after every attempt."""
        if keystone:
            return SourceError(f'cannot reach Keystone at {keystone} '
                               f'({self.connection.describe}): {reason}')
        return SourceError(f'cannot reach {self.service} at {self.where(e)} '
                           f'({what}): {reason}, {self.attempts}')

    def tls(self, e: Any, detail: str) -> SourceError:
        return SourceError(f'TLS failed with {self.service} at '
                           f'{self.where(e)}: {detail}')

    def keystone_answered(self, code: Any, detail: str,
                          keystone: str | None = None) -> SourceError:
        """Keystone (at ``keystone`` if known) refused to authenticate."""
        at = f' at {keystone}' if keystone else ''
        return SourceError(f'Keystone{at} answered HTTP {code} while '
                           f'authenticating ({self.connection.describe}): '
                           f'{detail}')

    def http_status(self, where: str, what: str, code: int,
                    detail: str) -> SourceError:
        """An HTTP status the client has no advice for: the service failed
        (5xx, after the retries for 502/503/504) or rejected ``what``."""
        if code >= 500:
            tries = self.tries
            retried = (f' after {tries - 1} retr'
                       f'{"ies" if tries > 2 else "y"}'
                       if code in RETRIABLE_STATUS_CODES
                       and tries > 1 else '')
            return SourceError(f'{self.service} at {where} failed on {what}: '
                               f'HTTP {code}{retried}: {detail}')
        return SourceError(f'{self.service} at {where} rejected {what}: HTTP '
                           f'{code}: {detail}')

    def common(self, e: BaseException, what: str) -> SourceError:
        """keystoneauth1's ClientExceptions the client's own branches left
        (no endpoint in the catalog, missing auth options, any other), a
        ValueError (JSON that does not decode), else the client's
        malformed-answer exception."""
        from keystoneauth1 import exceptions as ka_exc
        conn = self.connection
        if isinstance(e, ka_exc.EndpointNotFound):
            opts = conn.adapter_options
            return SourceError(
                f'no {self.catalog} endpoint in the catalog (interface '
                f"{opts.get('interface', 'public')}, region "
                f"{opts.get('region_name') or 'any'}): {one_line(e)}")
        if isinstance(e, ka_exc.MissingRequiredOptions):
            return SourceError(f'{conn.describe}: {one_line(e)}')
        if isinstance(e, ka_exc.ClientException):
            return SourceError(f'{what} failed ({conn.describe}): '
                               f'{one_line(e)}')
        if isinstance(e, ValueError):
            e = f'not JSON ({one_line(e, 100)})'
        return SourceError(f'{self.service} at {self.where()} sent a '
                           f'malformed answer to {what}: {e}')


def connection_reason(e: Any, closed: str | None = None) -> str:
    """Why a connection failed, in a few words; ``closed`` (if given)
    when the server closed it without answering."""
    full = str(getattr(e, 'message', None) or e).lower()
    if 'refused' in full:
        return 'connection refused'
    if 'timed out' in full or 'timeout' in full:
        return 'timed out'
    if 'name or service not known' in full or 'name resolution' in full:
        return 'unknown host name'
    if closed is not None and closed_early(full):
        return closed
    return one_line(getattr(e, 'message', None) or e, 160)


def closed_early(text: str) -> bool:
    """The server closed the connection without answering (``text``: the
    failure's message, lower case)."""
    return ('remote end closed' in text or 'remotedisconnected' in text
            or 'connection aborted' in text)


def one_line(e: BaseException | str, limit: int = 300) -> str:
    """``e``'s text on one line, HTML tags dropped, at most ``limit``
    characters."""
    import re
    text = str(e)
    text = re.sub(r'<[^>]+>', ' ', text)
    text = ' '.join(text.split())
    if len(text) > limit:
        text = text[:limit - 3] + '...'
    return text or type(e).__name__
