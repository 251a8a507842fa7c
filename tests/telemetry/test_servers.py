"""The test servers themselves: a server that does not come up fails with
the reason and the tail of its log, within its deadline."""

from __future__ import annotations

import time

import pytest

from tests.telemetry import servers


def test_a_server_that_does_not_come_up_says_why(telemetry, tmp_path):
    # Gnocchi cannot load its configuration: uWSGI gives up (need-app).
    conf = tmp_path / 'missing.conf'
    api = servers.GnocchiApi(telemetry.venv, conf, tmp_path / 'api.log')
    t = time.monotonic()
    with pytest.raises(servers.ServerError) as e:
        try:
            api.start()
        finally:
            api.stop()
    assert time.monotonic() - t < servers.START_DEADLINE_S
    text = str(e.value)
    assert text.startswith(f'Gnocchi API on {api.endpoint} exited with '
                           'status ')
    assert f'last lines of {tmp_path / "api.log"}:' in text
    assert f'Failed to find some config files: {conf}' in text


def test_servers_run_and_answer(telemetry):
    """PostgreSQL, the API, metricd (joined) and Ceilometer's types."""
    status = telemetry.status()
    assert status['metricd']['processors']
    code, rt = servers.http_json(telemetry.endpoint
                                 + '/v1/resource_type/instance')
    assert code == 200
    assert {'host', 'flavor_id', 'flavor_name', 'launched_at',
            'deleted_at'} <= set(rt['attributes'])
    assert telemetry.timings['total_s'] < servers.START_DEADLINE_S


def test_the_first_error_is_named_when_the_tail_lost_it(tmp_path):
    """As seen on a loaded machine: worker 1 cannot load the app, uWSGI
    stops worker 2 mid-import and its traceback fills the tail."""
    log = tmp_path / 'api.log'
    log.write_text(
        'spawned uWSGI worker 1\nTraceback (most recent call last):\n'
        '  File "cfg.py", line 2847, in __call__\n'
        'oslo_config.cfg.ConfigFilesNotFoundError: Failed to find some '
        'config files: /x/missing.conf\n'
        'OOPS ! failed loading app in worker 1\n'
        + 'Traceback (most recent call last):\n'
        + '  File "stevedore.py", line 1, in select\n' * 30
        + 'KeyboardInterrupt\ngoodbye to uWSGI.\n')
    assert 'missing.conf' not in servers.log_tail(log)
    e = servers._fail('Gnocchi API on http://127.0.0.1:1', log,
                      'exited with status 22')
    assert str(e).startswith(
        'Gnocchi API on http://127.0.0.1:1 exited with status 22; first '
        f'error in {log}: oslo_config.cfg.ConfigFilesNotFoundError: Failed '
        'to find some config files: /x/missing.conf; last lines of ')
    assert servers.first_error(tmp_path / 'none.log') is None
