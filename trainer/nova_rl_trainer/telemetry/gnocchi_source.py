"""The ``gnocchi`` metrics source: what Ceilometer writes into Gnocchi.

Ceilometer 27 (its ``gnocchi_resources.yaml`` and ``gnocchi_client.py``)
keeps one resource of type ``instance`` per Nova instance, with the
attributes ``host`` (the compute host as Nova names it), ``flavor_id``,
``flavor_name``, ``launched_at``, ``deleted_at`` (Nova's, from the
samples' metadata) besides Gnocchi's own ``project_id``, ``started_at``,
``ended_at``; and these metrics among others:

* ``cpu``: cumulative CPU time in ns, archive policy
  ``ceilometer-low-rate`` (5-minute ``mean`` and ``rate:mean``). The rate
  is the CPU time used in one interval, so the VM's CPU share is
  ``rate / (granularity x 1e9 x vcpus)``. A reboot or a migration resets
  the counter: the rate of that interval is negative and is dropped (it
  says nothing about use). After missing measurements (an agent down),
  the rate covers the whole gap and is spread over it.
* ``vcpus``, ``memory`` (MiB), ``disk.root.size``, ``disk.ephemeral.size``
  (GiB): the flavor, from notifications or polling (``ceilometer-low``);
  ``memory.usage``: guest memory in use, MiB.

The requests and their failures are in
:mod:`nova_rl_trainer.telemetry.gnocchi_api`.
"""

from __future__ import annotations

import argparse
import datetime as dt
import math
from typing import Any, Sequence

import numpy as np

from nova_rl_trainer.telemetry import auth
from nova_rl_trainer.telemetry.gnocchi_api import _Malformed
from nova_rl_trainer.telemetry.gnocchi_api import _points
from nova_rl_trainer.telemetry.gnocchi_api import _posix
from nova_rl_trainer.telemetry.gnocchi_api import GnocchiAPI
from nova_rl_trainer.telemetry.sources import CpuUsage
from nova_rl_trainer.telemetry.sources import Instance
from nova_rl_trainer.telemetry.sources import iter_chunks
from nova_rl_trainer.telemetry.sources import MetricsSource
from nova_rl_trainer.telemetry.sources import SourceError
from nova_rl_trainer.telemetry.sources import utc

SIZE_METRICS = ('vcpus', 'memory', 'disk.root.size', 'disk.ephemeral.size')
CPU_METRIC = 'cpu'
MEMORY_USAGE_METRIC = 'memory.usage'
#: Sizes are read resampled to one value a day (the day's largest).
SIZE_RESAMPLE_S = 86400
DEFAULT_GRANULARITY_S = 300.0
DEFAULT_PAGE_SIZE = 500
DEFAULT_CHUNK = 200
DEFAULT_MAX_POINTS = 200_000


def _iso(t: dt.datetime) -> str:
    return utc(t).isoformat()


def _parse_time(value: Any, field: str) -> dt.datetime | None:
    if value is None or value == '':
        return None
    if not isinstance(value, str):
        raise _Malformed(f'{field} is {type(value).__name__}, not a '
                         'date-time')
    try:
        return utc(dt.datetime.fromisoformat(value))
    except ValueError:
        raise _Malformed(f'{field} {value[:40]!r} is not a date-time') \
            from None


def _text(value: Any, field: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise _Malformed(f'{field} is {type(value).__name__}, not a string')
    return value


class GnocchiSource(GnocchiAPI, MetricsSource):
    name = 'gnocchi'
    description = ("Ceilometer's measures in Gnocchi (instance resources; "
                   'cpu, vcpus, memory, disk metrics)')

    def __init__(self, connection: auth.Connection,
                 granularity_s: float = DEFAULT_GRANULARITY_S,
                 resource_type: str = 'instance',
                 page_size: int = DEFAULT_PAGE_SIZE,
                 chunk: int = DEFAULT_CHUNK,
                 max_points: int = DEFAULT_MAX_POINTS) -> None:
        from gnocchiclient import client
        if not granularity_s > 0:
            raise SourceError(f'granularity {granularity_s:g} s: must be '
                              'positive')
        self.connection = connection
        self.granularity_s = float(granularity_s)
        self.resource_type = resource_type
        self.page_size = max(1, int(page_size))
        self.chunk = max(1, int(chunk))
        self.max_points = max(1, int(max_points))
        self.client = client.Client('1', session=connection.session,
                                    adapter_options=dict(
                                        connection.adapter_options))
        self._checked = False
        self._warnings: list[str] = []

    # -- command line -------------------------------------------------
    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser,
                      argv: Sequence[str]) -> None:
        auth.add_arguments(parser, argv, service_type='metric')
        g = parser.add_argument_group('gnocchi source')
        g.add_argument('--granularity', type=float,
                       default=DEFAULT_GRANULARITY_S, metavar='S',
                       help='granularity to read, seconds (default '
                            "%(default)g: Ceilometer's ceilometer-low "
                            'policies; 60 for the -high ones)')
        g.add_argument('--resource-type', default='instance',
                       help='Gnocchi resource type of the instances '
                            '(default %(default)s)')
        g.add_argument('--page-size', type=int, default=DEFAULT_PAGE_SIZE,
                       metavar='N', help='instances per search page '
                                         '(default %(default)s)')
        g.add_argument('--chunk', type=int, default=DEFAULT_CHUNK,
                       metavar='N', help='instances per aggregates request '
                                         '(default %(default)s)')
        g.add_argument('--max-points', type=int, default=DEFAULT_MAX_POINTS,
                       metavar='N', help='measures per aggregates answer, '
                                         'at most (default %(default)s)')

    @classmethod
    def from_arguments(cls, args: argparse.Namespace) -> 'GnocchiSource':
        return cls(auth.connect(args, service_type='metric'),
                   granularity_s=args.granularity,
                   resource_type=args.resource_type,
                   page_size=args.page_size, chunk=args.chunk,
                   max_points=args.max_points)

    def instances(self, start: dt.datetime,
                  stop: dt.datetime) -> list[Instance]:
        start, stop = utc(start), utc(stop)
        self.check()
        s, e = _iso(start), _iso(stop)
        # Arrived before stop (Nova's launched_at, else Gnocchi's
        # started_at) and not gone before start (deleted_at, else
        # ended_at).
        query = {'and': [
            {'or': [{'<': {'launched_at': e}},
                    {'and': [{'=': {'launched_at': None}},
                             {'<': {'started_at': e}}]}]},
            {'or': [{'>': {'deleted_at': s}},
                    {'and': [{'=': {'deleted_at': None}},
                             {'or': [{'=': {'ended_at': None}},
                                     {'>': {'ended_at': s}}]}]}]},
        ]}
        found: list[Instance] = []
        seen: set[str] = set()
        marker = None
        while True:
            page = self._call('the instance search',
                              lambda: self._search_page(query, marker))
            for r in page:
                inst = self._call('the instance search',
                                  lambda r=r: self._instance(r))
                if inst.id not in seen and inst.lived_in(start, stop):
                    seen.add(inst.id)
                    found.append(inst)
            if len(page) < self.page_size:
                break
            marker = page[-1]['id']
        sizes = self._sizes(found, stop)
        out = []
        for inst in found:
            got = sizes.get(inst.id, {})
            disk = None
            if 'disk.root.size' in got or 'disk.ephemeral.size' in got:
                disk = (got.get('disk.root.size', 0.0)
                        + got.get('disk.ephemeral.size', 0.0))
            out.append(_replace(inst, vcpus=got.get('vcpus'),
                                memory_mb=got.get('memory'), disk_gb=disk))
        return out

    @staticmethod
    def _instance(r: Any) -> Instance:
        if not isinstance(r, dict) or not isinstance(r.get('id'), str):
            raise _Malformed('a resource without an id')
        metrics = r.get('metrics')
        if metrics is not None and not isinstance(metrics, dict):
            raise _Malformed(f'resource {r["id"]}: metrics is not an object')
        return Instance(
            id=r['id'],
            project_id=_text(r.get('project_id'), 'project_id'),
            host=_text(r.get('host'), 'host'),
            flavor_id=_text(r.get('flavor_id'), 'flavor_id'),
            flavor_name=_text(r.get('flavor_name'), 'flavor_name'),
            launched_at=_parse_time(r.get('launched_at'), 'launched_at'),
            deleted_at=_parse_time(r.get('deleted_at'), 'deleted_at'),
            started_at=_parse_time(r.get('started_at'), 'started_at'),
            ended_at=_parse_time(r.get('ended_at'), 'ended_at'),
            metrics=(frozenset(metrics) if metrics is not None else None))

    def _sizes(self, instances: Sequence[Instance],
               stop: dt.datetime) -> dict[str, dict[str, float]]:
        """The last known size measures (up to ``stop``) of each
        instance."""
        ids = [i.id for i in instances
               if i.metrics is None or i.metrics & set(SIZE_METRICS)]
        operations = ['resample', 'max', SIZE_RESAMPLE_S,
                      ['metric', *[[m, 'mean'] for m in SIZE_METRICS]]]
        out: dict[str, dict[str, float]] = {}
        for chunk in iter_chunks(ids, self.chunk):
            got = self._aggregates('the size aggregates (vcpus, memory, '
                                   'disk)', operations, chunk,
                                   stop=_iso(stop), fill='full_ffill')
            for rid, series in got.items():
                sizes = {}
                for metric in SIZE_METRICS:
                    points = _points(series, metric, 'mean', rid)
                    values = [v for _, _, v in points if math.isfinite(v)]
                    if values:
                        sizes[metric] = values[-1]
                out[rid] = sizes
        return out

    def _series(self, metric: str, aggregation: str,
                instances: Sequence[Instance], start: dt.datetime,
                stop: dt.datetime) -> dict[str, tuple[np.ndarray,
                                                      np.ndarray]]:
        """``{id: (times, values)}`` of one metric at the granularity,
        times as POSIX seconds (the start of each interval)."""
        ids = [i.id for i in instances
               if i.metrics is None or metric in i.metrics]
        span = (utc(stop) - utc(start)).total_seconds()
        per_instance = max(1, math.ceil(span / self.granularity_s))
        size = max(1, min(self.chunk, self.max_points // per_instance))
        out = {}
        for chunk in iter_chunks(ids, size):
            got = self._aggregates(
                f'the {metric} aggregates', ['metric', metric, aggregation],
                chunk, start=_iso(start), stop=_iso(stop))
            for rid, series in got.items():
                points = self._call(
                    f'the {metric} aggregates',
                    lambda: _points(series, metric, aggregation, rid))
                times = np.fromiter(
                    (_posix(ts) for ts, _, _ in points), dtype=np.float64,
                    count=len(points))
                values = np.fromiter((v for _, _, v in points),
                                     dtype=np.float64, count=len(points))
                out[rid] = (times, values)
        return out

    def cpu_usage(self, instances: Sequence[Instance], start: dt.datetime,
                  stop: dt.datetime) -> dict[str, CpuUsage]:
        by_id = {i.id: i for i in instances}
        series = self._series(CPU_METRIC, 'rate:mean', instances, start,
                              stop)
        out = {}
        g = self.granularity_s
        for rid, (times, rates) in series.items():
            vcpus = by_id[rid].vcpus if rid in by_id else None
            if not vcpus or not vcpus > 0:
                continue
            usage = cpu_shares(times, rates, g, vcpus)
            if usage is not None:
                out[rid] = usage
        return out

    def memory_usage(self, instances: Sequence[Instance],
                     start: dt.datetime, stop: dt.datetime
                     ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """Guest memory in use (``memory.usage``, MiB) by instance id."""
        got = self._series(MEMORY_USAGE_METRIC, 'mean', instances, start,
                           stop)
        return {rid: (t[np.isfinite(v)], v[np.isfinite(v)])
                for rid, (t, v) in got.items()}

    def warnings(self) -> list[str]:
        return list(self._warnings)

    def close(self) -> None:
        session = getattr(self.connection, 'session', None)
        inner = getattr(session, 'session', None)
        if inner is not None and hasattr(inner, 'close'):
            inner.close()


def cpu_shares(times: np.ndarray, rates: np.ndarray, granularity_s: float,
               vcpus: float) -> CpuUsage | None:
    """CPU shares of a VM from Gnocchi's ``rate:mean`` of ``cpu``.

    Each rate is the CPU time (ns) used since the previous measurement
    interval; a negative one is a counter reset (dropped, counted); a rate
    whose previous point lies more than one granularity back covers the
    whole gap and is divided by it. Shares are clipped to [0, 1].
    """
    ok = np.isfinite(rates)
    times, rates = times[ok], rates[ok]
    if times.size == 0:
        return None
    order = np.argsort(times, kind='stable')
    times, rates = times[order], rates[order]
    span = np.full(times.shape, granularity_s)
    if times.size > 1:
        dt_prev = np.diff(times)
        span[1:] = np.maximum(dt_prev, granularity_s)
    gaps = int(np.count_nonzero(span > granularity_s * 1.5))
    reset = rates < 0
    resets = int(np.count_nonzero(reset))
    keep = ~reset
    shares = rates[keep] / (span[keep] * 1e9 * vcpus)
    return CpuUsage.from_shares(shares, times=times[keep],
                                interval_s=granularity_s, resets=resets,
                                gaps=gaps)


def _replace(inst: Instance, **changes: Any) -> Instance:
    import dataclasses
    return dataclasses.replace(inst, **changes)
