"""The evaluation report and the training curves are replaced whole: a
reader of the previous files, or a run that fails while writing them,
never meets part of a file (they were written in place)."""

from __future__ import annotations

import os

import numpy as np
import pytest

from nova_rl_trainer.learning import report as learning_report
from nova_rl_trainer.publishing import report
from nova_rl_trainer.simulation import metrics

REPORT_FILES = ('report.md', 'metrics.csv', 'active_hosts.png',
                'cpu_util.png', 'overload.png')


def run_result(policy: str, scale: float) -> metrics.RunResult:
    """A result shaped like the simulator's, without simulating."""
    time_s = np.arange(0.0, 7200.0, 600.0)
    active = np.linspace(1.0, 5.0, time_s.size) * scale
    return metrics.RunResult(
        metrics={'policy': policy, 'decisions': 10, 'placed': 9,
                 'rejected': 1, 'active_host_hours': 7.0 * scale,
                 'lb_host_hours': 5.0, 'trace': 't', 'hosts': 4, 'seed': 0,
                 'objective': 'packing',
                 'objective_weights': {'active_host_hours': 1.0}},
        series={'time_s': time_s, 'active_hosts': active,
                'lb_hosts': active / 2,
                'overloaded_hosts': np.floor(active / 3)},
        util_hist=np.arange(len(metrics.UTIL_BINS) - 1, dtype=np.float64)
        * scale)


def read_all(directory, names) -> dict[str, bytes]:
    return {n: (directory / n).read_bytes() for n in names}


def leftovers(directory) -> list[str]:
    """Temporary files (atomic_write's are ``.<name>.<random>.tmp``)."""
    return sorted(n for n in os.listdir(directory)
                  if n.startswith('.') or n.endswith('.tmp'))


def fail_png_writes(monkeypatch, after: int) -> None:
    """Make the PNG writer fail half-way from its ``after + 1``-th image
    on: it writes the start of a PNG where matplotlib told it to (a path it
    opens itself, or the file object it was given), then fails, as a full
    disk would."""
    import matplotlib.image
    real = matplotlib.image.imsave
    calls = []

    # The Agg canvas saves a figure's pixels through image.imsave, once
    # per savefig (layout's trial renderings stop before it).
    def imsave(target, *args, **kwargs):
        calls.append(target)
        if len(calls) <= after:
            return real(target, *args, **kwargs)
        if isinstance(target, (str, os.PathLike)):
            with open(target, 'wb') as f:
                f.write(b'\x89PNG\r\n\x1a\n')
        else:
            target.write(b'\x89PNG\r\n\x1a\n')
        raise OSError(28, 'No space left on device')

    monkeypatch.setattr(matplotlib.image, 'imsave', imsave)


def test_a_reader_keeps_the_whole_previous_report(tmp_path):
    out = tmp_path / 'report'
    report.write_report([run_result('first-fit', 1.0)], str(out))
    before = read_all(out, REPORT_FILES)
    handles = {n: open(out / n, 'rb') for n in REPORT_FILES}
    try:
        report.write_report([run_result('best-fit', 2.0)], str(out))
        for name, f in handles.items():
            assert f.read() == before[name], name
    finally:
        for f in handles.values():
            f.close()
    after = read_all(out, REPORT_FILES)
    assert b'best-fit' in after['report.md']
    assert b'first-fit' not in after['report.md']
    for name in REPORT_FILES:
        assert after[name] != before[name], name
        if name.endswith('.png'):
            assert after[name].startswith(b'\x89PNG\r\n\x1a\n'), name
    assert leftovers(out) == []


def test_a_plot_failing_half_way_leaves_the_previous_report(tmp_path,
                                                            monkeypatch):
    out = tmp_path / 'report'
    report.write_report([run_result('first-fit', 1.0)], str(out))
    before = read_all(out, REPORT_FILES)
    fail_png_writes(monkeypatch, after=2)   # overload.png, the third plot
    with pytest.raises(OSError, match='No space left'):
        report.write_report([run_result('best-fit', 2.0)], str(out))
    assert (out / 'overload.png').read_bytes() == before['overload.png']
    assert (out / 'report.md').read_bytes() == before['report.md']
    assert leftovers(out) == []


def test_report_md_not_in_place_leaves_the_previous_one(tmp_path,
                                                        monkeypatch):
    """A failure before the new report.md is complete and in place (here
    the rename) leaves the previous one, and no temporary file."""
    out = tmp_path / 'report'
    report.write_report([run_result('first-fit', 1.0)], str(out))
    before = (out / 'report.md').read_bytes()
    real = os.replace

    def replace(src, dst, *args, **kwargs):
        if os.path.basename(dst) == 'report.md':
            raise OSError(5, 'Input/output error')
        return real(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, 'replace', replace)
    with pytest.raises(OSError, match='Input/output error'):
        report.write_report([run_result('best-fit', 2.0)], str(out))
    assert (out / 'report.md').read_bytes() == before
    assert leftovers(out) == []


def history(offset: float) -> list[dict]:
    return [{'iteration': i, 'decisions': 100 * i,
             'validation_cost': 10.0 - i + offset, 'entropy': 1.0 / (i + 1),
             'approx_kl': 0.01} for i in range(4)]


def test_curves_png_replaced_whole(tmp_path, monkeypatch):
    path = tmp_path / 'curves.png'
    baselines = {'nova-default': 9.0}
    learning_report.plot_curves(history(0.0), baselines, str(path))
    before = path.read_bytes()
    assert before.startswith(b'\x89PNG\r\n\x1a\n')
    with open(path, 'rb') as old:
        learning_report.plot_curves(history(5.0), baselines, str(path))
        assert old.read() == before
    second = path.read_bytes()
    assert second != before and second.startswith(b'\x89PNG')
    fail_png_writes(monkeypatch, after=0)
    with pytest.raises(OSError, match='No space left'):
        learning_report.plot_curves(history(9.0), baselines, str(path))
    assert path.read_bytes() == second
    assert leftovers(tmp_path) == []
