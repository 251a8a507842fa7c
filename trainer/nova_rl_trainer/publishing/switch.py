"""The switch: the one step that changes what a target serves.

``renameat2(RENAME_EXCHANGE)`` of a prepared symlink with the target
(``rename(2)`` where the exchange is unsupported); the permission checks
made before it; after it, verifying what is served and writing the
history, and undoing the switch when either fails.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import secrets

from nova_rl_trainer.publishing.artifacts import _fsync_dir
from nova_rl_trainer.publishing.artifacts import _unchanged
from nova_rl_trainer.publishing.artifacts import describe
from nova_rl_trainer.publishing.artifacts import verify
from nova_rl_trainer.publishing.history import _write_history
from nova_rl_trainer.publishing.history import HISTORY
from nova_rl_trainer.publishing.layout import SwitchedError
from nova_rl_trainer.publishing.layout import TargetState
from nova_rl_trainer.publishing.layout import VersionError
from nova_rl_trainer.publishing.layout import versions_dir


def _check_writable(directory: str, why: str) -> None:
    if not os.access(directory, os.W_OK | os.X_OK):
        raise VersionError(f'{directory} is not writable by this user '
                           f'(uid {os.geteuid()}), which {why} needs')


# -- switching ----------------------------------------------------------------

_RENAME_NOREPLACE = 1
_RENAME_EXCHANGE = 2
_AT_FDCWD = -100
# renameat2 missing, or the flag not supported by this file system.
_UNSUPPORTED = (errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP)


def _renameat2(a: str, b: str, flags: int) -> None:
    try:
        fn = ctypes.CDLL(None, use_errno=True).renameat2
    except AttributeError:
        raise OSError(errno.ENOSYS, 'renameat2 unavailable') from None
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int,
                   ctypes.c_char_p, ctypes.c_uint]
    if fn(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), flags) != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e), b)


def _exchange(a: str, b: str) -> None:
    """Atomically swap two paths (Linux ``renameat2(RENAME_EXCHANGE)``).
    Raises ``OSError``; callers fall back when it is unsupported."""
    _renameat2(a, b, _RENAME_EXCHANGE)


def _rename_new(a: str, b: str) -> None:
    """``rename(a, b)`` failing if ``b`` exists."""
    try:
        _renameat2(a, b, _RENAME_NOREPLACE)
    except OSError as e:
        if e.errno not in _UNSUPPORTED:
            raise
        if os.path.lexists(b):
            raise FileExistsError(errno.EEXIST, 'File exists', b) from None
        os.rename(a, b)


def _new_symlink(text: str, directory: str, prefix: str) -> str:
    """A symlink with ``text`` at a fresh hidden name in ``directory``."""
    while True:
        path = os.path.join(directory, f'{prefix}{secrets.token_hex(6)}')
        try:
            os.symlink(text, path)
        except FileExistsError:
            continue
        return path


def _link_text(target: str, name: str) -> str:
    # Relative to the target's directory: the pair can be moved together.
    return os.path.join(os.path.basename(versions_dir(target)), name)


class _Switch:
    """The one change of the target, prepared so that only the switch
    itself can fail, and how to undo it.

    The new symlink is made beforehand: beside the target (it is exchanged
    with the old symlink, which is then deleted), or, when a plain directory
    is at the target, at ``aside`` in the versions directory, so that one
    exchange puts the symlink at the target and the directory in the
    versions directory. Without ``renameat2`` the symlink is renamed over
    the old one (undone by a new symlink with the old text), and a plain
    directory is first moved aside (a moment with no target, which the
    weigher survives by keeping the policy it has in memory).
    """

    def __init__(self, state: TargetState, text: str,
                 aside: str | None = None) -> None:
        self.state = state
        self.target = state.path
        self.parent = os.path.dirname(self.target)
        self.text = text
        self.aside = aside
        self.tmp: str | None = None
        self.mode: str | None = None   # how it was switched

    def prepare(self) -> None:
        if self.state.kind == 'dir':
            os.symlink(self.text, self.aside)
            self.tmp = self.aside
        else:
            self.tmp = _new_symlink(self.text, self.parent, '.'
                                    + os.path.basename(self.target) + '.new-')

    def abort(self) -> None:
        """Before the switch (or after it failed): remove what prepare made."""
        if self.mode is None:
            self._drop_new_link()

    def _drop_new_link(self) -> None:
        if self.tmp:
            with contextlib.suppress(OSError):
                if os.path.islink(self.tmp) and \
                        os.readlink(self.tmp) == self.text:
                    os.unlink(self.tmp)

    def switch(self) -> None:
        """The atomic step. Raises OSError with nothing changed (or
        :class:`SwitchedError` in the fallback's worst case)."""
        kind = self.state.kind
        if kind == 'absent':
            _rename_new(self.tmp, self.target)
            self.mode = 'new'
        elif kind in ('link', 'dangling'):
            try:
                _exchange(self.tmp, self.target)
                self.mode = 'exchange'
            except OSError as e:
                if e.errno not in _UNSUPPORTED:
                    raise
                os.replace(self.tmp, self.target)
                self.mode = 'replace'
        else:
            try:
                _exchange(self.tmp, self.target)
                self.mode = 'exchange'
            except OSError as e:
                if e.errno not in _UNSUPPORTED:
                    raise
                self._move_dir()
        with contextlib.suppress(OSError):
            _fsync_dir(self.parent)

    def _move_dir(self) -> None:
        os.unlink(self.aside)
        self.tmp = None
        tmp = _new_symlink(self.text, self.parent,
                           '.' + os.path.basename(self.target) + '.new-')
        try:
            os.rename(self.target, self.aside)
        except OSError:
            os.unlink(tmp)
            raise
        try:
            os.rename(tmp, self.target)
        except OSError as e:
            try:
                os.rename(self.aside, self.target)
            except OSError as e2:
                raise SwitchedError(
                    f'moving {self.target} to {self.aside} worked, putting '
                    f'the new symlink in its place failed ({e}), moving it '
                    f'back failed too ({e2})',
                    state=f'{self.target} does not exist: the weigher '
                          'keeps the policy it has in memory; the previous '
                          f'one is at {self.aside}') from None
            finally:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
            raise
        self.mode = 'move'

    def undo(self) -> None:
        """Put the old target back; raises OSError."""
        if self.mode == 'new':
            if os.path.islink(self.target) and \
                    os.readlink(self.target) == self.text:
                os.unlink(self.target)
        elif self.mode == 'exchange':
            _exchange(self.tmp, self.target)
        elif self.mode == 'replace':
            tmp = _new_symlink(self.state.link, self.parent, '.'
                               + os.path.basename(self.target) + '.old-')
            try:
                os.replace(tmp, self.target)
            except OSError:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                raise
        elif self.mode == 'move':
            os.unlink(self.target)
            os.rename(self.aside, self.target)
        self.mode = 'undone'
        # After an exchange back, the new symlink is at tmp again.
        self._drop_new_link()
        with contextlib.suppress(OSError):
            _fsync_dir(self.parent)

    def previous(self) -> str:
        """Where the policy served before the switch is now."""
        if self.state.kind == 'absent':
            return 'nothing was served before'
        if self.state.kind == 'dir':
            return f'the previous directory is at {self.aside}'
        return f'the previous symlink pointed to {self.state.link}'

    def commit(self) -> list[str]:
        """After the history is written: delete the old symlink. Only
        warnings from here on."""
        if self.mode == 'exchange' and self.state.kind != 'dir':
            try:
                os.unlink(self.tmp)
            except OSError as e:
                return [f'could not remove the old symlink {self.tmp} ({e}); '
                        'remove it by hand']
        return []


def _after_switch(target: str, sw: _Switch, name: str, version: str,
                  text: str) -> None:
    """Verify what the target serves and write the history; on failure
    undo the switch (:class:`VersionError`) or say what is served
    (:class:`SwitchedError`)."""
    try:
        real = os.path.realpath(target)
        if real != os.path.realpath(os.path.join(versions_dir(target),
                                                 name)):
            raise VersionError(f'{target} resolves to {real}, not {name}')
        served = verify(target).version
        if served != version:
            raise VersionError(f'{target} serves {served!r}, not '
                               f'{version!r}')
        _write_history(target, text)
    except BaseException as e:
        why = f'{type(e).__name__}' if not str(e) else str(e)
        try:
            sw.undo()
        except OSError as e2:
            raise SwitchedError(
                f'{target} was switched to {name}, then: {why}; switching '
                f'back failed too ({e2})',
                state=f'{target} NOW SERVES {describe(target)}, but '
                      f'{os.path.join(versions_dir(target), HISTORY)} does '
                      f'not record it; {sw.previous()}') from None
        if not isinstance(e, Exception):
            raise
        raise VersionError(
            f'after switching {target} to {name}: {why}; switched back',
            state=_unchanged(target)) from None
