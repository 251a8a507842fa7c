"""What a policy reads of the pending request and its candidate hosts.

The request as the weigher sees it (:meth:`Candidates.request_view`), its
project's measured CPU ratio, Nova's weights over a candidate mask, and the
candidates' host columns and feature matrix: built by
``nova_rl_weigher.features.compute_matrix``, the same code and inputs the
weigher uses inside nova-scheduler, with ``nova_weight`` the weight Nova's
configured weighers (``SimConfig.nova_weighers``) give over the candidate
set and the usage columns from the simulated snapshot (:mod:`usage`). The
feature matrix is built only for policies that read it.
"""

from __future__ import annotations

import math

import numpy as np

from nova_rl_weigher import features

from nova_rl_trainer.simulation.cluster_state import COLUMN
from nova_rl_trainer.simulation import nova_weighers
from nova_rl_trainer.simulation import workload


class Candidates:
    """Mixin of :class:`~nova_rl_trainer.simulation.simulator.Simulation`:
    read-only views of the state for policies."""

    def _init_candidates(self) -> None:
        self._nova_multipliers = nova_weighers.CONFIGURATIONS[
            self.config.nova_weighers]
        #: The feature schema :meth:`candidate_features` computes by
        #: default: the playing policy's ``feature_schema`` (set by
        #: ``Simulation.play``), else the current one.
        self.feature_schema = features.SCHEMA

    def request_view(self, vm: int) -> features.RequestView:
        tr = self.workload.trace
        vcpus = float(tr.vcpus[vm])
        memory_mb = float(tr.memory_mb[vm])
        return features.RequestView(
            vcpus=vcpus, memory_mb=memory_mb,
            disk_gb=float(tr.disk_gb[vm]),
            project_id=tr.project_ids[tr.project[vm]],
            instance_uuid=tr.vm_id(vm),
            flavor_name=workload.flavor_name(vcpus, memory_mb))

    def project_cpu_ratio(self, vm: int) -> float | None:
        """The requesting project's measured used/allocated CPU, if any."""
        if not self.needs_usage:
            return None
        r = self.project_ratio[self.workload.trace.project[vm]]
        return None if math.isnan(r) else float(r)

    def nova_weights(self, fit: np.ndarray,
                     multipliers: nova_weighers.NovaMultipliers
                     = nova_weighers.DEFAULT) -> np.ndarray:
        """Nova's combined weight of every host for candidate mask ``fit``
        (meaningless outside the mask)."""
        # No build phase is simulated: num_io_ops is 0 on every host.
        return nova_weighers.combined_weights(
            self.ram_free_mb, self.cap_vcpu - self.vcpus_used,
            self.disk_free_mb, None, self.num_instances, multipliers,
            mask=fit)

    def candidate_inputs(self, fit: np.ndarray
                         ) -> tuple[np.ndarray, np.ndarray]:
        """The candidates' host indices and their host columns as one
        float64 array, a row per ``HostColumns`` field
        (``features.INPUT_COLUMNS``), ``nova_weight`` filled with the
        weight Nova's configured weighers (``SimConfig.nova_weighers``)
        give over this candidate set: the input of
        ``features.matrix_from_inputs``."""
        cand = np.flatnonzero(fit)
        # take, not self.cols[:, cand]: that indexing returns the rows
        # interleaved (Fortran order), which made every row the feature
        # matrix reads a strided one (a fifth of its time).
        sub = self.cols.take(cand, axis=1)
        sub[COLUMN['nova_weight']] = nova_weighers.combined_weights(
            sub[COLUMN['ram_free_mb']],
            sub[COLUMN['vcpus_total']] * sub[COLUMN['cpu_allocation_ratio']]
            - sub[COLUMN['vcpus_used']], sub[COLUMN['disk_free_mb']],
            sub[COLUMN['num_io_ops']], sub[COLUMN['num_instances']],
            self._nova_multipliers)
        return cand, sub

    def candidate_columns(self, fit: np.ndarray
                          ) -> tuple[np.ndarray, features.HostColumns]:
        """:meth:`candidate_inputs` as ``features.HostColumns``."""
        cand, sub = self.candidate_inputs(fit)
        return cand, features.HostColumns(*sub)

    def candidate_features(self, vm: int, fit: np.ndarray,
                           schema: features.Schema | None = None
                           ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(candidate host indices, feature matrix, Nova weights)`` for
        the pending request: what the weigher would see in Nova, in the
        columns of ``schema`` (default :attr:`feature_schema`; v1's read
        none of the v2 signals, which are then not kept at all)."""
        if schema is None:
            schema = self.feature_schema
        cand, sub = self.candidate_inputs(fit)
        request = self.request_view(vm)
        ratio = self.project_cpu_ratio(vm)
        if schema.num_features <= features.SCHEMA_V1.num_features:
            x = features.matrix_from_inputs(sub, request, ratio,
                                            schema=schema)
        else:
            x = features.matrix_from_inputs(
                sub, request, ratio, schema=schema,
                signals=self.host_signals(cand),
                request_signals=self.request_signals(vm))
        return cand, x, sub[COLUMN['nova_weight']]
