"""A real Nova started from the nova.conf DevStack's plugin writes (issue 11).

``devstack/plugin.sh`` runs its ``stack install`` and ``stack post-config``
phases in a sandbox (``tests/devstack/sandbox.py``: stand-ins for DevStack's
functions, a temporary ``$DEST``, ``$DATA_DIR`` and ``nova.conf``). The
``[filter_scheduler]`` and ``[rl_weigher]`` sections of the ``nova.conf`` it
produced, parsed by oslo.config with Nova's and the weigher's option
definitions, then configure the in-process Nova of ``base`` (three fake
computes), which boots servers with the weigher loaded from that
configuration.
"""

import json
import os

from oslo_config import cfg

import nova.conf
from nova_rl_weigher import conf as rl_conf
from tests.devstack import sandbox as sb
from tests.functional import base

#: The sections of the produced nova.conf the scheduler is configured from.
GROUPS = ('filter_scheduler', 'rl_weigher')


def parse(path):
    """``path`` parsed by oslo.config with Nova's and the weigher's options
    (a value either would refuse fails here, as in nova-scheduler)."""
    conf = cfg.ConfigOpts()
    nova.conf.scheduler.register_opts(conf)
    rl_conf.register_opts(conf)
    conf(args=[], default_config_files=[str(path)])
    return conf


class _FromDevStack(base.RLSchedulerTestBase):
    """The scheduler configured only from the plugin's nova.conf.

    ``NOVA_CONF`` is the nova.conf before the plugin runs; ``LOCAL_CONF``, if
    set, is merged afterwards as stack.sh merges local.conf's
    ``[[post-config|$NOVA_CONF]]`` (``{policy_dir}`` is replaced by
    ``self.policy_dir``).
    """

    NOVA_CONF = sb.DEVSTACK_NOVA_CONF
    LOCAL_CONF = None

    def _configure_scheduler(self):
        self.box = sb.Sandbox(os.path.join(self.tmp, 'devstack'),
                              nova_conf=self.NOVA_CONF)
        self.box.run('stack', 'install')
        self.box.run('stack', 'post-config')
        if self.LOCAL_CONF is not None:
            self.prepare_policy()
            local_conf = os.path.join(self.tmp, 'local.conf')
            with open(local_conf, 'w') as f:
                f.write(self.LOCAL_CONF.format(policy_dir=self.policy_dir))
            self.box.merge_post_config(local_conf)
        produced = parse(self.box.nova_conf)
        written = self.box.ini()
        for group in GROUPS:
            for name in written[group]:
                self.flags(group=group, **{name: produced[group][name]})
        self.decision_log_dir = produced.rl_weigher.decision_log_dir

    def records(self, servers):
        by_uuid = self.decisions_for([s['id'] for s in servers])
        records = [r for s in servers for r in by_uuid[s['id']]]
        for record in records:
            self.assert_decision_shape(record)
        return records


class DevStackDefaultsTest(_FromDevStack):
    """What a DevStack user gets by enabling the plugin: shadow mode with
    the bundled policy, decisions logged under $DATA_DIR."""

    def test_servers_boot_with_the_weigher_in_shadow_mode(self):
        data = self.box.data_dir / 'rl-weigher'
        self.assertEqual(str(data / 'decisions'), self.decision_log_dir)
        self.assertEqual(
            [base.NOVA_WEIGHERS, base.RL_WEIGHER],
            nova.conf.CONF.filter_scheduler.weight_classes)
        bundled = (self.box.dest / 'nova-rl-weigher' / 'nova_rl_weigher' /
                   'policies' / 'default')
        self.assertEqual(str(bundled), nova.conf.CONF.rl_weigher.policy_path)
        self.rl_weigher()          # loaded by the running scheduler

        # Shadow mode never changes a placement: stock Nova's sequence.
        self.assert_nova_default_placement()
        records = self.records(self.servers)
        self.assertEqual(len(self.servers), len(records))
        with open(bundled / 'manifest.json') as f:
            version = json.load(f)['policy_version']
        for record in records:
            self.assertEqual('shadow', record['mode'])
            self.assertEqual('abstained', record['gate']['outcome'])
            self.assertEqual('mode_shadow', record['gate']['reason'])
            self.assertEqual(version, record['policy_version'])
            self.assertEqual(sorted(base.HOST_DRIVERS),
                             sorted(h['host'] for h in record['hosts']))
        self.assertTrue(list((data / 'decisions').glob('decisions-*.jsonl')))


class DevStackLocalConfWinsTest(_FromDevStack):
    """An existing weight_classes is kept, and a user's local.conf
    post-config (merged after the plugin) switches the weigher to gated
    with a policy preferring the smallest host: Nova follows it."""

    NOVA_CONF = sb.with_weight_classes(base.NOVA_WEIGHERS)
    LOCAL_CONF = '\n'.join([
        '[[post-config|$NOVA_CONF]]',
        '[rl_weigher]',
        'mode = gated',
        'policy_path = {policy_dir}',
        'confidence_threshold = 0.5',
        # A loaded CI machine must not make the policy abstain.
        'latency_budget_ms = 10000',
        ''])

    def test_gated_from_local_conf_places_on_the_policys_host(self):
        self.assertEqual(
            [base.NOVA_WEIGHERS, base.RL_WEIGHER],
            nova.conf.CONF.filter_scheduler.weight_classes)
        server, host = self.boot()
        self.assertEqual(base.SMALL, host)      # Nova alone: large
        record, = self.records([server])
        self.assertEqual('gated', record['mode'])
        self.assertEqual('applied', record['gate']['outcome'], record)
