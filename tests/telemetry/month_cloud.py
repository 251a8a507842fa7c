"""A month of a simulated cloud, written into a real Gnocchi, and the loop
that runs on it: shared by ``test_end_to_end.py`` and
``tools/demo-telemetry.sh`` (:mod:`tests.telemetry.demo`).

The cloud: six compute hosts (:data:`HOSTS`, registered in a real Placement
as Nova's compute service registers them) and a month of VMs
(:func:`month_trace`). The policy it serves is a small untrained network
(:func:`served_policy`). The simulator places the VMs with Nova's default
weighers; at every placement the weigher's own
:class:`~nova_rl_weigher.scorer.Scorer` weighs the same candidates in
shadow mode and writes its decision log, on the simulated clock. Each
placed VM gets what Ceilometer would have written for it
(:mod:`ceilometer_shapes`), published with Ceilometer's own Gnocchi
publisher.

:func:`loop` lists the operator's commands on it, in order: ``ingest``,
``cluster --from-placement``, ``snapshot``, ``outcomes``, ``retrain``,
``publish``.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import datetime as dt
import math
import os
from pathlib import Path
import time
from typing import Iterator

import numpy as np

from nova_rl_trainer.simulation.cluster import ClusterSpec
from nova_rl_trainer.simulation import csv_trace
from nova_rl_trainer.simulation import policies
from nova_rl_trainer.simulation.setup import Setup
from nova_rl_trainer.simulation import simulator
from nova_rl_trainer.simulation import traces
from nova_rl_weigher import scorer as scorer_mod
from tests.telemetry.ceilometer_shapes import iso
from tests.telemetry.ceilometer_shapes import samples_of
from tests.telemetry.ceilometer_shapes import Vm
from tests.telemetry.ceilometer_shapes import vm_uuid
from tests.telemetry.placement_server import inventory

G = 300.0
DAYS = 30
#: How long after a decision ``outcomes`` measures.
HORIZON_S = 6 * 3600.0
#: The simulated cloud's time 0: 2026-03-02T00:00:00Z (no other test
#: writes in March).
T0 = dt.datetime(2026, 3, 2, tzinfo=dt.timezone.utc).timestamp()
STOP = T0 + DAYS * 86400.0
#: The compute hosts: 16 cores, 64 GiB, CPU allocation ratio 4.
HOSTS = tuple(f'compute-{i:03d}' for i in range(6))
CORES, RAM_MB, RATIO = 16, 65536, 4.0
#: VMs of the month: some running all month, the others arriving through
#: it and living hours to days.
VMS, RESIDENT = 60, 12


def month_trace(path: Path) -> None:
    """The month's workload as the trainer's CSV trace."""
    rng = np.random.default_rng(11)
    horizon = DAYS * 86400.0
    rows = []
    for i in range(VMS):
        if i < RESIDENT:
            arrival, departure = float(i * 60), None
        else:
            arrival = float(rng.uniform(0, horizon - 86400))
            life = float(np.clip(rng.exponential(4 * 86400), 2 * 3600,
                                 horizon))
            departure = arrival + life if arrival + life < horizon else None
        vcpus = int(rng.choice([2, 4, 8]))
        mean = float(rng.uniform(0.2, 0.7))
        rows.append([f'vm{i:03d}', f'project-{i % 4}', arrival,
                     '' if departure is None else departure, vcpus,
                     vcpus * 2048, 20, round(mean, 3),
                     round(min(1.0, mean * 1.5), 3)])
    with open(path, 'w', newline='', encoding='utf-8') as f:
        w = csv.writer(f)
        w.writerow(csv_trace.CSV_COLUMNS)
        w.writerows(rows)


def cluster_spec() -> ClusterSpec:
    return ClusterSpec.from_dict({'host_groups': [{
        'name': 'compute', 'count': len(HOSTS), 'vcpus': CORES,
        'ram_mb': RAM_MB, 'disk_gb': 1000, 'cpu_allocation_ratio': RATIO,
        'hosts': list(HOSTS)}]})


def add_hosts(placement) -> None:
    """The compute hosts' resource providers, as nova-compute makes them."""
    for name in HOSTS:
        placement.add_provider(name, {
            'VCPU': inventory(CORES, 0, RATIO),
            'MEMORY_MB': inventory(RAM_MB), 'DISK_GB': inventory(1000)})


class _SimClock:
    """The scorer's ``time`` module, on the simulated clock: a decision
    record's ``time`` is when the simulated request was weighed."""

    perf_counter = staticmethod(time.perf_counter)
    monotonic = staticmethod(time.monotonic)

    def __init__(self) -> None:
        self.now = T0

    def time(self) -> float:
        return self.now


@contextlib.contextmanager
def _scorer_clock() -> Iterator[_SimClock]:
    clock = _SimClock()
    saved = scorer_mod.time
    scorer_mod.time = clock
    try:
        yield clock
    finally:
        scorer_mod.time = saved


def place(trace: traces.Trace, setup: Setup, uuids: list[str],
          served: str, log_dir: Path
          ) -> tuple[dict[int, int], simulator.Workload]:
    """Host of each placed VM, Nova's default weighers deciding, with the
    simulator's stepping API; the weigher's Scorer scores every request
    with the ``served`` policy in shadow mode and logs it."""
    workload = simulator.Workload(trace, setup.seed, setup.config)
    sim = simulator.Simulation(workload, setup.cluster)
    policy = policies.make_policy('nova-default')
    policy.bind(sim)
    names = setup.cluster.per_host.names
    scorer = scorer_mod.Scorer()
    settings = scorer_mod.Settings(
        mode='shadow', policy_path=served, usage_snapshot_path='',
        decision_log_dir=str(log_dir))
    hosts = {}
    with _scorer_clock() as clock:
        try:
            while True:
                vm = sim.next_decision()
                if vm < 0:
                    break
                clock.now = T0 + float(trace.arrival_s[vm])
                cand, columns = sim.candidate_columns(sim.fit)
                request = dataclasses.replace(sim.request_view(vm),
                                              instance_uuid=uuids[vm])
                scorer.weigh([names[c] for c in cand], columns, request,
                             settings)
                host = int(policy.choose(vm, sim.fit))
                hosts[vm] = host
                sim.place(vm, host)
            if not scorer.flush_decision_log(30):
                raise RuntimeError('the decision log was not written')
        finally:
            scorer.close()
    return hosts, workload


def served_policy(path: Path) -> str:
    """The policy the cloud serves: a small untrained network exported as
    ``train`` exports one (what it scores is not the point here, and
    ``retrain`` starts from it in seconds); its artifact's path."""
    from nova_rl_trainer.learning import policy_net
    model = policy_net.EnsembleScorer(members=2, hidden=8, seed=0)
    wide = np.full(model.W1.shape[1], 1e9)
    policy_net.export(
        model, str(path), feature_min=-wide, feature_max=wide,
        objective='packing', policy_version='month-served',
        provenance={'method': 'untrained network (tests/telemetry)'},
        nova_weighers=policies.nova_weighers_record('nova-default'))
    return str(path)


def build(base: Path, telemetry) -> dict:
    """Export the served policy, place the month, log the decisions and
    publish the telemetry into ``telemetry``'s Gnocchi. What the checks
    need, with timings."""
    timings = {}
    month_trace(base / 'month.csv')
    setup = Setup(trace_path=str(base / 'month.csv'), trace_format='csv',
                  cluster=cluster_spec())
    trace = setup.load_trace()
    uuids = [vm_uuid('e2e-month-' + trace.vm_id(i))
             for i in range(len(trace))]
    t = time.monotonic()
    served = served_policy(base / 'served')
    timings['served_s'] = time.monotonic() - t
    log_dir = base / 'decisions'
    log_dir.mkdir()
    t = time.monotonic()
    hosts, workload = place(trace, setup, uuids, served, log_dir)
    timings['place_s'] = time.monotonic() - t
    ticks = int(math.ceil((STOP - T0) / G)) + 1
    k = np.arange(ticks)
    vms = {}
    for i, host in hosts.items():
        dep = float(trace.departure_s[i])
        vms[i] = Vm(
            id=uuids[i], project_id=trace.project_ids[trace.project[i]],
            host=HOSTS[host], vcpus=int(trace.vcpus[i]),
            memory_mb=int(trace.memory_mb[i]),
            root_gb=int(trace.disk_gb[i]), ephemeral_gb=0,
            launched_at=T0 + float(trace.arrival_s[i]),
            # Still running at the end of the month: deleted an hour after
            # the window, so that no later window sees it.
            deleted_at=(STOP + 3600 if math.isnan(dep) else T0 + dep),
            t0=T0, shares=workload.usage.cpu_util(np.full(ticks, i), k))
    samples, _ = samples_of(list(vms.values()))
    t = time.monotonic()
    telemetry.publish(samples, chunk=50000, timeout=900, wait=False)
    telemetry.wait_processed(deadline_s=900)
    timings['publish_s'] = time.monotonic() - t
    return {'trace': trace, 'vms': vms, 'samples': len(samples),
            'decisions': log_dir, 'served': served, 'base': base,
            'timings': timings}


def gnocchi_env(endpoint: str) -> dict[str, str]:
    """Gnocchi's documented standalone settings."""
    return {'OS_AUTH_TYPE': 'gnocchi-basic', 'GNOCCHI_USER': 'admin',
            'GNOCCHI_ENDPOINT': endpoint}


@contextlib.contextmanager
def environment(values: dict[str, str]) -> Iterator[None]:
    """Only ``values`` of ``OS_*``/``GNOCCHI_*`` set, restored after."""
    saved = {k: v for k, v in os.environ.items()
             if k.startswith(('OS_', 'GNOCCHI_'))}
    for key in saved:
        del os.environ[key]
    os.environ.update(values)
    try:
        yield
    finally:
        for key in values:
            os.environ.pop(key, None)
        os.environ.update(saved)


@dataclasses.dataclass
class Step:
    name: str
    argv: list[str]
    env: dict[str, str]
    #: Files the step writes, by label.
    writes: dict[str, Path]


def loop(base: Path, cloud: dict, gnocchi: str, placement: str
         ) -> list[Step]:
    """The operator's commands on the month, in order."""
    genv = gnocchi_env(gnocchi)
    f = {name: base / name for name in (
        'ingested.csv', 'ingest.json', 'cluster.json', 'usage.json',
        'outcomes.jsonl', 'outcomes.json', 'retrained', 'policy',
        'publish.json')}
    return [
        Step('ingest', ['ingest', '--source', 'gnocchi', '--start', iso(T0),
                        '--stop', iso(STOP), '--out', str(f['ingested.csv']),
                        '--json', str(f['ingest.json'])], genv,
             {'trace': f['ingested.csv'], 'summary': f['ingest.json']}),
        Step('cluster', ['cluster', '--from-placement', '--os-auth-type',
                         'admin_token', '--os-endpoint', placement,
                         '--os-token', 'admin', '--out',
                         str(f['cluster.json'])], {},
             {'cluster': f['cluster.json']}),
        # The weigher's snapshot of the month's last hour.
        Step('snapshot', ['snapshot', '--source', 'gnocchi', '--window-s',
                          '3600', '--at', iso(STOP - 1800), '--cluster',
                          str(f['cluster.json']), '--out',
                          str(f['usage.json'])], genv,
             {'snapshot': f['usage.json']}),
        Step('outcomes', ['outcomes', '--decisions', str(cloud['decisions']),
                          '--source', 'gnocchi', '--cluster',
                          str(f['cluster.json']), '--horizon-s',
                          str(HORIZON_S), '--out', str(f['outcomes.jsonl']),
                          '--json', str(f['outcomes.json'])], genv,
             {'outcomes': f['outcomes.jsonl'],
              'summary': f['outcomes.json']}),
        # One PPO iteration: enough to run every stage.
        Step('retrain', [
            'retrain', '--policy', cloud['served'], '--trace',
            str(f['ingested.csv']), '--trace-format', 'csv', '--cluster',
            str(f['cluster.json']), '--outcomes', str(f['outcomes.jsonl']),
            '--objective', 'packing', '--out', str(f['retrained']),
            '--iterations', '1', '--rollout-decisions', '64',
            '--vine-states', '4', '--vine-horizon', '50',
            '--calibration-samples', '10', '--eval-every', '1',
            '--bootstrap', '50', '--quiet'], {},
             {'report': f['retrained'] / 'retrain.json',
              'policy': f['retrained'] / 'policy'}),
        Step('publish', [
            'publish', '--candidate', str(f['retrained'] / 'policy'),
            '--target', str(f['policy']), '--trace', str(f['ingested.csv']),
            '--trace-format', 'csv', '--cluster', str(f['cluster.json']),
            '--jobs', '1', '--json', str(f['publish.json']), '--quiet'], {},
             {'decision': f['publish.json'], 'target': f['policy']}),
    ]
