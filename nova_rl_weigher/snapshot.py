"""The usage snapshot: recent actual use per host and per project.

A telemetry job is to write it atomically (:func:`write`: a
temporary file, then a rename) from measured usage; the weigher only reads
it. Format (version 2; version 1 is the same without the fields marked
v2, and still reads)::

    {
      "format_version": 2,
      "generated_at": 1764000000.0,     # Unix seconds, or an ISO 8601 string
      "hosts": {
        "compute-01": {"cpu_util_mean": 0.31, "cpu_util_p95": 0.55,
                       "mem_util_mean": 0.62, "mem_util_p95": 0.70,
                       # v2: allocated when the usage was sampled
                       "vcpus_allocated": 24, "ram_mb_allocated": 49152,
                       # v2: highest sampled use over 24 h
                       "cpu_util_peak_24h": 0.81, "mem_util_peak_24h": 0.75}
      },
      "projects": {
        "<project id>": {"cpu_ratio": 0.4,   # used / allocated vCPU time
                         "cpu_ratio_peak_24h": 0.7,                  # v2
                         # v2: lifetimes of its VMs that ended
                         "lifetime": {"median_s": 3600, "p90_s": 86400,
                                      "count": 120},
                         # v2: its boots of the last 10 minutes (the
                         # siblings of a request), only when more than
                         # half have ended (lifetimes.sibling_lifetime)
                         "recent_lifetime": {"median_s": 300, "p90_s": 420,
                                             "count": 8},
                         # v2: its lifetimes per flavor name
                         "flavors": {"m1.small": {"lifetime": {...}}}}
      },
      "flavors": {"m1.small": {"lifetime": {...}}}                    # v2
    }

Host keys are Nova compute host names; utilisations are fractions of the
host's physical cores and RAM. Every v2 field is optional: the allocation
pair and the peak pair count only when both are there (like the four
usage fields), a missing lifetime is unknown, and the features say so. Hosts
and projects absent from the snapshot
are normal (new hosts, quiet projects): their features say "absent". A stale
or unreadable snapshot is reported to the caller, which abstains.

The reader never trusts the file and never stalls scheduling:

- it is read through :func:`fileio.read_bounded`: a FIFO, device, directory
  or socket at the path, a symlink leading out of the path's directory, or a
  file over :data:`MAX_SNAPSHOT_BYTES` is refused before a byte is read;
- every shape error (``"hosts": "x"``, ``"projects": [1]``, a number too
  large for a float, NaN, nesting deeper than the JSON decoder allows)
  becomes :class:`SnapshotError`, never another exception;
- :class:`SnapshotCache` checks the file's version (device, inode, size,
  mtime) with one ``stat`` per call, parses a new version in one thread
  while the others keep the previous result (or report "unavailable" when
  there is none) instead of waiting, and remembers a failure for that file
  version, so a bad file is parsed once, not on every call.
"""

from __future__ import annotations

import datetime
import json
import math
import threading
import time
from typing import Any, NamedTuple

from nova_rl_weigher import features
from nova_rl_weigher import fileio
from nova_rl_weigher import lifetimes as lifetimes_mod

FORMAT_VERSION = 2
#: Versions the reader accepts (v1: without the v2 fields).
READ_VERSIONS = (1, 2)
#: Largest snapshot read, checked before reading. A snapshot for 10,000
#: hosts and 10,000 projects is about 2 MB; 32 MiB leaves room for clouds
#: ten times larger while bounding the memory a hostile file can make the
#: JSON decoder allocate.
MAX_SNAPSHOT_BYTES = 32 * 1024 * 1024
#: Longest ISO 8601 ``generated_at`` string accepted.
MAX_TIMESTAMP_CHARS = 64

# Status values returned by SnapshotCache.get().
NONE = 'none'                # no snapshot configured
FRESH = 'fresh'
STALE = 'stale'
UNAVAILABLE = 'unavailable'  # configured, but missing or malformed

_HOST_KEYS = ('cpu_util_mean', 'cpu_util_p95', 'mem_util_mean',
              'mem_util_p95')
_ALLOC_KEYS = ('vcpus_allocated', 'ram_mb_allocated')
_PEAK_KEYS = ('cpu_util_peak_24h', 'mem_util_peak_24h')
_LIFETIME_KEYS = ('median_s', 'p90_s', 'count')


class SnapshotError(ValueError):
    """The snapshot file is not a valid usage snapshot."""


_brief = fileio.brief


def _key(name: Any) -> str:
    name = str(name)
    return name if len(name) <= 64 else name[:61] + '...'


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise SnapshotError(f'{where}: {_brief(value)} is not a number')
    try:
        result = float(value)
    except OverflowError:
        raise SnapshotError(f'{where}: {_brief(value)} is too large') \
            from None
    if not math.isfinite(result) or result < 0:
        raise SnapshotError(f'{where}: {_brief(value)} is not a finite, '
                            'non-negative number')
    return result


def parse_generated_at(value: Any) -> float:
    if isinstance(value, str):
        if len(value) > MAX_TIMESTAMP_CHARS:
            raise SnapshotError(f'generated_at: {_brief(value)} is not ISO '
                                '8601')
        try:
            dt = datetime.datetime.fromisoformat(value.replace('Z', '+00:00'))
            if dt.tzinfo is None:
                dt = dt.replace(tzinfo=datetime.timezone.utc)
            return dt.timestamp()
        except (ValueError, OverflowError):
            raise SnapshotError(f'generated_at: {_brief(value)} is not ISO '
                                '8601') from None
    return _number(value, 'generated_at')


def _section(doc: dict, name: str, where: str = '') -> dict:
    value = doc.get(name)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise SnapshotError(f'{where or name}: {_brief(value)} is not an '
                            'object')
    return value


def parse(doc: Any) -> tuple[float, features.UsageLookup]:
    """Validate a decoded snapshot; return ``(generated_at, lookup)``.

    Raises :class:`SnapshotError`, and nothing else, for any input.
    """
    if not isinstance(doc, dict):
        raise SnapshotError('top level is not a JSON object')
    version = doc.get('format_version', FORMAT_VERSION)
    if isinstance(version, bool) or not isinstance(version, int) \
            or version not in READ_VERSIONS:
        raise SnapshotError(f'format_version {_brief(version)} is not '
                            'supported')
    if 'generated_at' not in doc:
        raise SnapshotError('generated_at is missing')
    generated_at = parse_generated_at(doc['generated_at'])
    hosts = {}
    host_alloc = {}
    host_peaks = {}
    for name, entry in _entries(doc, 'hosts'):
        where = f'hosts.{_key(name)}'
        usage = _group(entry, _HOST_KEYS, where)
        if usage is not None:
            hosts[name] = features.HostUsage(*usage)
        alloc = _group(entry, _ALLOC_KEYS, where)
        if alloc is not None:
            host_alloc[name] = alloc
        peaks = _group(entry, _PEAK_KEYS, where)
        if peaks is not None:
            host_peaks[name] = peaks
    projects = {}
    project_peak = {}
    by_project = {}
    recent = {}
    project_flavor = {}
    for pid, entry in _entries(doc, 'projects'):
        where = f'projects.{_key(pid)}'
        if 'cpu_ratio' in entry:
            projects[pid] = _number(entry['cpu_ratio'], f'{where}.cpu_ratio')
        if 'cpu_ratio_peak_24h' in entry:
            project_peak[pid] = _number(entry['cpu_ratio_peak_24h'],
                                        f'{where}.cpu_ratio_peak_24h')
        _put_lifetime(by_project, pid, entry, 'lifetime', where)
        _put_lifetime(recent, pid, entry, 'recent_lifetime', where)
        for flavor, fentry in _entries(entry, 'flavors', where):
            _put_lifetime(project_flavor, (pid, flavor), fentry, 'lifetime',
                          f'{where}.flavors.{_key(flavor)}')
    by_flavor = {}
    for flavor, entry in _entries(doc, 'flavors'):
        _put_lifetime(by_flavor, flavor, entry, 'lifetime',
                      f'flavors.{_key(flavor)}')
    return generated_at, features.UsageLookup(
        hosts, projects, host_alloc=host_alloc, host_peaks=host_peaks,
        project_peak_ratio=project_peak,
        lifetimes=lifetimes_mod.Lifetimes(recent, project_flavor,
                                          by_project, by_flavor))


def _entries(doc: dict, name: str, where: str = ''):
    """``(key, object)`` of section ``name``; anything not an object there
    is a :class:`SnapshotError`."""
    path = f'{where}.{name}' if where else name
    for key, entry in _section(doc, name, path).items():
        if not isinstance(entry, dict):
            raise SnapshotError(f'{path}.{_key(key)}: {_brief(entry)} is not '
                                'an object')
        yield str(key), entry


def _group(entry: dict, keys: tuple[str, ...], where: str
           ) -> tuple[float, ...] | None:
    """The numbers at ``keys``, or None unless all are there: a partial
    group is treated as absent, not an error (a metric source may lag for
    one host while the rest are current)."""
    if not all(k in entry for k in keys):
        return None
    return tuple(_number(entry[k], f'{where}.{k}') for k in keys)


def _put_lifetime(out: dict, key: Any, entry: dict, name: str,
                  where: str) -> None:
    """``entry[name]`` as a :class:`lifetimes.Lifetime` into ``out[key]``,
    if there; a median above the p90 or a count below 1 is an error."""
    value = entry.get(name)
    if value is None:
        return
    where = f'{where}.{name}'
    if not isinstance(value, dict):
        raise SnapshotError(f'{where}: {_brief(value)} is not an object')
    stats = _group(value, _LIFETIME_KEYS, where)
    if stats is None:
        raise SnapshotError(f'{where}: needs ' + ', '.join(_LIFETIME_KEYS))
    median, p90, count = stats
    if median > p90 or count < 1:
        raise SnapshotError(f'{where}: median_s {median:g} above p90_s '
                            f'{p90:g} or count {count:g} below 1')
    out[key] = lifetimes_mod.Lifetime(median, p90, count)


def decode(data: bytes) -> Any:
    """JSON-decode snapshot bytes; any failure is a :class:`SnapshotError`."""
    try:
        return fileio.decode_json(data)
    except ValueError as e:
        raise SnapshotError(str(e)) from None


def _load(path: str) -> tuple[tuple[float, features.UsageLookup],
                              fileio.FileVersion]:
    data, version = fileio.read_bounded(path, MAX_SNAPSHOT_BYTES)
    return parse(decode(data)), version


def load(path: str) -> tuple[float, features.UsageLookup]:
    """Read and validate the snapshot at ``path``.

    Raises :class:`SnapshotError` for bad content and :class:`OSError`
    (:class:`fileio.FileRefused` for a FIFO, device, oversize file, ...)
    when the file cannot or must not be read.
    """
    return _load(path)[0]


def write(path: str, generated_at: float, hosts: dict[str, dict],
          projects: dict[str, dict],
          flavors: dict[str, dict] | None = None) -> None:
    """Write a snapshot atomically, after checking it as the reader would."""
    doc = {'format_version': FORMAT_VERSION, 'generated_at': generated_at,
           'hosts': hosts, 'projects': projects}
    if flavors:
        doc['flavors'] = flavors
    parse(doc)
    fileio.atomic_write(path, json.dumps(doc))


class _Read(NamedTuple):
    """One read of one file version, swapped in as a whole so readers never
    see a value paired with another version."""

    path: str
    version: fileio.FileVersion | None
    value: tuple[float, features.UsageLookup] | None
    error: str
    racy: bool        # version may not identify the content: read again


class SnapshotCache:
    """Re-reads the snapshot only when the file changes; thread-safe.

    :meth:`get` returns ``(lookup, status, detail)``. It costs one ``stat``
    when the file has not changed. A new file version is read and parsed by
    one calling thread; calls arriving meanwhile use the previous result for
    the same path (or report unavailable when there is none) instead of
    waiting for it. A file that fails to parse is parsed once per version
    and reported unavailable, with the reason, until it changes; the last
    good content is not reused for it, because its age can no longer be
    vouched for.
    """

    def __init__(self) -> None:
        # Held only by the thread reading a new version; never waited for.
        self._lock = threading.Lock()
        self._state: _Read | None = None

    def get(self, path: str, max_age_s: float, now: float
            ) -> tuple[features.UsageLookup, str, str]:
        if not path:
            return features.NO_USAGE, NONE, ''
        try:
            version = fileio.version_of(path)
        except OSError as e:
            return features.NO_USAGE, UNAVAILABLE, \
                f'{path}: {e.strerror or e}'
        state = self._state
        if not self._current(state, path, version):
            state = self._refresh(path, version)
        if state is None or state.path != path:
            return (features.NO_USAGE, UNAVAILABLE,
                    f'{path}: being read by another thread')
        if state.value is None:
            return features.NO_USAGE, UNAVAILABLE, state.error or path
        generated_at, lookup = state.value
        age = now - generated_at
        if age > max_age_s or age < -max_age_s:
            return lookup, STALE, f'snapshot age {age:.0f}s > {max_age_s}s'
        return lookup, FRESH, ''

    @staticmethod
    def _current(state: _Read | None, path: str,
                 version: fileio.FileVersion) -> bool:
        return (state is not None and state.path == path
                and state.version == version and not state.racy)

    def _refresh(self, path: str, version: fileio.FileVersion
                 ) -> _Read | None:
        if not self._lock.acquire(blocking=False):
            # Another thread is reading a new version: go on with what there
            # is rather than wait for it.
            return self._state
        try:
            state = self._state
            if self._current(state, path, version):
                return state
            read_at = time.time_ns()
            try:
                value, version = _load(path)
                error = ''
            except OSError as e:
                value, error = None, str(e)
            except SnapshotError as e:
                value, error = None, f'{path}: {e}'
            except Exception as e:  # noqa: BLE001 - remembered like the rest
                value, error = None, f'{path}: {type(e).__name__}: {e}'
            state = _Read(path, version, value, error,
                          fileio.is_racy(version, read_at))
            self._state = state
            return state
        finally:
            self._lock.release()
