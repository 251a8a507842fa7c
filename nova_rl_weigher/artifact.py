"""The policy artifact: a directory with ``manifest.json`` and ``weights.npz``.

``weights.npz`` holds the network's arrays (see :data:`policy.PARAM_SHAPES`)
and is loaded with ``allow_pickle=False``: nothing in an artifact is ever
unpickled. ``manifest.json`` says what the weights mean and how far they can
be trusted::

    {
      "format": "nova-rl-policy", "format_version": 1,
      "policy_version": "...",                 # shown in logs and decisions
      "architecture": {"name": "deepsets-mlp-v1", "hidden": 32},
      "ensemble_size": 5,
      "feature_schema": {"name": ..., "version": ..., "hash": ..., "features": [...]},
      "normalisation": {"mean": [...], "std": [...]},
      "feature_ranges": {"min": [...], "max": [...], "tolerance": 0.05},
      "objective": "packing",
      "calibration": {"confidence_threshold": 0.8, ...},   # optional
      "provenance": {...},                     # how it was made, free-form
      "weights_file": "weights.npz",
      "weights_sha256": "..."
    }

:func:`write_artifact` is the only writer (the trainer and the tests use it);
:func:`load_artifact` verifies every field, the checksum, shapes and
finiteness before returning a :class:`policy.Policy`, and raises
:class:`ArtifactError` with the reason otherwise.
"""

from __future__ import annotations

import datetime
import hashlib
import io
import json
import os
import tempfile
from typing import Any, Mapping

import numpy as np

from nova_rl_weigher import features
from nova_rl_weigher import policy as policy_mod

FORMAT = 'nova-rl-policy'
FORMAT_VERSION = 1
MANIFEST = 'manifest.json'
WEIGHTS = 'weights.npz'
# Far above any sensible scorer; guards against loading something absurd
# into the scheduler's memory.
MAX_WEIGHTS_BYTES = 64 * 1024 * 1024
MAX_MANIFEST_BYTES = 1024 * 1024


class ArtifactError(Exception):
    """The artifact is missing, unreadable or fails verification."""


def sha256_file(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, 'rb') as f:
        for chunk in iter(lambda: f.read(1 << 20), b''):
            digest.update(chunk)
    return digest.hexdigest()


def _atomic_write(path: str, data: bytes) -> None:
    directory = os.path.dirname(path) or '.'
    fd, tmp = tempfile.mkstemp(prefix='.tmp-', dir=directory)
    try:
        # Readable by the nova user that runs the scheduler.
        os.fchmod(fd, 0o644)
        with os.fdopen(fd, 'wb') as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def write_artifact(path: str, params: Mapping[str, np.ndarray], *,
                   mean: np.ndarray, std: np.ndarray,
                   feature_min: np.ndarray, feature_max: np.ndarray,
                   objective: str, provenance: Mapping[str, Any],
                   policy_version: str | None = None,
                   range_tolerance: float = 0.05,
                   calibration: Mapping[str, Any] | None = None) -> dict:
    """Write a verified artifact to directory ``path`` and return its manifest.

    The weights are written first and the manifest last, each atomically, so
    a reader sees either the old artifact, a checksum mismatch it refuses, or
    the new artifact, never a half-written file it accepts.
    """
    arrays = {k: np.ascontiguousarray(v, dtype=np.float32)
              for k, v in params.items()}
    k = arrays['b3'].shape[0]
    hidden = arrays['b1'].shape[1]
    vectors = {'mean': mean, 'std': std,
               'feature_min': feature_min, 'feature_max': feature_max}
    vectors = {n: np.asarray(v, dtype=np.float64) for n, v in vectors.items()}
    os.makedirs(path, exist_ok=True)
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    weights_bytes = buf.getvalue()
    manifest = {
        'format': FORMAT,
        'format_version': FORMAT_VERSION,
        'policy_version': policy_version or (
            'policy-' + hashlib.sha256(weights_bytes).hexdigest()[:12]),
        'architecture': {'name': policy_mod.ARCHITECTURE, 'hidden': hidden},
        'ensemble_size': k,
        'feature_schema': features.schema_description(),
        'normalisation': {'mean': vectors['mean'].tolist(),
                          'std': vectors['std'].tolist()},
        'feature_ranges': {'min': vectors['feature_min'].tolist(),
                           'max': vectors['feature_max'].tolist(),
                           'tolerance': float(range_tolerance)},
        'objective': objective,
        'calibration': dict(calibration or {}),
        'provenance': {
            'created_at': datetime.datetime.now(
                datetime.timezone.utc).isoformat(timespec='seconds'),
            **dict(provenance)},
        'weights_file': WEIGHTS,
        'weights_sha256': hashlib.sha256(weights_bytes).hexdigest(),
    }
    # Verify before publishing: refuse to write what the loader would refuse.
    _build_policy(manifest, {n: a.copy() for n, a in arrays.items()})
    _atomic_write(os.path.join(path, WEIGHTS), weights_bytes)
    _atomic_write(os.path.join(path, MANIFEST),
                  (json.dumps(manifest, indent=2) + '\n').encode('utf-8'))
    return manifest


def read_manifest(path: str) -> dict:
    manifest_path = os.path.join(path, MANIFEST)
    try:
        size = os.path.getsize(manifest_path)
        if size > MAX_MANIFEST_BYTES:
            raise ArtifactError(f'{manifest_path}: {size} bytes, too large')
        with open(manifest_path, 'rb') as f:
            manifest = json.loads(f.read().decode('utf-8'))
    except ArtifactError:
        raise
    except FileNotFoundError:
        raise ArtifactError(f'{manifest_path}: not found') from None
    except (OSError, ValueError) as e:
        raise ArtifactError(f'{manifest_path}: unreadable: {e}') from None
    if not isinstance(manifest, dict):
        raise ArtifactError(f'{manifest_path}: not a JSON object')
    return manifest


def load_artifact(path: str) -> policy_mod.Policy:
    """Load and verify the artifact in directory ``path``."""
    manifest = read_manifest(path)
    weights_name = manifest.get('weights_file', WEIGHTS)
    if (not isinstance(weights_name, str) or os.path.basename(weights_name)
            != weights_name or weights_name in ('', '.', '..')):
        raise ArtifactError(f'weights_file {weights_name!r} must be a plain '
                            'file name inside the artifact directory')
    weights_path = os.path.join(path, weights_name)
    try:
        size = os.path.getsize(weights_path)
    except OSError as e:
        raise ArtifactError(f'{weights_path}: {e.strerror}') from None
    if size > MAX_WEIGHTS_BYTES:
        raise ArtifactError(f'{weights_path}: {size} bytes, too large')
    with open(weights_path, 'rb') as f:
        data = f.read()
    actual = hashlib.sha256(data).hexdigest()
    if actual != manifest.get('weights_sha256'):
        raise ArtifactError(
            f'{weights_path}: sha256 {actual} does not match the manifest '
            f"({manifest.get('weights_sha256')!r})")
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            arrays = {name: npz[name] for name in npz.files}
    except Exception as e:
        raise ArtifactError(f'{weights_path}: not a valid npz: {e}') from None
    return _build_policy(manifest, arrays)


def _vector(manifest: dict, section: str, key: str, n: int) -> np.ndarray:
    try:
        values = manifest[section][key]
        vec = np.asarray(values, dtype=np.float32)
    except (KeyError, TypeError, ValueError):
        raise ArtifactError(f'manifest {section}.{key} missing or not a list '
                            'of numbers') from None
    if vec.shape != (n,):
        raise ArtifactError(f'manifest {section}.{key} has shape {vec.shape}, '
                            f'expected ({n},)')
    if not np.isfinite(vec).all():
        raise ArtifactError(f'manifest {section}.{key} is not finite')
    return vec


def _build_policy(manifest: dict, arrays: dict[str, np.ndarray]
                  ) -> policy_mod.Policy:
    if manifest.get('format') != FORMAT:
        raise ArtifactError(f"format {manifest.get('format')!r} is not "
                            f'{FORMAT!r}')
    if manifest.get('format_version') != FORMAT_VERSION:
        raise ArtifactError(
            f"format_version {manifest.get('format_version')!r} is not "
            f'supported (expected {FORMAT_VERSION})')
    schema = manifest.get('feature_schema') or {}
    if not isinstance(schema, dict) or schema.get('hash') != features.SCHEMA_HASH:
        raise ArtifactError(
            f"feature schema {schema.get('name') if isinstance(schema, dict) else schema!r} "
            f"hash {schema.get('hash') if isinstance(schema, dict) else None!r} "
            f'does not match this weigher ({features.SCHEMA_NAME} '
            f'v{features.SCHEMA_VERSION}, {features.SCHEMA_HASH})')
    arch = manifest.get('architecture') or {}
    if not isinstance(arch, dict) or arch.get('name') != policy_mod.ARCHITECTURE:
        raise ArtifactError(f'architecture {arch!r} is not supported')
    k, h, f = manifest.get('ensemble_size'), arch.get('hidden'), \
        features.NUM_FEATURES
    if not (isinstance(k, int) and k >= 1 and isinstance(h, int) and h >= 1):
        raise ArtifactError('ensemble_size and architecture.hidden must be '
                            'positive integers')
    expected = policy_mod.expected_shapes(k, f, h)
    if set(arrays) != set(expected):
        raise ArtifactError(f'weights hold arrays {sorted(arrays)}, expected '
                            f'{sorted(expected)}')
    params = {}
    for name, shape in expected.items():
        arr = arrays[name]
        if arr.dtype.kind != 'f':
            raise ArtifactError(f'weights {name}: dtype {arr.dtype} is not '
                                'floating point')
        if arr.shape != shape:
            raise ArtifactError(f'weights {name}: shape {arr.shape}, '
                                f'expected {shape}')
        if not np.isfinite(arr).all():
            raise ArtifactError(f'weights {name}: contains NaN or infinity')
        params[name] = np.ascontiguousarray(arr, dtype=np.float32)
    mean = _vector(manifest, 'normalisation', 'mean', f)
    std = _vector(manifest, 'normalisation', 'std', f)
    if (std <= 0).any():
        raise ArtifactError('manifest normalisation.std must be positive')
    fmin = _vector(manifest, 'feature_ranges', 'min', f)
    fmax = _vector(manifest, 'feature_ranges', 'max', f)
    if (fmin > fmax).any():
        raise ArtifactError('manifest feature_ranges.min exceeds max')
    tolerance = manifest['feature_ranges'].get('tolerance', 0.0)
    if not isinstance(tolerance, (int, float)) or tolerance < 0:
        raise ArtifactError('manifest feature_ranges.tolerance must be a '
                            'non-negative number')
    version = manifest.get('policy_version')
    if not isinstance(version, str) or not version:
        raise ArtifactError('manifest policy_version must be a non-empty '
                            'string')
    if not isinstance(manifest.get('objective'), str):
        raise ArtifactError('manifest objective must be a string')
    if not isinstance(manifest.get('provenance'), dict):
        raise ArtifactError('manifest provenance must be an object')
    return policy_mod.Policy(
        params=params, mean=mean, std=std, feature_min=fmin,
        feature_max=fmax, range_tolerance=float(tolerance),
        manifest=manifest, version=version)


def artifact_signature(path: str) -> tuple | None:
    """A cheap fingerprint of the artifact files, to notice changes on disk."""
    sig = []
    for name in (MANIFEST, WEIGHTS):
        try:
            st = os.stat(os.path.join(path, name))
        except OSError:
            sig.append(None)
            continue
        sig.append((st.st_ino, st.st_size, st.st_mtime_ns))
    # A directory swapped in through a symlink changes its resolved path.
    return (os.path.realpath(path), *sig)
