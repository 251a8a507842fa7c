"""``history.json`` in a target's versions directory and the lock.

Reading the history (bounded, validated), making its text before the
switch and writing it after; the lock that serialises publish and rollback
on one target. :mod:`versions` says what the stack and the retired list
mean.
"""

from __future__ import annotations

import contextlib
import datetime
import errno
import fcntl
import json
import os
from typing import Any, Iterator

from nova_rl_weigher import fileio

from nova_rl_trainer.publishing.layout import _plain_name
from nova_rl_trainer.publishing.layout import VersionError
from nova_rl_trainer.publishing.layout import versions_dir

HISTORY = 'history.json'
HISTORY_FORMAT = 'nova-rl-publish-history'
LOCK = '.lock'
MAX_EVENTS = 200
#: history.json is read through the same bounded reader as the artifacts
#: (200 events of a few KB each are far below this).
MAX_HISTORY_BYTES = 16 * 1024 * 1024


def now_iso() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(
        timespec='seconds')


def _history_problem(doc: Any) -> str | None:
    if not isinstance(doc, dict) or doc.get('format') != HISTORY_FORMAT:
        return f'format is not {HISTORY_FORMAT!r}'
    for key in ('stack', 'retired'):
        names = doc.get(key, [])
        if not isinstance(names, list) or not all(map(_plain_name, names)):
            return f'{key} must be a list of version directory names'
    events = doc.get('events', [])
    if not isinstance(events, list) or not all(isinstance(e, dict)
                                               for e in events):
        return 'events must be a list of objects'
    return None


def read_history(target: str) -> dict[str, Any]:
    directory = versions_dir(target)
    path = os.path.join(directory, HISTORY)
    try:
        data, _ = fileio.read_bounded(path, MAX_HISTORY_BYTES,
                                      allowed_root=directory)
        doc = fileio.decode_json(data)
    except FileNotFoundError:
        return {'format': HISTORY_FORMAT, 'format_version': 1,
                'stack': [], 'retired': [], 'events': []}
    except (OSError, ValueError) as e:
        raise VersionError(f'{path}: unreadable ({e}); fix or remove it by '
                           'hand') from None
    problem = _history_problem(doc)
    if problem:
        raise VersionError(f'{path}: not a publish history file ({problem});'
                           ' fix or remove it by hand')
    doc.setdefault('retired', [])
    doc.setdefault('events', [])
    return doc


def _history_text(doc: dict[str, Any]) -> str:
    """The history as it will be written: made before the switch, so that
    a history that cannot be serialised fails while nothing has changed."""
    doc['events'] = doc['events'][-MAX_EVENTS:]
    try:
        return json.dumps(doc, indent=2) + '\n'
    except (ValueError, TypeError, RecursionError) as e:
        raise VersionError(f'cannot write the history: {e}') from None


def _write_history(target: str, text: str) -> None:
    fileio.atomic_write(os.path.join(versions_dir(target), HISTORY), text,
                        mode=0o644)


@contextlib.contextmanager
def locked(target: str) -> Iterator[None]:
    """Exclusive lock on the target's versions directory (created if
    needed); fails at once rather than queueing behind another publish."""
    directory = versions_dir(target)
    os.makedirs(directory, mode=0o755, exist_ok=True)
    path = os.path.join(directory, LOCK)
    flags = os.O_CLOEXEC | os.O_NOFOLLOW
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | flags, 0o644)
    except OSError as e:
        if e.errno not in (errno.EACCES, errno.EPERM, errno.EROFS):
            raise
        # A read-only directory or someone else's lock file: a read-only
        # descriptor locks as well (and what follows says what is wrong).
        fd = os.open(path, os.O_RDONLY | flags)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise VersionError(f'another publish or rollback on {target} '
                               'is in progress') from None
        yield
    finally:
        os.close(fd)
