"""``nova-rl-trainer retrain``: bad input is one line, before any training
(the whole command runs in tests/telemetry/test_end_to_end.py)."""

from __future__ import annotations

import contextlib
import io

from nova_rl_trainer import cli
from nova_rl_trainer.simulation import policies


def run(argv: list[str]) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stderr(err), \
            contextlib.redirect_stdout(io.StringIO()):
        rc = cli.main(argv)
    return rc, err.getvalue()


def args(tmp_path, **changes) -> list[str]:
    trace = tmp_path / 'trace.csv'
    trace.write_text('vm_id,project_id,arrival_s,departure_s,vcpus,'
                     'memory_mb,disk_gb,cpu_util_mean,cpu_util_p95\n'
                     'a,p,0,,2,4096,20,0.5,0.7\n')
    given = {'--policy': policies.bundled_path(), '--trace': str(trace),
             '--trace-format': 'csv', '--hosts': '2', '--host-vcpus': '16',
             '--host-ram-mb': '65536', '--out': str(tmp_path / 'out'),
             **changes}
    return ['retrain', *[x for kv in given.items() for x in kv]]


def test_a_policy_that_is_not_a_directory(tmp_path):
    rc, err = run(args(tmp_path, **{'--policy': str(tmp_path / 'none')}))
    assert rc == 2
    assert err.strip() == (f'nova-rl-trainer: error: --policy '
                           f'{tmp_path / "none"}: not a directory')
    assert not (tmp_path / 'out').exists()


def test_outcomes_that_are_not_outcomes(tmp_path):
    bad = tmp_path / 'outcomes.jsonl'
    bad.write_text('{"terms": {}, "candidates": []}\nnot json\n')
    rc, err = run(args(tmp_path, **{'--outcomes': str(bad)}))
    assert rc == 2
    assert err.startswith(f'nova-rl-trainer: error: {bad}:2: not JSON')
    assert len(err.strip().splitlines()) == 1
    rc, err = run(args(tmp_path, **{'--outcomes': str(tmp_path / 'no')}))
    assert rc == 2 and 'no such file' in err


def test_zero_iterations(tmp_path):
    rc, err = run(args(tmp_path, **{'--iterations': '0'}))
    assert rc == 2 and '--iterations must be at least 1' in err
