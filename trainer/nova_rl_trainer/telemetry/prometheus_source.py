"""The ``prometheus`` metrics source: Ceilometer's metrics in Prometheus.

What it reads is what Ceilometer 27's Prometheus exporter exposes
(``ceilometer/polling/prom_exporter.py``; ``[polling]
enable_prometheus_exporter = true`` on each compute node's
``ceilometer-polling``, scraped by Prometheus): one gauge per meter, named
``ceilometer_`` + the meter with dots made underscores, for instances
``ceilometer_cpu`` (cumulative CPU time, ns), ``ceilometer_vcpus``,
``ceilometer_memory`` (flavor MiB), ``ceilometer_memory_usage`` (guest MiB
in use), ``ceilometer_disk_root_size``, ``ceilometer_disk_ephemeral_size``
(GiB), with the labels ``resource`` (the instance id), ``project``,
``user``, ``flavor_id``, ``flavor_name``, ``resource_name``, ``type``,
``counter``, ``unit``, ``publisher``, ``server_group`` and ``vm_instance``
(Nova's hashed ``hostId``, not a host name). The compute host Nova put an
instance on is in no label of the exporter: Prometheus's target label
``instance`` (``compute-1:9101``) carries it, or a label the scrape
configuration adds by relabelling; ``--host-label`` names it (default
``host``; for ``instance`` the ``:port`` is dropped).

Ceilometer's older Pushgateway publisher (``prometheus://`` in the
pipeline) exports the same meters without the prefix and with the labels
``resource_id``/``project_id``: ``--metric-prefix '' --resource-label
resource_id --project-label project_id``.

Requests (Prometheus's HTTP API, a few per window, never one per
instance): instant queries (``/api/v1/query``) at ``--stop`` over the
window for the instances, their last sizes and which meters they have
(``last_over_time``), when each was first and last seen
(``min_over_time``/``max_over_time`` of ``timestamp()``, a subquery at
``--step`` resolution) and their counter resets (``resets()``); a range
query (``/api/v1/query_range``) at ``--step`` for their CPU. A query
Prometheus finds too large (``--query.max-samples``, ``--query.timeout``)
is split in time; range queries are sized to stay under ``--max-points``
values per answer.

Lifetimes (:mod:`~nova_rl_trainer.telemetry.prometheus_instances`), CPU
and memory usage (:mod:`~nova_rl_trainer.telemetry.prometheus_usage`),
the requests (:mod:`~nova_rl_trainer.telemetry.prometheus_api`) and the
selectors (:mod:`~nova_rl_trainer.telemetry.prometheus_promql`) each have
a module of their own.
"""

from __future__ import annotations

import argparse
import math
import os
import re
from typing import Sequence
import urllib.parse

from nova_rl_trainer.telemetry.prometheus_api import DEFAULT_RETRIES
from nova_rl_trainer.telemetry.prometheus_api import DEFAULT_TIMEOUT_S
from nova_rl_trainer.telemetry.prometheus_api import PrometheusAPI
from nova_rl_trainer.telemetry.prometheus_api import RETRIABLE_STATUS_CODES
from nova_rl_trainer.telemetry.prometheus_instances import \
    PrometheusInstances
from nova_rl_trainer.telemetry.prometheus_promql import PromQL
from nova_rl_trainer.telemetry.prometheus_usage import PrometheusUsage
from nova_rl_trainer.telemetry.sources import MetricsSource
from nova_rl_trainer.telemetry.sources import SourceError

DEFAULT_PREFIX = 'ceilometer_'
DEFAULT_RESOURCE_LABEL = 'resource'
DEFAULT_PROJECT_LABEL = 'project'
DEFAULT_HOST_LABEL = 'host'
DEFAULT_STEP_S = 300.0
DEFAULT_MAX_POINTS = 200_000

_LABEL_RE = re.compile(r'^[a-zA-Z_][a-zA-Z0-9_]*$')
_PREFIX_RE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)?$')


class PrometheusSource(PrometheusUsage, PrometheusInstances, PromQL,
                       PrometheusAPI, MetricsSource):
    name = 'prometheus'
    description = ("Ceilometer's Prometheus metrics (ceilometer_cpu, "
                   'ceilometer_vcpus, ... labelled by resource)')

    def __init__(self, url: str, step_s: float = DEFAULT_STEP_S,
                 host_label: str = DEFAULT_HOST_LABEL,
                 resource_label: str = DEFAULT_RESOURCE_LABEL,
                 project_label: str = DEFAULT_PROJECT_LABEL,
                 metric_prefix: str = DEFAULT_PREFIX, match: str = '',
                 user: str | None = None, password: str | None = None,
                 token: str | None = None, verify: bool | str = True,
                 cert: str | tuple[str, str] | None = None,
                 timeout_s: float = DEFAULT_TIMEOUT_S,
                 retries: int = DEFAULT_RETRIES,
                 max_points: int = DEFAULT_MAX_POINTS) -> None:
        url = (url or '').strip()
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ('http', 'https') or not parts.netloc:
            raise SourceError(f'--url {url!r}: not an http:// or https:// '
                              'URL (e.g. http://prometheus:9090)')
        if not (step_s > 0 and math.isfinite(step_s)):
            raise SourceError(f'--step {step_s:g}: must be a positive '
                              'number of seconds')
        for option, label in (('--host-label', host_label),
                              ('--resource-label', resource_label),
                              ('--project-label', project_label)):
            if not _LABEL_RE.match(label or ''):
                raise SourceError(f'{option} {label!r}: not a Prometheus '
                                  'label name')
        if not _PREFIX_RE.match(metric_prefix):
            raise SourceError(f'--metric-prefix {metric_prefix!r}: not the '
                              'start of a Prometheus metric name')
        self._connect(url, user=user, password=password, token=token,
                      verify=verify, cert=cert, timeout_s=timeout_s,
                      retries=retries)
        self.step_s = float(step_s)
        self.host_label = host_label
        self.resource_label = resource_label
        self.project_label = project_label
        self.metric_prefix = metric_prefix
        self.match = (match or '').strip().strip(',')
        self.max_points = max(1, int(max_points))

    # -- command line -------------------------------------------------
    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser,
                      argv: Sequence[str]) -> None:
        env = os.environ.get
        g = parser.add_argument_group(
            'prometheus source',
            "Ceilometer's Prometheus exporter's metrics (ceilometer_cpu, "
            'ceilometer_vcpus, ...) through the HTTP API')
        g.add_argument('--url', default=env('PROMETHEUS_URL'),
                       metavar='URL',
                       help="Prometheus's address, with its route prefix "
                            'if any (env PROMETHEUS_URL; e.g. '
                            'http://prometheus:9090)')
        g.add_argument('--step', type=float, default=DEFAULT_STEP_S,
                       metavar='S',
                       help='resolution, seconds (default %(default)g: '
                            "Ceilometer's polling interval; use a "
                            'multiple of it)')
        g.add_argument('--host-label', default=DEFAULT_HOST_LABEL,
                       metavar='LABEL',
                       help='label holding the compute host as Nova names '
                            'it (default %(default)s; "instance", the '
                            "scrape target, without its :port; Ceilometer's "
                            'vm_instance is a hash, not a host)')
        g.add_argument('--resource-label', default=DEFAULT_RESOURCE_LABEL,
                       metavar='LABEL',
                       help='label holding the instance id (default '
                            '%(default)s)')
        g.add_argument('--project-label', default=DEFAULT_PROJECT_LABEL,
                       metavar='LABEL',
                       help='label holding the project id (default '
                            '%(default)s)')
        g.add_argument('--metric-prefix', default=DEFAULT_PREFIX,
                       metavar='PREFIX',
                       help='metric name prefix (default %(default)s)')
        g.add_argument('--match', default='', metavar='MATCHERS',
                       help='label matchers added to every selector, e.g. '
                            "'job=\"ceilometer\"'")
        g.add_argument('--basic-auth-user', default=env('PROMETHEUS_USER'),
                       metavar='NAME',
                       help='HTTP basic auth user (env PROMETHEUS_USER); '
                            'the password from PROMETHEUS_PASSWORD or '
                            '--basic-auth-password-file')
        g.add_argument('--basic-auth-password-file', metavar='FILE',
                       help='file holding the basic auth password')
        g.add_argument('--bearer-token-file', metavar='FILE',
                       help='file holding a bearer token (or the token in '
                            'env PROMETHEUS_BEARER_TOKEN)')
        tls = g.add_mutually_exclusive_group()
        tls.add_argument('--verify', dest='verify', action='store_true',
                         default=True,
                         help="verify the server's TLS certificate "
                              '(default)')
        tls.add_argument('--insecure', dest='verify', action='store_false',
                         help="do not verify the server's TLS certificate")
        g.add_argument('--cacert', metavar='FILE',
                       help='CA bundle to verify the server with')
        g.add_argument('--cert', metavar='FILE',
                       help='client certificate (PEM), for mutual TLS')
        g.add_argument('--key', metavar='FILE',
                       help="the client certificate's key, when not in "
                            '--cert')
        g.add_argument('--timeout', type=float, default=DEFAULT_TIMEOUT_S,
                       metavar='S',
                       help='seconds to wait for an answer (default '
                            '%(default)g)')
        g.add_argument('--retries', type=int, default=DEFAULT_RETRIES,
                       metavar='N',
                       help='retries after a connection error or HTTP '
                            f'{"/".join(map(str, RETRIABLE_STATUS_CODES))}'
                            ', with backoff 0.5 s, 1 s, 2 s, ... (default '
                            '%(default)s)')
        g.add_argument('--max-points', type=int, default=DEFAULT_MAX_POINTS,
                       metavar='N',
                       help='values per range query answer, at most '
                            '(default %(default)s)')

    @classmethod
    def from_arguments(cls, args: argparse.Namespace) -> 'PrometheusSource':
        if not args.url:
            raise SourceError('no Prometheus: give --url (or PROMETHEUS_URL)')
        password = None
        if args.basic_auth_password_file:
            password = _read_secret(args.basic_auth_password_file,
                                    '--basic-auth-password-file')
        elif os.environ.get('PROMETHEUS_PASSWORD') is not None:
            password = os.environ['PROMETHEUS_PASSWORD']
        if password is not None and not args.basic_auth_user:
            raise SourceError('a basic auth password without a user: give '
                              '--basic-auth-user (or PROMETHEUS_USER)')
        token = None
        if args.bearer_token_file:
            token = _read_secret(args.bearer_token_file,
                                 '--bearer-token-file')
        elif os.environ.get('PROMETHEUS_BEARER_TOKEN'):
            token = os.environ['PROMETHEUS_BEARER_TOKEN']
        if args.cacert and not os.path.isfile(args.cacert):
            raise SourceError(f'--cacert {args.cacert}: no such file')
        verify: bool | str = args.verify
        if args.cacert and args.verify:
            verify = args.cacert
        cert: str | tuple[str, str] | None = None
        if args.cert:
            cert = (args.cert, args.key) if args.key else args.cert
        elif args.key:
            raise SourceError('--key without --cert')
        return cls(args.url, step_s=args.step, host_label=args.host_label,
                   resource_label=args.resource_label,
                   project_label=args.project_label,
                   metric_prefix=args.metric_prefix, match=args.match,
                   user=args.basic_auth_user, password=password,
                   token=token, verify=verify, cert=cert,
                   timeout_s=args.timeout, retries=args.retries,
                   max_points=args.max_points)

    def warnings(self) -> list[str]:
        return list(self._warnings)

    def close(self) -> None:
        self.session.close()


def _read_secret(path: str, option: str) -> str:
    try:
        with open(path, encoding='utf-8') as f:
            return f.read().strip()
    except OSError as e:
        raise SourceError(f'cannot read {option} {path}: '
                          f'{e.strerror or e}') from None
