"""Which reader for which trace file: the one entry point to load a trace.

Kept apart from :mod:`traces` (the in-memory form) and the two readers,
:mod:`csv_trace` and :mod:`azure_v1`, which both build a :class:`Trace`, so
neither reader imports the other.
"""

from __future__ import annotations

import os
from typing import Sequence

from nova_rl_trainer.simulation import azure_v1
from nova_rl_trainer.simulation.csv_trace import read_csv
from nova_rl_trainer.simulation.traces import check_bounds
from nova_rl_trainer.simulation.traces import Trace
from nova_rl_trainer.simulation.traces import TraceError

FORMATS = ('azure-v1', 'csv')


def detect_format(path: str) -> str:
    """``csv`` for ``*.csv[.gz]``, ``azure-v1`` for the Azure arrival files."""
    base = os.path.basename(path)
    if base.endswith(('.csv', '.csv.gz')):
        return 'csv'
    if base.endswith(('.txt', '.txt.gz')) and base.startswith('v1.'):
        return 'azure-v1'
    raise TraceError(path, 'cannot tell the trace format from the file name; '
                     'give --trace-format ' + '|'.join(FORMATS))


def load_trace(path: str, trace_format: str | None = None, *, seed: int = 0,
               window: Sequence[float] | None = None,
               sample: float = 1.0, sample_seed: int | None = None) -> Trace:
    """Read a trace in ``trace_format`` (detected when None).

    ``seed`` places the Azure trace's requests inside their 300 s bins and
    draws its tenants (the CSV needs no randomness). ``window`` ``(start,
    end)`` and ``sample`` (a fraction of batches, drawn with
    ``sample_seed``, by default ``seed``) cut the trace down. Whatever the
    reader, the trace is checked against the bounds of :mod:`traces`
    (:func:`traces.check_bounds`) before it is returned.
    """
    fmt = trace_format or detect_format(path)
    if fmt == 'csv':
        trace = read_csv(path)
    elif fmt == 'azure-v1':
        trace = azure_v1.read_azure_v1(path, seed=seed)
    else:
        raise TraceError(path, f'unknown trace format {fmt!r}; expected one '
                         'of ' + ', '.join(FORMATS))
    if window is not None:
        trace = trace.window(float(window[0]), float(window[1]))
    if sample != 1.0:
        trace = trace.sample(sample, seed if sample_seed is None
                             else sample_seed)
    if len(trace) == 0:
        raise TraceError(path, 'no VMs left after windowing and sampling')
    check_bounds(trace, path)
    return trace
