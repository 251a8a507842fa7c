"""Hostile values and directories in a real in-process Nova.

An aggregate's ``rl_weight_multiplier`` of ``nan`` or ``inf`` must not reach
Nova's ranking, and a decision log directory that cannot be created must
neither fail a boot nor fill the log with tracebacks.
"""

import os

from tests.functional import base


class HostileMultiplierTest(base.RLSchedulerTestBase):
    """The test policy prefers the smallest host (confidence 1.0)."""

    RL_MODE = 'gated'

    def aggregate(self, name, hosts, metadata):
        agg = self.admin_api.post_aggregate({'aggregate': {'name': name}})
        for host in hosts:
            self.admin_api.add_host_to_aggregate(agg['id'], host)
        self.admin_api.post_aggregate_action(
            agg['id'], {'set_metadata': {'metadata': metadata}})

    def test_non_finite_aggregate_multipliers_are_ignored(self):
        self.aggregate('all', [base.SMALL, base.MEDIUM, base.LARGE],
                       {'rl_weight_multiplier': 'nan'})
        self.aggregate('large', [base.LARGE],
                       {'rl_weight_multiplier': 'inf'})
        self.aggregate('medium', [base.MEDIUM],
                       {'rl_weight_multiplier': 'lots'})
        # The configured multiplier (10) applies: the policy's order, as
        # without any aggregate.
        hosts = [self.boot(name=f's{i}')[1] for i in range(3)]
        self.assertEqual([base.SMALL, base.MEDIUM, base.MEDIUM], hosts)
        stats = self.rl_weigher().stats
        self.assertEqual(3, stats.get('applied'), stats)
        self.assertEqual(0, stats.get('errors', 0), stats)
        output = self.stdlog.logger.output
        self.assertIn("rl_weight_multiplier='nan'", output)
        self.assertIn("rl_weight_multiplier='inf'", output)
        # Once per value (rate-limited), not once per host and call.
        self.assertEqual(1, output.count("rl_weight_multiplier='nan'"))


class UnwritableDecisionLogTest(base.RLSchedulerTestBase):

    RL_MODE = 'gated'

    def test_boots_go_on_and_the_error_is_logged_once(self):
        blocker = os.path.join(self.tmp, 'blocker')
        with open(blocker, 'w') as f:
            f.write('a file where the log directory should be\n')
        self.rl_flags(decision_log_dir=os.path.join(blocker, 'log'))
        log = self.rl_weigher().scorer.decisions
        log.retry_interval_s = 1e9      # no retry within this test
        hosts = [self.boot(name=f's{i}')[1] for i in range(3)]
        self.assertEqual([base.SMALL, base.MEDIUM, base.MEDIUM], hosts)
        self.assertTrue(self.flush_decision_log())
        stats = self.rl_weigher().stats
        self.assertEqual(1, stats.get('decision_log_dropped.write_error'),
                         stats)
        self.assertEqual(2, stats.get('decision_log_dropped.unavailable'),
                         stats)
        self.assertEqual(0, stats.get('errors', 0), stats)
        output = self.stdlog.logger.output
        self.assertEqual(1, output.count('cannot write the decision log'))
        self.assertNotIn('Traceback', output)
