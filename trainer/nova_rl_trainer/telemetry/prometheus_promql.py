"""Ceilometer's meters in PromQL, for the ``prometheus`` metrics source
(:mod:`nova_rl_trainer.telemetry.prometheus_source`): the meters read,
their metric names and series selectors.
"""

from __future__ import annotations

from typing import Callable, Sequence

#: Ceilometer meters read (their names as in Gnocchi and the trace).
CPU_METER = 'cpu'
MEMORY_USAGE_METER = 'memory.usage'
SIZE_METERS = ('vcpus', 'memory', 'disk.root.size', 'disk.ephemeral.size')
METERS = (CPU_METER, *SIZE_METERS, MEMORY_USAGE_METER)
#: The meters whose samples say that an instance exists.
PRESENCE_METERS = (CPU_METER, 'vcpus', 'memory')
#: A label the queries add to tell meters apart.
METER_LABEL = 'nova_rl_meter'


def metric_name(prefix: str, meter: str) -> str:
    """The Prometheus metric of a Ceilometer meter (``cpu`` ->
    ``ceilometer_cpu``, ``disk.root.size`` -> ``ceilometer_disk_root_size``),
    as both of Ceilometer's exporters name it."""
    return prefix + meter.replace('.', '_').replace('-', '_')


def duration(seconds: float) -> str:
    """A PromQL duration (milliseconds: any step is exact)."""
    return f'{max(1, int(round(seconds * 1000)))}ms'


class PromQL:
    """The selectors of the ``prometheus`` source, a base of its
    :class:`~nova_rl_trainer.telemetry.prometheus_source.PrometheusSource`
    (whose ``metric_prefix``, ``resource_label`` and ``match`` they use)."""

    # -- PromQL -------------------------------------------------------
    def metric(self, meter: str) -> str:
        return metric_name(self.metric_prefix, meter)

    def selector(self, meter: str) -> str:
        matchers = [f'{self.resource_label}!=""']
        if self.match:
            matchers.append(self.match)
        return f'{self.metric(meter)}{{{",".join(matchers)}}}'

    def _union(self, meters: Sequence[str],
               expr: Callable[[str], str]) -> str:
        """``expr`` of each meter's selector, the meter in a label of its
        own (meters with the same labels would otherwise collide)."""
        return ' or '.join(
            f'label_replace({expr(self.selector(m))}, "{METER_LABEL}", '
            f'"{m}", "", "")' for m in meters)

    def _by(self, *labels: str) -> str:
        seen: list[str] = []
        for label in labels:
            if label not in seen:
                seen.append(label)
        return ', '.join(seen)
