"""Calibrating a policy's gate on the operator's own cloud.

The trainer calibrates a policy over the clusters it trained on: for a
family, cluster shapes drawn as operators' clouds might be. One shape of
the family where the policy would cost hosts is enough for that
calibration to say the policy must never act, on every cloud. What an
operator needs to know is whether it helps on *theirs*: this re-runs the
same calibration (:func:`window_calibration.calibrate`, the same levels,
terms, bound and floor) on one setup, the operator's cluster file and
trace (an ingested CSV of their cloud's past, or a preset), from the
states their configured Nova weighers built there, and writes a copy of
the artifact whose manifest carries the result. The weights, normalisation
and feature ranges are copied unchanged; the manifest's ``calibration``
records where it was measured (``cloud``).

Groups are :data:`paired.MIN_GROUPS` or more starts spread over the trace
after its first ``horizon_s`` (Nova's weighers fill the cluster from empty
first), each played for ``horizon_s``: the groups are independent when
the trace spans at least ``(groups + 1) x horizon_s``, and the result says
when they overlap.
"""

from __future__ import annotations

import dataclasses
import datetime
import os
import secrets
import shutil
from typing import Any

import numpy as np

from nova_rl_weigher import artifact as nova_artifact
from nova_rl_weigher import gate
from nova_rl_weigher.policy import Policy

from nova_rl_trainer.learning import calibration
from nova_rl_trainer.learning import env as env_mod
from nova_rl_trainer.learning import window_calibration
from nova_rl_trainer.simulation import fanout
from nova_rl_trainer.simulation import objectives as objectives_mod
from nova_rl_trainer.simulation import paired
from nova_rl_trainer.simulation import policies as policies_mod
from nova_rl_trainer.simulation.setup import Setup


class CloudCalibrationError(ValueError):
    """The calibration cannot run (a bad artifact, a trace too short):
    bad input, one line from the command line."""


@dataclasses.dataclass
class _HeldOut:
    """:class:`window_calibration.HeldOut` of one setup."""

    val_env: env_mod.PlacementEnv
    calibration_starts: list[float]


def starts(span_s: float, horizon_s: float, groups: int) -> list[float]:
    """``groups`` starts evenly spread over ``[horizon_s, span_s -
    horizon_s]``; CloudCalibrationError when the trace is shorter than
    two horizons."""
    if groups < paired.MIN_GROUPS:
        raise CloudCalibrationError(
            f'{groups} groups: the bound needs at least {paired.MIN_GROUPS}')
    if not horizon_s > 0:
        raise CloudCalibrationError('the horizon must be > 0 hours')
    last = span_s - horizon_s
    if last < horizon_s:
        raise CloudCalibrationError(
            f'a trace of {span_s / 3600:.1f} h: calibration needs at least '
            f'two horizons ({2 * horizon_s / 3600:g} h), one for Nova to '
            'fill the cluster and one to play')
    return [float(t) for t in np.linspace(horizon_s, last, num=groups)]


def manifest_objective(policy_path: str) -> str:
    """The objective the artifact's manifest names."""
    try:
        return nova_artifact.read_manifest(policy_path)['objective']
    except (nova_artifact.ArtifactError, OSError, KeyError) as e:
        raise CloudCalibrationError(f'{policy_path}: not a valid policy '
                                    f'artifact: {e}') from None


def calibrate(policy_path: str, setup: Setup, out: str, *,
              groups: int = paired.MIN_GROUPS,
              horizon_s: float = calibration.DEFAULT_HORIZON_S,
              floor_host_samples: float =
              objectives_mod.DEFAULT_FLOOR_HOST_SAMPLES,
              workers: int = 1, ray_address: str | None = None) -> dict:
    """Calibrate the artifact at ``policy_path`` on ``setup`` and write
    the calibrated copy to the new directory ``out``; return its
    manifest's ``calibration``.

    The objective is ``setup``'s (the command line's default: the
    manifest's, :func:`manifest_objective`); the fallback is ``setup``'s
    configured Nova weighers (``--nova-weighers``).
    """
    if not objectives_mod.valid_floor(floor_host_samples):
        raise CloudCalibrationError('the floor must be a finite number of '
                                    'host-samples >= 0')
    if os.path.lexists(out):
        raise CloudCalibrationError(f'{out} exists: give a new directory '
                                    'for the calibrated copy')
    try:
        policy = nova_artifact.load_artifact(policy_path)
    except (nova_artifact.ArtifactError, OSError) as e:
        raise CloudCalibrationError(f'{policy_path}: not a valid policy '
                                    f'artifact: {e}') from None
    fallback = setup.config.nova_weighers
    if gate.config_mismatch(policy, policies_mod.nova_config(fallback)):
        recorded = policy.manifest['nova_weighers'].get('name')
        raise CloudCalibrationError(
            f'the policy was trained for Nova weighers {recorded!r}; this '
            f'cloud runs {fallback!r} (--nova-weighers), where the weigher '
            'abstains on every request (nova_config_mismatch)')
    obj = setup.make_objective()
    trace = setup.load_trace()
    make_env = env_mod.factory(trace, setup, obj)
    env = make_env()
    chosen = starts(env.horizon_s, horizon_s, groups)
    # From the cluster the operator's Nova built: where the weigher acts.
    env.warmup_policy = fallback
    env.prime_starts(chosen)
    held_out = _HeldOut(env, chosen)
    with fanout.Fanout(workers=workers, ray_address=ray_address) as fan:
        calib = window_calibration.calibrate(
            [held_out], policy, obj, horizon_s, fallback, fan=fan,
            key='cloud-', floor_host_samples=floor_host_samples)
    spacing = (chosen[-1] - chosen[0]) / (len(chosen) - 1)
    calib['cloud'] = {
        'calibrated_at': datetime.datetime.now(
            datetime.timezone.utc).isoformat(timespec='seconds'),
        'trace': setup.name or os.path.basename(setup.trace_path),
        'hosts': int(setup.cluster.hosts),
        'host_groups': len(setup.cluster.groups),
        'nova_weighers': fallback,
        'seed': setup.seed,
        'starts_s': chosen,
        'independent': bool(spacing >= horizon_s),
        'trained_calibration': _summary(
            policy.manifest.get('calibration') or {}),
    }
    _write_copy(policy, out, calib)
    return calib


def _summary(calib: dict[str, Any]) -> dict[str, Any]:
    """What the trainer's calibration said, kept beside the new one."""
    keys = ('act', 'confidence_threshold', 'method')
    return {k: calib[k] for k in keys if k in calib}


def _write_copy(policy: Policy, out: str, calib: dict) -> None:
    """``policy`` (as loaded, verified) with ``calib`` as its calibration,
    written to a temporary sibling of ``out`` and renamed into place: a
    reader sees no directory or the whole verified artifact."""
    manifest = policy.manifest
    parent = os.path.dirname(os.path.abspath(out))
    os.makedirs(parent, exist_ok=True)
    # os.mkdir, not mkdtemp: the copy gets the umask's mode, as train's
    # output does (mkdtemp's 0700 would hide it from nova-scheduler's
    # user).
    tmp = os.path.join(parent, f'.{os.path.basename(out)}.calibrating-'
                               f'{secrets.token_hex(8)}')
    os.mkdir(tmp)
    try:
        ranges = manifest['feature_ranges']
        norm = manifest['normalisation']
        nova_artifact.write_artifact(
            tmp, policy.params,
            mean=np.asarray(norm['mean']), std=np.asarray(norm['std']),
            feature_min=np.asarray(ranges['min']),
            feature_max=np.asarray(ranges['max']),
            range_tolerance=float(ranges['tolerance']),
            objective=manifest['objective'],
            provenance=manifest.get('provenance', {}),
            policy_version=manifest['policy_version'],
            calibration=calib,
            nova_weighers=manifest.get('nova_weighers'),
            shield=manifest.get('shield'))
        nova_artifact.load_artifact(tmp)    # verify before it is visible
        os.rename(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
