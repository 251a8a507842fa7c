"""Reader for the Azure V1 derived trace (``data/azure-v1/``).

The files (see ``data/azure-v1/README.md``) give, per 300 s bin, the flavors
requested in that bin grouped into batches (one tenant's requests), and,
token for token, each VM's lifetime bin (``Uk``: ended, lifetime in bin
``k``) or ``Ck`` (still running when the trace ends). Turning that into
requests with times needs three choices, all seeded and policy-independent:

* **Arrival**: a batch arrives at a uniformly drawn second of its bin and its
  VMs follow one second apart (closer for batches of over 300 VMs), the way a
  multi-create request reaches the scheduler.
* **Lifetime**: uniform within its bin's range, cut so a ``U`` VM ends by the
  trace end (it did end inside the trace); a ``C`` VM has no departure.
* **Tenant**: the trace has no tenant ids across bins, so each batch is
  assigned one of :data:`TENANTS` synthetic tenants with Zipf popularity
  (a few large tenants, a long tail, as in Azure's subscriptions). Tenant
  names are the same in every file and seed, so the utilisation model gives
  a tenant the same profile in ``dev`` and ``test`` for a given seed.

Time 0 is the first line's bin start; ``time_offset_s`` keeps the source's
absolute time so the diurnal swing stays in phase. Flavors have no disk in
the source: requests ask for 0 GB of local disk (boot from volume).

The bounds of :mod:`traces` hold here too: the trace end (``c<END>`` in the
lifetime file's name) at most :data:`traces.MAX_TRACE_S` after the first
line and not before the last bin ends, at most :data:`traces.MAX_VMS` VMs,
flavors within :data:`traces.MAX_VCPUS` and :data:`traces.MAX_MEMORY_MB`,
lifetimes from 0 to :data:`traces.MAX_TRACE_S`; anything else is a
:class:`TraceError` naming the file and line.
"""

from __future__ import annotations

import glob
import itertools
import math
import os
import re

import numpy as np

from nova_rl_trainer.simulation import traces
from nova_rl_trainer.simulation.traces import open_text
from nova_rl_trainer.simulation.traces import Trace
from nova_rl_trainer.simulation.traces import TraceError

BIN_S = 300.0
TENANTS = 2000
ZIPF_EXPONENT = 1.1
_LIFETIME_FILE = re.compile(r'^(?P<stem>.+)\.c(?P<end>\d+)\.txt(\.gz)?$')


def data_dir() -> str:
    """The directory holding the shipped Azure V1 files."""
    package = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    return os.path.join(package, 'data', 'azure-v1')


def _find(directory: str, names: tuple[str, ...], what: str,
          near: str) -> str:
    for name in names:
        path = os.path.join(directory, name)
        if os.path.exists(path):
            return path
    raise TraceError(near, f'{what} not found next to it (looked for '
                     + ', '.join(names) + ')')


def lifetime_file(arrival_path: str) -> tuple[str, float]:
    """The lifetime file paired with an arrival file, and the trace end."""
    directory = os.path.dirname(os.path.abspath(arrival_path))
    base = os.path.basename(arrival_path)
    stem = re.sub(r'\.txt(\.gz)?$', '', base)
    pattern = os.path.join(glob.escape(directory),
                           glob.escape(stem) + '.c*.txt*')
    candidates = sorted(glob.glob(pattern))
    for path in candidates:
        m = _LIFETIME_FILE.match(os.path.basename(path))
        if m and m.group('stem') == stem:
            return path, float(m.group('end'))
    raise TraceError(arrival_path, f'lifetime file {stem}.c<END>.txt[.gz] '
                     'not found next to it')


def read_flavors(path: str) -> dict[str, tuple[float, float]]:
    """``letter -> (vcpus, memory_mb)`` from ``flav_map.txt``."""
    flavors = {}
    with open_text(path) as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                spec, letter = line.split()
                vcpus, mem_gb = spec.split(',')
                cpus, mem = int(vcpus), float(mem_gb) * 1024
                mem = float(round(mem)) if math.isfinite(mem) else math.nan
            except ValueError:
                raise TraceError(path, f'expected "VCPUS,MEMORY_GB LETTER", '
                                 f'got {line.strip()[:80]!r}', n) from None
            if not 1 <= cpus <= traces.MAX_VCPUS:
                raise TraceError(path, f'{cpus} vCPUs is not from 1 to '
                                 f'{traces.MAX_VCPUS}', n)
            if not 0 < mem <= traces.MAX_MEMORY_MB:
                raise TraceError(path, f'{mem_gb[:40]} GB of memory is not '
                                 f'in (0, {traces.MAX_MEMORY_MB // 1024:,}]',
                                 n)
            flavors[letter] = (float(cpus), mem)
    if not flavors:
        raise TraceError(path, 'no flavors')
    return flavors


def read_intervals(path: str) -> dict[int, tuple[float, float]]:
    """``bin -> (low, high)`` lifetime seconds; the last bin is open."""
    seconds: dict[int, list[int]] = {}
    with open_text(path) as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                s, b = line.split()
                sec = int(s)
                seconds.setdefault(int(b), []).append(sec)
            except ValueError:
                raise TraceError(path, f'expected "SECONDS BIN", got '
                                 f'{line.strip()[:80]!r}', n) from None
            if not 0 <= sec <= traces.MAX_TRACE_S:
                raise TraceError(path, f'lifetime {sec} s is not from 0 to '
                                 f'{traces.MAX_TRACE_S:,.0f}', n)
    if not seconds:
        raise TraceError(path, 'no lifetime bins')
    last = max(seconds)
    return {b: (float(min(v)), math.inf if b == last else max(v) + BIN_S)
            for b, v in seconds.items()}


def _tenant_draws(n: int, seed: int) -> np.ndarray:
    rank = np.arange(1, TENANTS + 1, dtype=np.float64)
    p = rank ** -ZIPF_EXPONENT
    rng = np.random.default_rng([seed, 0xA2])
    return rng.choice(TENANTS, size=n, p=p / p.sum())


def read_azure_v1(path: str, seed: int = 0) -> Trace:
    """Read an arrival file (``v1.dev.txt[.gz]``) and its companions."""
    if not os.path.exists(path):
        raise TraceError(path, 'not found')
    directory = os.path.dirname(os.path.abspath(path))
    flavors = read_flavors(_find(directory, ('flav_map.txt',
                                             'flav_map.txt.gz'),
                                 'flav_map.txt', path))
    intervals = read_intervals(_find(
        directory, ('v1.interval_map.txt', 'v1.interval_map.txt.gz'),
        'v1.interval_map.txt', path))
    life_path, trace_end = lifetime_file(path)

    bin_t: list[float] = []          # per VM: its line's time
    flavor: list[str] = []
    batch: list[int] = []
    pos_in_batch: list[int] = []
    batch_len: list[int] = []        # per batch
    censored: list[bool] = []
    life_bin: list[int] = []
    try:
        with open_text(path) as fa, open_text(life_path) as fl:
            for n, (la, ll) in enumerate(itertools.zip_longest(fa, fl), 1):
                if la is None or ll is None:
                    longer = path if ll is None else life_path
                    raise TraceError(longer, 'has more lines than its pair',
                                     n)
                _parse_line(path, life_path, n, la, ll, flavors, intervals,
                            bin_t, flavor, batch, pos_in_batch, batch_len,
                            censored, life_bin)
    except (OSError, EOFError, UnicodeDecodeError) as e:
        raise TraceError(path, f'cannot read: {e}') from None
    if not flavor:
        raise TraceError(path, 'no VMs')

    t0 = bin_t[0]
    if trace_end - t0 > traces.MAX_TRACE_S:
        raise TraceError(life_path, f'the trace ends {trace_end - t0:,.0f} s '
                         f'after its first line, more than '
                         f'{traces.MAX_TRACE_S:,.0f} s (400 days)')
    if trace_end < bin_t[-1] + BIN_S:
        raise TraceError(life_path, f'the trace end {trace_end:.0f} (the '
                         'c<END> of the file name) is before the last line\'s '
                         f'bin ends ({bin_t[-1] + BIN_S:.0f})')
    rng = np.random.default_rng([seed, 0xA1])
    nb = len(batch_len)
    blen = np.asarray(batch_len, dtype=np.float64)
    spacing = np.minimum(1.0, BIN_S / blen)
    start = rng.random(nb) * (BIN_S - spacing * (blen - 1))
    batch_arr = np.asarray(batch, dtype=np.int64)
    arrival = (np.asarray(bin_t) - t0 + start[batch_arr]
               + np.asarray(pos_in_batch) * spacing[batch_arr])
    end = trace_end - t0
    lo = np.array([intervals[b][0] for b in life_bin])
    hi = np.array([intervals[b][1] for b in life_bin])
    hi = np.minimum(hi, end - arrival)
    # 1 - u lies in (0, 1]: a lifetime is never zero.
    life = lo + (1.0 - rng.random(len(lo))) * np.maximum(hi - lo, 0.0)
    departure = np.minimum(arrival + life, end)
    departure[np.asarray(censored)] = np.nan

    tenants = _tenant_draws(nb, seed)[batch_arr]
    used, project = np.unique(tenants, return_inverse=True)
    sizes = np.array([flavors[f] for f in flavor])
    order = np.argsort(arrival, kind='stable')
    nan = np.full(len(flavor), np.nan)
    name = re.sub(r'\.txt(\.gz)?$', '', os.path.basename(path))
    return Trace(
        name='azure-' + name,
        project_ids=tuple(f'azure-tenant-{t:04d}' for t in used),
        project=project.astype(np.int32)[order],
        batch=batch_arr[order],
        arrival_s=arrival[order], departure_s=departure[order],
        vcpus=sizes[order, 0], memory_mb=sizes[order, 1],
        disk_gb=np.zeros(len(flavor)), cpu_util_mean=nan,
        cpu_util_p95=nan.copy(), time_offset_s=float(t0),
        source=os.path.abspath(path))


def _parse_line(path, life_path, n, la, ll, flavors, intervals, bin_t,
                flavor, batch, pos_in_batch, batch_len, censored,
                life_bin) -> None:
    ta, _, rest_a = la.strip().partition(' ')
    tl, _, rest_l = ll.strip().partition(' ')
    try:
        t = float(int(ta))
    except (ValueError, OverflowError):
        raise TraceError(path, f'time {ta[:40]!r} is not an integer', n,
                         'token 0') from None
    if tl != ta:
        raise TraceError(life_path, f'time {tl!r} does not match the '
                         f'arrival file ({ta!r})', n, 'token 0')
    if bin_t and t < bin_t[-1]:
        raise TraceError(path, f'time {ta} goes back in time', n, 'token 0')
    if bin_t and t - bin_t[0] > traces.MAX_TRACE_S:
        raise TraceError(path, f'time {ta} is more than '
                         f'{traces.MAX_TRACE_S:,.0f} s (400 days) after the '
                         'first line', n, 'token 0')
    toks_a = rest_a.split(',') if rest_a else []
    toks_l = rest_l.split(',') if rest_l else []
    if len(toks_a) != len(toks_l):
        raise TraceError(life_path, f'{len(toks_l)} tokens where the '
                         f'arrival file has {len(toks_a)}', n)
    current = -1
    for k, (fa, fl) in enumerate(zip(toks_a, toks_l), 1):
        if fa == '|':
            if fl != '|':
                raise TraceError(life_path, f'{fl!r} where the arrival file '
                                 "has the batch separator '|'", n,
                                 f'token {k}')
            current = -1
            continue
        if fa not in flavors:
            raise TraceError(path, f'unknown flavor {fa!r} (not in '
                             'flav_map.txt)', n, f'token {k}')
        if len(fl) < 2 or fl[0] not in 'UC' or not fl[1:].isdigit() \
                or not fl.isascii() or len(fl) > 20:
            raise TraceError(life_path, f'lifetime {fl[:40]!r} is not U<bin> '
                             'or C<bin>', n, f'token {k}')
        b = int(fl[1:])
        if b not in intervals:
            raise TraceError(life_path, f'lifetime bin {b} is not in '
                             'v1.interval_map.txt', n, f'token {k}')
        if len(flavor) >= traces.MAX_VMS:
            raise TraceError(path, f'more than {traces.MAX_VMS:,} VMs', n,
                             f'token {k}')
        if current < 0:
            current = len(batch_len)
            batch_len.append(0)
        bin_t.append(t)
        flavor.append(fa)
        batch.append(current)
        pos_in_batch.append(batch_len[current])
        batch_len[current] += 1
        censored.append(fl[0] == 'C')
        life_bin.append(b)
