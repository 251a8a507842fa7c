"""Harness: a real in-process Nova 34 with fake computes of different sizes.

Everything Nova runs here is Nova's own code and Nova's own functional test
fixtures (``nova.test.TestCase``, ``integrated_helpers``, the in-process
Placement service, the fake Glance/Neutron/Cinder): the API is called over
``wsgi-intercept``, the conductor, scheduler and computes are real services
talking over oslo.messaging's fake driver, Placement is real (SQLite). Only
the hypervisor is fake (``nova.virt.fake.FakeDriver`` subclasses with
different sizes).

Each test gets a fresh cloud with three compute hosts::

    small   4 vCPU,  8 GiB RAM, 100 GiB disk
    medium  8 vCPU, 16 GiB RAM, 200 GiB disk
    large  16 vCPU, 32 GiB RAM, 400 GiB disk

and one flavor ``rl.test`` (2 vCPU, 6 GiB RAM, 10 GiB disk). RAM is the
binding resource (``reserved_host_memory_mb`` is 512), so the hosts hold
1, 2 and 5 such servers. Nova's default weighers spread by free RAM/CPU, so
the first server lands on ``large``; a policy preferring the smallest host
puts it on ``small`` instead.
"""

import glob
import hashlib
import json
import os
import sys
import time

import fixtures
import numpy as np
from oslo_config import cfg

from nova import test
from nova.tests import fixtures as nova_fixtures
from nova.tests.functional import fixtures as func_fixtures
from nova.tests.functional import integrated_helpers
from nova.virt import fake

CONF = cfg.CONF

NOVA_WEIGHERS = 'nova.scheduler.weights.all_weighers'
RL_WEIGHER = 'nova_rl_weigher.weigher.RLWeigher'

SMALL, MEDIUM, LARGE = 'small', 'medium', 'large'


class _SizedFakeDriver(fake.FakeDriver):
    """FakeDriver whose size comes from class attributes (see FakeDriver)."""


class SmallHostDriver(_SizedFakeDriver):
    vcpus = 4
    memory_mb = 8 * 1024
    local_gb = 100


class MediumHostDriver(_SizedFakeDriver):
    vcpus = 8
    memory_mb = 16 * 1024
    local_gb = 200


class LargeHostDriver(_SizedFakeDriver):
    vcpus = 16
    memory_mb = 32 * 1024
    local_gb = 400


#: host name -> fake driver class; the order is the start order.
HOST_DRIVERS = {
    SMALL: SmallHostDriver,
    MEDIUM: MediumHostDriver,
    LARGE: LargeHostDriver,
}

#: How many ``rl.test`` servers each host can take (RAM minus 512 MiB
#: reserved, divided by 6 GiB).
CAPACITY = {SMALL: 1, MEDIUM: 2, LARGE: 5}

#: The boot sequence used to compare placements, and where stock Nova 34
#: (``weight_classes = all_weighers``, default multipliers) puts each server
#: when they are booted one after the other. ``NovaDefaultPlacementTest``
#: checks this against Nova without the plugin; every "must not change
#: placement" test compares against it. The first server goes to ``large``
#: (most free RAM/vCPU/disk); the second to ``medium`` because the compute's
#: io_ops statistic for ``large`` still counts the first build (it is only
#: refreshed by the periodic task, which does not run in tests) and
#: IoOpsWeigher's -1.0 tips the balance; then ``large`` again. So the
#: sequence exercises the combined Nova weights, not just one weigher.
SEQUENCE_LENGTH = 4
NOVA_DEFAULT_SEQUENCE = [LARGE, MEDIUM, LARGE, LARGE]


def _load_sized_compute_driver(virtapi, compute_driver=None):
    """Stand-in for ``nova.virt.driver.load_compute_driver``.

    Nova only loads drivers from the ``nova.virt`` package
    (``'nova.virt.%s' % compute_driver``), so a driver class defined in a
    test module cannot be named in ``[DEFAULT] compute_driver``; Nova's own
    tests (test_server_group.py) stub the loader the same way. The service
    fixture sets ``CONF.host`` before the compute manager loads its driver.
    """
    return HOST_DRIVERS[CONF.host](virtapi)


def file_sha256(path):
    h = hashlib.sha256()
    with open(path, 'rb') as f:
        for chunk in iter(lambda: f.read(1 << 20), b''):
            h.update(chunk)
    return h.hexdigest()


class PolicyArtifact:
    """Helpers to build valid and deliberately broken policy artifacts."""

    MANIFEST = 'manifest.json'
    DEFAULT_WEIGHTS = 'weights.npz'

    @staticmethod
    def make_linear(path, feature_weights, **kwargs):
        from tests import fixtures as rl_testing
        return rl_testing.make_linear_policy(path, feature_weights, **kwargs)

    @classmethod
    def read_manifest(cls, path):
        with open(os.path.join(path, cls.MANIFEST)) as f:
            return json.load(f)

    @classmethod
    def write_manifest(cls, path, manifest):
        with open(os.path.join(path, cls.MANIFEST), 'w') as f:
            json.dump(manifest, f)

    @classmethod
    def weights_file(cls, path):
        manifest = cls.read_manifest(path)
        name = (manifest.get('weights_file') or manifest.get('weights') or
                cls.DEFAULT_WEIGHTS)
        if not isinstance(name, str):
            name = cls.DEFAULT_WEIGHTS
        return os.path.join(path, name)

    @classmethod
    def fix_sha256(cls, path):
        """Make the manifest's ``weights_sha256`` match the weights file."""
        manifest = cls.read_manifest(path)
        manifest['weights_sha256'] = file_sha256(cls.weights_file(path))
        cls.write_manifest(path, manifest)

    @classmethod
    def set_manifest_field(cls, path, key, value):
        manifest = cls.read_manifest(path)
        manifest[key] = value
        cls.write_manifest(path, manifest)

    @classmethod
    def get_schema_hash(cls, path):
        manifest = cls.read_manifest(path)
        if 'schema_hash' in manifest:
            return manifest['schema_hash']
        return manifest['feature_schema']['hash']

    @classmethod
    def set_schema_hash(cls, path, value):
        """Set the feature-schema hash (``feature_schema.hash`` in format 1,
        or a top-level ``schema_hash``)."""
        manifest = cls.read_manifest(path)
        if 'schema_hash' in manifest:
            manifest['schema_hash'] = value
        else:
            manifest['feature_schema']['hash'] = value
        cls.write_manifest(path, manifest)

    @classmethod
    def replace_weights_with_nan(cls, path):
        """Every float array in the weights file becomes NaN (same shapes).

        The sha256 in the manifest is fixed up afterwards so that only the
        loader's finiteness check can refuse the artifact.
        """
        wfile = cls.weights_file(path)
        with np.load(wfile, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
        n_float = 0
        for key, arr in arrays.items():
            if np.issubdtype(arr.dtype, np.floating):
                arrays[key] = np.full_like(arr, np.nan)
                n_float += 1
        assert n_float, 'no float arrays in %s' % wfile
        with open(wfile, 'wb') as f:
            np.savez(f, **arrays)
        cls.fix_sha256(path)

    @classmethod
    def truncate_weights(cls, path, fix_sha=True):
        """Cut the weights file in half (a torn copy); by default the
        manifest's sha256 is made to match so the parser itself must cope."""
        wfile = cls.weights_file(path)
        size = os.path.getsize(wfile)
        with open(wfile, 'r+b') as f:
            f.truncate(size // 2)
        if fix_sha:
            cls.fix_sha256(path)


class RLSchedulerTestBase(test.TestCase,
                          integrated_helpers.PlacementInstanceHelperMixin):
    """A fresh Nova with three fake computes of different sizes per test.

    Class attributes choose the configuration the scheduler starts with;
    ``[rl_weigher]`` options are mutable and read per request, so tests may
    also change them later with ``self.flags(..., group='rl_weigher')``.
    """

    #: Add ``RLWeigher`` to ``[filter_scheduler] weight_classes``.
    RL_ENABLED = True
    #: ``[rl_weigher] mode``.
    RL_MODE = 'gated'
    #: Feature weights of the linear test policy written to
    #: ``self.policy_dir`` before the scheduler starts; ``None`` leaves
    #: ``policy_path`` at its default (the bundled policy).
    POLICY_WEIGHTS = {'log_vcpus_total': -1.0}
    #: Write decisions to ``self.decision_log_dir``.
    DECISION_LOG = True
    #: Further ``[rl_weigher]`` options set before the scheduler starts.
    RL_OPTIONS = {}

    microversion = 'latest'

    def setUp(self):
        super().setUp()
        self._set_api_paste_config()

        self.tmp = self.useFixture(fixtures.TempDir()).path
        self.policy_dir = os.path.join(self.tmp, 'policy')
        self.decision_log_dir = os.path.join(self.tmp, 'decisions')

        self.policy = self.useFixture(nova_fixtures.RealPolicyFixture())
        self.neutron = self.useFixture(nova_fixtures.NeutronFixture(self))
        self.glance = self.useFixture(nova_fixtures.GlanceFixture(self))
        self.useFixture(nova_fixtures.CinderFixture(self))
        self.placement = self.useFixture(func_fixtures.PlacementFixture()).api
        self.useFixture(nova_fixtures.AllServicesCurrent())
        self.notifier = self.useFixture(
            nova_fixtures.NotificationFixture(self))

        self.api_fixture = self.useFixture(
            nova_fixtures.OSAPIFixture(api_version='v2.1'))
        self.admin_api = self.api_fixture.admin_api
        self.admin_api.microversion = self.microversion
        self.api = self.admin_api

        self._configure_scheduler()

        self.start_service('conductor')
        self.scheduler_service = self.start_service('scheduler')
        from nova_rl_weigher import weigher as rl_weigher_mod
        for w in self.scheduler_service.manager.host_manager.weighers:
            if isinstance(w, rl_weigher_mod.RLWeigher):
                # Stop the decision log's writer thread with the test.
                self.addCleanup(w.close)

        self.stub_out('nova.virt.driver.load_compute_driver',
                      _load_sized_compute_driver)
        for host in HOST_DRIVERS:
            self._start_compute(host)

        self.flavor_id = self._create_flavor(
            name='rl.test', memory_mb=6 * 1024, vcpu=2, disk=10, ephemeral=0)

    def _clear_attrs(self):
        # nova.test.TestCase deletes every public instance attribute in a
        # cleanup. pytest (8+) runs a unittest test by binding the test
        # method as an instance attribute and delattr()s it afterwards,
        # which then raises AttributeError. Keep that one attribute.
        name = getattr(self, '_testMethodName', None)
        bound = self.__dict__.get(name) if name else None
        super()._clear_attrs()
        if bound is not None:
            self.__dict__[name] = bound

    # -- configuration ----------------------------------------------------

    def _set_api_paste_config(self):
        # nova.test's ConfFixture points [wsgi] api_paste_config at
        # $state_path/etc/nova/api-paste.ini, i.e. inside the nova source
        # tree; a pip-installed nova ships the file in <prefix>/etc/nova.
        candidates = [
            os.path.join(sys.prefix, 'etc', 'nova', 'api-paste.ini'),
            os.path.join(os.path.dirname(os.path.dirname(
                os.path.abspath(test.__file__))), 'etc', 'nova',
                'api-paste.ini'),
        ]
        for path in candidates:
            if os.path.exists(path):
                self.flags(api_paste_config=path, group='wsgi')
                return
        self.fail('api-paste.ini not found in %s' % candidates)

    def _configure_scheduler(self):
        """Set options the scheduler reads at start (weight_classes)."""
        classes = [NOVA_WEIGHERS]
        if self.RL_ENABLED:
            # Importing registers the [rl_weigher] options on CONF.
            import nova_rl_weigher.conf  # noqa: F401
            classes.append(RL_WEIGHER)
            rl = {
                'mode': self.RL_MODE,
                # Every test that is not about the budget must not abstain
                # because a loaded CI machine was slow.
                'latency_budget_ms': 10000.0,
                'confidence_threshold': 0.5,
                'policy_check_interval_s': 0.0,
                'canary_percent': 100.0,
                'usage_snapshot_path': '',
                'decision_log_dir': (
                    self.decision_log_dir if self.DECISION_LOG else ''),
            }
            rl.update(self.RL_OPTIONS)
            self.rl_flags(**rl)
            policy_path = self.prepare_policy()
            if policy_path is not None:
                self.rl_flags(policy_path=policy_path)
        self.flags(weight_classes=classes, group='filter_scheduler')

    def prepare_policy(self):
        """Write the policy artifact the test starts with; return its path.

        Runs before the scheduler starts, so the first weighing call already
        sees it (a policy loaded once stays in service when a later version
        on disk is invalid, so broken artifacts must be broken from the
        start). ``None`` keeps the default ``policy_path``.
        """
        if self.POLICY_WEIGHTS is None:
            return None
        return self.make_policy(self.policy_dir, self.POLICY_WEIGHTS)

    def rl_flags(self, **kw):
        self.flags(group='rl_weigher', **kw)

    def make_policy(self, path, feature_weights, **kwargs):
        return PolicyArtifact.make_linear(path, feature_weights, **kwargs)

    # -- the weigher inside the running scheduler --------------------------

    def rl_weigher(self):
        """The ``RLWeigher`` instance the running scheduler uses."""
        from nova_rl_weigher import weigher as rl_weigher_mod
        weighers = self.scheduler_service.manager.host_manager.weighers
        found = [w for w in weighers
                 if isinstance(w, rl_weigher_mod.RLWeigher)]
        self.assertEqual(1, len(found),
                         'RLWeigher not loaded; weighers: %s' % weighers)
        return found[0]

    def flush_decision_log(self, timeout=10.0):
        weigher = self.rl_weigher()
        for name in ('flush_decision_log', 'flush'):
            flush = getattr(weigher, name, None)
            if callable(flush):
                return flush(timeout)
        return None

    def read_decisions(self, expect_uuids=(), timeout=10.0):
        """All decision log records, after flushing the background writer.

        If the weigher has no flush method, poll (up to ``timeout``) until
        records for ``expect_uuids`` are there.
        """
        self.flush_decision_log(timeout)
        deadline = time.monotonic() + timeout
        while True:
            records = []
            for path in sorted(glob.glob(os.path.join(
                    self.decision_log_dir, '**', 'decisions*.jsonl'),
                    recursive=True)):
                with open(path) as f:
                    for line in f:
                        line = line.strip()
                        if line:
                            records.append(json.loads(line))
            seen = {r.get('instance_uuid') for r in records}
            if set(expect_uuids) <= seen or time.monotonic() > deadline:
                return records
            time.sleep(0.05)

    def decisions_for(self, server_ids, timeout=10.0):
        """{instance_uuid: [records]} for the given servers (all present)."""
        records = self.read_decisions(expect_uuids=server_ids,
                                      timeout=timeout)
        by_uuid = {}
        for rec in records:
            by_uuid.setdefault(rec.get('instance_uuid'), []).append(rec)
        missing = set(server_ids) - set(by_uuid)
        self.assertFalse(missing, 'no decision record for %s; records: %s'
                         % (sorted(missing), records))
        return by_uuid

    def assert_decision_shape(self, record):
        for key in ('instance_uuid', 'mode', 'gate', 'hosts'):
            self.assertIn(key, record)
        self.assertIn(record['gate'].get('outcome'), ('applied', 'abstained'))
        self.assertGreaterEqual(len(record['hosts']), 2, record)
        for h in record['hosts']:
            self.assertIn(h.get('host'), HOST_DRIVERS, record)
            for key in ('features', 'nova_weight', 'score'):
                self.assertIn(key, h)

    # -- booting and placement ---------------------------------------------

    def post_server(self, name=None):
        body = self._build_server(name=name, flavor_id=self.flavor_id,
                                  networks='none')
        return self.api.post_server({'server': body})

    def wait_active(self, server, timeout=60.0):
        """Poll the API until the server leaves BUILD; it must be ACTIVE.

        Same as ``_wait_for_state_change`` but polls every 50 ms instead of
        every 500 ms, which keeps the suite fast.
        """
        deadline = time.monotonic() + timeout
        while True:
            server = self.api.get_server(server['id'])
            if server['status'] != 'BUILD' or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        self.assertEqual('ACTIVE', server['status'],
                         'server did not become ACTIVE: %s' % server)
        return server

    def host_of(self, server):
        return server['OS-EXT-SRV-ATTR:host']

    def boot(self, name=None):
        """Boot one server, wait for ACTIVE; return (server, host)."""
        server = self.wait_active(self.post_server(name))
        return server, self.host_of(server)

    def boot_sequence(self, n=SEQUENCE_LENGTH):
        """Boot ``n`` servers one after the other; return their hosts."""
        servers, hosts = [], []
        for i in range(n):
            server, host = self.boot(name='seq-%d' % i)
            servers.append(server)
            hosts.append(host)
        self.servers = servers
        return hosts

    def multi_create(self, count):
        """One API request for ``count`` servers; return the ACTIVE ones."""
        body = self._build_server(name='multi', flavor_id=self.flavor_id,
                                  networks='none')
        body['min_count'] = count
        body['max_count'] = count
        body['return_reservation_id'] = True
        resp = self.api.post_server({'server': body})
        rid = resp['reservation_id']
        servers = self.api.get_servers(
            detail=True, search_opts={'reservation_id': rid})
        self.assertEqual(count, len(servers), servers)
        return [self.wait_active(s) for s in servers]

    def placement_counts(self):
        """{host: number of servers} as the API reports them."""
        counts = {h: 0 for h in HOST_DRIVERS}
        for s in self.api.get_servers(detail=True):
            self.assertEqual('ACTIVE', s['status'], s)
            counts[self.host_of(s)] += 1
        return counts

    def assert_all_active(self):
        for s in self.api.get_servers(detail=True):
            self.assertEqual('ACTIVE', s['status'], s)

    def assert_nova_default_placement(self):
        """Boot the standard sequence; it must match stock Nova's."""
        hosts = self.boot_sequence()
        self.assertEqual(NOVA_DEFAULT_SEQUENCE, hosts)
        self.assert_all_active()
        return hosts

    def assert_policy_preference_within_capacity(self, counts, preference):
        """``counts`` fills hosts in ``preference`` order: a host gets
        servers only when every more preferred host is full."""
        total = sum(counts.values())
        expected = {}
        left = total
        for host in preference:
            expected[host] = min(left, CAPACITY[host])
            left -= expected[host]
        self.assertEqual(expected, counts)
