"""Helpers that build real policy artifacts and inputs for tests.

:func:`make_linear_policy` writes an artifact through the production writer
whose every ensemble member computes the same linear function of chosen
features, so it is fully confident; with ``agreement=False`` the members
disagree by design, so the gate's low-confidence path can be exercised.
:func:`random_candidates` builds a synthetic weighing call (hosts that pass
Nova's filters, a request and a usage lookup) through the feature code.
"""

from __future__ import annotations

import json
import os
from typing import Mapping

import numpy as np

from nova_rl_weigher import artifact
from nova_rl_weigher import features

# Synthetic weighing calls (random_candidates): host shapes, flavors (vCPUs,
# GiB) and candidate-set sizes seen in small and large clouds.


def wide_ranges(width: float = 1e6) -> tuple[np.ndarray, np.ndarray]:
    f = features.NUM_FEATURES
    return (np.full(f, -width), np.full(f, width))


def linear_params(feature_weights: Mapping[str, float], ensemble_size: int,
                  agreement: bool = True,
                  schema: features.Schema = features.SCHEMA
                  ) -> dict[str, np.ndarray]:
    """Deep Sets parameters that compute ``sum(w_f * x_f)`` exactly.

    Two hidden units per feature carry ``relu(x)`` and ``relu(-x)``, whose
    difference is ``x``; the context path is zero. Without ``agreement``,
    odd members score the negated function.
    """
    names = list(feature_weights)
    f, k = schema.num_features, ensemble_size
    h = max(2 * len(names), 1)
    params = {
        'W1': np.zeros((k, f, h)), 'b1': np.zeros((k, h)),
        'W2': np.zeros((k, h, h)), 'U2': np.zeros((k, h, h)),
        'b2': np.zeros((k, h)), 'w3': np.zeros((k, h)), 'b3': np.zeros(k),
    }
    for m in range(k):
        sign = 1.0 if agreement or m % 2 == 0 else -1.0
        for i, name in enumerate(names):
            j = features.FEATURE_INDEX[name]
            params['W1'][m, j, 2 * i] = 1.0
            params['W1'][m, j, 2 * i + 1] = -1.0
            params['W2'][m, 2 * i, 2 * i] = 1.0
            params['W2'][m, 2 * i + 1, 2 * i + 1] = 1.0
            w = sign * float(feature_weights[name])
            params['w3'][m, 2 * i] = w
            params['w3'][m, 2 * i + 1] = -w
    return params


def make_linear_policy(path: str, feature_weights: Mapping[str, float],
                       ensemble_size: int = 5, agreement: bool = True,
                       feature_min: np.ndarray | None = None,
                       feature_max: np.ndarray | None = None,
                       objective: str = 'test',
                       policy_version: str | None = None,
                       schema: features.Schema = features.SCHEMA,
                       shield: Mapping[str, float] | None = None) -> str:
    """Write a linear test policy to directory ``path`` and return ``path``.

    Feature ranges default to very wide, so the out-of-range check never
    fires unless the test passes its own ranges. ``schema`` picks the
    feature schema (the weights' width); ``shield`` goes into the manifest.
    """
    f = schema.num_features
    lo, hi = wide_ranges()
    lo, hi = lo[:f], hi[:f]
    artifact.write_artifact(
        path, linear_params(feature_weights, ensemble_size, agreement,
                            schema),
        mean=np.zeros(f), std=np.ones(f),
        feature_min=lo if feature_min is None else feature_min,
        feature_max=hi if feature_max is None else feature_max,
        objective=objective,
        provenance={'method': 'linear test policy',
                    'feature_weights': dict(feature_weights)},
        policy_version=policy_version, shield=shield)
    return path


#: A feature-schema v1 policy (the bundled policy of release 1, 24
#: features), kept so v1 artifacts stay loadable and scored as before.
V1_POLICY_PATH = os.path.join(os.path.dirname(__file__), 'data', 'policy-v1')

HOST_VCPUS = (2, 4, 8, 16, 24, 32, 48, 64, 96, 128)
RAM_GB_PER_VCPU = (1, 2, 4, 8)
FLAVORS = ((1, 0.75), (1, 1.75), (1, 2), (2, 4), (2, 8), (4, 8), (4, 16),
           (8, 16), (8, 32), (16, 64), (16, 112))


def random_candidates(rng: np.random.Generator, n: int
                      ) -> tuple[list[features.HostView], features.RequestView,
                                 features.UsageLookup]:
    """One synthetic weighing call: a request and n hosts that fit it."""
    vcpus, ram_gb = FLAVORS[rng.integers(len(FLAVORS))]
    request = features.RequestView(
        vcpus=vcpus, memory_mb=ram_gb * 1024,
        disk_gb=float(rng.choice([0, 10, 20, 40, 80])),
        project_id='p%d' % rng.integers(4))
    cpu_ratio = float(rng.choice([1.0, 2.0, 4.0, 16.0]))
    ram_ratio = float(rng.choice([1.0, 1.0, 1.5]))
    hosts, usage_hosts = [], {}
    while len(hosts) < n:
        hv = float(rng.choice(HOST_VCPUS))
        ram_mb = hv * float(rng.choice(RAM_GB_PER_VCPU)) * 1024
        disk_gb = float(rng.choice([200, 500, 1000, 4000]))
        fill = rng.beta(1.2, 1.2)
        vcpus_used = np.floor(fill * hv * cpu_ratio * rng.uniform(0.7, 1.0))
        ram_used = fill * ram_mb * ram_ratio * rng.uniform(0.7, 1.0)
        disk_used = rng.uniform(0, 0.9) * disk_gb * 1024
        h = features.HostView(
            name='h%d' % len(hosts), vcpus_total=hv, vcpus_used=vcpus_used,
            ram_total_mb=ram_mb, ram_free_mb=ram_mb - ram_used,
            disk_total_gb=disk_gb, disk_free_mb=disk_gb * 1024 - disk_used,
            cpu_allocation_ratio=cpu_ratio, ram_allocation_ratio=ram_ratio,
            num_instances=float(rng.poisson(vcpus_used / 2 + 0.1)),
            num_io_ops=float(rng.poisson(0.3)),
            failed_builds=float(rng.random() < 0.02))
        # Only hosts that pass Nova's RAM, core and disk filters.
        if (vcpus_used + vcpus > hv * cpu_ratio
                or ram_used + request.memory_mb > ram_mb * ram_ratio
                or disk_used + request.disk_gb * 1024 > disk_gb * 1024):
            continue
        if rng.random() < 0.5:
            util = min(vcpus_used / hv, 1.5) * rng.uniform(0.1, 0.8)
            usage_hosts[h.name] = features.HostUsage(
                util, min(util * rng.uniform(1.1, 2.0), 2.0),
                min(ram_used / ram_mb, 1.5) * rng.uniform(0.5, 1.0),
                min(ram_used / ram_mb, 1.5))
        hosts.append(h)
    # Nova's default weighers spread: more free RAM, vCPUs and disk win.
    x0 = features.build_matrix(hosts, request)
    i = features.FEATURE_INDEX
    for h, row in zip(hosts, x0):
        weight = float(row[i['ram_free_frac']] + row[i['vcpu_free_frac']]
                       + row[i['disk_free_frac']])
        h.nova_weight = weight * rng.uniform(0.9, 1.1)
    projects = ({request.project_id: float(rng.uniform(0.05, 1.0))}
                if rng.random() < 0.5 else {})
    return hosts, request, features.UsageLookup(usage_hosts, projects)


def edit_manifest(path: str, **fields) -> str:
    """Replace top-level fields of the artifact's manifest (no checksum
    of the manifest exists, so the artifact stays loadable unless the
    fields themselves are refused)."""
    name = os.path.join(path, 'manifest.json')
    with open(name) as f:
        doc = json.load(f)
    doc.update(fields)
    with open(name, 'w') as f:
        json.dump(doc, f)
    return path


def small_hosts(n: int = 4) -> list[features.HostView]:
    """``n`` hosts of growing size, Nova's weight growing with them."""
    return [features.HostView(
        name=f'h{i}', vcpus_total=8.0 * (i + 1), vcpus_used=1.0,
        ram_total_mb=16384.0 * (i + 1),
        ram_free_mb=16384.0 * (i + 1) - 2048,
        disk_total_gb=100.0, disk_free_mb=90000.0,
        nova_weight=float(i) / n) for i in range(n)]


SMALL_REQUEST = features.RequestView(vcpus=1, memory_mb=1024, disk_gb=1,
                                     project_id='p', instance_uuid='u-1')
