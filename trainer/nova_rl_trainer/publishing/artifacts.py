"""Artifact files, read without trusting them.

Fingerprinting, verifying and copying an artifact (into a version directory
or a private snapshot), and what a target holds and serves. Every file is
read through :func:`nova_rl_weigher.fileio.read_bounded`: a regular file
inside the directory, at most the artifact caps.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from typing import NamedTuple

from nova_rl_weigher import artifact as artifact_mod
from nova_rl_weigher import fileio
from nova_rl_weigher.policy import Policy

from nova_rl_trainer.publishing.layout import _plain_name
from nova_rl_trainer.publishing.layout import normalise
from nova_rl_trainer.publishing.layout import TargetState
from nova_rl_trainer.publishing.layout import VersionError
from nova_rl_trainer.publishing.layout import versions_dir

#: What verifying an untrusted artifact may raise besides ArtifactError
#: (the loader is meant to raise only ArtifactError; this is the belt to
#: its braces, so a hostile file never ends in a traceback).
_DATA_ERRORS = (artifact_mod.ArtifactError, ValueError, RecursionError,
                OSError, TypeError, KeyError, IndexError, AttributeError)


def _artifact_files(path: str) -> list[str]:
    """File names making up the artifact in ``path`` (weights name from the
    manifest when it is readable)."""
    weights = artifact_mod.WEIGHTS
    try:
        manifest = artifact_mod.read_manifest(path)
    except _DATA_ERRORS:
        manifest = None
    declared = manifest.get('weights_file') if isinstance(manifest, dict) \
        else None
    if _plain_name(declared):
        weights = declared
    return list(dict.fromkeys([artifact_mod.MANIFEST, weights]))


def _read(directory: str, name: str) -> bytes:
    """One artifact file, refused unless it is a regular file inside
    ``directory`` within the loader's cap for it. Raises OSError
    (:class:`fileio.FileRefused` for a refusal)."""
    cap = (artifact_mod.MAX_MANIFEST_BYTES if name == artifact_mod.MANIFEST
           else artifact_mod.MAX_WEIGHTS_BYTES)
    data, _ = fileio.read_bounded(os.path.join(directory, name), cap,
                                  allowed_root=directory)
    return data


def fingerprint(path: str) -> str:
    """sha256 over the artifact's files (missing or refused ones count as
    such), to name versions and to notice a change between evaluation and
    install."""
    root = os.path.realpath(path)
    digest = hashlib.sha256()
    for name in _artifact_files(root):
        digest.update(name.encode('utf-8', 'surrogatepass') + b'\0')
        try:
            data = _read(root, name)
        except FileNotFoundError:
            digest.update(b'-missing-')
            continue
        except OSError:
            digest.update(b'-unreadable-')
            continue
        digest.update(hashlib.sha256(data).digest())
    return digest.hexdigest()


def verify(path: str) -> Policy:
    """:func:`artifact.load_artifact`, whatever the files hold raising
    nothing but :class:`artifact.ArtifactError`."""
    try:
        return artifact_mod.load_artifact(path)
    except artifact_mod.ArtifactError:
        raise
    except _DATA_ERRORS as e:
        raise artifact_mod.ArtifactError(
            f'{path}: {type(e).__name__}: {str(e)[:200]}') from None


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


def describe(target: str) -> str:
    """What a reader of ``target`` gets right now, for messages."""
    path = normalise(target)
    base = os.path.basename(path)
    try:
        if os.path.islink(path):
            where = f'{base} -> {os.readlink(path)}'
        elif os.path.isdir(path):
            where = f'{base}, a plain directory'
        elif os.path.lexists(path):
            return f'no policy ({base} is not a directory)'
        else:
            return f'no policy ({base} does not exist)'
        version = verify(path).version
    except artifact_mod.ArtifactError as e:
        return f'no valid policy ({where}: {str(e)[:200]})'
    except OSError as e:
        return f'an unknown policy ({path}: {e})'
    return f'policy {version!r} ({where})'


def _unchanged(target: str) -> str:
    return f'nothing was changed: {target} serves {describe(target)}'


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def copy_artifact(src: str, dst: str) -> None:
    """Copy the artifact files of ``src`` into new directory ``dst``, synced
    to disk and readable by the scheduler's user. Other files (training
    checkpoints, plots) are left behind: only the artifact is published.
    Each file must be a regular file inside ``src`` (a symlink leading out
    of it, a FIFO or a device is refused) within the loader's size cap.
    Raises OSError."""
    root = os.path.realpath(src)
    names = _artifact_files(root)
    os.mkdir(dst, 0o755)
    os.chmod(dst, 0o755)   # whatever the umask: nova must read it
    for name in names:
        data = _read(root, name)
        fd = os.open(os.path.join(dst, name),
                     os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                     | os.O_CLOEXEC, 0o644)
        with os.fdopen(fd, 'wb') as fout:
            os.fchmod(fout.fileno(), 0o644)
            fout.write(data)
            fout.flush()
            os.fsync(fout.fileno())
    _fsync_dir(dst)


class Snapshot(NamedTuple):
    path: str           # the verified private copy
    fingerprint: str
    policy: Policy      # as loaded from the copy


def snapshot(src: str) -> Snapshot:
    """Copy the artifact in ``src`` to a private temporary directory and
    verify it there. Evaluating and installing the copy means what is
    installed is exactly what was evaluated, even if the source is
    rewritten meanwhile. Raises ``ArtifactError`` (and nothing else for
    anything the files hold); the caller removes the copy's parent
    (``os.path.dirname(snapshot.path)``)."""
    if not os.path.isdir(src):
        raise artifact_mod.ArtifactError(
            f'{src}: not a directory' if os.path.lexists(src)
            else f'{src}: directory not found')
    parent = tempfile.mkdtemp(prefix='nova-rl-publish-')
    copy = os.path.join(parent, 'artifact')
    try:
        try:
            copy_artifact(src, copy)
        except OSError as e:
            raise artifact_mod.ArtifactError(
                f'{src}: cannot read the artifact: {e}') from None
        try:
            policy = verify(copy)
        except artifact_mod.ArtifactError as e:
            # Name the operator's directory, not the private copy.
            raise artifact_mod.ArtifactError(
                str(e).replace(copy, os.path.normpath(src))) from None
        return Snapshot(copy, fingerprint(copy), policy)
    except BaseException:
        shutil.rmtree(parent, ignore_errors=True)
        raise
