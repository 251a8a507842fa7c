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

Checkpoints (``OUT/checkpoint``, no pickle) are written every few
iterations; ``--resume`` continues from one. Same seed and iteration count,
same weights.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import time

import numpy as np

from nova_rl_weigher import features
from nova_rl_weigher import fileio

from nova_rl_trainer.learning import calibration
from nova_rl_trainer.learning import checkpoint
from nova_rl_trainer.learning import env as env_mod
from nova_rl_trainer.learning import imitation
from nova_rl_trainer.simulation import policies as policies_mod
from nova_rl_trainer.learning import policy_net
from nova_rl_trainer.learning import ppo
from nova_rl_trainer.learning import report
from nova_rl_trainer.learning import rollouts

DEFAULT_WARM_START = {'packing': 'best-fit', 'balance': 'load-aware',
                      'headroom': 'nova-default'}


@dataclasses.dataclass
class TrainConfig:
    objective: str = 'packing'
    seed: int = 0
    members: int = 5
    hidden: int = 32
    minutes: float | None = 10.0
    iterations: int | None = None
    warm_start: str | None = 'auto'
    # The heuristic that continues branches for vine advantages; 'auto':
    # the objective's default warm-start heuristic, so RL learns where
    # deviating from it pays off under the objective.
    continuation: str = 'auto'
    imitation_decisions: int = 20000
    imitation_steps: int = 200
    eval_every: int = 5
    eval_decisions: int = 10000     # 0: to the end of the trace
    calibration_samples: int = 200
    calibration_horizon: int = 1000
    checkpoint_every: int = 10
    train_fraction: float = 0.8
    # Slack around the training ranges, as a share of each range: the
    # held-out part of a trace drifts a little past what training saw
    # (measured: memory use 2% past its training maximum) and one host
    # out of range makes the weigher abstain for the whole request.
    range_tolerance: float = 0.25
    ppo: ppo.PPOConfig = dataclasses.field(default_factory=ppo.PPOConfig)


class Trainer:
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
        self.env: env_mod.PlacementEnv = make_env()
        self.val_env: env_mod.PlacementEnv = make_env()
        # Episodes start from the cluster the continuation heuristic has
        # built, the regime the policy acts in (a packing policy in a
        # cluster spread by Nova's default would learn about the wrong
        # states).
        for e in (self.env, self.val_env):
            e.warmup_policy = self.continuation
        horizon = self.env.horizon_s
        self.train_range = (0.0, config.train_fraction * horizon)
        self.held_out = (config.train_fraction * horizon, horizon)
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
        # Episodes start at one of a fixed grid of instants: the
        # environment caches the cluster state reached at each, instead of
        # replaying the trace up to a new instant for every episode.
        self.start_grid = np.linspace(*self.train_range, num=24,
                                      endpoint=False)
        # Validation plays the whole held-out part, so placements are
        # judged over (most of) the lives of the VMs they place.
        self.val_starts = [self.held_out[0]]
        # Calibration branches decisions along episodes from these.
        self.calibration_starts = np.linspace(*self.held_out, num=10,
                                              endpoint=False)
        self.env.prime_starts([*self.start_grid, *self.val_starts,
                               *self.calibration_starts])
        self.val_env.share_starts(self.env)

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
        return DEFAULT_WARM_START.get(c.objective, 'nova-default')

    def _train_start(self) -> float:
        return float(self.start_grid[self.rng.integers(len(self.start_grid))])

    def validation_cost(self, make_policy) -> float:
        """Objective accrued over the fixed held-out validation episodes.

        ``make_policy()`` returns a fresh simulator policy (see
        :mod:`policies`), bound to each episode's simulation.
        """
        total = 0.0
        limit = self.config.eval_decisions or None
        for start in self.val_starts:
            # The environment provides the warm start; the episode itself
            # runs on the simulation, so the policy builds each feature
            # matrix once (the environment's observation is not needed).
            sim = self.val_env.warm_start(start)
            cost0 = sim.cost()
            sim.play(make_policy(), max_decisions=limit)
            # An episode's cost runs to its next decision, as a truncated
            # episode of the environment.
            sim.pending()
            total += sim.cost() - cost0
        return total

    def _model_policy(self) -> policies_mod.ScoringPolicy:
        """The current model, greedy, as a simulator policy."""
        return policies_mod.ScoringPolicy(
            policy_net.numpy_policy(self.model).score, name='training')

    # -- stages -------------------------------------------------------------

    def warm_start(self) -> None:
        c = self.config
        name = c.warm_start
        if name == 'auto':
            name = DEFAULT_WARM_START.get(c.objective, 'best-fit')
        # Normalisation comes from the heuristic's states, or from a short
        # random-start rollout without warm start.
        episodes = [self._train_start() for _ in range(64)]
        xs, choices = imitation.demonstrations(
            self.env, name or 'nova-default', c.imitation_decisions,
            episodes, c.ppo.episode_decisions)
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
                                 'loss_first': curve[0],
                                 'loss_last': curve[-1]})

    def evaluate_now(self, stats: dict | None = None) -> dict:
        cost = self.validation_cost(self._model_policy)
        entry = {'iteration': self.iteration, 'validation_cost': cost,
                 'decisions': self.decisions, **(stats or {})}
        for name, base in self.baseline_costs.items():
            entry[f'ratio_to_{name}'] = cost / base if base else None
        self.history.append(entry)
        if self.best is None or cost < self.best['validation_cost']:
            self.best = {'validation_cost': cost,
                         'iteration': self.iteration,
                         'params': self.model.numpy_params()}
        return entry

    def rl(self, deadline: float | None) -> None:
        c = self.config
        bar = None
        if self.progress:
            from tqdm import tqdm
            total = c.iterations if c.iterations else None
            bar = tqdm(total=total, desc='ppo', unit='it', leave=False,
                       initial=self.iteration)
        stats = None
        try:
            while True:
                if c.iterations is not None and self.iteration >= \
                        c.iterations:
                    break
                if deadline is not None and time.monotonic() >= deadline:
                    break
                if c.ppo.advantage == 'vine':
                    batch = rollouts.collect_vine(
                        self.env, self.model, c.ppo, self.rng,
                        self._train_start, self.continuation)
                    self._seen(batch.trunk_xs)
                    self.decisions += len(batch.trunk_xs)
                    stats = self.agent.update_vine(batch, self.rng)
                else:
                    ro = rollouts.collect(
                        self.env, self.model, c.ppo.rollout_decisions,
                        self.rng, self._train_start,
                        c.ppo.episode_decisions, c.ppo.reward_scale)
                    self._seen(ro.xs)
                    self.decisions += len(ro.xs)
                    stats = self.agent.update(ro, self.rng)
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
        finally:
            if bar is not None:
                bar.close()

    def calibrate(self, policy) -> dict:
        c = self.config
        samples = calibration.collect(
            self.val_env, policy, c.calibration_samples,
            c.calibration_horizon, self.calibration_starts,
            self.continuation)
        rows = calibration.table(samples)
        threshold = calibration.choose_threshold(rows)
        if threshold is calibration.NEVER:
            self._log('calibration: no confidence level at which the policy '
                      "is at least as good as Nova's weighers: it must never "
                      'act (publish refuses it)')
        return {**calibration.manifest_fields(threshold), 'table': rows,
                'samples': len(samples), 'horizon_decisions':
                c.calibration_horizon, 'continuation': self.continuation,
                'method': 'branch at held-out decisions: policy choice vs '
                          "Nova's (the configured weighers), both "
                          f'continued with {self.continuation}'}

    # -- checkpoints --------------------------------------------------------

    @property
    def checkpoint_path(self) -> str:
        return os.path.join(self.out, 'checkpoint')

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

    # -- the whole run ------------------------------------------------------

    def run(self, resume: bool = False) -> dict:
        c = self.config
        started = time.monotonic()
        deadline = started + 60.0 * c.minutes if c.minutes else None
        os.makedirs(self.out, exist_ok=True)
        if resume and checkpoint.exists(self.checkpoint_path):
            self.load_checkpoint()
            self._log(f'resumed at iteration {self.iteration}')
        else:
            self.warm_start()
            for name in ['nova-default'] + ([self.warm_start_name]
                                            if self.warm_start_name else []):
                self.baseline_costs[name] = self.validation_cost(
                    lambda: policies_mod.make_policy(name))
            self.evaluate_now()      # the initial policy, iteration 0
            self.save_checkpoint()
        self.rl(deadline)
        self.save_checkpoint()
        initial = next(h for h in self.history if 'validation_cost' in h)
        self.model.load_numpy_params(self.best['params'])
        policy = policy_net.numpy_policy(self.model)
        # Ranges as seen in training, for the weigher's out-of-range check.
        policy = dataclasses.replace(policy, feature_min=self.feature_min,
                                     feature_max=self.feature_max,
                                     range_tolerance=c.range_tolerance)
        calib = self.calibrate(policy)
        summary = {
            'objective': c.objective,
            'iterations': self.iteration,
            'decisions_trained': self.decisions,
            'advantage': c.ppo.advantage,
            'minutes': (time.monotonic() - started) / 60.0,
            'warm_start': self.warm_start_name,
            'best_iteration': self.best['iteration'],
            'validation_cost': {'initial': initial['validation_cost'],
                                'best': self.best['validation_cost'],
                                **self.baseline_costs},
        }
        # Say plainly where the exported weights come from: the best
        # validation cost may be the warm start's, when RL did not beat it
        # within the budget.
        method = (f'PPO ({c.ppo.advantage} advantages) '
                  + (f'warm-started by imitation of {self.warm_start_name}'
                     if self.warm_start_name else 'from scratch')
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
