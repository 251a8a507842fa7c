"""devstack/plugin.sh, phase by phase, in a sandbox (issue 11, item 2).

Each phase runs in a fresh ``bash`` under ``set -eu -o pipefail`` with the
stand-ins of ``stand-ins.sh`` for DevStack's functions (see ``sandbox``);
the tests look at the files the phases leave behind.
"""

import os
import stat
import subprocess

from oslo_config import cfg
import pytest

from nova_rl_weigher import conf as rl_conf
from tests.devstack import sandbox as sb

RL_WEIGHER = 'nova_rl_weigher.weigher.RLWeigher'
ALL_WEIGHERS = 'nova.scheduler.weights.all_weighers'
TELEMETRY = sb.NOVA_SERVICES + sb.TELEMETRY_SERVICES
UNITS = ('nova-rl-snapshot.service', 'nova-rl-snapshot.timer')


def make(tmp_path, **kw):
    return sb.Sandbox(tmp_path, **kw)


def ini(box):
    return box.ini()


def weight_classes(box):
    return ini(box)['filter_scheduler']['weight_classes']


# -- the stand-ins behave like DevStack's functions -------------------------


def test_stand_in_ini_functions_have_devstack_semantics(tmp_path):
    box = make(tmp_path, nova_conf=None)
    conf = box.nova_conf
    script = '\n'.join([
        sb.STRICT, f'source {sb.STAND_INS}',
        f'iniset {conf} s a "x   y"',        # file and section created
        f'iniset {conf} s b 1',              # added right after the header
        f'iniset {conf} s a "p&q"',          # replaced in place
        f'echo "[$(iniget {conf} s a)]"',
        f'echo "[$(iniget {conf} s missing)]"',
        f'inidelete {conf} s b',
    ])
    proc = subprocess.run(
        ['bash', '-c', script], env=box.env(), capture_output=True,
        text=True, check=True)
    assert proc.stdout.splitlines() == ['[p&q]', '[]']
    assert conf.read_text() == '\n[s]\na = p&q\n'


# -- every phase, strict mode, shell left as found ---------------------------


@pytest.mark.parametrize('args', [
    ('stack', 'pre-install'), ('stack', 'install'), ('stack', 'post-config'),
    ('stack', 'extra'), ('stack', 'test-config'), ('unstack',), ('clean',)])
def test_every_phase_runs_under_set_eu_pipefail(tmp_path, args):
    box = make(tmp_path, services=TELEMETRY, RL_WEIGHER_INSTALL_TRAINER='True')
    # Sourced, the plugin must leave DevStack's shell options as they were.
    proc = box.run(*args, after='set -o | grep -E "^(errexit|nounset|'
                                'pipefail|xtrace)[[:space:]]"')
    options = dict(line.split() for line in proc.stdout.splitlines()
                   if line.split()[0] in ('errexit', 'nounset', 'pipefail',
                                          'xtrace'))
    assert options == {'errexit': 'on', 'nounset': 'on', 'pipefail': 'on',
                       'xtrace': 'off'}, proc.stdout


def test_full_stack_runs_under_strict_mode_with_everything_enabled(tmp_path):
    box = make(tmp_path, services=TELEMETRY, RL_WEIGHER_INSTALL_TRAINER='True',
               RL_WEIGHER_CONFIDENCE_THRESHOLD='0.9',
               RL_WEIGHER_CANARY_PERCENT='25',
               RL_WEIGHER_WEIGHT_MULTIPLIER='5.0')
    box.stack()
    box.run('unstack')
    box.run('clean')


# -- stack install ----------------------------------------------------------


def test_install_sets_up_the_weigher_in_devstacks_environment(tmp_path):
    box = make(tmp_path)
    box.run('stack', 'install')
    clone = box.dest / 'nova-rl-weigher'
    assert [c for c in box.calls() if c.startswith('setup_develop')] == [
        'setup_develop %s' % clone]
    assert box.installed() == {'nova-rl-weigher'}


def test_install_adds_the_trainer_when_asked(tmp_path):
    box = make(tmp_path, RL_WEIGHER_INSTALL_TRAINER='True')
    box.run('stack', 'install')
    clone = box.dest / 'nova-rl-weigher'
    assert [c for c in box.calls() if c.startswith('setup_develop')] == [
        'setup_develop %s' % clone, 'setup_develop %s/trainer' % clone]
    assert box.installed() == {'nova-rl-weigher', 'nova-rl-trainer'}


# -- stack post-config ------------------------------------------------------


def test_post_config_enables_the_weigher_in_shadow_mode(tmp_path):
    box = make(tmp_path)
    box.run('stack', 'post-config')
    conf = ini(box)
    assert conf['filter_scheduler']['weight_classes'] == (
        ALL_WEIGHERS + ',' + RL_WEIGHER)
    rl = dict(conf['rl_weigher'])
    policy = box.dest / 'nova-rl-weigher/nova_rl_weigher/policies/default'
    decisions = box.data_dir / 'rl-weigher' / 'decisions'
    assert rl == {'mode': 'shadow', 'policy_path': str(policy),
                  'decision_log_dir': str(decisions)}
    assert (policy / 'manifest.json').is_file()     # the bundled policy
    assert decisions.is_dir()
    # Nothing else changed: DevStack's own options are all still there.
    assert conf['filter_scheduler']['track_instance_changes'] == 'False'
    assert conf['scheduler']['workers'] == '2'


def test_post_config_twice_gives_the_same_file(tmp_path):
    box = make(tmp_path, services=TELEMETRY, RL_WEIGHER_INSTALL_TRAINER='True')
    box.run('stack', 'post-config')
    first = box.snapshot()
    box.run('stack', 'post-config')
    assert box.snapshot() == first


@pytest.mark.parametrize('existing, expected', [
    ('nova.scheduler.weights.ram.RAMWeigher, '
     'nova.scheduler.weights.cpu.CPUWeigher',
     'nova.scheduler.weights.ram.RAMWeigher, '
     'nova.scheduler.weights.cpu.CPUWeigher,' + RL_WEIGHER),
    # Already there (another plugin, or a second run): left as it is.
    (ALL_WEIGHERS + ', ' + RL_WEIGHER + ',my.Weigher',
     ALL_WEIGHERS + ', ' + RL_WEIGHER + ',my.Weigher'),
])
def test_existing_weight_classes_kept_weigher_never_twice(tmp_path, existing,
                                                          expected):
    box = make(tmp_path, nova_conf=sb.with_weight_classes(existing))
    box.run('stack', 'post-config')
    box.run('stack', 'post-config')
    assert weight_classes(box) == expected
    assert box.conf_text().count(RL_WEIGHER) == 1


def test_post_config_creates_what_nova_conf_lacks(tmp_path):
    box = make(tmp_path, nova_conf='[DEFAULT]\ndebug = True\n')
    box.run('stack', 'post-config')
    assert weight_classes(box) == ALL_WEIGHERS + ',' + RL_WEIGHER


def test_every_option_written_is_a_weigher_option_oslo_accepts(tmp_path):
    box = make(tmp_path, services=TELEMETRY, RL_WEIGHER_INSTALL_TRAINER='True',
               RL_WEIGHER_MODE='gated', RL_WEIGHER_CONFIDENCE_THRESHOLD='0.9',
               RL_WEIGHER_CANARY_PERCENT='25',
               RL_WEIGHER_WEIGHT_MULTIPLIER='5.0')
    box.run('stack', 'post-config')
    written = dict(ini(box)['rl_weigher'])
    known = {opt.dest for opt in rl_conf.rl_weigher_opts}
    assert set(written) <= known, set(written) - known
    assert len(written) == 7
    conf = cfg.ConfigOpts()
    rl_conf.register_opts(conf)
    conf(args=[], default_config_files=[str(box.nova_conf)])
    group = conf.rl_weigher
    assert (group.mode, group.confidence_threshold, group.canary_percent,
            group.weight_multiplier) == ('gated', 0.9, 25.0, 5.0)
    assert group.usage_snapshot_path == str(
        box.data_dir / 'rl-weigher' / 'rl-usage.json')


def test_settings_emptied_later_leave_the_weighers_defaults(tmp_path):
    box = make(tmp_path, RL_WEIGHER_CANARY_PERCENT='25')
    box.run('stack', 'post-config')
    box.settings['RL_WEIGHER_CANARY_PERCENT'] = ''
    box.run('stack', 'post-config')
    assert 'canary_percent' not in ini(box)['rl_weigher']


def test_users_post_config_in_local_conf_wins(tmp_path):
    box = make(tmp_path)
    box.run('stack', 'post-config')
    # The sample's own [[post-config|$NOVA_CONF]] block, merged as stack.sh
    # merges it after the plugins.
    box.merge_post_config(sb.PLUGIN_DIR / 'local.conf.sample')
    rl = ini(box)['rl_weigher']
    assert (rl['mode'], rl['canary_percent']) == ('gated', '50')
    local_conf = tmp_path / 'local.conf'
    local_conf.write_text(
        '[[local|localrc]]\nRL_WEIGHER_MODE=off\n'
        '[[post-config|$NOVA_CONF]]\n[filter_scheduler]\n'
        'weight_classes = nova.scheduler.weights.ram.RAMWeigher\n'
        '[[post-config|$NOVA_CPU_CONF]]\n[rl_weigher]\nmode = off\n')
    box.merge_post_config(local_conf)
    assert weight_classes(box) == 'nova.scheduler.weights.ram.RAMWeigher'
    assert ini(box)['rl_weigher']['mode'] == 'gated'


@pytest.mark.parametrize('setting, value', [
    ('RL_WEIGHER_MODE', 'on'),
    ('RL_WEIGHER_CANARY_PERCENT', 'half'),
    ('RL_WEIGHER_CONFIDENCE_THRESHOLD', '-1'),
])
def test_bad_setting_is_one_clear_error_and_nova_conf_untouched(
        tmp_path, setting, value):
    box = make(tmp_path, **{setting: value})
    proc = box.run('stack', 'post-config', check=False)
    assert proc.returncode != 0
    errors = proc.stderr.strip().splitlines()
    assert len(errors) == 1, proc.stderr
    assert f'{setting}={value}: must be' in errors[0]
    assert box.conf_text() == sb.DEVSTACK_NOVA_CONF


def test_missing_nova_conf_is_one_clear_error(tmp_path):
    box = make(tmp_path, nova_conf=None)
    proc = box.run('stack', 'post-config', check=False)
    assert proc.returncode != 0
    assert proc.stderr.strip().endswith(
        '%s not found: post-config needs Nova configured' % box.nova_conf)


# -- where the plugin does nothing -------------------------------------------


@pytest.mark.parametrize('kw', [
    {'services': ('n-cpu', 'q-agt')},              # a compute-only node
    {'DISABLED_SERVICES': 'rl-weigher'},           # disable_service rl-weigher
])
def test_nothing_happens_without_a_scheduler_or_when_disabled(tmp_path, kw):
    box = make(tmp_path, **kw)
    before = box.snapshot()
    box.stack()
    assert box.snapshot() == before
    assert not [c for c in box.calls() if not c.startswith('define_plugin')]


# -- stack extra: the usage-snapshot timer ------------------------------------


def test_extra_installs_the_snapshot_timer_with_telemetry(tmp_path):
    box = make(tmp_path, services=TELEMETRY, RL_WEIGHER_INSTALL_TRAINER='True')
    box.stack()
    data = box.data_dir / 'rl-weigher'
    user = box.env()['STACK_USER']
    group = subprocess.check_output(['id', '-gn', user], text=True).strip()
    replaced = {
        'User=nova': 'User=%s' % user,
        'Group=nova': 'Group=%s' % group,
        'EnvironmentFile=/etc/nova/rl-snapshot.env':
            'EnvironmentFile=%s/rl-snapshot.env' % data,
        'ReadWritePaths=/var/lib/nova': 'ReadWritePaths=%s' % data,
    }
    for unit in UNITS:
        rendered = (box.systemd_dir / unit).read_text().splitlines()
        template = (sb.REPO / 'etc/systemd' / unit).read_text().splitlines()
        start = next(i for i, line in enumerate(template)
                     if line.startswith('['))
        # The packaged unit line for line, DevStack's user and paths in.
        expected = []
        for line in template[start:]:
            if line.startswith('ExecStart='):
                line = line.replace('--out /var/lib/nova/rl-usage.json',
                                    '--out %s/rl-usage.json' % data)
            expected.append(replaced.get(line, line))
        assert rendered[2:] == expected
        assert stat.S_IMODE(os.stat(box.systemd_dir / unit).st_mode) == 0o644
        assert '/etc/nova' not in '\n'.join(rendered)
    env_file = data / 'rl-snapshot.env'
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o640
    env_lines = env_file.read_text().splitlines()
    assert 'OS_CLOUD=devstack-admin' in env_lines
    assert 'PATH=%s/bin:/usr/local/bin:/usr/bin:/bin' % box.venv in env_lines
    systemctl = [c for c in box.calls() if c.startswith('systemctl')]
    assert systemctl == ['systemctl daemon-reload',
                         'systemctl enable nova-rl-snapshot.timer',
                         'systemctl start nova-rl-snapshot.timer']
    assert box.units() == {'enabled nova-rl-snapshot.timer',
                           'active nova-rl-snapshot.timer'}
    # The weigher reads what the timer writes.
    assert ini(box)['rl_weigher']['usage_snapshot_path'] == str(
        data / 'rl-usage.json')


def test_extra_without_the_trainer_warns_and_installs_no_timer(tmp_path):
    box = make(tmp_path, services=TELEMETRY)
    box.stack()
    assert not list(box.systemd_dir.iterdir())
    assert not [c for c in box.calls() if c.startswith('systemctl')]
    assert any('RL_WEIGHER_INSTALL_TRAINER=True' in c for c in box.calls()
               if c.startswith('warn'))
    assert 'usage_snapshot_path' not in ini(box)['rl_weigher']


@pytest.mark.parametrize('kw', [
    {'RL_WEIGHER_INSTALL_TRAINER': 'True'},              # no telemetry
    {'services': TELEMETRY, 'RL_WEIGHER_INSTALL_TRAINER': 'True',
     'RL_WEIGHER_SNAPSHOT_TIMER': 'False'},
])
def test_extra_installs_no_timer_without_telemetry_or_when_off(tmp_path, kw):
    box = make(tmp_path, **kw)
    box.stack()
    assert not list(box.systemd_dir.iterdir())
    assert not [c for c in box.calls()
                if c.startswith(('systemctl', 'warn'))]


# -- unstack and clean ------------------------------------------------------


def test_unstack_stops_the_timer(tmp_path):
    box = make(tmp_path, services=TELEMETRY, RL_WEIGHER_INSTALL_TRAINER='True')
    box.stack()
    conf = box.conf_text()
    box.run('unstack')
    assert box.units() == set()
    assert box.conf_text() == conf       # configuration is clean's to undo
    box.run('unstack')                   # twice: nothing left to stop


@pytest.mark.parametrize('nova_conf', [
    sb.DEVSTACK_NOVA_CONF,
    sb.with_weight_classes('nova.scheduler.weights.ram.RAMWeigher'),
    '[DEFAULT]\ndebug = True\n',         # no [filter_scheduler] at all
    '',
], ids=['devstack', 'weight-classes', 'no-filter-scheduler', 'empty'])
def test_stack_unstack_clean_leave_no_trace(tmp_path, nova_conf):
    box = make(tmp_path, nova_conf=nova_conf, services=TELEMETRY,
               RL_WEIGHER_INSTALL_TRAINER='True')
    before = box.snapshot()
    box.stack()
    # What the running services write: a decision log, a usage snapshot.
    decisions = box.data_dir / 'rl-weigher' / 'decisions'
    (decisions / 'decisions-host-1.jsonl').write_text('{}\n')
    (box.data_dir / 'rl-weigher' / 'rl-usage.json').write_text('{}')
    assert box.snapshot() != before
    box.run('unstack')
    box.run('clean')
    assert box.snapshot() == before
    assert box.units() == set()
    assert box.installed() == set()
    assert 'systemctl daemon-reload' in box.calls()[-6:]
    box.run('clean')                     # twice: nothing left to undo
    assert box.snapshot() == before


def test_clean_keeps_what_the_user_merged_after_the_plugin(tmp_path):
    box = make(tmp_path)
    box.run('stack', 'post-config')
    local_conf = tmp_path / 'local.conf'
    local_conf.write_text(
        '[[post-config|$NOVA_CONF]]\n[filter_scheduler]\n'
        'weight_classes = my.Weigher,%s\n' % RL_WEIGHER)
    box.merge_post_config(local_conf)
    box.run('clean')
    assert weight_classes(box) == 'my.Weigher'
    assert 'rl_weigher' not in ini(box)


def test_clean_without_stack_changes_nothing(tmp_path):
    box = make(tmp_path)
    before = box.snapshot()
    box.run('clean')
    assert box.snapshot() == before


def test_a_unit_template_it_cannot_render_is_one_error_and_no_file(tmp_path):
    clone = tmp_path / 'clone'
    (clone / 'etc' / 'systemd').mkdir(parents=True)
    for unit in UNITS:
        text = (sb.REPO / 'etc/systemd' / unit).read_text()
        text = text.replace('ReadWritePaths=/var/lib/nova',
                            'ReadWritePaths=/var/lib/nova /srv')
        (clone / 'etc/systemd' / unit).write_text(text)
    box = make(tmp_path / 'box', services=TELEMETRY,
               RL_WEIGHER_INSTALL_TRAINER='True', RL_WEIGHER_DIR=str(clone))
    proc = box.run('stack', 'extra', check=False)
    assert proc.returncode != 0
    error, = [line for line in proc.stderr.splitlines() if 'ERROR' in line]
    assert error.endswith("etc/systemd/nova-rl-snapshot.service changed: "
                          "cannot render 'ReadWritePaths=/var/lib/nova /srv' "
                          "for DevStack")
    assert not list(box.systemd_dir.iterdir())
    assert box.units() == set()
