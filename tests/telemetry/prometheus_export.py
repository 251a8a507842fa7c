"""What Prometheus scrapes from Ceilometer 27's Prometheus exporter, written
as OpenMetrics for ``promtool tsdb create-blocks-from openmetrics``.

Run with the telemetry venv's python (``.venv-telemetry``, where
ceilometer 27 and prometheus_client are)::

    python prometheus_export.py INPUT.json OUTPUT.om

Each target is one compute node's ``ceilometer-polling`` with
``[polling] enable_prometheus_exporter``: Ceilometer's own
``ceilometer.polling.prom_exporter`` keeps its registry. At each polling
cycle, as the polling manager does, every pollster's metric is purged
(``purge_stale_metrics``) and the cycle's samples collected
(``collect_metrics``); at each scrape the registry is exposed
(``prometheus_client.generate_latest``, what its HTTP server answers) and
every sample gets the target's labels (``job``, ``instance`` and what the
scrape configuration's relabelling adds) and the scrape time, as
Prometheus stores them.

INPUT::

    {"vms": {"<id>": {"project_id": ..., "user_id": ..., "metadata": {...}}},
     "targets": [{"labels": {"job": ..., "instance": ..., "host": ...},
                  "pollsters": ["cpu", "vcpus", ...],
                  "cycles": [[time, [[id, meter, type, unit, volume], ...]]],
                  "scrapes": [time, ...]}]}
"""

from __future__ import annotations

import json
import sys


def escape(value: str) -> str:
    return (value.replace('\\', '\\\\').replace('"', '\\"')
            .replace('\n', '\\n'))


def main(argv: list[str]) -> int:
    import prometheus_client as prom
    from prometheus_client import parser as prom_parser

    from ceilometer.polling import prom_exporter

    with open(argv[1], encoding='utf-8') as f:
        spec = json.load(f)
    vms = spec['vms']
    # {metric name: (type, {labels tuple: [(time, value), ...]})}
    families: dict[str, tuple[str, dict]] = {}
    for target in spec['targets']:
        prom_exporter.CEILOMETER_REGISTRY = prom.CollectorRegistry()
        extra = dict(target['labels'])
        events = ([(t, 0, samples) for t, samples in target['cycles']]
                  + [(t, 1, None) for t in target['scrapes']])
        events.sort(key=lambda e: (e[0], e[1]))
        for t, kind, samples in events:
            if kind == 0:
                for pollster in target['pollsters']:
                    prom_exporter.purge_stale_metrics(pollster)
                dicts = []
                for rid, meter, type_, unit, volume in samples:
                    vm = vms[rid]
                    dicts.append({
                        'source': 'openstack', 'counter_name': meter,
                        'counter_type': type_, 'counter_unit': unit,
                        'counter_volume': volume, 'user_id': vm['user_id'],
                        'user_name': None, 'project_id': vm['project_id'],
                        'project_name': None, 'resource_id': rid,
                        'timestamp': t, 'resource_metadata': vm['metadata'],
                    })
                prom_exporter.collect_metrics(dicts)
                continue
            text = prom.generate_latest(
                prom_exporter.CEILOMETER_REGISTRY).decode('utf-8')
            for family in prom_parser.text_string_to_metric_families(text):
                kind_, series = families.setdefault(
                    family.name, (family.type, {}))
                for s in family.samples:
                    labels = dict(s.labels)
                    for k, v in extra.items():
                        # Prometheus's honor_labels: false.
                        if k in labels:
                            labels['exported_' + k] = labels[k]
                        labels[k] = v
                    key = tuple(sorted(labels.items()))
                    series.setdefault(key, []).append((t, s.value))
    with open(argv[2], 'w', encoding='utf-8') as out:
        for name in sorted(families):
            kind_, series = families[name]
            out.write(f'# TYPE {name} {kind_}\n')
            for key in sorted(series):
                labels = ','.join(f'{k}="{escape(str(v))}"' for k, v in key)
                for t, value in series[key]:
                    out.write(f'{name}{{{labels}}} {value!r} {t:.3f}\n')
        out.write('# EOF\n')
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv))
