"""The policy artifact's manifest: its fields, their bounds, and the caps.

:func:`check_manifest` is the checker :func:`artifact.load_artifact` and
:func:`artifact.write_artifact` run on a decoded ``manifest.json`` (the
format is in :mod:`artifact`); it raises :class:`ArtifactError`, never
another exception:

- every manifest field is type-checked and every number checked finite and
  in range (see :func:`check_manifest`), nesting is bounded
  (:data:`MAX_MANIFEST_DEPTH`), and the architecture is bounded
  (:data:`MAX_ENSEMBLE_SIZE`, :data:`MAX_HIDDEN`, :data:`MAX_PARAMETERS`),
  because inference cost grows with it on every scheduling call.

The caps on the files and arrays of an artifact are here too, with the
format's names, so that :mod:`npz` and :mod:`artifact` share one
definition of each.
"""

from __future__ import annotations

import math
import os
from typing import Any

import numpy as np

from nova_rl_weigher import features
from nova_rl_weigher import fileio
from nova_rl_weigher import policy as policy_mod
from nova_rl_weigher import shield as shield_mod

FORMAT = 'nova-rl-policy'
FORMAT_VERSION = 1
#: The format version of a manifest with a ``shield``: a weigher from before
#: the shield ignores fields it does not know, so it would run the policy
#: unshielded; it refuses this version instead (and keeps its previous
#: policy). Manifests without a shield stay version 1.
FORMAT_VERSION_SHIELD = 2
FORMAT_VERSIONS = (FORMAT_VERSION, FORMAT_VERSION_SHIELD)
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
#: ``nova_weighers``: at most this many weighers and multipliers (Nova 34
#: has 13 weighers and 12 multipliers).
MAX_NOVA_WEIGHERS = 64
#: ``shield.max_projected_cpu_peak``: a projected peak above all of a
#: host's cores is overload already, so a higher limit shields nothing.
MAX_SHIELD_LIMIT = 1.0
#: ``calibration.act``: ``gated`` (act at or above
#: ``confidence_threshold``; the meaning when absent) or ``never`` (the
#: calibration found no confidence level at which the policy is at least as
#: good as its fallback: it must not act, ``confidence_threshold`` is null).
ACT_GATED = 'gated'
ACT_NEVER = 'never'
CALIBRATION_ACTS = (ACT_GATED, ACT_NEVER)


class ArtifactError(Exception):
    """The artifact is missing, unreadable or fails verification."""


class Spec:
    """What :func:`check_manifest` found the manifest to declare."""

    __slots__ = ('ensemble_size', 'hidden', 'weights_file', 'sha256',
                 'mean', 'std', 'feature_min', 'feature_max', 'tolerance',
                 'version', 'act', 'nova_weighers', 'schema')

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
    return _name(manifest.get(name), f'manifest {name}')


def _name(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value:
        raise ArtifactError(f'{where} must be a non-empty string, '
                            f'not {fileio.brief(value)}')
    if len(value) > MAX_NAME_CHARS or not value.isprintable():
        raise ArtifactError(f'{where} {fileio.brief(value)} is longer '
                            f'than {MAX_NAME_CHARS} or not printable')
    return value


def _finite(value: Any, where: str) -> float:
    """A finite number (not a bool; a huge int is refused, not a crash)."""
    if not _is_number(value):
        raise ArtifactError(f'{where} must be a number, not '
                            f'{fileio.brief(value)}')
    try:
        number = float(value)
    except OverflowError:
        number = math.inf
    if not math.isfinite(number):
        raise ArtifactError(f'{where} must be finite, not '
                            f'{fileio.brief(value)}')
    return number


def check_calibration(manifest: dict) -> str:
    """Check ``calibration`` (an object or absent); return its ``act``.

    ``act`` is :data:`ACT_GATED` (also when absent) or :data:`ACT_NEVER`.
    ``confidence_threshold``, if present, is a number in [0, 1], or null
    with ``act: never`` (and only then: a never-act policy has no
    threshold).
    """
    calibration = _section(manifest, 'calibration', required=False)
    act = calibration.get('act', ACT_GATED)
    if act not in CALIBRATION_ACTS:
        raise ArtifactError(
            'manifest calibration.act must be one of '
            f'{", ".join(CALIBRATION_ACTS)}, not {fileio.brief(act)}')
    if 'confidence_threshold' in calibration:
        threshold = calibration['confidence_threshold']
        if act == ACT_NEVER:
            if threshold is not None:
                raise ArtifactError(
                    'manifest calibration.act is never: '
                    'calibration.confidence_threshold must be null, not '
                    f'{fileio.brief(threshold)}')
        elif not _is_number(threshold) or not 0 <= threshold <= 1:
            raise ArtifactError(
                'manifest calibration.confidence_threshold must be a number '
                f'from 0 to 1, not {fileio.brief(threshold)}'
                + (' (null only with calibration.act never)'
                   if threshold is None else ''))
    return act


def check_nova_weighers(manifest: dict) -> dict | None:
    """Check ``nova_weighers`` (an object or absent) and return it.

    The Nova weigher configuration the policy was trained with: ``name``
    (a label, e.g. ``nova-default``), ``weighers`` (the weigher classes
    whose weights the policy saw, as ``weight_classes`` names them) and
    ``multipliers`` (``[filter_scheduler]`` option name -> value, each a
    finite number); at most :data:`MAX_NOVA_WEIGHERS` of each. Absent (a
    manifest written before the field existed): None, nothing is checked
    against the running Nova.
    """
    if manifest.get('nova_weighers') is None:
        return None
    value = _section(manifest, 'nova_weighers')
    where = 'manifest nova_weighers'
    _name(value.get('name'), f'{where}.name')
    weighers = value.get('weighers')
    if not isinstance(weighers, list) or len(weighers) > MAX_NOVA_WEIGHERS:
        raise ArtifactError(f'{where}.weighers must be a list of at most '
                            f'{MAX_NOVA_WEIGHERS} names, not '
                            f'{fileio.brief(weighers)}')
    for i, name in enumerate(weighers):
        _name(name, f'{where}.weighers[{i}]')
    multipliers = value.get('multipliers')
    if not isinstance(multipliers, dict) \
            or len(multipliers) > MAX_NOVA_WEIGHERS:
        raise ArtifactError(f'{where}.multipliers must be an object of at '
                            f'most {MAX_NOVA_WEIGHERS} numbers, not '
                            f'{fileio.brief(multipliers)}')
    for key, number in multipliers.items():
        _name(key, f'{where}.multipliers key')
        _finite(number, f'{where}.multipliers.{key}')
    return value


def check_shield(manifest: dict, schema: features.Schema) -> float | None:
    """Check ``shield`` (an object or absent) and return its limit.

    ``{"max_projected_cpu_peak": X}``: the share of a host's physical cores
    its projected CPU peak after the placement may reach for the policy to
    prefer it (:mod:`nova_rl_weigher.shield`), a number in (0,
    :data:`MAX_SHIELD_LIMIT`]. The projection reads schema v2's columns, so
    a v1 policy cannot carry one. Absent: None, no shield.
    """
    if manifest.get('shield') is None:
        return None
    value = _section(manifest, 'shield')
    where = 'manifest shield'
    key = shield_mod.MAX_PROJECTED_CPU_PEAK
    limit = _finite(value.get(key), f'{where}.{key}')
    if not 0 < limit <= MAX_SHIELD_LIMIT:
        raise ArtifactError(f'{where}.{key} must be in (0, '
                            f'{MAX_SHIELD_LIMIT:g}], not {limit:g}')
    if schema.num_features < shield_mod.MIN_WIDTH:
        raise ArtifactError(f'{where}: the shield reads schema v2 features; '
                            f'this policy reads v{schema.version}')
    return limit


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
    ``calibration`` an object or absent (:func:`check_calibration`: its
    ``act`` ``gated`` or ``never``, its ``confidence_threshold`` in [0, 1]
    if present, null with ``never``); ``nova_weighers`` an object or absent
    (:func:`check_nova_weighers`: names, finite multipliers); ``shield``
    an object or absent (:func:`check_shield`).
    """
    if not isinstance(manifest, dict):
        raise ArtifactError('manifest is not a JSON object')
    if manifest.get('format') != FORMAT:
        raise ArtifactError(f"format {fileio.brief(manifest.get('format'))} "
                            f'is not {FORMAT!r}')
    version = manifest.get('format_version')
    if type(version) is not int or version not in FORMAT_VERSIONS:
        raise ArtifactError(
            f'format_version {fileio.brief(version)} is not supported '
            f'(expected one of {", ".join(map(str, FORMAT_VERSIONS))})')
    schema_doc = manifest.get('feature_schema')
    schema = features.SCHEMAS.get(schema_doc.get('hash')) \
        if isinstance(schema_doc, dict) \
        and isinstance(schema_doc.get('hash'), str) else None
    if schema is None:
        doc = schema_doc if isinstance(schema_doc, dict) else {}
        name = doc.get('name') if doc else schema_doc
        known = ', '.join(f'v{s.version} {h}'
                          for h, s in features.SCHEMAS.items())
        raise ArtifactError(
            f'feature schema {fileio.brief(name)} hash '
            f"{fileio.brief(doc.get('hash'))} does not match this weigher "
            f'({features.SCHEMA_NAME} {known})')
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
    f = schema.num_features
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
    act = check_calibration(manifest)
    nova_weighers = check_nova_weighers(manifest)
    shield_limit = check_shield(manifest, schema)
    if (shield_limit is None) != (version == FORMAT_VERSION):
        raise ArtifactError(
            f'format_version {version} with'
            + ('out' if shield_limit is None else '') + ' a shield: a '
            f'shielded manifest is version {FORMAT_VERSION_SHIELD}, any '
            f'other {FORMAT_VERSION}')
    version_text = _text(manifest, 'policy_version')
    _text(manifest, 'objective')
    _section(manifest, 'provenance')
    return Spec(ensemble_size=k, hidden=h, weights_file=weights_name,
                sha256=sha, mean=mean, std=std, feature_min=fmin,
                feature_max=fmax, tolerance=float(tolerance),
                version=version_text, act=act, nova_weighers=nova_weighers,
                schema=schema)


def parameter_count(k: int, f: int, h: int) -> int:
    return sum(math.prod(shape) for shape in
               policy_mod.expected_shapes(k, f, h).values())
