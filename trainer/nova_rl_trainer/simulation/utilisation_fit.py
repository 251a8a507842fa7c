"""Fit the utilisation model (``utilisation.py``) to real per-VM CPU use:
the command line.

The data is ``data/azure-v1-cpu/`` (see its README; read and written by
:mod:`~nova_rl_trainer.simulation.utilisation_data`): 27 days of 5-minute
average CPU use of 100 Azure VMs, shipped as per-VM summaries that
:func:`~nova_rl_trainer.simulation.utilisation_stats.summarise` computes
from 5-minute samples. The model's VMs are simulated for the same 27 days
and summarised by the same function, so data and model are compared
statistic for statistic
(:func:`~nova_rl_trainer.simulation.utilisation_stats.statistics`), and
:func:`~nova_rl_trainer.simulation.utilisation_search.fit` searches the
model's parameters that bring them together.

``python -m nova_rl_trainer.simulation.utilisation_fit``: ``derive SOURCE
OUT`` writes the shipped summary, ``compare`` prints the data's figures
beside the default model's, ``fit`` fits the model and prints its
parameters and figures.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
import sys

from nova_rl_trainer.simulation.utilisation import UtilisationParams
from nova_rl_trainer.simulation.utilisation_data import derive
from nova_rl_trainer.simulation.utilisation_data import load_summary
from nova_rl_trainer.simulation.utilisation_data import write_summary
from nova_rl_trainer.simulation.utilisation_search import fit
from nova_rl_trainer.simulation.utilisation_stats import daily_max_min
from nova_rl_trainer.simulation.utilisation_stats import days_of
from nova_rl_trainer.simulation.utilisation_stats import fleet_use
from nova_rl_trainer.simulation.utilisation_stats import model_statistics
from nova_rl_trainer.simulation.utilisation_stats import simulate
from nova_rl_trainer.simulation.utilisation_stats import statistics
from nova_rl_trainer.simulation.utilisation_stats import Stats
from nova_rl_trainer.simulation.utilisation_stats import summarise

# The fit's steps stay importable from here, the module that held them
# all (the fit's tests call them by this name).
__all__ = ['main', 'side_by_side', 'derive', 'load_summary', 'write_summary',
           'summarise', 'statistics', 'simulate', 'model_statistics',
           'fleet_use', 'daily_max_min', 'fit']


def side_by_side(data: Stats, model: Stats) -> str:
    """A two-column table of the figures."""
    d, m = data.table(), model.table()
    lines = [f'{"statistic":<22} {"data":>8} {"model":>8}']
    lines += [f'{k:<22} {d[k]:>8.3f} {m[k]:>8.3f}' for k in d]
    return '\n'.join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """``derive SOURCE OUT``: write the shipped summary; ``compare``: the
    data's figures beside the default model's; ``fit``: fit and print."""
    parser = argparse.ArgumentParser(
        prog='python -m nova_rl_trainer.simulation.utilisation_fit')
    sub = parser.add_subparsers(dest='command', required=True)
    d = sub.add_parser('derive', help='summarise cpu_avg.csv.gz')
    d.add_argument('source', help='directory holding cpu_avg.csv.gz')
    d.add_argument('out', help='directory to write the summary to')
    for name in ('compare', 'fit'):
        c = sub.add_parser(name, help=f'{name} the model against the data')
        c.add_argument('--data', default=None,
                       help='summary directory (default: the shipped one)')
        c.add_argument('--seeds', type=int, default=8,
                       help='model samples averaged per figure')
    args = parser.parse_args(argv)
    try:
        if args.command == 'derive':
            derive(args.source, args.out)
            return 0
        data = load_summary(args.data)
    except (OSError, ValueError) as e:
        parser.exit(2, f'{parser.prog}: error: {e}\n')
    params = UtilisationParams()
    if args.command == 'fit':
        params = fit(data, seeds=args.seeds)
        print(params)
    model = model_statistics(params, n=len(data.mean), seeds=args.seeds,
                             days=days_of(data))
    print(side_by_side(statistics(data), model))
    return 0


if __name__ == '__main__':
    sys.exit(main())
