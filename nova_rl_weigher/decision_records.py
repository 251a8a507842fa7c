"""The reader of decision logs: the records :mod:`decision_log` writes.

The format has one home: :mod:`scorer` builds the record, :mod:`log_files`
names the files, and this module reads them back. :func:`iter_records`
yields the records of a directory (every process's files, rotated and
current, found with :func:`log_files.log_files`) as :class:`Record` objects
with typed accessors, in time order::

    stats = ReadStats()
    for record in iter_records('/var/log/nova/rl-decisions', stats):
        print(record.time, record.reason, record.nova_top, record.policy_top)
    print(stats.malformed, 'lines skipped')

What the reader tolerates, because the writers keep running while it reads:

- the last line of a file without its newline (a writer mid-append): not
  a record yet, counted in :attr:`ReadStats.truncated`;
- a line that is not a JSON object with a finite ``time``: skipped and
  counted in :attr:`ReadStats.malformed`;
- a file that cannot be read (larger than ``max_file_bytes``, not a regular
  file, a symlink out of the directory, vanished after listing because the
  writer pruned it, rotated while read): skipped, listed in
  :attr:`ReadStats.refused` with a one-line reason. Files compressed by
  someone else are read when gzip (``.jsonl.gz``), refused otherwise.

Memory: each file is read whole (size-bounded by
:func:`fileio.read_bounded`), one file per process at a time.
"""

from __future__ import annotations

import dataclasses
import errno
import heapq
import itertools
import math
import os
import zlib
from typing import Any, Iterable, Iterator

from nova_rl_weigher import fileio
# The writer's file name pattern: which process wrote a file, and where it
# falls in that process's rotation.
from nova_rl_weigher.log_files import _NAME as FILE_NAME
from nova_rl_weigher.log_files import log_files

__all__ = ['DEFAULT_MAX_FILE_BYTES', 'HostRecord', 'ReadStats', 'Record',
           'iter_records', 'read_records', 'parse_lines']

#: Files larger than this are refused (the writer rotates at
#: ``decision_log_file_mb``, 64 MiB by default).
DEFAULT_MAX_FILE_BYTES = 512 * 1024 * 1024

#: A file read while its writer appends can change under the read; it is
#: read again this many times before it is refused.
_READ_ATTEMPTS = 3


@dataclasses.dataclass
class ReadStats:
    """What was read and what was skipped while iterating."""

    files: int = 0
    records: int = 0
    #: Lines that are not a record (bad JSON, not an object, no ``time``).
    malformed: int = 0
    #: Files whose last line had no newline yet (a writer mid-append).
    truncated: int = 0
    #: (path, reason) of files not read.
    refused: list[tuple[str, str]] = dataclasses.field(default_factory=list)

    @property
    def skipped_lines(self) -> int:
        """Lines that were not records: malformed and truncated ones."""
        return self.malformed + self.truncated

    def as_dict(self) -> dict[str, Any]:
        return {'files': self.files, 'records': self.records,
                'malformed': self.malformed, 'truncated': self.truncated,
                'refused': [{'path': p, 'reason': r}
                            for p, r in self.refused]}


@dataclasses.dataclass(frozen=True, slots=True)
class HostRecord:
    """One candidate host of a weighing call, as the scorer logged it."""

    host: str
    #: The policy's features, in the record's ``feature_names`` order
    #: (None: not finite).
    features: tuple[float | None, ...]
    #: Nova's combined weight from the weighers before this one.
    nova_weight: float | None
    #: The ensemble's mean score (None: not scored).
    score: float | None
    #: What this weigher returned to Nova (0 when abstaining).
    weight: float


@dataclasses.dataclass(frozen=True, slots=True)
class Record:
    """One weighing call. ``raw`` is the decoded JSON object as written."""

    time: float
    instance_uuid: str
    project_id: str
    mode: str
    policy_version: str | None
    confidence: float | None
    #: ``applied`` or ``abstained``.
    outcome: str
    #: What the weigher did: ``applied`` or the reason it abstained (in
    #: shadow mode ``mode_shadow``; :attr:`verdict` is what gated would do).
    reason: str
    verdict: str
    detail: str
    latency_ms: float | None
    feature_names: tuple[str, ...]
    hosts: tuple[HostRecord, ...]
    raw: dict = dataclasses.field(repr=False, compare=False)

    @property
    def applied(self) -> bool:
        return self.outcome == 'applied'

    @property
    def nova_top(self) -> int | None:
        """Index of Nova's choice: the highest ``nova_weight`` (the first of
        equals, as Nova's stable sort keeps them); None if none is known."""
        return _argmax(h.nova_weight for h in self.hosts)

    @property
    def policy_top(self) -> int | None:
        """Index of the policy's choice: the highest score; None if the
        call was not scored."""
        return _argmax(h.score for h in self.hosts)

    @property
    def agrees(self) -> bool | None:
        """Whether the policy's choice is Nova's (None: either unknown)."""
        nova, policy = self.nova_top, self.policy_top
        if nova is None or policy is None:
            return None
        return nova == policy

    @property
    def why(self) -> list[dict]:
        """The top hosts' features that moved their score most, as logged:
        ``[{'host': ..., 'features': [{'feature', 'value', 'effect'}]}]``."""
        why = self.raw.get('why')
        return why if isinstance(why, list) else []

    @classmethod
    def from_json(cls, obj: Any) -> 'Record':
        """A record from a decoded line; ValueError if it is not one.

        Only ``time`` is required (a finite number); other fields of the
        wrong type read as their empty value, so an older or newer writer's
        records still count.
        """
        if not isinstance(obj, dict):
            raise ValueError(f'a record is a JSON object, not '
                             f'{fileio.brief(obj)}')
        time_ = _number(obj.get('time'))
        if time_ is None:
            raise ValueError('a record needs a finite number "time"')
        gate = obj.get('gate') if isinstance(obj.get('gate'), dict) else {}
        hosts = obj.get('hosts') if isinstance(obj.get('hosts'), list) else []
        names = obj.get('feature_names')
        return cls(
            time=time_,
            instance_uuid=_text(obj.get('instance_uuid')),
            project_id=_text(obj.get('project_id')),
            mode=_text(obj.get('mode')),
            policy_version=_text(obj.get('policy_version')) or None,
            confidence=_number(obj.get('confidence')),
            outcome=_text(gate.get('outcome')),
            reason=_text(gate.get('reason')),
            verdict=_text(gate.get('verdict')),
            detail=_text(gate.get('detail')),
            latency_ms=_number(obj.get('latency_ms')),
            feature_names=tuple(_text(n) for n in names)
            if isinstance(names, list) else (),
            hosts=tuple(_host(h) for h in hosts if isinstance(h, dict)),
            raw=obj)


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ''


def _host(obj: dict) -> HostRecord:
    values = obj.get('features')
    return HostRecord(
        host=_text(obj.get('host')),
        features=tuple(_number(v) for v in values)
        if isinstance(values, list) else (),
        nova_weight=_number(obj.get('nova_weight')),
        score=_number(obj.get('score')),
        weight=_number(obj.get('weight')) or 0.0)


def _argmax(values: Iterable[float | None]) -> int | None:
    best = None
    best_value = -math.inf
    for i, value in enumerate(values):
        if value is not None and (best is None or value > best_value):
            best, best_value = i, value
    return best


def parse_lines(data: bytes, stats: ReadStats) -> list[Record]:
    """The records in one file's content, skipping what is not one."""
    lines = data.split(b'\n')
    if lines[-1]:
        stats.truncated += 1        # no newline yet: a writer mid-append
    records = []
    for line in lines[:-1]:
        if not line.strip():
            continue
        try:
            records.append(Record.from_json(fileio.decode_json(line)))
        except ValueError:
            stats.malformed += 1
    stats.records += len(records)
    return records


def _read(path: str, root: str, max_bytes: int) -> bytes:
    """A file's content, decompressed if gzip; OSError if refused."""
    for attempt in range(_READ_ATTEMPTS):
        try:
            data, _ = fileio.read_bounded(path, max_bytes, allowed_root=root)
            break
        except fileio.FileRefused:
            # Appended to or rotated while read: read it again; a
            # standing reason fails the same way, cheaply (stat only).
            if attempt == _READ_ATTEMPTS - 1:
                raise
    if path.endswith('.gz'):
        return _gunzip(path, data, max_bytes)
    return data


def _gunzip(path: str, data: bytes, max_bytes: int) -> bytes:
    inflate = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        out = inflate.decompress(data, max_bytes + 1)
    except zlib.error as e:
        raise fileio.FileRefused(path, f'not gzip: {e}') from None
    if len(out) > max_bytes:
        raise fileio.FileRefused(path, f'more than {max_bytes} bytes '
                                       'uncompressed')
    return out


def _by_process(directory: str, stats: ReadStats
                ) -> dict[tuple[str, str], list[str]]:
    """Each writing process's files, in rotation order (rotated by stamp,
    then the current file)."""
    groups: dict[tuple[str, str], list[tuple]] = {}
    for path, _st, _protected in log_files(directory):
        m = FILE_NAME.match(os.path.basename(path))
        if m is None:       # log_files matched it: cannot happen
            continue
        ext = m.group('ext')
        if ext not in (None, '.gz'):
            stats.refused.append((path, f'compressed as {ext}: only gzip '
                                        'is read'))
            continue
        # '.<UTC stamp>[-n]', none for the current file (the newest).
        stamp, _, n = (m.group('stamp') or '').partition('-')
        order = (not stamp, stamp, int(n or 0))
        groups.setdefault((m.group('host'), m.group('pid')), []).append(
            (order, path))
    return {key: [path for _, path in sorted(files)]
            for key, files in groups.items()}


def _process_records(paths: list[str], root: str, max_bytes: int,
                     stats: ReadStats) -> Iterator[Record]:
    for path in paths:
        try:
            data = _read(path, root, max_bytes)
        except FileNotFoundError:
            # Pruned or rotated by its writer since it was listed.
            stats.refused.append((path, 'vanished while reading'))
            continue
        except OSError as e:
            stats.refused.append((path, str(e) if isinstance(
                e, fileio.FileRefused) else f'{path}: {e.strerror or e}'))
            continue
        stats.files += 1
        records = parse_lines(data, stats)
        # Threads submit in nearly time order; a file is sorted whole.
        records.sort(key=lambda r: r.time)
        yield from records


def iter_records(directory: str, stats: ReadStats | None = None, *,
                 max_file_bytes: int = DEFAULT_MAX_FILE_BYTES
                 ) -> Iterator[Record]:
    """The records of every decision log file in ``directory``, by time.

    ``stats``, if given, is filled in while iterating. Raises OSError with
    a one-line reason, at the call (not on the first record), only when
    ``directory`` is not a readable directory; problems with single files
    or lines are counted in ``stats``.
    """
    if stats is None:
        stats = ReadStats()
    if not os.path.isdir(directory):
        raise NotADirectoryError(errno.ENOTDIR, 'not a directory',
                                 directory)
    os.listdir(directory)       # unreadable: PermissionError now, not later
    return _merged(directory, stats, max_file_bytes)


def _merged(directory: str, stats: ReadStats,
            max_file_bytes: int) -> Iterator[Record]:
    root = os.path.realpath(directory)
    streams = [_process_records(paths, root, max_file_bytes, stats)
               for paths in _by_process(directory, stats).values()]
    counter = itertools.count()
    # heapq.merge keeps one record per process; the counter breaks ties
    # between equal times without comparing records.
    merged = heapq.merge(*[((r.time, next(counter), r) for r in s)
                           for s in streams])
    for _time, _n, record in merged:
        yield record


def read_records(directory: str, stats: ReadStats | None = None, *,
                 max_file_bytes: int = DEFAULT_MAX_FILE_BYTES
                 ) -> list[Record]:
    """:func:`iter_records` as a list."""
    return list(iter_records(directory, stats,
                             max_file_bytes=max_file_bytes))
