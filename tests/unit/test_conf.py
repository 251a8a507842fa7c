import os
import subprocess
import sys
import textwrap

from oslo_config import cfg
import pytest

from nova_rl_weigher import conf
from nova_rl_weigher import scorer

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))

CONTRACT = {'mode', 'policy_path', 'confidence_threshold',
            'weight_multiplier', 'usage_snapshot_path', 'snapshot_max_age_s',
            'latency_budget_ms', 'decision_log_dir', 'canary_percent'}


def test_list_opts_has_the_contract_options_with_help():
    ((group, opts),) = conf.list_opts()
    assert group.name == 'rl_weigher'
    names = {o.name for o in opts}
    assert CONTRACT <= names
    for o in opts:
        assert o.help and len(o.help) > 20, o.name
    mode = next(o for o in opts if o.name == 'mode')
    assert list(mode.type.choices) == ['off', 'shadow', 'gated']


def test_settings_read_every_option_the_scorer_uses():
    fields = {f for f in scorer.Settings.__dataclass_fields__}
    names = {o.name for o in conf.rl_weigher_opts}
    assert fields <= names


def test_sighup_mutation_changes_mode(tmp_path):
    path = tmp_path / 'nova.conf'
    path.write_text('[rl_weigher]\nmode = shadow\n')
    c = cfg.ConfigOpts()
    conf.register_opts(c)
    c(args=[], default_config_files=[str(path)])
    assert c.rl_weigher.mode == 'shadow'
    path.write_text('[rl_weigher]\nmode = gated\nconfidence_threshold = 0.9\n')
    c.mutate_config_files()     # what nova-scheduler does on SIGHUP
    st = scorer.Settings.from_conf(c.rl_weigher)
    assert st.mode == 'gated' and st.confidence_threshold == 0.9


@pytest.mark.parametrize('name, value', [
    ('confidence_threshold', '1.5'),
    ('weight_multiplier', '-1'),        # would rank the policy's worst first
    ('weight_multiplier', 'lots'),
    ('decision_log_queue_mb', '0'),
    ('decision_log_max_age_days', '-1'),
])
def test_invalid_values_are_rejected(tmp_path, name, value):
    path = tmp_path / 'nova.conf'
    path.write_text(f'[rl_weigher]\n{name} = {value}\n')
    c = cfg.ConfigOpts()
    conf.register_opts(c)
    c(args=[], default_config_files=[str(path)])
    try:
        getattr(c.rl_weigher, name)
    except cfg.ConfigFileValueError:
        pass
    else:
        raise AssertionError(f'{name} {value} was accepted')


def test_decision_log_limits_and_multiplier_bounds():
    opts = {o.name: o for o in conf.rl_weigher_opts}
    assert opts['decision_log_max_age_days'].default == 30
    assert opts['decision_log_max_age_days'].type.min == 0   # 0: no limit
    assert opts['decision_log_queue_mb'].default == 64
    assert opts['decision_log_queue_mb'].type.min == 1
    assert opts['decision_log_queue_size'].default == 1000
    assert opts['weight_multiplier'].default == 10.0
    assert opts['weight_multiplier'].type.min == 0.0
    for name in ('decision_log_max_age_days', 'decision_log_queue_mb',
                 'weight_multiplier'):
        assert opts[name].mutable, name


def test_out_of_bounds_says_what_the_option_accepts():
    assert conf.bounds('confidence_threshold') == (0.0, 1.0)
    for value in (0.0, 0.5, 1.0):
        assert conf.out_of_bounds('confidence_threshold', value) is None
    for value in (-0.1, 1.01, float('nan'), float('inf')):
        assert conf.out_of_bounds('confidence_threshold',
                                  value) == 'in [0, 1]'
    assert conf.out_of_bounds('weight_multiplier', 1e6) is None
    for value in (-1.0, float('inf'), float('nan')):
        assert conf.out_of_bounds('weight_multiplier',
                                  value) == 'a finite number >= 0'
    assert conf.out_of_bounds('canary_percent', 101) == 'in [0, 100]'


def test_generated_sample_is_up_to_date(tmp_path):
    out = tmp_path / 'sample.conf'
    subprocess.run(
        [sys.executable, '-m', 'oslo_config.generator', '--namespace',
         'nova_rl_weigher', '--wrap-width', '79', '--output-file', str(out)],
        check=True, cwd=ROOT)
    shipped = os.path.join(ROOT, 'etc', 'nova-rl-weigher',
                           'nova-rl-weigher.conf.sample')
    with open(shipped) as f:
        assert out.read_text() == f.read(), (
            'regenerate with: oslo-config-generator --config-file '
            'etc/nova-rl-weigher/nova-rl-weigher-config-generator.conf')


def test_importing_the_weigher_never_imports_torch():
    # A finder that fails any torch import proves the point even on a
    # machine where torch is installed (the trainer's).
    code = textwrap.dedent('''
        import sys
        class NoTorch:
            def find_spec(self, name, path=None, target=None):
                if name == 'torch' or name.startswith('torch.'):
                    raise ImportError('torch imported by the weigher side')
        sys.meta_path.insert(0, NoTorch())
        import nova_rl_weigher.weigher, nova_rl_weigher.scorer
        import tests.fixtures
        assert 'torch' not in sys.modules
        print('ok')
    ''')
    out = subprocess.run([sys.executable, '-c', code], capture_output=True,
                         text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == 'ok'
