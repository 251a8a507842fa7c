"""Gnocchi's API for :mod:`nova_rl_trainer.telemetry.gnocchi_source`:
the requests (through gnocchiclient on the keystoneauth1 session of
:mod:`nova_rl_trainer.telemetry.auth`), what their answers hold, and every
failure as one line.

Requests: the instance search (``POST /v1/search/resource/instance``,
paginated by id), then Gnocchi's aggregates API (``POST /v1/aggregates``
with ``groupby=id``, ``needed_overlap=0``, ``fill``) for many instances at
once: one request for the sizes of up to ``--chunk`` instances (resampled
to a day, so a long history costs little), one for their ``cpu`` rates
(sized to stay under ``--max-points`` values per answer). Never one
request per instance per metric.
"""

from __future__ import annotations

import datetime as dt
import math
import urllib.parse
from typing import Any, Callable, Sequence

from nova_rl_trainer.telemetry import auth
from nova_rl_trainer.telemetry.sources import SourceError
from nova_rl_trainer.telemetry.sources import utc


class _Malformed(Exception):
    """The answer parsed but is not what Gnocchi sends."""


class _NoSuchMetric(Exception):
    """Gnocchi's 404 for a metric none of the asked instances has."""


class GnocchiAPI:
    """The requests of the ``gnocchi`` source, a base of its
    :class:`~nova_rl_trainer.telemetry.gnocchi_source.GnocchiSource`
    (whose ``connection``, ``client``, ``resource_type``,
    ``granularity_s`` and ``page_size`` they use)."""

    # -- errors -------------------------------------------------------
    def _where(self, e: Any = None) -> str:
        """Which Gnocchi: the failed request's server, else the
        configured endpoint."""
        url = getattr(e, 'url', None) if e is not None else None
        if url:
            parts = urllib.parse.urlsplit(str(url))
            if parts.netloc:
                return f'{parts.scheme}://{parts.netloc}'
        override = self.connection.adapter_options.get('endpoint_override')
        if override:
            return str(override).rstrip('/')
        try:
            return str(self.client.api.get_endpoint()).rstrip('/')
        except Exception:  # noqa: BLE001 - only for the message
            return "the catalog's metric endpoint"

    def _call(self, what: str, fn: Callable[[], Any]) -> Any:
        """``fn()``, every failure turned into a one-line SourceError."""
        from gnocchiclient import exceptions as gexc
        from keystoneauth1 import exceptions as ka_exc
        conn = self.connection
        errors = auth.RequestErrors('Gnocchi', "'metric' (Gnocchi)", conn,
                                    self._where)
        try:
            return fn()
        except (gexc.ConnectionFailure, gexc.ConnectionTimeout,
                gexc.UnknownConnectionError, ka_exc.ConnectFailure,
                ka_exc.ConnectionError) as e:
            full = str(getattr(e, 'message', None) or e).lower()
            keystone = errors.keystone_in(full)
            if not keystone and auth.closed_early(full):
                raise SourceError(
                    f'Gnocchi at {self._where(e)} closed the connection '
                    f'without answering {what}, {errors.attempts}: the '
                    "server failed (see Gnocchi's log)") from None
            raise errors.unreachable(e, what, auth.connection_reason(e),
                                     keystone) from None
        except gexc.SSLError as e:
            raise errors.tls(e, auth.one_line(e.message)) from None
        except (gexc.Unauthorized, ka_exc.Unauthorized) as e:
            raise SourceError(
                f'Gnocchi at {self._where(e)} refused the credentials '
                f'({conn.describe}): HTTP 401 on {what}; check '
                '--os-auth-type and its options (GNOCCHI_USER and '
                'GNOCCHI_ENDPOINT for gnocchi-basic, the OS_* variables '
                'for Keystone)') from None
        except (gexc.Forbidden, ka_exc.Forbidden) as e:
            raise SourceError(
                f'Gnocchi at {self._where(e)} forbids {what} to '
                f'{conn.describe}: HTTP 403 '
                f'({auth.one_line(_message(e), 120)}); reading every '
                "project's instances needs the admin role or a policy "
                'granting it') from None
        except gexc.ResourceTypeNotFound as e:
            raise SourceError(
                f'Gnocchi at {self._where(e)} has no resource type '
                f'{self.resource_type!r}: Ceilometer has not created its '
                'resource types there (ceilometer-upgrade), or this is not '
                'the Gnocchi Ceilometer publishes to') from None
        except gexc.MetricNotFound as e:
            raise _NoSuchMetric(auth.one_line(_message(e))) from None
        except gexc.NotFound as e:
            raise SourceError(
                f'no Gnocchi API at {self._where(e)}: HTTP 404 on {what} '
                f'({_path(e)}); check the endpoint (GNOCCHI_ENDPOINT, '
                '--endpoint, --os-endpoint-override or the catalog)') \
                from None
        except gexc.ClientException as e:
            code = e.code or 0
            detail = auth.one_line(_message(e), 200)
            if code == 400 and 'Granularities are missing' in detail:
                raise SourceError(
                    f'Gnocchi at {self._where(e)} has no '
                    f'{self.granularity_s:g} s granularity for {what}: '
                    'give --granularity matching the archive policy') \
                    from None
            raise errors.http_status(self._where(e), what, code, detail) \
                from None
        except ka_exc.HttpError as e:    # Gnocchi's own come as gexc's
            raise errors.keystone_answered(e.http_status,
                                           auth.one_line(e)) from None
        except (ka_exc.ClientException, _Malformed, ValueError) as e:
            raise errors.common(e, what) from None

    # -- requests -----------------------------------------------------
    def check(self) -> None:
        """Gnocchi answers and has Ceilometer's resource type."""
        if self._checked:
            return

        def get() -> dict:
            rt = self.client.resource_type.get(self.resource_type)
            if not isinstance(rt, dict) or not isinstance(
                    rt.get('attributes'), dict):
                raise _Malformed('no attributes in the resource type')
            return rt
        rt = self._call(f'the {self.resource_type!r} resource type', get)
        missing = [a for a in ('host', 'flavor_id', 'launched_at',
                               'deleted_at') if a not in rt['attributes']]
        if missing:
            self._warnings.append(
                f'resource type {self.resource_type!r} has no '
                f'{", ".join(missing)}: Ceilometer\'s resource type '
                'upgrades have not run (ceilometer-upgrade)')
        self._checked = True

    def _post_json(self, path: str, params: dict, body: dict) -> Any:
        query = urllib.parse.urlencode(
            [(k, v) for k, v in params.items() if v is not None],
            doseq=True)
        resp = self.client.api.post(
            f'{path}?{query}', json=body,
            headers={'Accept': 'application/json',
                     'Content-Type': 'application/json'})
        return resp.json()

    def _search_page(self, query: dict, marker: str | None) -> list[dict]:
        params = {'limit': self.page_size, 'sort': 'id:asc',
                  'marker': marker}
        page = self._post_json(f'v1/search/resource/{self.resource_type}',
                               params, query)
        if not isinstance(page, list):
            raise _Malformed(f'expected a list of resources, got '
                             f'{type(page).__name__}')
        return page

    def _aggregates(self, what: str, operations: list, ids: Sequence[str],
                    **params: Any) -> dict[str, dict]:
        """``POST /v1/aggregates`` grouped by id: ``{id: {metric:
        {aggregation: [[timestamp, granularity, value], ...]}}}``."""
        body = {'resource_type': self.resource_type,
                'search': {'in': {'id': list(ids)}},
                'operations': operations}
        params = dict(params, groupby='id', needed_overlap=0,
                      granularity=f'{self.granularity_s:g}')

        def fetch() -> dict[str, dict]:
            answer = self._post_json('v1/aggregates', params, body)
            if not isinstance(answer, list):
                raise _Malformed(f'expected a list of groups, got '
                                 f'{type(answer).__name__}')
            out: dict[str, dict] = {}
            for group in answer:
                try:
                    rid = group['group']['id']
                    by_resource = group['measures']['measures']
                except (KeyError, TypeError):
                    raise _Malformed('a group without group.id or '
                                     'measures.measures') from None
                if not isinstance(by_resource, dict) or not isinstance(
                        rid, str):
                    raise _Malformed(f'group {rid!r}: measures is not an '
                                     'object')
                merged: dict = {}
                for series in by_resource.values():
                    if not isinstance(series, dict):
                        raise _Malformed(f'group {rid}: a metric entry is '
                                         'not an object')
                    merged.update(series)
                out[rid] = merged
            return out
        try:
            return self._call(what, fetch)
        except _NoSuchMetric:
            return {}


def _points(series: dict, metric: str, aggregation: str,
            rid: str) -> list[tuple[str, float, float]]:
    entry = series.get(metric)
    if entry is None:
        return []
    if not isinstance(entry, dict):
        raise _Malformed(f'{rid} {metric}: not an object')
    points = entry.get(aggregation)
    if points is None:
        return []
    if not isinstance(points, list):
        raise _Malformed(f'{rid} {metric} {aggregation}: not a list')
    out = []
    for p in points:
        if (not isinstance(p, list) or len(p) != 3
                or not isinstance(p[0], str)):
            raise _Malformed(f'{rid} {metric} {aggregation}: a point is '
                             'not [timestamp, granularity, value]')
        value = p[2]
        if value is None:
            value = math.nan
        elif not isinstance(value, (int, float)) or isinstance(value, bool):
            raise _Malformed(f'{rid} {metric} {aggregation}: value '
                             f'{str(value)[:20]!r} is not a number')
        out.append((p[0], p[1], float(value)))
    return out


def _posix(ts: str) -> float:
    try:
        return utc(dt.datetime.fromisoformat(ts)).timestamp()
    except ValueError:
        raise _Malformed(f'timestamp {ts[:40]!r} is not a date-time') \
            from None


def _message(e: Any) -> str:
    msg = getattr(e, 'message', None) or str(e)
    if isinstance(msg, dict):
        parts = [str(msg.get(k)) for k in ('cause', 'reason', 'detail')
                 if msg.get(k)]
        return ': '.join(parts) or str(msg)
    return str(msg)


def _path(e: Any) -> str:
    url = getattr(e, 'url', None)
    method = getattr(e, 'method', None) or ''
    if not url:
        return method or 'request'
    return f'{method} {urllib.parse.urlsplit(str(url)).path}'.strip()
