"""The data the utilisation model is fitted to: the summaries of Azure's
per-VM CPU use shipped in ``data/azure-v1-cpu/`` (see its README), read,
written, and derived from the source's 5-minute samples.

A summary is three files: :data:`VMS_FILE` (each VM's mean, p95 and
noise), :data:`PROFILES_FILE` (each VM's mean use per hour of the day) and
:data:`FLEET_FILE` (the VMs' summed use every 5 minutes), as
:func:`~nova_rl_trainer.simulation.utilisation_stats.summarise` computes
them.
"""

from __future__ import annotations

from collections.abc import Sequence
import csv
import gzip
import io
import os

import numpy as np

from nova_rl_weigher.fileio import atomic_write

from nova_rl_trainer.simulation.utilisation_stats import CpuSummary
from nova_rl_trainer.simulation.utilisation_stats import DAYS
from nova_rl_trainer.simulation.utilisation_stats import HOURS
from nova_rl_trainer.simulation.utilisation_stats import SAMPLE_S
from nova_rl_trainer.simulation.utilisation_stats import SAMPLES_PER_DAY
from nova_rl_trainer.simulation.utilisation_stats import summarise


def data_dir() -> str:
    """The directory holding the shipped summaries of the Azure CPU data."""
    package = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    return os.path.join(package, 'data', 'azure-v1-cpu')


VMS_FILE = 'vms.csv'
PROFILES_FILE = 'profiles.csv'
FLEET_FILE = 'fleet.csv.gz'


def _csv_text(header: Sequence[str], rows) -> str:
    out = io.StringIO()
    w = csv.writer(out, lineterminator='\n')
    w.writerow(header)
    for row in rows:
        w.writerow([f'{v:.5g}' if isinstance(v, float) else v for v in row])
    return out.getvalue()


def write_summary(s: CpuSummary, names: Sequence[str],
                  directory: str) -> None:
    """Write a summary as the three shipped files (atomically)."""
    atomic_write(os.path.join(directory, VMS_FILE), _csv_text(
        ('vm', 'mean', 'p95', 'noise'),
        ((name, float(m), float(p), float(z))
         for name, m, p, z in zip(names, s.mean, s.p95, s.noise))))
    atomic_write(os.path.join(directory, PROFILES_FILE), _csv_text(
        ('hour', *names),
        ((h, *(float(v) for v in s.profile[h])) for h in range(HOURS))))
    fleet = _csv_text(('t_s', 'cpu_sum'),
                      ((int(k * SAMPLE_S), float(v))
                       for k, v in enumerate(s.fleet)))
    atomic_write(os.path.join(directory, FLEET_FILE),
                 gzip.compress(fleet.encode('utf-8'), mtime=0))


def _read_csv(path: str) -> tuple[list[str], list[list[str]]]:
    opener = gzip.open if path.endswith('.gz') else open
    with opener(path, 'rt', encoding='utf-8', newline='') as f:
        rows = list(csv.reader(f))
    if not rows:
        raise ValueError(f'{path}: empty')
    return rows[0], rows[1:]


def _floats(path: str, rows: list[list[str]], columns: slice) -> np.ndarray:
    try:
        values = [[float(v) for v in row[columns]] for row in rows]
    except ValueError as e:
        raise ValueError(f'{path}: {e}') from None
    # A truncated row would otherwise surface as numpy's "inhomogeneous
    # shape", naming neither the file nor the line.
    for line, row in enumerate(values[1:], start=3):
        if len(row) != len(values[0]):
            raise ValueError(f'{path}: line {line} has {len(row)} values '
                             f'where line 2 has {len(values[0])}')
    return np.array(values)


def load_summary(directory: str | None = None) -> CpuSummary:
    """Read the shipped summary (default: ``data/azure-v1-cpu/``)."""
    directory = directory or data_dir()
    path = os.path.join(directory, VMS_FILE)
    header, rows = _read_csv(path)
    vms = _floats(path, rows, slice(1, 4))
    path = os.path.join(directory, PROFILES_FILE)
    header, rows = _read_csv(path)
    profile = _floats(path, rows, slice(1, None))
    if profile.shape != (HOURS, len(vms)):
        raise ValueError(f'{path}: expected {HOURS} hours x {len(vms)} VMs, '
                         f'got {profile.shape}')
    path = os.path.join(directory, FLEET_FILE)
    _, rows = _read_csv(path)
    fleet = _floats(path, rows, slice(1, 2))[:, 0]
    if len(fleet) == 0 or len(fleet) % SAMPLES_PER_DAY:
        raise ValueError(f'{path}: {len(fleet)} samples is not a whole '
                         f'number of days')
    return CpuSummary(mean=vms[:, 0], p95=vms[:, 1], noise=vms[:, 2],
                      profile=profile, fleet=fleet)


def derive(source_dir: str, out_dir: str, days: int = DAYS) -> None:
    """Summarise the source data (``cpu_avg.csv.gz``: ``t_s`` then one
    column of percent per VM, every 300 s) into ``out_dir`` (created if
    missing): its first ``days`` whole days."""
    path = os.path.join(source_dir, 'cpu_avg.csv.gz')
    header, rows = _read_csv(path)
    samples = _floats(path, rows[:days * SAMPLES_PER_DAY], slice(1, None))
    if len(samples) < days * SAMPLES_PER_DAY:
        raise ValueError(f'{path}: fewer than {days} days of samples')
    if samples.shape[1] != len(header) - 1:
        raise ValueError(f'{path}: {samples.shape[1]} values a line where '
                         f'the header names {len(header) - 1} VMs')
    os.makedirs(out_dir, exist_ok=True)
    write_summary(summarise(samples / 100.0), header[1:], out_dir)
