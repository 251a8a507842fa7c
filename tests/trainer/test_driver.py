"""One driver: :meth:`Simulation.play` and the loops built on it.

Each loop that lets a policy drive the simulation used to be written out
(evaluation, warm starts, branch continuations, imitation, calibration,
validation). The references below are those loops as they were, written
against the stepping API (``next_decision`` / ``place``) or the
environment's ``reset`` / ``step``; the driver must give the same numbers,
bit for bit.
"""

import types

import numpy as np
import pytest

from nova_rl_trainer.learning import branching
from nova_rl_trainer.learning import calibration
from nova_rl_trainer.learning import env as env_mod
from nova_rl_trainer.learning import imitation
from nova_rl_trainer.learning import train
from nova_rl_trainer.simulation import baselines
from nova_rl_trainer.simulation import policies
from nova_rl_trainer.simulation.setup import Setup
from nova_rl_trainer.simulation import simulator

SMALL = 'azure-v1-small'


@pytest.fixture(scope='module')
def setup():
    return Setup.from_scenario(SMALL, seed=0)


@pytest.fixture(scope='module')
def workload(setup):
    return setup.workload()


def new_sim(setup, workload):
    return simulator.Simulation(workload, setup.cluster,
                                setup.make_objective())


def state(sim):
    """Everything a run has built, comparable with ``==``."""
    r = sim.result()
    return (r.metrics, {k: v.tolist() for k, v in r.series.items()},
            r.util_hist.tolist(), sim.cols.tolist(), sim.host_of.tolist(),
            sim.current_vm, sim.done, sim.now, sim.cost())


def old_run(sim, policy):
    """``Simulation.run``'s loop as it was."""
    policy.bind(sim)
    if policy.needs_usage:
        sim.enable_usage()
    while True:
        vm = sim.next_decision()
        if vm < 0:
            break
        sim.place(vm, policy.choose(vm, sim.fit))


@pytest.mark.parametrize('spec', [*baselines.BASELINES, 'bundled:mode=raw'])
def test_run_is_the_old_loop(setup, workload, spec):
    sim = new_sim(setup, workload)
    result = sim.run(policies.make_policy(spec))
    ref = new_sim(setup, workload)
    old_run(ref, policies.make_policy(spec))
    assert state(sim) == state(ref)
    assert result.metrics['decisions'] == len(workload)


def test_chunks_equal_one_play(setup, workload):
    whole = new_sim(setup, workload)
    n = whole.play(policies.make_policy('best-fit'))
    assert n == whole.placed and whole.done and whole.current_vm < 0
    chunked = new_sim(setup, workload)
    policy = policies.make_policy('best-fit')
    total = 0
    while True:
        k = chunked.play(policy, max_decisions=97)
        total += k
        if k < 97:
            break
        # Stopped right after the 97th placement: nothing pending, the
        # clock at that request's arrival.
        assert chunked.current_vm < 0 and not chunked.done
    assert total == n
    assert state(chunked) == state(whole)
    # At the end there is nothing left to play.
    assert chunked.play(policy) == 0 and chunked.play(policy, until_s=0) == 0


def test_until_leaves_the_first_request_at_or_after_it_pending(setup,
                                                               workload):
    arrival = workload.trace.arrival_s
    sim = new_sim(setup, workload)
    policy = policies.make_policy('nova-default')
    placed = sim.play(policy, until_s=50000.0)
    vm = sim.current_vm
    assert vm >= 0 and arrival[vm] >= 50000.0
    # Every request before it was decided (placed or rejected)...
    assert sim.decisions == vm + 1 and placed == sim.placed
    assert arrival[vm - 1] < 50000.0 and sim.now == arrival[vm]
    # ...and it is not placed yet.
    assert sim.host_of[vm] < 0 and sim.fit.any()
    # An instant before the pending request's arrival: nothing to play.
    assert sim.play(policy, until_s=arrival[vm]) == 0
    assert sim.current_vm == vm
    # Going on places the pending request first: two stops equal one.
    sim.play(policy, until_s=90000.0)
    once = new_sim(setup, workload)
    once.play(policies.make_policy('nova-default'), until_s=90000.0)
    assert state(sim) == state(once)
    # max_decisions counts from the pending request.
    assert sim.play(policy, max_decisions=1) == 1
    assert sim.host_of[once.current_vm] >= 0 and sim.current_vm < 0


def test_pending_request_is_placed_first(setup, workload):
    sim = new_sim(setup, workload)
    vm = sim.next_decision()
    assert sim.pending() == vm          # does not advance past it
    assert sim.play(policies.make_policy('first-fit'), max_decisions=1) == 1
    assert sim.host_of[vm] >= 0 and sim.current_vm < 0
    assert sim.play(policies.make_policy('first-fit'), max_decisions=0) == 0
    assert sim.current_vm < 0 and sim.decisions == 1


def test_a_policy_is_bound_once_per_simulation(setup, workload):
    class Counting:
        name = 'counting'
        needs_usage = False

        def __init__(self):
            self.sim, self.binds = None, 0

        def bind(self, sim):
            self.sim = sim
            self.binds += 1

        def choose(self, vm, fit):
            return int(fit.argmax())

    policy = Counting()
    sim = new_sim(setup, workload)
    sim.play(policy, max_decisions=5)
    sim.play(policy, until_s=10000.0)
    sim.play(policy, max_decisions=3)
    assert policy.binds == 1
    branch = sim.clone()
    branch.play(policy, max_decisions=1)
    assert policy.binds == 2 and policy.sim is branch


def test_usage_is_enabled_only_before_the_run(setup, workload):
    sim = new_sim(setup, workload)
    sim.play(policies.make_policy('bundled:mode=raw'), max_decisions=3)
    assert sim.needs_usage
    started = new_sim(setup, workload)
    started.play(policies.make_policy('best-fit'), max_decisions=3)
    # A started run keeps what it has: usage stays absent.
    started.play(policies.make_policy('bundled:mode=raw'), max_decisions=3)
    assert not started.needs_usage
    assert started.placed == 6


# -- the loops built on play, against the loops they replace -----------------

def old_warm_start(env, start_s):
    """``PlacementEnv._start`` + ``reset`` as they were."""
    sim = simulator.Simulation(env.workload(0), env.cluster, env.objective)
    sim.enable_usage()
    if start_s > 0:
        policy = policies.make_policy(env.warmup_policy)
        policy.bind(sim)
        arrival = sim.workload.trace.arrival_s
        while True:
            vm = sim.next_decision()
            if vm < 0 or arrival[vm] >= start_s:
                break
            sim.place(vm, policy.choose(vm, sim.fit))
    if sim.current_vm < 0 and not sim.done:
        sim.next_decision()
    return sim


@pytest.mark.parametrize('start_s', [0.0, 60000.0, 172000.0, 1e9])
def test_env_warm_start_is_the_old_warm_up(start_s):
    env = env_mod.PlacementEnv(SMALL, warmup_policy='best-fit')
    ref = old_warm_start(env, start_s)
    assert state(env.warm_start(start_s)) == state(ref)
    obs, info = env.reset(options={'start_s': start_s})
    assert state(env.sim) == state(ref)
    primed = env_mod.PlacementEnv(SMALL, warmup_policy='best-fit')
    primed.prime_starts([30000.0, start_s, 100000.0])
    assert state(primed.warm_start(start_s)) == state(ref)


def old_demonstrations(env, heuristic, n, start_s_values, episode_decisions):
    xs, choices = [], []
    for start_s in start_s_values:
        env.reset(options={'start_s': start_s,
                           'max_decisions': episode_decisions})
        policy = policies.make_policy(heuristic)
        policy.bind(env.sim)
        while env.decision is not None and len(xs) < n:
            d = env.decision
            host = policy.choose(d.vm, env.sim.fit)
            xs.append(d.x)
            choices.append(int(np.flatnonzero(d.candidates == host)[0]))
            _, _, terminated, truncated, _ = env.step(host)
            if terminated or truncated:
                break
        if len(xs) >= n:
            break
    return xs, np.array(choices)


@pytest.mark.parametrize('heuristic,n', [('load-aware', 150),
                                         ('bundled:mode=raw', 60)])
def test_demonstrations_are_the_old_ones(heuristic, n):
    env = env_mod.PlacementEnv(SMALL, warmup_policy='best-fit')
    starts = [50000.0, 172500.0, 100000.0]
    xs, choices = imitation.demonstrations(env, heuristic, n, starts, 40)
    ref_xs, ref_choices = old_demonstrations(env, heuristic, n, starts, 40)
    assert len(xs) == len(ref_xs) > 40
    np.testing.assert_array_equal(choices, ref_choices)
    for a, b in zip(xs, ref_xs):
        np.testing.assert_array_equal(a, b)


def test_recorder_builds_the_matrix_once_and_plays_as_the_policy(
        setup, workload, monkeypatch):
    def score(x):
        return -x[:, 3]

    plain = new_sim(setup, workload)
    plain.play(policies.ScoringPolicy(score), max_decisions=200)
    xs, choices = [], []
    recorded = new_sim(setup, workload)
    built = []
    features = simulator.Simulation.candidate_features
    monkeypatch.setattr(simulator.Simulation, 'candidate_features',
                        lambda *a: built.append(1) or features(*a))
    recorded.play(imitation._Recorder(policies.ScoringPolicy(score), xs,
                                      choices), max_decisions=200)
    assert len(built) == len(xs) == 200
    assert state(recorded) == state(plain)
    assert choices == [int(np.argmax(score(x))) for x in xs]


def old_collect(env, policy, samples, horizon, starts, continuation,
                stride):
    from nova_rl_weigher import gate
    out = []
    per_episode = -(-samples // max(len(starts), 1))
    for start_s in starts:
        quota = min(samples, len(out) + per_episode)
        env.reset(options={'start_s': float(start_s),
                           'max_decisions': None})
        walker = policies.make_policy(continuation)
        walker.bind(env.sim)
        steps = 0
        while env.decision is not None and len(out) < quota:
            d = env.decision
            if steps % stride == 0 and d.candidates.shape[0] > 1:
                scores = policy.score(d.x)
                a = gate.assess(policy, d.x, scores, 'fresh')
                mine = int(d.candidates[a.best])
                theirs = d.nova_action
                if mine == theirs:
                    out.append((a.confidence, True, 0.0))
                else:
                    costs = branching.branch_costs(
                        env.sim, d.vm, (mine, theirs), continuation,
                        seconds=horizon)
                    out.append((a.confidence, False,
                                float(costs[0] - costs[1])))
            _, _, terminated, truncated, _ = env.step(
                walker.choose(d.vm, env.sim.fit))
            steps += 1
            if terminated or truncated:
                break
    return out


def test_calibration_samples_are_the_old_ones():
    # The old loop, with branches now as long in simulated seconds (1,800)
    # as calibration's horizon is (24 h by default).
    bundled = policies.make_policy('bundled').policy
    env = env_mod.PlacementEnv(SMALL, warmup_policy='best-fit')
    starts = [100000.0, 172500.0, 130000.0]
    got = calibration.collect(env, bundled, 9, 1800.0, starts, 'best-fit', 3)
    ref = old_collect(env, bundled, 9, 1800.0, starts, 'best-fit', 3)
    assert [(s.confidence, s.same_as_nova, s.delta) for s in got] == ref
    assert len(ref) == 9 and any(d != 0.0 for _, _, d in ref)


def old_continue_with(sim, name, horizon):
    policy = policies.make_policy(name)
    policy.bind(sim)
    for _ in range(horizon):
        vm = sim.next_decision()
        if vm < 0:
            break
        sim.place(vm, policy.choose(vm, sim.fit))
    return sim.cost()


@pytest.mark.parametrize('horizon', [0, 1, 50, 10 ** 6])
def test_branch_continuation_is_the_old_one(horizon):
    env = env_mod.PlacementEnv(SMALL)
    sim = env.warm_start(80000.0)
    vm = sim.current_vm
    host = int(np.flatnonzero(sim.fit)[-1])
    a, b = sim.clone(), sim.clone()
    a.place(vm, host)
    b.place(vm, host)
    assert branching.continue_with(a, 'tetris', horizon) == \
        old_continue_with(b, 'tetris', horizon)
    assert state(a) == state(b)


def old_validation_cost(val_env, val_starts, limit, make_policy):
    total = 0.0
    for start in val_starts:
        val_env.reset(options={'start_s': start})
        sim = val_env.sim
        policy = make_policy()
        policy.bind(sim)
        cost0 = sim.cost()
        vm, placed = sim.current_vm, 0
        while vm >= 0 and (limit is None or placed < limit):
            sim.place(vm, policy.choose(vm, sim.fit))
            placed += 1
            vm = sim.next_decision()
        total += sim.cost() - cost0
    return total


@pytest.mark.parametrize('eval_decisions', [300, 0])
def test_validation_cost_is_the_old_one(eval_decisions):
    env = env_mod.PlacementEnv(SMALL, warmup_policy='best-fit')
    starts = [120000.0, 172700.0]
    trainer = types.SimpleNamespace(
        val_env=env, val_starts=starts,
        config=train.TrainConfig(eval_decisions=eval_decisions))
    for name in ('load-aware', 'bundled:mode=raw'):
        def make():
            return policies.make_policy(name)
        got = train.Trainer.validation_cost(trainer, make)
        assert got == old_validation_cost(env, starts,
                                          eval_decisions or None, make)
