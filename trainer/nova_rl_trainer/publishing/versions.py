"""Versioned policy directories behind one atomically switched symlink.

The path operators configure (``[rl_weigher] policy_path``, the *target*)
becomes a relative symlink to an immutable version directory beside it::

    <target>             -> <target>.versions/<version>-<sha12>
    <target>.versions/
        <version>-<sha12>/   manifest.json + weights file, never modified
        history.json         rollback stack, retired versions, event log
        .lock                serialises publish and rollback on this target

Switching is ``rename(2)`` of a new symlink over the old one, so a reader of
the target sees the old version or the new one, never a mix. The weigher's
hot-reload signature includes ``realpath(target)``, so every switch is
noticed even when two versions' files happen to share size and mtime.

The history's ``stack`` is the rollback lineage, oldest first, the last
entry being what the target points at. Installing pushes; rolling back pops
(the popped version is *retired*: kept on disk until pruning) and points the
target at the new top. Only installs prune, so a rollback, the emergency
operation, touches nothing but the symlink and the history.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import datetime
import errno
import fcntl
import hashlib
import json
import os
import re
import shutil
import tempfile
from typing import Any, Iterator

from nova_rl_weigher import artifact as artifact_mod

HISTORY = 'history.json'
HISTORY_FORMAT = 'nova-rl-publish-history'
LOCK = '.lock'
INCOMING_PREFIX = '.incoming-'
MAX_EVENTS = 200


class VersionError(Exception):
    """The target or its versions directory is not in a usable state."""


@dataclasses.dataclass(frozen=True)
class TargetState:
    """What the target path is right now.

    ``kind``: ``absent``, ``dangling`` (a symlink to nothing), ``link`` (a
    symlink to a directory) or ``dir`` (a plain directory, e.g. an artifact
    written there before publishing was used).
    """

    path: str
    kind: str
    link: str | None = None        # the symlink's text
    resolved: str | None = None    # the directory holding the artifact
    managed: bool = False          # resolved is one of our version dirs
    fingerprint: str | None = None  # of the artifact files, if any

    @property
    def name(self) -> str | None:
        """The version directory's name, for a managed target."""
        return os.path.basename(self.resolved) if self.managed else None


def normalise(target: str) -> str:
    # abspath, not realpath: the target is the symlink itself.
    return os.path.abspath(target)


def versions_dir(target: str) -> str:
    return normalise(target) + '.versions'


def _artifact_files(path: str) -> list[str]:
    """File names making up the artifact in ``path`` (weights name from the
    manifest when it is readable)."""
    names = [artifact_mod.MANIFEST]
    weights = artifact_mod.WEIGHTS
    try:
        declared = artifact_mod.read_manifest(path).get('weights_file')
    except artifact_mod.ArtifactError:
        declared = None
    if isinstance(declared, str) and declared and \
            os.path.basename(declared) == declared:
        weights = declared
    names.append(weights)
    return names


def fingerprint(path: str) -> str:
    """sha256 over the artifact's files (missing ones count as absent), to
    name versions and to notice a change between evaluation and install."""
    digest = hashlib.sha256()
    for name in _artifact_files(path):
        digest.update(name.encode() + b'\0')
        try:
            with open(os.path.join(path, name), 'rb') as f:
                data = f.read()
        except OSError:
            digest.update(b'-missing-')
            continue
        digest.update(hashlib.sha256(data).digest())
    return digest.hexdigest()


def inspect(target: str) -> TargetState:
    path = normalise(target)
    if os.path.islink(path):
        link = os.readlink(path)
        resolved = os.path.realpath(path)
        if not os.path.isdir(resolved):
            return TargetState(path, 'dangling', link=link)
        managed = (os.path.dirname(resolved)
                   == os.path.realpath(versions_dir(path)))
        return TargetState(path, 'link', link=link, resolved=resolved,
                           managed=managed,
                           fingerprint=fingerprint(resolved))
    if os.path.isdir(path):
        return TargetState(path, 'dir', resolved=path,
                           fingerprint=fingerprint(path))
    if os.path.lexists(path):
        raise VersionError(f'target {path} exists but is neither a '
                           'directory nor a symlink; refusing to touch it')
    return TargetState(path, 'absent')


def version_name(policy_version: str, fp: str) -> str:
    """``<policy_version>-<sha12>``, safe as one path component."""
    safe = re.sub(r'[^A-Za-z0-9._-]+', '_', policy_version)[:64]
    safe = safe.lstrip('.') or 'policy'
    return f'{safe}-{fp[:12]}'


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def copy_artifact(src: str, dst: str) -> None:
    """Copy the artifact files of ``src`` into new directory ``dst``, synced
    to disk and readable by the scheduler's user. Other files (training
    checkpoints, plots) are left behind: only the artifact is published."""
    os.makedirs(dst, mode=0o755)
    os.chmod(dst, 0o755)   # whatever the umask: nova must read it
    for name in _artifact_files(src):
        with open(os.path.join(src, name), 'rb') as fin, \
                open(os.path.join(dst, name), 'wb') as fout:
            shutil.copyfileobj(fin, fout)
            fout.flush()
            os.fchmod(fout.fileno(), 0o644)
            os.fsync(fout.fileno())
    _fsync_dir(dst)


def snapshot(src: str) -> tuple[str, str]:
    """Copy the artifact in ``src`` to a private temporary directory and
    verify it there: ``(copy, fingerprint)``. Evaluating and installing the
    copy means what is installed is exactly what was evaluated, even if the
    source is rewritten meanwhile. Raises ``ArtifactError``; the caller
    removes the copy's parent (``os.path.dirname(copy)``)."""
    if not os.path.isdir(src):
        raise artifact_mod.ArtifactError(f'{src}: directory not found')
    parent = tempfile.mkdtemp(prefix='nova-rl-publish-')
    copy = os.path.join(parent, 'artifact')
    try:
        try:
            copy_artifact(src, copy)
        except OSError as e:
            raise artifact_mod.ArtifactError(
                f'{src}: cannot read the artifact: {e}') from None
        artifact_mod.load_artifact(copy)
    except BaseException:
        shutil.rmtree(parent, ignore_errors=True)
        raise
    return copy, fingerprint(copy)


# -- history ------------------------------------------------------------------

def now_iso() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(
        timespec='seconds')


def read_history(target: str) -> dict[str, Any]:
    path = os.path.join(versions_dir(target), HISTORY)
    try:
        with open(path, encoding='utf-8') as f:
            doc = json.load(f)
    except FileNotFoundError:
        return {'format': HISTORY_FORMAT, 'format_version': 1,
                'stack': [], 'retired': [], 'events': []}
    except (OSError, ValueError) as e:
        raise VersionError(f'{path}: unreadable ({e}); fix or remove it by '
                           'hand, nothing was changed') from None
    if not (isinstance(doc, dict) and doc.get('format') == HISTORY_FORMAT
            and isinstance(doc.get('stack'), list)):
        raise VersionError(f'{path}: not a publish history file')
    doc.setdefault('retired', [])
    doc.setdefault('events', [])
    return doc


def _write_history(target: str, doc: dict[str, Any]) -> None:
    doc['events'] = doc['events'][-MAX_EVENTS:]
    directory = versions_dir(target)
    fd, tmp = tempfile.mkstemp(prefix='.history-', dir=directory)
    try:
        os.fchmod(fd, 0o644)
        with os.fdopen(fd, 'w', encoding='utf-8') as f:
            json.dump(doc, f, indent=2)
            f.write('\n')
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, os.path.join(directory, HISTORY))
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_dir(directory)


@contextlib.contextmanager
def locked(target: str) -> Iterator[None]:
    """Exclusive lock on the target's versions directory (created if
    needed); fails at once rather than queueing behind another publish."""
    directory = versions_dir(target)
    os.makedirs(directory, mode=0o755, exist_ok=True)
    fd = os.open(os.path.join(directory, LOCK), os.O_RDWR | os.O_CREAT,
                 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise VersionError(f'another publish or rollback on {target} '
                               'is in progress') from None
        yield
    finally:
        os.close(fd)


# -- switching ----------------------------------------------------------------

_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _exchange(a: str, b: str) -> None:
    """Atomically swap two paths (Linux ``renameat2(RENAME_EXCHANGE)``).
    Raises ``OSError``; callers fall back when it is unsupported."""
    try:
        fn = ctypes.CDLL(None, use_errno=True).renameat2
    except AttributeError:
        raise OSError(errno.ENOSYS, 'renameat2 unavailable') from None
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int,
                   ctypes.c_char_p, ctypes.c_uint]
    if fn(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b),
          _RENAME_EXCHANGE) != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e), a)


def _point(target: str, name: str, aside: str | None = None) -> None:
    """Make ``target`` a symlink to version ``name``.

    A plain directory at the target is moved to ``aside`` (it cannot be
    replaced by rename(2), which only replaces a directory with a
    directory). With ``renameat2`` that is one atomic exchange; without it
    there is a moment with no target, which the weigher survives by keeping
    the policy it has in memory.
    """
    parent = os.path.dirname(target)
    link = os.path.join(os.path.basename(versions_dir(target)), name)
    fd, tmp = tempfile.mkstemp(prefix='.' + os.path.basename(target)
                               + '.tmp-', dir=parent)
    os.close(fd)
    os.unlink(tmp)
    os.symlink(link, tmp)
    try:
        if aside is None:
            os.replace(tmp, target)
        else:
            try:
                _exchange(tmp, target)
            except OSError:
                os.rename(target, aside)
                os.replace(tmp, target)
            else:
                os.rename(tmp, aside)     # tmp now names the old directory
    except BaseException:
        with contextlib.suppress(OSError):
            if os.path.islink(tmp):
                os.unlink(tmp)
        raise
    _fsync_dir(parent)


def _free_name(directory: str, name: str) -> str:
    candidate, n = name, 1
    while os.path.lexists(os.path.join(directory, candidate)):
        n += 1
        candidate = f'{name}-{n}'
    return candidate


def _store(target: str, src: str, name: str, fp: str) -> str:
    """Put a verified copy of ``src`` at version ``name`` (reusing an
    identical existing one) and return the name used."""
    directory = versions_dir(target)
    final = os.path.join(directory, name)
    if os.path.isdir(final) and fingerprint(final) == fp:
        artifact_mod.load_artifact(final)
        return name
    name = _free_name(directory, name)
    incoming = tempfile.mkdtemp(prefix=INCOMING_PREFIX, dir=directory)
    os.rmdir(incoming)
    try:
        copy_artifact(src, incoming)
        if fingerprint(incoming) != fp:
            raise VersionError(f'{src} changed while it was being copied')
        artifact_mod.load_artifact(incoming)
        os.rename(incoming, os.path.join(directory, name))
    except BaseException:
        shutil.rmtree(incoming, ignore_errors=True)
        raise
    _fsync_dir(directory)
    return name


# -- operations ---------------------------------------------------------------

@dataclasses.dataclass
class InstallOutcome:
    name: str                  # version directory now at the target
    previous: str | None       # what rollback would restore
    adopted: str | None        # the pre-existing artifact, kept as a version
    pruned: list[str]


def install(target: str, src: str, fp: str, policy_version: str,
            expected: TargetState, keep: int,
            record: dict[str, Any] | None = None) -> InstallOutcome:
    """Point ``target`` at a stored copy of the verified artifact ``src``
    (fingerprint ``fp``) and record it; ``expected`` is the target's state
    when the candidate was evaluated, and must still hold."""
    if keep < 0:
        raise VersionError('keep must be >= 0')
    target = normalise(target)
    directory = versions_dir(target)
    with locked(target):
        state = inspect(target)
        if (state.kind, state.link, state.fingerprint) != (
                expected.kind, expected.link, expected.fingerprint):
            raise VersionError(
                f'{target} changed while the candidate was being evaluated; '
                'nothing was installed, run publish again')
        history = read_history(target)
        stack, retired = history['stack'], history['retired']
        at = now_iso()
        adopted, aside = None, None
        if state.kind == 'link' and state.managed:
            if not stack or stack[-1] != state.name:
                # History lost or the link set by hand: trust the disk.
                stack.append(state.name)
        elif state.kind == 'dir' or (state.kind == 'link'
                                     and _is_valid(state.resolved)):
            valid = _is_valid(state.resolved)
            adopted = _adopt_name(state)
            if state.kind == 'dir':
                # It has to leave the target's place: keep it, even if
                # invalid, rather than delete what someone put there.
                aside = os.path.join(directory, adopted)
            else:
                # Someone else's directory: copy, leave theirs alone.
                adopted = _store(target, state.resolved, adopted,
                                 state.fingerprint)
            (stack if valid else retired).append(adopted)
            history['events'].append({
                'action': 'adopt', 'at': at, 'version': adopted,
                'from': state.resolved, 'valid': valid})
        name = _store(target, src, version_name(policy_version, fp), fp)
        previous = stack[-1] if stack else None
        _point(target, name, aside)
        if name in retired:
            retired.remove(name)
        stack.append(name)
        history['events'].append({
            'action': 'install', 'at': at, 'version': name,
            'policy_version': policy_version, 'sha256': fp,
            'previous': previous, **(record or {})})
        pruned = _prune(target, history, keep, name)
        _write_history(target, history)
    return InstallOutcome(name, previous, adopted, pruned)


def _adopt_name(state: TargetState) -> str:
    try:
        version = artifact_mod.read_manifest(state.resolved).get(
            'policy_version')
    except artifact_mod.ArtifactError:
        version = None
    if not isinstance(version, str) or not version:
        version = 'adopted'
    name = version_name(version, state.fingerprint or '0' * 12)
    return _free_name(versions_dir(state.path), name)


def _is_valid(path: str) -> bool:
    try:
        artifact_mod.load_artifact(path)
    except artifact_mod.ArtifactError:
        return False
    return True


def _prune(target: str, history: dict[str, Any], keep: int,
           current: str) -> list[str]:
    """Keep the current version, ``keep`` previous ones in the stack and the
    ``keep`` most recently retired; delete the other version dirs we made."""
    stack, retired = history['stack'], history['retired']
    cut = max(0, len(stack) - (keep + 1))
    dropped = stack[:cut]
    del stack[:cut]
    cut = max(0, len(retired) - keep)
    dropped += retired[:cut]
    del retired[:cut]
    alive = set(stack) | set(retired) | {current}
    directory = versions_dir(target)
    pruned = []
    for name in dict.fromkeys(dropped):
        if name in alive or name.startswith('.') or '/' in name:
            continue
        path = os.path.join(directory, name)
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
            pruned.append(name)
    if pruned:
        history['events'].append({'action': 'prune', 'at': now_iso(),
                                  'versions': pruned})
    return pruned


@dataclasses.dataclass
class RollbackOutcome:
    restored: str          # version directory now at the target
    policy_version: str
    replaced: str          # the version rolled back from (now retired)


def rollback(target: str) -> RollbackOutcome:
    """Point ``target`` back at the previous version in its history."""
    target = normalise(target)
    hist_path = os.path.join(versions_dir(target), HISTORY)
    if not os.path.exists(hist_path):
        raise VersionError(f'no publish history for {target} ({hist_path} '
                           'not found): nothing to roll back to')
    with locked(target):
        state = inspect(target)
        history = read_history(target)
        stack = history['stack']
        if not (state.kind == 'link' and state.managed):
            raise VersionError(
                f'{target} is not a symlink into {versions_dir(target)} '
                f'({state.kind}); it was changed outside publish, refusing '
                'to guess what to restore')
        if not stack or stack[-1] != state.name:
            raise VersionError(
                f'{target} points at {state.name}, but the history says '
                f"{stack[-1] if stack else 'nothing'} is current; it was "
                'changed outside publish, refusing to guess what to restore')
        if len(stack) < 2:
            raise VersionError(f'{target}: no previous version to roll back '
                               f'to ({state.name} is the only one)')
        previous = stack[-2]
        path = os.path.join(versions_dir(target), previous)
        try:
            restored = artifact_mod.load_artifact(path)
        except artifact_mod.ArtifactError as e:
            raise VersionError(f'previous version {previous} fails '
                               f'verification, not restoring it: {e}'
                               ) from None
        _point(target, previous)
        stack.pop()
        history['retired'].append(state.name)
        history['events'].append({
            'action': 'rollback', 'at': now_iso(), 'version': previous,
            'policy_version': restored.version, 'from': state.name})
        _write_history(target, history)
    return RollbackOutcome(previous, restored.version, state.name)
