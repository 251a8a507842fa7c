"""Keeps the policy in service and swaps in a new one when it changes on disk.

Loading happens aside: the new artifact is read and verified completely
before one reference assignment puts it in service, so concurrent requests
see either the old policy or the new one. An artifact that fails
verification leaves the old policy in service (and is not retried until the
files change again). The first load is lazy, so nothing is read while
nova-scheduler creates its weighers before forking.
"""

from __future__ import annotations

import threading
import time

from oslo_log import log as logging

from nova_rl_weigher import artifact
from nova_rl_weigher.policy import Policy

LOG = logging.getLogger(__name__)


class PolicyStore:

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._policy: Policy | None = None
        self._path: str | None = None
        self._signature: tuple | None = None
        self._error: str = 'not loaded yet'
        self._next_check = 0.0

    @property
    def error(self) -> str:
        return self._error

    def get(self, path: str, check_interval_s: float) -> Policy | None:
        """The policy in service for ``path``, reloading if due and changed."""
        now = time.monotonic()
        if path == self._path and now < self._next_check:
            return self._policy
        with self._lock:
            if path == self._path and now < self._next_check:
                return self._policy
            self._next_check = now + check_interval_s
            signature = artifact.artifact_signature(path)
            if path == self._path and signature == self._signature:
                return self._policy
            self._reload(path, signature)
            return self._policy

    def _reload(self, path: str, signature: tuple) -> None:
        switching = path != self._path
        try:
            new = artifact.load_artifact(path)
        except Exception as e:  # noqa: BLE001 - anything here means "refuse"
            self._error = str(e)
            if switching:
                # A different path was configured: serving the old path's
                # policy would silently ignore the operator's change.
                self._policy = None
            LOG.error('rl_weigher: policy at %s refused (%s); %s', path, e,
                      'keeping version %s in service' % self._policy.version
                      if self._policy else 'no policy in service, abstaining')
        else:
            if self._policy is None or new.version != self._policy.version \
                    or switching:
                LOG.info('rl_weigher: policy %s from %s in service '
                         '(objective %s, %d members)', new.version, path,
                         new.manifest.get('objective'), new.ensemble_size)
            self._policy, self._error = new, ''
        self._path, self._signature = path, signature
