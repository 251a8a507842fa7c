"""Hostile policy artifacts: the loader never trusts, never blocks, never
raises anything but ArtifactError, and the store never stalls a call.

Hangs are guarded by a thread join with a timeout (never by sleeping).
"""

import hashlib
import io
import json
import os
import socket
import threading
import zipfile

import numpy as np
import pytest

from nova_rl_weigher import artifact
from nova_rl_weigher import features
from nova_rl_weigher import fileio
from nova_rl_weigher import policy_store
from tests import fixtures as testing
from tests.unit.test_snapshot import call_with_guard
from tests.unit.test_snapshot import GUARD_S
from tests.unit.test_snapshot import open_fifo_writer
from tests.unit.test_snapshot import settle

needs_fifo = pytest.mark.skipif(not hasattr(os, 'mkfifo'),
                                reason='needs mkfifo')
needs_dev_zero = pytest.mark.skipif(not os.path.exists('/dev/zero'),
                                    reason='needs /dev/zero')


@pytest.fixture
def policy_dir(tmp_path):
    return testing.make_linear_policy(str(tmp_path / 'p'),
                                      {'log_vcpus_total': -1.0},
                                      policy_version='good')


def manifest_of(path):
    with open(os.path.join(path, 'manifest.json')) as f:
        return json.load(f)


def write_manifest(path, manifest):
    """Replace the manifest (a new file, like a writer would)."""
    os.unlink(os.path.join(path, 'manifest.json'))
    with open(os.path.join(path, 'manifest.json'), 'w') as f:
        json.dump(manifest, f)


def write_raw_manifest(path, text):
    os.unlink(os.path.join(path, 'manifest.json'))
    with open(os.path.join(path, 'manifest.json'), 'w') as f:
        f.write(text)


def write_weights(path, data):
    """Replace the weights and fix the checksum, so only the other checks
    bite."""
    os.unlink(os.path.join(path, 'weights.npz'))
    with open(os.path.join(path, 'weights.npz'), 'wb') as f:
        f.write(data)
    m = manifest_of(path)
    m['weights_sha256'] = hashlib.sha256(data).hexdigest()
    write_manifest(path, m)


def load(path):
    return call_with_guard(artifact.load_artifact, path)


def refused(path, match):
    with pytest.raises(artifact.ArtifactError, match=match):
        load(path)


# -- manifest numbers and types ----------------------------------------------

BIG = '1' + '0' * 399


@pytest.mark.parametrize('value', ['NaN', 'Infinity', '-Infinity', '-0.5',
                                   '1e999', '11', BIG, '"0.1"', 'true',
                                   'null', '[0.1]'])
def test_tolerance_must_be_finite_non_negative_and_bounded(policy_dir,
                                                           value):
    text = json.dumps(manifest_of(policy_dir)).replace(
        '"tolerance": 0.05', '"tolerance": ' + value)
    assert value in text
    write_raw_manifest(policy_dir, text)
    refused(policy_dir, 'tolerance')


@pytest.mark.parametrize('section, key, value, match', [
    ('normalisation', 'mean', 'NaN', 'not a number|finite'),
    ('normalisation', 'mean', BIG, 'too large'),
    ('normalisation', 'mean', '1e39', 'finite'),       # overflows float32
    ('normalisation', 'std', '-1', 'positive'),
    ('normalisation', 'std', 'Infinity', 'finite'),
    ('normalisation', 'std', 'true', 'not a number'),
    ('feature_ranges', 'min', 'NaN', 'finite'),
    ('feature_ranges', 'max', '"1"', 'not a number'),
    ('feature_ranges', 'min', '2e6', 'exceeds max'),
])
def test_manifest_vectors_are_finite_numbers(policy_dir, section, key, value,
                                             match):
    m = manifest_of(policy_dir)
    m[section][key][0] = '@@'
    write_raw_manifest(policy_dir, json.dumps(m).replace('"@@"', value))
    refused(policy_dir, match)


def test_range_span_must_be_finite(policy_dir):
    m = manifest_of(policy_dir)
    m['feature_ranges']['min'][0] = -3e38
    m['feature_ranges']['max'][0] = 3e38
    write_manifest(policy_dir, m)
    refused(policy_dir, 'max - min')


@pytest.mark.parametrize('calibration', [[0.8], 'high', 3, True])
def test_calibration_must_be_an_object(policy_dir, calibration):
    m = manifest_of(policy_dir)
    m['calibration'] = calibration
    write_manifest(policy_dir, m)
    refused(policy_dir, 'calibration')


@pytest.mark.parametrize('threshold', [1.5, -0.1, 'NaN', '"0.8"', 'true',
                                       BIG])
def test_confidence_threshold_in_unit_interval(policy_dir, threshold):
    m = manifest_of(policy_dir)
    m['calibration'] = {'confidence_threshold': '@@'}
    write_raw_manifest(policy_dir, json.dumps(m).replace('"@@"',
                                                         str(threshold)))
    refused(policy_dir, 'confidence_threshold')


def test_calibration_absent_or_null_is_fine(policy_dir):
    m = manifest_of(policy_dir)
    m['calibration'] = None
    write_manifest(policy_dir, m)
    assert load(policy_dir).version == 'good'
    del m['calibration']
    write_manifest(policy_dir, m)
    assert load(policy_dir).version == 'good'


@pytest.mark.parametrize('field, value, match', [
    ('policy_version', 7, 'policy_version'),
    ('policy_version', 'x' * 1000, 'policy_version'),
    ('policy_version', 'v1\nERROR forged log line', 'policy_version'),
    ('objective', ['packing'], 'objective'),
    ('provenance', 'made by hand', 'provenance'),
    ('format_version', True, 'format_version'),
    ('format_version', 1.0, 'format_version'),
    ('ensemble_size', True, 'ensemble_size'),
    ('ensemble_size', 5.0, 'ensemble_size'),
    ('weights_sha256', 12, 'weights_sha256'),
    ('architecture', 'deepsets-mlp-v1', 'architecture'),
    ('feature_schema', [], 'feature schema'),
    ('normalisation', [1, 2], 'normalisation'),
    ('feature_ranges', None, 'feature_ranges'),
])
def test_field_types_are_checked(policy_dir, field, value, match):
    m = manifest_of(policy_dir)
    m[field] = value
    write_manifest(policy_dir, m)
    refused(policy_dir, match)


# -- architecture bounds ------------------------------------------------------

@pytest.mark.parametrize('k, h, match', [
    (artifact.MAX_ENSEMBLE_SIZE + 1, 2, 'ensemble_size'),
    (5, artifact.MAX_HIDDEN + 1, 'hidden'),
    (5, 1024, 'parameters'),
    (0, 2, 'ensemble_size'),
    (5, -3, 'hidden'),
])
def test_architecture_is_bounded_before_the_weights_are_read(
        policy_dir, monkeypatch, k, h, match):
    m = manifest_of(policy_dir)
    m['ensemble_size'], m['architecture']['hidden'] = k, h
    write_manifest(policy_dir, m)
    reads = []
    real = fileio.read_bounded

    def counting(p, *a, **kw):
        reads.append(p)
        return real(p, *a, **kw)
    monkeypatch.setattr(fileio, 'read_bounded', counting)
    refused(policy_dir, match)
    assert [os.path.basename(p) for p in reads] == ['manifest.json']


def test_architecture_within_bounds_loads(tmp_path):
    # 8 members x 64 hidden units: 4 x the bundled size, well inside.
    f = features.NUM_FEATURES
    rng = np.random.default_rng(0)
    from nova_rl_weigher import policy as policy_mod
    params = {n: rng.normal(size=s) * 0.1 for n, s in
              policy_mod.expected_shapes(8, f, 64).items()}
    artifact.write_artifact(
        str(tmp_path / 'p'), params, mean=np.zeros(f), std=np.ones(f),
        feature_min=np.zeros(f), feature_max=np.ones(f), objective='test',
        provenance={})
    assert load(str(tmp_path / 'p')).ensemble_size == 8


def test_writer_refuses_what_the_loader_would_refuse(tmp_path):
    f = features.NUM_FEATURES
    params = testing.linear_params({'ram_free_frac': 1.0}, 3)
    with pytest.raises(artifact.ArtifactError, match='tolerance'):
        artifact.write_artifact(
            str(tmp_path / 'p'), params, mean=np.zeros(f), std=np.ones(f),
            feature_min=np.zeros(f), feature_max=np.ones(f),
            objective='test', provenance={}, range_tolerance=float('nan'))
    with pytest.raises(artifact.ArtifactError, match='nested'):
        deep = {}
        for _ in range(100):
            deep = {'x': deep}
        artifact.write_artifact(
            str(tmp_path / 'p'), params, mean=np.zeros(f), std=np.ones(f),
            feature_min=np.zeros(f), feature_max=np.ones(f),
            objective='test', provenance={'deep': deep})
    assert not os.path.exists(tmp_path / 'p' / 'manifest.json')


# -- deep nesting, huge numbers, sizes ----------------------------------------

@pytest.mark.parametrize('depth', [50, 100000])
def test_deeply_nested_manifest_is_refused(policy_dir, depth):
    m = manifest_of(policy_dir)
    m['provenance'] = {'x': '@@'}
    write_raw_manifest(policy_dir, json.dumps(m).replace(
        '"@@"', '[' * depth + ']' * depth))
    refused(policy_dir, 'nested')


def test_read_manifest_refuses_deep_nesting_too(policy_dir):
    write_raw_manifest(policy_dir, '{"a": ' + '[' * 100000 + ']' * 100000
                       + '}')
    with pytest.raises(artifact.ArtifactError, match='nested'):
        artifact.read_manifest(policy_dir)


def test_integer_beyond_python_digit_limit(policy_dir):
    write_raw_manifest(policy_dir, '{"ensemble_size": ' + '9' * 5000 + '}')
    refused(policy_dir, 'not valid JSON')


def test_oversize_manifest_refused_before_reading(policy_dir):
    path = os.path.join(policy_dir, 'manifest.json')
    os.truncate(path, artifact.MAX_MANIFEST_BYTES + 1)   # sparse
    refused(policy_dir, 'bytes allowed')


def test_oversize_weights_refused_before_reading(policy_dir):
    path = os.path.join(policy_dir, 'weights.npz')
    os.truncate(path, artifact.MAX_WEIGHTS_BYTES + 1)    # sparse
    refused(policy_dir, 'bytes allowed')


# -- the npz: checked from its headers before anything is decompressed -------

def npy_header(shape, dtype='<f4'):
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {
        'descr': dtype, 'fortran_order': False, 'shape': shape})
    return buf.getvalue()


@pytest.mark.parametrize('bomb, match', [
    ('deflated', 'uncompressed .zip headers'),
    ('header_only', 'uncompressed .npy headers'),
])
def test_npz_bomb_refused_from_headers(policy_dir, monkeypatch, bomb, match):
    # deflated: 96 MiB of zeros behind a valid header, compressed to well
    # under 0.5 MB. header_only: a header declaring 96 MiB, no data.
    k, h = 5, 2
    f = features.NUM_FEATURES
    rows = 96 * 1024 * 1024 // (f * 4)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, 'w', zipfile.ZIP_DEFLATED) as zf:
        with zf.open('W1.npy', 'w', force_zip64=True) as member:
            member.write(npy_header((rows, f)))
            chunk = bytes(1 << 20)
            for _ in range(96 if bomb == 'deflated' else 0):
                member.write(chunk)
        for name, shape in (('b1', (k, h)), ('W2', (k, h, h)),
                            ('U2', (k, h, h)), ('b2', (k, h)),
                            ('w3', (k, h)), ('b3', (k,))):
            with zf.open(name + '.npy', 'w') as member:
                member.write(npy_header(shape))
                member.write(bytes(4 * int(np.prod(shape))))
    data = buf.getvalue()
    assert len(data) < 512 * 1024
    write_weights(policy_dir, data)
    decompressed = []
    real_read = zipfile.ZipExtFile.read

    def counting_read(self, n=-1):
        out = real_read(self, n)
        decompressed.append(len(out))
        return out
    monkeypatch.setattr(zipfile.ZipExtFile, 'read', counting_read)
    refused(policy_dir, match)
    assert sum(decompressed) < 64 * 1024


def test_object_array_refused_from_its_header(policy_dir):
    with np.load(os.path.join(policy_dir, 'weights.npz')) as z:
        arrays = {k: z[k] for k in z.files}
    arrays['W1'] = np.array([{'evil': 1}], dtype=object)
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    write_weights(policy_dir, buf.getvalue())
    refused(policy_dir, 'Python objects')


@pytest.mark.parametrize('damage, match', [
    ('int_dtype', 'not floating point'),
    ('structured', 'not floating point'),
    ('not_npy', 'not a distinct .npy'),
    ('duplicate', 'not a distinct .npy|members'),
    ('too_many', 'members'),
    ('short_data', 'header declares'),
    ('bad_header', 'bad npy header'),
    ('not_zip', 'not a zip'),
])
@pytest.mark.filterwarnings('ignore:Duplicate name')
def test_npz_structure_is_checked(policy_dir, damage, match):
    with np.load(os.path.join(policy_dir, 'weights.npz')) as z:
        arrays = {k: z[k] for k in z.files}
    buf = io.BytesIO()
    if damage == 'not_zip':
        buf.write(b'PK\x03\x04 not really a zip')
    else:
        with zipfile.ZipFile(buf, 'w') as zf:
            for name, arr in arrays.items():
                member = io.BytesIO()
                if damage == 'int_dtype' and name == 'W1':
                    arr = arr.astype(np.int32)
                if damage == 'structured' and name == 'W1':
                    arr = np.zeros(3, dtype=[('a', '<f4')])
                np.lib.format.write_array(member, arr)
                raw = member.getvalue()
                if damage == 'short_data' and name == 'W2':
                    raw = raw[:-4]
                if damage == 'bad_header' and name == 'W2':
                    raw = raw[:10] + b'{"descr": __import__}' + raw[31:]
                zf.writestr(name + ('' if damage == 'not_npy'
                                    and name == 'b3' else '.npy'), raw)
            if damage == 'duplicate':
                zf.writestr('W1.npy', b'')
            if damage == 'too_many':
                for i in range(artifact.MAX_ARRAYS):
                    zf.writestr(f'x{i}.npy', b'')
    write_weights(policy_dir, buf.getvalue())
    refused(policy_dir, match)


# -- symlinks, FIFOs, devices ------------------------------------------------

@needs_dev_zero
@pytest.mark.parametrize('name', ['manifest.json', 'weights.npz'])
def test_symlink_to_dev_zero_refused(policy_dir, name):
    path = os.path.join(policy_dir, name)
    os.unlink(path)
    os.symlink('/dev/zero', path)
    refused(policy_dir, 'outside|character device')


@pytest.mark.parametrize('name', ['manifest.json', 'weights.npz'])
def test_symlink_leaving_the_artifact_directory_refused(policy_dir, tmp_path,
                                                        name):
    path = os.path.join(policy_dir, name)
    outside = str(tmp_path / ('outside-' + name))
    os.rename(path, outside)
    os.symlink(outside, path)
    refused(policy_dir, 'outside')


def test_symlinks_inside_the_directory_and_to_it_are_followed(policy_dir,
                                                              tmp_path):
    os.rename(os.path.join(policy_dir, 'weights.npz'),
              os.path.join(policy_dir, 'weights-v1.npz'))
    os.symlink('weights-v1.npz', os.path.join(policy_dir, 'weights.npz'))
    link = str(tmp_path / 'current')
    os.symlink(os.path.basename(policy_dir), link)    # like publish does
    assert load(link).version == 'good'


@needs_fifo
@pytest.mark.parametrize('name', ['manifest.json', 'weights.npz'])
def test_fifo_refused_without_blocking(policy_dir, name):
    path = os.path.join(policy_dir, name)
    os.unlink(path)
    os.mkfifo(path)
    with pytest.raises(artifact.ArtifactError, match='FIFO'):
        call_with_guard(artifact.load_artifact, policy_dir,
                        unblock=open_fifo_writer(path))


@pytest.mark.parametrize('kind', ['directory', 'socket'])
def test_directory_or_socket_refused(policy_dir, kind):
    path = os.path.join(policy_dir, 'weights.npz')
    os.unlink(path)
    if kind == 'directory':
        os.mkdir(path)
        refused(policy_dir, 'directory')
    else:
        if len(path) > 100:
            pytest.skip('socket path too long')
        s = socket.socket(socket.AF_UNIX)
        try:
            s.bind(path)
            refused(policy_dir, 'socket')
        finally:
            s.close()


# -- fileio -------------------------------------------------------------------

def test_read_bounded_refuses_files_that_lie_about_their_size():
    if not os.path.exists('/proc/self/status'):
        pytest.skip('needs /proc')
    # A regular file of reported size 0 that has content.
    with pytest.raises(fileio.FileRefused, match='larger than its size'):
        fileio.read_bounded('/proc/self/status', 1 << 20, allow_outside=True)


def test_read_bounded_returns_content_and_version(tmp_path):
    path = tmp_path / 'f'
    path.write_bytes(b'abc')
    data, version = fileio.read_bounded(str(path), 3)
    assert data == b'abc' and version == fileio.version_of(str(path))
    with pytest.raises(fileio.FileRefused, match='4 bytes, more than the 3'):
        path.write_bytes(b'abcd')
        fileio.read_bounded(str(path), 3)
    with pytest.raises(FileNotFoundError):
        fileio.read_bounded(str(tmp_path / 'missing'), 3)


def test_atomic_write_replaces_whole_files_only(tmp_path):
    path = str(tmp_path / 'f')
    os.symlink('elsewhere', path)
    fileio.atomic_write(path, 'text')
    assert not os.path.islink(path) and open(path).read() == 'text'
    fileio.atomic_write(path, b'\x00bytes', mode=0o600)
    assert open(path, 'rb').read() == b'\x00bytes'
    assert os.stat(path).st_mode & 0o777 == 0o600
    assert sorted(os.listdir(tmp_path)) == ['f']
    # A failed write leaves the old file and no temporary file.
    with pytest.raises(TypeError):
        fileio.atomic_write(path, 12345)
    assert sorted(os.listdir(tmp_path)) == ['f']
    assert open(path, 'rb').read() == b'\x00bytes'


# -- the store: a refused version is remembered; nobody waits for a reload ---

def test_refused_version_is_loaded_once_until_the_files_change(
        policy_dir, monkeypatch):
    settle(os.path.join(policy_dir, 'manifest.json'))
    settle(os.path.join(policy_dir, 'weights.npz'))
    calls = []
    real = artifact.load_artifact
    monkeypatch.setattr(artifact, 'load_artifact',
                        lambda p: calls.append(p) or real(p))
    store = policy_store.PolicyStore()
    assert store.get(policy_dir, 0).version == 'good'
    m = manifest_of(policy_dir)
    m['calibration'] = ['not', 'an', 'object']
    write_manifest(policy_dir, m)
    settle(os.path.join(policy_dir, 'manifest.json'))
    for _ in range(20):
        assert store.get(policy_dir, 0).version == 'good'
    assert len(calls) == 2 and 'calibration' in store.error
    m['calibration'] = {}
    m['policy_version'] = 'fixed'
    write_manifest(policy_dir, m)
    settle(os.path.join(policy_dir, 'manifest.json'))
    assert store.get(policy_dir, 0).version == 'fixed'
    assert len(calls) == 3 and store.error == ''


def test_reload_does_not_make_other_calls_wait(policy_dir, monkeypatch):
    store = policy_store.PolicyStore()
    assert store.get(policy_dir, 0).version == 'good'
    testing.make_linear_policy(policy_dir, {'log_vcpus_total': 1.0},
                               policy_version='next')
    entered, release = threading.Event(), threading.Event()
    real = artifact.load_artifact

    def slow_load(p):
        entered.set()
        assert release.wait(GUARD_S * 5)
        return real(p)
    monkeypatch.setattr(artifact, 'load_artifact', slow_load)
    loader = threading.Thread(target=store.get, args=(policy_dir, 0),
                              daemon=True)
    loader.start()
    try:
        assert entered.wait(GUARD_S)
        assert call_with_guard(store.get, policy_dir, 0).version == 'good'
    finally:
        release.set()
        loader.join(GUARD_S)
    assert not loader.is_alive()
    assert store.get(policy_dir, 0).version == 'next'


def test_first_load_wait_is_bounded(policy_dir, monkeypatch):
    monkeypatch.setattr(policy_store, 'FIRST_LOAD_WAIT_S', 0.01)
    store = policy_store.PolicyStore()
    store._lock.acquire()     # as if another thread were stuck loading
    try:
        assert call_with_guard(store.get, policy_dir, 0) is None
    finally:
        store._lock.release()
    assert store.get(policy_dir, 0).version == 'good'


def test_load_artifact_raises_only_artifact_error(policy_dir, monkeypatch):
    def boom(*a, **kw):
        raise MemoryError('simulated')
    monkeypatch.setattr(artifact, 'read_npz', boom)
    refused(policy_dir, 'unexpected MemoryError')
