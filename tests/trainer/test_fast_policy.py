"""The artifact policy's fast path decides exactly as before.

``Policy.score`` now evaluates the network in reused scratch buffers and
``features.matrix_from_inputs`` builds the matrix a few rows at a time; the
simulator hands its candidate columns to it directly. Each is checked to
the bit against the code it replaced (kept here and in
``tests/unit/test_features.py`` as references), on random and on simulated
states, and a v1 policy (the first bundled one), gated and raw, picks the same
host at every
decision of ``azure-v1-small`` as the reference chain (reference features,
reference network, the gate as the simulator applied it before).
"""

import threading
import warnings

import numpy as np
import pytest

from nova_rl_weigher import artifact
from nova_rl_weigher import features
from nova_rl_weigher import gate
from tests import fixtures as testing

from nova_rl_trainer.simulation import policies
from nova_rl_trainer.simulation.setup import Setup
from nova_rl_trainer.simulation import simulator

from ..unit.test_features import reference_matrix


def reference_score(policy, x):
    """``Policy.score`` as it was: the same equations, fresh arrays."""
    p = policy.params
    k, _, h = p['W1'].shape
    z = (x - policy.mean) / policy.std
    h1 = np.maximum(z @ policy._w1_flat + policy._b1_flat, 0.0)
    h1 = h1.reshape(-1, k, h).transpose(1, 0, 2)
    context = h1.mean(axis=1)
    pre2 = (np.matmul(h1, p['W2'])
            + (np.matmul(context[:, None, :], p['U2']) + p['b2'][:, None, :]))
    h2 = np.maximum(pre2, 0.0)
    return np.matmul(h2, p['w3'][:, :, None])[:, :, 0] + p['b3'][:, None]


@pytest.fixture(scope='module')
def bundled():
    return artifact.load_artifact(testing.V1_POLICY_PATH)


def random_matrix(rng, n):
    hosts, request, usage = testing.random_candidates(rng, max(n, 1))
    return features.build_matrix(hosts, request, usage,
                                 schema=features.SCHEMA_V1)[:n]


def test_score_equals_the_reference_to_the_bit(bundled):
    rng = np.random.default_rng(3)
    # Sizes up and down, so scratch buffers are reused at other sizes.
    for n in (500, 1, 7, 2000, 64, 0, 300, 2, 10000, 5):
        x = random_matrix(rng, n)
        for xx in (x, x.astype(np.float64)):
            with warnings.catch_warnings():
                warnings.simplefilter('ignore', RuntimeWarning)  # n == 0
                got, want = bundled.score(xx), reference_score(bundled, xx)
            assert got.dtype == want.dtype and got.shape == want.shape
            np.testing.assert_array_equal(got, want)
    x = random_matrix(rng, 3)
    np.testing.assert_array_equal(bundled.score(x[0]),
                                  reference_score(bundled, x[0]))


def test_score_is_safe_across_threads(bundled):
    rng = np.random.default_rng(4)
    xs = [random_matrix(rng, n) for n in (3, 40, 500, 41, 499, 1200)]
    want = [reference_score(bundled, x) for x in xs]
    bad = []

    def work(seed):
        order = np.random.default_rng(seed).permutation(len(xs))
        for _ in range(20):
            for i in order:
                if not np.array_equal(bundled.score(xs[i]), want[i]):
                    bad.append(i)

    threads = [threading.Thread(target=work, args=(s,)) for s in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert bad == []


@pytest.fixture(scope='module')
def small():
    setup = Setup.from_scenario('azure-v1-small')
    return setup, setup.workload()


def test_simulated_features_equal_the_reference(small, bundled):
    setup, wl = small
    sim = simulator.Simulation(wl, setup.cluster)
    player = policies.make_policy('best-fit')
    player.bind(sim)
    sim.enable_usage()
    seen = 0
    while seen < 600:
        vm = sim.next_decision()
        if vm < 0:
            break
        cand, x, nova_w = sim.candidate_features(vm, sim.fit,
                                                 features.SCHEMA_V1)
        cand2, cols = sim.candidate_columns(sim.fit)
        np.testing.assert_array_equal(cand, cand2)
        np.testing.assert_array_equal(nova_w, cols.nova_weight)
        np.testing.assert_array_equal(x, reference_matrix(
            cols, sim.request_view(vm), sim.project_cpu_ratio(vm)))
        np.testing.assert_array_equal(bundled.score(x),
                                      reference_score(bundled, x))
        sim.place(vm, player.choose(vm, sim.fit))
        seen += 1
    assert seen == 600


class ReferencePolicy(policies.FeaturePolicy):
    """The artifact policy's decision as the simulator made it before:
    reference features and network, then the gate chain it inlined."""

    def __init__(self, policy, mode, threshold=None, multiplier=10.0):
        super().__init__()
        self.policy = policy
        self.mode = mode
        self.threshold = gate.threshold_for(policy, threshold)
        self.multiplier = multiplier
        self.applied = 0

    def choose(self, vm, fit):
        cand, cols = self.sim.candidate_columns(fit)
        x = reference_matrix(cols, self.sim.request_view(vm),
                             self.sim.project_cpu_ratio(vm))
        nova_weight = cols.nova_weight
        scores = reference_score(self.policy, x)
        if self.mode == 'raw':
            self.applied += 1
            return int(cand[np.argmax(scores.mean(axis=0))])
        a = gate.assess(self.policy, x, scores, 'fresh')
        if a.reason or a.confidence < self.threshold:
            return int(cand[np.argmax(nova_weight)])
        self.applied += 1
        final = nova_weight + self.multiplier * np.asarray(
            gate.normalised_weights(scores))
        return int(cand[np.argmax(final)])


class Recorder:
    """Plays a policy and records the host it picks at every decision."""

    def __init__(self, policy):
        self.policy = policy
        self.name = 'recorder'
        self.needs_usage = True
        self.hosts = []

    def bind(self, sim):
        self.policy.bind(sim)

    def choose(self, vm, fit):
        host = self.policy.choose(vm, fit)
        self.hosts.append(host)
        return host


def play(small, policy):
    setup, wl = small
    rec = Recorder(policy)
    sim = simulator.Simulation(wl, setup.cluster, setup.make_objective())
    result = sim.run(rec)
    return rec.hosts, result.metrics


@pytest.mark.parametrize('spec, mode, threshold', [
    ('V1', 'gated', None),
    ('V1:mode=raw', 'raw', None),
    ('LINEAR', 'gated', None),
    ('LINEAR:threshold=0.6', 'gated', 0.6),
])
def test_every_decision_is_the_references(small, bundled, tmp_path, spec,
                                          mode, threshold):
    if spec.startswith('LINEAR'):
        # A policy that acts (the bundled one abstains on this small
        # cluster, outside its training ranges), with a disagreeing
        # ensemble under a threshold, so both verdicts occur.
        path = testing.make_linear_policy(
            str(tmp_path / 'p'), {'ram_free_after_frac': -1.0,
                                  'vcpu_free_after_frac': 0.5},
            ensemble_size=4, agreement=threshold is None,
            schema=features.SCHEMA_V1)
        spec = spec.replace('LINEAR', path)
        loaded = artifact.load_artifact(path)
    else:
        spec = spec.replace('V1', testing.V1_POLICY_PATH)
        loaded = bundled
    fast = policies.make_policy(spec)
    hosts, m = play(small, fast)
    ref = ReferencePolicy(loaded, mode, threshold)
    ref_hosts, ref_m = play(small, ref)
    assert len(hosts) == len(ref_hosts) > 1000
    assert hosts == ref_hosts
    assert fast.applied == ref.applied
    assert m['objective_value'] == ref_m['objective_value']
    if loaded is bundled and mode == 'gated':
        assert fast.abstained == {'out_of_distribution': len(hosts)}
    if threshold is not None:
        assert 0 < fast.applied < len(hosts)
