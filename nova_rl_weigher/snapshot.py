"""The usage snapshot: recent actual use per host and per project.

The trainer writes it atomically (write a temporary file, then rename) from
Gnocchi or Prometheus; the weigher only reads it. Format (version 1)::

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
"""

from __future__ import annotations

import datetime
import json
import math
import os
import threading
from typing import Any

from nova_rl_weigher import features

FORMAT_VERSION = 1
MAX_SNAPSHOT_BYTES = 256 * 1024 * 1024

# Status values returned by SnapshotCache.get().
NONE = 'none'                # no snapshot configured
FRESH = 'fresh'
STALE = 'stale'
UNAVAILABLE = 'unavailable'  # configured, but missing or malformed


class SnapshotError(ValueError):
    """The snapshot file is not a valid usage snapshot."""


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise SnapshotError(f'{where}: {value!r} is not a number')
    value = float(value)
    if not math.isfinite(value) or value < 0:
        raise SnapshotError(f'{where}: {value!r} is not a finite, '
                            'non-negative number')
    return value


def parse_generated_at(value: Any) -> float:
    if isinstance(value, str):
        try:
            dt = datetime.datetime.fromisoformat(value.replace('Z', '+00:00'))
        except ValueError:
            raise SnapshotError(f'generated_at: {value!r} is not ISO 8601') \
                from None
        if dt.tzinfo is None:
            dt = dt.replace(tzinfo=datetime.timezone.utc)
        return dt.timestamp()
    return _number(value, 'generated_at')


def parse(doc: Any) -> tuple[float, features.UsageLookup]:
    """Validate a decoded snapshot; return ``(generated_at, lookup)``."""
    if not isinstance(doc, dict):
        raise SnapshotError('top level is not a JSON object')
    version = doc.get('format_version', FORMAT_VERSION)
    if version != FORMAT_VERSION:
        raise SnapshotError(f'format_version {version!r} is not supported')
    if 'generated_at' not in doc:
        raise SnapshotError('generated_at is missing')
    generated_at = parse_generated_at(doc['generated_at'])
    hosts = {}
    for name, entry in (doc.get('hosts') or {}).items():
        if not isinstance(entry, dict):
            raise SnapshotError(f'hosts.{name} is not an object')
        # A partial entry is treated like an absent host, not an error: a
        # metric source may lag for one host while the rest are current.
        keys = ('cpu_util_mean', 'cpu_util_p95', 'mem_util_mean',
                'mem_util_p95')
        if not all(k in entry for k in keys):
            continue
        hosts[str(name)] = features.HostUsage(
            *(_number(entry[k], f'hosts.{name}.{k}') for k in keys))
    projects = {}
    for pid, entry in (doc.get('projects') or {}).items():
        if not isinstance(entry, dict) or 'cpu_ratio' not in entry:
            continue
        projects[str(pid)] = _number(entry['cpu_ratio'],
                                     f'projects.{pid}.cpu_ratio')
    return generated_at, features.UsageLookup(hosts, projects)


def load(path: str) -> tuple[float, features.UsageLookup]:
    size = os.path.getsize(path)
    if size > MAX_SNAPSHOT_BYTES:
        raise SnapshotError(f'{size} bytes, too large')
    with open(path, 'rb') as f:
        try:
            doc = json.loads(f.read().decode('utf-8'))
        except ValueError as e:
            raise SnapshotError(f'not valid JSON: {e}') from None
    return parse(doc)


def write(path: str, generated_at: float, hosts: dict[str, dict],
          projects: dict[str, dict]) -> None:
    """Write a snapshot atomically (used by the trainer and tests)."""
    doc = {'format_version': FORMAT_VERSION, 'generated_at': generated_at,
           'hosts': hosts, 'projects': projects}
    parse(doc)
    directory = os.path.dirname(os.path.abspath(path))
    tmp = os.path.join(directory, f'.{os.path.basename(path)}.{os.getpid()}'
                                  f'.{threading.get_ident()}.tmp')
    with open(tmp, 'w', encoding='utf-8') as f:
        json.dump(doc, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class SnapshotCache:
    """Re-reads the snapshot only when the file changes; thread-safe.

    Returns ``(lookup, status, detail)``. A file that fails to parse keeps
    being reported unavailable until it changes; the last good content is not
    reused, because its age can no longer be vouched for.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        # (file key, parsed value or None, error or None), swapped as a
        # whole so readers never see a value paired with another key.
        self._state: tuple = (None, None, None)

    def get(self, path: str, max_age_s: float, now: float
            ) -> tuple[features.UsageLookup, str, str]:
        if not path:
            return features.NO_USAGE, NONE, ''
        try:
            st = os.stat(path)
        except OSError as e:
            return features.NO_USAGE, UNAVAILABLE, f'{path}: {e.strerror}'
        key = (path, st.st_ino, st.st_size, st.st_mtime_ns)
        state = self._state
        if state[0] != key:
            with self._lock:
                state = self._state
                if state[0] != key:
                    try:
                        state = (key, load(path), None)
                    except (OSError, SnapshotError) as e:
                        state = (key, None, f'{path}: {e}')
                    self._state = state
        _, value, error = state
        if value is None:
            return features.NO_USAGE, UNAVAILABLE, error or path
        generated_at, lookup = value
        age = now - generated_at
        if age > max_age_s or age < -max_age_s:
            return lookup, STALE, f'snapshot age {age:.0f}s > {max_age_s}s'
        return lookup, FRESH, ''
