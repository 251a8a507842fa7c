"""RLWeigher.weight_multiplier against hostile aggregate metadata.

Nova adds ``weight_multiplier(host) * weight`` to each host's weight, so
whatever an aggregate's ``rl_weight_multiplier`` says, the result must be a
finite number. These tests drive the adapter with plain stand-ins for Nova's
HostState and RequestSpec (the adapter reads attributes only), so they need
nova importable but no Nova objects or services.
"""

import logging
import math
import types

import pytest

pytest.importorskip('nova')

from hypothesis import given  # noqa: E402
from hypothesis import HealthCheck  # noqa: E402
from hypothesis import settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from oslo_config import cfg  # noqa: E402

from nova_rl_weigher import weigher as rl  # noqa: E402
from tests import fixtures as testing  # noqa: E402

CONF = cfg.CONF
DEFAULT = 10.0


def host_state(name, vcpus, metadata=()):
    aggregates = [types.SimpleNamespace(id=i, metadata=dict(md))
                  for i, md in enumerate(metadata)]
    return types.SimpleNamespace(
        host=name, nodename=name, vcpus_total=vcpus, vcpus_used=1,
        total_usable_ram_mb=8192 * vcpus, free_ram_mb=8192 * vcpus - 1024,
        total_usable_disk_gb=100, free_disk_mb=90 * 1024,
        cpu_allocation_ratio=2.0, ram_allocation_ratio=1.0,
        disk_allocation_ratio=1.0, num_instances=1, num_io_ops=0,
        failed_builds=0, aggregates=aggregates)


SPEC = types.SimpleNamespace(
    flavor=types.SimpleNamespace(vcpus=1, memory_mb=512, root_gb=1,
                                 ephemeral_gb=0, swap=0, name='m1.tiny'),
    project_id='p', instance_uuid='11111111-2222-4333-8444-555555555555',
    is_bfv=False)


def applied_weigher():
    """An RLWeigher whose last call (in this thread) applied the policy."""
    w = rl.RLWeigher()
    hosts = [types.SimpleNamespace(obj=host_state(f'h{i}', 4 * (i + 1)),
                                   weight=0.0) for i in range(3)]
    weights = w.weigh_objects(hosts, SPEC)
    assert w.stats.get('applied') == 1, w.stats
    assert max(weights) == 1.0
    return w


@pytest.fixture(scope='module')
def gated(tmp_path_factory):
    path = testing.make_linear_policy(
        str(tmp_path_factory.mktemp('policy')), {'log_vcpus_total': -1.0})
    overrides = dict(mode='gated', policy_path=path,
                     policy_check_interval_s=0.0, latency_budget_ms=1e6,
                     decision_log_dir='')
    for k, v in overrides.items():
        CONF.set_override(k, v, group='rl_weigher')
    yield
    for k in overrides:
        CONF.clear_override(k, group='rl_weigher')
    CONF.clear_override('weight_multiplier', group='rl_weigher')


@pytest.fixture
def warnings_logged(caplog):
    caplog.set_level(logging.WARNING)
    return lambda: [r.getMessage() for r in caplog.records
                    if r.levelno == logging.WARNING
                    and r.name.startswith('nova_rl_weigher')]


def test_not_applied_means_one(gated):
    w = rl.RLWeigher()
    assert w.weight_multiplier(host_state('a', 4, [
        {'rl_weight_multiplier': 'nan'}])) == 1.0


@pytest.mark.parametrize('value', [
    'nan', 'NaN', '-nan', 'inf', '+inf', '-inf', 'Infinity', '1e400',
    '-1e400', 'x', '', ' ', '1,5', '0x10', '-1', '-0.5', '\x00', '10 apples',
    '9' * 400])
def test_unusable_aggregate_value_is_ignored_with_a_warning(
        gated, value, warnings_logged):
    w = applied_weigher()
    hs = host_state('a', 4, [{'rl_weight_multiplier': value}])
    for _ in range(50):     # once per value, not once per host
        assert w.weight_multiplier(hs) == DEFAULT
    (msg,) = warnings_logged()
    assert 'rl_weight_multiplier' in msg and 'ignoring' in msg


@pytest.mark.parametrize('values, expected', [
    (['2.5'], 2.5),
    (['0'], 0.0),
    ([' 3 '], 3.0),
    (['1e3'], 1000.0),
    (['4', '2'], 2.0),               # the smallest applies, as in Nova
    (['nan', '3'], 3.0),             # the unusable one is ignored
    (['inf', 'x', '-1'], DEFAULT),   # none usable: the default
])
def test_usable_values_apply(gated, values, expected):
    w = applied_weigher()
    hs = host_state('a', 4, [{'rl_weight_multiplier': v} for v in values]
                    + [{'other_key': 'nan'}])
    assert w.weight_multiplier(hs) == expected
    assert w.weight_multiplier(host_state('b', 4)) == DEFAULT
    assert w.weight_multiplier(host_state('c', 4, [{}])) == DEFAULT


@pytest.mark.parametrize('configured', [float('nan'), float('inf')])
def test_unusable_configured_multiplier_falls_back_to_the_builtin(
        gated, configured, warnings_logged):
    CONF.set_override('weight_multiplier', configured, group='rl_weigher')
    try:
        w = applied_weigher()
        assert w.weight_multiplier(host_state('a', 4)) == \
            rl.BUILTIN_MULTIPLIER
        assert w.weight_multiplier(host_state('a', 4, [
            {'rl_weight_multiplier': 'x'}])) == rl.BUILTIN_MULTIPLIER
    finally:
        CONF.clear_override('weight_multiplier', group='rl_weigher')
    assert any('weight_multiplier' in m and 'finite' in m
               for m in warnings_logged())


def test_configured_multiplier_applies(gated):
    CONF.set_override('weight_multiplier', 3.5, group='rl_weigher')
    try:
        w = applied_weigher()
        assert w.weight_multiplier(host_state('a', 4)) == 3.5
        assert w.weight_multiplier(host_state('a', 4, [
            {'rl_weight_multiplier': 'nan'}])) == 3.5
    finally:
        CONF.clear_override('weight_multiplier', group='rl_weigher')


def test_negative_configured_multiplier_is_refused_by_the_option(gated):
    with pytest.raises(ValueError):
        CONF.set_override('weight_multiplier', -1.0, group='rl_weigher')


def test_hosts_without_a_usable_aggregates_attribute(gated):
    w = applied_weigher()
    broken = types.SimpleNamespace(host='z', aggregates=[object()])
    assert w.weight_multiplier(broken) == DEFAULT
    assert w.weight_multiplier(types.SimpleNamespace(host='y',
                                                     aggregates=None)) == \
        DEFAULT


metadata_values = st.one_of(
    st.text(),
    st.sampled_from(['nan', 'inf', '-inf', '1e308', '1e309', '-0', '0',
                     '+1', '1_000', '\u0661', 'infinity', '-1e-320']),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.integers().map(str))


@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(values=st.lists(metadata_values, min_size=0, max_size=4))
def test_any_metadata_gives_a_finite_multiplier(gated, values):
    w = applied_weigher()
    hs = host_state('a', 4, [{'rl_weight_multiplier': v} for v in values])
    m = w.weight_multiplier(hs)
    assert isinstance(m, float) and math.isfinite(m) and m >= 0.0
    usable = [rl.parse_multiplier(v) for v in values]
    usable = [u for u in usable if u is not None]
    assert m == (min(usable) if usable else DEFAULT)
