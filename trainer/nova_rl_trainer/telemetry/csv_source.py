"""The ``csv`` metrics source: the trainer's own trace format, for
retraining where no telemetry service can be reached (air-gapped).

The trace (``vm_id,project_id,arrival_s,departure_s,vcpus,memory_mb,
disk_gb,cpu_util_mean,cpu_util_p95`` and, when the reader keeps it, the
optional ``host``) is read with
:func:`nova_rl_trainer.simulation.trace_files.load_trace`. Its times are
seconds from its own time 0, which ``--trace-start`` places in absolute
time (by default at ``--start``: the trace is the window). Usage is the
trace's mean and 95th percentile, with no series.
"""

from __future__ import annotations

import argparse
import datetime as dt
import math
from typing import Sequence

from nova_rl_trainer.simulation import trace_files
from nova_rl_trainer.simulation.traces import TraceError
from nova_rl_trainer.telemetry.sources import CpuUsage
from nova_rl_trainer.telemetry.sources import Instance
from nova_rl_trainer.telemetry.sources import MetricsSource
from nova_rl_trainer.telemetry.sources import SourceError
from nova_rl_trainer.telemetry.sources import time_arg
from nova_rl_trainer.telemetry.sources import utc


def _finite(x: float) -> float | None:
    x = float(x)
    return x if math.isfinite(x) else None


class CsvSource(MetricsSource):
    name = 'csv'
    description = "the trainer's CSV trace format (air-gapped retraining)"

    def __init__(self, path: str, trace_format: str | None = None,
                 trace_start: dt.datetime | None = None) -> None:
        self.path = path
        self.trace_format = trace_format
        self.trace_start = utc(trace_start) if trace_start else None
        self._usage: dict[str, CpuUsage] = {}

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser,
                      argv: Sequence[str]) -> None:
        g = parser.add_argument_group('csv source')
        g.add_argument('--trace', required=True, metavar='PATH',
                       help='the trace file (CSV, optionally .gz)')
        g.add_argument('--trace-format', choices=trace_files.FORMATS,
                       help='default: from the file name')
        g.add_argument('--trace-start', type=time_arg, metavar='ISO8601',
                       help="absolute time of the trace's time 0 (default: "
                            '--start)')

    @classmethod
    def from_arguments(cls, args: argparse.Namespace) -> 'CsvSource':
        return cls(args.trace, args.trace_format, args.trace_start)

    def instances(self, start: dt.datetime,
                  stop: dt.datetime) -> list[Instance]:
        start, stop = utc(start), utc(stop)
        try:
            trace = trace_files.load_trace(self.path, self.trace_format)
        except TraceError as e:
            raise SourceError(str(e)) from None
        t0 = self.trace_start or start
        hosts = getattr(trace, 'hosts', None)
        out = []
        self._usage = {}
        for i in range(len(trace)):
            arrival = t0 + dt.timedelta(seconds=float(trace.arrival_s[i]))
            dep = _finite(trace.departure_s[i])
            departure = (t0 + dt.timedelta(seconds=dep)
                         if dep is not None else None)
            host = hosts[i] if hosts is not None else None
            inst = Instance(
                id=trace.vm_id(i),
                project_id=trace.project_ids[trace.project[i]],
                host=host or None,
                launched_at=arrival, deleted_at=departure,
                vcpus=float(trace.vcpus[i]),
                memory_mb=float(trace.memory_mb[i]),
                disk_gb=float(trace.disk_gb[i]))
            if not inst.lived_in(start, stop):
                continue
            out.append(inst)
            mean = _finite(trace.cpu_util_mean[i])
            if mean is not None:
                p95 = _finite(trace.cpu_util_p95[i])
                self._usage[inst.id] = CpuUsage(
                    mean=mean, p95=p95 if p95 is not None else mean,
                    points=0)
        return out

    def cpu_usage(self, instances: Sequence[Instance], start: dt.datetime,
                  stop: dt.datetime) -> dict[str, CpuUsage]:
        return {i.id: self._usage[i.id] for i in instances
                if i.id in self._usage}
