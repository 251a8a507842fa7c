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

The loader never trusts the files (they may be damaged, half-written or
hostile) and raises :class:`ArtifactError`, never another exception:

- both files are read through :func:`fileio.read_bounded`: a FIFO, device,
  directory or socket, a symlink leading out of the artifact directory, or
  a file over :data:`MAX_MANIFEST_BYTES` / :data:`MAX_WEIGHTS_BYTES` is
  refused before it is read;
- every manifest field is type-checked and every number checked finite and
  in range (see :func:`check_manifest`), nesting is bounded
  (:data:`MAX_MANIFEST_DEPTH`), and the architecture is bounded
  (:data:`MAX_ENSEMBLE_SIZE`, :data:`MAX_HIDDEN`, :data:`MAX_PARAMETERS`),
  because inference cost grows with it on every scheduling call;
- the npz is inspected before anything is decompressed: at most
  :data:`MAX_ARRAYS` members, each a ``.npy`` of a floating-point dtype
  (object dtypes, which would need unpickling, are refused) whose size,
  computed from its header, adds up to at most
  :data:`MAX_WEIGHTS_UNCOMPRESSED_BYTES` (a zip bomb is refused from its
  headers); the arrays are then read exactly as declared, never unpickled.
"""

from __future__ import annotations

import datetime
import hashlib
import io
import json
import math
import os
import struct
import zipfile
import zlib
from typing import Any, Mapping

import numpy as np

from nova_rl_weigher import features
from nova_rl_weigher import fileio
from nova_rl_weigher import policy as policy_mod

FORMAT = 'nova-rl-policy'
FORMAT_VERSION = 1
MANIFEST = 'manifest.json'
WEIGHTS = 'weights.npz'
#: Caps, checked before reading (file sizes) or before decompressing (array
#: sizes from the npy headers). Far above any sensible scorer (the bundled
#: policy: a 5 KB manifest, 60 KB of weights); they guard the scheduler's
#: memory and time against something absurd or hostile.
MAX_WEIGHTS_BYTES = 64 * 1024 * 1024
MAX_WEIGHTS_UNCOMPRESSED_BYTES = 64 * 1024 * 1024
MAX_MANIFEST_BYTES = 1024 * 1024
MAX_MANIFEST_DEPTH = 32
MAX_ARRAYS = 16
#: Architecture bounds: inference runs on every scheduling call and costs
#: about one multiply-add per parameter per candidate host, so an absurd
#: network is refused at load rather than discarded by the latency budget
#: after it has run. The parameter cap (all members together, 1 MiB as
#: float32) is 18 times the bundled policy's 14,565 (5 members x 32 hidden
#: units), which takes 4 ms for 1,000 hosts.
MAX_ENSEMBLE_SIZE = 64
MAX_HIDDEN = 1024
MAX_PARAMETERS = 1 << 18
#: Out-of-range slack, in spans of the training range on either side.
MAX_RANGE_TOLERANCE = 10.0
MAX_NAME_CHARS = 256              # policy_version, objective, weights_file


class ArtifactError(Exception):
    """The artifact is missing, unreadable or fails verification."""


def sha256_file(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, 'rb') as f:
        for chunk in iter(lambda: f.read(1 << 20), b''):
            digest.update(chunk)
    return digest.hexdigest()


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


# -- the weights file --------------------------------------------------------

def _zip_entry_count(data: bytes) -> int | None:
    """Entries the zip's end-of-central-directory record declares (None if
    there is none: zipfile will say what is wrong)."""
    start = max(0, len(data) - 22 - 0xFFFF)
    at = data.rfind(b'PK\x05\x06', start)
    if at < 0 or at + 22 > len(data):
        return None
    return struct.unpack_from('<H', data, at + 10)[0]


def read_npz(data: bytes, max_bytes: int,
             max_arrays: int = MAX_ARRAYS) -> dict[str, np.ndarray]:
    """The arrays of an ``np.savez`` file, checked before decompressing.

    Every member must be a ``.npy`` with a floating-point, non-object dtype;
    the sizes its header declares (and the zip's uncompressed sizes) must
    add up to at most ``max_bytes``, checked for all members before any
    array is read. Arrays are read exactly as their header declares, never
    unpickled. Raises :class:`ArtifactError`.
    """
    entries = _zip_entry_count(data)
    if entries is not None and entries > max_arrays:
        raise ArtifactError(f'{entries} members, more than {max_arrays}')
    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, OSError,
            EOFError, NotImplementedError) as e:
        raise ArtifactError(f'not a zip file: {str(e)[:200]}') from None
    with zf:
        infos = zf.infolist()
        if len(infos) > max_arrays:
            raise ArtifactError(f'{len(infos)} members, more than '
                                f'{max_arrays}')
        headers = {}
        total = declared = 0
        for info in infos:
            name = info.filename
            if not name.endswith('.npy') or name[:-4] in headers \
                    or '/' in name:
                raise ArtifactError(f'member {fileio.brief(name)} is not a '
                                    'distinct .npy array')
            declared += info.file_size
            if declared > max_bytes + 1024 * max_arrays:
                raise ArtifactError(f'members expand to more than '
                                    f'{max_bytes} bytes uncompressed (zip '
                                    'headers)')
            shape, fortran, dtype, offset = _npy_header(zf, info)
            count = math.prod(shape)
            total += count * dtype.itemsize
            if total > max_bytes:
                raise ArtifactError(f'arrays hold more than {max_bytes} bytes '
                                    f'uncompressed (npy headers; {name}: '
                                    f'shape {shape}, dtype {dtype})')
            headers[name[:-4]] = (info, shape, fortran, dtype, offset)
        arrays = {}
        for key, (info, shape, fortran, dtype, offset) in headers.items():
            nbytes = math.prod(shape) * dtype.itemsize
            try:
                with zf.open(info) as fp:
                    fp.read(offset)
                    raw = fp.read(nbytes)
            except (zipfile.BadZipFile, ValueError, OSError, EOFError,
                    NotImplementedError, zlib.error) as e:
                raise ArtifactError(f'{key}: {str(e)[:200]}') from None
            if len(raw) != nbytes:
                raise ArtifactError(f'{key}: {len(raw)} bytes of data, its '
                                    f'header declares {nbytes}')
            # A writable array, as np.load returns (the trainer copies the
            # policy's arrays into torch tensors).
            arrays[key] = np.frombuffer(bytearray(raw), dtype=dtype).reshape(
                shape, order='F' if fortran else 'C')
        return arrays


def _npy_header(zf: zipfile.ZipFile, info: zipfile.ZipInfo
                ) -> tuple[tuple[int, ...], bool, np.dtype, int]:
    fmt = np.lib.format
    name = info.filename
    try:
        with zf.open(info) as fp:
            major, minor = fmt.read_magic(fp)
            if (major, minor) == (1, 0):
                shape, fortran, dtype = fmt.read_array_header_1_0(fp)
            elif (major, minor) == (2, 0):
                shape, fortran, dtype = fmt.read_array_header_2_0(fp)
            else:
                raise ValueError(f'npy format {major}.{minor} not supported')
            offset = fp.tell()
    except Exception as e:  # noqa: BLE001 - numpy's parser raises many kinds
        raise ArtifactError(f'{fileio.brief(name)}: bad npy header: '
                            f'{str(e)[:200]}') from None
    if dtype.hasobject:
        raise ArtifactError(f'{name}: dtype {dtype} holds Python objects '
                            '(would need unpickling); refused')
    if dtype.kind != 'f' or dtype.fields is not None or dtype.subdtype:
        raise ArtifactError(f'{name}: dtype {dtype} is not floating point')
    if not isinstance(shape, tuple) or not all(
            type(d) is int and d >= 0 for d in shape) or len(shape) > 8:
        raise ArtifactError(f'{name}: bad shape {fileio.brief(shape)}')
    return shape, bool(fortran), dtype, offset


# -- the manifest ------------------------------------------------------------

class Spec:
    """What :func:`check_manifest` found the manifest to declare."""

    __slots__ = ('ensemble_size', 'hidden', 'weights_file', 'sha256',
                 'mean', 'std', 'feature_min', 'feature_max', 'tolerance',
                 'version')

    def __init__(self, **kw: Any) -> None:
        for k, v in kw.items():
            setattr(self, k, v)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _section(manifest: dict, name: str, required: bool = True) -> dict:
    value = manifest.get(name)
    if value is None and not required:
        return {}
    if not isinstance(value, dict):
        raise ArtifactError(f'manifest {name} must be an object, not '
                            f'{fileio.brief(value)}')
    return value


def _text(manifest: dict, name: str) -> str:
    value = manifest.get(name)
    if not isinstance(value, str) or not value:
        raise ArtifactError(f'manifest {name} must be a non-empty string, '
                            f'not {fileio.brief(value)}')
    if len(value) > MAX_NAME_CHARS or not value.isprintable():
        raise ArtifactError(f'manifest {name} {fileio.brief(value)} is longer '
                            f'than {MAX_NAME_CHARS} or not printable')
    return value


def _vector(manifest: dict, section: str, key: str, n: int) -> np.ndarray:
    values = _section(manifest, section).get(key)
    where = f'manifest {section}.{key}'
    if not isinstance(values, list) or len(values) != n:
        raise ArtifactError(f'{where} must be a list of {n} numbers, not '
                            f'{fileio.brief(values)}')
    out = np.empty(n, dtype=np.float64)
    for i, v in enumerate(values):
        if not _is_number(v):
            raise ArtifactError(f'{where}[{i}] is {fileio.brief(v)}, not a '
                                'number')
        try:
            out[i] = float(v)
        except OverflowError:
            raise ArtifactError(f'{where}[{i}] is {fileio.brief(v)}: too '
                                'large') from None
    with np.errstate(over='ignore'):
        vec = out.astype(np.float32)
    if not (np.isfinite(out).all() and np.isfinite(vec).all()):
        raise ArtifactError(f'{where} is not finite (as float32)')
    return vec


def _positive_int(value: Any, where: str, bound: int) -> int:
    if type(value) is not int or not 1 <= value <= bound:
        raise ArtifactError(f'{where} must be an integer from 1 to {bound}, '
                            f'not {fileio.brief(value)}')
    return value


def check_manifest(manifest: dict) -> Spec:
    """Check every field the weigher uses; raise :class:`ArtifactError`.

    Free-form fields (``provenance``, the rest of ``calibration``) are only
    type-checked. Bounds: ``ensemble_size`` 1..:data:`MAX_ENSEMBLE_SIZE`,
    ``architecture.hidden`` 1..:data:`MAX_HIDDEN`, their parameter count at
    most :data:`MAX_PARAMETERS`; ``normalisation`` mean and std finite (as
    float32), std > 0; ``feature_ranges`` min/max finite, min <= max, span
    finite, ``tolerance`` in 0..:data:`MAX_RANGE_TOLERANCE`;
    ``calibration`` an object or absent, its ``confidence_threshold`` in
    [0, 1] if present.
    """
    if not isinstance(manifest, dict):
        raise ArtifactError('manifest is not a JSON object')
    if manifest.get('format') != FORMAT:
        raise ArtifactError(f"format {fileio.brief(manifest.get('format'))} "
                            f'is not {FORMAT!r}')
    version = manifest.get('format_version')
    if type(version) is not int or version != FORMAT_VERSION:
        raise ArtifactError(
            f'format_version {fileio.brief(version)} is not supported '
            f'(expected {FORMAT_VERSION})')
    schema = manifest.get('feature_schema')
    if not isinstance(schema, dict) or schema.get('hash') \
            != features.SCHEMA_HASH:
        name = schema.get('name') if isinstance(schema, dict) else schema
        got = schema.get('hash') if isinstance(schema, dict) else None
        raise ArtifactError(
            f'feature schema {fileio.brief(name)} hash {fileio.brief(got)} '
            f'does not match this weigher ({features.SCHEMA_NAME} '
            f'v{features.SCHEMA_VERSION}, {features.SCHEMA_HASH})')
    arch = manifest.get('architecture')
    if not isinstance(arch, dict) \
            or arch.get('name') != policy_mod.ARCHITECTURE:
        name = arch.get('name') if isinstance(arch, dict) else arch
        raise ArtifactError(f'architecture {fileio.brief(name)} is not '
                            f'supported (expected {policy_mod.ARCHITECTURE})')
    k = _positive_int(manifest.get('ensemble_size'), 'manifest ensemble_size',
                      MAX_ENSEMBLE_SIZE)
    h = _positive_int(arch.get('hidden'), 'manifest architecture.hidden',
                      MAX_HIDDEN)
    f = features.NUM_FEATURES
    count = parameter_count(k, f, h)
    if count > MAX_PARAMETERS:
        raise ArtifactError(f'architecture of {k} members x {h} hidden units '
                            f'has {count} parameters, more than '
                            f'{MAX_PARAMETERS}')
    weights_name = manifest.get('weights_file', WEIGHTS)
    if (not isinstance(weights_name, str) or os.path.basename(weights_name)
            != weights_name or weights_name in ('', '.', '..')
            or len(weights_name) > MAX_NAME_CHARS or '\0' in weights_name):
        raise ArtifactError(f'weights_file {fileio.brief(weights_name)} must '
                            'be a plain file name inside the artifact '
                            'directory')
    sha = manifest.get('weights_sha256')
    if not isinstance(sha, str) or len(sha) != 64 or not all(
            c in '0123456789abcdef' for c in sha):
        raise ArtifactError(f'manifest weights_sha256 {fileio.brief(sha)} is '
                            'not a sha256 hex digest')
    mean = _vector(manifest, 'normalisation', 'mean', f)
    std = _vector(manifest, 'normalisation', 'std', f)
    if (std <= 0).any():
        raise ArtifactError('manifest normalisation.std must be positive')
    fmin = _vector(manifest, 'feature_ranges', 'min', f)
    fmax = _vector(manifest, 'feature_ranges', 'max', f)
    if (fmin > fmax).any():
        raise ArtifactError('manifest feature_ranges.min exceeds max')
    with np.errstate(over='ignore'):
        if not np.isfinite(fmax - fmin).all():
            raise ArtifactError('manifest feature_ranges: max - min is not '
                                'finite (as float32)')
    tolerance = manifest['feature_ranges'].get('tolerance', 0.0)
    # Range first: NaN fails it, and a huge int never reaches float().
    if not _is_number(tolerance) \
            or not 0 <= tolerance <= MAX_RANGE_TOLERANCE:
        raise ArtifactError(
            'manifest feature_ranges.tolerance must be a number from 0 to '
            f'{MAX_RANGE_TOLERANCE}, not {fileio.brief(tolerance)}')
    calibration = _section(manifest, 'calibration', required=False)
    if 'confidence_threshold' in calibration:
        threshold = calibration['confidence_threshold']
        if not _is_number(threshold) or not 0 <= threshold <= 1:
            raise ArtifactError(
                'manifest calibration.confidence_threshold must be a number '
                f'from 0 to 1, not {fileio.brief(threshold)}')
    version_text = _text(manifest, 'policy_version')
    _text(manifest, 'objective')
    _section(manifest, 'provenance')
    return Spec(ensemble_size=k, hidden=h, weights_file=weights_name,
                sha256=sha, mean=mean, std=std, feature_min=fmin,
                feature_max=fmax, tolerance=float(tolerance),
                version=version_text)


def parameter_count(k: int, f: int, h: int) -> int:
    return sum(math.prod(shape) for shape in
               policy_mod.expected_shapes(k, f, h).values())


def _build(spec: Spec, manifest: dict, arrays: dict[str, np.ndarray]
           ) -> policy_mod.Policy:
    expected = policy_mod.expected_shapes(
        spec.ensemble_size, features.NUM_FEATURES, spec.hidden)
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
