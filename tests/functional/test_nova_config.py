"""Issue 9 items 2 and 5 in a real in-process Nova.

A policy whose manifest records the Nova weigher configuration it was
trained with (``nova_weighers``) abstains with ``nova_config_mismatch``
when the running scheduler's ``[filter_scheduler]`` multipliers differ in
sign (or a recorded weigher is not enabled), logged once, and applies when
they match. A manifest that says never act abstains with ``never_act``
unless ``[rl_weigher] confidence_threshold`` is set. Manifests without
these fields load and run as before.

The three hosts (``base``): Nova's default weighers spread, so the first
server goes to ``large``; configured to pack (negative RAM, CPU and disk
multipliers) Nova puts it on ``small``.
"""

from tests.functional import base

WEIGHERS = [
    'nova.scheduler.weights.ram.RAMWeigher',
    'nova.scheduler.weights.cpu.CPUWeigher',
    'nova.scheduler.weights.disk.DiskWeigher',
    'nova.scheduler.weights.io_ops.IoOpsWeigher',
    'nova.scheduler.weights.num_instances.NumInstancesWeigher']
DEFAULT = {'ram_weight_multiplier': 1.0, 'cpu_weight_multiplier': 1.0,
           'disk_weight_multiplier': 1.0, 'io_ops_weight_multiplier': -1.0,
           'num_instances_weight_multiplier': 0.0}
PACK_FLAGS = {'ram_weight_multiplier': -1.0, 'cpu_weight_multiplier': -1.0,
              'disk_weight_multiplier': -1.0}
#: What ``nova-rl-trainer train --nova-weighers nova-pack`` records.
TRAINED_FOR_PACK = {'name': 'nova-pack', 'weighers': WEIGHERS,
                    'multipliers': {**DEFAULT, **PACK_FLAGS}}
NEVER = {'act': 'never', 'confidence_threshold': None}


class _Recorded(base.RLSchedulerTestBase):
    """The test policy, with ``NOVA_WEIGHERS`` / ``CALIBRATION`` written
    into its manifest, and ``FILTER_SCHEDULER`` flags for Nova."""

    NOVA_WEIGHERS = TRAINED_FOR_PACK
    CALIBRATION = None
    FILTER_SCHEDULER = {}

    def _configure_scheduler(self):
        super()._configure_scheduler()
        if self.FILTER_SCHEDULER:
            self.flags(group='filter_scheduler', **self.FILTER_SCHEDULER)

    def make_policy(self, path, feature_weights, **kwargs):
        path = super().make_policy(path, feature_weights, **kwargs)
        if self.NOVA_WEIGHERS is not None:
            base.PolicyArtifact.set_manifest_field(path, 'nova_weighers',
                                                   self.NOVA_WEIGHERS)
        if self.CALIBRATION is not None:
            base.PolicyArtifact.set_manifest_field(path, 'calibration',
                                                   self.CALIBRATION)
        return path

    def record_of(self, server):
        record = self.decisions_for([server['id']])[server['id']][0]
        self.assert_decision_shape(record)
        return record

    def log_lines(self, text):
        return [line for line in self.stdlog.logger.output.splitlines()
                if text in line]


class TrainedForPackUnderDefaultNovaTest(_Recorded):
    """Nova's default (spreading) multipliers; the policy was trained over
    a packing Nova and prefers the smallest host."""

    POLICY_WEIGHTS = {'log_vcpus_total': -1.0}

    def test_abstains_with_nova_config_mismatch_logged_once(self):
        server, host = self.boot()
        self.assertEqual(base.LARGE, host)      # Nova's choice, not small
        record = self.record_of(server)
        gate = record['gate']
        self.assertEqual('abstained', gate['outcome'], record)
        self.assertEqual('nova_config_mismatch', gate['reason'])
        self.assertIn("'nova-pack'", gate['detail'])
        self.assertIn('ram_weight_multiplier is 1.0 here, -1.0 in training',
                      gate['detail'])
        self.assertNotIn('not enabled', gate['detail'])   # all_weighers
        _, host = self.boot()
        self.assertEqual(base.NOVA_DEFAULT_SEQUENCE[1], host)
        stats = self.rl_weigher().stats
        self.assertEqual(2, stats['abstained.nova_config_mismatch'], stats)
        self.assertNotIn('errors', stats)
        self.assertEqual(
            1, len(self.log_lines('will not act (nova_config_mismatch)')),
            self.stdlog.logger.output)

    def test_shadow_mode_records_the_mismatch(self):
        self.rl_flags(mode='shadow')
        server, host = self.boot()
        self.assertEqual(base.LARGE, host)
        record = self.record_of(server)
        self.assertEqual('mode_shadow', record['gate']['reason'])
        self.assertEqual('nova_config_mismatch', record['gate']['verdict'])
        self.assertEqual(1.0, record['confidence'])


class TrainedForPackUnderPackingNovaTest(_Recorded):
    """Nova configured to pack, as the policy was trained; the policy
    prefers the largest host, so its placements differ from Nova's."""

    POLICY_WEIGHTS = {'log_vcpus_total': 1.0}
    FILTER_SCHEDULER = PACK_FLAGS

    def test_applies_when_nova_packs(self):
        self.rl_flags(mode='shadow')
        _, host = self.boot()
        self.assertEqual(base.SMALL, host)      # Nova packing on its own
        self.rl_flags(mode='gated')
        server, host = self.boot()
        self.assertEqual(base.LARGE, host)      # the policy's choice
        record = self.record_of(server)
        self.assertEqual('applied', record['gate']['reason'], record)
        self.assertEqual('', record['gate']['detail'])
        self.assertEqual([], self.log_lines('will not act'))

    def test_a_manifest_without_the_field_runs_unchecked(self):
        # Format 1 as before (and the bundled policy): no nova_weighers.
        self.make_policy_v1()
        server, host = self.boot()
        self.assertEqual(base.LARGE, host)
        self.assertEqual('applied',
                         self.record_of(server)['gate']['reason'])

    def make_policy_v1(self):
        base.PolicyArtifact.make_linear(self.policy_dir,
                                        self.POLICY_WEIGHTS)
        self.assertNotIn('nova_weighers',
                         base.PolicyArtifact.read_manifest(self.policy_dir))


class RecordedWeigherNotEnabledTest(_Recorded):
    """Nova packs, but RAMWeigher, which the policy was trained with, is
    not in weight_classes."""

    POLICY_WEIGHTS = {'log_vcpus_total': 1.0}
    FILTER_SCHEDULER = dict(PACK_FLAGS, weight_classes=[
        w for w in WEIGHERS if not w.endswith('RAMWeigher')]
        + [base.RL_WEIGHER])

    def test_abstains(self):
        server, host = self.boot()
        self.assertEqual(base.SMALL, host)      # Nova's (packing) choice
        gate = self.record_of(server)['gate']
        self.assertEqual('nova_config_mismatch', gate['reason'])
        self.assertTrue(gate['detail'].endswith(
            'not enabled in weight_classes: '
            'nova.scheduler.weights.ram.RAMWeigher'), gate)


class NeverActTest(_Recorded):
    """A manifest that says never act, under the Nova it was trained for;
    no ``confidence_threshold`` in nova.conf."""

    NOVA_WEIGHERS = dict(TRAINED_FOR_PACK, name='nova-default',
                         multipliers=DEFAULT)
    CALIBRATION = NEVER
    POLICY_WEIGHTS = {'log_vcpus_total': -1.0}
    RL_OPTIONS = {'confidence_threshold': None}

    def test_never_acts_unless_the_operator_sets_a_threshold(self):
        server, host = self.boot()
        self.assertEqual(base.LARGE, host)
        gate = self.record_of(server)['gate']
        self.assertEqual('never_act', gate['reason'])
        self.assertEqual(1, len(self.log_lines('will not act (never_act)')))
        # The operator's explicit threshold wins over the manifest's never.
        self.rl_flags(confidence_threshold=0.5)
        server, host = self.boot()
        self.assertEqual(base.SMALL, host)
        gate = self.record_of(server)['gate']
        self.assertEqual('applied', gate['reason'])
        self.assertEqual('calibration.act never overridden by [rl_weigher] '
                         'confidence_threshold=0.5', gate['detail'])
