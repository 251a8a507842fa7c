"""Modes ``off`` and ``shadow`` must not change where Nova places servers.

``NovaDefaultPlacementTest`` runs the boot sequence with stock Nova
(``weight_classes = all_weighers``, no plugin) and checks it against
``base.NOVA_DEFAULT_SEQUENCE``; the other tests run the same sequence with
the plugin loaded and compare against the same list, so a difference from
stock Nova shows up as a failure in exactly one place.
"""

from tests.functional import base


class NovaDefaultPlacementTest(base.RLSchedulerTestBase):
    """Stock Nova 34, no plugin: the reference placement."""

    RL_ENABLED = False

    def test_nova_default_sequence(self):
        weighers = self.scheduler_service.manager.host_manager.weighers
        self.assertNotIn('RLWeigher', [type(w).__name__ for w in weighers])
        hosts = self.boot_sequence()
        self.assertEqual(
            base.NOVA_DEFAULT_SEQUENCE, hosts,
            'stock Nova placed the sequence differently than recorded in '
            'base.NOVA_DEFAULT_SEQUENCE (did Nova or the host sizes change?)')
        # Nova's spreading weighers put the first server on the largest host;
        # the policy tests rely on that to see a policy win.
        self.assertEqual(base.LARGE, hosts[0])
        self.assert_all_active()


class OffModeTest(base.RLSchedulerTestBase):
    """``mode = off``: the weigher is loaded but does nothing."""

    RL_MODE = 'off'

    def test_off_placement_matches_nova(self):
        # The weigher really is in the scheduler's pipeline ...
        self.rl_weigher()
        # ... with a policy that would move every server if it were used.
        self.assert_nova_default_placement()
        # No inference, no decision log.
        self.assertEqual([], self.read_decisions())


class ShadowModeTest(base.RLSchedulerTestBase):
    """``mode = shadow``: score and log every request, change nothing."""

    RL_MODE = 'shadow'

    def test_shadow_placement_matches_nova_and_logs(self):
        self.rl_weigher()
        self.assert_nova_default_placement()
        ids = [s['id'] for s in self.servers]
        by_uuid = self.decisions_for(ids)
        for server_id in ids:
            records = by_uuid[server_id]
            self.assertEqual(1, len(records), records)
            record = records[0]
            self.assert_decision_shape(record)
            self.assertEqual('shadow', record['mode'])
            self.assertEqual('abstained', record['gate']['outcome'])
            self.assertIn('shadow', str(record['gate'].get('reason')))
        # The policy was really evaluated: on the first request (all hosts
        # empty) it scored the smallest host best, and Nova still used large.
        first = by_uuid[ids[0]][0]
        scored = [h for h in first['hosts'] if h['score'] is not None]
        self.assertEqual(len(base.HOST_DRIVERS), len(scored), first)
        best = max(scored, key=lambda h: h['score'])
        self.assertEqual(base.SMALL, best['host'], first)

    def test_shadow_with_decision_log_disabled(self):
        self.rl_flags(decision_log_dir='')
        self.assert_nova_default_placement()
        self.assertEqual([], self.read_decisions())


class ShadowBundledPolicyTest(base.RLSchedulerTestBase):
    """``shadow`` with the default ``policy_path`` (the bundled policy)."""

    RL_MODE = 'shadow'
    POLICY_WEIGHTS = None

    def test_shadow_bundled_policy_matches_nova(self):
        self.assert_nova_default_placement()
        ids = [s['id'] for s in self.servers]
        by_uuid = self.decisions_for(ids)
        for server_id in ids:
            for record in by_uuid[server_id]:
                self.assertEqual('abstained', record['gate']['outcome'])
