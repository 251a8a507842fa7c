"""``nova-rl-trainer train``: learn a policy and write the weigher's artifact.

1. **Split** the training trace in time: episodes start in the first 80%,
   validation and calibration use the last 20% (never trained on).
2. **Warm start** (optional, default on): imitate the heuristic named by
   ``--warm-start`` (:mod:`imitation`).
3. **Reinforcement learning**: PPO (:mod:`ppo`) on the gymnasium environment
   for the chosen objective, for ``--minutes`` or ``--iterations``. Every
   ``--eval-every`` iterations the greedy policy plays fixed validation
   episodes; the best policy by validation cost is kept (PPO's updates are
   noisy and the last one is not always the best).
4. **Calibrate** the confidence threshold (:mod:`calibration`), or find
   that the policy must never act.
5. **Export** the artifact to ``OUT/policy`` with the feature ranges seen in
   training and the Nova weigher configuration trained with
   (``nova_weighers``), and write ``OUT/train.json`` and ``OUT/curves.png``.

**A family of clusters** (``--family``, :mod:`..simulation.family`):
``make_env`` may be a list of factories, one per drawn member (its cluster
and workload). Each member (:class:`members.Member`) has its own
environment, start grid and held-out part; every PPO iteration collects its
episodes from one member drawn by the trainer's RNG, validation and
calibration cover every member, and the exported feature ranges are those
seen over all of them.

**Constrained objectives** (``pareto``): validation measures, per member,
the objective's terms of the policy and of the *reference* (the cluster's
configured Nova weighers, i.e. what a gated policy's abstentions get) on
the same held-out episode; after each validation the Lagrange multipliers
take one projected dual-ascent step on the constraints' excess
(:func:`ppo.dual_ascent`: raised while the policy is worse than the
reference on a constraint, lowered to 0 while it is not), so the reward
``-(primary + sum lambda_i * constraint_i)`` prices each constraint only as
much as it takes to hold it. Validation is the natural place for the step:
it plays the same held-out episodes every time (paired with the
reference's, deterministic), so the excess it measures is not sampling
noise. The kept policy is the best *feasible* one (every constraint met on
average over the members) by primary cost; while none is feasible, the one
with the least excess (:mod:`constraints`: the scoring, the ranking, the
multipliers in every environment and the warm start's tuning).
``train.json`` logs the excess and multipliers of every validation
(``curves.png`` plots them).

Checkpoints (``OUT/checkpoint``, no pickle) are written every few
iterations; ``--resume`` continues from one (``run(resume=True)`` raises
:class:`NoCheckpoint` when there is none). Same seed and iteration count,
same weights.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import sys
import time
import uuid

import numpy as np

from nova_rl_weigher import artifact as nova_artifact
from nova_rl_weigher import features
from nova_rl_weigher import fileio
from nova_rl_weigher import shield as shield_mod

from nova_rl_trainer.learning import calibration
from nova_rl_trainer.learning import checkpoint
from nova_rl_trainer.learning import constraints
from nova_rl_trainer.learning import imitation
from nova_rl_trainer.learning.members import FallbackHeldOut
# held_out and Member are re-exported: callers know them as train.Member
# and train.held_out.
from nova_rl_trainer.learning.members import held_out
from nova_rl_trainer.learning.members import Member
from nova_rl_trainer.learning import policy_net
from nova_rl_trainer.learning import ppo
from nova_rl_trainer.learning import report
from nova_rl_trainer.learning import rollouts
from nova_rl_trainer.learning import window_calibration
from nova_rl_trainer.simulation import fanout
from nova_rl_trainer.simulation import objectives as objectives_mod
from nova_rl_trainer.simulation import policies as policies_mod

DEFAULT_WARM_START = {'packing': 'best-fit', 'balance': 'load-aware',
                      'headroom': 'nova-default', 'pareto': 'load-aware'}


def checkpoint_dir(out: str) -> str:
    """Where a run into ``out`` keeps its checkpoint (``--resume`` reads
    it): ``out/checkpoint``."""
    return os.path.join(out, 'checkpoint')


class NoCheckpoint(FileNotFoundError):
    """A run asked to resume from ``out`` that holds no checkpoint."""


def check_resume(out: str) -> None:
    """Raise :class:`NoCheckpoint` unless ``out`` holds a checkpoint to
    resume from.

    Starting afresh instead, warm start and all, would hide a mistyped
    ``out``, or a run that stopped before its first checkpoint, until the
    run's end. ``train --resume`` calls this before reading the trace and
    words its error from this one's.
    """
    path = checkpoint_dir(out)
    if not checkpoint.exists(path):
        raise NoCheckpoint(f'no checkpoint in {path} to resume from')


@dataclasses.dataclass
class TrainConfig:
    objective: str = 'packing'
    seed: int = 0
    members: int = 5
    hidden: int = 32
    minutes: float | None = 10.0
    iterations: int | None = None
    warm_start: str | None = 'auto'
    # A policy artifact to start from instead of a warm start (retrain).
    initial_policy: str | None = None
    # The heuristic that continues branches for vine advantages; 'auto':
    # the objective's default warm-start heuristic (for pareto, the
    # cluster's configured Nova weighers: its reference and fallback), so
    # RL learns where deviating from it pays off under the objective.
    continuation: str = 'auto'
    imitation_decisions: int = 20000
    imitation_steps: int = 200
    # Whose clusters the demonstrations start from: 'warm-up' (the warm-up
    # heuristic's, where RL's episodes start) or 'both' (half of them from
    # the clusters the Nova fallback built).
    imitation_clusters: str = 'warm-up'
    eval_every: int = 5
    eval_decisions: int = 10000     # 0: to the end of the trace
    calibration_samples: int = 200
    # 'branch' (single decisions, :mod:`calibration`), 'windows' (the
    # gated policy over whole held-out windows, :mod:`window_calibration`:
    # a constrained objective's benefit is collective, which one branched
    # decision cannot show) or 'auto': windows when constrained.
    calibration_method: str = 'auto'
    # The windows method's floor for the sampled terms, in hosts x usage
    # samples per window (objectives.floor).
    calibration_floor: float = objectives_mod.DEFAULT_FLOOR_HOST_SAMPLES
    calibration_horizon: int = 1000
    checkpoint_every: int = 10
    train_fraction: float = 0.8
    # Slack around the training ranges, as a share of each range: the
    # held-out part of a trace drifts a little past what training saw
    # (measured: memory use 2% past its training maximum) and one host
    # out of range makes the weigher abstain for the whole request.
    range_tolerance: float = 0.25
    # Each PPO iteration's vine states come from this many members (shards
    # of the batch, each with its own seed), collected here or by
    # ``workers`` local processes / a Ray cluster at ``ray_address``. The
    # batch depends on rollout_members, not on who collects it.
    rollout_members: int = 1
    workers: int = 1
    ray_address: str | None = None
    # The shield written into the policy (nova_rl_weigher.shield): the
    # exported policy prefers only hosts whose projected CPU peak stays
    # within this share of their cores; validation and calibration judge
    # it so. None: no shield.
    shield_max_cpu_peak: float | None = None
    ppo: ppo.PPOConfig = dataclasses.field(default_factory=ppo.PPOConfig)


class Trainer:
    """Trains on one environment factory ``make_env`` or on a list of them
    (the members of a family)."""

    def __init__(self, make_env, out: str, config: TrainConfig,
                 provenance: dict, progress: bool = True) -> None:
        import torch
        # The networks are small: with several intra-op threads, torch
        # spends more time synchronising than computing (60x slower
        # measured on 2 busy cores), so one thread.
        torch.set_num_threads(1)
        self.config = config
        self.out = out
        self.provenance = provenance
        self.progress = progress
        makers = list(make_env) if isinstance(make_env, (list, tuple)) \
            else [make_env]
        if not makers:
            raise ValueError('nothing to train on: no environment')
        self.stage_minutes: dict[str, dict[str, float]] = {}
        with self._stage('environments'):
            self.members = [Member(m, config.train_fraction)
                            for m in makers]
        first = self.members[0]
        # The first member's, for callers of one cluster and the export.
        self.env, self.val_env = first.env, first.val_env
        self.val_starts = first.val_starts
        self.objective = first.env.objective
        self.constrained = isinstance(self.objective, objectives_mod.Pareto)
        #: The policy a constrained objective is held to: the cluster's
        #: configured Nova weighers, which decide when the gate abstains.
        self.reference = first.env.config.nova_weighers
        self.reference_terms: list[dict[str, float]] = []
        with self._stage('warm_up_replay'):
            for m in self.members:
                m.prime(self.continuation)
        self.current = 0        # the member episodes are collected from
        # Names this run's environments in long-lived workers (Ray's).
        self.run_id = uuid.uuid4().hex[:12]
        self.rng = np.random.default_rng(config.seed)
        self.model = policy_net.EnsembleScorer(
            members=config.members, hidden=config.hidden, seed=config.seed)
        self.agent = ppo.PPO(self.model, config.ppo, seed=config.seed)
        self.feature_min = np.full(features.NUM_FEATURES, np.inf)
        self.feature_max = np.full(features.NUM_FEATURES, -np.inf)
        self.iteration = 0
        self.decisions = 0      # trunk decisions played in RL
        self.history: list[dict] = []
        self.best: dict | None = None
        self.warm_start_name: str | None = None
        self.baseline_costs: dict[str, float] = {}

    # -- helpers ------------------------------------------------------------

    def _log(self, msg: str) -> None:
        if self.progress:
            print(msg, file=sys.stderr, flush=True)

    def _seen(self, xs) -> None:
        flat = np.concatenate(xs)
        self.feature_min = np.minimum(self.feature_min, flat.min(axis=0))
        self.feature_max = np.maximum(self.feature_max, flat.max(axis=0))

    @property
    def continuation(self) -> str:
        c = self.config
        if c.continuation != 'auto':
            return c.continuation
        if self.constrained:
            return self.reference
        return DEFAULT_WARM_START.get(c.objective, 'nova-default')

    def _pick_member(self) -> None:
        """The member the next episodes come from (drawn by the trainer's
        RNG; with one member the RNG is not used, as before families)."""
        if len(self.members) > 1:
            self.current = int(self.rng.integers(len(self.members)))

    def _train_start(self) -> float:
        grid = self.members[self.current].start_grid
        return float(grid[self.rng.integers(len(grid))])

    def validation_cost(self, make_policy) -> float:
        """Objective accrued over the held-out validation episodes of
        ``self.val_env`` (one member's; :meth:`validate` runs them all).

        ``make_policy()`` returns a fresh simulator policy (see
        :mod:`policies`), bound to each episode's simulation.
        """
        return held_out(self.val_env, self.val_starts,
                        self.config.eval_decisions or None, make_policy)[0]

    def validate(self, make_policy) -> dict:
        """Play the held-out validation episodes of every member.

        ``validation_cost``: the objective summed over the members, or, for
        a constrained objective, its primary terms (the multipliers change
        during training, so the Lagrangian is no yardstick); then also
        ``excess`` (per constraint, the mean over members of the relative
        excess over the reference on the same episodes) and ``feasible``.
        """
        limit = self.config.eval_decisions or None
        runs = [held_out(m.val_env, m.val_starts, limit, make_policy)
                for m in self.members]
        if not self.constrained:
            return {'validation_cost': float(sum(c for c, _ in runs))}
        return constraints.score(self.objective, [t for _, t in runs],
                                 self.reference_terms)

    def _model_policy(self) -> policies_mod.ScoringPolicy:
        """The current model, greedy, as a simulator policy."""
        return policies_mod.ScoringPolicy(
            policy_net.numpy_policy(self.model).score, name='training',
            shield_limit=self.config.shield_max_cpu_peak)

    def shield_record(self) -> dict | None:
        """The manifest's ``shield``, or None without one."""
        limit = self.config.shield_max_cpu_peak
        if limit is None:
            return None
        return {shield_mod.MAX_PROJECTED_CPU_PEAK: float(limit)}

    # -- stages -------------------------------------------------------------

    def _tuned_load_aware(self) -> str:
        """The pareto warm start (:func:`constraints.tune_load_aware`),
        recorded in the history."""
        chosen, tried = constraints.tune_load_aware(self.validate)
        self.history.append({'stage': 'warm_start_tuning', 'tried': tried,
                             'chosen': chosen})
        self._log('warm start tuning: ' + ', '.join(
            f"{t['warm_start']} primary {t['validation_cost']:,.1f}"
            f"{'' if t['feasible'] else ' (infeasible)'}" for t in tried))
        return chosen

    def warm_start(self) -> None:
        c = self.config
        if c.initial_policy:
            # Retraining: the served policy's weights, normalisation and
            # feature ranges, not a heuristic's.
            # A policy of an older feature schema (v1) is widened to the
            # current one: the same scores, new columns learnt from here.
            loaded = nova_artifact.load_artifact(c.initial_policy)
            params, mean, std = policy_net.widen(
                loaded.params, loaded.mean, loaded.std, features.NUM_FEATURES)
            self.model.load_numpy_params(params)
            self.model.set_normalisation(mean, std)
            old = len(loaded.feature_min)
            self.feature_min[:old] = loaded.feature_min
            self.feature_max[:old] = loaded.feature_max
            self.history.append({'stage': 'initial_policy',
                                 'version': loaded.version})
            return
        name = c.warm_start
        if name == 'auto':
            name = DEFAULT_WARM_START.get(c.objective, 'best-fit')
            if self.constrained and name == 'load-aware':
                name = self._tuned_load_aware()
        # Normalisation comes from the heuristic's states, or from a short
        # random-start rollout without warm start. Every member contributes
        # an equal share of the decisions, so the normalisation and the
        # feature ranges cover the whole family.
        xs: list[np.ndarray] = []
        choices: list[np.ndarray] = []
        share = -(-c.imitation_decisions // len(self.members))
        if c.imitation_clusters not in ('warm-up', 'both'):
            raise ValueError(f'imitation_clusters {c.imitation_clusters!r}: '
                             "'warm-up' or 'both'")
        for k, m in enumerate(self.members):
            self.current = k
            episodes = [self._train_start() for _ in range(64)]
            envs = [m.env]
            if c.imitation_clusters == 'both' and \
                    m.env.warmup_policy != self.reference:
                # The weigher acts in clusters Nova's weighers built, which
                # run hotter than the warm-up heuristic's: the heuristic's
                # choices there too, and training ranges that cover them.
                envs.append(m.fallback_env(self.reference, m.start_grid))
            for j, e in enumerate(envs):
                part = share // len(envs) + (j < share % len(envs))
                m_xs, m_choices = imitation.demonstrations(
                    e, name or 'nova-default', part, episodes,
                    c.ppo.episode_decisions)
                xs += m_xs
                choices.append(m_choices)
        choices = np.concatenate(choices)
        self._seen(xs)
        flat = np.concatenate(xs)
        self.model.set_normalisation(flat.mean(axis=0), flat.std(axis=0))
        if name and name != 'none':
            self._log(f'warm start: imitating {name} on {len(xs)} '
                      'decisions')
            curve = imitation.fit(self.model, xs, choices,
                                  c.imitation_steps, c.seed)
            self.warm_start_name = name
            self.history.append({'stage': 'imitation',
                                 'clusters': c.imitation_clusters,
                                 'loss_first': curve[0],
                                 'loss_last': curve[-1]})

    def evaluate_now(self, stats: dict | None = None) -> dict:
        entry = {'iteration': self.iteration,
                 **self.validate(self._model_policy),
                 'decisions': self.decisions, **(stats or {})}
        cost = entry['validation_cost']
        for name, base in self.baseline_costs.items():
            entry[f'ratio_to_{name}'] = cost / base if base else None
        if self.constrained:
            entry['multipliers'] = self.objective.multipliers
        self.history.append(entry)
        if self.best is None or \
                constraints.rank(entry) < constraints.rank(self.best):
            kept = ('validation_cost', 'iteration', 'excess', 'feasible')
            self.best = {k: entry[k] for k in kept if k in entry}
            self.best['params'] = self.model.numpy_params()
        if self.constrained:
            constraints.set_multipliers(self.members, ppo.dual_ascent(
                self.objective.multipliers, entry['excess'],
                self.objective.prices, self.objective.dual_lr))
        return entry

    def rl(self, deadline: float | None) -> None:
        c = self.config
        sharded = c.rollout_members > 1 or c.workers > 1 or c.ray_address
        if sharded and c.ppo.advantage != 'vine':
            raise ValueError('rollouts are fanned out (workers, rollout '
                             'members) only for vine advantages')
        stats = None
        with contextlib.ExitStack() as stack:
            bar = None
            if self.progress:
                from tqdm import tqdm
                bar = stack.enter_context(tqdm(
                    total=c.iterations or None, desc='ppo', unit='it',
                    leave=False, initial=self.iteration))
            fan = stack.enter_context(fanout.Fanout(
                workers=c.workers, ray_address=c.ray_address)) \
                if sharded else None
            while True:
                if c.iterations is not None and self.iteration >= \
                        c.iterations:
                    break
                if deadline is not None and time.monotonic() >= deadline:
                    break
                stats = self._iterate(fan)
                self.iteration += 1
                if bar is not None:
                    bar.update(1)
                if self.iteration % c.eval_every == 0:
                    entry = self.evaluate_now(stats)
                    if bar is not None:
                        bar.set_postfix(val=f"{entry['validation_cost']:.1f}")
                if self.iteration % c.checkpoint_every == 0:
                    self.save_checkpoint()
        # A budget ending between two evaluations would leave the last
        # iterations unjudged: judge the policy as RL left it.
        if self.history[-1].get('iteration') != self.iteration:
            self.evaluate_now(stats)

    def _iterate(self, fan: fanout.Fanout | None) -> dict:
        """One PPO iteration: collect experience, update; its stats."""
        c = self.config
        if c.ppo.advantage == 'vine':
            if fan is not None:
                batch = self._collect_shards(fan)
            else:
                self._pick_member()
                batch = rollouts.collect_vine(
                    self.members[self.current].env,
                    policy_net.numpy_policy(self.model), c.ppo, self.rng,
                    self._train_start, self.continuation)
            xs, stats = batch.trunk_xs, self.agent.update_vine(batch,
                                                               self.rng)
        else:
            self._pick_member()
            ro = rollouts.collect(
                self.members[self.current].env,
                policy_net.numpy_policy(self.model), c.ppo.rollout_decisions,
                self.rng, self._train_start, c.ppo.episode_decisions,
                c.ppo.reward_scale)
            xs, stats = ro.xs, self.agent.update(ro, self.rng)
        self._seen(xs)
        self.decisions += len(xs)
        return stats

    def _recipe(self, k: int) -> rollouts.EnvRecipe:
        m = self.members[k]
        if m.recipe is None:
            m.recipe = rollouts.EnvRecipe.of(f'{self.run_id}-{k}', m.env,
                                             m.start_grid)
        return m.recipe

    def _collect_shards(self, fan: fanout.Fanout) -> rollouts.VineBatch:
        """One iteration's vine batch in ``rollout_members`` shards, each
        from a member drawn by the trainer's RNG with its own seed; in this
        process (on the members' own environments) or on the workers."""
        c = self.config
        n = c.rollout_members
        picks = [int(self.rng.integers(len(self.members)))
                 for _ in range(n)]
        seeds = [int(s) for s in self.rng.integers(2**62, size=n)]
        settings = dataclasses.replace(
            c.ppo, vine_states=-(-c.ppo.vine_states // n))
        pol = policy_net.numpy_policy(self.model)
        multipliers = self.objective.multipliers if self.constrained \
            else None
        shards = [rollouts.Shard(self._recipe(k), pol, multipliers, settings,
                                 self.continuation, seed)
                  for k, seed in zip(picks, seeds)]
        if fan.kind == 'inline':
            batches = [rollouts.run_shard(self.members[k].env, shard)
                       for k, shard in zip(picks, shards)]
        else:
            batches = fan.map(rollouts.collect_shard, shards)
        return rollouts.merge(batches)

    def calibrate(self, policy) -> dict:
        """Calibration samples from every member's held-out part (an equal
        share each), branches continued a day with the cluster's Nova
        fallback, fanned out over the run's workers; or, by the windows
        method (``calibration_method``), the gated policy against that
        fallback over a day from held-out starts of every member."""
        c = self.config
        fallback = calibration.fallback_of(self.members[0].val_env)
        if window_calibration.resolve_method(
                c.calibration_method, self.constrained) == \
                window_calibration.METHOD:
            from_fallback = [FallbackHeldOut(m, fallback)
                             for m in self.members]
            with fanout.Fanout(workers=c.workers,
                               ray_address=c.ray_address) as fan:
                calib = window_calibration.calibrate(
                    from_fallback, policy, self.objective,
                    fallback=fallback, fan=fan, key=f'{self.run_id}-cal-',
                    floor_host_samples=c.calibration_floor)
            if calib['act'] == 'never':
                self._log('calibration: at no confidence level is the gated '
                          "policy at least as good as Nova's weighers on "
                          'every checked term: it must never act (publish '
                          'refuses it)')
            return calib
        share = -(-c.calibration_samples // len(self.members))
        horizon_s = calibration.DEFAULT_HORIZON_S
        samples = []
        with fanout.Fanout(workers=c.workers,
                           ray_address=c.ray_address) as fan:
            for k, m in enumerate(self.members):
                recipe = None if fan.kind == 'inline' else \
                    rollouts.EnvRecipe.of(f'{self.run_id}-cal-{k}',
                                          m.val_env, m.calibration_starts)
                samples += calibration.collect(
                    m.val_env, policy, share, horizon_s,
                    m.calibration_starts, fallback, fan=fan, recipe=recipe,
                    key=f'{k}-')
        rows = calibration.table(samples)
        threshold = calibration.choose_threshold(rows)
        if threshold is calibration.NEVER:
            self._log('calibration: no confidence level at which the policy '
                      "is at least as good as Nova's weighers: it must never "
                      'act (publish refuses it)')
        return {**calibration.manifest_fields(threshold), 'table': rows,
                'samples': len(samples), 'horizon_s': horizon_s,
                'continuation': fallback,
                'method': 'branch at held-out decisions: policy choice vs '
                          "Nova's (the configured weighers), both "
                          f'continued {horizon_s / 3600:g} h with '
                          f'{fallback}; threshold: one-sided 95% bound over '
                          'the held-out starts'}

    # -- checkpoints --------------------------------------------------------

    @property
    def checkpoint_path(self) -> str:
        return checkpoint_dir(self.out)

    def save_checkpoint(self) -> None:
        checkpoint.save(self.checkpoint_path, {
            'agent': self.agent.state_dict(),
            'iteration': self.iteration,
            'decisions': self.decisions,
            'history': self.history,
            'best': self.best,
            'feature_min': self.feature_min,
            'feature_max': self.feature_max,
            'rng': self.rng.bit_generator.state,
            'warm_start': self.warm_start_name,
            'baseline_costs': self.baseline_costs,
            'reference_terms': self.reference_terms,
            'multipliers': (self.objective.multipliers if self.constrained
                            else None),
            'config': json.loads(json.dumps(dataclasses.asdict(self.config))),
        })

    def load_checkpoint(self) -> None:
        state = checkpoint.load(self.checkpoint_path)
        self.agent.load_state_dict(state['agent'])
        self.iteration = state['iteration']
        self.decisions = state['decisions']
        self.history = state['history']
        self.best = state['best']
        self.feature_min = state['feature_min']
        self.feature_max = state['feature_max']
        self.rng.bit_generator.state = state['rng']
        self.warm_start_name = state['warm_start']
        self.baseline_costs = state['baseline_costs']
        self.reference_terms = state.get('reference_terms') or []
        if self.constrained and state.get('multipliers'):
            constraints.set_multipliers(self.members, state['multipliers'])

    # -- the whole run ------------------------------------------------------

    def _baselines(self) -> None:
        """Validation of the reference policy (whose terms a constrained
        objective is held to) and of the baselines the curves compare to."""
        if self.constrained and not self.reference_terms:
            limit = self.config.eval_decisions or None
            self.reference_terms = [
                held_out(m.val_env, m.val_starts, limit,
                         lambda: policies_mod.make_policy(self.reference))[1]
                for m in self.members]
            self.baseline_costs[self.reference] = constraints.score(
                self.objective, self.reference_terms,
                self.reference_terms)['validation_cost']
        names = [] if self.constrained else ['nova-default']
        for name in names + ([self.warm_start_name]
                             if self.warm_start_name else []):
            self.baseline_costs[name] = self.validate(
                lambda: policies_mod.make_policy(name))['validation_cost']

    @contextlib.contextmanager
    def _stage(self, name: str):
        wall, cpu = time.monotonic(), time.process_time()
        try:
            yield
        finally:
            self.stage_minutes[name] = {
                'wall': round((time.monotonic() - wall) / 60.0, 3),
                'cpu': round((time.process_time() - cpu) / 60.0, 3)}

    def run(self, resume: bool = False) -> dict:
        """Train, export the policy and return the run's summary.

        ``resume=True`` continues from the checkpoint in ``out``, and
        raises :class:`NoCheckpoint` (nothing written) when there is none.
        """
        c = self.config
        if resume:
            check_resume(self.out)
        started = time.monotonic()
        deadline = started + 60.0 * c.minutes if c.minutes else None
        os.makedirs(self.out, exist_ok=True)
        if resume:
            self.load_checkpoint()
            self._log(f'resumed at iteration {self.iteration}')
        else:
            with self._stage('warm_start'):
                if self.constrained:
                    # Tuning the warm start measures against the reference.
                    self._baselines()
                self.warm_start()
                self._baselines()
                self.evaluate_now()      # the initial policy, iteration 0
            self.save_checkpoint()
        with self._stage('rl'):
            self.rl(deadline)
        self.save_checkpoint()
        initial = next(h for h in self.history if 'validation_cost' in h
                       and 'iteration' in h)
        self.model.load_numpy_params(self.best['params'])
        policy = policy_net.numpy_policy(self.model)
        # Ranges as seen in training, for the weigher's out-of-range check.
        policy = dataclasses.replace(policy, feature_min=self.feature_min,
                                     feature_max=self.feature_max,
                                     range_tolerance=c.range_tolerance)
        shield = self.shield_record()
        if shield is not None:
            policy = dataclasses.replace(
                policy, manifest={**policy.manifest, 'shield': shield})
        with self._stage('calibration'):
            calib = self.calibrate(policy)
        summary = {
            'objective': c.objective,
            'iterations': self.iteration,
            'decisions_trained': self.decisions,
            'advantage': c.ppo.advantage,
            'minutes': (time.monotonic() - started) / 60.0,
            'warm_start': self.warm_start_name,
            'best_iteration': self.best['iteration'],
            'clusters': len(self.members),
            # Per stage, wall and this process's CPU minutes: on a busy
            # machine the CPU time is what says what the run costs.
            'stage_minutes': self.stage_minutes,
            'validation_cost': {'initial': initial['validation_cost'],
                                'best': self.best['validation_cost'],
                                **self.baseline_costs},
        }
        if self.constrained:
            summary['constraints'] = {
                'reference': self.reference,
                'excess_at_best': self.best.get('excess'),
                'feasible_at_best': self.best.get('feasible'),
                'multipliers_final': self.objective.multipliers}
        # Say plainly where the exported weights come from: the best
        # validation cost may be the warm start's, when RL did not beat it
        # within the budget.
        method = (f'PPO ({c.ppo.advantage} advantages'
                  + (', Lagrangian' if self.constrained else '') + ') '
                  + (f'warm-started by imitation of {self.warm_start_name}'
                     if self.warm_start_name else 'from scratch')
                  + (f' on {len(self.members)} clusters'
                     if len(self.members) > 1 else '')
                  + f'; best validation at iteration '
                    f"{self.best['iteration']} of {self.iteration}")
        if self.best['iteration'] == 0 and self.warm_start_name:
            method += (': RL did not improve on the warm start, so these '
                       'are the imitation weights')
        summary['outcome'] = report.outcome(summary)
        manifest = policy_net.export(
            self.model, os.path.join(self.out, 'policy'),
            feature_min=self.feature_min, feature_max=self.feature_max,
            range_tolerance=c.range_tolerance,
            objective=c.objective, calibration=calib,
            nova_weighers=policies_mod.nova_weighers_record(
                self.env.config.nova_weighers),
            shield=shield,
            policy_version=f"{c.objective}-ppo-s{c.seed}-it"
                           f"{self.best['iteration']}",
            provenance={**self.provenance, 'method': method,
                        'training': summary})
        summary['policy_version'] = manifest['policy_version']
        summary['calibration'] = {k: v for k, v in calib.items()
                                  if k != 'table'}
        fileio.atomic_write(os.path.join(self.out, 'train.json'), json.dumps(
            {'summary': summary, 'history': self.history,
             'calibration': calib}, indent=2))
        report.plot_curves(self.history, self.baseline_costs,
                           os.path.join(self.out, 'curves.png'))
        return summary
