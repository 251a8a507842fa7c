"""The heterogeneous cluster file (``--cluster FILE``): its format, its
errors, identical hosts given as a file, and the command line."""

import copy
import json
import os
import pickle

import pytest

from nova_rl_trainer import cli
from nova_rl_trainer.cli import options
from nova_rl_trainer.simulation import baselines
from nova_rl_trainer.simulation.cluster import ClusterFileError
from nova_rl_trainer.simulation.cluster import ClusterSpec
from nova_rl_trainer.simulation.cluster import HostGroup
from nova_rl_trainer.simulation import evaluation as runner
from nova_rl_trainer.simulation import scenarios
from nova_rl_trainer.simulation.setup import Setup

from ._helpers import HEADER

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
EXAMPLE = os.path.join(ROOT, 'etc', 'nova-rl-trainer',
                       'cluster.example.json')
GEN9 = {'name': 'gen9', 'count': 40, 'vcpus': 64, 'ram_mb': 524288,
        'disk_gb': 4000, 'cpu_allocation_ratio': 2.0,
        'ram_allocation_ratio': 1.0, 'disk_allocation_ratio': 1.0,
        'idle_watts': 200, 'peak_watts': 500}


def write(tmp_path, obj, name='cluster.json'):
    path = tmp_path / name
    path.write_text(obj if isinstance(obj, str) else json.dumps(obj))
    return str(path)


def strip(m):
    return {k: v for k, v in m.items()
            if k not in ('wall_s', 'decisions_per_s')}


# -- the format ---------------------------------------------------------------

def test_the_issues_example_reads_as_written(tmp_path):
    c = ClusterSpec.from_file(write(tmp_path, {'host_groups': [GEN9]}))
    assert c.hosts == 40 and c.uniform
    (g,) = c.groups
    assert (g.name, g.count, g.vcpus, g.ram_mb, g.disk_gb) == (
        'gen9', 40, 64.0, 524288.0, 4000.0)
    assert (g.cpu_allocation_ratio, g.idle_watts, g.peak_watts,
            g.empty_watts) == (2.0, 200.0, 500.0, 0.0)
    assert c.host_vcpus == 64.0 and c.vcpu_capacity == 128.0
    assert c.host_names[0] == 'gen9-0' and c.host_names[-1] == 'gen9-39'


def test_defaults_are_todays_and_groups_are_named_in_order():
    c = ClusterSpec.from_dict({'host_groups': [
        {'count': 2, 'vcpus': 8, 'ram_mb': 4096},
        {'count': 3, 'vcpus': 16, 'ram_mb': 8192, 'name': 'big'},
        {'count': 1, 'vcpus': 4, 'ram_mb': 2048}]})
    first = c.groups[0]
    assert first == HostGroup(count=2, vcpus=8, ram_mb=4096, name='group0')
    # ClusterSpec's identical-host defaults, key for key.
    legacy = ClusterSpec(hosts=2, host_vcpus=8, host_ram_mb=4096)
    assert legacy.groups == (first,)
    assert (first.disk_gb, first.cpu_allocation_ratio,
            first.ram_allocation_ratio, first.disk_allocation_ratio,
            first.idle_watts, first.peak_watts, first.empty_watts) == (
        2048.0, 4.0, 1.0, 1.0, 200.0, 500.0, 0.0)
    assert [g.name for g in c.groups] == ['group0', 'big', 'group2']
    assert c.host_names == ('group0-0', 'group0-1', 'big-0', 'big-1',
                            'big-2', 'group2-0')
    a = c.per_host
    assert a.vcpus.tolist() == [8, 8, 16, 16, 16, 4]
    assert a.group.tolist() == [0, 0, 1, 1, 1, 2]
    assert a.vcpu_capacity.tolist() == [32, 32, 64, 64, 64, 16]
    assert not c.uniform and c.hosts == 6
    with pytest.raises(ValueError, match='host_vcpus differs between host '
                                         'groups'):
        c.host_vcpus
    with pytest.raises(ValueError, match='host sizes differ'):
        c.vcpu_capacity
    # Groups differing in their power model only are not alike either, but
    # one size answers.
    c = ClusterSpec(groups=[HostGroup(count=1, vcpus=8, ram_mb=1, name='a'),
                            HostGroup(count=1, vcpus=8, ram_mb=1, name='b',
                                      idle_watts=100)])
    assert not c.uniform and c.host_vcpus == 8.0


def test_round_trip_file_dict_pickle(tmp_path):
    c = ClusterSpec.from_file(EXAMPLE)
    path = tmp_path / 'out' / 'c.json'
    path.parent.mkdir()
    c.to_file(path)
    text = path.read_text()
    doc = json.loads(text)
    # Every key of every group is written, integral numbers as integers.
    assert list(doc) == ['host_groups']
    assert list(doc['host_groups'][0]) == [
        'name', 'count', 'vcpus', 'ram_mb', 'disk_gb',
        'cpu_allocation_ratio', 'ram_allocation_ratio',
        'disk_allocation_ratio', 'idle_watts', 'peak_watts', 'empty_watts']
    assert '"vcpus": 40,' in text
    assert ClusterSpec.from_file(path) == c
    assert ClusterSpec.from_dict(c.as_dict()) == c
    assert hash(ClusterSpec.from_dict(c.as_dict())) == hash(c)
    assert pickle.loads(pickle.dumps(c)) == c
    assert copy.deepcopy(c) is c            # immutable
    with pytest.raises(AttributeError):
        c.groups = ()
    assert os.listdir(path.parent) == ['c.json']   # no temporary left


def test_replace_changes_every_group():
    c = ClusterSpec.from_file(EXAMPLE)
    r = c.replace(cpu_allocation_ratio=1.0, idle_watts=100)
    assert {g.cpu_allocation_ratio for g in r.groups} == {1.0}
    assert [g.count for g in r.groups] == [g.count for g in c.groups]
    with pytest.raises(ValueError, match='several host groups'):
        c.replace(hosts=3)
    one = ClusterSpec(hosts=2, host_vcpus=8, host_ram_mb=4096)
    assert one.replace(hosts=5).hosts == 5
    with pytest.raises(ValueError, match='host_vcpus must be positive'):
        one.replace(host_vcpus=0)


def test_example_file_mixes_generations():
    c = ClusterSpec.from_file(EXAMPLE)
    assert [g.name for g in c.groups] == ['gen8', 'gen9', 'gen10']
    assert not c.uniform and c.hosts == 380
    t = c.totals()
    # Sized for azure-v1-test's peak (167 TiB of RAM) at about 88%.
    assert t['ram_capacity_mb'] / 1024 ** 2 == pytest.approx(190.0)
    assert 'gen10: 60 hosts x 128 vCPUs, 1024 GiB RAM' in c.summary()


def _groups(**changes):
    g = dict(GEN9)
    g.update(changes)
    return {'host_groups': [{k: v for k, v in g.items()
                             if v is not _DROP}]}


_DROP = object()


@pytest.mark.parametrize('doc, words', [
    # unknown key, missing required keys
    (_groups(vcpu=64), ["host group 'gen9' (host_groups[0])",
                        "unknown key 'vcpu'"]),
    (_groups(count=_DROP), ["'gen9'", "missing required key 'count'"]),
    (_groups(vcpus=_DROP), ["'gen9'", "missing required key 'vcpus'"]),
    (_groups(ram_mb=_DROP), ["'gen9'", "missing required key 'ram_mb'"]),
    # wrong types
    (_groups(count='40'), ["'gen9'", "key 'count' must be an integer"]),
    (_groups(count=2.5), ["key 'count' must be an integer"]),
    (_groups(count=True), ["key 'count' must be an integer"]),
    (_groups(vcpus='64'), ["'gen9'", "key 'vcpus' must be a number"]),
    (_groups(disk_gb=None), ["key 'disk_gb' must be a number"]),
    (_groups(ram_allocation_ratio=[1]),
     ["key 'ram_allocation_ratio' must be a number"]),
    (_groups(name=7), ['host_groups[0]', "key 'name' must be a non-empty "
                                         'string']),
    (_groups(name=''), ["key 'name' must be a non-empty string"]),
    (_groups(name='gen 9'), ["key 'name' must be a non-empty string"]),
    # out of range
    (_groups(count=0), ["'gen9'", "key 'count' must be between 1"]),
    (_groups(count=10 ** 6), ["key 'count' must be between 1"]),
    (_groups(vcpus=0), ["'gen9'", "key 'vcpus' must be positive"]),
    (_groups(ram_mb=-1), ["key 'ram_mb' must be positive"]),
    (_groups(disk_gb=-1), ["key 'disk_gb' must not be negative"]),
    (_groups(cpu_allocation_ratio=0),
     ["key 'cpu_allocation_ratio' must be positive"]),
    (_groups(disk_allocation_ratio=-2),
     ["key 'disk_allocation_ratio' must be positive"]),
    (_groups(idle_watts=600), ["key 'peak_watts' (500) must not be below "
                               "'idle_watts' (600)"]),
    (_groups(empty_watts=-1), ["key 'empty_watts' must not be negative"]),
    # the structure
    ({'host_groups': [GEN9, dict(GEN9)]},
     ["host group 'gen9'", "key 'name' is used by two groups"]),
    ({'host_groups': []}, ["key 'host_groups' is empty"]),
    ({'host_groups': {}}, ["key 'host_groups' must be a list"]),
    ({'host_groups': [GEN9, 3]}, ['host_groups[1]: expected an object']),
    ({}, ["missing required key 'host_groups'"]),
    ({'host_groups': [GEN9], 'hosts': 3}, ["unknown key 'hosts'"]),
    ([GEN9], ['expected a JSON object']),
])
def test_malformed_files_name_the_group_and_key(tmp_path, doc, words):
    path = write(tmp_path, doc)
    with pytest.raises(ClusterFileError) as e:
        ClusterSpec.from_file(path)
    msg = str(e.value)
    assert msg.startswith(f'cluster file {path}: ')
    for w in words:
        assert w in msg, (w, msg)


@pytest.mark.parametrize('text, words', [
    # JSON allows neither NaN nor Infinity; Python reads them, the check
    # names the key. 1e999 overflows to infinity.
    ('{"host_groups": [{"name": "a", "count": 1, "vcpus": NaN, '
     '"ram_mb": 1}]}', ["host group 'a'", "key 'vcpus' must be finite"]),
    ('{"host_groups": [{"name": "a", "count": 1, "vcpus": 1, '
     '"ram_mb": Infinity}]}', ["key 'ram_mb' must be finite"]),
    ('{"host_groups": [{"name": "a", "count": 1, "vcpus": 1, '
     '"ram_mb": 1, "peak_watts": 1e999}]}',
     ["key 'peak_watts' must be finite"]),
    ('{"host_groups": [{"name": "a", "count": 1, "vcpus": 1, '
     '"vcpus": 2, "ram_mb": 1}]}', ["host group 'a'",
                                    "key 'vcpus' appears twice"]),
    ('{"host_groups": [\n  {"name": "a", "count": 1,\n   "vcpus": 1 '
     '"ram_mb": 1}\n]}', ['invalid JSON at line 3 column', "','"]),
    ('', ['invalid JSON at line 1 column 1']),
    ('{"host_groups": [{"count": 1, "vcpus": 1, "ram_mb": 1},]}',
     ['invalid JSON at line 1']),
])
def test_syntax_and_non_finite_numbers(tmp_path, text, words):
    with pytest.raises(ClusterFileError) as e:
        ClusterSpec.from_file(write(tmp_path, text))
    for w in words:
        assert w in str(e.value), (w, str(e.value))


def test_unreadable_file(tmp_path):
    with pytest.raises(ClusterFileError, match='cannot read'):
        ClusterSpec.from_file(tmp_path / 'missing.json')
    (tmp_path / 'bin.json').write_bytes(b'\xff\xfe{')
    with pytest.raises(ClusterFileError, match='not UTF-8'):
        ClusterSpec.from_file(tmp_path / 'bin.json')


def test_identical_host_keywords_keep_their_messages():
    with pytest.raises(ValueError, match='hosts must be a positive integer'):
        ClusterSpec(hosts=0, host_vcpus=8, host_ram_mb=1)
    with pytest.raises(ValueError, match='host_ram_mb must be positive'):
        ClusterSpec(hosts=1, host_vcpus=8, host_ram_mb=0)
    with pytest.raises(ValueError, match='identical hosts need host_vcpus'):
        ClusterSpec(hosts=1, host_ram_mb=1)
    with pytest.raises(ValueError, match='not both'):
        ClusterSpec(hosts=1, groups=[HostGroup(count=1, vcpus=1, ram_mb=1)])


# -- identical hosts as a file: bit for bit -----------------------------------

def test_identical_hosts_as_a_file_equal_the_flags_bit_for_bit(tmp_path):
    sc = scenarios.get_scenario('azure-v1-small')
    path = tmp_path / 'small.json'
    # As an operator would write it: the required keys and the disk.
    path.write_text(json.dumps({'host_groups': [
        {'name': 'rack', 'count': 17, 'vcpus': 32, 'ram_mb': 131072,
         'disk_gb': 1024}]}))
    from_file = ClusterSpec.from_file(path)
    assert from_file.uniform and from_file.hosts == sc.cluster.hosts
    # The same hosts split into two groups of one shape: still identical.
    split = ClusterSpec(groups=[
        HostGroup(name='a', count=10, vcpus=32, ram_mb=131072, disk_gb=1024),
        HostGroup(name='b', count=7, vcpus=32, ram_mb=131072,
                  disk_gb=1024)])
    assert split.uniform
    flags = Setup.from_scenario(sc.name, seed=1)
    wl = flags.workload()
    specs = list(baselines.BASELINES) + ['bundled:mode=raw']
    for cluster in (from_file, split):
        setup = Setup.from_scenario(sc.name, seed=1, cluster=cluster)
        for spec in specs:
            a = runner.run_one(flags, spec, wl)
            b = runner.run_one(setup, spec, wl)
            assert strip(a.metrics) == strip(b.metrics), spec
            for key in a.series:
                assert a.series[key].tolist() == b.series[key].tolist()
            assert a.util_hist.tolist() == b.util_hist.tolist()


# -- the command line ---------------------------------------------------------

CSV_ROWS = ('a,p1,0,3600,16,2048,10,0.5,0.7\n'
            'b,p2,60,,4,1024,0,,\n'
            'c,p1,120,7200,1,512,0,0.2,\n'
            'd,p1,180,7200,40,512,0,0.2,\n')


def test_cli_simulate_with_a_cluster_file(tmp_path, capsys):
    trace = tmp_path / 'trace.csv'
    trace.write_text(HEADER + CSV_ROWS)
    cluster = write(tmp_path, {'host_groups': [
        {'name': 'small', 'count': 2, 'vcpus': 8, 'ram_mb': 8192},
        {'name': 'large', 'count': 1, 'vcpus': 32, 'ram_mb': 65536,
         'cpu_allocation_ratio': 2.0}]})
    out = tmp_path / 'm.json'
    rc = cli.main(['simulate', '--trace', str(trace), '--cluster', cluster,
                   '--policy', 'first-fit', '--json', str(out), '--quiet'])
    assert rc == 0, capsys.readouterr().err
    m = json.loads(out.read_text())
    # a (16 vCPUs) fits only the large host; d (40) no host at all.
    assert (m['decisions'], m['placed'], m['rejected'], m['hosts']) == (
        4, 3, 1, 3)
    # The identical hosts as a file and as flags: the same metrics.
    same = write(tmp_path, {'host_groups': [
        {'count': 3, 'vcpus': 8, 'ram_mb': 8192, 'disk_gb': 100}]},
        'same.json')
    outs = []
    for cl in (['--cluster', same], ['--hosts', '3', '--host-vcpus', '8',
                                     '--host-ram-mb', '8192',
                                     '--host-disk-gb', '100']):
        o = tmp_path / f'o{len(outs)}.json'
        assert cli.main(['simulate', '--trace', str(trace), '--policy',
                         'best-fit', '--json', str(o), '--quiet'] + cl) == 0
        outs.append(strip(json.loads(o.read_text())))
    assert outs[0] == outs[1]


def test_cli_cluster_file_replaces_the_scenarios_cluster(tmp_path):
    out = tmp_path / 'm.json'
    assert cli.main(['simulate', '--scenario', 'azure-v1-small', '--cluster',
                     EXAMPLE, '--policy', 'best-fit', '--json', str(out),
                     '--quiet']) == 0
    m = json.loads(out.read_text())
    assert m['hosts'] == 380 and m['rejected'] == 0
    assert m['lb_host_hours'] <= m['active_host_hours']


@pytest.mark.parametrize('extra, words', [
    (['--cluster', '{cluster}', '--hosts', '3', '--host-vcpus', '8'],
     'cannot be combined with --hosts, --host-vcpus'),
    (['--cluster', '{bad}'], "host group 'gen9' (host_groups[0]): key "
                             "'ram_mb' must be positive"),
    (['--cluster', '{missing}'], 'cannot read'),
])
def test_cli_cluster_errors(tmp_path, capsys, extra, words):
    cluster = write(tmp_path, {'host_groups': [GEN9]})
    bad = write(tmp_path, _groups(ram_mb=0), 'bad.json')
    extra = [a.format(cluster=cluster, bad=bad,
                      missing=tmp_path / 'none.json') for a in extra]
    out = tmp_path / 'm.json'
    rc = cli.main(['simulate', '--scenario', 'azure-v1-small', '--policy',
                   'first-fit', '--json', str(out), '--quiet'] + extra)
    assert rc == 2
    err = capsys.readouterr().err
    assert words in err and err.count('\n') == 1
    assert not out.exists()


@pytest.mark.parametrize('command, argv', [
    ('evaluate', ['--scenario', 'azure-v1-small', '--policies', 'first-fit',
                  '--json', 'x', '--report', 'r']),
    ('train', ['--scenario', 'azure-v1-small', '--out', 'x']),
    ('publish', ['--candidate', 'x', '--target', 'y']),
])
def test_every_simulating_command_takes_a_cluster_file(command, argv):
    args = cli.build_parser().parse_args([command, '--cluster', EXAMPLE]
                                         + argv)
    assert args.cluster == EXAMPLE
    if command != 'publish':        # publish builds one setup per case
        setup = options.setup_from_args(args)
        assert setup.cluster == ClusterSpec.from_file(EXAMPLE)
        assert setup.name == 'azure-v1-small'


def test_cli_publish_judges_on_a_cluster_file(tmp_path, capsys):
    from tests.fixtures import make_linear_policy
    candidate = make_linear_policy(str(tmp_path / 'cand'),
                                   {'nova_weight': 1.0,
                                    'cpu_p95_after': -1.0},
                                   objective='balance', policy_version='c')
    trace = tmp_path / 'trace.csv'
    trace.write_text(HEADER + CSV_ROWS)
    cluster = write(tmp_path, {'host_groups': [
        {'name': 'small', 'count': 2, 'vcpus': 8, 'ram_mb': 8192},
        {'name': 'large', 'count': 1, 'vcpus': 32, 'ram_mb': 65536}]})
    target = tmp_path / 'policy'
    base = ['publish', '--candidate', candidate, '--target', str(target),
            '--trace', str(trace), '--trace-format', 'csv', '--jobs', '1',
            '--quiet', '--dry-run', '--json', str(tmp_path / 'p.json')]
    rc = cli.main(base + ['--cluster', cluster])
    assert rc in (0, 3), capsys.readouterr().err
    doc = json.loads((tmp_path / 'p.json').read_text())
    assert 'trace.csv' in capsys.readouterr().out
    assert not target.exists()
    # The cluster file's hosts: a (16 vCPUs) fits the large host, d (40)
    # none; 8-vCPU identical hosts would reject both.
    # Publish judges over windows of the trace (10 by default): the one
    # rejection is in one of them.
    cases = doc['cases']
    assert len(cases) == 10
    for name in ('nova-default', 'candidate'):
        assert sum(c['metrics'][name]['rejected'] for c in cases) == 1
    assert cli.main(base + ['--cluster', cluster, '--hosts', '2']) == 2
    assert 'cannot be combined with --hosts' in capsys.readouterr().err


def test_unnamed_groups_in_code_are_numbered():
    c = ClusterSpec(groups=[HostGroup(count=1, vcpus=8, ram_mb=1024),
                            HostGroup(count=2, vcpus=16, ram_mb=2048)])
    assert [g.name for g in c.groups] == ['group0', 'group1']
    assert c.host_names == ('group0-0', 'group1-0', 'group1-1')
    assert ClusterSpec(hosts=1, host_vcpus=8, host_ram_mb=1024).groups[
        0].name == 'group0'


def test_a_byte_order_mark_is_no_error(tmp_path):
    path = tmp_path / 'bom.json'
    path.write_bytes(b'\xef\xbb\xbf' + json.dumps(
        {'host_groups': [GEN9]}).encode())
    assert ClusterSpec.from_file(path).hosts == 40


# -- named hosts (the optional `hosts` key) -----------------------------------

def test_hosts_key_names_the_groups_hosts(tmp_path):
    """`hosts` names a group's hosts instead of `<name>-<i>`; it round-trips
    through the file and the dict, and only the groups that have it write
    it."""
    doc = {'host_groups': [
        dict(GEN9, count=2, hosts=['compute-7', 'compute-3']),
        {'name': 'gen10', 'count': 2, 'vcpus': 128, 'ram_mb': 1048576}]}
    c = ClusterSpec.from_file(write(tmp_path, doc))
    assert c.host_names == ('compute-7', 'compute-3', 'gen10-0', 'gen10-1')
    assert c.per_host.names == c.host_names
    assert c.per_host.vcpus.tolist() == [64, 64, 128, 128]
    assert c.groups[0].hosts == ('compute-7', 'compute-3')
    assert c.groups[1].hosts is None
    d = c.as_dict()
    assert d['host_groups'][0]['hosts'] == ['compute-7', 'compute-3']
    assert list(d['host_groups'][0])[-1] == 'hosts'
    assert 'hosts' not in d['host_groups'][1]
    assert ClusterSpec.from_dict(d) == c
    assert hash(ClusterSpec.from_dict(d)) == hash(c)
    path = tmp_path / 'again.json'
    c.to_file(path)
    assert ClusterSpec.from_file(path) == c
    assert pickle.loads(pickle.dumps(c)) == c
    # Names are not part of the shape: two groups of one shape, named or
    # not, still run as identical hosts.
    same = ClusterSpec(groups=[
        HostGroup(name='a', count=1, vcpus=8, ram_mb=1024, hosts=['x']),
        HostGroup(name='b', count=2, vcpus=8, ram_mb=1024)])
    assert same.uniform and same.host_names == ('x', 'b-0', 'b-1')
    # Names matter for equality: other names, another cluster.
    other = ClusterSpec(groups=[
        HostGroup(name='a', count=1, vcpus=8, ram_mb=1024, hosts=['y']),
        HostGroup(name='b', count=2, vcpus=8, ram_mb=1024)])
    assert other != same


def test_hosts_key_survives_replace_unless_the_count_changes():
    c = ClusterSpec(groups=[HostGroup(name='a', count=2, vcpus=8,
                                      ram_mb=1024, hosts=('p', 'q'))])
    assert c.replace(host_vcpus=16).host_names == ('p', 'q')
    assert c.replace(hosts=2).host_names == ('p', 'q')
    assert c.replace(hosts=3).host_names == ('a-0', 'a-1', 'a-2')


@pytest.mark.parametrize('hosts, words', [
    (['c1'], "key 'hosts' must list exactly 'count' (2) host names, got 1"),
    (['c1', 'c2', 'c3'], "must list exactly 'count' (2) host names, got 3"),
    ('c1', "key 'hosts' must be a list of host names, got str"),
    ({'c1': 1}, "key 'hosts' must be a list of host names, got dict"),
    (None, "key 'hosts' must be a list of host names, got null"),
    (['c1', 'c1'], "key 'hosts' names host 'c1' twice"),
    (['c1', 7], "key 'hosts' item 1 must be a host name"),
    (['c1', ''], "key 'hosts' item 1 must be a host name"),
    (['c1', 'c 2'], "key 'hosts' item 1 must be a host name"),
    (['c1', 'x' * 256], "key 'hosts' item 1 must be a host name"),
])
def test_malformed_hosts_key_names_the_group_and_key(tmp_path, hosts, words):
    path = write(tmp_path, {'host_groups': [dict(GEN9, count=2,
                                                 hosts=hosts)]})
    with pytest.raises(ClusterFileError) as e:
        ClusterSpec.from_file(path)
    msg = str(e.value)
    assert msg.startswith(f"cluster file {path}: host group 'gen9' "
                          '(host_groups[0]): '), msg
    assert words in msg, msg


def test_host_names_unique_across_groups(tmp_path):
    # Two groups naming one host, and a name that is another group's
    # generated one: the group that gave the name is named.
    for second, culprit in (({'name': 'b', 'count': 1, 'vcpus': 8,
                              'ram_mb': 1, 'hosts': ['h1']}, "'b'"),
                            ({'name': 'b', 'count': 1, 'vcpus': 8,
                              'ram_mb': 1}, "'a'")):
        first = {'name': 'a', 'count': 2, 'vcpus': 8, 'ram_mb': 1,
                 'hosts': ['h1', 'b-0']}
        path = write(tmp_path, {'host_groups': [first, second]})
        with pytest.raises(ClusterFileError) as e:
            ClusterSpec.from_file(path)
        msg = str(e.value)
        assert msg.startswith(f'cluster file {path}: host group {culprit}')
        assert "key 'hosts'" in msg and 'host names must be unique' in msg
