"""Decision states sampled from simulations, for the Nova parity test.

Each run plays a baseline policy on a scenario (with its cluster varied:
host size, allocation ratios, number of hosts; an Azure trace and a CSV copy
of it with local disk) and stops at sampled decision points. At each one it
records what Nova needs to rebuild the same state (the candidates' raw host
columns, the request, the usage the simulated snapshot holds) and what the
simulator decides there: the candidate feature matrix and Nova weights
(``sim.candidate_features``), the host the gated bundled policy picks
(``policies.make_policy('bundled')``, the same object the trainer evaluates
with) with its gate verdict, and the host ``nova-default`` picks. Then the
run goes on with the baseline's choice.

Only the simulator's public names are used (``Setup``, ``Simulation``,
``next_decision``, ``fit``, ``place``, ``candidate_features``,
``request_view``, ``project_cpu_ratio``, ``cols``, ``make_policy``), so this
module has no Nova import and no knowledge of how the simulator is laid out
inside.

The simulator's clusters are identical hosts, so one state never mixes host
sizes; sizes and ratios vary across runs.
"""

from __future__ import annotations

import collections
import dataclasses
import os
import uuid

import numpy as np

from nova_rl_weigher import features

GIB = 1024.0
_ROW = {name: i for i, name in enumerate(
    features.HOST_COLUMNS + features.USAGE_COLUMNS)}
_UUID_NS = uuid.UUID('6f1d3c9e-8a52-4b7e-9d0c-2f4a1b5e7c30')


@dataclasses.dataclass(frozen=True)
class Run:
    """One simulation to sample states from."""

    label: str
    seed: int
    baseline: str               # the policy that plays between samples
    states: int                 # decision points sampled
    cluster_changes: tuple = ()  # ((field, value), ...) on the scenario's
    disk_gb_per_vcpu: float = 0.0  # > 0: a CSV copy of the trace with disk
    scenario: str = 'azure-v1-small'


_L = dict(host_vcpus=48, host_ram_mb=384 * GIB, host_disk_gb=2048)

#: The runs sampled. ``azure-v1-small``'s own hosts (32 vCPUs / 128 GiB) lie
#: outside the bundled policy's training ranges (it was trained on 48 vCPU /
#: 384 GiB hosts), so there the gate abstains on every request; the other
#: runs use hosts within those ranges (log2 size within 0.25 of 48 vCPUs and
#: 384 GiB) with fewer hosts, so the cluster fills and the policy acts or is
#: unsure. Ratios vary the free-capacity fractions and Nova's CPU weigher;
#: RAM 1.5 lets physical free RAM go negative (Nova's RAM weigher clamps it).
#: The disk runs replay the same requests from a CSV copy of the trace with
#: local disk (whole GB per flavor), so Nova's disk weigher and the disk
#: features vary too.
RUNS: tuple[Run, ...] = (
    Run('32x128-stock-spread', 0, 'nova-default', 30),
    Run('32x128-stock-bestfit', 1, 'best-fit', 25),
    Run('48x384-h6-bestfit', 0, 'best-fit', 30,
        tuple(dict(hosts=6, **_L).items())),
    Run('48x384-h8-spread', 1, 'nova-default', 30,
        tuple(dict(hosts=8, **_L).items())),
    Run('56x448-cpu8-spread', 0, 'nova-default', 30,
        tuple(dict(hosts=6, host_vcpus=56, host_ram_mb=448 * GIB,
                   cpu_allocation_ratio=8.0).items())),
    Run('44x352-ram1.5-bestfit', 1, 'best-fit', 30,
        tuple(dict(hosts=6, host_vcpus=44, host_ram_mb=352 * GIB,
                   ram_allocation_ratio=1.5).items())),
    Run('44x352-ram1.5-spread', 0, 'nova-default', 25,
        tuple(dict(hosts=6, host_vcpus=44, host_ram_mb=352 * GIB,
                   ram_allocation_ratio=1.5).items())),
    Run('48x384-cpu2-firstfit', 0, 'first-fit', 30,
        tuple(dict(hosts=8, cpu_allocation_ratio=2.0, **_L).items())),
    Run('48x384-disk-spread', 0, 'nova-default', 30,
        tuple(dict(hosts=7, **_L).items()), disk_gb_per_vcpu=2.0),
    Run('48x384-disk-firstfit', 0, 'first-fit', 30,
        tuple(dict(hosts=6, **_L).items()), disk_gb_per_vcpu=0.5),
)


@dataclasses.dataclass
class State:
    """One decision point: what Nova is given and what the simulator did."""

    run: str
    decision: int                     # decisions made in the run so far
    vm: int
    request: features.RequestView
    instance_uuid: str                # a UUID for Nova's RequestSpec
    cand: np.ndarray                  # candidate host indices, ascending
    names: list[str]                  # their host names
    rows: dict[str, np.ndarray]       # candidates' raw sim.cols rows
    project_cpu_ratio: float | None
    sim_features: np.ndarray          # (N, F) float32
    sim_nova_weights: np.ndarray      # (N,)
    sim_choice: int                   # host index, gated bundled policy
    sim_verdict: str                  # 'applied' or the abstention reason
    sim_default_choice: int           # host index, nova-default baseline
    # Feature schema v2 (the simulator's signals and what makes them):
    sim_features_v2: np.ndarray       # (N, 36) float32
    now: float                        # simulated time of the request
    signals: np.ndarray               # candidates' features.SIGNAL_COLUMNS
    request_life: object              # features.Lifetime | None
    siblings: object                  # features.Lifetime | None
    project_peak: float | None
    lifetimes: object                 # features.Lifetimes measured so far
    # Per candidate: (project id, flavor name, start, predicted-from
    # lifetime) of each VM it holds.
    holdings: list

    @property
    def position(self) -> int:
        """The simulator's choice as a position among the candidates."""
        return int(np.flatnonzero(self.cand == self.sim_choice)[0])

    def interchangeable(self, position: int) -> bool:
        """Whether candidate ``position`` has exactly the feature row of
        the simulator's choice: nothing the policy or Nova reads tells the
        two apart, so which one wins is only a matter of host order."""
        return bool(np.array_equal(self.sim_features[position],
                                   self.sim_features[self.position]))


def host_name(index: int) -> str:
    return 'compute-%03d' % index


def _setup(run: Run, tmp_dir: str, cache: dict):
    from nova_rl_trainer.simulation import setup as setup_mod
    changes = dict(run.cluster_changes)
    base = setup_mod.Setup.from_scenario(run.scenario, seed=run.seed,
                                         cluster_changes=changes or None)
    if run.disk_gb_per_vcpu <= 0:
        return base
    # The same requests with local disk: the generic CSV format, written
    # from the scenario's trace with integral GB per flavor (Nova's
    # ComputeNode reports free disk in whole GB).
    key = ('csv', run.scenario, run.seed, run.disk_gb_per_vcpu)
    path = cache.get(key)
    if path is None:
        from nova_rl_trainer.simulation import csv_trace
        trace = base.load_trace()
        disk = np.ceil(trace.vcpus * run.disk_gb_per_vcpu)
        trace = dataclasses.replace(trace, disk_gb=disk)
        path = os.path.join(tmp_dir, 'parity-%s-s%d-d%g.csv' % (
            run.scenario, run.seed, run.disk_gb_per_vcpu))
        csv_trace.write_csv(trace, path)
        cache[key] = path
    return setup_mod.Setup(trace_path=path, trace_format='csv',
                           cluster=base.cluster, seed=run.seed,
                           name=run.label)


def _verdict(policy, before: tuple[int, collections.Counter]) -> str:
    applied, abstained = before
    if policy.applied > applied:
        return 'applied'
    diff = policy.abstained - abstained
    (reason,) = diff.keys()
    return reason


def sample_run(run: Run, tmp_dir: str, cache: dict) -> list[State]:
    """Play ``run`` and return its sampled decision states."""
    from nova_rl_trainer.simulation import policies
    from nova_rl_trainer.simulation import simulator

    setup = _setup(run, tmp_dir, cache)
    wl_key = ('workload', setup.trace_path, setup.seed, setup.window,
              setup.sample)
    workload = cache.get(wl_key)
    if workload is None:
        workload = cache[wl_key] = setup.workload()
    sim = simulator.Simulation(workload, setup.cluster,
                               setup.make_objective())
    # The bundled policy reads the usage snapshot: maintain it from the
    # first event, as a run of that policy would.
    sim.enable_usage()
    # And schema v2's signals from the first event, as a v2 policy would.
    sim.keep_signals()
    gated = policies.make_policy('bundled')
    default = policies.make_policy('nova-default')
    player = policies.make_policy(run.baseline)
    for p in (gated, default, player):
        p.bind(sim)

    n = len(workload)
    rng = np.random.default_rng([run.seed, 0x9A7])
    # Spread over the run, after a short warm-up so hosts are in use.
    picks = set(rng.choice(np.arange(50, int(n * 0.9)), size=run.states,
                           replace=False).tolist())
    last = max(picks)
    states = []
    decision = 0
    while decision <= last:
        vm = sim.next_decision()
        if vm < 0:
            break
        fit = sim.fit
        if decision in picks:
            states.append(_capture(run, sim, vm, fit, decision, gated,
                                   default))
        sim.place(vm, player.choose(vm, fit))
        decision += 1
    return states


def _capture(run, sim, vm, fit, decision, gated, default) -> State:
    from nova_rl_weigher import features
    cand, x, nova_w = sim.candidate_features(vm, fit, features.SCHEMA_V1)
    cand = np.asarray(cand)
    _, x2, _ = sim.candidate_features(vm, fit, features.SCHEMA_V2)
    req_signals = sim.request_signals(vm)
    trace = sim.workload.trace
    flavor_names = sim.workload.life.flavor_names
    holdings = [[(trace.project_ids[trace.project[v]],
                  flavor_names[sim.workload.life.flavor[v]], start, life)
                 for v, start, life in sim.holdings(int(h))]
                for h in cand]
    rows = {name: np.array(sim.cols[i][cand], dtype=np.float64)
            for name, i in _ROW.items()}
    before = (gated.applied, collections.Counter(gated.abstained))
    choice = int(gated.choose(vm, fit))
    verdict = _verdict(gated, before)
    request = sim.request_view(vm)
    return State(
        run=run.label, decision=decision, vm=int(vm), request=request,
        instance_uuid=str(uuid.uuid5(_UUID_NS, '%s/%d' % (run.label, vm))),
        cand=cand, names=[host_name(int(i)) for i in cand], rows=rows,
        project_cpu_ratio=sim.project_cpu_ratio(vm),
        sim_features=np.array(x, copy=True),
        sim_nova_weights=np.array(nova_w, dtype=np.float64, copy=True),
        sim_choice=choice, sim_verdict=verdict,
        sim_default_choice=int(default.choose(vm, fit)),
        sim_features_v2=np.array(x2, copy=True), now=float(sim.now),
        signals=sim.host_signals(cand).copy(),
        request_life=req_signals.life, siblings=sim.siblings(vm),
        project_peak=req_signals.project_peak_ratio,
        lifetimes=sim.lifetime_tables(), holdings=holdings)


def sample_states(tmp_dir: str, runs=RUNS) -> list[State]:
    """Every run's states, in run order (deterministic)."""
    cache: dict = {}
    states = []
    for run in runs:
        states.extend(sample_run(run, tmp_dir, cache))
    return states


def _life(life) -> dict:
    return {'median_s': life.median_s, 'p90_s': life.p90_s,
            'count': life.count}


def snapshot_v2(state: State) -> dict:
    """A version 2 usage snapshot document holding what the simulator's
    signals read for this request: v1's entries, each candidate's
    allocation at the last sample and 24 h peaks, the project's peak
    ratio and siblings, and the lifetimes measured so far."""
    hosts, projects = snapshot_entries(state)
    sig = state.signals
    for i, name in enumerate(state.names):
        entry = hosts.setdefault(name, {})
        if np.isfinite(sig[0:2, i]).all():
            entry['vcpus_allocated'] = float(sig[0, i])
            entry['ram_mb_allocated'] = float(sig[1, i])
        if np.isfinite(sig[2:4, i]).all():
            entry['cpu_util_peak_24h'] = float(sig[2, i])
            entry['mem_util_peak_24h'] = float(sig[3, i])
    lt = state.lifetimes
    for pid, life in lt.project.items():
        projects.setdefault(pid, {})['lifetime'] = _life(life)
    for (pid, flavor), life in lt.project_flavor.items():
        projects.setdefault(pid, {}).setdefault('flavors', {})[flavor] = {
            'lifetime': _life(life)}
    pid = state.request.project_id
    if state.project_peak is not None:
        projects.setdefault(pid, {})['cpu_ratio_peak_24h'] = \
            state.project_peak
    if state.siblings is not None:
        projects.setdefault(pid, {})['recent_lifetime'] = _life(
            state.siblings)
    return {'format_version': 2, 'generated_at': state.now, 'hosts': hosts,
            'projects': projects,
            'flavors': {f: {'lifetime': _life(life)}
                        for f, life in lt.flavor.items()}}


def snapshot_entries(state: State) -> tuple[dict, dict]:
    """The usage snapshot's ``hosts`` and ``projects`` sections holding
    exactly what the simulated snapshot gives the policy for this request:
    the candidates with usage present, and the requesting project's
    measured CPU ratio when the simulator knows it."""
    r = state.rows
    hosts = {}
    for i, name in enumerate(state.names):
        if r['usage_present'][i] > 0:
            hosts[name] = {k: float(r[k][i]) for k in (
                'cpu_util_mean', 'cpu_util_p95', 'mem_util_mean',
                'mem_util_p95')}
    projects = {}
    if state.project_cpu_ratio is not None:
        projects[state.request.project_id] = {
            'cpu_ratio': float(state.project_cpu_ratio)}
    return hosts, projects
