"""Fanout: ordered results, the worker's exceptions, identical paths, Ray,
local workers that die with a killed parent.

The Ray test starts a real local Ray head on 127.0.0.1 (skipped, saying
so, when Ray is not installed: it is optional), and checks that none of
its processes listens beyond the loopback interface."""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
import time

import pytest

from tests.telemetry.servers import free_port

from nova_rl_trainer.simulation import fanout
from nova_rl_trainer.simulation.fanout import Fanout
from nova_rl_trainer.simulation.fanout import FanoutError


def square_with_pid(x: int) -> tuple[int, int]:
    return x * x, os.getpid()


def ticking(x: int, tick) -> int:
    for _ in range(x):
        tick(1)
    return -x


def blas_threads(_: int) -> int:
    import numpy  # noqa: F401 - loads the BLAS being checked
    import threadpoolctl
    infos = threadpoolctl.threadpool_info()
    return max((i['num_threads'] for i in infos), default=1)


def write_pid_and_block(directory: str) -> None:
    """A task that never ends: names its worker (an empty file called by
    the worker's pid in ``directory``), then waits for ever."""
    open(os.path.join(directory, str(os.getpid())), 'x').close()
    threading.Event().wait()


ITEMS = [5, 3, 8, 1, 0, 7, 2]

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))


def test_inline_and_processes_give_identical_ordered_results():
    with Fanout() as inline:
        a = inline.map(square_with_pid, ITEMS)
    with Fanout(workers=2) as procs:
        b = procs.map(square_with_pid, ITEMS)
        again = procs.map(square_with_pid, ITEMS[:2])
    assert [r for r, _ in a] == [x * x for x in ITEMS]
    assert [r for r, _ in b] == [r for r, _ in a]
    assert {pid for _, pid in a} == {os.getpid()}
    # Real worker processes, the pool reused across map calls.
    assert os.getpid() not in {pid for _, pid in b}
    assert {pid for _, pid in again} <= {pid for _, pid in b}


def test_exception_propagates_with_the_workers_message():
    for workers in (1, 2):
        with Fanout(workers=workers) as fan:
            with pytest.raises(ValueError, match="invalid literal for int"
                                                 ".*'not a number'"):
                fan.map(int, ['1', 'not a number', '3'])


def test_progress_ticks_reach_the_caller_on_every_path():
    for workers in (1, 2):
        seen: list[int] = []
        with Fanout(workers=workers) as fan:
            out = fan.map(ticking, [3, 4, 0], progress=seen.append)
        assert out == [-3, -4, 0]
        assert sum(seen) == 7


def test_workers_run_one_blas_thread():
    with Fanout(workers=2) as fan:
        assert fan.map(blas_threads, [0, 1]) == [1, 1]


#: A parent whose two workers block for ever: ``python -c ORPHANS DIR``.
ORPHANS = textwrap.dedent('''
    import sys
    from nova_rl_trainer.simulation.fanout import Fanout
    from tests.trainer.test_fanout import write_pid_and_block
    with Fanout(workers=2) as fan:
        fan.map(write_pid_and_block, [sys.argv[1]] * 2)
''')


@pytest.mark.skipif(not sys.platform.startswith('linux'),
                    reason='workers die with their parent on Linux only')
def test_workers_die_when_their_parent_is_killed(tmp_path):
    # The parent has a session of its own and only its pid is killed,
    # as by `kill -KILL PID` or a job scheduler's timeout: nothing of it
    # runs any more (no pool shutdown) and no signal reaches the workers.
    pids_dir = tmp_path / 'pids'
    pids_dir.mkdir()
    with open(tmp_path / 'parent.log', 'wb') as log:
        parent = subprocess.Popen(
            [sys.executable, '-c', ORPHANS, str(pids_dir)], cwd=ROOT,
            env=_child_env(), stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True)
    workers: dict[int, bytes] = {}
    try:
        deadline = time.monotonic() + 120
        while len(workers) < 2:
            assert parent.poll() is None, _tail(tmp_path / 'parent.log')
            assert time.monotonic() < deadline, \
                'the workers did not start within 120 s'
            for name in os.listdir(pids_dir):
                workers.setdefault(int(name), _start_time(int(name)))
            time.sleep(0.05)    # polling for the workers, not timing
        assert {_ppid(pid) for pid in workers} == {parent.pid}
        parent.kill()
        parent.wait(timeout=60)
        deadline = time.monotonic() + 30
        while any(_alive(pid, start) for pid, start in workers.items()) \
                and time.monotonic() < deadline:
            time.sleep(0.05)    # polling for their exit, not timing
        left = [pid for pid, start in workers.items()
                if _alive(pid, start)]
        assert left == [], (f'workers {left} outlived their killed parent '
                            f'by 30 s')
    finally:
        _stop_session(parent, workers)


@pytest.mark.skipif(not sys.platform.startswith('linux'),
                    reason='workers die with their parent on Linux only')
def test_a_worker_whose_parent_died_before_it_started_exits_at_once():
    # The parent died before the worker's initializer ran: no signal will
    # come, the worker's parent is another process already.
    code = ('import sys\n'
            'from nova_rl_trainer.simulation import fanout\n'
            'fanout._die_with_parent(int(sys.argv[1]))\n'
            'print("still running")\n')
    for parent_pid, status, out in ((os.getpid() + 1, 1, ''),
                                    (os.getpid(), 0, 'still running\n')):
        proc = subprocess.run([sys.executable, '-c', code, str(parent_pid)],
                              env=_child_env(), capture_output=True,
                              text=True, timeout=60)
        assert (proc.returncode, proc.stdout) == (status, out), proc.stderr


def _child_env() -> dict[str, str]:
    """This environment, importing the tests and the trainer from where
    this process does."""
    trainer = os.path.dirname(os.path.dirname(os.path.dirname(
        os.path.abspath(fanout.__file__))))
    path = [ROOT, trainer] + [
        p for p in os.environ.get('PYTHONPATH', '').split(os.pathsep) if p]
    return {**os.environ, 'PYTHONPATH': os.pathsep.join(path)}


def _stat(pid: int) -> list[bytes] | None:
    """``/proc/PID/stat`` after the command name (state, ppid, pgrp,
    session, ...), or None once the process is gone."""
    try:
        with open(f'/proc/{pid}/stat', 'rb') as f:
            return f.read().rpartition(b')')[2].split()
    except OSError:
        return None


def _start_time(pid: int) -> bytes:
    stat = _stat(pid)
    return stat[19] if stat else b''


def _ppid(pid: int) -> int | None:
    stat = _stat(pid)
    return int(stat[1]) if stat else None


def _alive(pid: int, start: bytes | None = None) -> bool:
    """The process still runs: neither gone nor a zombie nobody reaped
    yet, nor (given its ``start`` time) its pid taken by another one."""
    stat = _stat(pid)
    return stat is not None and stat[0] != b'Z' \
        and start in (None, stat[19])


def _stop_session(parent: subprocess.Popen, workers: dict[int, bytes]
                  ) -> None:
    """Leave nothing behind: the parent, the workers that outlived it
    (the bug), then whatever else of its session (multiprocessing's
    resource tracker, which unlinks the parent's semaphores and exits once
    the workers are gone)."""
    if parent.poll() is None:
        parent.kill()
        parent.wait(timeout=60)
    _kill([pid for pid, start in workers.items() if _alive(pid, start)])
    deadline = time.monotonic() + 30
    while True:
        rest = [pid for pid in _pids_in_session(parent.pid)
                if _alive(pid)]
        if not rest or time.monotonic() > deadline:
            break
        time.sleep(0.05)        # polling for their exit, not timing
    _kill(rest)


def _kill(pids: list[int]) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _tail(path) -> str:
    with open(path, 'rb') as f:
        return f.read()[-2000:].decode(errors='replace')


@pytest.mark.parametrize('workers', [0, -1, 1.5, True])
def test_bad_worker_count_is_one_line(workers):
    with pytest.raises(FanoutError, match='workers must be an integer'):
        Fanout(workers=workers)


def test_missing_ray_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, 'ray', None)    # import ray fails
    with pytest.raises(FanoutError) as e:
        with Fanout(ray_address='127.0.0.1:1'):
            pass
    assert 'needs Ray, which is not installed' in str(e.value)
    assert '\n' not in str(e.value)


def _ray_cli() -> str | None:
    try:
        import ray  # noqa: F401
    except ImportError:
        return None
    return shutil.which('ray', path=os.path.dirname(sys.executable)) \
        or shutil.which('ray')


def test_ray_address_that_does_not_answer_is_a_clear_error():
    if _ray_cli() is None:
        pytest.skip('Ray is not installed (optional: pip install ray)')
    port = free_port()     # nothing listens there
    with pytest.raises(FanoutError) as e:
        with Fanout(ray_address=f'127.0.0.1:{port}'):
            pass
    assert f'cannot connect to the Ray cluster at 127.0.0.1:{port}' \
        in str(e.value)
    assert '\n' not in str(e.value)


@dataclasses.dataclass
class RayHead:
    address: str
    pid: int
    temp: str

    def pids(self) -> list[int]:
        """Every process of this head: its session (``ray start`` and the
        daemons and workers it forks) and whatever names its temp dir."""
        return sorted(set(_pids_in_session(self.pid))
                      | set(_pids_mentioning(self.temp)))


#: Ray local-only: ``ray start --node-ip-address 127.0.0.1`` alone does not
#: do it on Linux, where Ray replaces a loopback node address by the
#: machine's own (ray._private.services.resolve_ip_for_localhost); its GCS,
#: raylet and workers then listen on every interface and its runtime env
#: agent on the machine's address. Off, as on macOS and Windows, the node
#: address stays 127.0.0.1, which makes every one of them listen on the
#: loopback interface only.
LOCAL_ONLY = {'RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER': '0'}


@pytest.fixture
def ray_head(monkeypatch):
    """A real Ray head on 127.0.0.1 (``ray start --block``, ours alone),
    reachable from nowhere else."""
    cli = _ray_cli()
    if cli is None:
        pytest.skip('Ray is not installed (optional: pip install ray)')
    # This process is the driver: it resolves 127.0.0.1 the same way, so
    # it needs the same setting, read by Ray when it resolves (its
    # constants module read the variable when first imported).
    from ray._private import ray_constants
    for name, value in LOCAL_ONLY.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(ray_constants, 'ENABLE_RAY_CLUSTER', False)
    port = free_port()
    env = {**os.environ, 'RAY_USAGE_STATS_ENABLED': '0', **LOCAL_ONLY}
    # Short: Ray's socket paths under it must fit in 107 bytes.
    temp = tempfile.mkdtemp(prefix='ray', dir='/tmp')
    head = subprocess.Popen(
        [cli, 'start', '--head', '--block', '--node-ip-address',
         '127.0.0.1', '--port', str(port), '--num-cpus', '2',
         '--include-dashboard', 'false', '--disable-usage-stats',
         '--temp-dir', temp],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True)
    try:
        _wait_for_port(port, head)
        yield RayHead(f'127.0.0.1:{port}', head.pid, temp)
    finally:
        _stop_head(head, temp)


def _wait_for_port(port: int, head: subprocess.Popen) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if head.poll() is not None:
            raise RuntimeError(f'ray start exited with {head.returncode}')
        try:
            socket.create_connection(('127.0.0.1', port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.2)     # polling for readiness, not timing
    raise RuntimeError('the Ray head did not answer within 120 s')


def _stop_head(head: subprocess.Popen, temp: str) -> None:
    """Stop only this head: its process group, then its daemons (found
    by their unique temp dir)."""
    try:
        os.killpg(head.pid, signal.SIGTERM)
        head.wait(timeout=60)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        pass
    for pid in _pids_mentioning(temp):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    shutil.rmtree(temp, ignore_errors=True)


def _pids_where(name: str, matches) -> list[int]:
    """Processes whose ``/proc/PID/<name>`` (bytes) ``matches``; those
    gone while looking are skipped."""
    out = []
    for entry in os.listdir('/proc'):
        if not entry.isdigit():
            continue
        try:
            with open(f'/proc/{entry}/{name}', 'rb') as f:
                content = f.read()
        except OSError:
            continue
        if matches(content):
            out.append(int(entry))
    return out


def _pids_mentioning(text: str) -> list[int]:
    return _pids_where('cmdline', lambda cmdline: text.encode() in cmdline)


def _pids_in_session(sid: int) -> list[int]:
    # After the command name (in parentheses, may hold spaces): state,
    # ppid, pgrp, session.
    return _pids_where('stat', lambda stat: int(
        stat.rpartition(b')')[2].split()[3]) == sid)


def _listening_tcp() -> dict[str, tuple[str, int]]:
    """Listening TCP sockets of this network namespace by socket inode:
    ``{inode: (address, port)}``, from /proc/net/tcp and tcp6."""
    out = {}
    for table, family in (('tcp', 4), ('tcp6', 6)):
        try:
            f = open(f'/proc/net/{table}')
        except FileNotFoundError:
            continue        # no IPv6
        with f:
            next(f)
            for line in f:
                cols = line.split()
                if cols[3] != '0A':      # TCP_LISTEN
                    continue
                hex_addr, hex_port = cols[1].split(':')
                raw = bytes.fromhex(hex_addr)
                # The kernel prints each 32-bit word in host (little-endian)
                # order.
                raw = b''.join(raw[i:i + 4][::-1]
                               for i in range(0, len(raw), 4))
                address = str(ipaddress.IPv4Address(raw) if family == 4
                              else ipaddress.IPv6Address(raw))
                out[cols[9]] = (address, int(hex_port, 16))
    return out


def _listening_sockets(pids: list[int]) -> list[tuple[int, str, int]]:
    """``(pid, address, port)`` of every listening TCP socket ``pids``
    hold."""
    listening = _listening_tcp()
    found = []
    for pid in pids:
        try:
            fds = os.listdir(f'/proc/{pid}/fd')
        except OSError:
            continue        # gone meanwhile
        for fd in fds:
            try:
                target = os.readlink(f'/proc/{pid}/fd/{fd}')
            except OSError:
                continue
            inode = target.removeprefix('socket:[').removesuffix(']')
            if target.startswith('socket:[') and inode in listening:
                found.append((pid, *listening[inode]))
    return sorted(set(found))


def _loopback(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    mapped = getattr(ip, 'ipv4_mapped', None)   # ::ffff:127.0.0.1
    return (mapped or ip).is_loopback


def _describe(pid: int) -> str:
    try:
        with open(f'/proc/{pid}/cmdline', 'rb') as f:
            return f.read().replace(b'\0', b' ').decode()[:120]
    except OSError:
        return '?'


def test_loopback_address_check():
    for address in ('127.0.0.1', '127.1.2.3', '::1', '::ffff:127.0.0.1'):
        assert _loopback(address), address
    for address in ('0.0.0.0', '::', '192.0.2.2', '::ffff:192.0.2.2'):
        assert not _loopback(address), address


def test_ray_map_through_a_real_local_head(ray_head):
    with Fanout(ray_address=ray_head.address) as fan:
        assert fan.kind == 'ray'
        out = fan.map(square_with_pid, ITEMS)
        seen: list[int] = []
        ticks = fan.map(ticking, [2, 5], progress=seen.append)
        with pytest.raises(ValueError, match="'not a number'"):
            fan.map(int, ['not a number'])
        # Checked while the workers that ran the tasks are alive.
        pids = ray_head.pids()
        sockets = _listening_sockets(pids)
        names = {pid: _describe(pid) for pid, _, _ in sockets}
    assert [r for r, _ in out] == [x * x for x in ITEMS]
    assert os.getpid() not in {pid for _, pid in out}
    assert ticks == [-2, -5] and sum(seen) == 7
    # The workers that ran the tasks are the head's processes, and the
    # head's own port is among what was found: the check sees them.
    assert {pid for _, pid in out} <= set(pids)
    port = int(ray_head.address.rpartition(':')[2])
    assert port in {p for _, _, p in sockets}, sockets
    exposed = [(pid, address, p, names[pid])
               for pid, address, p in sockets if not _loopback(address)]
    assert exposed == [], exposed


def test_module_documents_the_api():
    doc = fanout.__doc__
    for word in ('Fanout(workers=2)', 'ray_address', 'progress', 'ordered'):
        assert word in doc
