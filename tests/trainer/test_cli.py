"""The nova-rl-trainer command line."""

import json
import os
import subprocess
import sys

import pytest

from nova_rl_trainer import cli
from nova_rl_trainer.simulation.metrics import CONTRACT_KEYS

from ._helpers import HEADER

CSV_ROWS = ('a,p1,0,3600,2,2048,10,0.5,0.7\n'
            'b,p2,60,,4,1024,0,,\n'
            'c,p1,120,7200,1,512,0,0.2,\n')


def test_simulate_csv_with_the_issue_form(tmp_path, capsys):
    trace = tmp_path / 'trace.csv'
    trace.write_text(HEADER + CSV_ROWS)
    out = tmp_path / 'out' / 'm.json'
    rc = cli.main(['simulate', '--trace', str(trace), '--trace-format',
                   'csv', '--hosts', '3', '--host-vcpus', '8',
                   '--host-ram-mb', '8192', '--host-disk-gb', '100',
                   '--cpu-allocation-ratio', '2', '--ram-allocation-ratio',
                   '1.5', '--policy', 'first-fit', '--objective', 'balance',
                   '--seed', '4', '--json', str(out), '--quiet'])
    assert rc == 0
    m = json.loads(out.read_text())
    for key in CONTRACT_KEYS + ('policy',):
        assert key in m, key
    assert m['policy'] == 'first-fit' and m['objective'] == 'balance'
    assert (m['decisions'], m['placed'], m['rejected']) == (3, 3, 0)
    assert m['horizon_hours'] == 2.0
    assert 'first-fit' in capsys.readouterr().out


def test_evaluate_writes_json_list_and_report(tmp_path, capsys):
    out = tmp_path / 'e.json'
    report = tmp_path / 'report'
    rc = cli.main(['evaluate', '--scenario', 'azure-v1-small', '--policies',
                   'nova-default,first-fit,load-aware', '--json', str(out),
                   '--report', str(report), '--jobs', '1', '--quiet'])
    assert rc == 0
    doc = json.loads(out.read_text())
    assert [m['policy'] for m in doc] == ['nova-default', 'first-fit',
                                          'load-aware']
    for m in doc:
        for key in CONTRACT_KEYS:
            assert key in m
    for name in ('report.md', 'metrics.csv', 'active_hosts.png',
                 'cpu_util.png', 'overload.png'):
        assert (report / name).stat().st_size > 0, name
    md = (report / 'report.md').read_text()
    assert '| nova-default |' in md and 'active_hosts.png' in md
    assert '| load-aware |' in capsys.readouterr().out


def test_fanout_options_are_one_line_errors(tmp_path, capsys, monkeypatch):
    """--workers and --ray-address on evaluate and publish: bad values end
    with exit 2 and one line, before any simulation."""
    common = ['--scenario', 'azure-v1-small', '--quiet']
    evaluate = ['evaluate', *common, '--policies', 'nova-default', '--json',
                str(tmp_path / 'e.json'), '--report', str(tmp_path / 'r')]
    publish = ['publish', *common, '--candidate', str(tmp_path / 'none'),
               '--target', str(tmp_path / 'target')]
    # Ray missing: a clear line whatever the address.
    monkeypatch.setitem(sys.modules, 'ray', None)
    assert cli.main(evaluate + ['--ray-address', '127.0.0.1:1']) == 2
    err = capsys.readouterr().err.strip()
    assert 'needs Ray, which is not installed' in err and '\n' not in err
    assert cli.main(evaluate + ['--workers', '-2']) == 2
    assert '--workers must be >= 1' in capsys.readouterr().err
    assert cli.main(publish + ['--workers', '-2']) == 2
    assert '--workers must be >= 1' in capsys.readouterr().err
    assert not (tmp_path / 'e.json').exists()


def test_scenario_options_override_the_preset(tmp_path):
    out = tmp_path / 'm.json'
    assert cli.main(['simulate', '--scenario', 'azure-v1-small', '--hosts',
                     '8', '--policy', 'best-fit', '--json', str(out),
                     '--quiet']) == 0
    m = json.loads(out.read_text())
    assert m['hosts'] == 8 and m['rejected'] > 0


@pytest.mark.parametrize('argv, words', [
    (['--trace', '{trace}', '--policy', 'first-fit'],
     'give the cluster: --hosts --host-vcpus --host-ram-mb'),
    (['--trace', '{trace}', '--hosts', '2', '--host-vcpus', '8',
      '--host-ram-mb', '4096', '--policy', 'worst-fit'],
     "unknown policy 'worst-fit'"),
    (['--trace', '{trace}', '--hosts', '2', '--host-vcpus', '8',
      '--host-ram-mb', '4096', '--policy', 'first-fit', '--objective',
      'speed'], "unknown objective 'speed'"),
    (['--trace', '{bad}', '--hosts', '2', '--host-vcpus', '8',
      '--host-ram-mb', '4096', '--policy', 'first-fit'],
     "line 3, column 'vcpus': 'four' is not a number"),
    (['--scenario', 'nope', '--policy', 'first-fit'],
     "unknown scenario 'nope'"),
    (['--trace', '{trace}', '--hosts', '0', '--host-vcpus', '8',
      '--host-ram-mb', '4096', '--policy', 'first-fit'],
     'hosts must be a positive integer'),
])
def test_errors_are_clear(tmp_path, capsys, argv, words):
    trace = tmp_path / 'trace.csv'
    trace.write_text(HEADER + CSV_ROWS)
    bad = tmp_path / 'bad.csv'
    bad.write_text(HEADER + 'a,p,0,,1,512,0,,\nb,p,1,,four,512,0,,\n')
    argv = [a.format(trace=trace, bad=bad) for a in argv]
    rc = cli.main(['simulate'] + argv + ['--json', str(tmp_path / 'o.json'),
                                         '--quiet'])
    assert rc == 2
    err = capsys.readouterr().err
    assert words in err
    assert not (tmp_path / 'o.json').exists()


def test_console_script_and_module():
    proc = subprocess.run([sys.executable, '-m', 'nova_rl_trainer.cli',
                           'scenarios', '--json'], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    names = [s['name'] for s in json.loads(proc.stdout)]
    assert names == ['azure-v1-dev', 'azure-v1-test', 'azure-v1-small']
    for sc in json.loads(proc.stdout):
        assert os.path.exists(sc['trace'])


def test_size_cluster(capsys):
    assert cli.main(['size-cluster', '--scenario', 'azure-v1-small']) == 0
    out = json.loads(capsys.readouterr().out)
    assert out['hosts'] == 17 and out['binding_resource'] == 'memory_mb'
