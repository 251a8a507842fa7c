"""Build the bundled default policy: a small ensemble imitating best-fit.

Until the trainer publishes a policy learned by reinforcement learning, the
package ships this one so that ``policy_path`` has a working default. It is
fitted, not random: each member regresses, within each candidate set, the
score of a sound packing heuristic (best fit on the scarcer of RAM and vCPUs,
with a penalty for pushing measured CPU use past 90%), on synthetic clusters
built through the same feature code the weigher uses. Members differ in
initialisation and bootstrap sample, so their disagreement marks the sets
where the imitation is unsure.

Reproduce (numpy only, about 20 seconds on 2 cores)::

    python -m nova_rl_weigher.policies.build_default --seed 0 --steps 6000
"""

from __future__ import annotations

import argparse
import os

import numpy as np

from nova_rl_weigher import artifact
from nova_rl_weigher import features
from nova_rl_weigher import gate

HOST_VCPUS = (2, 4, 8, 16, 24, 32, 48, 64, 96, 128)
RAM_GB_PER_VCPU = (1, 2, 4, 8)
FLAVORS = ((1, 0.75), (1, 1.75), (1, 2), (2, 4), (2, 8), (4, 8), (4, 16),
           (8, 16), (8, 32), (16, 64), (16, 112))
SET_SIZES = (2, 3, 4, 8, 16, 32)


def heuristic_scores(x: np.ndarray) -> np.ndarray:
    """Best fit on the dominant resource, avoiding measured hot spots."""
    i = features.FEATURE_INDEX
    leftover = np.maximum(x[:, i['ram_free_after_frac']],
                          x[:, i['vcpu_free_after_frac']])
    hot = np.maximum(x[:, i['cpu_p95_after']] - 0.9, 0.0)
    return -leftover - 4.0 * hot


def random_candidates(rng: np.random.Generator, n: int
                      ) -> tuple[list[features.HostView], features.RequestView,
                                 features.UsageLookup]:
    """One synthetic weighing call: a request and n hosts that fit it."""
    vcpus, ram_gb = FLAVORS[rng.integers(len(FLAVORS))]
    request = features.RequestView(
        vcpus=vcpus, memory_mb=ram_gb * 1024, disk_gb=float(
            rng.choice([0, 10, 20, 40, 80])), project_id='p%d' % rng.integers(4))
    cpu_ratio = float(rng.choice([1.0, 2.0, 4.0, 16.0]))
    ram_ratio = float(rng.choice([1.0, 1.0, 1.5]))
    hosts, usage_hosts = [], {}
    while len(hosts) < n:
        hv = float(rng.choice(HOST_VCPUS))
        ram_mb = hv * float(rng.choice(RAM_GB_PER_VCPU)) * 1024
        disk_gb = float(rng.choice([200, 500, 1000, 4000]))
        fill = rng.beta(1.2, 1.2)
        vcpus_used = np.floor(fill * hv * cpu_ratio * rng.uniform(0.7, 1.0))
        ram_used = fill * ram_mb * ram_ratio * rng.uniform(0.7, 1.0)
        disk_used = rng.uniform(0, 0.9) * disk_gb * 1024
        h = features.HostView(
            name='h%d' % len(hosts), vcpus_total=hv, vcpus_used=vcpus_used,
            ram_total_mb=ram_mb, ram_free_mb=ram_mb - ram_used,
            disk_total_gb=disk_gb, disk_free_mb=disk_gb * 1024 - disk_used,
            cpu_allocation_ratio=cpu_ratio, ram_allocation_ratio=ram_ratio,
            num_instances=float(rng.poisson(vcpus_used / 2 + 0.1)),
            num_io_ops=float(rng.poisson(0.3)),
            failed_builds=float(rng.random() < 0.02))
        # Only hosts that pass Nova's RAM, core and disk filters.
        if (vcpus_used + vcpus > hv * cpu_ratio
                or ram_used + request.memory_mb > ram_mb * ram_ratio
                or disk_used + request.disk_gb * 1024 > disk_gb * 1024):
            continue
        if rng.random() < 0.5:
            util = min(vcpus_used / hv, 1.5) * rng.uniform(0.1, 0.8)
            usage_hosts[h.name] = features.HostUsage(
                util, min(util * rng.uniform(1.1, 2.0), 2.0),
                min(ram_used / ram_mb, 1.5) * rng.uniform(0.5, 1.0),
                min(ram_used / ram_mb, 1.5))
        hosts.append(h)
    # Nova's default weighers spread: more free RAM, vCPUs and disk win.
    x0 = features.build_matrix(hosts, request)
    i = features.FEATURE_INDEX
    for h, row in zip(hosts, x0):
        h.nova_weight = float(row[i['ram_free_frac']] + row[i['vcpu_free_frac']]
                              + row[i['disk_free_frac']]) * rng.uniform(0.9, 1.1)
    projects = ({request.project_id: float(rng.uniform(0.05, 1.0))}
                if rng.random() < 0.5 else {})
    return hosts, request, features.UsageLookup(usage_hosts, projects)


def make_dataset(rng: np.random.Generator, sets_per_size: int
                 ) -> list[tuple[np.ndarray, np.ndarray]]:
    data = []
    for n in SET_SIZES:
        xs, ts = [], []
        for _ in range(sets_per_size):
            hosts, request, usage = random_candidates(rng, n)
            x = features.build_matrix(hosts, request, usage)
            t = heuristic_scores(x)
            xs.append(x)
            ts.append((t - t.mean()) / (t.std() + 1e-3))
        data.append((np.stack(xs), np.stack(ts).astype(np.float32)))
    return data


class _Member:
    """One ensemble member with manual backprop and Adam (numpy only)."""

    def __init__(self, rng: np.random.Generator, f: int, h: int) -> None:
        def init(*shape, fan_in):
            return (rng.standard_normal(shape) * np.sqrt(2.0 / fan_in))
        self.p = {'W1': init(f, h, fan_in=f), 'b1': np.zeros(h),
                  'W2': init(h, h, fan_in=2 * h), 'U2': init(h, h, fan_in=2 * h),
                  'b2': np.zeros(h), 'w3': init(h, fan_in=h), 'b3': np.zeros(1)}
        self.m = {k: np.zeros_like(v) for k, v in self.p.items()}
        self.v = {k: np.zeros_like(v) for k, v in self.p.items()}
        self.t = 0

    def forward(self, z):
        p = self.p
        a1 = z @ p['W1'] + p['b1']
        h1 = np.maximum(a1, 0)
        c = h1.mean(axis=1)
        a2 = h1 @ p['W2'] + (c @ p['U2'])[:, None, :] + p['b2']
        h2 = np.maximum(a2, 0)
        s = h2 @ p['w3'] + p['b3'][0]
        return s, (z, a1, h1, c, a2, h2)

    def step(self, z, t, lr):
        p = self.p
        s, (z, a1, h1, c, a2, h2) = self.forward(z)
        b, n = s.shape
        sc = s - s.mean(axis=1, keepdims=True)
        err = sc - t
        loss = float((err ** 2).mean())
        ds = 2 * err / (b * n)
        ds = ds - ds.mean(axis=1, keepdims=True)
        g = {'w3': np.einsum('bnh,bn->h', h2, ds), 'b3': np.zeros(1)}
        da2 = (ds[..., None] * p['w3']) * (a2 > 0)
        g['W2'] = np.einsum('bnh,bng->hg', h1, da2)
        da2_sum = da2.sum(axis=1)
        g['U2'] = c.T @ da2_sum
        g['b2'] = da2.sum(axis=(0, 1))
        dh1 = da2 @ p['W2'].T + (da2_sum @ p['U2'].T)[:, None, :] / n
        da1 = dh1 * (a1 > 0)
        g['W1'] = np.einsum('bnf,bnh->fh', z, da1)
        g['b1'] = da1.sum(axis=(0, 1))
        self.t += 1
        for k in p:
            self.m[k] = 0.9 * self.m[k] + 0.1 * g[k]
            self.v[k] = 0.999 * self.v[k] + 0.001 * g[k] ** 2
            mh = self.m[k] / (1 - 0.9 ** self.t)
            vh = self.v[k] / (1 - 0.999 ** self.t)
            p[k] -= lr * mh / (np.sqrt(vh) + 1e-8)
        return loss


def fit(seed: int = 0, members: int = 5, hidden: int = 32, steps: int = 6000,
        batch: int = 32, sets_per_size: int = 600) -> dict:
    rng = np.random.default_rng(seed)
    train = make_dataset(rng, sets_per_size)
    held_out = make_dataset(np.random.default_rng(seed + 1000), 200)
    all_rows = np.concatenate([x.reshape(-1, x.shape[-1]) for x, _ in train])
    mean = all_rows.mean(axis=0)
    std = np.maximum(all_rows.std(axis=0), 1e-3)
    f = features.NUM_FEATURES
    ensemble = []
    for k in range(members):
        mrng = np.random.default_rng(seed * 100 + k)
        member = _Member(mrng, f, hidden)
        for step in range(steps):
            xs, ts = train[mrng.integers(len(train))]
            idx = mrng.integers(len(xs), size=batch)   # bootstrap sample
            lr = 3e-3 * (0.1 ** (step / steps))
            member.step((xs[idx] - mean) / std, ts[idx], lr)
        ensemble.append(member)
    params = {name: np.stack([m.p[name] for m in ensemble])
              for name in ensemble[0].p}
    params['b3'] = params['b3'][:, 0]
    return {'params': params, 'mean': mean, 'std': std,
            'feature_min': all_rows.min(axis=0),
            'feature_max': all_rows.max(axis=0),
            'held_out': held_out, 'ensemble': ensemble}


def top1_agreement(result: dict) -> dict:
    """Held-out: how often the ensemble's choice is the heuristic's choice."""
    hits = total = confident = confident_hits = 0
    for xs, ts in result['held_out']:
        z = (xs - result['mean']) / result['std']
        member_scores = np.stack([m.forward(z)[0] for m in result['ensemble']])
        for b in range(xs.shape[0]):
            conf, best = gate.ensemble_agreement(member_scores[:, b, :])
            # A tie for the heuristic's best counts as a hit.
            hit = ts[b, best] >= ts[b].max() - 1e-6
            hits += hit
            total += 1
            if conf >= 0.8:
                confident += 1
                confident_hits += hit
    return {'top1_agreement': hits / total,
            'confident_share_at_0.8': confident / total,
            'top1_agreement_when_confident': confident_hits / max(confident, 1)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--out', default=os.path.join(
        os.path.dirname(os.path.abspath(__file__)), 'default'))
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--steps', type=int, default=6000)
    args = parser.parse_args(argv)
    result = fit(seed=args.seed, steps=args.steps)
    quality = top1_agreement(result)
    manifest = artifact.write_artifact(
        args.out, result['params'], mean=result['mean'], std=result['std'],
        feature_min=result['feature_min'], feature_max=result['feature_max'],
        objective='packing',
        policy_version=f'default-imitation-best-fit-s{args.seed}',
        calibration={'confidence_threshold': 0.8},
        provenance={
            'method': 'imitation of a best-fit packing heuristic (not RL); '
                      'placeholder until nova-rl-trainer publishes a learned '
                      'policy',
            'heuristic': 'score = -max(ram_free_after_frac, '
                         'vcpu_free_after_frac) - 4 * max(cpu_p95_after - '
                         '0.9, 0)',
            'data': 'synthetic candidate sets built with '
                    'nova_rl_weigher.features (see build_default.py)',
            'command': 'python -m nova_rl_weigher.policies.build_default '
                       f'--seed {args.seed} --steps {args.steps}',
            'held_out': quality,
        })
    print(f"wrote {args.out} ({manifest['policy_version']}): {quality}")


if __name__ == '__main__':
    main()
