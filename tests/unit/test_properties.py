"""Property-based: whatever a file holds, the readers return a valid object
or their own clear error (ArtifactError, SnapshotError), quickly, and never
raise anything else.

``database=None`` and a temporary Hypothesis home directory: the tests
leave no ``.hypothesis`` directory behind. Example counts are kept moderate
(the whole module runs in well under 30 s on 2 cores).
"""

import atexit
import copy
import hashlib
import json
import math
import os
import shutil
import tempfile
import time

from hypothesis import configuration as hypothesis_configuration
from hypothesis import given
from hypothesis import HealthCheck
from hypothesis import settings
from hypothesis import strategies as st
import numpy as np
import pytest

from nova_rl_weigher import artifact
from nova_rl_weigher import features
from nova_rl_weigher import snapshot
from tests import fixtures as testing

#: Per example; generous for a loaded CI machine. Measured, never slept.
TIME_BOUND_S = 5.0

# Hypothesis caches data under ./.hypothesis by default: keep it, for the
# rest of this test process, in a temporary directory removed at exit.
_HOME = tempfile.mkdtemp(prefix='nova-rl-hypothesis-')
hypothesis_configuration.set_hypothesis_home_dir(_HOME)
atexit.register(shutil.rmtree, _HOME, True)

SETTINGS = dict(database=None, deadline=None, derandomize=False,
                suppress_health_check=[HealthCheck.too_slow,
                                       HealthCheck.function_scoped_fixture])

scalars = (st.none() | st.booleans()
           | st.integers()
           | st.integers(min_value=-10 ** 400, max_value=10 ** 400)
           | st.floats(allow_nan=True, allow_infinity=True)
           | st.sampled_from([0, 1, -1, 0.5, 1e308, -0.0, 1e39, 2 ** 63])
           | st.text(max_size=20))
json_values = st.recursive(
    scalars,
    lambda inner: (st.lists(inner, max_size=6)
                   | st.dictionaries(st.text(max_size=10), inner,
                                     max_size=6)),
    max_leaves=20)


def timed(fn, *args):
    started = time.perf_counter()
    try:
        return fn(*args)
    finally:
        elapsed = time.perf_counter() - started
        assert elapsed < TIME_BOUND_S, f'{fn.__name__} took {elapsed:.1f} s'


# -- the manifest ------------------------------------------------------------

@pytest.fixture(scope='module')
def artifact_dir(tmp_path_factory):
    path = str(tmp_path_factory.mktemp('prop') / 'p')
    testing.make_linear_policy(path, {'log_vcpus_total': -1.0},
                               policy_version='valid')
    return path


def manifest_paths(manifest):
    """Every place in the manifest a mutation can target: (keys...)."""
    out = []

    def walk(value, keys):
        out.append(keys)
        if isinstance(value, dict) and len(keys) < 3:
            for k, v in value.items():
                walk(v, keys + (k,))
        elif isinstance(value, list) and len(keys) < 3 and value:
            walk(value[0], keys + (0,))
            walk(value[-1], keys + (len(value) - 1,))
    walk(manifest, ())
    return [p for p in out if p]


def set_at(doc, keys, value):
    target = doc
    for k in keys[:-1]:
        target = target[k]
    target[keys[-1]] = value


def write_manifest(directory, manifest_text):
    path = os.path.join(directory, 'manifest.json')
    tmp = path + '.tmp'
    with open(tmp, 'w') as f:
        f.write(manifest_text)
    os.replace(tmp, path)


def write_and_load(directory, manifest_text):
    write_manifest(directory, manifest_text)
    try:
        policy = timed(artifact.load_artifact, directory)
    except artifact.ArtifactError as e:
        assert str(e) and '\n' not in str(e) and len(str(e)) < 2000
        return None
    # A policy that loads is usable: it scores a real candidate set.
    hosts, request, usage = testing.random_candidates(
        np.random.default_rng(0), 5)
    x = features.build_matrix(hosts, request, usage)
    assert policy.score(x).shape == (policy.ensemble_size, 5)
    assert 0 <= policy.range_tolerance <= artifact.MAX_RANGE_TOLERANCE
    assert np.isfinite(policy.mean).all() and (policy.std > 0).all()
    calibration = policy.manifest.get('calibration')
    assert calibration is None or isinstance(calibration, dict)
    return policy


@settings(max_examples=150, **SETTINGS)
@given(data=st.data())
def test_mutated_manifest_loads_or_is_refused(artifact_dir, data):
    with open(os.path.join(artifact_dir, 'manifest.json')) as f:
        original = f.read()
    base = json.loads(original)
    try:
        manifest = copy.deepcopy(base)
        for _ in range(data.draw(st.integers(1, 3), label='mutations')):
            keys = data.draw(st.sampled_from(manifest_paths(base)),
                             label='at')
            if data.draw(st.booleans(), label='new key'):
                keys = keys[:-1] + (data.draw(st.text(max_size=8)),)
            value = data.draw(json_values, label='value')
            try:
                set_at(manifest, keys, value)
            except (KeyError, IndexError, TypeError):
                continue    # an earlier mutation removed the parent
        write_and_load(artifact_dir, json.dumps(manifest))
    finally:
        write_manifest(artifact_dir, original)


@settings(max_examples=100, **SETTINGS)
@given(manifest=json_values)
def test_arbitrary_json_manifest_is_refused(artifact_dir, manifest):
    with open(os.path.join(artifact_dir, 'manifest.json')) as f:
        original = f.read()
    try:
        assert write_and_load(artifact_dir, json.dumps(manifest)) is None
    finally:
        write_manifest(artifact_dir, original)


@settings(max_examples=100, **SETTINGS)
@given(text=st.text(max_size=200) | st.binary(max_size=200).map(
    lambda b: b.decode('latin-1')))
def test_arbitrary_text_manifest_is_refused(artifact_dir, text):
    with open(os.path.join(artifact_dir, 'manifest.json')) as f:
        original = f.read()
    try:
        assert write_and_load(artifact_dir, text) is None
    finally:
        write_manifest(artifact_dir, original)


@settings(max_examples=150, **SETTINGS)
@given(data=st.data())
def test_mutated_weights_load_or_are_refused(artifact_dir, data):
    weights = os.path.join(artifact_dir, 'weights.npz')
    with open(weights, 'rb') as f:
        original = f.read()
    with open(os.path.join(artifact_dir, 'manifest.json')) as f:
        original_manifest = f.read()
    damaged = bytearray(original)
    how = data.draw(st.sampled_from(['flip', 'truncate', 'random']))
    if how == 'flip':
        for _ in range(data.draw(st.integers(1, 8))):
            i = data.draw(st.integers(0, len(damaged) - 1))
            damaged[i] = data.draw(st.integers(0, 255))
    elif how == 'truncate':
        del damaged[data.draw(st.integers(0, len(damaged) - 1)):]
    else:
        damaged = bytearray(data.draw(st.binary(max_size=2000)))
    manifest = json.loads(original_manifest)
    manifest['weights_sha256'] = hashlib.sha256(damaged).hexdigest()
    try:
        with open(weights, 'wb') as f:
            f.write(damaged)
        write_and_load(artifact_dir, json.dumps(manifest))
    finally:
        with open(weights, 'wb') as f:
            f.write(original)
        write_manifest(artifact_dir, original_manifest)


def test_property_fixture_is_restored(artifact_dir):
    assert artifact.load_artifact(artifact_dir).version == 'valid'


# -- the snapshot -------------------------------------------------------------

number_like = (st.floats(allow_nan=True, allow_infinity=True)
               | st.integers(min_value=-10 ** 400, max_value=10 ** 400)
               | st.booleans() | st.none() | st.text(max_size=5))
host_entries = st.dictionaries(
    st.sampled_from(['cpu_util_mean', 'cpu_util_p95', 'mem_util_mean',
                     'mem_util_p95', 'other']),
    number_like | json_values, max_size=5)
snapshot_like = st.fixed_dictionaries(
    {}, optional={
        'format_version': st.sampled_from([1, 2, 1.0, True, '1', None]),
        'generated_at': number_like | st.sampled_from(
            ['2026-01-01T00:00:00Z', '2026-13-01', '0001-01-01T00:00:00-23:59',
             '9999-12-31T23:59:59+23:59', '']),
        'hosts': st.dictionaries(st.text(max_size=8),
                                 host_entries | json_values, max_size=4)
        | json_values,
        'projects': st.dictionaries(
            st.text(max_size=8),
            st.fixed_dictionaries({'cpu_ratio': number_like}) | json_values,
            max_size=4) | json_values,
    })


def check_parse(doc):
    try:
        generated_at, lookup = timed(snapshot.parse, doc)
    except snapshot.SnapshotError as e:
        assert str(e) and len(str(e)) < 1000
        return
    assert math.isfinite(generated_at)
    for usage in lookup.hosts.values():
        assert all(math.isfinite(v) and v >= 0 for v in (
            usage.cpu_util_mean, usage.cpu_util_p95, usage.mem_util_mean,
            usage.mem_util_p95))
    for ratio in lookup.project_cpu_ratio.values():
        assert math.isfinite(ratio) and ratio >= 0


@settings(max_examples=200, **SETTINGS)
@given(doc=snapshot_like)
def test_snapshot_shaped_values_parse_or_are_refused(doc):
    check_parse(doc)


@settings(max_examples=150, **SETTINGS)
@given(doc=json_values)
def test_arbitrary_json_snapshot_parses_or_is_refused(doc):
    check_parse(doc)


@settings(max_examples=100, **SETTINGS)
@given(data=st.binary(max_size=300) | st.text(max_size=300).map(str.encode))
def test_arbitrary_bytes_snapshot_is_refused_or_parsed(tmp_path, data):
    path = tmp_path / 'usage.json'
    path.write_bytes(data)
    try:
        timed(snapshot.load, str(path))
    except snapshot.SnapshotError:
        pass
    cache = snapshot.SnapshotCache()
    _, status, _ = timed(cache.get, str(path), 600, time.time())
    assert status in (snapshot.FRESH, snapshot.STALE, snapshot.UNAVAILABLE)
