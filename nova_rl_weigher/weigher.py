"""Nova adapter: ``nova_rl_weigher.weigher.RLWeigher``.

Enable it after Nova's own weighers, so each host's ``weight`` already holds
Nova's standard combined score when this weigher runs::

    [filter_scheduler]
    weight_classes = nova.scheduler.weights.all_weighers,nova_rl_weigher.weigher.RLWeigher

This module only turns Nova's ``HostState``/``RequestSpec`` into the views the
feature code reads, and the scheduler's ``[filter_scheduler]`` weigher
configuration into a :class:`nova_rl_weigher.nova_config.NovaConfig`, and
hands them to :class:`nova_rl_weigher.scorer.Scorer`. For a policy of feature schema v2
it also reads each host's ``HostState.instances`` (``launched_at``,
``project_id`` and, when loaded, ``flavor``: never a lazy load) for the
hosts' remaining busy time (:func:`remaining_reader`); the request's
siblings come from the usage snapshot's per-project recent boots.
Nothing may escape from here: Nova does not catch weigher exceptions and the
instance would go to ERROR.
"""  # noqa: E501 - the weight_classes line is copied whole

from __future__ import annotations

import datetime
import math
import threading
import time

import numpy as np

from nova.scheduler import weights
from oslo_config import cfg
from oslo_log import log as logging

from nova_rl_weigher import conf as rl_conf
from nova_rl_weigher import decision_log
from nova_rl_weigher import features
from nova_rl_weigher import lifetimes as lifetimes_mod
from nova_rl_weigher import nova_config as nova_config_mod
from nova_rl_weigher import scorer as scorer_mod

LOG = logging.getLogger(__name__)
CONF = rl_conf.CONF

#: Aggregate metadata key overriding ``[rl_weigher] weight_multiplier``.
MULTIPLIER_KEY = 'rl_weight_multiplier'
_MULTIPLIER_OPT = next(o for o in rl_conf.rl_weigher_opts
                       if o.name == 'weight_multiplier')
#: What applies when the configured multiplier itself is unusable.
BUILTIN_MULTIPLIER = float(_MULTIPLIER_OPT.default)
#: Distinct aggregate value sets remembered per weighing call.
_MEMO_MAX = 1024


#: ``[filter_scheduler]`` options compared with a policy's recorded Nova
#: configuration: every ``*_weight_multiplier``.
NOVA_MULTIPLIER_SUFFIX = '_weight_multiplier'
#: weight_classes (as a tuple) -> the enabled weigher classes, expanded by
#: Nova's own loader (``all_weighers`` to its classes), or None when it
#: could not be expanded. weight_classes is read once when the scheduler
#: starts, so one entry is the usual case.
_ENABLED_WEIGHERS: dict[tuple, frozenset[str] | None] = {}
_ENABLED_MAX = 16
_UNSEEN = object()


def enabled_weighers(weight_classes) -> frozenset[str] | None:
    """The weigher classes ``weight_classes`` enables, as dotted paths;
    None when Nova's loader cannot expand them (then only the multipliers
    are compared)."""
    key = tuple(weight_classes)
    found = _ENABLED_WEIGHERS.get(key, _UNSEEN)
    if found is not _UNSEEN:
        return found
    try:
        classes = weights.HostWeightHandler().get_matching_classes(list(key))
        found = frozenset(f'{c.__module__}.{c.__name__}' for c in classes)
    except Exception:  # noqa: BLE001 - unknown, not an error of ours
        found = None
    if len(_ENABLED_WEIGHERS) >= _ENABLED_MAX:
        _ENABLED_WEIGHERS.clear()
    _ENABLED_WEIGHERS[key] = found
    return found


def nova_config(group=None) -> nova_config_mod.NovaConfig | None:
    """The running scheduler's weigher configuration, as plain data.

    ``group`` is ``CONF.filter_scheduler`` (the default): its
    ``*_weight_multiplier`` options (only finite numbers; anything else is
    left out, hence not compared) and its ``weight_classes`` expanded.
    Per-aggregate multiplier overrides (aggregate metadata) are not
    included. None when the process has no ``[filter_scheduler]`` options
    (not a nova-scheduler: nothing to compare).
    """
    if group is None:
        try:
            group = CONF.filter_scheduler
        except cfg.NoSuchOptError:
            return None
    multipliers = {}
    for name in group:
        if name.endswith(NOVA_MULTIPLIER_SUFFIX):
            value = group[name]
            if isinstance(value, (int, float)) and \
                    not isinstance(value, bool) and math.isfinite(value):
                multipliers[name] = float(value)
    return nova_config_mod.NovaConfig(
        multipliers, enabled_weighers(group.weight_classes))


def parse_multiplier(value) -> float | None:
    """A multiplier from an option or metadata value; None if unusable.

    Usable: a finite number within the option's bounds (at least 0: a
    negative multiplier would rank the hosts the policy likes least
    first). NaN, infinities, text and anything else are not.
    """
    number = nova_config_mod.finite_number(value)
    if number is None:
        return None
    low = _MULTIPLIER_OPT.type.min
    high = _MULTIPLIER_OPT.type.max
    if (low is not None and number < low) or \
            (high is not None and number > high):
        return None
    return number


def _host_row(weighed_host) -> tuple:
    """One host's :data:`features.HOST_COLUMNS`, read straight off HostState.

    The hot loop of the adapter: a plain tuple per host, converted to numpy
    once, costs a fraction of building objects for thousands of hosts.
    """
    hs = weighed_host.obj
    return (hs.vcpus_total, hs.vcpus_used, hs.total_usable_ram_mb,
            hs.free_ram_mb, hs.total_usable_disk_gb, hs.free_disk_mb,
            hs.cpu_allocation_ratio, hs.ram_allocation_ratio,
            hs.disk_allocation_ratio, hs.num_instances, hs.num_io_ops,
            hs.failed_builds, weighed_host.weight)


def _number(value) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return float('nan')


def host_columns(weighed_hosts) -> tuple[list[str], features.HostColumns]:
    """Host names and columns for Nova's weighed hosts (usage not filled).

    Unknown values (``None`` in a host state not yet updated, anything not a
    number) become NaN, which the gate refuses: the weigher abstains rather
    than guess.
    """
    names = [w.obj.host for w in weighed_hosts]
    rows = [_host_row(w) for w in weighed_hosts]
    try:
        base = np.array(rows, dtype=np.float64)
    except (TypeError, ValueError):
        base = np.array([[_number(v) for v in row] for row in rows],
                        dtype=np.float64)
    base = base.reshape(len(rows), len(features.HOST_COLUMNS))
    return names, features.HostColumns.from_arrays(base)


def _start_s(instance, now: float) -> float:
    """When an instance started (``launched_at``), in Unix seconds; one not
    launched yet is starting now."""
    launched = _field(instance, 'launched_at')
    if launched is None:
        return now
    if launched.tzinfo is None:
        launched = launched.replace(tzinfo=datetime.timezone.utc)
    return launched.timestamp()


def _holdings(host_state, lifetimes: lifetimes_mod.Lifetimes, now: float):
    """``(start, lifetime distribution)`` of each instance on the host.

    Only fields already loaded are read (``_field``): a lazy load would
    be a database call per instance inside the scheduling call, so an
    instance without its flavor is predicted from its project alone.
    """
    for inst in (host_state.instances or {}).values():
        flavor = _field(inst, 'flavor')
        name = '' if flavor is None else str(_field(flavor, 'name', ''))
        yield _start_s(inst, now), lifetimes.for_instance(
            str(_field(inst, 'project_id', '')), name)


def remaining_reader(weighed_hosts, now: float
                     ) -> features.RemainingReader:
    """The hosts' remaining busy time (:func:`lifetimes.host_remaining_s`)
    from ``HostState.instances``, read only when the policy's schema uses
    it; a host whose instances cannot be read is unknown (NaN)."""
    def read(lifetimes: lifetimes_mod.Lifetimes) -> list[float]:
        out = []
        for w in weighed_hosts:
            try:
                out.append(lifetimes_mod.host_remaining_s(
                    now, _holdings(w.obj, lifetimes, now)))
            except Exception:  # noqa: BLE001 - unknown, not a failure
                out.append(math.nan)
        return out
    return read


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
        local = self._local
        local.applied = False
        try:
            names, columns = host_columns(weighed_obj_list)
            request = request_view(weight_properties)
            group = CONF.rl_weigher
            settings = scorer_mod.Settings.from_conf(group)
            self.scorer.decisions.configure(
                queue_bytes=group.decision_log_queue_mb * decision_log.MIB,
                max_age_s=group.decision_log_max_age_days *
                decision_log.DAY_S)
        except Exception:  # noqa: BLE001 - never fail a boot because of us
            self.scorer.errors.error(
                'adapter', 'rl_weigher: could not read the scheduler state, '
                'abstaining', exc_info=True)
            return [0.0] * len(weighed_obj_list)
        try:
            running = nova_config()
        except Exception:  # noqa: BLE001 - unknown: not compared
            running = None
            self.scorer.errors.warning(
                'nova_config', 'rl_weigher: could not read '
                "[filter_scheduler]'s weighers, not comparing them with the "
                "policy's", exc_info=True)
        outcome = self.scorer.weigh(
            names, columns, request, settings, running,
            remaining=remaining_reader(weighed_obj_list, time.time()))
        if outcome.applied:
            # Read once per call: Nova asks for every host.
            local.default_multiplier = self._configured_multiplier()
            local.multipliers = {}
        local.applied = outcome.applied
        return outcome.weights

    def weight_multiplier(self, host_state):
        """``weight_multiplier`` or the host's aggregates' value; finite.

        Nova multiplies this weigher's weight by it and adds the product
        to the host's weight, so a NaN or an infinity here would make the
        whole ranking meaningless. Aggregate values that are not finite
        numbers of at least 0 are ignored (with a rate-limited warning);
        of several usable values, the smallest applies, as in Nova.
        """
        local = self._local
        if not getattr(local, 'applied', False):
            return 1.0
        default = local.default_multiplier
        try:
            aggregates = host_state.aggregates
            if not aggregates:
                return default
            raw = tuple(sorted({str(a.metadata[MULTIPLIER_KEY])
                                for a in aggregates
                                if MULTIPLIER_KEY in a.metadata}))
            if not raw:
                return default
            memo = local.multipliers
            value = memo.get(raw)
            if value is None:
                value = self._aggregate_multiplier(raw, default)
                if len(memo) < _MEMO_MAX:
                    memo[raw] = value
            return value
        except Exception:  # noqa: BLE001 - never fail a boot because of us
            self.scorer.errors.error(
                'multiplier', 'rl_weigher: could not read the aggregate '
                'multiplier of %s, using %s', getattr(host_state, 'host', '?'),
                default, exc_info=True)
            return default

    def _aggregate_multiplier(self, raw: tuple, default: float) -> float:
        usable = []
        for text in raw:
            value = parse_multiplier(text)
            if value is None:
                shown = text if len(text) <= 64 else text[:64] + '...'
                self.scorer.errors.warning(
                    'multiplier:' + shown, 'rl_weigher: ignoring aggregate '
                    'metadata %s=%r: not a finite number of at least 0; '
                    'using %s', MULTIPLIER_KEY, shown, default)
            else:
                usable.append(value)
        return min(usable) if usable else default

    def _configured_multiplier(self) -> float:
        try:
            configured = CONF.rl_weigher.weight_multiplier
        except Exception as e:  # noqa: BLE001 - e.g. out of bounds in a file
            configured = e
        value = parse_multiplier(configured)
        if value is None:
            self.scorer.errors.warning(
                'weight_multiplier', 'rl_weigher: [rl_weigher] '
                'weight_multiplier %s is not a finite number of at least 0; '
                'using %s', configured, BUILTIN_MULTIPLIER)
            return BUILTIN_MULTIPLIER
        return value

    @property
    def stats(self) -> dict[str, int]:
        return self.scorer.stats

    def flush_decision_log(self, timeout: float = 10.0) -> bool:
        return self.scorer.flush_decision_log(timeout)

    def close(self, timeout: float = 10.0) -> None:
        self.scorer.close(timeout)
