"""The ``nova-rl-trainer`` command line.

::

    nova-rl-trainer simulate --trace PATH [--trace-format azure-v1|csv]
        --hosts N --host-vcpus V --host-ram-mb M [--host-disk-gb D]
        [--cpu-allocation-ratio R] [--ram-allocation-ratio R]
        --policy NAME_OR_PATH [--objective NAME] [--seed S] --json OUT
    nova-rl-trainer evaluate (same trace and cluster options)
        --policies A,B,... --json OUT --report DIR
    nova-rl-trainer scenarios            # the named presets
    nova-rl-trainer size-cluster ...     # hosts for a trace to peak at 90%
    nova-rl-trainer train ...            # learn a policy (torch)
    nova-rl-trainer calibrate --policy DIR (--scenario NAME | --trace PATH
        --cluster FILE) --out DIR    # its gate calibrated on your cloud
    nova-rl-trainer publish ... / rollback --target DIR
    nova-rl-trainer ingest --source gnocchi|csv [auth] --start T --stop T
        --out trace.csv       # an operator's own workload, from telemetry
    nova-rl-trainer snapshot --source NAME [auth] --window-s S --out PATH
        (--cluster FILE | --from-placement)   # the weigher's usage snapshot
    nova-rl-trainer cluster --from-placement [auth] --out cluster.json
    nova-rl-trainer outcomes --decisions DIR --source NAME [auth]
        --cluster cluster.json --out outcomes.jsonl   # logged decisions'
                                                      # delayed rewards
    nova-rl-trainer retrain --policy DIR --trace ingested.csv
        --cluster cluster.json [--outcomes outcomes.jsonl]
        --objective NAME --out DIR   # the served policy, further trained
    nova-rl-trainer decisions --log DIR --report OUT   # what the decision
                                                       # logs say

``--scenario NAME`` may replace ``--trace`` and the cluster options (which
then override the preset's). Each command lives in a module of this package
with a ``register(subparsers)``; their shared options are in
:mod:`options`. Run any command with ``--help`` for the rest.
"""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

import threadpoolctl

from nova_rl_trainer.cli import calibrate
from nova_rl_trainer.cli import cluster
from nova_rl_trainer.cli import decisions
from nova_rl_trainer.cli import evaluate
from nova_rl_trainer.cli import ingest
from nova_rl_trainer.cli import options
from nova_rl_trainer.cli import outcomes
from nova_rl_trainer.cli import publish
from nova_rl_trainer.cli import retrain
from nova_rl_trainer.cli import scenarios
from nova_rl_trainer.cli import simulate
from nova_rl_trainer.cli import size_cluster
from nova_rl_trainer.cli import snapshot
from nova_rl_trainer.cli import train
from nova_rl_trainer.simulation import objectives as objectives_mod
from nova_rl_trainer.simulation import policies as policies_mod
from nova_rl_trainer.simulation import traces

COMMANDS = (simulate, evaluate, scenarios, size_cluster, train, calibrate,
            publish, ingest, snapshot, cluster, outcomes, retrain, decisions)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog='nova-rl-trainer',
        description='Simulate, evaluate, train and publish host-weighing '
                    'policies for nova-rl-weigher.')
    sub = parser.add_subparsers(dest='command', required=True)
    for command in COMMANDS:
        command.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        # The policies' matrices are small: a BLAS thread pool costs more
        # in synchronisation than it saves (about 5x slower measured on 2
        # cores). Parallelism comes from processes (evaluate --jobs).
        with threadpoolctl.threadpool_limits(limits=1, user_api='blas'):
            return args.func(args)
    except (options.CliError, traces.TraceError, policies_mod.PolicyError,
            objectives_mod.ObjectiveError, ValueError) as e:
        print(f'nova-rl-trainer: error: {e}', file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
