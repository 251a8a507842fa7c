"""Several servers per request and several requests at once, ``gated`` mode.

With the smallest-host policy the expected end state does not depend on the
order the scheduler handles the servers in: each server goes to the most
preferred host that still has room (small holds 1, medium 2, large 5
``rl.test`` servers). A server whose claim on a host loses a race is placed
on its next alternative by Nova, so the counts per host are deterministic.
"""

import threading

from nova.scheduler import manager

from tests.functional import base

PREFERENCE = (base.SMALL, base.MEDIUM, base.LARGE)


class GatedConcurrencyTest(base.RLSchedulerTestBase):

    RL_MODE = 'gated'

    def _assert_applied_where_weighed(self, server_ids):
        records = self.read_decisions(expect_uuids=())
        self.assertTrue(records)
        for record in records:
            self.assertIn(record['instance_uuid'], server_ids)
            self.assertEqual('applied', record['gate']['outcome'], record)
        stats = getattr(self.rl_weigher(), 'stats', None)
        if stats is not None:
            self.assertEqual(0, stats.get('errors', 0), stats)

    def test_multi_create_three(self):
        servers = self.multi_create(3)
        counts = self.placement_counts()
        self.assertEqual({base.SMALL: 1, base.MEDIUM: 2, base.LARGE: 0},
                         counts)
        self.assert_policy_preference_within_capacity(counts, PREFERENCE)
        ids = {s['id'] for s in servers}
        # One weighing call per instance of the request.
        self.decisions_for(sorted(ids))
        self._assert_applied_where_weighed(ids)

    def test_multi_create_overflows_to_large(self):
        servers = self.multi_create(5)
        counts = self.placement_counts()
        self.assertEqual({base.SMALL: 1, base.MEDIUM: 2, base.LARGE: 2},
                         counts)
        self._assert_applied_where_weighed({s['id'] for s in servers})

    def _hold_select_destinations(self, parties):
        """Make ``parties`` scheduling requests start together.

        The scheduler's RPC server handles requests on a thread pool; a
        barrier in front of ``select_destinations`` guarantees that all of
        them are in flight at once (same candidates, racing claims) rather
        than relying on timing. Returns the list of barrier failures.
        """
        barrier = threading.Barrier(parties)
        broken = []
        real = manager.SchedulerManager.select_destinations

        def select_destinations(*args, **kwargs):
            try:
                barrier.wait(timeout=30)
            except threading.BrokenBarrierError as e:
                broken.append(e)
            return real(*args, **kwargs)

        self.stub_out(
            'nova.scheduler.manager.SchedulerManager.select_destinations',
            select_destinations)
        return broken

    def test_concurrent_boots(self):
        # All POSTs first, then wait; the four requests are scheduled
        # concurrently.
        n = 4
        broken = self._hold_select_destinations(n)
        posted = [self.post_server(name='conc-%d' % i) for i in range(n)]
        servers = [self.wait_active(s) for s in posted]
        self.assertEqual([], broken,
                         'the requests were not scheduled concurrently')
        counts = self.placement_counts()
        self.assertEqual({base.SMALL: 1, base.MEDIUM: 2, base.LARGE: 1},
                         counts)
        self.assert_policy_preference_within_capacity(counts, PREFERENCE)
        self._assert_applied_where_weighed({s['id'] for s in servers})
