"""The version directories in ``<target>.versions``.

Naming them, storing a verified copy of an artifact as one, adopting what
was at the target before publishing was used, and pruning old ones.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from typing import Any

from nova_rl_weigher import artifact as artifact_mod

from nova_rl_trainer.publishing.artifacts import _DATA_ERRORS
from nova_rl_trainer.publishing.artifacts import _fsync_dir
from nova_rl_trainer.publishing.artifacts import copy_artifact
from nova_rl_trainer.publishing.artifacts import fingerprint
from nova_rl_trainer.publishing.artifacts import verify
from nova_rl_trainer.publishing.history import now_iso
from nova_rl_trainer.publishing.layout import _plain_name
from nova_rl_trainer.publishing.layout import TargetState
from nova_rl_trainer.publishing.layout import VersionError
from nova_rl_trainer.publishing.layout import versions_dir

INCOMING_PREFIX = '.incoming-'


def version_name(policy_version: str, fp: str) -> str:
    """``<policy_version>-<sha12>``, safe as one path component."""
    safe = re.sub(r'[^A-Za-z0-9._-]+', '_', policy_version)[:64]
    safe = safe.lstrip('.') or 'policy'
    return f'{safe}-{fp[:12]}'


def _free_name(directory: str, name: str) -> str:
    candidate, n = name, 1
    while os.path.lexists(os.path.join(directory, candidate)):
        n += 1
        candidate = f'{name}-{n}'
    return candidate


def _store(target: str, src: str, name: str, fp: str) -> tuple[str, bool]:
    """Put a verified copy of ``src`` at version ``name`` (reusing an
    identical existing one): ``(name used, whether it was created)``."""
    directory = versions_dir(target)
    final = os.path.join(directory, name)
    if os.path.isdir(final) and not os.path.islink(final) \
            and fingerprint(final) == fp:
        verify(final)
        return name, False
    name = _free_name(directory, name)
    incoming = tempfile.mkdtemp(prefix=INCOMING_PREFIX, dir=directory)
    os.rmdir(incoming)
    try:
        copy_artifact(src, incoming)
        if fingerprint(incoming) != fp:
            raise VersionError(f'{src} changed while it was being copied')
        verify(incoming)
        os.rename(incoming, os.path.join(directory, name))
    except BaseException:
        shutil.rmtree(incoming, ignore_errors=True)
        raise
    _fsync_dir(directory)
    return name, True


def _remove_versions(directory: str, names: list[str]
                     ) -> tuple[list[str], list[str]]:
    """Delete version directories: ``(removed, warnings)``."""
    removed, warnings = [], []
    for name in dict.fromkeys(names):
        if not _plain_name(name):
            continue
        path = os.path.join(directory, name)
        if not os.path.isdir(path) or os.path.islink(path):
            continue
        try:
            shutil.rmtree(path)
        except OSError as e:
            warnings.append(f'could not remove old version {path} ({e}); it '
                            'is no longer in the history, remove it by hand')
        else:
            removed.append(name)
    return removed, warnings


def _adopt_name(state: TargetState) -> str:
    try:
        manifest = artifact_mod.read_manifest(state.resolved)
    except _DATA_ERRORS:
        manifest = None
    version = manifest.get('policy_version') \
        if isinstance(manifest, dict) else None
    if not isinstance(version, str) or not version:
        version = 'adopted'
    name = version_name(version, state.fingerprint or '0' * 12)
    return _free_name(versions_dir(state.path), name)


def _is_valid(path: str) -> bool:
    try:
        verify(path)
    except artifact_mod.ArtifactError:
        return False
    return True


def _plan_prune(history: dict[str, Any], keep: int,
                current: str) -> list[str]:
    """Keep the current version, ``keep`` previous ones in the stack and the
    ``keep`` most recently retired; drop the others from the history and
    return them (their directories are deleted once the history is
    written)."""
    stack, retired = history['stack'], history['retired']
    cut = max(0, len(stack) - (keep + 1))
    dropped = stack[:cut]
    del stack[:cut]
    cut = max(0, len(retired) - keep)
    dropped += retired[:cut]
    del retired[:cut]
    alive = set(stack) | set(retired) | {current}
    doomed = [n for n in dict.fromkeys(dropped) if n not in alive]
    if doomed:
        history['events'].append({'action': 'prune', 'at': now_iso(),
                                  'versions': doomed})
    return doomed
