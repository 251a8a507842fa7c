"""Watching a real Nova scheduler: the Prometheus textfile and the
decision log report, after servers booted through the API."""

import os

from nova_rl_weigher import gate
from tests.functional import base
from tests.unit.test_metrics import parse
from tests.unit.test_metrics import value


class MetricsFileTest(base.RLSchedulerTestBase):
    """Gated mode with a policy that prefers the smallest host."""

    RL_MODE = 'gated'

    def test_metrics_file_and_decisions_report(self):
        template = os.path.join(self.tmp, 'textfile', 'rl_{pid}.prom')
        os.makedirs(os.path.dirname(template))
        self.rl_flags(metrics_file=template, metrics_interval=3600.0)
        weigher = self.rl_weigher()
        # The first call writes the file (then once an hour): what it says
        # is written again below, after both calls, from the same counters.
        hosts = [self.boot(name=f'm-{i}')[1] for i in range(2)]
        self.assertEqual([base.SMALL, base.MEDIUM], hosts)
        metrics = weigher.scorer.metrics
        self.assertTrue(metrics.flush())
        self.assertEqual(1, metrics.writes)
        path = template.replace('{pid}', str(os.getpid()))
        first = parse(open(path).read())
        self.assertEqual(1, value(first, 'nova_rl_weigher_calls_total'))
        self.assertTrue(metrics.write(template))

        samples = parse(open(path).read())
        version = base.PolicyArtifact.read_manifest(
            self.policy_dir)['policy_version']
        self.assertEqual(2, value(samples, 'nova_rl_weigher_calls_total'))
        self.assertEqual(2, value(samples, 'nova_rl_weigher_applied_total'))
        self.assertEqual(0, value(samples, 'nova_rl_weigher_abstained_total',
                                  reason=gate.LOW_CONFIDENCE))
        self.assertEqual(2, value(
            samples, 'nova_rl_weigher_latency_seconds_count'))
        self.assertEqual(1, value(samples, 'nova_rl_weigher_policy_info',
                                  version=version, mode='gated'))

        # The decision log of the same calls, as `nova-rl-trainer
        # decisions` summarises it (its CLI is tested in tests/trainer).
        from nova_rl_trainer.publishing import decisions_summary
        from nova_rl_weigher import decision_records
        self.flush_decision_log()
        summary = decisions_summary.summarise(
            decision_records.iter_records(self.decision_log_dir))
        group = summary['policies'][version]
        self.assertEqual(2, group['applied'])
        # Nova spreads (large first), the policy packs: never the same.
        self.assertEqual(0.0, group['agreement']['share'])
