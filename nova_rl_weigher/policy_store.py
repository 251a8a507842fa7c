"""Keeps the policy in service and swaps in a new one when it changes on disk.

Loading happens aside: the new artifact is read and verified completely
before one reference assignment puts it in service, so concurrent requests
see either the old policy or the new one. The check costs two ``stat`` calls
every ``policy_check_interval_s``; a changed artifact is loaded by the one
thread that noticed, while every other call keeps serving the previous
policy (or abstaining, if the previous attempt failed) instead of waiting
for it. Only the first load of a path (at start, or after ``policy_path``
changed) is waited for, at most :data:`FIRST_LOAD_WAIT_S` (the load itself
is bounded by the artifact caps); a call abstains after that.

An artifact that fails verification leaves the old policy in service and is
remembered by its file versions (resolved directory, device, inode, size,
mtime of each file): it is not read again, nor logged again, until the files
change. The first load is lazy, so nothing is read while nova-scheduler
creates its weighers before forking.
"""

from __future__ import annotations

import threading
import time
from typing import NamedTuple

from oslo_log import log as logging

from nova_rl_weigher import artifact
from nova_rl_weigher import fileio
from nova_rl_weigher.policy import Policy

LOG = logging.getLogger(__name__)

#: Longest a call waits for the first load of a path's policy before
#: abstaining (a later reload is never waited for).
FIRST_LOAD_WAIT_S = 2.0


class _Served(NamedTuple):
    """What is in service, swapped as a whole."""

    path: str | None
    policy: Policy | None
    signature: tuple | None   # of the files last tried, loaded or refused
    error: str
    next_check: float         # time.monotonic()
    racy: bool                # signature may not identify the content


class PolicyStore:

    def __init__(self) -> None:
        # Held only by the thread checking or loading; a call with a policy
        # in service never waits for it.
        self._lock = threading.Lock()
        self._state = _Served(None, None, None, 'not loaded yet', 0.0, False)

    @property
    def error(self) -> str:
        return self._state.error

    def get(self, path: str, check_interval_s: float) -> Policy | None:
        """The policy in service for ``path``, reloading if due and changed."""
        now = time.monotonic()
        state = self._state
        if state.path == path and now < state.next_check:
            return state.policy
        if state.path == path:
            if not self._lock.acquire(blocking=False):
                return state.policy    # another thread is checking
        elif not self._lock.acquire(timeout=FIRST_LOAD_WAIT_S):
            return None                # first load of this path, too slow
        try:
            return self._check(path, check_interval_s)
        finally:
            self._lock.release()

    def _check(self, path: str, check_interval_s: float) -> Policy | None:
        now = time.monotonic()
        state = self._state
        if state.path == path and now < state.next_check:
            return state.policy        # checked while we waited
        signature = artifact.artifact_signature(path)
        checked_at = time.time_ns()
        racy = any(isinstance(v, fileio.FileVersion)
                   and fileio.is_racy(v, checked_at) for v in signature)
        next_check = now + check_interval_s
        if state.path == path and signature == state.signature \
                and not state.racy:
            self._state = state._replace(next_check=next_check)
            return state.policy
        switching = path != state.path
        try:
            new = artifact.load_artifact(path)
        except Exception as e:  # noqa: BLE001 - anything here means "refuse"
            # A different path was configured: serving the old path's
            # policy would silently ignore the operator's change.
            policy = None if switching else state.policy
            error = str(e)
            self._state = _Served(path, policy, signature, error, next_check,
                                  racy)
            if switching or signature != state.signature \
                    or error != state.error:
                LOG.error('rl_weigher: policy at %s refused (%s); %s', path,
                          error, 'keeping version %s in service'
                          % policy.version if policy
                          else 'no policy in service, abstaining')
        else:
            old = state.policy
            if old is None or new.version != old.version or switching:
                LOG.info('rl_weigher: policy %s from %s in service '
                         '(objective %s, %d members)', new.version, path,
                         new.manifest.get('objective'), new.ensemble_size)
            self._state = _Served(path, new, signature, '', next_check, racy)
        return self._state.policy
