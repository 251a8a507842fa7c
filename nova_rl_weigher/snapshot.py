"""The usage snapshot: recent actual use per host and per project.

A telemetry job is to write it atomically (:func:`write`: a
temporary file, then a rename) from measured usage; the weigher only reads
it. Format (version 1)::

    {
      "format_version": 1,
      "generated_at": 1764000000.0,     # Unix seconds, or an ISO 8601 string
      "hosts": {
        "compute-01": {"cpu_util_mean": 0.31, "cpu_util_p95": 0.55,
                       "mem_util_mean": 0.62, "mem_util_p95": 0.70}
      },
      "projects": {
        "<project id>": {"cpu_ratio": 0.4}   # used / allocated vCPU time
      }
    }

Host keys are Nova compute host names; utilisations are fractions of the
host's physical cores and RAM. Hosts and projects absent from the snapshot
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

FORMAT_VERSION = 1
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


def _section(doc: dict, name: str) -> dict:
    value = doc.get(name)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise SnapshotError(f'{name}: {_brief(value)} is not an object')
    return value


def parse(doc: Any) -> tuple[float, features.UsageLookup]:
    """Validate a decoded snapshot; return ``(generated_at, lookup)``.

    Raises :class:`SnapshotError`, and nothing else, for any input.
    """
    if not isinstance(doc, dict):
        raise SnapshotError('top level is not a JSON object')
    version = doc.get('format_version', FORMAT_VERSION)
    if isinstance(version, bool) or not isinstance(version, int) \
            or version != FORMAT_VERSION:
        raise SnapshotError(f'format_version {_brief(version)} is not '
                            'supported')
    if 'generated_at' not in doc:
        raise SnapshotError('generated_at is missing')
    generated_at = parse_generated_at(doc['generated_at'])
    hosts = {}
    for name, entry in _section(doc, 'hosts').items():
        if not isinstance(entry, dict):
            raise SnapshotError(f'hosts.{_key(name)}: {_brief(entry)} is not '
                                'an object')
        # A partial entry is treated like an absent host, not an error: a
        # metric source may lag for one host while the rest are current.
        if not all(k in entry for k in _HOST_KEYS):
            continue
        hosts[str(name)] = features.HostUsage(
            *(_number(entry[k], f'hosts.{_key(name)}.{k}')
              for k in _HOST_KEYS))
    projects = {}
    for pid, entry in _section(doc, 'projects').items():
        if not isinstance(entry, dict):
            raise SnapshotError(f'projects.{_key(pid)}: {_brief(entry)} is '
                                'not an object')
        if 'cpu_ratio' not in entry:
            continue
        projects[str(pid)] = _number(entry['cpu_ratio'],
                                     f'projects.{_key(pid)}.cpu_ratio')
    return generated_at, features.UsageLookup(hosts, projects)


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
          projects: dict[str, dict]) -> None:
    """Write a snapshot atomically, after checking it as the reader would."""
    doc = {'format_version': FORMAT_VERSION, 'generated_at': generated_at,
           'hosts': hosts, 'projects': projects}
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
