"""The one check of the metrics ``ingest`` and ``snapshot`` need: an error
naming the missing Ceilometer metric, worded alike by both commands (the
telemetry suite checks it end to end against real servers)."""

import pytest

from nova_rl_trainer.telemetry.sources import Instance
from nova_rl_trainer.telemetry.sources import require_metrics
from nova_rl_trainer.telemetry.sources import SourceError


def sized(**kw):
    base = dict(id='i', vcpus=2.0, memory_mb=2048.0,
                metrics=frozenset({'cpu', 'vcpus', 'memory'}))
    return Instance(**{**base, **kw})


def test_nothing_is_required_of_no_instances():
    require_metrics([], 'gnocchi', 'in the window', ('vcpus', 'memory_mb'))


def test_a_size_no_instance_has_is_named():
    vms = [sized(memory_mb=None), sized(id='j', memory_mb=None)]
    with pytest.raises(SourceError) as e:
        require_metrics(vms, 'gnocchi', 'in the window',
                        ('vcpus', 'memory_mb'))
    assert str(e.value) == (
        "missing metric 'memory': none of the 2 instances in the window has "
        "'memory' measures in gnocchi (is Ceilometer publishing 'memory'?)")
    # A snapshot needs no memory size: the same instances pass.
    require_metrics(vms, 'gnocchi', 'of the last 3600 s', ('vcpus',))
    # One instance with a size is enough.
    require_metrics(vms + [sized(id='k')], 'gnocchi', 'in the window',
                    ('vcpus', 'memory_mb'))


def test_cpu_is_required_of_the_instances_whose_metrics_are_known():
    vms = [sized(metrics=frozenset({'vcpus'})), sized(id='j', metrics=None)]
    with pytest.raises(SourceError) as e:
        require_metrics(vms, 'prometheus', 'of the last 3600 s', ('vcpus',))
    assert str(e.value) == (
        "missing metric 'cpu': none of the 1 instances of the last 3600 s "
        "has a 'cpu' metric in prometheus (is Ceilometer's compute agent "
        "polling 'cpu'?)")
    # Unknown metrics (None) are not evidence of a missing one.
    require_metrics([sized(metrics=None)], 'prometheus', 'in the window',
                    ('vcpus',))
