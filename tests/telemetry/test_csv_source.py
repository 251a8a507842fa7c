"""``ingest --source csv``: the trainer's own trace format as a metrics
source (air-gapped retraining), through the same ingest as Gnocchi's."""

from __future__ import annotations

import pytest

from nova_rl_trainer.simulation import trace_files
from nova_rl_trainer.telemetry.ingest import TRACE_COLUMNS
from nova_rl_trainer.telemetry import sources
from tests.telemetry.conftest import run_ingest

TRACE = """\
vm_id,project_id,arrival_s,departure_s,vcpus,memory_mb,disk_gb,cpu_util_mean,cpu_util_p95
a,p1,0,7200,2,4096,20,0.25,0.5
b,p1,1800,,4,8192,40,,
c,p2,3600,5400,1,2048,0,0.1,
d,p2,9000,9600,1,2048,0,0.3,0.4
"""


@pytest.fixture
def trace(tmp_path):
    path = tmp_path / 'in.csv'
    path.write_text(TRACE)
    return path


def test_window_of_a_csv_trace(trace, tmp_path):
    """The trace's time 0 at --trace-start; the window clips and drops."""
    run = run_ingest(['--source', 'csv', '--trace', str(trace),
                      '--trace-start', '2026-01-01T00:00:00Z',
                      '--start', '2026-01-01T01:00:00Z',
                      '--stop', '2026-01-01T02:00:00Z'],
                     tmp_path / 'out.csv', tmp_path / 'out.json')
    assert run.rc == 0, run.err
    assert run.header == list(TRACE_COLUMNS)
    rows = {r['vm_id']: r for r in run.rows}
    assert set(rows) == {'a', 'b', 'c'}
    assert rows['a'] == {
        'vm_id': 'a', 'project_id': 'p1', 'arrival_s': '0',
        'departure_s': '', 'vcpus': '2', 'memory_mb': '4096',
        'disk_gb': '20', 'cpu_util_mean': '0.25', 'cpu_util_p95': '0.5',
        'host': ''}
    assert (rows['b']['arrival_s'], rows['b']['cpu_util_mean']) == ('0', '')
    assert (rows['c']['arrival_s'], rows['c']['departure_s'],
            rows['c']['cpu_util_p95']) == ('0', '1800', '0.1')
    s = run.summary
    assert (s['instances'], s['with_usage'], s['without_usage']) == (3, 2, 1)
    assert s['source'] == 'csv'


def test_whole_csv_trace_round_trips(trace, tmp_path):
    """--trace-start defaulting to --start: the trace is the window."""
    run = run_ingest(['--source', 'csv', '--trace', str(trace),
                      '--start', '2026-01-01T00:00:00Z',
                      '--stop', '2026-01-02T00:00:00Z'],
                     tmp_path / 'out.csv')
    assert run.rc == 0, run.err
    original = trace_files.load_trace(str(trace))
    assert [r['vm_id'] for r in run.rows] == list(original.vm_ids)
    assert [float(r['arrival_s']) for r in run.rows] == list(
        original.arrival_s)


def test_csv_errors_are_one_line(tmp_path):
    run = run_ingest(['--source', 'csv', '--trace', str(tmp_path / 'no.csv'),
                      '--start', '2026-01-01T00:00:00Z',
                      '--stop', '2026-01-02T00:00:00Z'], tmp_path / 'o.csv')
    assert run.rc == 2
    assert run.error.startswith(f'nova-rl-trainer: error: {tmp_path}/no.csv'
                                ': cannot open')
    run = run_ingest(['--source', 'csv', '--start', '2026-01-01T00:00:00Z',
                      '--stop', '2026-01-02T00:00:00Z'], tmp_path / 'o.csv')
    assert run.rc == 2
    assert 'the following arguments are required: --trace' in run.err


def test_unwritable_output_is_one_line(trace, tmp_path):
    blocker = tmp_path / 'file'
    blocker.write_text('not a directory')
    out = blocker / 'trace.csv'
    run = run_ingest(['--source', 'csv', '--trace', str(trace),
                      '--start', '2026-01-01T00:00:00Z',
                      '--stop', '2026-01-02T00:00:00Z'], out)
    assert run.rc == 2
    assert run.error.startswith(
        f'nova-rl-trainer: error: cannot write {out}: ')
    assert blocker.read_text() == 'not a directory'


def test_ingested_trace_is_a_csv_source(trace, tmp_path):
    """What ingest writes (with its host column) is read back by the csv
    source and the trainer's reader."""
    first = run_ingest(['--source', 'csv', '--trace', str(trace),
                        '--start', '2026-01-01T00:00:00Z',
                        '--stop', '2026-01-02T00:00:00Z'],
                       tmp_path / 'first.csv')
    assert first.rc == 0, first.err
    again = run_ingest(['--source', 'csv', '--trace', str(first.out_path),
                        '--start', '2026-01-01T00:00:00Z',
                        '--stop', '2026-01-02T00:00:00Z'],
                       tmp_path / 'again.csv')
    assert again.rc == 0, again.err
    assert again.rows == first.rows


def test_source_plugins_are_registered():
    assert {'gnocchi', 'csv'} <= set(sources.available_sources())
    assert sources.source_class('csv').name == 'csv'
    with pytest.raises(ValueError, match="no metrics source 'nope'"):
        sources.source_class('nope')
