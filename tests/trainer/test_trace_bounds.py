"""Trace input bounds: every reader refuses what would exhaust memory or
time (a departure at 1e15 s, a billion-vCPU VM) with a TraceError naming
the file, line and column; any text given to the CSV reader ends in a Trace
or a TraceError, quickly, never another exception (property-based)."""

import atexit
import gzip
import math
import os
import shutil
import tempfile
import time

import hypothesis.configuration
from hypothesis import given
from hypothesis import HealthCheck
from hypothesis import settings
from hypothesis import strategies as st
import numpy as np
import pytest

from nova_rl_trainer import cli
from nova_rl_trainer.simulation import azure_v1
from nova_rl_trainer.simulation import csv_trace
from nova_rl_trainer.simulation import trace_files
from nova_rl_trainer.simulation import traces
from nova_rl_trainer.simulation.traces import TraceError

from ._helpers import HEADER
from ._helpers import make_trace

# Hypothesis caches what it learns (constants of local modules, which its
# pytest plugin gathers while the session is collected, before any fixture
# runs; unicode tables) under ./.hypothesis. Tests leave nothing behind, so
# unless HYPOTHESIS_STORAGE_DIRECTORY says where, the session's cache is a
# temporary directory, removed at exit.
if not os.environ.get('HYPOTHESIS_STORAGE_DIRECTORY'):
    _HYPOTHESIS_HOME = tempfile.mkdtemp(prefix='nova-rl-hypothesis-')
    hypothesis.configuration.set_hypothesis_home_dir(_HYPOTHESIS_HOME)
    atexit.register(shutil.rmtree, _HYPOTHESIS_HOME, ignore_errors=True)

DAYS_400 = traces.MAX_TRACE_S
assert DAYS_400 == 400 * 86400


def write(tmp_path, text, name='trace.csv'):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def row(vm='a', arrival='0', departure='', vcpus='1', memory='512',
        disk='0', project='p'):
    return f'{vm},{project},{arrival},{departure},{vcpus},{memory},{disk},,\n'


# -- the CSV reader, bound by bound -------------------------------------------

@pytest.mark.parametrize('cells, column, words', [
    (dict(departure='1e15'), 'departure_s', '400 days'),
    (dict(departure='1e10'), 'departure_s', '400 days'),
    (dict(departure=repr(DAYS_400 + 1)), 'departure_s', '400 days'),
    (dict(departure='inf'), 'departure_s', 'not a finite number'),
    (dict(departure='-1'), 'departure_s', 'negative'),
    (dict(arrival='1e15'), 'arrival_s', '400 days'),
    (dict(arrival='-0.5'), 'arrival_s', 'negative'),
    (dict(arrival='nan'), 'arrival_s', 'not a finite number'),
    (dict(arrival='10', departure='9.5'), 'departure_s', 'before arrival'),
    (dict(vcpus='4097'), 'vcpus', 'more than 4,096'),
    (dict(vcpus='1e300'), 'vcpus', 'more than 4,096'),
    (dict(vcpus='-1'), 'vcpus', 'must be positive'),
    (dict(memory=str(64 * 1024 * 1024 + 1)), 'memory_mb',
     'more than 67,108,864'),
    (dict(disk=str(1024 * 1024 + 1)), 'disk_gb', 'more than 1,048,576'),
    (dict(vm='v' * 256), 'vm_id', 'longer than 255'),
    (dict(project='p' * 256), 'project_id', 'longer than 255'),
])
def test_csv_bounds_name_file_line_and_column(tmp_path, cells, column,
                                              words):
    path = write(tmp_path, HEADER + row(vm='ok') + row(**cells))
    with pytest.raises(TraceError) as e:
        csv_trace.read_csv(path)
    assert e.value.line == 3
    assert e.value.column == repr(column)
    assert words in str(e.value)
    assert str(e.value).startswith(f"{path}: line 3, column '{column}': ")


def test_csv_bounds_are_inclusive(tmp_path):
    path = write(tmp_path, HEADER + row(
        arrival=repr(DAYS_400), departure=repr(DAYS_400), vcpus='4096',
        memory=str(64 * 1024 * 1024), disk=str(1024 * 1024), vm='v' * 255))
    t = csv_trace.read_csv(path)
    assert t.horizon_s == DAYS_400
    assert t.vcpus[0] == traces.MAX_VCPUS
    traces.check_bounds(t, path)


def test_csv_row_count_is_bounded(tmp_path, monkeypatch):
    monkeypatch.setattr(traces, 'MAX_VMS', 3)
    rows = ''.join(row(vm=f'v{i}', arrival=str(i)) for i in range(4))
    with pytest.raises(TraceError, match=r'line 5: more than 3 VMs'):
        csv_trace.read_csv(write(tmp_path, HEADER + rows))
    csv_trace.read_csv(write(tmp_path, HEADER + rows[:rows.rindex('v3')]))


def test_the_issue_traces_end_in_one_error_line(tmp_path, capsys):
    """departure_s = 1e15 was a numpy MemoryError traceback; 1e10 ran for
    hours."""
    for departure in ('1e15', '1e10'):
        path = write(tmp_path, HEADER + row(departure=departure))
        rc = cli.main(['simulate', '--trace', path, '--trace-format', 'csv',
                       '--hosts', '2', '--host-vcpus', '8', '--host-ram-mb',
                       '8192', '--policy', 'first-fit', '--json',
                       str(tmp_path / 'out.json'), '--quiet'])
        err = capsys.readouterr().err
        assert rc == 2
        assert err.count('\n') == 1 and 'Traceback' not in err
        assert f"line 2, column 'departure_s': departure_s {departure[0]}e+" \
            in err and '400 days' in err
        assert not (tmp_path / 'out.json').exists()


# -- any trace, whoever built it ----------------------------------------------

@pytest.mark.parametrize('rows, words', [
    ([(0, 1e15, 1, 512)], 'departure_s of VM'),
    ([(10, 5, 1, 512)], 'before its arrival'),
    ([(-1, None, 1, 512)], 'arrival_s of VM'),
    ([(math.inf, None, 1, 512)], 'arrival_s of VM'),
    ([(0, None, 5000, 512)], 'vcpus of VM'),
    ([(0, None, math.nan, 512)], 'vcpus of VM'),
    ([(0, None, 1, 0)], 'memory_mb of VM'),
    ([(0, None, 1, 512, 2e6)], 'disk_gb of VM'),
])
def test_check_bounds_on_any_trace(rows, words):
    with pytest.raises(TraceError, match=words):
        traces.check_bounds(make_trace(rows), 'made')


def test_load_trace_checks_whatever_the_reader_returns(tmp_path,
                                                       monkeypatch):
    bad = make_trace([(0, None, 1, 512), (5, 1e12, 1, 512)])
    monkeypatch.setattr(trace_files, 'read_csv', lambda path: bad)
    path = write(tmp_path, HEADER + row())
    with pytest.raises(TraceError, match=f"{path}: departure_s of VM "
                                         "'t-0000001'"):
        trace_files.load_trace(path)


# -- the Azure reader ---------------------------------------------------------

def azure_dir(tmp_path, arrivals='100 a,h,|\n400 a,|\n',
              lifetimes='100 U0,U1,|\n400 U2,|\n', end=1000,
              flavors='1,0.75 a\n2,4 h\n',
              intervals='0 0\n300 1\n600 2\n900 2\n1200 3\n'):
    (tmp_path / 'flav_map.txt').write_text(flavors)
    (tmp_path / 'v1.interval_map.txt').write_text(intervals)
    (tmp_path / 'v1.x.txt').write_text(arrivals)
    for old in tmp_path.glob('v1.x.c*.txt'):
        old.unlink()
    (tmp_path / f'v1.x.c{end}.txt').write_text(lifetimes)
    return str(tmp_path / 'v1.x.txt')


def test_azure_reader_within_bounds(tmp_path):
    t = azure_v1.read_azure_v1(azure_dir(tmp_path))
    assert len(t) == 3
    traces.check_bounds(t, 'x')


@pytest.mark.parametrize('kw, file, line, words', [
    (dict(end=100 + 400 * 86400 + 1), 'v1.x.c', None, '400 days'),
    (dict(end=600), 'v1.x.c', None, "before the last line's bin ends"),
    (dict(arrivals='100 a,|\n99999999999 a,|\n',
          lifetimes='100 U0,|\n99999999999 U0,|\n', end=10 ** 12),
     'v1.x.txt', 2, '400 days'),
    (dict(arrivals='9' * 400 + ' a,|\n', lifetimes='9' * 400 + ' U0,|\n'),
     'v1.x.txt', 1, 'is not an integer'),
    (dict(lifetimes='100 U\u00b2,U1,|\n400 U2,|\n'), 'v1.x.c', 1,
     'is not U<bin>'),
    (dict(lifetimes='100 U' + '9' * 5000 + ',U1,|\n400 U2,|\n'), 'v1.x.c',
     1, 'is not U<bin>'),
    (dict(flavors='5000,4 a\n2,4 h\n'), 'flav_map', 1, 'vCPUs'),
    (dict(flavors='1,inf a\n2,4 h\n'), 'flav_map', 1, 'memory'),
    (dict(flavors='1,nan a\n2,4 h\n'), 'flav_map', 1, 'memory'),
    (dict(flavors='1,1e300 a\n2,4 h\n'), 'flav_map', 1, 'memory'),
    (dict(flavors='1,0 a\n2,4 h\n'), 'flav_map', 1, 'memory'),
    (dict(intervals='0 0\n-300 1\n'), 'v1.interval_map', 2, 'lifetime'),
    (dict(intervals='0 0\n1e99 1\n'), 'v1.interval_map', 2, 'SECONDS BIN'),
    (dict(intervals='0 0\n99999999999 1\n'), 'v1.interval_map', 2,
     'is not from 0'),
])
def test_azure_bounds(tmp_path, kw, file, line, words):
    path = azure_dir(tmp_path, **kw)
    with pytest.raises(TraceError) as e:
        azure_v1.read_azure_v1(path)
    assert os.path.basename(e.value.path).startswith(file)
    assert e.value.line == line
    assert words in str(e.value)


def test_azure_vm_count_is_bounded(tmp_path, monkeypatch):
    monkeypatch.setattr(traces, 'MAX_VMS', 2)
    with pytest.raises(TraceError, match='line 2, column token 1: more '
                                         'than 2 VMs'):
        azure_v1.read_azure_v1(azure_dir(tmp_path))


# -- any text: a Trace or a TraceError, quickly -------------------------------

#: Far above what parsing a few KB takes (milliseconds), so only a runaway
#: (a quadratic path, a giant allocation) can reach it.
TIME_LIMIT_S = 10.0

PROPERTY = settings(max_examples=200, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture(scope='module')
def scratch(tmp_path_factory):
    return tmp_path_factory.mktemp('property')


def read_any(path):
    """read_csv on ``path``: the trace, or None for a TraceError; any other
    exception fails the test. A trace must satisfy every bound."""
    start = time.monotonic()
    try:
        t = csv_trace.read_csv(path)
    except TraceError as e:
        assert str(e).startswith(path)
        t = None
    assert time.monotonic() - start < TIME_LIMIT_S
    if t is not None:
        assert 1 <= len(t) <= traces.MAX_VMS
        traces.check_bounds(t, path)
        assert (np.diff(t.arrival_s) >= 0).all()
        assert len(set(t.vm_ids)) == len(t)
    return t


@PROPERTY
@given(text=st.text(max_size=2000))
def test_any_text_is_a_trace_or_a_trace_error(scratch, text):
    path = str(scratch / 'any.csv')
    with open(path, 'w', encoding='utf-8', errors='surrogatepass',
              newline='') as f:
        f.write(text)
    read_any(path)


@PROPERTY
@given(data=st.binary(max_size=2000), compressed=st.booleans())
def test_any_bytes_are_a_trace_or_a_trace_error(scratch, data, compressed):
    path = str(scratch / ('any.csv.gz' if compressed else 'any.csv'))
    if compressed and data[:1] != b'\x1f':
        data = gzip.compress(data)
    with open(path, 'wb') as f:
        f.write(data)
    read_any(path)


NUMBERS = st.one_of(
    st.integers(-10, 10 ** 6).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(['', ' ', '0', '-0', '1e15', '1e10', '1e308', '1e400',
                     'nan', 'inf', '-inf', '1_000', ' 7 ', '0x10', '١٢',
                     '9' * 5000, repr(DAYS_400), repr(DAYS_400 + 1),
                     '4096', '4097', str(64 * 1024 * 1024 + 1)]),
    st.text(max_size=8),
)
IDS = st.one_of(st.sampled_from(['a', 'b', 'c', 'p', '']),
                st.text(max_size=6), st.just('x' * 300))


@st.composite
def csv_texts(draw):
    """Near-valid CSV traces: the right header (in any order, sometimes
    broken) and rows of hostile cells (sometimes too few or too many)."""
    columns = list(draw(st.permutations(csv_trace.CSV_COLUMNS)))
    if draw(st.integers(0, 9)) == 0:
        columns[draw(st.integers(0, 8))] = draw(st.text(max_size=6))
    lines = [','.join(columns)]
    for _ in range(draw(st.integers(0, 6))):
        cells = {c: draw(IDS if c in ('vm_id', 'project_id') else NUMBERS)
                 for c in csv_trace.CSV_COLUMNS}
        values = [cells.get(c, '') for c in columns]
        if draw(st.integers(0, 9)) == 0:
            values = values[:draw(st.integers(0, 9))]
        lines.append(','.join(v.replace(',', ';') for v in values))
    sep = draw(st.sampled_from(['\n', '\r\n', '\r']))
    return sep.join(lines) + draw(st.sampled_from(['', sep, sep * 2]))


@PROPERTY
@given(text=csv_texts())
def test_near_valid_csv_is_a_trace_or_a_trace_error(scratch, text):
    path = str(scratch / 'near.csv')
    with open(path, 'w', encoding='utf-8', errors='surrogatepass',
              newline='') as f:
        f.write(text)
    read_any(path)


@settings(max_examples=50, deadline=None, database=None)
@given(arrival=st.floats(0, DAYS_400), life=st.floats(0, DAYS_400),
       vcpus=st.integers(1, traces.MAX_VCPUS))
def test_valid_rows_are_read_back(scratch, arrival, life, vcpus):
    departure = arrival + life
    path = str(scratch / 'valid.csv')
    with open(path, 'w') as f:
        f.write(HEADER + row(arrival=repr(arrival),
                             departure=repr(departure), vcpus=str(vcpus)))
    if departure > DAYS_400:
        with pytest.raises(TraceError, match='400 days'):
            csv_trace.read_csv(path)
        return
    t = read_any(path)
    assert t.arrival_s[0] == arrival and t.departure_s[0] == departure
