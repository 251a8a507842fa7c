"""Prometheus's HTTP API for the ``prometheus`` metrics source
(:mod:`nova_rl_trainer.telemetry.prometheus_source`): the session
(basic auth or a bearer token, TLS), GET requests retried after a
connection error or HTTP 502/503/504 with backoff, every failure as one
line, the answers' ``data``, and queries Prometheus finds too large split
in time.
"""

from __future__ import annotations

import math
import re
import time
import urllib.parse
import warnings
from typing import Any, Callable

import numpy as np

from nova_rl_trainer.telemetry.sources import SourceError

DEFAULT_RETRIES = 3
DEFAULT_TIMEOUT_S = 120.0
RETRIABLE_STATUS_CODES = (502, 503, 504)
BACKOFF_S = 0.5


class _Malformed(Exception):
    """The answer parsed but is not what Prometheus sends."""


class _TooBig(Exception):
    """Prometheus refused a query as too large (samples, time, points):
    a smaller time range may pass."""


def _stamp(t: float) -> str:
    return f'{t:.3f}'


def _one_line(text: Any, limit: int = 200) -> str:
    text = re.sub(r'<[^>]+>', ' ', str(text))
    text = ' '.join(text.split())
    if len(text) > limit:
        text = text[:limit - 3] + '...'
    return text


def _reason(e: BaseException) -> str:
    """Why a connection failed, in a few words."""
    full = str(e).lower()
    if 'refused' in full:
        return 'connection refused'
    if 'timed out' in full or 'timeout' in full:
        return 'timed out'
    if ('name or service not known' in full or 'name resolution' in full
            or 'nodename nor servname' in full):
        return 'unknown host name'
    if ('remote end closed' in full or 'remotedisconnected' in full
            or 'connection aborted' in full or 'connection reset' in full):
        return 'the server closed the connection'
    return _one_line(e, 160)


def _tls_reason(e: BaseException) -> str:
    full = str(e)
    m = re.search(r'certificate verify failed: ([^(\')"]+)', full)
    if m:
        return 'certificate verify failed: ' + m.group(1).strip()
    m = re.search(r"\[SSL[^\]]*\] ([^(\')\"]+)", full)
    if m:
        return m.group(1).strip()
    return _one_line(e, 160)


class PrometheusAPI:
    """The requests of the ``prometheus`` source, a base of its
    :class:`~nova_rl_trainer.telemetry.prometheus_source.PrometheusSource`
    (whose ``step_s`` and ``match`` they use)."""

    def _connect(self, url: str, user: str | None, password: str | None,
                 token: str | None, verify: bool | str,
                 cert: str | tuple[str, str] | None, timeout_s: float,
                 retries: int) -> None:
        """The session to Prometheus at ``url``: credentials, TLS, timeout
        and retries."""
        import requests
        if password is not None and not user:
            raise SourceError('a basic auth password without a user: give '
                              '--basic-auth-user (or PROMETHEUS_USER)')
        if user and token:
            raise SourceError('give basic auth or a bearer token, not both')
        if not timeout_s > 0:
            raise SourceError(f'--timeout {timeout_s:g}: must be positive')
        self.url = url.rstrip('/')
        self.where = self.url
        self.timeout_s = float(timeout_s)
        self.retries = max(0, int(retries))
        self.session = requests.Session()
        self.session.headers.update({'Accept': 'application/json',
                                     'User-Agent': 'nova-rl-trainer'})
        if user:
            self.session.auth = (user, password or '')
            self.describe = f'basic auth, user {user}'
        elif token:
            self.session.headers['Authorization'] = f'Bearer {token}'
            self.describe = 'bearer token'
        else:
            self.describe = 'no credentials'
        # Given with every request: requests lets REQUESTS_CA_BUNDLE
        # override a session's verify.
        self.verify = verify
        self.cert = cert
        self._warnings: list[str] = []
        if verify is False and self.url.startswith('https:'):
            self._warnings.append(f"TLS: Prometheus at {self.where}'s "
                                  'certificate not verified (--insecure)')

    # -- HTTP ---------------------------------------------------------
    def _get(self, what: str, path: str, params: list[tuple[str, str]]
             ) -> Any:
        """``data`` of a successful answer to ``GET path``; every failure
        a one-line SourceError (``_TooBig`` for a query too large)."""
        import requests
        url = f'{self.url}/{path}'
        attempts = 0
        while True:
            attempts += 1
            try:
                with warnings.catch_warnings():
                    if self.verify is False:
                        # Asked for with --insecure (and said once).
                        warnings.simplefilter('ignore')
                    resp = self.session.get(url, params=params,
                                            timeout=self.timeout_s,
                                            verify=self.verify,
                                            cert=self.cert)
            except requests.exceptions.SSLError as e:
                hint = ('give --cacert FILE with its CA, or --insecure'
                        if self.verify is not False else
                        'check --cert/--key')
                raise SourceError(
                    f'TLS failed with Prometheus at {self.where}: '
                    f'{_tls_reason(e)}; {hint}') from None
            except requests.exceptions.ConnectionError as e:
                if attempts <= self.retries:
                    self._backoff(attempts)
                    continue
                n = f'{attempts} attempt{"s" if attempts > 1 else ""}'
                raise SourceError(
                    f'cannot reach Prometheus at {self.where} ({what}): '
                    f'{_reason(e)}, {n}') from None
            except (requests.exceptions.ChunkedEncodingError,
                    requests.exceptions.ContentDecodingError) as e:
                hint = ''
                if self.url.startswith('http:'):
                    hint = '; if it serves TLS, give an https:// --url'
                raise SourceError(
                    f'Prometheus at {self.where} broke off its answer to '
                    f'{what}: {_reason(e)}{hint}') from None
            except requests.exceptions.Timeout:
                raise SourceError(
                    f'Prometheus at {self.where} did not answer {what} in '
                    f'{self.timeout_s:g} s (--timeout)') from None
            except requests.exceptions.RequestException as e:
                raise SourceError(f'{what} from Prometheus at {self.where} '
                                  f'failed: {_one_line(e)}') from None
            if (resp.status_code in RETRIABLE_STATUS_CODES
                    and attempts <= self.retries
                    and _error_type(resp) != 'timeout'):
                resp.close()
                self._backoff(attempts)
                continue
            return self._answer(what, resp, attempts)

    @staticmethod
    def _backoff(attempt: int) -> None:
        time.sleep(BACKOFF_S * 2 ** (attempt - 1))

    def _answer(self, what: str, resp: Any, attempts: int) -> Any:
        code = resp.status_code
        try:
            body = resp.json()
        except ValueError:
            body = None
        if code == 200:
            if not isinstance(body, dict):
                kind = ('not JSON' if body is None
                        else f'a JSON {type(body).__name__}, not an object')
                raise SourceError(
                    f'Prometheus at {self.where} sent a malformed answer to '
                    f'{what}: {kind} ({_one_line(resp.text, 80)!r})')
            if body.get('status') != 'success':
                raise SourceError(self._malformed(
                    what, f'status {str(body.get("status"))[:40]!r}, not '
                          "'success'"))
            if 'data' not in body:
                raise SourceError(self._malformed(what, 'no data'))
            for w in body.get('warnings') or ():
                w = f'Prometheus: {_one_line(w, 160)}'
                if w not in self._warnings and len(self._warnings) < 10:
                    self._warnings.append(w)
            return body['data']
        error_type = body.get('errorType') if isinstance(body, dict) else None
        error = body.get('error') if isinstance(body, dict) else None
        detail = _one_line(error if error else resp.text or resp.reason, 200)
        path = urllib.parse.urlsplit(resp.url).path
        if code == 401:
            raise SourceError(
                f'Prometheus at {self.where} refused the credentials '
                f'({self.describe}): HTTP 401 on {what}; give '
                '--basic-auth-user with PROMETHEUS_PASSWORD or '
                '--basic-auth-password-file, or --bearer-token-file')
        if code == 403:
            raise SourceError(
                f'Prometheus at {self.where} forbids {what} to '
                f'{self.describe}: HTTP 403 ({detail})')
        if code == 404:
            raise SourceError(
                f'no Prometheus API at {self.where}: HTTP 404 on GET {path}; '
                "check --url (the server's address, with its "
                '--web.route-prefix if it has one)')
        if error_type == 'timeout' or (
                code in (400, 422) and error and (
                    'too many samples' in error
                    or 'maximum resolution' in error)):
            raise _TooBig(f'HTTP {code} {error_type}: {detail}')
        if code >= 500:
            retried = ''
            if code in RETRIABLE_STATUS_CODES and attempts > 1:
                n = attempts - 1
                retried = f' after {n} retr{"ies" if n > 1 else "y"}'
            raise SourceError(
                f'Prometheus at {self.where} failed on {what}: HTTP '
                f'{code}{retried}: {detail}')
        hint = ''
        if error_type == 'bad_data' and self.match:
            hint = f' (check --match {self.match!r})'
        kind = f' {error_type}' if error_type else ''
        raise SourceError(
            f'Prometheus at {self.where} rejected {what}: HTTP {code}{kind}: '
            f'{detail}{hint}')

    def _query(self, what: str, expr: str, at: float
               ) -> list[tuple[dict, float]]:
        """An instant query: ``[(labels, value), ...]``."""
        data = self._get(what, 'api/v1/query',
                         [('query', expr), ('time', _stamp(at))])
        out = []
        for metric, value in self._result(what, data, 'vector', 'value'):
            if (not isinstance(value, list) or len(value) != 2):
                raise SourceError(self._malformed(
                    what, 'a value is not [time, "value"]'))
            out.append((metric, self._number(what, value[1])))
        return out

    def _query_range(self, what: str, expr: str, start: float, end: float,
                     step: float) -> list[tuple[dict, np.ndarray,
                                                np.ndarray]]:
        data = self._get(what, 'api/v1/query_range',
                         [('query', expr), ('start', _stamp(start)),
                          ('end', _stamp(end)), ('step', f'{step:g}')])
        out = []
        for metric, values in self._result(what, data, 'matrix', 'values'):
            if not isinstance(values, list):
                raise SourceError(self._malformed(what, 'values is not a '
                                                        'list'))
            try:        # the usual answer, at numpy's speed
                arr = np.array(values, dtype=str)
                if arr.shape == (len(values), 2):
                    out.append((metric, arr[:, 0].astype(np.float64),
                                arr[:, 1].astype(np.float64)))
                    continue
            except (TypeError, ValueError):
                pass
            times = np.empty(len(values))
            vals = np.empty(len(values))
            for k, point in enumerate(values):
                if not isinstance(point, list) or len(point) != 2 or \
                        not isinstance(point[0], (int, float)):
                    raise SourceError(self._malformed(
                        what, 'a point is not [time, "value"]'))
                times[k] = point[0]
                vals[k] = self._number(what, point[1])
            out.append((metric, times, vals))
        return out

    def _result(self, what: str, data: Any, kind: str, key: str
                ) -> list[tuple[dict, Any]]:
        if not isinstance(data, dict) or data.get('resultType') != kind \
                or not isinstance(data.get('result'), list):
            got = (data.get('resultType') if isinstance(data, dict)
                   else type(data).__name__)
            raise SourceError(self._malformed(
                what, f'expected a {kind} in data.result, got {got!r}'))
        out = []
        for item in data['result']:
            if not isinstance(item, dict) or not isinstance(
                    item.get('metric'), dict) or key not in item:
                raise SourceError(self._malformed(
                    what, f'a result without metric or {key}'))
            out.append((item['metric'], item[key]))
        return out

    def _number(self, what: str, text: Any) -> float:
        try:
            return float(text)
        except (TypeError, ValueError):
            raise SourceError(self._malformed(
                what, f'value {str(text)[:20]!r} is not a number')) from None

    def _malformed(self, what: str, why: str) -> str:
        return (f'Prometheus at {self.where} sent a malformed answer to '
                f'{what}: {why}')
    def _split(self, what: str, lo: float, hi: float,
               run: Callable[[float, float], Any]) -> list[Any]:
        """``run(lo, hi)`` over ``(lo, hi]``, halved in time until
        Prometheus accepts each part; the parts in time order."""
        try:
            return [run(lo, hi)]
        except _TooBig as e:
            steps = math.floor((hi - lo) / self.step_s)
            if steps < 2:
                raise SourceError(
                    f'Prometheus at {self.where} refuses {what} even for one '
                    f'step ({e}): raise its --query.max-samples or '
                    '--query.timeout, or give a smaller --step') from None
        mid = lo + (steps // 2) * self.step_s
        return (self._split(what, lo, mid, run)
                + self._split(what, mid, hi, run))


def _error_type(resp: Any) -> str | None:
    try:
        body = resp.json()
    except ValueError:
        return None
    return body.get('errorType') if isinstance(body, dict) else None
