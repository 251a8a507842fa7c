"""The publish gate, atomic install and rollback
(nova_rl_trainer.publishing.judge).

Test policies are linear artifacts evaluated on ``azure-v1-small`` under the
``packing`` objective over the 10 held-out windows of seed 0 (each played
from the state Nova's default weighers built), paired, with a tolerance of
10% on the one-sided 95% bound (measured, gated):

* ``good`` (Nova's spreading weight negated: packs) is better than
  nova-default on packing (mean -7.4%) and within the tolerance on its
  terms (bounds: active host-hours +5.5%, energy +5.0%, rejections 0), but
  far worse on headroom deficit (mean +20x), which ``--terms all`` checks;
* ``worse`` (spread by free RAM) is worse than ``good`` on packing (mean
  +9.1%);
* ``nova`` (Nova's weight alone) decides exactly as nova-default.
"""

import json
import math
import os
import shutil

import pytest

from nova_rl_weigher import artifact
from nova_rl_weigher.policy_store import PolicyStore
from tests.fixtures import make_linear_policy

from nova_rl_trainer import cli
from nova_rl_trainer.publishing import judge as publish
from nova_rl_trainer.publishing import switch
from nova_rl_trainer.publishing import versions as pv

from ._helpers import HEADER

SCENARIO = 'azure-v1-small'
TOLERANCE = 0.1
FAST = dict(scenarios=(SCENARIO,), tolerance=TOLERANCE, jobs=1)
CLI_FAST = ['--scenario', SCENARIO, '--tolerance', str(TOLERANCE),
            '--jobs', '1', '--quiet']


@pytest.fixture(scope='module')
def policies(tmp_path_factory):
    root = tmp_path_factory.mktemp('policies')
    weights = {'good': {'nova_weight': -1.0},
               'worse': {'ram_free_frac': 1.0},
               'nova': {'nova_weight': 1.0}}
    return {name: make_linear_policy(str(root / name), w,
                                     objective='packing',
                                     policy_version=name)
            for name, w in weights.items()}


def state_of(target):
    """Everything a reader of the target could observe, byte for byte."""
    versions = pv.versions_dir(target)
    files = {}
    for base in (target, versions):
        for dirpath, _, names in os.walk(base):
            for n in names:
                p = os.path.join(dirpath, n)
                with open(p, 'rb') as f:
                    files[os.path.relpath(p, os.path.dirname(target))] = \
                        f.read()
    return (os.path.islink(target),
            os.readlink(target) if os.path.islink(target) else None,
            os.path.realpath(target), files)


def served(store, target):
    # Interval 0: check the disk on every call, as the hot-reload contract
    # is about what the next request sees.
    policy = store.get(str(target), 0)
    return policy.version if policy else None


def test_first_install_with_no_current_policy(policies, tmp_path):
    target = str(tmp_path / 'policy')
    result = publish.publish(policies['good'], target, **FAST)
    assert result.accepted and result.installed, result.reasons()
    assert result.current_version is None and result.previous is None
    assert result.columns == ['candidate', 'nova-default']
    assert any('first install' in n for n in result.notes)
    assert os.path.islink(target)
    assert not os.path.isabs(os.readlink(target))    # relocatable pair
    assert os.path.dirname(os.path.realpath(target)) == \
        os.path.realpath(pv.versions_dir(target))
    assert artifact.load_artifact(target).version == 'good'
    assert served(PolicyStore(), target) == 'good'
    history = pv.read_history(target)
    assert history['stack'] == [os.path.basename(result.installed_as)]
    event = history['events'][-1]
    assert event['action'] == 'install' and event['policy_version'] == 'good'
    assert event['evaluation']['cases'][0]['metrics']['candidate'][
        'active_host_hours'] > 0
    assert len(event['evaluation']['cases']) == 10
    assert {j['term'] for j in event['evaluation']['judgements']} == {
        'active_host_hours', 'energy_kwh', 'rejected', 'objective'}


def test_worse_on_one_term_in_enough_windows_is_refused(policies,
                                                        tmp_path):
    """Better on the objective, but far worse on headroom deficit: with
    every term checked, the one-sided bound over the windows refuses it."""
    target = str(tmp_path / 'policy')
    result = publish.publish(policies['good'], target, terms='all', **FAST)
    assert not result.installed and result.exit_code == 3
    failed = {(f.reference, f.term) for f in result.failures}
    assert failed == {('nova-default', 'headroom_deficit_host_hours')}
    by = {(j.reference, j.term): j for j in result.judgements}
    deficit = by['nova-default', 'headroom_deficit_host_hours']
    assert deficit.bound.n == 10 and deficit.bound.upper > TOLERANCE
    assert by['nova-default', 'objective'].passed
    assert 'headroom_deficit_host_hours is worse than nova-default' in \
        result.reasons()[0] and '10 windows' in result.reasons()[0]
    assert not os.path.lexists(target)


def test_worse_candidate_is_refused_and_nothing_changes(policies, tmp_path,
                                                        capsys):
    target = str(tmp_path / 'policy')
    assert publish.publish(policies['good'], target, **FAST).installed
    store = PolicyStore()
    assert served(store, target) == 'good'
    before = state_of(target)

    rc = cli.main(['publish', '--candidate', policies['worse'],
                   '--target', target, '--terms', 'all', *CLI_FAST])
    out = capsys.readouterr().out
    assert rc == publish.EXIT_REFUSED == 3
    assert state_of(target) == before
    assert served(store, target) == 'good'
    # The table has all three columns, and says which term failed.
    assert 'candidate' in out and 'current' in out and 'nova-default' in out
    assert 'REFUSED' in out
    assert 'objective packing is not better than current' in out
    # Every term's paired verdict: mean difference, bound, n, result.
    assert 'upper 95%' in out
    assert any(line.split()[:2] == ['current', 'objective']
               and line.split()[-2:] == ['10', 'FAIL']
               for line in out.splitlines())

    result = publish.publish(policies['worse'], target, terms='all', **FAST)
    assert not result.installed and result.exit_code == 3
    failed = {(f.reference, f.term) for f in result.failures}
    assert ('current', 'objective') in failed
    objective = next(j for j in result.judgements
                     if (j.reference, j.term) == ('current', 'objective'))
    assert objective.bound.n == 10 and objective.bound.mean > 0
    assert state_of(target) == before

    # By default only the chosen objective's terms (packing: active
    # host-hours, energy, rejections) are checked.
    result = publish.publish(policies['worse'], target, **FAST)
    assert not result.installed and result.exit_code == 3
    assert result.terms == ('active_host_hours', 'energy_kwh', 'rejected')
    failed = {(f.reference, f.term) for f in result.failures}
    assert ('current', 'objective') in failed
    assert all(t in result.terms + ('objective',) for _, t in failed)
    assert state_of(target) == before


def test_candidate_no_better_than_nova_default_is_refused(policies,
                                                          tmp_path):
    target = str(tmp_path / 'policy')
    result = publish.publish(policies['nova'], target, **FAST)
    # Equal on every term (same decisions), so only "better" fails.
    assert [(f.reference, f.term) for f in result.failures] == \
        [('nova-default', 'objective')]
    assert 'is not better than nova-default' in result.reasons()[0]
    assert not os.path.lexists(target)
    assert not os.path.exists(pv.versions_dir(target))


def test_better_candidate_installed_over_plain_dir_then_rollback(
        policies, tmp_path, capsys):
    # An artifact the operator put there before publishing existed.
    target = str(tmp_path / 'policy')
    shutil.copytree(policies['worse'], target)
    store = PolicyStore()
    assert served(store, target) == 'worse'

    rc = cli.main(['publish', '--candidate', policies['good'],
                   '--target', target, *CLI_FAST])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert 'INSTALLED' in out and 'rollback --target' in out
    assert os.path.islink(target)
    assert artifact.load_artifact(target).version == 'good'
    assert served(store, target) == 'good'
    # The previous artifact is kept as a version and is what rollback uses.
    history = pv.read_history(target)
    assert len(history['stack']) == 2
    previous = os.path.join(pv.versions_dir(target), history['stack'][0])
    assert artifact.load_artifact(previous).version == 'worse'

    assert cli.main(['rollback', '--target', target]) == 0
    assert os.path.realpath(target) == os.path.realpath(previous)
    assert artifact.load_artifact(target).version == 'worse'
    assert served(store, target) == 'worse'
    history = pv.read_history(target)
    assert history['events'][-1]['action'] == 'rollback'
    assert len(history['stack']) == 1 and len(history['retired']) == 1

    # Nothing older: a clear error, and the target stays.
    before = state_of(target)
    capsys.readouterr()
    assert cli.main(['rollback', '--target', target]) == 2
    assert 'no previous version' in capsys.readouterr().err
    assert state_of(target) == before
    assert served(store, target) == 'worse'


def test_rollback_without_history_is_an_error(policies, tmp_path, capsys):
    target = str(tmp_path / 'policy')
    with pytest.raises(publish.PublishError, match='no publish history'):
        publish.rollback(target)
    shutil.copytree(policies['good'], target)
    before = state_of(target)
    assert cli.main(['rollback', '--target', target]) == 2
    assert 'nothing to roll back to' in capsys.readouterr().err
    assert state_of(target) == before
    assert not os.path.exists(pv.versions_dir(target))


def test_corrupt_candidate_is_refused_with_a_clear_error(policies, tmp_path,
                                                         capsys):
    target = str(tmp_path / 'policy')
    publish.publish(policies['worse'], target, **FAST)
    before = state_of(target)
    bad = tmp_path / 'bad'
    shutil.copytree(policies['good'], bad)
    weights = bad / 'weights.npz'
    data = bytearray(weights.read_bytes())
    data[-20] ^= 0xFF
    weights.write_bytes(bytes(data))

    with pytest.raises(publish.PublishError,
                       match='not a valid policy artifact.*sha256'):
        publish.publish(str(bad), target, **FAST)
    rc = cli.main(['publish', '--candidate', str(bad), '--target',
                   target, *CLI_FAST])
    err = capsys.readouterr().err
    assert rc == 2
    assert 'candidate refused' in err and 'nothing was changed' in err
    assert cli.main(['publish', '--candidate', str(tmp_path / 'none'),
                     '--target', target, *CLI_FAST]) == 2
    assert 'not found' in capsys.readouterr().err
    assert state_of(target) == before


def test_objective_must_be_known(policies, tmp_path, capsys):
    target = str(tmp_path / 'policy')
    unnamed = make_linear_policy(str(tmp_path / 'unnamed'),
                                 {'nova_weight': 1.0})   # objective 'test'
    with pytest.raises(publish.PublishError, match='--objective'):
        publish.publish(unnamed, target, **FAST)
    assert cli.main(['publish', '--candidate', policies['good'],
                     '--target', target, '--objective', 'nope',
                     *CLI_FAST]) == 2
    assert "unknown objective 'nope'" in capsys.readouterr().err
    assert not os.path.lexists(target)


def test_dry_run_and_json_decide_without_installing(policies, tmp_path,
                                                    capsys):
    target = str(tmp_path / 'policy')
    out = tmp_path / 'decision.json'
    # Through the trainer's own command line.
    assert cli.main(['publish', '--candidate', policies['good'],
                     '--target', target, '--dry-run', '--json',
                     str(out), *CLI_FAST]) == 0
    assert 'would be installed' in capsys.readouterr().out
    assert not os.path.lexists(target)
    doc = json.loads(out.read_text())
    assert doc['accepted'] and not doc['installed']
    assert doc['objective'] == 'packing'


def test_held_out_trace_with_cluster_options(policies, tmp_path, capsys):
    trace = tmp_path / 'trace.csv'
    trace.write_text(HEADER + 'a,p1,0,3600,2,2048,10,0.9,0.95\n'
                     'b,p2,60,7200,4,1024,0,0.9,0.95\n'
                     'c,p1,120,7200,1,512,0,0.2,0.3\n')
    target = str(tmp_path / 'policy')
    args = ['publish', '--candidate', policies['good'], '--target', target,
            '--trace', str(trace), '--trace-format', 'csv', '--jobs', '1',
            '--quiet', '--dry-run']
    assert cli.main(args) == 2
    assert 'give the cluster' in capsys.readouterr().err
    rc = cli.main(args + ['--hosts', '2', '--host-vcpus', '8',
                          '--host-ram-mb', '8192', '--seed', '1'])
    out = capsys.readouterr().out
    assert rc in (0, 3)
    assert 'trace.csv seed 1' in out
    assert not os.path.lexists(target)


# -- the versions store, without simulation ----------------------------------

def _install(target, src, keep=5):
    snap = pv.snapshot(src)
    try:
        return pv.install(target, snap.path, snap.fingerprint,
                          snap.policy.version, pv.inspect(target), keep)
    finally:
        shutil.rmtree(os.path.dirname(snap.path))


def _linear(tmp_path, name):
    path = tmp_path / 'src' / name
    if path.exists():     # rewriting would change created_at, so the bytes
        return str(path)
    return make_linear_policy(str(path), {'ram_free_frac': float(len(name))},
                              policy_version=name)


def test_keep_prunes_old_versions_and_rollback_walks_back(tmp_path):
    target = str(tmp_path / 'policy')
    for name in ('a', 'bb', 'ccc', 'dddd'):
        _install(target, _linear(tmp_path, name), keep=2)
    names = pv.read_history(target)['stack']
    assert [n.split('-')[0] for n in names] == ['bb', 'ccc', 'dddd']
    on_disk = {n for n in os.listdir(pv.versions_dir(target))
               if not n.startswith('.') and n != pv.HISTORY}
    assert on_disk == set(names)
    store = PolicyStore()
    assert served(store, target) == 'dddd'
    assert pv.rollback(target).policy_version == 'ccc'
    assert served(store, target) == 'ccc'
    assert pv.rollback(target).policy_version == 'bb'
    assert served(store, target) == 'bb'
    with pytest.raises(pv.VersionError, match='no previous version'):
        pv.rollback(target)
    # Republishing a retired version reuses its directory.
    outcome = _install(target, _linear(tmp_path, 'dddd'))
    assert outcome.name == names[-1]
    assert served(store, target) == 'dddd'


def test_target_changed_during_evaluation_is_not_overwritten(tmp_path):
    target = str(tmp_path / 'policy')
    _install(target, _linear(tmp_path, 'a'))
    seen = pv.inspect(target)
    _install(target, _linear(tmp_path, 'bb'))    # someone else, meanwhile
    before = state_of(target)
    snap = pv.snapshot(_linear(tmp_path, 'ccc'))
    try:
        with pytest.raises(pv.VersionError, match='changed while'):
            pv.install(target, snap.path, snap.fingerprint, 'ccc', seen, 5)
    finally:
        shutil.rmtree(os.path.dirname(snap.path))
    assert state_of(target) == before


def test_concurrent_publish_is_refused(tmp_path):
    target = str(tmp_path / 'policy')
    _install(target, _linear(tmp_path, 'a'))
    with pv.locked(target):
        with pytest.raises(pv.VersionError, match='in progress'):
            _install(target, _linear(tmp_path, 'bb'))
        with pytest.raises(pv.VersionError, match='in progress'):
            pv.rollback(target)
    assert artifact.load_artifact(target).version == 'a'


def test_plain_dir_adopted_without_renameat2(tmp_path, monkeypatch):
    def unsupported(a, b):
        raise OSError(38, 'Function not implemented')
    monkeypatch.setattr(switch, '_exchange', unsupported)
    target = str(tmp_path / 'policy')
    shutil.copytree(_linear(tmp_path, 'a'), target)
    (tmp_path / 'policy' / 'NOTES').write_text('operator notes')
    outcome = _install(target, _linear(tmp_path, 'bb'))
    assert artifact.load_artifact(target).version == 'bb'
    adopted = os.path.join(pv.versions_dir(target), outcome.adopted)
    # Moved, not copied: whatever else the operator kept there survives.
    assert open(os.path.join(adopted, 'NOTES')).read() == 'operator notes'
    assert pv.rollback(target).policy_version == 'a'


def test_invalid_current_artifact_is_kept_but_not_restorable(tmp_path):
    target = str(tmp_path / 'policy')
    shutil.copytree(_linear(tmp_path, 'a'), target)
    os.unlink(os.path.join(target, 'weights.npz'))
    outcome = _install(target, _linear(tmp_path, 'bb'))
    history = pv.read_history(target)
    assert outcome.adopted in history['retired']
    assert history['stack'] == [outcome.name]
    with pytest.raises(pv.VersionError, match='no previous version'):
        pv.rollback(target)


def test_a_file_at_the_target_is_left_alone(policies, tmp_path):
    target = tmp_path / 'policy'
    target.write_text('not a policy')
    with pytest.raises(publish.PublishError, match='neither a directory'):
        publish.publish(policies['good'], str(target), **FAST)
    assert target.read_text() == 'not a policy'


def test_external_symlink_is_copied_not_moved(tmp_path):
    elsewhere = _linear(tmp_path, 'a')
    before = {n: open(os.path.join(elsewhere, n), 'rb').read()
              for n in os.listdir(elsewhere)}
    target = str(tmp_path / 'policy')
    os.symlink(elsewhere, target)
    outcome = _install(target, _linear(tmp_path, 'bb'))
    assert artifact.load_artifact(target).version == 'bb'
    assert {n: open(os.path.join(elsewhere, n), 'rb').read()
            for n in os.listdir(elsewhere)} == before
    assert outcome.previous == outcome.adopted
    assert pv.rollback(target).policy_version == 'a'
    assert os.path.dirname(os.path.realpath(target)) == \
        os.path.realpath(pv.versions_dir(target))


# -- hostile candidates, current policies and histories ----------------------
#
# Whatever the files hold, publish and rollback end with one 'error:' line
# and exit 2 (or, for the current policy, a note), never a traceback, and
# the target is untouched. The gate is replaced by a fake evaluation: none
# of these may get that far, or it is not what they test.

def _fake_gate(monkeypatch):
    from .test_publish_unprivileged import fake_evaluate
    monkeypatch.setattr(publish, '_evaluate', fake_evaluate)


def _edit_manifest(path, edit):
    manifest_path = os.path.join(path, 'manifest.json')
    with open(manifest_path) as f:
        manifest = json.load(f)
    result = edit(manifest)
    text = result if isinstance(result, str) else json.dumps(
        manifest if result is None else result)
    with open(manifest_path, 'w') as f:
        f.write(text)


def _set(section, key, value):
    def edit(m):
        if section:
            m[section][key] = value
        else:
            m[key] = value
    return edit


def _nest(depth):
    doc = 0
    for _ in range(depth):
        doc = {'a': doc}
    return doc


HOSTILE_MANIFESTS = {
    'list': lambda m: [m],
    'deeply-nested-text': lambda m: '[' * 100000 + ']' * 100000,
    'deeply-nested-field': _set(None, 'provenance', _nest(200)),
    'not-json': lambda m: '{"format": ',
    'not-utf8': lambda m: '{"a": "\udcff"}',
    'huge-integer': lambda m: '{"ensemble_size": ' + '9' * 5000 + '}',
    'nan-tolerance': _set('feature_ranges', 'tolerance', math.nan),
    'string-ensemble-size': _set(None, 'ensemble_size', '5'),
    'list-normalisation': _set(None, 'normalisation', [1, 2]),
    'null-mean': _set('normalisation', 'mean', None),
    'weights-file-number': _set(None, 'weights_file', 7),
    'weights-file-outside': _set(None, 'weights_file', '../weights.npz'),
    'version-not-string': _set(None, 'policy_version', {'v': 1}),
    'objective-not-string': _set(None, 'objective', ['packing']),
    'sha-not-string': _set(None, 'weights_sha256', 12),
}


def _hostile(tmp_path, name, source):
    path = tmp_path / name
    shutil.copytree(source, path)
    return str(path)


@pytest.mark.parametrize('kind', sorted(HOSTILE_MANIFESTS))
def test_hostile_candidate_manifest_is_an_error(policies, tmp_path, capsys,
                                                monkeypatch, kind):
    _fake_gate(monkeypatch)
    target = str(tmp_path / 'policy')
    _install(target, _linear(tmp_path, 'a'))
    before = state_of(target)
    bad = _hostile(tmp_path, 'bad', policies['good'])
    edit = HOSTILE_MANIFESTS[kind]
    if kind == 'not-utf8':
        with open(os.path.join(bad, 'manifest.json'), 'wb') as f:
            f.write(b'{"a": "\xff"}')
    else:
        _edit_manifest(bad, edit)
    with pytest.raises(publish.PublishError, match='candidate refused'):
        publish.publish(bad, target, **FAST)
    rc = cli.main(['publish', '--candidate', bad, '--target', target,
                   *CLI_FAST])
    err = capsys.readouterr().err
    assert rc == 2, err
    assert err.startswith('nova-rl-trainer publish: error: candidate '
                          'refused')
    assert err.count('\n') == 1 and 'Traceback' not in err
    assert 'nothing was changed' in err
    assert state_of(target) == before


def _fifo(path):
    os.unlink(path)
    os.mkfifo(path)


def _outside_symlink(path):
    os.unlink(path)
    os.symlink('/etc/passwd', path)


def _huge(path):
    # Sparse: past the cap without writing it.
    with open(path, 'r+b') as f:
        f.truncate(artifact.MAX_WEIGHTS_BYTES + 1)


def _directory(path):
    os.unlink(path)
    os.mkdir(path)


@pytest.mark.parametrize('hostile', [_fifo, _outside_symlink, _huge,
                                     _directory])
@pytest.mark.parametrize('name', ['manifest.json', 'weights.npz'])
def test_hostile_candidate_files_are_refused_before_reading(
        policies, tmp_path, capsys, monkeypatch, name, hostile):
    _fake_gate(monkeypatch)
    target = str(tmp_path / 'policy')
    bad = _hostile(tmp_path, 'bad', policies['good'])
    if name == 'manifest.json' and hostile is _huge:
        with open(os.path.join(bad, name), 'r+b') as f:
            f.truncate(artifact.MAX_MANIFEST_BYTES + 1)
    else:
        hostile(os.path.join(bad, name))
    # A FIFO would block a plain open() forever: it must not be opened.
    rc = cli.main(['publish', '--candidate', bad, '--target', target,
                   *CLI_FAST])
    err = capsys.readouterr().err
    assert rc == 2, err
    assert 'error: candidate refused' in err and 'Traceback' not in err
    assert not os.path.lexists(target)
    assert not os.path.exists(pv.versions_dir(target))


def test_copy_takes_only_the_artifact_files_within_caps(policies, tmp_path):
    src = _hostile(tmp_path, 'src', policies['good'])
    (tmp_path / 'src' / 'checkpoint.bin').write_bytes(b'x' * 1000)
    dst = str(tmp_path / 'dst')
    pv.copy_artifact(src, dst)
    assert sorted(os.listdir(dst)) == ['manifest.json', 'weights.npz']
    assert artifact.load_artifact(dst).version == 'good'
    for name in os.listdir(dst):
        assert os.stat(os.path.join(dst, name)).st_mode & 0o777 == 0o644
    # A symlink inside the artifact directory is followed; out of it, not.
    inside = _hostile(tmp_path, 'inside', policies['good'])
    os.rename(os.path.join(inside, 'weights.npz'),
              os.path.join(inside, 'real.npz'))
    os.symlink('real.npz', os.path.join(inside, 'weights.npz'))
    pv.copy_artifact(inside, str(tmp_path / 'dst2'))
    outside = _hostile(tmp_path, 'outside', policies['good'])
    _outside_symlink(os.path.join(outside, 'weights.npz'))
    with pytest.raises(OSError, match='outside'):
        pv.copy_artifact(outside, str(tmp_path / 'dst3'))


@pytest.mark.parametrize('kind', ['list', 'deeply-nested-text',
                                  'nan-tolerance'])
def test_hostile_current_policy_is_a_note(policies, tmp_path, capsys,
                                          monkeypatch, kind):
    _fake_gate(monkeypatch)
    target = str(tmp_path / 'policy')
    shutil.copytree(policies['worse'], target)
    _edit_manifest(target, HOSTILE_MANIFESTS[kind])
    _fifo(os.path.join(target, 'weights.npz'))
    rc = cli.main(['publish', '--candidate', policies['good'], '--target',
                   target, *CLI_FAST])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert 'note: the current policy' in out and 'is invalid' in out
    assert artifact.load_artifact(target).version == 'good'
    # Kept (it was the operator's), but never restorable.
    history = pv.read_history(target)
    assert len(history['retired']) == 1 and len(history['stack']) == 1
    assert cli.main(['rollback', '--target', target]) == 2
    assert 'no previous version' in capsys.readouterr().err


def test_hostile_previous_version_is_not_restored(tmp_path, capsys):
    target = str(tmp_path / 'policy')
    _install(target, _linear(tmp_path, 'a'))
    _install(target, _linear(tmp_path, 'bb'))
    previous = os.path.join(pv.versions_dir(target),
                            pv.read_history(target)['stack'][0])
    _edit_manifest(previous, HOSTILE_MANIFESTS['deeply-nested-text'])
    before = state_of(target)
    assert cli.main(['rollback', '--target', target]) == 2
    err = capsys.readouterr().err
    assert 'fails verification' in err and 'Traceback' not in err
    assert "nothing was changed: " in err and "serves policy 'bb'" in err
    assert state_of(target) == before


@pytest.mark.parametrize('text, words', [
    ('[' * 100000, 'unreadable'),
    ('[]', 'not a publish history'),
    ('{"format": "nova-rl-publish-history", "stack": [1]}',
     'not a publish history'),
    ('{"format": "nova-rl-publish-history", "stack": ["a", "../../etc"]}',
     'not a publish history'),
    ('{"format": "nova-rl-publish-history", "stack": [], "events": [1]}',
     'not a publish history'),
])
def test_hostile_history_is_an_error(tmp_path, capsys, text, words):
    target = str(tmp_path / 'policy')
    _install(target, _linear(tmp_path, 'a'))
    _install(target, _linear(tmp_path, 'bb'))
    with open(os.path.join(pv.versions_dir(target), pv.HISTORY), 'w') as f:
        f.write(text)
    before = state_of(target)
    assert cli.main(['rollback', '--target', target]) == 2
    err = capsys.readouterr().err
    assert words in err and 'Traceback' not in err
    assert state_of(target) == before
    with pytest.raises(pv.VersionError, match=words):
        _install(target, _linear(tmp_path, 'ccc'))
    assert state_of(target) == before
