"""``nova-rl-trainer cluster --from-placement`` against a real Placement
API (openstack-placement under uWSGI on 127.0.0.1, noauth2), its resource
providers and inventories created through its HTTP API as Nova's compute
service creates them.
"""

from __future__ import annotations

import json
import os

import pytest

from nova_rl_trainer.simulation.cluster import ClusterSpec
from tests.telemetry import cli_runner
from tests.telemetry.placement_server import clouds_yaml
from tests.telemetry.placement_server import inventory
from tests.telemetry.placement_server import placement  # noqa: F401
from tests.telemetry.servers import free_port


def run_cluster(args: list[str], out) -> cli_runner.Run:
    """``nova-rl-trainer cluster --from-placement ARGS --out OUT``."""
    return cli_runner.run(['cluster', '--from-placement', *args, '--out',
                           str(out)])


@pytest.fixture
def clean_env(monkeypatch):
    for key in list(os.environ):
        if key.startswith(('OS_', 'GNOCCHI_')):
            monkeypatch.delenv(key)
    return monkeypatch


def token_args(endpoint: str, token: str = 'admin') -> list[str]:
    """A Placement in noauth2 mode takes any X-Auth-Token: keystoneauth1's
    admin_token plugin sends one."""
    return ['--os-auth-type', 'admin_token', '--os-endpoint', endpoint,
            '--os-token', token]


#: name -> (VCPU total, reserved, ratio), (MEMORY_MB ...), (DISK_GB ...)
#: or None for no DISK_GB inventory.
COMPUTE = {
    # gen9: 64 threads, 512 GiB with 4 GiB reserved for the host.
    'cmp-a1': ((64, 0, 4.0), (524288, 4096, 1.0), (1920, 0, 1.0)),
    'cmp-a2': ((64, 0, 4.0), (524288, 4096, 1.0), (1920, 0, 1.0)),
    'cmp-a3': ((64, 0, 4.0), (524288, 4096, 1.0), (1920, 0, 1.0)),
    # gen10: 128 threads, 8 reserved (reserved_host_cpus), RAM ratio 1.5,
    # 40 GB of disk reserved.
    'cmp-b1': ((128, 8, 2.0), (1048576, 0, 1.5), (3840, 40, 1.0)),
    'cmp-b2': ((128, 8, 2.0), (1048576, 0, 1.5), (3840, 40, 1.0)),
    # gen9 again, but another CPU ratio: another group of the same size.
    'cmp-c1': ((64, 0, 16.0), (524288, 4096, 1.0), (1920, 0, 1.0)),
    # Disk on shared storage: no DISK_GB inventory.
    'cmp-nodisk': ((8, 0, 4.0), (16384, 512, 1.0), None),
}


@pytest.fixture(scope='module')
def cloud(placement):  # noqa: F811
    rps = {}
    for name, (vcpu, mem, disk) in COMPUTE.items():
        inv = {'VCPU': inventory(*vcpu), 'MEMORY_MB': inventory(*mem)}
        if disk is not None:
            inv['DISK_GB'] = inventory(*disk)
        rps[name] = placement.add_provider(name, inv)
    # Not compute hosts: a vGPU child of cmp-b1, a shared-storage provider,
    # a compute node not yet reporting inventory, and a host of dedicated
    # CPUs only (PCPU), which the cluster file does not model.
    placement.add_provider('cmp-b1_pci_0000_84_00_0',
                           {'VGPU': inventory(16)}, parent=rps['cmp-b1'])
    placement.add_provider('shared-storage', {'DISK_GB': inventory(100000)})
    placement.add_provider('cmp-new', {})
    placement.add_provider('cmp-pinned', {
        'PCPU': inventory(32), 'MEMORY_MB': inventory(262144)})
    return placement


def test_cluster_from_placement(cloud, clean_env, tmp_path):
    out = tmp_path / 'cluster.json'
    summary = tmp_path / 'summary.json'
    run = run_cluster([*token_args(cloud.endpoint), '--json', str(summary)],
                      out)
    assert run.rc == 0, run.err
    c = ClusterSpec.from_file(out)
    groups = {g.name: g for g in c.groups}
    assert list(groups) == ['64vcpu-508gib', '120vcpu-1024gib',
                            '64vcpu-508gib-2', '8vcpu-15872mib']
    a, b, a16, nodisk = groups.values()
    assert a.hosts == ('cmp-a1', 'cmp-a2', 'cmp-a3') and a.count == 3
    assert (a.vcpus, a.ram_mb, a.disk_gb) == (64, 520192, 1920)
    assert (a.cpu_allocation_ratio, a.ram_allocation_ratio,
            a.disk_allocation_ratio) == (4.0, 1.0, 1.0)
    assert b.hosts == ('cmp-b1', 'cmp-b2')
    assert (b.vcpus, b.ram_mb, b.disk_gb) == (120, 1048576, 3800)
    assert (b.cpu_allocation_ratio, b.ram_allocation_ratio) == (2.0, 1.5)
    assert a16.hosts == ('cmp-c1',) and a16.cpu_allocation_ratio == 16.0
    assert (a16.vcpus, a16.ram_mb, a16.disk_gb) == (a.vcpus, a.ram_mb,
                                                    a.disk_gb)
    assert nodisk.hosts == ('cmp-nodisk',) and nodisk.disk_gb == 0
    assert (nodisk.vcpus, nodisk.ram_mb) == (8, 15872)
    # Watts are not in Placement: the defaults.
    assert (a.idle_watts, a.peak_watts) == (200.0, 500.0)
    assert set(c.host_names) == set(COMPUTE)
    assert run.warnings == [
        '1 providers with PCPU but no VCPU inventory left out (dedicated '
        "CPUs are not modelled): 'cmp-pinned'",
        '1 compute hosts without a DISK_GB inventory (disk on a sharing '
        "provider?): disk_gb 0: 'cmp-nodisk'"], run.err
    s = json.loads(summary.read_text())
    assert (s['providers'], s['compute_hosts'], s['skipped_not_compute'],
            s['skipped_pcpu_only'], s['without_disk'], s['groups']) == (
        11, 7, 3, 1, 1, 4)
    assert s['requests'] == 1 + 11      # the list, one GET per provider
    assert '7 compute hosts in 4 host groups from Placement at ' \
        f'{cloud.endpoint} -> {out}' in run.out


def test_capacity_is_placements(cloud, clean_env, tmp_path):
    """What the simulator schedules against (physical x ratio) is what
    Placement allocates against ((total - reserved) x allocation_ratio):
    checked with Placement's own provider summaries."""
    out = tmp_path / 'cluster.json'
    assert run_cluster(token_args(cloud.endpoint), out).rc == 0
    c = ClusterSpec.from_file(out)
    a = c.per_host
    status, cands = cloud.request(
        'GET', '/allocation_candidates?resources=VCPU:1,MEMORY_MB:1')
    assert status == 200, cands
    by_name = {}
    for rp_uuid, summ in cands['provider_summaries'].items():
        status, rp = cloud.request('GET', f'/resource_providers/{rp_uuid}')
        by_name[rp['name']] = summ['resources']
    assert set(by_name) == set(COMPUTE)
    for i, name in enumerate(a.names):
        got = by_name[name]
        assert a.vcpu_capacity[i] == got['VCPU']['capacity'], name
        assert a.ram_capacity_mb[i] == got['MEMORY_MB']['capacity'], name
        if 'DISK_GB' in got:
            assert a.disk_capacity_mb[i] == got['DISK_GB']['capacity'] \
                * 1024, name


def test_auth_from_environment_and_clouds_yaml(cloud, clean_env, tmp_path):
    """keystoneauth1's OS_* variables, and a clouds.yaml cloud: the same
    file."""
    flags = run_cluster(token_args(cloud.endpoint), tmp_path / 'flags.json')
    assert flags.rc == 0, flags.err
    clean_env.setenv('OS_AUTH_TYPE', 'admin_token')
    clean_env.setenv('OS_ENDPOINT', cloud.endpoint)
    clean_env.setenv('OS_TOKEN', 'admin')
    env = run_cluster([], tmp_path / 'env.json')
    assert env.rc == 0, env.err
    for key in ('OS_AUTH_TYPE', 'OS_ENDPOINT', 'OS_TOKEN'):
        clean_env.delenv(key)
    clean_env.setenv('OS_CLIENT_CONFIG_FILE', str(clouds_yaml(
        tmp_path / 'clouds.yaml', {'lab': cloud.endpoint})))
    yaml = run_cluster(['--os-cloud', 'lab'], tmp_path / 'cloud.json')
    assert yaml.rc == 0, yaml.err
    text = (tmp_path / 'flags.json').read_text()
    assert (tmp_path / 'env.json').read_text() == text
    assert (tmp_path / 'cloud.json').read_text() == text


def test_faults_are_one_line(cloud, clean_env, tmp_path):
    out = tmp_path / 'cluster.json'
    out.write_text('previous\n')

    def check(run, expected):
        assert run.rc == 2, run.err
        assert run.error == 'nova-rl-trainer: error: ' + expected
        assert run.err.count('\n') == 1, run.err
        assert out.read_text() == 'previous\n'
        assert sorted(os.listdir(tmp_path)) == ['cluster.json']

    nobody = f'http://127.0.0.1:{free_port()}'
    check(run_cluster([*token_args(nobody), '--retries', '0'], out),
          f'cannot reach Placement at {nobody} (GET /resource_providers): '
          'connection refused, 1 attempt')
    # No X-Auth-Token (HTTP basic instead): 401.
    check(run_cluster(['--os-auth-type', 'http_basic', '--os-endpoint',
                       cloud.endpoint, '--os-username', 'admin',
                       '--os-password', 'x'], out),
          f'Placement at {cloud.endpoint} refused the credentials (auth '
          'type http_basic, user admin): HTTP 401 on GET /resource_providers;'
          ' check --os-auth-type and its options (or the OS_* variables, '
          '--os-cloud)')
    # A user without the admin role: 403.
    run = run_cluster(token_args(cloud.endpoint, 'reader:project'), out)
    assert run.error.startswith(
        f'nova-rl-trainer: error: Placement at {cloud.endpoint} forbids GET '
        '/resource_providers to auth type admin_token: HTTP 403 (')
    assert run.error.endswith('listing resource providers needs the admin '
                              'role or a policy granting it')
    check(run, run.error[len('nova-rl-trainer: error: '):])
    # Not Placement's root: 404.
    check(run_cluster(token_args(cloud.endpoint + '/v9'), out),
          f'no Placement API at {cloud.endpoint}: HTTP 404 on GET '
          '/resource_providers (GET /v9/resource_providers); check the '
          'endpoint (--os-endpoint, --os-endpoint-override or the catalog)')
    # Incomplete auth options.
    check(run_cluster(['--os-auth-type', 'admin_token', '--os-endpoint',
                       cloud.endpoint], out),
          'no valid authentication for Placement (auth type admin_token): '
          'No valid authentication is available; is an option of the auth '
          'type missing? (--help with --os-auth-type admin_token lists '
          'them)')
    check(run_cluster([], out), 'no authentication: give --os-auth-type '
                                '(or OS_AUTH_TYPE, or --os-cloud)')


def test_no_compute_hosts_is_an_error():
    from nova_rl_trainer.telemetry import placement as placement_mod
    from nova_rl_trainer.telemetry.sources import SourceError
    with pytest.raises(SourceError, match='Placement has no compute hosts'):
        placement_mod.cluster_of([])


def test_shared_session_and_endpoint_override(cloud, clean_env):
    """`snapshot --from-placement` reads Placement through the metrics
    source's own session (service type switched to placement) and
    `--placement-endpoint` overrides where: here the session's plugin
    points nowhere, the override at Placement."""
    from keystoneauth1 import session
    from keystoneauth1 import token_endpoint
    from nova_rl_trainer.telemetry import auth
    from nova_rl_trainer.telemetry import placement as placement_mod
    from nova_rl_trainer.telemetry.sources import SourceError
    nowhere = f'http://127.0.0.1:{free_port()}'
    sess = session.Session(auth=token_endpoint.Token(nowhere, 'admin'))
    conn = auth.Connection(sess, {'connect_retries': 0,
                                  'service_type': 'metric',
                                  'endpoint_override': nowhere},
                           'admin_token', 'auth type admin_token')
    shared = placement_mod.shared_connection(conn, endpoint=cloud.endpoint)
    assert shared.session is sess
    assert shared.adapter_options == {'connect_retries': 0,
                                      'service_type': 'placement',
                                      'endpoint_override': cloud.endpoint}
    found = placement_mod.read_hosts(placement_mod.PlacementClient(shared))
    assert {h.name for h in found.hosts} == set(COMPUTE)
    assert found.endpoint == cloud.endpoint
    with pytest.raises(SourceError, match='cannot reach Placement at '
                                          f'{nowhere}'):
        placement_mod.read_hosts(placement_mod.PlacementClient(
            placement_mod.shared_connection(conn)))
    with pytest.raises(SourceError, match='gnocchi-basic, which gives no '
                                          'Keystone session for Placement'):
        placement_mod.shared_connection(auth.Connection(
            sess, {}, 'gnocchi-basic', 'auth type gnocchi-basic'))
