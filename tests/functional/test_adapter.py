"""The Nova adapter on Nova's own objects (FakeHostState, RequestSpec).

These need nova importable but no running services: Nova's real
``HostWeightHandler`` runs the real built-in weighers followed by RLWeigher.
"""

import numpy as np
from oslo_config import cfg
import pytest

from nova import objects
from nova.scheduler import weights
from nova.tests.unit.scheduler import fakes

from nova_rl_weigher import features
from nova_rl_weigher import weigher as rl
from tests import fixtures as testing

CONF = cfg.CONF
objects.register_all()


def host_state(name, vcpus, ram_mb, aggregates=(), **kw):
    attrs = {
        'vcpus_total': vcpus, 'vcpus_used': 1, 'cpu_allocation_ratio': 2.0,
        'ram_allocation_ratio': 1.0, 'disk_allocation_ratio': 1.0,
        'total_usable_ram_mb': ram_mb, 'free_ram_mb': ram_mb - 1024,
        'total_usable_disk_gb': 100, 'free_disk_mb': 90 * 1024,
        'num_instances': 1, 'num_io_ops': 0, 'failed_builds': 0,
        'aggregates': list(aggregates), 'metrics': {},
        'hypervisor_version': 1}
    attrs.update(kw)
    return fakes.FakeHostState(name, name, attrs)


def spec(**kw):
    base = dict(
        flavor=objects.Flavor(vcpus=2, memory_mb=2048, root_gb=10,
                              ephemeral_gb=5, swap=1024, name='m1.small',
                              extra_specs={}),
        project_id='proj',
        instance_uuid='11111111-2222-4333-8444-555555555555',
        image=objects.ImageMeta.from_dict({'properties': {}}),
        instance_group=None, is_bfv=False, scheduler_hints={})
    base.update(kw)
    return objects.RequestSpec(**base)


@pytest.fixture
def conf_overrides():
    names = []

    def set_(**kw):
        for k, v in kw.items():
            CONF.set_override(k, v, group='rl_weigher')
            names.append(k)
    yield set_
    for k in names:
        CONF.clear_override(k, group='rl_weigher')


def weigh(hosts, spec_obj, with_rl=True):
    handler = weights.HostWeightHandler()
    classes = list(weights.all_weighers())
    if with_rl:
        classes.append(rl.RLWeigher)
    return handler.get_weighed_objects([c() for c in classes], hosts,
                                       spec_obj)


def test_request_view_reads_the_flavor_and_disk():
    r = rl.request_view(spec())
    assert (r.vcpus, r.memory_mb, r.disk_gb) == (2, 2048, 16.0)
    assert r.project_id == 'proj' and r.flavor_name == 'm1.small'
    assert rl.request_view(spec(is_bfv=True)).disk_gb == 6.0
    empty = rl.request_view(objects.RequestSpec())
    assert (empty.vcpus, empty.instance_uuid) == (0.0, '')


def test_host_columns_match_the_shared_feature_code():
    hs = [host_state('a', 4, 8192), host_state('b', 16, 32768)]
    weighed = [weights.WeighedHost(h, w) for h, w in zip(hs, (0.5, 1.5))]
    names, cols = rl.host_columns(weighed)
    views = [features.HostView(
        name=h.host, vcpus_total=h.vcpus_total, vcpus_used=h.vcpus_used,
        ram_total_mb=h.total_usable_ram_mb, ram_free_mb=h.free_ram_mb,
        disk_total_gb=h.total_usable_disk_gb, disk_free_mb=h.free_disk_mb,
        cpu_allocation_ratio=2.0, num_instances=1, nova_weight=w.weight)
        for h, w in zip(hs, weighed)]
    req = rl.request_view(spec())
    assert names == ['a', 'b']
    np.testing.assert_array_equal(features.compute_matrix(cols, req),
                                  features.build_matrix(views, req))


def test_unknown_host_state_values_make_the_weigher_abstain(
        tmp_path, conf_overrides):
    hosts = [host_state('a', 4, 8192, vcpus_total=None),
             host_state('b', 16, 32768, free_ram_mb='lots')]
    names, cols = rl.host_columns([weights.WeighedHost(h, 0.0)
                                   for h in hosts])
    assert np.isnan(cols.vcpus_total[0]) and np.isnan(cols.ram_free_mb[1])
    conf_overrides(mode='gated', policy_check_interval_s=0.0,
                   policy_path=testing.make_linear_policy(
                       str(tmp_path / 'p'), {'log_vcpus_total': -1.0}))
    w = rl.RLWeigher()
    assert w.weigh_objects([weights.WeighedHost(h, 0.0) for h in hosts],
                           spec()) == [0.0, 0.0]
    assert w.stats == {'calls': 1, 'abstained.non_finite': 1}


def test_gated_policy_reorders_nova_weighers(tmp_path, conf_overrides):
    hosts = [host_state('small', 4, 8192), host_state('large', 16, 32768)]
    assert weigh(hosts, spec(), with_rl=False)[0].obj.host == 'large'
    conf_overrides(mode='gated', policy_check_interval_s=0.0,
                   policy_path=testing.make_linear_policy(
                       str(tmp_path / 'p'), {'log_vcpus_total': -1.0}))
    ranked = weigh(hosts, spec())
    assert ranked[0].obj.host == 'small'
    # Nova's built-ins plus 10 (weight_multiplier) for the winner.
    assert ranked[0].weight > 10.0


def test_aggregate_multiplier_overrides_the_option(tmp_path, conf_overrides):
    agg = objects.Aggregate(id=1, name='a', hosts=['small'],
                            metadata={'rl_weight_multiplier': '0.0'})
    hosts = [host_state('small', 4, 8192, aggregates=[agg]),
             host_state('large', 16, 32768)]
    conf_overrides(mode='gated', policy_check_interval_s=0.0,
                   policy_path=testing.make_linear_policy(
                       str(tmp_path / 'p'), {'log_vcpus_total': -1.0}))
    # The aggregate switches the policy off for 'small', so Nova's own
    # preference for 'large' stands.
    assert weigh(hosts, spec())[0].obj.host == 'large'


def test_shadow_and_off_leave_nova_ranking_and_weights_unchanged(
        conf_overrides, tmp_path):
    hosts = [host_state(f'h{i}', 4 * (i + 1), 8192 * (i + 1))
             for i in range(6)]
    base = [(w.obj.host, w.weight) for w in weigh(hosts, spec(),
                                                  with_rl=False)]
    for mode in ('off', 'shadow'):
        conf_overrides(mode=mode, decision_log_dir=str(tmp_path / mode))
        got = [(w.obj.host, w.weight) for w in weigh(hosts, spec())]
        assert got == base
