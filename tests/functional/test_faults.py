"""Faults in ``gated`` mode: every boot succeeds and Nova's placement stands.

Each class starts the scheduler in ``gated`` mode with a fault in place from
the start (a policy that was once loaded stays in service when a later
artifact is broken, so the fault must precede the first weighing call), boots
the standard sequence and checks that every server is ACTIVE on the host
stock Nova would have chosen, i.e. the weigher abstained. Where the fault
lies elsewhere than the artifact (a policy that raises, the latency budget,
a stale snapshot) the artifact is the valid smallest-host policy, which
would move the first server to ``small`` if the weigher did not abstain.
"""

import json
import os
import re
import shutil
import time

from tests.functional import base
from tests.functional import test_gated

PolicyArtifact = base.PolicyArtifact


class _FaultBase(base.RLSchedulerTestBase):

    RL_MODE = 'gated'
    #: Name of the constant in ``nova_rl_weigher.gate`` for the reason the
    #: decision record must give, and a regex its ``detail`` must match
    #: (case-insensitive), so each test proves the fault was caught by the
    #: check meant for it rather than by some other failure.
    EXPECTED_REASON = 'POLICY_UNAVAILABLE'
    DETAIL_PATTERN = ''

    def break_policy(self, path):
        """Damage the valid artifact at ``path`` (before any request)."""

    def prepare_policy(self):
        path = super().prepare_policy()
        self.break_policy(path)
        return path

    def assert_abstained(self):
        from nova_rl_weigher import gate
        reason = getattr(gate, self.EXPECTED_REASON)
        ids = [s['id'] for s in self.servers]
        by_uuid = self.decisions_for(ids)
        for server_id in ids:
            for record in by_uuid[server_id]:
                self.assertEqual('gated', record['mode'], record)
                self.assertEqual('abstained', record['gate']['outcome'],
                                 record)
                self.assertEqual(reason, record['gate']['reason'],
                                 record['gate'])
                if self.DETAIL_PATTERN:
                    self.assertRegex(
                        str(record['gate'].get('detail', '')),
                        re.compile(self.DETAIL_PATTERN, re.IGNORECASE))
        return by_uuid


class _FaultScenario:
    """The one test every fault class runs (a mixin, so that the abstract
    base above is not collected as a test case itself)."""

    def test_boots_active_with_nova_default_placement(self):
        self.assert_nova_default_placement()
        self.assert_abstained()


class MissingPolicyDirTest(_FaultScenario, _FaultBase):
    DETAIL_PATTERN = r'not found|no such'

    def break_policy(self, path):
        shutil.rmtree(path)


class TruncatedWeightsTest(_FaultScenario, _FaultBase):
    # Not 'npz' alone: every weights error names the file weights.npz.
    DETAIL_PATTERN = r'valid npz|zip|truncat|eof'

    def break_policy(self, path):
        # sha256 fixed up: the weights parser itself must refuse the file.
        PolicyArtifact.truncate_weights(path, fix_sha=True)


class TruncatedWeightsShaMismatchTest(_FaultScenario, _FaultBase):
    DETAIL_PATTERN = r'sha256'

    def break_policy(self, path):
        # A torn copy as it would really happen: the sha256 no longer fits.
        PolicyArtifact.truncate_weights(path, fix_sha=False)


class CorruptManifestJsonTest(_FaultScenario, _FaultBase):
    # Not 'json' alone: every manifest error names manifest.json.
    DETAIL_PATTERN = r'unreadable|unterminated|expecting|decod'

    def break_policy(self, path):
        with open(os.path.join(path, PolicyArtifact.MANIFEST), 'r+') as f:
            text = f.read()
            f.seek(0)
            f.truncate()
            f.write(text[:len(text) // 2])
        with self.assertRaises(ValueError):
            PolicyArtifact.read_manifest(path)


class WrongSchemaHashTest(_FaultScenario, _FaultBase):
    DETAIL_PATTERN = r'schema'

    def break_policy(self, path):
        good = PolicyArtifact.get_schema_hash(path)
        PolicyArtifact.set_schema_hash(path, 'f' * len(good))
        self.assertNotEqual(good, PolicyArtifact.get_schema_hash(path))


class WrongWeightsShaTest(_FaultScenario, _FaultBase):
    DETAIL_PATTERN = r'sha256'

    def break_policy(self, path):
        self.assertIn('weights_sha256', PolicyArtifact.read_manifest(path))
        PolicyArtifact.set_manifest_field(path, 'weights_sha256', '0' * 64)


class NaNWeightsTest(_FaultScenario, _FaultBase):
    DETAIL_PATTERN = r'\bnan\b|not finite|infinity'

    def break_policy(self, path):
        PolicyArtifact.replace_weights_with_nan(path)
        manifest = PolicyArtifact.read_manifest(path)
        self.assertEqual(base.file_sha256(PolicyArtifact.weights_file(path)),
                         manifest['weights_sha256'])


class RaisingPolicyTest(_FaultScenario, _FaultBase):
    """A valid artifact whose inference raises."""

    EXPECTED_REASON = 'ERROR'
    DETAIL_PATTERN = r'injected policy failure'

    def setUp(self):
        super().setUp()
        # The scheduler is running but has not weighed anything yet.
        from nova_rl_weigher import policy as rl_policy
        self.assertTrue(hasattr(rl_policy, 'Policy') and
                        hasattr(rl_policy.Policy, 'score'),
                        'nova_rl_weigher.policy.Policy.score not found')
        self._score_calls = []

        def score(*args, **kwargs):
            self._score_calls.append(args)
            raise RuntimeError('injected policy failure')

        self.stub_out('nova_rl_weigher.policy.Policy.score', score)

    def test_boots_active_with_nova_default_placement(self):
        super().test_boots_active_with_nova_default_placement()
        self.assertGreater(len(self._score_calls), 0,
                           'the patched Policy.score was never called')


class SlowPolicyTest(_FaultScenario, _FaultBase):
    """Real inference takes longer than a 1e-6 ms budget."""

    RL_OPTIONS = {'latency_budget_ms': 1e-6}
    EXPECTED_REASON = 'OVER_LATENCY_BUDGET'


class StaleUsageSnapshotTest(_FaultScenario, _FaultBase):
    """A usage snapshot ten days old (max age 900 s)."""

    RL_OPTIONS = {'snapshot_max_age_s': 900}
    EXPECTED_REASON = 'SNAPSHOT_STALE'

    def break_policy(self, path):
        snapshot = os.path.join(self.tmp, 'usage.json')
        with open(snapshot, 'w') as f:
            json.dump(test_gated.usage_snapshot(
                self.api_fixture.project_id,
                generated_at=time.time() - 10 * 86400), f)
        self.rl_flags(usage_snapshot_path=snapshot)
