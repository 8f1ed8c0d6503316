"""Reads signals and alerts from a real Prometheus, at any evaluation time.

Queries go through `prometheus-api-client` (`custom_query`, `custom_query_range`)
on a `requests` session that carries what a production Prometheus needs: a
per-request timeout, retries with exponential backoff on 429/5xx and connection
errors (urllib3's `Retry`), a bearer token read from a file and read again when the
file changes, basic auth, a CA bundle or an explicit insecure switch. The client
is synchronous, so concurrency comes from a thread pool: `prefetch` sends every
distinct (query, window) of a tick at once, each exactly once however many
rollouts need it, and the per-rollout reads that follow are answered from that
tick's cache. httpx is not needed here: the pool gives the concurrency, and the
session gives the control.

Every failure becomes a summary with a precise error, which the core judges as
`unknown`: nothing a Prometheus does escapes a tick as an exception.
"""

from __future__ import annotations

import json
import math
import re
import threading
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from itertools import pairwise
from pathlib import Path
from typing import Any

import requests
from prometheus_api_client import PrometheusConnect
from prometheus_api_client.exceptions import PrometheusApiClientException
from pydantic import BaseModel, ConfigDict, Field, model_validator
from requests.adapters import HTTPAdapter
from urllib3.exceptions import ReadTimeoutError
from urllib3.util.retry import Retry

from controller.ports import WindowRequest
from phases.durations import Duration, format_duration
from phases.needs import AlertReading
from phases.verdicts import AlertHistory, WindowSummary

RETRY_STATUSES = (429, 500, 502, 503, 504)


class PrometheusSettings(BaseModel):
    """How to reach one Prometheus: address, timeout, retries and credentials."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str = Field(min_length=1, description="base URL, e.g. http://prometheus:9090")
    timeout: Duration = timedelta(seconds=10)
    retries: int = Field(default=2, ge=0, le=10)
    backoff_seconds: float = Field(default=0.5, ge=0)
    bearer_token_file: Path | None = None
    basic_auth_user: str | None = None
    basic_auth_password_file: Path | None = None
    ca_file: Path | None = None
    insecure_skip_verify: bool = False
    max_concurrency: int = Field(default=16, ge=1, le=256)

    @model_validator(mode="after")
    def _one_way_to_authenticate(self) -> PrometheusSettings:
        if self.bearer_token_file and self.basic_auth_user:
            raise ValueError("use either a bearer token file or basic auth, not both")
        if bool(self.basic_auth_user) != bool(self.basic_auth_password_file):
            raise ValueError("basic auth needs both a user and a password file")
        if self.ca_file and self.insecure_skip_verify:
            raise ValueError("a CA bundle and insecure_skip_verify contradict each other")
        if not re.match(r"^https?://", self.url):
            raise ValueError(f"{self.url!r} is not an http(s) URL")
        return self


class TokenFileAuth(requests.auth.AuthBase):
    """A bearer token read from a file, read again whenever the file changes (rotation)."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._lock = threading.Lock()
        self._stamp: tuple[float, int] | None = None
        self._token = ""

    def token(self) -> str:
        stat = self._path.stat()
        stamp = (stat.st_mtime, stat.st_size)
        with self._lock:
            if stamp != self._stamp:
                self._token = self._path.read_text(encoding="utf-8").strip()
                self._stamp = stamp
            return self._token

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers["Authorization"] = f"Bearer {self.token()}"
        return request


class _PasswordFileAuth(requests.auth.HTTPBasicAuth):
    """Basic auth whose password is read from a file at each request."""

    def __init__(self, user: str, password_file: Path) -> None:
        super().__init__(user, "")
        self._password_file = password_file

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        self.password = self._password_file.read_text(encoding="utf-8").strip()
        return super().__call__(request)


class PrometheusSource:
    """The MetricsSource port over a real Prometheus."""

    def __init__(self, settings: PrometheusSettings, resolution: timedelta) -> None:
        self.settings = settings
        self.resolution = resolution
        session = requests.Session()
        session.verify = (
            str(settings.ca_file) if settings.ca_file else not settings.insecure_skip_verify
        )
        retry = Retry(
            total=settings.retries,
            connect=settings.retries,
            read=0,
            status=settings.retries,
            backoff_factor=settings.backoff_seconds,
            status_forcelist=RETRY_STATUSES,
            allowed_methods=None,
            raise_on_status=False,
        )
        session.mount(settings.url, HTTPAdapter(max_retries=retry))
        auth: requests.auth.AuthBase | None = None
        if settings.bearer_token_file is not None:
            auth = TokenFileAuth(settings.bearer_token_file)
        elif settings.basic_auth_user and settings.basic_auth_password_file:
            auth = _PasswordFileAuth(settings.basic_auth_user, settings.basic_auth_password_file)
        self._client = PrometheusConnect(
            url=settings.url.rstrip("/"),
            session=session,
            retry=retry,
            auth=auth,
            timeout=settings.timeout.total_seconds(),
        )
        self._pool = ThreadPoolExecutor(
            max_workers=settings.max_concurrency, thread_name_prefix="prometheus"
        )
        self._lock = threading.Lock()
        self._tick: datetime | None = None
        self._cache: dict[tuple[str, timedelta], WindowSummary] = {}
        self._modes: dict[str, tuple[float, ...] | None] = {}
        self._alerts: dict[tuple[str, ...], AlertReading] = {}
        self._histories: dict[tuple[tuple[str, ...], str | None, timedelta], AlertHistory] = {}
        self._histories_at: datetime | None = None
        self.queries_sent = 0

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._client.close()

    # reading ------------------------------------------------------------------

    def prefetch(
        self, requests_: Iterable[WindowRequest], at: datetime, *, instants: Iterable[str] = ()
    ) -> None:
        """Read every distinct window (and observed-mode query) of this tick concurrently.

        Later reads for the same `at` are answered from this cache.
        """
        unique = list(dict.fromkeys((r.query, r.window) for r in requests_))
        modes = list(dict.fromkeys(instants))
        summaries = list(self._pool.map(lambda key: self._read_window(key[0], key[1], at), unique))
        answers = list(self._pool.map(lambda query: self._read_modes(query, at), modes))
        with self._lock:
            self._tick = at
            self._cache = dict(zip(unique, summaries, strict=True))
            self._modes = dict(zip(modes, answers, strict=True))
            self._alerts = {}

    def summarize(self, signal: str, query: str, window: timedelta, at: datetime) -> WindowSummary:
        with self._lock:
            cached = self._cache.get((query, window)) if self._tick == at else None
        return cached if cached is not None else self._read_window(query, window, at)

    def _read_window(self, query: str, window: timedelta, at: datetime) -> WindowSummary:
        try:
            series = self._range(query, at - window, at)
        except _QueryFailed as failure:
            return WindowSummary.failed(query, window, str(failure))
        if len(series) > 1:
            return WindowSummary(query=query, window=window, series=len(series))
        if not series:
            return WindowSummary(query=query, window=window, series=0, largest_gap=window)
        return summarize_samples(query, window, at, series[0], self.resolution)

    def firing_alerts(self, names: Sequence[str], at: datetime) -> AlertReading:
        if not names:
            return AlertReading(frozenset())
        key = tuple(names)
        with self._lock:
            if self._tick == at and key in self._alerts:
                return self._alerts[key]
        pattern = "|".join(re.escape(name) for name in names)
        query = f'ALERTS{{alertstate="firing",alertname=~"{pattern}"}}'
        try:
            result = self._instant(query, at)
            reading = AlertReading(
                frozenset(item["metric"].get("alertname", "") for item in result)
            )
        except _QueryFailed as failure:
            reading = AlertReading(None, f"alerts could not be read: {failure}")
        with self._lock:
            if self._tick == at:
                # Many rollouts of one plan ask for the same alerts in one tick: ask once.
                self._alerts[key] = reading
        return reading

    def alert_history(
        self, alerts: Sequence[str], coverage_query: str | None, window: timedelta, at: datetime
    ) -> AlertHistory:
        """A range query of ALERTS (pending and firing) for the named alerts, plus coverage.

        The coverage query is read like any signal window (from this tick's cache when
        prefetched); its gaps are where Prometheus kept no alert history.
        """
        key = (tuple(alerts), coverage_query, window)
        with self._lock:
            cached = self._histories.get(key) if self._histories_at == at else None
        if cached is not None:
            return cached
        pattern = "|".join(re.escape(name) for name in alerts)
        start = at - window
        try:
            series = self._range(f'ALERTS{{alertname=~"{pattern}"}}', start, at)
        except _QueryFailed as failure:
            history = AlertHistory.failed(at, window, str(failure))
        else:
            coverage = (
                self.summarize("", coverage_query, window, at)
                if coverage_query is not None
                else None
            )
            history = alert_history_of(series, coverage, start, at, self.resolution)
        with self._lock:
            # Many rollouts of one plan read the same history in one tick: read it once.
            if self._histories_at != at:
                self._histories_at, self._histories = at, {}
            self._histories[key] = history
        return history

    def average(self, signal: str, query: str, start: datetime, end: datetime) -> float | None:
        try:
            series = self._range(query, start, end)
        except _QueryFailed:
            return None
        if len(series) != 1:
            return None
        values = [v for v in _values(series[0]) if math.isfinite(v)]
        return sum(values) / len(values) if values else None

    def modes(self, query: str, at: datetime) -> tuple[float, ...] | None:
        with self._lock:
            if self._tick == at and query in self._modes:
                return self._modes[query]
        return self._read_modes(query, at)

    def _read_modes(self, query: str, at: datetime) -> tuple[float, ...] | None:
        try:
            result = self._instant(query, at)
        except _QueryFailed:
            return None
        return tuple(float(item["value"][1]) for item in result)

    def check_query(self, query: str, at: datetime) -> str | None:
        """None when Prometheus accepts the expression; otherwise its complaint."""
        try:
            self._instant(query, at)
        except _QueryFailed as failure:
            return str(failure)
        return None

    # transport ----------------------------------------------------------------

    def _count(self) -> None:
        with self._lock:
            self.queries_sent += 1

    def _instant(self, query: str, at: datetime) -> list[dict[str, Any]]:
        self._count()
        return _guarded(
            lambda: self._client.custom_query(query, params={"time": f"{at.timestamp():.3f}"})
        )

    def _range(self, query: str, start: datetime, end: datetime) -> list[dict[str, Any]]:
        self._count()
        step = f"{max(self.resolution.total_seconds(), 1):g}s"
        return _guarded(lambda: self._client.custom_query_range(query, start, end, step))


class _QueryFailed(Exception):
    """A query that gave no usable answer, with the reason in words."""


def _guarded(call: Any) -> list[dict[str, Any]]:
    try:
        result = call()
    except requests.exceptions.ConnectTimeout:
        raise _QueryFailed("Prometheus did not accept the connection in time") from None
    except requests.exceptions.ReadTimeout:
        raise _QueryFailed("Prometheus did not answer within the query timeout") from None
    except requests.exceptions.ConnectionError as error:
        # With retries mounted, urllib3 reports a read timeout as a connection error.
        if _timed_out(error):
            raise _QueryFailed("Prometheus did not answer within the query timeout") from None
        raise _QueryFailed(f"Prometheus unreachable: {_root_cause(error)}") from None
    except requests.exceptions.RequestException as error:
        raise _QueryFailed(f"request to Prometheus failed: {_root_cause(error)}") from None
    except PrometheusApiClientException as error:
        raise _QueryFailed(_describe_http_error(str(error))) from None
    except ValueError as error:
        raise _QueryFailed(f"Prometheus sent an answer that is not JSON: {error}") from None
    if not isinstance(result, list):
        raise _QueryFailed(f"unexpected answer from Prometheus: {str(result)[:200]}")
    return result


def _timed_out(error: BaseException) -> bool:
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, TimeoutError | ReadTimeoutError) or "timed out" in str(seen).lower():
            return True
        seen = (
            seen.__cause__
            or seen.__context__
            or (seen.args[0] if seen.args and isinstance(seen.args[0], BaseException) else None)
        )
    return False


def _root_cause(error: BaseException) -> str:
    while error.__cause__ is not None or (error.args and isinstance(error.args[0], BaseException)):
        error = error.__cause__ or error.args[0]
    return str(error) or type(error).__name__


_STATUS = re.compile(r"HTTP Status Code (\d+) \((b?)(['\"])(.*)\3\)$", re.DOTALL)


def _describe_http_error(text: str) -> str:
    """Turn the client's "HTTP Status Code 400 (b'{...}')" into Prometheus's own words."""
    match = _STATUS.match(text)
    if not match:
        return text
    code, body = match.group(1), match.group(4)
    try:
        payload = json.loads(body.encode().decode("unicode_escape"))
    except (ValueError, UnicodeDecodeError):
        return f"HTTP {code} from Prometheus: {body[:200]}"
    kind, message = payload.get("errorType", "error"), payload.get("error", "")
    if kind == "bad_data":
        return f"Prometheus rejected the query (bad_data): {message}"
    return f"HTTP {code} from Prometheus ({kind}): {message}"


def _values(series: dict[str, Any]) -> list[float]:
    return [float(value) for _ts, value in series.get("values", [])]


def summarize_samples(
    query: str, window: timedelta, at: datetime, series: dict[str, Any], resolution: timedelta
) -> WindowSummary:
    """Summarise one range-query series: extremes, non-finite samples, the largest gap."""
    points = [(float(ts), float(value)) for ts, value in series.get("values", [])]
    if not points:
        return WindowSummary(query=query, window=window, series=0, largest_gap=window)
    step = max(resolution.total_seconds(), 1.0)
    start, end = (at - window).timestamp(), at.timestamp()
    gaps = [points[0][0] - start, end - points[-1][0]]
    gaps += [later - earlier - step for (earlier, _), (later, _) in pairwise(points)]
    largest = max(0.0, *gaps)
    return WindowSummary.of_values(
        query, window, [value for _ts, value in points], timedelta(seconds=round(largest, 3))
    )


def alert_history_of(
    series: list[dict[str, Any]],
    coverage: WindowSummary | None,
    start: datetime,
    at: datetime,
    resolution: timedelta,
) -> AlertHistory:
    """Fold ALERTS range-query series (one per alert, state and label set) into an AlertHistory."""
    step = max(resolution.total_seconds(), 1.0)
    # The client sends whole seconds; the evaluation steps count from the rounded start.
    first, end = round(start.timestamp()), round(at.timestamp())
    last = first + math.floor((end - first) / step) * step
    active: dict[str, set[float]] = {}
    fired: set[str] = set()
    firing_now: set[str] = set()
    for item in series:
        metric = item.get("metric", {})
        name = str(metric.get("alertname", ""))
        times = {round(float(ts), 3) for ts, _value in item.get("values", [])}
        active.setdefault(name, set()).update(times)
        if metric.get("alertstate") == "firing" and times:
            fired.add(name)
            if round(last, 3) in times:
                firing_now.add(name)
    since: dict[str, datetime] = {}
    for name, times in active.items():
        t = last
        if round(t, 3) not in times:
            continue
        while round(t - step, 3) in times:
            t -= step
        since[name] = datetime.fromtimestamp(t, at.tzinfo)
    return AlertHistory(
        at=at,
        window=at - start,
        coverage=coverage,
        fired=frozenset(fired),
        firing_now=frozenset(firing_now),
        active_since=since,
    )


def describe(settings: PrometheusSettings) -> str:
    """A one-line description for logs (never the credentials)."""
    auth = (
        "bearer token file"
        if settings.bearer_token_file
        else ("basic auth" if settings.basic_auth_user else "no auth")
    )
    return f"{settings.url} (timeout {format_duration(settings.timeout)}, {settings.retries} retries, {auth})"
