"""The policy artifact: a directory with ``manifest.json`` and ``weights.npz``.

``weights.npz`` holds the network's arrays (see :data:`policy.PARAM_SHAPES`)
and is loaded with ``allow_pickle=False``: nothing in an artifact is ever
unpickled. ``manifest.json`` says what the weights mean and how far they can
be trusted::

    {
      "format": "nova-rl-policy", "format_version": 1,   # 2 with "shield"
      "policy_version": "...",                 # shown in logs and decisions
      "architecture": {"name": "deepsets-mlp-v1", "hidden": 32},
      "ensemble_size": 5,
      "feature_schema": {"name": ..., "version": ..., "hash": ...,
                         "features": [...]},
      "normalisation": {"mean": [...], "std": [...]},
      "feature_ranges": {"min": [...], "max": [...], "tolerance": 0.05},
      "objective": "packing",
      "calibration": {"confidence_threshold": 0.8, ...},   # optional
                         # or {"act": "never", "confidence_threshold": null}
      "nova_weighers": {"name": "nova-default",            # optional
                        "weighers": ["nova.scheduler.weights.ram.RAMWeigher",
                                     ...],
                        "multipliers": {"ram_weight_multiplier": 1.0, ...}},
      "shield": {"max_projected_cpu_peak": 0.7},           # optional
      "provenance": {...},                     # how it was made, free-form
      "weights_file": "weights.npz",
      "weights_sha256": "..."
    }

``feature_schema.hash`` is one of :data:`features.SCHEMAS` (v1 artifacts,
such as the bundled policy, load and run on v1's columns, the first 24 of
v2's); the weigher computes the columns of the schema the policy declares.

``calibration.act`` ``never`` says the policy must not act (the trainer's
calibration found no confidence level at which it is at least as good as
its fallback); ``nova_weighers`` is the Nova weigher configuration it was
trained with, which the gate compares with the running scheduler's;
``shield`` bounds the hosts the policy may prefer (schema v2 only, see
:mod:`nova_rl_weigher.shield`). All three are optional: a manifest without
them loads and runs as before (see :mod:`nova_rl_weigher.gate`).

:func:`write_artifact` is the only writer (the trainer and the tests use it);
:func:`load_artifact` verifies every field, the checksum, shapes and
finiteness before returning a :class:`policy.Policy`, and raises
:class:`ArtifactError` with the reason otherwise.

The loader never trusts the files (they may be damaged, half-written or
hostile) and raises :class:`ArtifactError`, never another exception:

- both files are read through :func:`fileio.read_bounded`: a FIFO, device,
  directory or socket, a symlink leading out of the artifact directory, or
  a file over :data:`MAX_MANIFEST_BYTES` / :data:`MAX_WEIGHTS_BYTES` is
  refused before it is read;
- every manifest field is checked by :func:`manifest.check_manifest`
  (types, finite numbers in range, bounded nesting and architecture; the
  caps are in :mod:`manifest`);
- the npz is inspected before anything is decompressed and never
  unpickled (:func:`npz.read_npz`).

The manifest checker, the npz reader, :class:`ArtifactError` and the caps
live in :mod:`manifest` and :mod:`npz`; the names are also importable from
here, as before.
"""

from __future__ import annotations

import datetime
import hashlib
import io
import json
import os
from typing import Any, Mapping

import numpy as np

from nova_rl_weigher import features
from nova_rl_weigher import fileio
from nova_rl_weigher.manifest import ArtifactError
from nova_rl_weigher.manifest import check_manifest
from nova_rl_weigher.manifest import FORMAT
from nova_rl_weigher.manifest import FORMAT_VERSION
from nova_rl_weigher.manifest import FORMAT_VERSION_SHIELD
from nova_rl_weigher.manifest import MANIFEST
from nova_rl_weigher.manifest import MAX_ARRAYS
from nova_rl_weigher.manifest import MAX_ENSEMBLE_SIZE
from nova_rl_weigher.manifest import MAX_HIDDEN
from nova_rl_weigher.manifest import MAX_MANIFEST_BYTES
from nova_rl_weigher.manifest import MAX_MANIFEST_DEPTH
from nova_rl_weigher.manifest import MAX_NAME_CHARS
from nova_rl_weigher.manifest import MAX_PARAMETERS
from nova_rl_weigher.manifest import MAX_RANGE_TOLERANCE
from nova_rl_weigher.manifest import MAX_WEIGHTS_BYTES
from nova_rl_weigher.manifest import MAX_WEIGHTS_UNCOMPRESSED_BYTES
from nova_rl_weigher.manifest import parameter_count
from nova_rl_weigher.manifest import Spec
from nova_rl_weigher.manifest import WEIGHTS
# Called by that name in this module, so a test may replace it here.
from nova_rl_weigher.npz import read_npz
from nova_rl_weigher import policy as policy_mod

#: This module's API, including the names it re-exports from
#: :mod:`manifest` and :mod:`npz` for its callers.
__all__ = [
    'FORMAT', 'FORMAT_VERSION', 'FORMAT_VERSION_SHIELD', 'MANIFEST',
    'MAX_ARRAYS', 'MAX_ENSEMBLE_SIZE', 'MAX_HIDDEN', 'MAX_MANIFEST_BYTES',
    'MAX_MANIFEST_DEPTH',
    'MAX_NAME_CHARS', 'MAX_PARAMETERS', 'MAX_RANGE_TOLERANCE',
    'MAX_WEIGHTS_BYTES', 'MAX_WEIGHTS_UNCOMPRESSED_BYTES', 'WEIGHTS',
    'ArtifactError', 'Spec', 'artifact_signature', 'check_manifest',
    'load_artifact', 'parameter_count', 'read_manifest', 'read_npz',
    'sha256_file', 'write_artifact']


def sha256_file(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, 'rb') as f:
        for chunk in iter(lambda: f.read(1 << 20), b''):
            digest.update(chunk)
    return digest.hexdigest()


def _schema_of(arrays: Mapping[str, np.ndarray]) -> features.Schema:
    """The feature schema the weights are for: the one of their width."""
    try:
        return features.schema_for_width(arrays['W1'].shape[1])
    except (KeyError, IndexError, ValueError) as e:
        raise ArtifactError(f'weights W1: {e}') from None


def write_artifact(path: str, params: Mapping[str, np.ndarray], *,
                   mean: np.ndarray, std: np.ndarray,
                   feature_min: np.ndarray, feature_max: np.ndarray,
                   objective: str, provenance: Mapping[str, Any],
                   policy_version: str | None = None,
                   range_tolerance: float = 0.05,
                   calibration: Mapping[str, Any] | None = None,
                   nova_weighers: Mapping[str, Any] | None = None,
                   shield: Mapping[str, Any] | None = None) -> dict:
    """Write a verified artifact to directory ``path`` and return its manifest.

    ``nova_weighers`` (the Nova weigher configuration trained with, see
    :func:`manifest.check_nova_weighers`) and ``shield`` (see
    :mod:`shield`) are written only when given. The
    feature schema recorded is the one of the weights' width (v1 or v2,
    :data:`features.SCHEMAS`).

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
        'format_version': (FORMAT_VERSION if shield is None
                           else FORMAT_VERSION_SHIELD),
        'policy_version': policy_version or (
            'policy-' + hashlib.sha256(weights_bytes).hexdigest()[:12]),
        'architecture': {'name': policy_mod.ARCHITECTURE, 'hidden': hidden},
        'ensemble_size': k,
        'feature_schema': _schema_of(arrays).description(),
        'normalisation': {'mean': vectors['mean'].tolist(),
                          'std': vectors['std'].tolist()},
        'feature_ranges': {'min': vectors['feature_min'].tolist(),
                           'max': vectors['feature_max'].tolist(),
                           'tolerance': float(range_tolerance)},
        'objective': objective,
        'calibration': dict(calibration or {}),
        **({'nova_weighers': _plain(nova_weighers)}
           if nova_weighers is not None else {}),
        **({'shield': _plain(shield)} if shield is not None else {}),
        'provenance': {
            'created_at': datetime.datetime.now(
                datetime.timezone.utc).isoformat(timespec='seconds'),
            **dict(provenance)},
        'weights_file': WEIGHTS,
        'weights_sha256': hashlib.sha256(weights_bytes).hexdigest(),
    }
    # Verify before publishing: refuse to write what the loader would refuse
    # (the manifest as the loader will decode it, the arrays as stored).
    text = json.dumps(manifest, indent=2) + '\n'
    data = text.encode('utf-8')
    if len(data) > MAX_MANIFEST_BYTES:
        raise ArtifactError(f'manifest of {len(data)} bytes, more than '
                            f'{MAX_MANIFEST_BYTES}')
    try:
        decoded = fileio.decode_json(data)
    except ValueError as e:
        raise ArtifactError(f'manifest: {e}') from None
    if _depth(decoded, MAX_MANIFEST_DEPTH) > MAX_MANIFEST_DEPTH:
        raise ArtifactError(f'manifest nested more than {MAX_MANIFEST_DEPTH} '
                            'levels deep')
    _build_policy(decoded, read_npz(weights_bytes,
                                    MAX_WEIGHTS_UNCOMPRESSED_BYTES))
    fileio.atomic_write(os.path.join(path, WEIGHTS), weights_bytes)
    fileio.atomic_write(os.path.join(path, MANIFEST), data)
    return manifest


def _plain(value: Any) -> Any:
    """Mappings and sequences as JSON objects and lists (e.g. a
    ``nova_weighers`` given with tuples or frozen mappings)."""
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def read_manifest(path: str) -> dict:
    """The decoded manifest of the artifact in directory ``path``.

    Checks that it is a bounded, regular, readable file inside the directory
    holding JSON of bounded nesting with an object at the top; its fields
    are checked by :func:`check_manifest`. Raises :class:`ArtifactError`.
    """
    return _read_manifest(os.path.realpath(path))


def _read_manifest(directory: str) -> dict:
    manifest_path = os.path.join(directory, MANIFEST)
    try:
        data, _ = fileio.read_bounded(manifest_path, MAX_MANIFEST_BYTES,
                                      allowed_root=directory)
    except FileNotFoundError:
        raise ArtifactError(f'{manifest_path}: not found') from None
    except fileio.FileRefused as e:
        raise ArtifactError(f'{e} (refused)') from None
    except OSError as e:
        raise ArtifactError(f'{manifest_path}: unreadable: '
                            f'{e.strerror or e}') from None
    try:
        manifest = fileio.decode_json(data)
    except ValueError as e:
        raise ArtifactError(f'{manifest_path}: unreadable: {e}') from None
    if not isinstance(manifest, dict):
        raise ArtifactError(f'{manifest_path}: not a JSON object')
    depth = _depth(manifest, MAX_MANIFEST_DEPTH)
    if depth > MAX_MANIFEST_DEPTH:
        raise ArtifactError(f'{manifest_path}: nested more than '
                            f'{MAX_MANIFEST_DEPTH} levels deep')
    return manifest


def _depth(doc: Any, limit: int) -> int:
    """Nesting depth of a decoded JSON value, without recursion; stops
    counting past ``limit``."""
    deepest = 0
    stack = [(doc, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict):
            children = value.values()
        elif isinstance(value, list):
            children = value
        else:
            continue
        deepest = max(deepest, depth)
        if depth > limit:
            return depth
        stack.extend((child, depth + 1) for child in children
                     if isinstance(child, (dict, list)))
    return deepest


def load_artifact(path: str) -> policy_mod.Policy:
    """Load and verify the artifact in directory ``path``.

    Raises :class:`ArtifactError` with a one-line reason, and nothing else,
    whatever the files hold. Both files are read from the directory
    ``path`` resolves to at the start, so a symlink switched to another
    version meanwhile cannot mix two versions' files.
    """
    try:
        return _load_artifact(os.path.realpath(path))
    except ArtifactError:
        raise
    except Exception as e:  # noqa: BLE001 - a bug here must not be a crash
        raise ArtifactError(f'{path}: unexpected {type(e).__name__} while '
                            f'verifying: {str(e)[:200]}') from None


def _load_artifact(directory: str) -> policy_mod.Policy:
    manifest = _read_manifest(directory)
    spec = check_manifest(manifest)
    weights_path = os.path.join(directory, spec.weights_file)
    try:
        data, _ = fileio.read_bounded(weights_path, MAX_WEIGHTS_BYTES,
                                      allowed_root=directory)
    except fileio.FileRefused as e:
        raise ArtifactError(f'{e} (refused)') from None
    except OSError as e:
        raise ArtifactError(f'{weights_path}: {e.strerror or e}') from None
    actual = hashlib.sha256(data).hexdigest()
    if actual != spec.sha256:
        raise ArtifactError(
            f'{weights_path}: sha256 {actual} does not match the manifest '
            f'({spec.sha256!r})')
    try:
        arrays = read_npz(data, MAX_WEIGHTS_UNCOMPRESSED_BYTES)
    except ArtifactError as e:
        raise ArtifactError(f'{weights_path}: not a valid npz: {e}') from None
    return _build(spec, manifest, arrays)


def _build(spec: Spec, manifest: dict, arrays: dict[str, np.ndarray]
           ) -> policy_mod.Policy:
    expected = policy_mod.expected_shapes(
        spec.ensemble_size, spec.schema.num_features, spec.hidden)
    if set(arrays) != set(expected):
        raise ArtifactError(f'weights hold arrays '
                            f'{sorted(arrays)[:MAX_ARRAYS]}, expected '
                            f'{sorted(expected)}')
    params = {}
    for name, shape in expected.items():
        arr = arrays[name]
        if arr.dtype.kind != 'f' or arr.dtype.hasobject:
            raise ArtifactError(f'weights {name}: dtype {arr.dtype} is not '
                                'floating point')
        if arr.shape != shape:
            raise ArtifactError(f'weights {name}: shape {arr.shape}, '
                                f'expected {shape}')
        with np.errstate(over='ignore', invalid='ignore'):
            converted = np.ascontiguousarray(arr, dtype=np.float32)
        if not (np.isfinite(arr).all() and np.isfinite(converted).all()):
            raise ArtifactError(f'weights {name}: contains NaN or infinity'
                                ' (as float32)')
        params[name] = converted
    return policy_mod.Policy(
        params=params, mean=spec.mean, std=spec.std,
        feature_min=spec.feature_min, feature_max=spec.feature_max,
        range_tolerance=spec.tolerance, manifest=manifest,
        version=spec.version)


def _build_policy(manifest: dict, arrays: dict[str, np.ndarray]
                  ) -> policy_mod.Policy:
    """Verify a manifest and its arrays together (the writer's check)."""
    return _build(check_manifest(manifest), manifest, arrays)


def artifact_signature(path: str) -> tuple:
    """A cheap fingerprint of the artifact files, to notice changes on disk:
    the directory ``path`` resolves to (a directory swapped in through a
    symlink changes it) and the :class:`fileio.FileVersion` of the manifest
    and weights file (``None`` when missing). Two ``stat`` calls and a
    ``realpath``; never opens a file."""
    directory = os.path.realpath(path)
    sig: list = [directory]
    for name in (MANIFEST, WEIGHTS):
        try:
            sig.append(fileio.version_of(os.path.join(directory, name)))
        except OSError:
            sig.append(None)
    return tuple(sig)
