"""publish and rollback are transactional: the target serves the old policy
or the new one, the exit status and message say which, and the history's
current entry is what is served.

The failures come from real permissions: the command runs in a forked
child as ``nobody`` (uid/gid 65534) against a tree where the right
directories are read-only (tests run as root, whose override rights would
make every chmod moot). Failures no permission can cause (a full disk
after the switch, a switch that cannot be undone) are injected in-process.
The gate itself is replaced by a fake evaluation the candidate always wins:
these tests are about installing, not judging.
"""

import contextlib
import errno
import io
import json
import os
import shutil
import stat
import tempfile
import traceback

import pytest

from nova_rl_weigher import artifact
from tests.fixtures import make_linear_policy

from nova_rl_trainer import cli
from nova_rl_trainer.publishing import judge
from nova_rl_trainer.publishing import switch
from nova_rl_trainer.publishing import versions as pv
from nova_rl_trainer.simulation import objectives

NOBODY = 65534
ARGS = ['--scenario', 'azure-v1-small', '--jobs', '1', '--quiet']


def fake_evaluate(setups, windows, window_days, columns, *_):
    """The candidate ties every term and wins the objective, on each of
    10 held-out windows (the fewest a verdict may rest on)."""
    metrics = {}
    for col in columns:
        m = {t: 1.0 for t in objectives.TERMS}
        m['objective_value'] = 1.0 if col != judge.CANDIDATE else 0.5
        metrics[col] = m
    return [judge.Case(label=f'fake seed 0 window {k}', scenario=None,
                       seed=0, metrics=metrics) for k in range(10)]


@pytest.fixture(autouse=True)
def no_simulation(monkeypatch):
    monkeypatch.setattr(judge, '_evaluate', fake_evaluate)


@pytest.fixture
def tree():
    """A directory nobody can read (pytest's tmp_path is private to root),
    removed afterwards whatever its modes."""
    root = tempfile.mkdtemp(prefix='nova-rl-unpriv-')
    os.chmod(root, 0o755)
    try:
        yield root
    finally:
        for dirpath, dirnames, _ in os.walk(root):
            for d in dirnames:
                p = os.path.join(dirpath, d)
                if not os.path.islink(p):
                    os.chmod(p, 0o755)
        shutil.rmtree(root)


def run_cli(argv, unprivileged=False, patch=None):
    """``cli.main(argv)`` -> (exit status, stdout, stderr); with
    ``unprivileged``, in a forked child as nobody. ``patch`` (a callable)
    runs first, in the child."""
    if not unprivileged:
        if patch:
            patch()
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            rc = cli.main(argv)
        return rc, out.getvalue(), err.getvalue()
    # Plugins found now, as root: stevedore's entry point scan stats the
    # interpreter's own paths, which nobody may not be allowed to see here.
    objectives.load_objective('packing')
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:    # pragma: no cover - the child
        doc = {}
        try:
            os.close(r)
            if os.geteuid() == 0:
                try:
                    os.setgroups([])
                    os.setgid(NOBODY)
                    os.setuid(NOBODY)
                except OSError as e:
                    doc = {'skip': f'cannot drop privileges: {e}'}
            if not doc:
                if patch:
                    patch()
                out, err = io.StringIO(), io.StringIO()
                with contextlib.redirect_stdout(out), \
                        contextlib.redirect_stderr(err):
                    rc = cli.main(argv)
                doc = {'rc': rc, 'out': out.getvalue(),
                       'err': err.getvalue()}
        except BaseException:
            doc = {'crash': traceback.format_exc()}
        finally:
            with os.fdopen(w, 'w') as f:
                f.write(json.dumps(doc))
            os._exit(0)
    os.close(w)
    with os.fdopen(r) as f:
        text = f.read()
    os.waitpid(pid, 0)
    doc = json.loads(text)
    if 'skip' in doc:
        pytest.skip(doc['skip'])
    assert 'crash' not in doc, doc.get('crash')
    return doc['rc'], doc['out'], doc['err']


def policy(root, name):
    path = os.path.join(root, 'src', name)
    if not os.path.exists(path):
        make_linear_policy(path, {'ram_free_frac': float(len(name))},
                           objective='packing', policy_version=name)
    return path


def served(target):
    try:
        return artifact.load_artifact(target).version
    except artifact.ArtifactError:
        return None


def current_in_history(target):
    """The history's current entry, checked to be what the target serves:
    (version directory, its policy version), or None without history."""
    if not os.path.exists(os.path.join(pv.versions_dir(target), pv.HISTORY)):
        return None
    stack = pv.read_history(target)['stack']
    assert stack, 'a history with nothing current'
    assert os.path.realpath(target) == os.path.realpath(
        os.path.join(pv.versions_dir(target), stack[-1]))
    return stack[-1], served(target)


def listing(target):
    """Names in the target's directory and versions directory."""
    out = set()
    for d in (os.path.dirname(target), pv.versions_dir(target)):
        if os.path.isdir(d):
            out |= {os.path.join(os.path.basename(d), n)
                    for n in os.listdir(d)}
    return out


def publish(target, name, root, **kw):
    return run_cli(['publish', '--candidate', policy(root, name),
                    '--target', target, *ARGS, *kw.pop('extra', [])], **kw)


def rollback(target, **kw):
    return run_cli(['rollback', '--target', target], **kw)


def give_to_nobody(path):
    if os.geteuid() != 0:
        return
    for dirpath, dirnames, filenames in os.walk(path):
        for n in [dirpath] + [os.path.join(dirpath, x)
                              for x in dirnames + filenames]:
            os.lchown(n, NOBODY, NOBODY)


def read_only(*paths):
    for p in paths:
        os.chmod(p, 0o555)


def writable(*paths):
    for p in paths:
        os.chmod(p, 0o755)


@pytest.fixture
def published(tree):
    """``site/policy`` serving 'bb', history [a, bb], owned by nobody."""
    site = os.path.join(tree, 'site')
    os.mkdir(site)
    target = os.path.join(site, 'policy')
    for name in ('a', 'bb'):
        rc, out, err = publish(target, name, tree)
        assert rc == 0, err
    give_to_nobody(site)
    assert served(target) == 'bb'
    return target


def assert_unchanged(rc, err, target, version, before):
    assert rc == judge.EXIT_ERROR == 2, err
    assert 'error:' in err and 'Traceback' not in err
    assert 'nothing was changed' in err
    assert f"serves policy '{version}'" in err
    assert served(target) == version
    assert listing(target) == before


# -- real permissions, as nobody ----------------------------------------------

def test_unprivileged_publish_and_rollback_work(published):
    tree = os.path.dirname(os.path.dirname(published))
    rc, out, err = publish(published, 'ccc', tree, unprivileged=True)
    assert rc == 0, err
    assert 'INSTALLED' in out
    assert served(published) == 'ccc'
    assert current_in_history(published)[1] == 'ccc'
    rc, out, err = rollback(published, unprivileged=True)
    assert rc == 0, err
    assert served(published) == 'bb'
    assert current_in_history(published)[1] == 'bb'


def test_read_only_plain_directory_target(tree):
    """The reported bug: a plain directory of mode 555 at the target. It
    cannot be moved into the versions directory (that needs write
    permission on it); the target keeps serving it and says so."""
    site = os.path.join(tree, 'site')
    os.mkdir(site)
    target = os.path.join(site, 'policy')
    shutil.copytree(policy(tree, 'a'), target)
    give_to_nobody(site)
    read_only(target)
    before = listing(target)
    rc, out, err = publish(target, 'ccc', tree, unprivileged=True)
    assert_unchanged(rc, err, target, 'a', before)
    assert 'is not writable by this user' in err
    assert not os.path.islink(target)
    assert not os.path.exists(pv.versions_dir(target))
    assert current_in_history(target) is None
    # Nothing was published, so there is nothing to roll back to.
    rc, _, err = rollback(target, unprivileged=True)
    assert rc == 2 and 'no publish history' in err
    assert served(target) == 'a'

    # Without the early check, the switch itself is refused by the kernel,
    # atomically: still nothing changed.
    def no_check():
        pv._check_writable = lambda *a: None
    rc, out, err = publish(target, 'ccc', tree, unprivileged=True,
                           patch=no_check)
    assert_unchanged(rc, err, target, 'a', before)
    assert 'Permission denied' in err

    # Made writable, it is adopted and rollback returns to it.
    writable(target)
    rc, out, err = publish(target, 'ccc', tree, unprivileged=True)
    assert rc == 0, err
    assert served(target) == 'ccc'
    assert current_in_history(target)[1] == 'ccc'
    rc, out, err = rollback(target, unprivileged=True)
    assert rc == 0, err
    assert served(target) == 'a'
    assert current_in_history(target)[1] == 'a'


def test_read_only_parent(published):
    tree = os.path.dirname(os.path.dirname(published))
    site = os.path.dirname(published)
    read_only(site)
    before = listing(published)
    history = pv.read_history(published)
    rc, out, err = publish(published, 'ccc', tree, unprivileged=True)
    assert_unchanged(rc, err, published, 'bb', before)
    assert f'{site} is not writable' in err
    assert pv.read_history(published) == history
    assert current_in_history(published)[1] == 'bb'
    rc, out, err = rollback(published, unprivileged=True)
    assert_unchanged(rc, err, published, 'bb', before)

    # Past the early checks, the prepared symlink cannot be made: still
    # before the switch.
    def no_check():
        pv._check_writable = lambda *a: None
    rc, out, err = publish(published, 'ccc', tree, unprivileged=True,
                           patch=no_check)
    assert_unchanged(rc, err, published, 'bb', before)
    assert pv.read_history(published) == history

    writable(site)
    rc, out, err = rollback(published, unprivileged=True)
    assert rc == 0, err
    assert served(published) == 'a'
    assert current_in_history(published)[1] == 'a'


def test_read_only_versions_directory(published):
    tree = os.path.dirname(os.path.dirname(published))
    versions = pv.versions_dir(published)
    if os.geteuid() == 0:
        # Someone else's lock file: a read-only descriptor locks as well.
        os.lchown(os.path.join(versions, pv.LOCK), 0, 0)
    read_only(versions)
    before = listing(published)
    history = pv.read_history(published)
    rc, out, err = publish(published, 'ccc', tree, unprivileged=True)
    assert_unchanged(rc, err, published, 'bb', before)
    assert f'{versions} is not writable' in err
    rc, out, err = rollback(published, unprivileged=True)
    assert_unchanged(rc, err, published, 'bb', before)

    # Republishing 'a' needs no new directory, so the switch happens, the
    # history cannot be written after it, and the switch is undone.
    def no_check():
        pv._check_writable = lambda *a: None
    rc, out, err = publish(published, 'a', tree, unprivileged=True,
                           patch=no_check)
    assert_unchanged(rc, err, published, 'bb', before)
    assert 'switched back' in err
    assert pv.read_history(published) == history
    assert current_in_history(published)[1] == 'bb'
    rc, out, err = rollback(published, unprivileged=True, patch=no_check)
    assert_unchanged(rc, err, published, 'bb', before)
    assert 'switched back' in err

    writable(versions)
    rc, out, err = rollback(published, unprivileged=True)
    assert rc == 0, err
    assert served(published) == 'a'
    assert current_in_history(published)[1] == 'a'


def test_read_only_old_version_is_a_warning_not_a_failure(published):
    tree = os.path.dirname(os.path.dirname(published))
    old = os.path.join(pv.versions_dir(published),
                       pv.read_history(published)['stack'][0])
    read_only(old)
    rc, out, err = publish(published, 'ccc', tree, unprivileged=True,
                           extra=['--keep', '0'])
    assert rc == 0, err
    assert 'INSTALLED' in out
    assert f'warning: could not remove old version {old}' in err
    assert served(published) == 'ccc'
    name, version = current_in_history(published)
    assert version == 'ccc'
    assert pv.read_history(published)['stack'] == [name]
    assert os.path.isdir(old)     # left for the operator, as warned


# -- failures after the switch, injected --------------------------------------

def full_disk(*args, **kw):
    raise OSError(errno.ENOSPC, 'No space left on device')


def no_renameat2(a, b):
    raise OSError(errno.ENOSYS, 'Function not implemented')


@pytest.mark.parametrize('exchange', [True, False],
                         ids=['renameat2', 'rename'])
@pytest.mark.parametrize('kind', ['link', 'dir', 'absent'])
def test_history_write_failing_after_the_switch_is_undone(
        tree, monkeypatch, kind, exchange):
    site = os.path.join(tree, 'site')
    os.mkdir(site)
    target = os.path.join(site, 'policy')
    if kind == 'link':
        for name in ('a', 'bb'):
            assert publish(target, name, tree)[0] == 0
    elif kind == 'dir':
        shutil.copytree(policy(tree, 'bb'), target)
    before = listing(target)
    history = (pv.read_history(target) if kind == 'link' else None)
    with monkeypatch.context() as m:
        if not exchange:
            m.setattr(switch, '_exchange', no_renameat2)
        m.setattr(switch, '_write_history', full_disk)
        rc, out, err = publish(target, 'ccc', tree)
    assert rc == 2, err
    assert 'No space left on device' in err and 'switched back' in err
    assert 'Traceback' not in err
    if kind == 'absent':
        assert 'nothing was changed' in err and 'does not exist' in err
        assert not os.path.lexists(target)
        assert listing(target) == before
        return
    assert_unchanged(rc, err, target, 'bb', before)
    if kind == 'link':
        assert pv.read_history(target) == history
        assert rollback(target)[0] == 0
        assert served(target) == 'a'
        assert current_in_history(target)[1] == 'a'
    else:
        assert not os.path.islink(target)
        assert current_in_history(target) is None


def test_rollback_history_write_failing_is_undone(tree, monkeypatch):
    target = os.path.join(tree, 'policy')
    for name in ('a', 'bb'):
        assert publish(target, name, tree)[0] == 0
    before = listing(target)
    with monkeypatch.context() as m:
        m.setattr(switch, '_write_history', full_disk)
        rc, out, err = rollback(target)
    assert_unchanged(rc, err, target, 'bb', before)
    assert 'switched back' in err
    assert current_in_history(target)[1] == 'bb'
    assert rollback(target)[0] == 0
    assert current_in_history(target)[1] == 'a'


def test_switch_that_cannot_be_undone_says_what_is_served(tree,
                                                          monkeypatch):
    target = os.path.join(tree, 'policy')
    for name in ('a', 'bb'):
        assert publish(target, name, tree)[0] == 0
    real = switch._exchange
    calls = []

    def once(a, b):
        calls.append((a, b))
        if len(calls) > 1:
            raise OSError(errno.EIO, 'Input/output error')
        real(a, b)
    with monkeypatch.context() as m:
        m.setattr(switch, '_write_history', full_disk)
        m.setattr(switch, '_exchange', once)
        rc, out, err = publish(target, 'ccc', tree)
    assert rc == judge.EXIT_SWITCHED == 4, err
    assert "NOW SERVES policy 'ccc'" in err
    assert 'does not record it' in err and 'bb' in err
    assert 'nothing was changed' not in err and 'Traceback' not in err
    assert served(target) == 'ccc'
    # The history still says bb: rollback refuses to guess ...
    rc, out, err = rollback(target)
    assert rc == 2 and 'changed outside publish' in err
    assert served(target) == 'ccc'
    # ... and the next publish trusts the disk: ccc becomes rollback-able.
    assert publish(target, 'dddd', tree)[0] == 0
    assert current_in_history(target)[1] == 'dddd'
    assert rollback(target)[0] == 0
    assert current_in_history(target)[1] == 'ccc'


def test_served_policy_checked_before_the_history(tree, monkeypatch):
    target = os.path.join(tree, 'policy')
    for name in ('a', 'bb'):
        assert publish(target, name, tree)[0] == 0
    before = listing(target)
    real = switch.verify

    def lying(path):
        if path == target:
            raise artifact.ArtifactError(f'{path}: damaged')
        return real(path)
    with monkeypatch.context() as m:
        m.setattr(switch, 'verify', lying)
        rc, out, err = publish(target, 'ccc', tree)
    assert rc == 2 and 'damaged' in err and 'switched back' in err
    assert served(target) == 'bb' and listing(target) == before


def test_mode_of_tree_is_what_nobody_needs(published):
    # The fixtures' premise: nobody can read every file of the tree.
    for dirpath, _, names in os.walk(os.path.dirname(published)):
        for n in names:
            assert os.stat(os.path.join(dirpath, n)).st_mode & stat.S_IROTH
