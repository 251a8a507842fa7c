"""Versioned policy directories behind one atomically switched symlink.

The path operators configure (``[rl_weigher] policy_path``, the *target*)
becomes a relative symlink to an immutable version directory beside it::

    <target>             -> <target>.versions/<version>-<sha12>
    <target>.versions/
        <version>-<sha12>/   manifest.json + weights file, never modified
        history.json         rollback stack, retired versions, event log
        .lock                serialises publish and rollback on this target

The history's ``stack`` is the rollback lineage, oldest first, the last
entry being what the target points at. Installing pushes; rolling back pops
(the popped version is *retired*: kept on disk until pruning) and points the
target at the new top. Only installs prune, so a rollback, the emergency
operation, touches nothing but the symlink and the history.

**Transactions.** An install or a rollback changes what the weigher serves
in exactly one step, the *switch*: ``renameat2(RENAME_EXCHANGE)`` of a
prepared symlink with the target (or ``rename(2)`` of it over the target
where the exchange is unsupported), so a reader sees the old version or the
new one, never a mix. Everything that can fail is done before it: the lock,
reading the history, copying and verifying the new version directory, the
new history's text, the write permissions the rest needs, the prepared
symlink. After the switch the served policy is verified and the history
written; if either fails, the switch is undone (the same exchange again).
So:

* :class:`VersionError`: the target serves what it served before (nothing
  was changed, or the switch was undone), and the history says so;
* :class:`SwitchedError`: the switch happened, the rest failed and undoing
  it failed too; its ``state`` says exactly what the target serves now;
* otherwise the target serves the new version and the history records it.
  Tidying afterwards (removing the old symlink, pruning old versions) can
  only produce warnings.

The weigher's hot-reload signature includes ``realpath(target)``, so every
switch is noticed even when two versions' files share size and mtime.
Every file read from a candidate or a version directory goes through
:func:`nova_rl_weigher.fileio.read_bounded` (regular files inside the
directory, at most the artifact caps), and the history is written with
:func:`nova_rl_weigher.fileio.atomic_write`.

The parts, each importing only those listed before it: :mod:`layout` (the
target's paths, :class:`TargetState`, the errors), :mod:`history`
(``history.json`` and the lock), :mod:`artifacts` (reading, verifying and
copying artifact files; what a target holds), :mod:`store` (the version
directories: naming, storing, adopting, pruning) and :mod:`switch` (the
switch, the checks before it, its undo). This module holds the operations,
:func:`install` and :func:`rollback`, and re-exports what callers use.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from typing import Any

from nova_rl_weigher import artifact as artifact_mod

from nova_rl_trainer.publishing.artifacts import _unchanged
from nova_rl_trainer.publishing.artifacts import copy_artifact
from nova_rl_trainer.publishing.artifacts import describe
from nova_rl_trainer.publishing.artifacts import fingerprint
from nova_rl_trainer.publishing.artifacts import inspect
from nova_rl_trainer.publishing.artifacts import Snapshot
from nova_rl_trainer.publishing.artifacts import snapshot
from nova_rl_trainer.publishing.artifacts import verify
from nova_rl_trainer.publishing.history import _history_text
from nova_rl_trainer.publishing.history import HISTORY
from nova_rl_trainer.publishing.history import HISTORY_FORMAT
from nova_rl_trainer.publishing.history import LOCK
from nova_rl_trainer.publishing.history import locked
from nova_rl_trainer.publishing.history import MAX_EVENTS
from nova_rl_trainer.publishing.history import MAX_HISTORY_BYTES
from nova_rl_trainer.publishing.history import now_iso
from nova_rl_trainer.publishing.history import read_history
from nova_rl_trainer.publishing.layout import normalise
from nova_rl_trainer.publishing.layout import SwitchedError
from nova_rl_trainer.publishing.layout import TargetState
from nova_rl_trainer.publishing.layout import VersionError
from nova_rl_trainer.publishing.layout import versions_dir
from nova_rl_trainer.publishing.store import _adopt_name
from nova_rl_trainer.publishing.store import _is_valid
from nova_rl_trainer.publishing.store import _plan_prune
from nova_rl_trainer.publishing.store import _remove_versions
from nova_rl_trainer.publishing.store import _store
from nova_rl_trainer.publishing.store import INCOMING_PREFIX
from nova_rl_trainer.publishing.store import version_name
from nova_rl_trainer.publishing.switch import _after_switch
from nova_rl_trainer.publishing.switch import _check_writable
from nova_rl_trainer.publishing.switch import _link_text
from nova_rl_trainer.publishing.switch import _Switch

__all__ = [
    # the operations and what they return or raise
    'InstallOutcome', 'RollbackOutcome', 'SwitchedError', 'TargetState',
    'VersionError', 'inspect', 'install', 'rollback',
    # re-exported from the parts
    'HISTORY', 'HISTORY_FORMAT', 'INCOMING_PREFIX', 'LOCK', 'MAX_EVENTS',
    'MAX_HISTORY_BYTES', 'Snapshot', 'copy_artifact', 'describe',
    'fingerprint', 'locked', 'normalise', 'now_iso', 'read_history',
    'snapshot', 'verify', 'version_name', 'versions_dir',
]


# -- operations ---------------------------------------------------------------

@dataclasses.dataclass
class InstallOutcome:
    name: str                  # version directory now at the target
    previous: str | None       # what rollback would restore
    adopted: str | None        # the pre-existing artifact, kept as a version
    pruned: list[str]
    warnings: list[str] = dataclasses.field(default_factory=list)


def _transaction(target: str, fn: Any, *args: Any) -> Any:
    """Run ``fn`` under the lock; any failure not already described is
    reported as changing nothing (fn only raises after the switch with a
    :class:`VersionError` saying what is served)."""
    directory = versions_dir(target)
    made_dir = not os.path.lexists(directory)
    done = False
    try:
        with locked(target):
            result = fn(target, *args)
        done = True
        return result
    except VersionError as e:
        if e.state is None and not isinstance(e, SwitchedError):
            e.state = _unchanged(target)
        raise
    except (OSError, artifact_mod.ArtifactError) as e:
        raise VersionError(f'before switching {target}: {e}',
                           state=_unchanged(target)) from None
    finally:
        if made_dir and not done:
            # Made for this attempt only: leave the disk as it was.
            with contextlib.suppress(OSError):
                if set(os.listdir(directory)) <= {LOCK}:
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(os.path.join(directory, LOCK))
                    os.rmdir(directory)


def install(target: str, src: str, fp: str, policy_version: str,
            expected: TargetState, keep: int,
            record: dict[str, Any] | None = None) -> InstallOutcome:
    """Point ``target`` at a stored copy of the verified artifact ``src``
    (fingerprint ``fp``) and record it; ``expected`` is the target's state
    when the candidate was evaluated, and must still hold. Raises
    :class:`VersionError` (nothing changed) or :class:`SwitchedError`."""
    if keep < 0:
        raise VersionError('keep must be >= 0')
    return _transaction(normalise(target), _install, src, fp,
                        policy_version, expected, keep, record)


def _install(target: str, src: str, fp: str, policy_version: str,
             expected: TargetState, keep: int,
             record: dict[str, Any] | None) -> InstallOutcome:
    directory = versions_dir(target)
    state = inspect(target)
    if (state.kind, state.link, state.fingerprint) != (
            expected.kind, expected.link, expected.fingerprint):
        raise VersionError(
            f'{target} changed while the candidate was being evaluated; '
            'nothing was installed, run publish again')
    history = read_history(target)
    # What the steps below need, checked before any of them is taken.
    _check_writable(directory, 'storing the version and writing the '
                    'history')
    _check_writable(os.path.dirname(target), f'switching {target}')
    stack, retired = history['stack'], history['retired']
    at = now_iso()
    adopted, aside = None, None
    made: list[str] = []      # version dirs made here, removed on failure
    sw = None
    try:
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
                # Moving a directory to another parent needs write
                # permission on it (its '..' changes).
                _check_writable(state.path, f'moving it into {directory}')
                aside = os.path.join(directory, adopted)
            else:
                # Someone else's directory: copy, leave theirs alone.
                adopted, new = _store(target, state.resolved, adopted,
                                      state.fingerprint)
                if new:
                    made.append(adopted)
            (stack if valid else retired).append(adopted)
            history['events'].append({
                'action': 'adopt', 'at': at, 'version': adopted,
                'from': state.resolved, 'valid': valid})
        name, new = _store(target, src, version_name(policy_version, fp), fp)
        if new:
            made.append(name)
        previous = stack[-1] if stack else None
        if name in retired:
            retired.remove(name)
        stack.append(name)
        history['events'].append({
            'action': 'install', 'at': at, 'version': name,
            'policy_version': policy_version, 'sha256': fp,
            'previous': previous, **(record or {})})
        doomed = _plan_prune(history, keep, name)
        text = _history_text(history)
        sw = _Switch(state, _link_text(target, name), aside)
        sw.prepare()
        sw.switch()
    except BaseException:
        if sw is not None:
            sw.abort()
        _remove_versions(directory, made)
        raise
    try:
        _after_switch(target, sw, name, policy_version, text)
    except SwitchedError:
        raise      # the new version is served: keep it
    except BaseException:
        _remove_versions(directory, made)
        raise
    warnings = sw.commit()
    pruned, more = _remove_versions(directory, doomed)
    return InstallOutcome(name, previous, adopted, pruned, warnings + more)


@dataclasses.dataclass
class RollbackOutcome:
    restored: str          # version directory now at the target
    policy_version: str
    replaced: str          # the version rolled back from (now retired)
    warnings: list[str] = dataclasses.field(default_factory=list)


def rollback(target: str) -> RollbackOutcome:
    """Point ``target`` back at the previous version in its history.
    Raises :class:`VersionError` (nothing changed) or
    :class:`SwitchedError`."""
    target = normalise(target)
    hist_path = os.path.join(versions_dir(target), HISTORY)
    try:
        os.stat(hist_path)
    except (FileNotFoundError, NotADirectoryError):
        raise VersionError(f'no publish history for {target} ({hist_path} '
                           'not found): nothing to roll back to') from None
    except OSError as e:
        raise VersionError(f'cannot read {hist_path}: {e}',
                           state=_unchanged(target)) from None
    return _transaction(target, _rollback)


def _rollback(target: str) -> RollbackOutcome:
    directory = versions_dir(target)
    state = inspect(target)
    history = read_history(target)
    stack = history['stack']
    if not (state.kind == 'link' and state.managed):
        raise VersionError(
            f'{target} is not a symlink into {directory} ({state.kind}); it '
            'was changed outside publish, refusing to guess what to restore')
    if not stack or stack[-1] != state.name:
        raise VersionError(
            f'{target} points at {state.name}, but the history says '
            f"{stack[-1] if stack else 'nothing'} is current; it was "
            'changed outside publish, refusing to guess what to restore')
    if len(stack) < 2:
        raise VersionError(f'{target}: no previous version to roll back '
                           f'to ({state.name} is the only one)')
    previous = stack[-2]
    path = os.path.join(directory, previous)
    if os.path.islink(path) or not os.path.isdir(path):
        raise VersionError(f'previous version {previous} is not a directory '
                           f'in {directory}, not restoring it')
    try:
        restored = verify(path)
    except artifact_mod.ArtifactError as e:
        raise VersionError(f'previous version {previous} fails '
                           f'verification, not restoring it: {e}') from None
    stack.pop()
    history['retired'].append(state.name)
    history['events'].append({
        'action': 'rollback', 'at': now_iso(), 'version': previous,
        'policy_version': restored.version, 'from': state.name})
    text = _history_text(history)
    _check_writable(directory, 'writing the history')
    _check_writable(os.path.dirname(target), f'switching {target}')
    sw = _Switch(state, _link_text(target, previous))
    try:
        sw.prepare()
        sw.switch()
    except BaseException:
        sw.abort()
        raise
    _after_switch(target, sw, previous, restored.version, text)
    return RollbackOutcome(previous, restored.version, state.name,
                           sw.commit())
