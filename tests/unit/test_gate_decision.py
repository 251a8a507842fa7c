"""One gate decision: the weigher's scorer and the simulator's artifact
policy decide with :func:`gate.decide`, on the same defaults."""

import dataclasses
import types

import numpy as np
import pytest

from nova_rl_weigher import artifact
from nova_rl_weigher import conf
from nova_rl_weigher import features
from nova_rl_weigher import gate
from nova_rl_weigher import scorer as scorer_mod
from tests import fixtures as testing

from nova_rl_trainer.simulation import policies


def hosts(n=5, nan_at=None):
    out = []
    for i in range(n):
        used = 1.0 + 3.0 * i
        out.append(features.HostView(
            name=f'h{i}', vcpus_total=16, vcpus_used=used,
            ram_total_mb=32768.0, ram_free_mb=32768.0 - 2048.0 * used,
            disk_total_gb=100.0, disk_free_mb=90000.0,
            nova_weight=float(n - i) / n))
    if nan_at is not None:
        out[nan_at].vcpus_used = float('nan')
    return out


def request(uuid='uuid-1'):
    return features.RequestView(vcpus=1, memory_mb=1024, disk_gb=1,
                                project_id='p', instance_uuid=uuid)


class FakeSim:
    """What an artifact policy reads from a simulation: these hosts (the
    nova_weight of each given) and this request."""

    needs_usage = False

    def __init__(self, views, request):
        self.inputs = features.HostColumns.from_views(views).stacked()
        self.n_hosts = len(views)
        self.request = request
        self.workload = types.SimpleNamespace(trace=types.SimpleNamespace(
            vm_id=lambda vm: request.instance_uuid))

    def candidate_features(self, vm, fit):
        cand = np.flatnonzero(fit)
        inputs = self.inputs[:, cand]
        x = features.matrix_from_inputs(inputs, self.request)
        return cand, x, inputs[features.INPUT_COLUMNS.index('nova_weight')]


def scorer_verdict(path, views, req, **options):
    """(reason, chosen host) of the weigher in gated mode, chosen as Nova
    does: its own weight plus the multiplier times the weigher's."""
    s = scorer_mod.Scorer()
    st = scorer_mod.Settings(mode='gated', policy_path=path,
                             policy_check_interval_s=0.0,
                             latency_budget_ms=1e9, **options)
    out = s.weigh_views(views, req, st)
    nova = np.array([h.nova_weight for h in views])
    final = gate.final_weights(nova, np.asarray(out.weights),
                               conf.default('weight_multiplier'))
    return out.reason, int(np.argmax(final))


def simulator_verdict(path, views, req, spec_options=''):
    policy = policies.make_policy(path + spec_options)
    policy.bind(FakeSim(views, req))
    chosen = policy.choose(0, np.ones(len(views), dtype=bool))
    # pick() (for callers with their own matrix) decides the same.
    x = features.build_matrix(views, req)
    assert policy.pick(x, np.array([h.nova_weight for h in views])) == chosen
    reason = gate.APPLIED if policy.applied else next(iter(policy.abstained))
    return reason, chosen


@pytest.fixture(scope='module')
def paths(tmp_path_factory):
    d = tmp_path_factory.mktemp('policies')
    lo, hi = testing.wide_ranges()
    narrow_lo = lo.copy()
    narrow_lo[features.FEATURE_INDEX['vcpu_free_frac']] = 0.9
    narrow_hi = hi.copy()
    narrow_hi[features.FEATURE_INDEX['vcpu_free_frac']] = 1.0
    return {
        # Packs on vCPUs: prefers the fullest host, Nova the emptiest.
        'agree': testing.make_linear_policy(
            str(d / 'agree'), {'vcpu_free_after_frac': -1.0}),
        # Half the members score the negation: confidence 0.5.
        'half': testing.make_linear_policy(
            str(d / 'half'), {'vcpu_free_after_frac': -1.0},
            ensemble_size=4, agreement=False),
        'narrow': testing.make_linear_policy(
            str(d / 'narrow'), {'vcpu_free_after_frac': -1.0},
            feature_min=narrow_lo, feature_max=narrow_hi),
    }


@pytest.mark.parametrize('case, views, options, spec, reason', [
    ('agree', hosts(), {}, '', gate.APPLIED),
    ('half', hosts(), {'confidence_threshold': 0.5}, ':threshold=0.5',
     gate.APPLIED),
    ('half', hosts(), {'confidence_threshold': 0.6}, ':threshold=0.6',
     gate.LOW_CONFIDENCE),
    ('half', hosts(), {}, '', gate.LOW_CONFIDENCE),
    ('narrow', hosts(), {}, '', gate.OUT_OF_DISTRIBUTION),
    ('agree', hosts(nan_at=2), {}, '', gate.NON_FINITE),
    ('agree', hosts(), {'canary_percent': 0.0}, ':canary=0',
     gate.OUTSIDE_CANARY),
    ('agree', hosts(1), {}, '', gate.APPLIED),
])
def test_scorer_and_simulator_decide_alike(paths, case, views, options,
                                           spec, reason):
    req = request()
    got_scorer = scorer_verdict(paths[case], views, req, **options)
    got_sim = simulator_verdict(paths[case], views, req, spec)
    assert got_scorer[0] == reason
    assert got_sim == got_scorer
    if len(views) > 1:
        # The policy packs (the fullest host) where it acts and agrees;
        # Nova's choice (the emptiest) otherwise. The half-negated ensemble
        # scores every host the same: acting changes nothing.
        packs = reason == gate.APPLIED and case == 'agree'
        assert got_sim[1] == (len(views) - 1 if packs else 0)


def test_canary_splits_requests_alike(paths):
    uuids = [f'uuid-{i}' for i in range(40)]
    inside = [gate.in_canary(u, 50.0) for u in uuids]
    assert 0 < sum(inside) < len(uuids)
    for u, expected in zip(uuids, inside):
        req = request(u)
        a = scorer_verdict(paths['agree'], hosts(), req, canary_percent=50.0)
        b = simulator_verdict(paths['agree'], hosts(), req, ':canary=50')
        assert a == b
        assert (a[0] == gate.APPLIED) == expected


def test_decide_orders_its_checks(paths):
    p = artifact.load_artifact(paths['agree'])
    x = features.build_matrix(hosts(), request())
    s = p.score(x)
    empty = np.zeros((0, features.NUM_FEATURES), np.float32)
    assert gate.decide(p, empty, None).verdict == gate.NO_HOSTS
    assert gate.decide(None, x, None, error='gone').verdict == \
        gate.POLICY_UNAVAILABLE
    assert gate.decide(p, x, None, error='boom').detail == 'boom'
    slow = gate.GateSettings(latency_budget_ms=1.0, confidence_threshold=0.0)
    d = gate.decide(p, x, s, settings=slow, elapsed_ms=2.0)
    assert d.verdict == gate.OVER_LATENCY_BUDGET and d.weights is None
    d = gate.decide(p, x, s, settings=gate.GateSettings(
        confidence_threshold=0.0))
    assert d.applied and d.threshold == 0.0
    np.testing.assert_array_equal(d.weights, gate.normalised_weights(s))
    # A stale snapshot wins over everything after the assessment.
    d = gate.decide(p, x, s, settings=slow, elapsed_ms=2.0,
                    snapshot_status='stale', snapshot_detail='old')
    assert (d.verdict, d.detail) == (gate.SNAPSHOT_STALE, 'old')


def test_final_weights_is_novas_sum():
    nova = np.array([1.0, 0.5, 0.0])
    w = np.array([0.0, 0.2, 1.0])
    np.testing.assert_array_equal(gate.final_weights(nova, w, 10.0),
                                  [1.0, 2.5, 10.0])


def test_defaults_come_from_the_option_definitions():
    opts = {o.dest: o for o in conf.rl_weigher_opts}
    for field in dataclasses.fields(scorer_mod.Settings):
        assert field.default == opts[field.name].default, field.name
    for field in dataclasses.fields(gate.GateSettings):
        assert field.default == opts[field.name].default, field.name
        assert getattr(scorer_mod.Settings(), field.name) == field.default
    assert conf.default('weight_multiplier') == \
        opts['weight_multiplier'].default
    with pytest.raises(KeyError):
        conf.default('no_such_option')
    p = policies.make_policy('bundled')
    assert p.multiplier == conf.default('weight_multiplier')
    assert p.gate_settings == gate.GateSettings()
    # No second copy of a default anywhere.
    assert not hasattr(policies, 'DEFAULT_MULTIPLIER')
    assert not hasattr(policies, 'DEFAULT_THRESHOLD')
    assert not hasattr(scorer_mod, 'in_canary')


def test_threshold_falls_back_alike(tmp_path):
    path = testing.make_linear_policy(str(tmp_path / 'p'),
                                      {'vcpu_free_after_frac': -1.0})
    p = policies.make_policy(path)
    assert p.threshold == gate.threshold_for(p.policy, None)
    assert policies.make_policy(path + ':threshold=0.3').threshold == 0.3


def test_no_hosts_is_a_clean_abstention(paths, monkeypatch):
    s = scorer_mod.Scorer()
    logged = []
    monkeypatch.setattr(s.errors, 'error',
                        lambda *a, **kw: logged.append((a, kw)))
    for mode in ('gated', 'shadow'):
        st = scorer_mod.Settings(mode=mode, policy_path=paths['agree'])
        out = s.weigh([], features.HostColumns.from_views([]), request(), st)
        assert out.weights == [] and not out.applied
        assert out.reason == (gate.NO_HOSTS if mode == 'gated'
                              else gate.MODE_SHADOW)
    out = s.weigh_views([], request(), scorer_mod.Settings(
        mode='gated', policy_path=paths['agree']))
    assert out.reason == gate.NO_HOSTS
    assert logged == []
    assert 'errors' not in s.stats and 'abstained.error' not in s.stats
    assert s.stats['abstained.no_hosts'] == 2
