"""Numpy inference for the policy network.

The network scores every candidate host from its own feature row and from a
summary of the whole candidate set, so it is permutation-equivariant and works
for any number of hosts (a Deep Sets scorer)::

    z  = (x - mean) / std                        # (N, F) per-feature scaling
    h1 = relu(z @ W1 + b1)                       # (N, H) per-host embedding
    c  = mean over hosts of h1                   # (H,)   candidate-set context
    h2 = relu(h1 @ W2 + c @ U2 + b2)             # (N, H)
    s  = h2 @ w3 + b3                            # (N,)   score, higher wins

An ensemble of K members with independent weights is evaluated in one batch;
their disagreement is what the gate reads as confidence. The trainer's torch
module implements the same equations and exports to :mod:`artifact`.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import threading

import numpy as np

from nova_rl_weigher import features
from nova_rl_weigher import shield

ARCHITECTURE = 'deepsets-mlp-v1'

#: Parameter names and their shapes in terms of K (members), F (features)
#: and H (hidden units). The artifact loader checks every array against it.
PARAM_SHAPES: dict[str, tuple[str, ...]] = {
    'W1': ('K', 'F', 'H'),
    'b1': ('K', 'H'),
    'W2': ('K', 'H', 'H'),
    'U2': ('K', 'H', 'H'),
    'b2': ('K', 'H'),
    'w3': ('K', 'H'),
    'b3': ('K',),
}


class _Workspace:
    """Scratch arrays to score up to ``capacity`` hosts with one shape of
    network (features F, members K, hidden H, dtype)."""

    __slots__ = ('key', 'capacity', 'z', 'h1', 'pre2', 'zeros')

    def __init__(self, key: tuple, capacity: int) -> None:
        f, k, h, dtype = key
        self.key = key
        self.capacity = capacity
        self.z = np.empty(capacity * f, dtype)
        self.h1 = np.empty(capacity * k * h, dtype)
        self.pre2 = np.empty(capacity * k * h, dtype)
        self.zeros = np.zeros(capacity * k * h, dtype)

    @property
    def nbytes(self) -> int:
        return (self.z.nbytes + self.h1.nbytes + self.pre2.nbytes
                + self.zeros.nbytes)

    def arrays(self, n: int) -> tuple[np.ndarray, ...]:
        """Contiguous ``z (n, F)``, ``h1 (n, K*H)``, ``pre2 (K, n, H)`` and
        ``zeros (n * K * H,)`` for ``n`` hosts."""
        f, k, h, _ = self.key
        size = n * k * h
        return (self.z[:n * f].reshape(n, f), self.h1[:size].reshape(n, k * h),
                self.pre2[:size].reshape(k, n, h), self.zeros[:size])


class _WorkspacePool:
    """Scratch arrays shared by the threads of a process: a call takes a
    workspace (a new one if none is free) and gives it back; at most
    :attr:`KEEP` are kept, the largest ones, up to :attr:`KEEP_BYTES` in
    all (one workspace for 10,000 hosts of the bundled network is 20 MB)."""

    KEEP = 2
    KEEP_BYTES = 24 * 1024 * 1024

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._free: list[_Workspace] = []
        os.register_at_fork(after_in_child=self._after_fork)

    def _after_fork(self) -> None:
        # A lock held by another thread at fork time stays held forever
        # in the child.
        self._lock = threading.Lock()

    def take(self, key: tuple, n: int) -> _Workspace:
        with self._lock:
            for i, ws in enumerate(self._free):
                if ws.key == key and ws.capacity >= n:
                    return self._free.pop(i)
        return _Workspace(key, max(n, 64))

    def give(self, ws: _Workspace) -> None:
        with self._lock:
            self._free.append(ws)
            self._free.sort(key=lambda w: -w.capacity)
            kept = 0
            for i, w in enumerate(self._free):
                kept += w.nbytes
                if i >= self.KEEP or kept > self.KEEP_BYTES:
                    del self._free[i:]
                    break


_POOL = _WorkspacePool()


def expected_shapes(k: int, f: int, h: int) -> dict[str, tuple[int, ...]]:
    dims = {'K': k, 'F': f, 'H': h}
    return {name: tuple(dims[d] for d in spec)
            for name, spec in PARAM_SHAPES.items()}


@dataclasses.dataclass(frozen=True)
class Policy:
    """A loaded, verified policy. Immutable, so threads share it freely."""

    params: dict[str, np.ndarray]
    mean: np.ndarray
    std: np.ndarray
    feature_min: np.ndarray
    feature_max: np.ndarray
    range_tolerance: float
    manifest: dict
    version: str
    # W1 of all members side by side, (F, K*H): the first layer of the whole
    # ensemble as one matrix product instead of K broadcast ones.
    _w1_flat: np.ndarray = dataclasses.field(init=False, repr=False)
    _b1_flat: np.ndarray = dataclasses.field(init=False, repr=False)

    def __post_init__(self) -> None:
        k, f, h = self.params['W1'].shape
        object.__setattr__(self, '_w1_flat', np.ascontiguousarray(
            self.params['W1'].transpose(1, 0, 2).reshape(f, k * h)))
        object.__setattr__(self, '_b1_flat', self.params['b1'].reshape(-1))

    @property
    def schema(self) -> features.Schema:
        """The feature schema of its inputs (the one of its width; the
        loader has checked the manifest declares it)."""
        return features.schema_for_width(self.params['W1'].shape[1])

    def columns(self, x: np.ndarray) -> np.ndarray:
        """``x`` as this policy's inputs. Feature schemas only append
        columns (v1's 24 are v2's first), so a matrix of a later schema is
        read through its first columns: a v1 policy scores a v2 matrix
        exactly as the v1 matrix."""
        f = self.mean.shape[0]
        return x if x.shape[-1] == f else x[..., :f]

    @property
    def ensemble_size(self) -> int:
        return int(self.params['b3'].shape[0])

    @functools.cached_property
    def shield_limit(self) -> float | None:
        """The manifest's ``shield.max_projected_cpu_peak``, or None
        (:mod:`nova_rl_weigher.shield`)."""
        return shield.limit_of(self.manifest)

    @functools.cached_property
    def accepted_range(self) -> tuple[np.ndarray, np.ndarray]:
        """``(low, high)`` per feature: the training range widened by
        ``range_tolerance`` of its span (of 1 where the span is 0)."""
        span = self.feature_max - self.feature_min
        slack = self.range_tolerance * np.where(span > 0, span, 1.0)
        return self.feature_min - slack, self.feature_max + slack

    def score(self, x: np.ndarray) -> np.ndarray:
        """Return the ``(K, N)`` scores of every member for ``N`` hosts.

        The intermediate arrays live in scratch buffers reused across calls
        (:class:`_WorkspacePool`): a fresh array of a few hundred kB costs
        page faults that take longer than the arithmetic at a few hundred
        hosts. The equations and their order are those of the module
        docstring, evaluated as::

            z = (x - mean) / std; h1 = max(z @ W1 + b1, 0)
            context = mean over hosts of h1
            h2 = max(h1 @ W2 + (context @ U2 + b2), 0); s = h2 @ w3 + b3
        """
        p = self.params
        x = self.columns(np.atleast_2d(x))
        n = x.shape[0]
        key = self._workspace_key(x.dtype)
        ws = _POOL.take(key, n)
        try:
            z, h1, pre2, zeros = ws.arrays(n)
            np.subtract(x, self.mean, out=z)
            np.divide(z, self.std, out=z)
            np.matmul(z, self._w1_flat, out=h1)
            np.add(h1, self._b1_flat, out=h1)
            np.maximum(h1, zeros.reshape(h1.shape), out=h1)
            k, _, h = p['W1'].shape
            h1 = h1.reshape(n, k, h).transpose(1, 0, 2)            # (K, N, H)
            context = h1.mean(axis=1)
            np.matmul(h1, p['W2'], out=pre2)
            np.add(pre2, np.matmul(context[:, None, :], p['U2'])
                   + p['b2'][:, None, :], out=pre2)
            np.maximum(pre2, zeros.reshape(pre2.shape), out=pre2)
            return (np.matmul(pre2, p['w3'][:, :, None])[:, :, 0]
                    + p['b3'][:, None])
        finally:
            _POOL.give(ws)

    def _workspace_key(self, dtype: np.dtype) -> tuple:
        """``(F, K, H, dtype)``: the scratch arrays :meth:`score` needs for
        a feature matrix of ``dtype`` (its arithmetic's dtype)."""
        key = self._workspace_keys.get(dtype)
        if key is None:
            k, f, h = self.params['W1'].shape
            key = (f, k, h, np.result_type(dtype, self.mean, self.std,
                                           self._w1_flat))
            self._workspace_keys[dtype] = key
        return key

    @functools.cached_property
    def _workspace_keys(self) -> dict:
        return {}

    def explain(self, x: np.ndarray, rows: list[int],
                top_n: int = 3) -> list[list[tuple[int, float]]]:
        """Features that moved the mean score of each host in ``rows`` most.

        Occlusion: each feature of the host is replaced by its candidate-set
        mean, the others hosts unchanged, and the change in the ensemble's
        mean score for that host is recorded. Returns, per row,
        ``(feature index, effect)`` pairs sorted by absolute effect, where
        ``effect`` is how much the feature's actual value raised (positive)
        or lowered the score. Only the changed host's contribution to the
        candidate-set context is recomputed, so the cost does not grow with
        the number of hosts.
        """
        p = self.params
        x = self.columns(x)
        n, f = x.shape
        z = (x - self.mean) / self.std
        h1 = np.maximum(np.matmul(z, p['W1']) + p['b1'][:, None, :], 0.0)
        context = h1.mean(axis=1)                                  # (K, H)
        col_mean = x.mean(axis=0)
        out = []
        for row in rows:
            variants = np.repeat(x[row][None, :], f + 1, axis=0)   # (F+1, F)
            variants[np.arange(f), np.arange(f)] = col_mean
            zv = (variants - self.mean) / self.std
            h1v = np.maximum(np.matmul(zv, p['W1'])
                             + p['b1'][:, None, :], 0.0)            # (K,F+1,H)
            ctx = context[:, None, :] + (h1v - h1[:, row:row + 1, :]) / n
            pre2 = (np.matmul(h1v, p['W2']) + np.matmul(ctx, p['U2'])
                    + p['b2'][:, None, :])
            s = (np.maximum(pre2, 0.0) * p['w3'][:, None, :]).sum(axis=2)
            s = s.mean(axis=0)                    # ensemble mean, (F+1,)
            effects = (s[f] - s[:f]).astype(np.float64)
            effects[x[row] == col_mean] = 0.0
            order = np.argsort(-np.abs(effects))[:top_n]
            out.append([(int(j), float(effects[j])) for j in order
                        if effects[j] != 0.0])
        return out
