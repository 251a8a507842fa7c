"""Nova adapter: ``nova_rl_weigher.weigher.RLWeigher``.

Enable it after Nova's own weighers, so each host's ``weight`` already holds
Nova's standard combined score when this weigher runs::

    [filter_scheduler]
    weight_classes = nova.scheduler.weights.all_weighers,nova_rl_weigher.weigher.RLWeigher

This module only turns Nova's ``HostState``/``RequestSpec`` into the views the
feature code reads and hands them to :class:`nova_rl_weigher.scorer.Scorer`.
Nothing may escape from here: Nova does not catch weigher exceptions and the
instance would go to ERROR.
"""

from __future__ import annotations

import threading

from nova.scheduler import utils as scheduler_utils
from nova.scheduler import weights
from oslo_log import log as logging

from nova_rl_weigher import conf as rl_conf
from nova_rl_weigher import features
from nova_rl_weigher import scorer as scorer_mod

LOG = logging.getLogger(__name__)
CONF = rl_conf.CONF


def host_view(weighed_host) -> features.HostView:
    hs = weighed_host.obj
    return features.HostView(
        name=hs.host,
        vcpus_total=float(hs.vcpus_total or 0),
        vcpus_used=float(hs.vcpus_used or 0),
        ram_total_mb=float(hs.total_usable_ram_mb or 0),
        ram_free_mb=float(hs.free_ram_mb or 0),
        disk_total_gb=float(hs.total_usable_disk_gb or 0),
        disk_free_mb=float(hs.free_disk_mb or 0),
        cpu_allocation_ratio=float(hs.cpu_allocation_ratio or 1.0),
        ram_allocation_ratio=float(hs.ram_allocation_ratio or 1.0),
        disk_allocation_ratio=float(hs.disk_allocation_ratio or 1.0),
        num_instances=float(hs.num_instances or 0),
        num_io_ops=float(hs.num_io_ops or 0),
        failed_builds=float(getattr(hs, 'failed_builds', 0) or 0),
        nova_weight=float(weighed_host.weight),
    )


def _field(obj, name: str, default=None):
    """A versioned object's field, or ``default`` when it is not set."""
    try:
        if hasattr(obj, 'obj_attr_is_set') and not obj.obj_attr_is_set(name):
            return default
        value = getattr(obj, name)
    except Exception:  # noqa: BLE001 - lazy-load failures mean "unknown"
        return default
    return default if value is None else value


def request_view(spec_obj) -> features.RequestView:
    flavor = _field(spec_obj, 'flavor')
    vcpus = memory_mb = disk_gb = 0.0
    name = ''
    if flavor is not None:
        vcpus = float(_field(flavor, 'vcpus', 0))
        memory_mb = float(_field(flavor, 'memory_mb', 0))
        # Boot-from-volume requests take no local root disk, as in
        # Nova's resource request.
        root = 0 if _field(spec_obj, 'is_bfv', False) else \
            _field(flavor, 'root_gb', 0)
        disk_gb = float(root + _field(flavor, 'ephemeral_gb', 0)
                        + _field(flavor, 'swap', 0) / 1024.0)
        name = str(_field(flavor, 'name', ''))
    return features.RequestView(
        vcpus=vcpus, memory_mb=memory_mb, disk_gb=disk_gb,
        project_id=str(_field(spec_obj, 'project_id', '')),
        instance_uuid=str(_field(spec_obj, 'instance_uuid', '')),
        flavor_name=name)


class RLWeigher(weights.BaseHostWeigher):
    """Ranks all filtered hosts in one batch with the learned policy.

    Returns scores already scaled to [0, 1] and declares that range, so
    Nova's normalisation keeps them and no per-call state is stored on this
    instance, which every scheduler thread shares. When abstaining it returns
    zeros: Nova's standard ranking stands.
    """

    minval = 0.0
    maxval = 1.0

    def __init__(self) -> None:
        super().__init__()
        self.scorer = scorer_mod.Scorer()
        # Whether the current thread's last call applied the policy: Nova
        # asks weight_multiplier() once per host right after
        # weigh_objects(), and the aggregate lookup is only worth doing
        # when the weights are not all zero.
        self._local = threading.local()

    def _weigh_object(self, host_state, weight_properties):
        # Unused: weigh_objects() scores the whole candidate set at once.
        return 0.0

    def weigh_objects(self, weighed_obj_list, weight_properties):
        self._local.applied = False
        try:
            hosts = [host_view(w) for w in weighed_obj_list]
            request = request_view(weight_properties)
            settings = scorer_mod.Settings.from_conf(CONF.rl_weigher)
        except Exception:  # noqa: BLE001 - never fail a boot because of us
            self.scorer.errors.error(
                'adapter', 'rl_weigher: could not read the scheduler state, '
                'abstaining', exc_info=True)
            return [0.0] * len(weighed_obj_list)
        outcome = self.scorer.weigh(hosts, request, settings)
        self._local.applied = outcome.applied
        return outcome.weights

    def weight_multiplier(self, host_state):
        if not getattr(self._local, 'applied', False):
            return 1.0
        default = CONF.rl_weigher.weight_multiplier
        try:
            return scheduler_utils.get_weight_multiplier(
                host_state, 'rl_weight_multiplier', default)
        except Exception:  # noqa: BLE001
            return default

    @property
    def stats(self) -> dict[str, int]:
        return self.scorer.stats

    def flush_decision_log(self, timeout: float = 10.0) -> bool:
        return self.scorer.flush_decision_log(timeout)
