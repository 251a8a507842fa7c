"""Metrics sources: where the trainer reads what a cloud's instances were
given and what they used.

A source is a stevedore plugin in the namespace
``nova_rl_trainer.metrics_sources`` (``trainer/setup.cfg``): ``gnocchi``
(what Ceilometer writes into Gnocchi) and ``csv`` (the trainer's own trace
format, for air-gapped retraining); Prometheus fits the same interface.

A source answers these questions about a time window ``[start, stop)``:

* :meth:`MetricsSource.instances`: every instance that lived in it, with
  its project, host, size and lifetime (:class:`Instance`);
* :meth:`MetricsSource.cpu_usage`: for some of them, the CPU they used as
  fractions of their vCPUs (:class:`CpuUsage`), one value per measurement
  interval where the source has a series, or a mean and 95th percentile
  where that is all it has;
* optionally :meth:`MetricsSource.memory_usage`: their guest memory in use,
  one value per interval (the usage snapshot reads it; ``{}`` by default).

Every failure a user can do something about is a :class:`SourceError`
whose text is one line saying what is wrong.
"""

from __future__ import annotations

import abc
import argparse
import dataclasses
import datetime as dt
from typing import ClassVar, Iterable, Mapping, Sequence

import numpy as np

NAMESPACE = 'nova_rl_trainer.metrics_sources'


class SourceError(Exception):
    """A source cannot answer: unreachable, refused, malformed, missing
    data. ``str()`` is one line for the user."""


def utc(value: dt.datetime) -> dt.datetime:
    """``value`` as an aware UTC datetime (naive means UTC)."""
    if value.tzinfo is None:
        return value.replace(tzinfo=dt.timezone.utc)
    return value.astimezone(dt.timezone.utc)


def parse_time(text: str) -> dt.datetime:
    """An ISO 8601 date or date-time (``Z`` or an offset; none is UTC)."""
    try:
        return utc(dt.datetime.fromisoformat(text.strip()))
    except (ValueError, AttributeError):
        raise ValueError(f'{text!r} is not an ISO 8601 date-time, e.g. '
                         '2026-01-31T00:00:00Z') from None


def time_arg(text: str) -> dt.datetime:
    """:func:`parse_time` as an argparse ``type``."""
    try:
        return parse_time(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


#: Ceilometer's metric of each instance size field.
SIZE_METRICS = {'vcpus': 'vcpus', 'memory_mb': 'memory'}


def require_metrics(instances: Sequence['Instance'], source: str,
                    where: str, sizes: Sequence[str]) -> None:
    """Telemetry without a metric the caller needs is an error, said the
    same way by every command: none of ``instances`` (those ``where``,
    e.g. ``'in the window'``) has the Ceilometer metric of a size field in
    ``sizes`` (keys of :data:`SIZE_METRICS`), or, among the instances
    whose metrics the source lists, none has ``cpu``. Nothing is required
    of no instances."""
    if not instances:
        return
    for field in sizes:
        metric = SIZE_METRICS[field]
        if all(getattr(i, field) is None for i in instances):
            raise SourceError(
                f'missing metric {metric!r}: none of the {len(instances)} '
                f'instances {where} has {metric!r} measures in {source} '
                f'(is Ceilometer publishing {metric!r}?)')
    known = [i for i in instances if i.metrics is not None]
    if known and all('cpu' not in i.metrics for i in known):
        raise SourceError(
            f"missing metric 'cpu': none of the {len(known)} instances "
            f"{where} has a 'cpu' metric in {source} (is Ceilometer's "
            "compute agent polling 'cpu'?)")


@dataclasses.dataclass(frozen=True)
class Instance:
    """What a source knows about one instance.

    ``launched_at``/``deleted_at`` are what Nova reported (Ceilometer's
    attributes); ``started_at``/``ended_at`` when the metrics store first
    and last knew it (Gnocchi's own): :attr:`arrival` and :attr:`departure`
    prefer Nova's. Sizes are None when the source does not know them.
    """

    id: str
    project_id: str | None = None
    host: str | None = None
    flavor_id: str | None = None
    flavor_name: str | None = None
    launched_at: dt.datetime | None = None
    deleted_at: dt.datetime | None = None
    started_at: dt.datetime | None = None
    ended_at: dt.datetime | None = None
    vcpus: float | None = None
    memory_mb: float | None = None
    disk_gb: float | None = None
    #: Metric names the source holds for the instance (None: unknown).
    metrics: frozenset[str] | None = None

    @property
    def arrival(self) -> dt.datetime | None:
        return self.launched_at or self.started_at

    @property
    def departure(self) -> dt.datetime | None:
        """When it went away; None while it is running."""
        return self.deleted_at or self.ended_at

    def lived_in(self, start: dt.datetime, stop: dt.datetime) -> bool:
        arrival, departure = self.arrival, self.departure
        return ((arrival is None or arrival < stop)
                and (departure is None or departure > start))


@dataclasses.dataclass(frozen=True, eq=False)
class CpuUsage:
    """CPU an instance used, as fractions of its vCPUs (0..1).

    ``shares`` holds one value per measurement interval inside the window
    when the source has a series (``interval_s`` long, ``times`` their
    ends as POSIX seconds); a source with only a summary gives ``mean`` and
    ``p95`` and no ``shares``. ``resets`` counts intervals dropped because
    the cumulative counter went back (reboot, migration): a reset is not
    negative use. ``gaps`` counts intervals that followed missing
    measurements (their use is spread over the gap).
    """

    mean: float
    p95: float
    points: int
    shares: np.ndarray | None = None
    times: np.ndarray | None = None
    interval_s: float | None = None
    resets: int = 0
    gaps: int = 0

    @classmethod
    def from_shares(cls, shares: np.ndarray, times: np.ndarray | None = None,
                    interval_s: float | None = None, resets: int = 0,
                    gaps: int = 0) -> 'CpuUsage | None':
        shares = np.clip(np.asarray(shares, dtype=np.float64), 0.0, 1.0)
        if shares.size == 0:
            return None
        return cls(mean=float(shares.mean()),
                   p95=float(np.percentile(shares, 95)),
                   points=int(shares.size), shares=shares, times=times,
                   interval_s=interval_s, resets=resets, gaps=gaps)


class MetricsSource(abc.ABC):
    """The interface every metrics source implements.

    The command line builds a source in two steps: :meth:`add_arguments`
    adds its options to a parser (``argv`` is what the user typed, for
    options that depend on other options, like an auth plugin's), then
    :meth:`from_arguments` builds it from the parsed namespace. Sources
    are context managers; :meth:`close` releases connections.
    """

    #: The plugin name (the entry point's).
    name: ClassVar[str] = ''
    #: One line for ``--help``.
    description: ClassVar[str] = ''

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser,
                      argv: Sequence[str]) -> None:
        """Add the source's own options to ``parser``."""

    @classmethod
    @abc.abstractmethod
    def from_arguments(cls, args: argparse.Namespace) -> 'MetricsSource':
        """The source the parsed options describe (SourceError if they
        don't)."""

    @abc.abstractmethod
    def instances(self, start: dt.datetime,
                  stop: dt.datetime) -> list[Instance]:
        """Every instance that lived in ``[start, stop)``."""

    @abc.abstractmethod
    def cpu_usage(self, instances: Sequence[Instance], start: dt.datetime,
                  stop: dt.datetime) -> Mapping[str, CpuUsage]:
        """CPU use in ``[start, stop)`` by instance id, for those of
        ``instances`` that have any; the others are left out."""

    def memory_usage(self, instances: Sequence[Instance],
                     start: dt.datetime, stop: dt.datetime
                     ) -> Mapping[str, tuple[np.ndarray, np.ndarray]]:
        """Guest memory in use in ``[start, stop)`` by instance id:
        ``(times, MiB)``, one value per measurement interval (times as
        POSIX seconds, labelled as :attr:`CpuUsage.times`), for those of
        ``instances`` that have any. A source without it returns ``{}``
        (the default): the usage snapshot then counts the flavor's memory.
        """
        return {}

    def warnings(self) -> list[str]:
        """What the source had to work around, one line each."""
        return []

    def close(self) -> None:
        """Release connections and files."""

    def __enter__(self) -> 'MetricsSource':
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def available_sources() -> list[str]:
    """Names of the installed metrics sources."""
    from stevedore import extension
    mgr = extension.ExtensionManager(namespace=NAMESPACE,
                                     invoke_on_load=False)
    return sorted(mgr.names())


def source_class(name: str) -> type[MetricsSource]:
    """The class of the source plugin ``name``; ValueError naming the
    installed ones if there is none."""
    from stevedore import driver
    from stevedore import exception
    try:
        mgr = driver.DriverManager(namespace=NAMESPACE, name=name,
                                   invoke_on_load=False)
    except exception.NoMatches:
        raise ValueError(f'no metrics source {name!r}; installed: '
                         + (', '.join(available_sources()) or 'none'))\
            from None
    cls = mgr.driver
    if not (isinstance(cls, type) and issubclass(cls, MetricsSource)):
        raise ValueError(f'metrics source {name!r} ({cls!r}) is not a '
                         'MetricsSource')
    return cls


def iter_chunks(items: Sequence, size: int) -> Iterable[Sequence]:
    for i in range(0, len(items), max(1, size)):
        yield items[i:i + max(1, size)]
