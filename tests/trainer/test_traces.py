"""Trace readers: the generic CSV, the Azure V1 files, and bad input."""

import gzip
import math
import os

import numpy as np
import pytest

from nova_rl_trainer.simulation import azure_v1
from nova_rl_trainer.simulation import csv_trace
from nova_rl_trainer.simulation import trace_files
from nova_rl_trainer.simulation.traces import TraceError

from ._helpers import HEADER


def write(tmp_path, text, name='trace.csv'):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_csv_reads_rows_sorted_by_arrival(tmp_path):
    path = write(tmp_path, HEADER
                 + 'b,p2,50,100,2,4096,20,0.3,0.6\n'
                 + '\n'
                 + 'a,p1,10,,1,512,0,,\n'
                 + 'c,p1,50,60.5,4,1024,0,0.2,\n')
    t = csv_trace.read_csv(path)
    assert len(t) == 3
    assert [t.vm_id(i) for i in range(3)] == ['a', 'b', 'c']
    assert t.arrival_s.tolist() == [10, 50, 50]
    assert math.isnan(t.departure_s[0]) and t.departure_s[2] == 60.5
    assert t.vcpus.tolist() == [1, 2, 4]
    assert t.memory_mb.tolist() == [512, 4096, 1024]
    assert t.disk_gb.tolist() == [0, 20, 0]
    assert [t.project_ids[p] for p in t.project] == ['p1', 'p2', 'p1']
    assert math.isnan(t.cpu_util_mean[0]) and math.isnan(t.cpu_util_p95[0])
    assert t.cpu_util_mean[1] == 0.3 and t.cpu_util_p95[1] == 0.6
    # A mean alone: a steady VM.
    assert t.cpu_util_mean[2] == t.cpu_util_p95[2] == 0.2
    assert t.horizon_s == 100


def test_csv_columns_in_any_order_and_gzip(tmp_path):
    cols = csv_trace.CSV_COLUMNS[::-1]
    row = dict(vm_id='x', project_id='p', arrival_s='0', departure_s='5',
               vcpus='2', memory_mb='100', disk_gb='1', cpu_util_mean='',
               cpu_util_p95='')
    text = ','.join(cols) + '\n' + ','.join(row[c] for c in cols) + '\n'
    path = tmp_path / 'trace.csv.gz'
    with gzip.open(path, 'wt') as f:
        f.write(text)
    t = trace_files.load_trace(str(path))
    assert len(t) == 1 and t.vcpus[0] == 2 and t.departure_s[0] == 5


def test_csv_round_trip(tmp_path):
    path = write(tmp_path, HEADER + 'a,p1,0,10,1,512,0,0.1,0.3\n'
                 'b,p2,1,,2,1024,5,,\n')
    t = csv_trace.read_csv(path)
    out = str(tmp_path / 'out.csv')
    csv_trace.write_csv(t, out)
    u = csv_trace.read_csv(out)
    for col in ('arrival_s', 'departure_s', 'vcpus', 'memory_mb', 'disk_gb',
                'cpu_util_mean', 'cpu_util_p95'):
        np.testing.assert_array_equal(getattr(t, col), getattr(u, col))


@pytest.mark.parametrize('row, line, column, words', [
    ('a,p,abc,,1,512,0,,', 2, 'arrival_s', 'not a number'),
    ('a,p,-1,,1,512,0,,', 2, 'arrival_s', 'negative'),
    ('a,p,nan,,1,512,0,,', 2, 'arrival_s', 'not a finite number'),
    ('a,p,10,5,1,512,0,,', 2, 'departure_s', 'before arrival_s'),
    ('a,p,0,,0,512,0,,', 2, 'vcpus', 'must be positive'),
    ('a,p,0,,1,,0,,', 2, 'memory_mb', 'empty memory_mb'),
    ('a,p,0,,1,512,-2,,', 2, 'disk_gb', 'negative'),
    ('a,p,0,,1,512,0,1.5,', 2, 'cpu_util_mean', 'fraction'),
    ('a,p,0,,1,512,0,,0.5', 2, 'cpu_util_mean', 'without cpu_util_mean'),
    ('a,p,0,,1,512,0,0.5,0.2', 2, 'cpu_util_p95', 'below cpu_util_mean'),
    (',p,0,,1,512,0,,', 2, 'vm_id', 'empty vm_id'),
    ('a,,0,,1,512,0,,', 2, 'project_id', 'empty project_id'),
    ('a,p,0,,1,512,0,', 2, None, 'expected 9 fields, found 8'),
])
def test_csv_bad_value_names_line_and_column(tmp_path, row, line, column,
                                             words):
    path = write(tmp_path, HEADER + row + '\n')
    with pytest.raises(TraceError) as e:
        csv_trace.read_csv(path)
    assert e.value.line == line
    assert e.value.column == (repr(column) if column else None)
    assert words in str(e.value)
    assert f'line {line}' in str(e.value) and path in str(e.value)
    if column:
        assert f"column '{column}'" in str(e.value)


def test_csv_error_on_a_later_line(tmp_path):
    path = write(tmp_path, HEADER + 'a,p,0,,1,512,0,,\n\nb,p,1,,x,512,0,,\n')
    with pytest.raises(TraceError, match=r"line 4, column 'vcpus'"):
        csv_trace.read_csv(path)


def test_csv_duplicate_vm_id(tmp_path):
    path = write(tmp_path, HEADER + 'a,p,0,,1,512,0,,\na,p,1,,1,512,0,,\n')
    with pytest.raises(TraceError, match="line 3.*'a' already used on "
                                         'line 2'):
        csv_trace.read_csv(path)


@pytest.mark.parametrize('header, words', [
    ('vm_id,project_id,arrival_s,departure_s,vcpus,memory_mb,disk_gb,'
     'cpu_util_mean', 'missing cpu_util_p95'),
    (HEADER.strip() + ',extra', "unknown 'extra'"),
    (HEADER.strip().replace('disk_gb', 'vcpus'), 'repeated vcpus'),
])
def test_csv_bad_header(tmp_path, header, words):
    path = write(tmp_path, header + '\n')
    with pytest.raises(TraceError, match='line 1') as e:
        csv_trace.read_csv(path)
    assert words in str(e.value)


def test_csv_empty_and_missing(tmp_path):
    with pytest.raises(TraceError, match='empty file'):
        csv_trace.read_csv(write(tmp_path, ''))
    with pytest.raises(TraceError, match='no VMs'):
        csv_trace.read_csv(write(tmp_path, HEADER))
    with pytest.raises(TraceError, match='cannot open'):
        csv_trace.read_csv(str(tmp_path / 'nope.csv'))
    bad = tmp_path / 'bad.csv.gz'
    bad.write_bytes(b'not gzip')
    with pytest.raises(TraceError, match='cannot read'):
        csv_trace.read_csv(str(bad))


def test_format_detection(tmp_path):
    assert trace_files.detect_format('x/trace.csv') == 'csv'
    assert trace_files.detect_format('x/v1.dev.txt.gz') == 'azure-v1'
    with pytest.raises(TraceError, match='--trace-format'):
        trace_files.detect_format('x/trace.json')
    with pytest.raises(TraceError, match='unknown trace format'):
        trace_files.load_trace(write(tmp_path, HEADER), 'yaml')


def test_window_and_sample():
    t = trace_files.load_trace(os.path.join(azure_v1.data_dir(),
                                            'v1.dev.txt.gz'), seed=0)
    w = t.window(3600.0, 7200.0)
    inside = (t.arrival_s >= 3600) & (t.arrival_s < 7200)
    assert len(w) == inside.sum()
    assert w.arrival_s.min() >= 0 and w.arrival_s.max() < 3600
    assert w.time_offset_s == t.time_offset_s + 3600
    # Still running at the window's end: no departure.
    dep = t.departure_s[inside] - 3600
    still = np.isnan(dep) | (dep >= 3600)
    np.testing.assert_array_equal(np.isnan(w.departure_s), still)
    s = w.sample(0.5, seed=1)
    assert 0 < len(s) < len(w)
    # Whole batches are kept or dropped.
    kept = set(s.batch.tolist())
    assert sum(np.isin(w.batch, list(kept))) == len(s)
    assert len(w.sample(0.5, seed=1)) == len(s)


# -- Azure V1 ---------------------------------------------------------------

def azure_dir(tmp_path, arrivals, lifetimes, end=1000):
    (tmp_path / 'flav_map.txt').write_text('1,0.75 a\n2,4 h\n16,112 d\n')
    (tmp_path / 'v1.interval_map.txt').write_text(
        '0 0\n300 1\n600 2\n900 2\n1200 3\n')
    (tmp_path / 'v1.x.txt').write_text(arrivals)
    (tmp_path / f'v1.x.c{end}.txt').write_text(lifetimes)
    return str(tmp_path / 'v1.x.txt')


def test_azure_reader_tiny(tmp_path):
    path = azure_dir(tmp_path, '100 a,h,|,d,|\n400 a,|\n',
                     '100 U0,U1,|,C3,|\n400 U2,|\n', end=1000)
    t = azure_v1.read_azure_v1(path, seed=3)
    assert len(t) == 4
    # Time 0 is the first bin; each VM arrives inside its bin.
    assert t.time_offset_s == 100
    assert ((t.arrival_s >= 0) & (t.arrival_s < 600)).all()
    first_bin = t.arrival_s < 300
    assert first_bin.sum() == 3
    assert sorted(t.vcpus[first_bin].tolist()) == [1, 2, 16]
    mem = dict(zip(t.vcpus.tolist(), t.memory_mb.tolist()))
    assert mem == {1: 768, 2: 4096, 16: 112 * 1024}
    # Lifetimes inside their bins, capped by the trace end; C: no departure.
    life = t.departure_s - t.arrival_s
    big = t.vcpus == 16
    assert np.isnan(t.departure_s[big]).all()
    assert (life[~big] > 0).all() and (t.departure_s[~big] <= 900).all()
    h = np.flatnonzero(t.vcpus == 2)[0]
    assert 300 <= life[h] < 600
    # One batch, one tenant.
    batch_a_h = np.flatnonzero(first_bin & ~big)
    assert len(set(t.project[batch_a_h].tolist())) == 1
    assert len(set(t.batch[batch_a_h].tolist())) == 1
    assert (t.disk_gb == 0).all() and np.isnan(t.cpu_util_mean).all()
    # Deterministic per seed, different across seeds.
    u = azure_v1.read_azure_v1(path, seed=3)
    np.testing.assert_array_equal(t.arrival_s, u.arrival_s)
    v = azure_v1.read_azure_v1(path, seed=4)
    assert not np.array_equal(t.arrival_s, v.arrival_s)


@pytest.mark.parametrize('arrivals, lifetimes, words, line, token', [
    ('100 a,z,|\n', '100 U0,U0,|\n', "unknown flavor 'z'", 1, 'token 2'),
    ('100 a,|\n', '100 X0,|\n', "'X0' is not U<bin>", 1, 'token 1'),
    ('100 a,|\n', '100 U9,|\n', 'bin 9 is not', 1, 'token 1'),
    ('100 a,|\n', '100 U0,U0,|\n', '3 tokens where the arrival file has 2',
     1, None),
    ('100 a,|\n', '200 U0,|\n', "time '200' does not match", 1, 'token 0'),
    ('100 a,|\nxx a,|\n', '100 U0,|\nxx U0,|\n', "'xx' is not an integer",
     2, 'token 0'),
    ('100 a,|\n', '100 U0,a\n', "'a' where the arrival file has the batch "
     'separator', 1, 'token 2'),
    ('100 a,|\n200 a,|\n', '100 U0,|\n', 'more lines than its pair', 2,
     None),
])
def test_azure_bad_input_names_line_and_token(tmp_path, arrivals, lifetimes,
                                              words, line, token):
    path = azure_dir(tmp_path, arrivals, lifetimes)
    with pytest.raises(TraceError) as e:
        azure_v1.read_azure_v1(path)
    assert words in str(e.value)
    assert e.value.line == line
    assert e.value.column == token


def test_azure_missing_companions(tmp_path):
    path = azure_dir(tmp_path, '100 a,|\n', '100 U0,|\n')
    os.remove(tmp_path / 'v1.x.c1000.txt')
    with pytest.raises(TraceError, match=r'lifetime file v1\.x\.c<END>'):
        azure_v1.read_azure_v1(path)
    path = azure_dir(tmp_path, '100 a,|\n', '100 U0,|\n')
    os.remove(tmp_path / 'flav_map.txt')
    with pytest.raises(TraceError, match='flav_map.txt not found'):
        azure_v1.read_azure_v1(path)


def test_shipped_azure_files():
    d = azure_v1.data_dir()
    for name in ('LICENSE', 'README.md', 'flav_map.txt'):
        assert os.path.exists(os.path.join(d, name)), name
    with open(os.path.join(d, 'README.md')) as f:
        assert 'CC-BY 4.0' in f.read()
    dev = trace_files.load_trace(os.path.join(d, 'v1.dev.txt.gz'), seed=0)
    assert len(dev) == 259159
    assert dev.horizon_s <= 300000
    assert len(dev.project_ids) > 1000
