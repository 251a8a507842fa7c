"""``gated`` mode with a confident policy: the policy decides the host.

The test policy scores ``-log2(host vCPUs)`` with every ensemble member in
agreement (confidence 1.0), i.e. it prefers the smallest host: the opposite
of Nova's spreading weighers, which put the first server on ``large``.
"""

import json
import os
import time

from tests.functional import base


class GatedPolicyTest(base.RLSchedulerTestBase):

    RL_MODE = 'gated'

    def test_smallest_host_wins(self):
        server, host = self.boot()
        self.assertEqual(base.SMALL, host)
        record = self.decisions_for([server['id']])[server['id']][0]
        self.assert_decision_shape(record)
        self.assertEqual('gated', record['mode'])
        self.assertEqual('applied', record['gate']['outcome'], record)

    def test_sequence_follows_policy_within_capacity(self):
        # small holds one rl.test server, medium two: once a host is full
        # Placement no longer offers it and the next preferred host wins.
        hosts = self.boot_sequence()
        self.assertEqual([base.SMALL, base.MEDIUM, base.MEDIUM, base.LARGE],
                         hosts)
        self.assertNotEqual(base.NOVA_DEFAULT_SEQUENCE, hosts)
        self.assert_all_active()
        # The last boot had a single candidate (large) left: Nova does not
        # call weighers for one host, so there is no record for it.
        by_uuid = self.decisions_for([s['id'] for s in self.servers[:3]])
        for server in self.servers[:3]:
            outcomes = [r['gate']['outcome'] for r in by_uuid[server['id']]]
            self.assertEqual(['applied'], outcomes)

    def test_fresh_usage_snapshot_keeps_policy_applied(self):
        # Control for the stale-snapshot fault test: a fresh snapshot in
        # the documented format must not make the weigher abstain.
        path = os.path.join(self.tmp, 'usage.json')
        with open(path, 'w') as f:
            json.dump(usage_snapshot(self.api_fixture.project_id,
                                     generated_at=time.time()), f)
        self.rl_flags(usage_snapshot_path=path, snapshot_max_age_s=3600)
        _, host = self.boot()
        self.assertEqual(base.SMALL, host)

    def test_mode_change_takes_effect_without_restart(self):
        # [rl_weigher] options are mutable and read per request.
        self.rl_flags(mode='shadow')
        _, host = self.boot()
        self.assertEqual(base.NOVA_DEFAULT_SEQUENCE[0], host)
        self.rl_flags(mode='gated')
        _, host = self.boot()
        self.assertEqual(base.SMALL, host)

    def test_low_confidence_abstains(self):
        # Ensemble members disagree (odd members score the negated
        # function): 3 of 5 agree, below a 0.8 threshold.
        self.make_policy(self.policy_dir, {'log_vcpus_total': -1.0},
                         agreement=False)
        self.rl_flags(confidence_threshold=0.8)
        server, host = self.boot()
        self.assertEqual(base.NOVA_DEFAULT_SEQUENCE[0], host)
        record = self.decisions_for([server['id']])[server['id']][0]
        self.assertEqual('abstained', record['gate']['outcome'])
        self.assertLess(record['confidence'], 0.8)

    def test_canary_zero_keeps_nova_placement(self):
        self.rl_flags(canary_percent=0.0)
        server, host = self.boot()
        self.assertEqual(base.NOVA_DEFAULT_SEQUENCE[0], host)
        record = self.decisions_for([server['id']])[server['id']][0]
        self.assertEqual('abstained', record['gate']['outcome'])


def usage_snapshot(project_id, generated_at):
    """A usage snapshot for the three test hosts (trainer's format)."""
    hosts = {
        name: {'cpu_util_mean': 0.2, 'cpu_util_p95': 0.4,
               'mem_util_mean': 0.3, 'mem_util_p95': 0.5}
        for name in base.HOST_DRIVERS
    }
    return {
        'generated_at': float(generated_at),
        'hosts': hosts,
        'projects': {project_id: {'cpu_ratio': 0.5}},
    }
