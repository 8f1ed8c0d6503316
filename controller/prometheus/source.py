"""Reads signals and alerts from a real Prometheus, at any evaluation time.

Queries are GETs of the HTTP API (`/api/v1/query`, `/api/v1/query_range`) through
`controller.prometheus.transport`, which bounds each exchange (one deadline with
retries and `Retry-After` included, a size cap compressed and expanded, no
redirects), and every answer goes through `controller.prometheus.answers`, the
strict reader. Credentials: a bearer token read from a file and read again when
the file changes, basic auth with a password file, a CA bundle or an explicit
insecure switch. Concurrency comes from a thread pool: `prefetch` sends every
distinct (query, window) of a tick at once, each exactly once however many
rollouts need it, and the per-rollout reads that follow are answered from that
tick's cache. Across ticks, `controller.prometheus.window_cache` keeps each window's
last points, so that a tick one resolution step after the last asks Prometheus only
for the newest part of a long window (the rest is the same evaluation times of the
same data); the summary is the one the whole window would give. A window is kept once
for each grid it is read on, so that ticks alternating between grids (an operator's
30s passes over a 1m resolution) each continue their own.

Every failure becomes a summary with a precise error, which the core judges as
`unknown`: nothing a Prometheus does escapes a tick as an exception.
"""

from __future__ import annotations

import math
import operator
import re
import threading
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from itertools import islice
from pathlib import Path
from typing import Any, TypeVar

import httpx
from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

from controller.ports import WindowRequest
from controller.prometheus.answers import (
    RangeAsked,
    Sample,
    Series,
    excerpt,
    read_instant,
    read_range,
)
from controller.prometheus.transport import (
    RETRY_STATUSES,
    BearerToken,
    ExchangeLimits,
    Exchanger,
    PasswordFileAuth,
    QueryFailed,
    TokenFileAuth,
    tls_verification,
)
from controller.prometheus.window_cache import (
    Reread,
    WindowCache,
    WindowReuse,
    grid_phase,
    reusable,
)
from phases.durations import Duration, format_duration
from phases.needs import AlertReading
from phases.verdicts import AlertHistory, WindowSummary

__all__ = [
    "RETRY_STATUSES",
    "PrometheusSettings",
    "PrometheusSource",
    "TokenFileAuth",
    "describe",
    "summarize_samples",
]

ResultT = TypeVar("ResultT")
DEFAULT_REUSE = WindowReuse()


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
    bearer_token: SecretStr | None = None
    """A token held in memory (from a rollout's Secret), never a file a rollout chose."""
    basic_auth_password: SecretStr | None = None
    max_concurrency: int = Field(default=16, ge=1, le=256)
    max_answer_bytes: int = Field(
        default=1024 * 1024,
        ge=1024,
        le=64 * 1024 * 1024,
        description="cap on one answer, as sent and as expanded",
    )

    @model_validator(mode="after")
    def _one_way_to_authenticate(self) -> PrometheusSettings:
        if (self.bearer_token_file or self.bearer_token) and self.basic_auth_user:
            raise ValueError("use either a bearer token file or basic auth, not both")
        if self.bearer_token_file and self.bearer_token:
            raise ValueError("use either a bearer token file or a bearer token, not both")
        if self.basic_auth_password_file and self.basic_auth_password:
            raise ValueError("use either a basic auth password file or a password, not both")
        if bool(self.basic_auth_user) != bool(
            self.basic_auth_password_file or self.basic_auth_password
        ):
            raise ValueError("basic auth needs both a user and a password file")
        if self.ca_file and self.insecure_skip_verify:
            raise ValueError("a CA bundle and insecure_skip_verify contradict each other")
        if not re.match(r"^https?://", self.url):
            raise ValueError(f"{excerpt(self.url)!r} is not an http(s) URL")
        problem = _url_problem(self.url)
        if problem is not None:
            raise ValueError(f"{excerpt(self.url)!r} is not a usable URL: {problem}")
        if not timedelta(seconds=1) <= self.timeout <= timedelta(minutes=10):
            raise ValueError("the query timeout must be from 1s to 10m")
        return self


def _url_problem(url: str) -> str | None:
    """Why httpx could not send to `url` (checked once, not at every query)."""
    if len(url) > 2048:
        return "longer than 2048 characters"
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, ValueError) as error:
        return excerpt(str(error))
    host = parsed.host
    if not host:
        return "no host"
    if len(host) > 253 or any(len(label) > 63 for label in host.split(".")):
        return "the host name is too long"
    if parsed.query or parsed.fragment:
        return "a base URL has no query or fragment"
    return None


class PrometheusSource:
    """The MetricsSource port over a real Prometheus."""

    def __init__(
        self,
        settings: PrometheusSettings,
        resolution: timedelta,
        *,
        reuse: WindowReuse | None = DEFAULT_REUSE,
    ) -> None:
        self.settings = settings
        self.resolution = resolution
        self._unusable: str | None = None
        self._exchanger: Exchanger | None = None
        try:
            self._exchanger = Exchanger(
                settings.url,
                ExchangeLimits(
                    deadline_seconds=settings.timeout.total_seconds(),
                    retries=settings.retries,
                    backoff_seconds=settings.backoff_seconds,
                    max_answer_bytes=settings.max_answer_bytes,
                ),
                auth=_auth(settings),
                verify=tls_verification(settings.ca_file, settings.insecure_skip_verify),
                concurrency=settings.max_concurrency,
            )
        except QueryFailed as failure:
            self._unusable = str(failure)
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
        self._filling: dict[Any, threading.Lock] = {}
        self._windows = WindowCache(reuse) if reuse is not None else None
        self.queries_sent = 0
        self.windows_completed = 0
        """Windows read in part: their cached points completed by a read of the newest."""

    def close(self) -> None:
        if self._windows is not None:
            self._windows.clear()
        self._pool.shutdown(wait=False, cancel_futures=True)
        if self._exchanger is not None:
            self._exchanger.close()

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
        if self._windows is not None:
            self._windows.prune(at.timestamp())
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
        asked = self._asked(at - window, at)
        key = (query, window, grid_phase(asked))
        windows = self._windows if reusable(query) else None
        reread = windows.plan(key, asked) if windows is not None else None
        if windows is not None and reread is not None:
            summary = self._read_rest(windows, key, reread, at)
            if summary is not None:
                return summary
        try:
            series = self._range_asked(query, asked)
        except QueryFailed as failure:
            if windows is not None:
                windows.forget(key)
            return WindowSummary.failed(query, window, str(failure))
        if windows is not None:
            windows.keep_whole(key, asked, series)
        return self._summary(query, window, at, series)

    def _read_rest(
        self, windows: WindowCache, key: tuple[str, timedelta, int], reread: Reread, at: datetime
    ) -> WindowSummary | None:
        """The window from its cached points and a read of the rest; None to read it whole."""
        query, window, _phase = key
        try:
            answer = self._range_asked(query, reread.asked)
        except QueryFailed as failure:
            # Reported like a whole window's failure; the next read is a whole one.
            windows.forget(key)
            return WindowSummary.failed(query, window, str(failure))
        series = windows.complete(key, reread, answer)
        if series is None:
            return None
        with self._lock:
            self.windows_completed += 1
        return self._summary(query, window, at, [series])

    def _summary(
        self, query: str, window: timedelta, at: datetime, series: list[Series]
    ) -> WindowSummary:
        if len(series) > 1:
            return WindowSummary(query=query, window=window, series=len(series))
        if not series:
            return WindowSummary(query=query, window=window, series=0, largest_gap=window)
        return summarize_samples(query, window, at, series[0], self.resolution)

    def _filling_lock(self, key: Any) -> threading.Lock:
        """One lock per cached answer: the rollouts of one pass asking at once wait for the
        first one's query instead of each sending it."""
        with self._lock:
            return self._filling.setdefault(key, threading.Lock())

    def firing_alerts(self, names: Sequence[str], at: datetime) -> AlertReading:
        if not names:
            return AlertReading(frozenset())
        key = tuple(names)
        with self._filling_lock(("alerts", key)):
            return self._firing_alerts(key, at)

    def _firing_alerts(self, key: tuple[str, ...], at: datetime) -> AlertReading:
        names = key
        with self._lock:
            if self._tick == at and key in self._alerts:
                return self._alerts[key]
        pattern = "|".join(re.escape(name) for name in names)
        query = f'ALERTS{{alertstate="firing",alertname=~"{pattern}"}}'
        try:
            samples = self._instant(query, at)
            reading = AlertReading(frozenset(_alert_names(samples)))
        except QueryFailed as failure:
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
        with self._filling_lock(("history", key)):
            return self._alert_history(key, at)

    def _alert_history(
        self, key: tuple[tuple[str, ...], str | None, timedelta], at: datetime
    ) -> AlertHistory:
        alerts, coverage_query, window = key
        with self._lock:
            cached = self._histories.get(key) if self._histories_at == at else None
        if cached is not None:
            return cached
        pattern = "|".join(re.escape(name) for name in alerts)
        start = at - window
        try:
            series = self._range(f'ALERTS{{alertname=~"{pattern}"}}', start, at)
        except QueryFailed as failure:
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
        except QueryFailed:
            return None
        if len(series) != 1:
            return None
        values = [value for _ts, value in series[0].points if math.isfinite(value)]
        return sum(values) / len(values) if values else None

    def modes(self, query: str, at: datetime) -> tuple[float, ...] | None:
        with self._lock:
            if self._tick == at and query in self._modes:
                return self._modes[query]
        return self._read_modes(query, at)

    def _read_modes(self, query: str, at: datetime) -> tuple[float, ...] | None:
        try:
            samples = self._instant(query, at)
        except QueryFailed:
            return None
        values = tuple(sample.value for sample in samples)
        return values if all(math.isfinite(value) for value in values) else None

    def check_query(self, query: str, at: datetime) -> str | None:
        """None when Prometheus accepts the expression; otherwise its complaint."""
        try:
            self._instant(query, at)
        except QueryFailed as failure:
            return str(failure)
        return None

    # transport ----------------------------------------------------------------

    def _count(self) -> None:
        with self._lock:
            self.queries_sent += 1

    def _get(self, path: str, params: dict[str, str], reader: Callable[[Any], ResultT]) -> ResultT:
        self._count()
        if self._exchanger is None:
            raise QueryFailed(self._unusable or "Prometheus settings unusable")
        return self._exchanger.get(path, params, reader)

    def _instant(self, query: str, at: datetime) -> list[Sample]:
        moment = round(at.timestamp(), 3)
        params = {"query": query, "time": f"{moment:.3f}"}
        return self._get("/api/v1/query", params, lambda payload: read_instant(payload, at=moment))

    def _asked(self, start: datetime, end: datetime) -> RangeAsked:
        return RangeAsked(
            start=round(start.timestamp(), 3),
            end=round(end.timestamp(), 3),
            step=max(self.resolution.total_seconds(), 1.0),
        )

    def _range(self, query: str, start: datetime, end: datetime) -> list[Series]:
        return self._range_asked(query, self._asked(start, end))

    def _range_asked(self, query: str, asked: RangeAsked) -> list[Series]:
        params = {
            "query": query,
            "start": f"{asked.start:.3f}",
            "end": f"{asked.end:.3f}",
            "step": f"{asked.step:g}s",
        }
        return self._get("/api/v1/query_range", params, lambda payload: read_range(payload, asked))


def _auth(settings: PrometheusSettings) -> httpx.Auth | None:
    if settings.bearer_token_file is not None:
        return TokenFileAuth(settings.bearer_token_file)
    if settings.basic_auth_user and settings.basic_auth_password_file:
        return PasswordFileAuth(settings.basic_auth_user, settings.basic_auth_password_file)
    if settings.bearer_token is not None:
        return BearerToken(settings.bearer_token.get_secret_value())
    if settings.basic_auth_user and settings.basic_auth_password is not None:
        return httpx.BasicAuth(
            settings.basic_auth_user, settings.basic_auth_password.get_secret_value()
        )
    return None


def _alert_names(samples: Iterable[Sample]) -> Iterable[str]:
    for sample in samples:
        name = sample.labels.get("alertname")
        if not name:
            raise QueryFailed("Prometheus answered an alert series without an alertname label")
        yield name


def summarize_samples(
    query: str, window: timedelta, at: datetime, series: Series, resolution: timedelta
) -> WindowSummary:
    """Summarise one range-query series: extremes, non-finite samples, the largest gap."""
    points = series.points
    if not points:
        return WindowSummary(query=query, window=window, series=0, largest_gap=window)
    step = max(resolution.total_seconds(), 1.0)
    start, end = (at - window).timestamp(), at.timestamp()
    stamps, values = zip(*points, strict=True)
    gaps = [stamps[0] - start, end - stamps[-1]]
    if len(stamps) > 1:
        # The widest spacing less one step: the largest hole between two samples.
        gaps.append(max(map(operator.sub, islice(stamps, 1, None), stamps)) - step)
    largest = max(0.0, *gaps)
    return WindowSummary.of_values(
        query,
        window,
        list(values),
        timedelta(seconds=round(largest, 3)),
        points=points,
    )


def alert_history_of(
    series: Sequence[Series],
    coverage: WindowSummary | None,
    start: datetime,
    at: datetime,
    resolution: timedelta,
) -> AlertHistory:
    """Fold ALERTS range-query series (one per alert, state and label set) into an AlertHistory."""
    step = max(resolution.total_seconds(), 1.0)
    # `_range` sends milliseconds; the evaluation steps count from the start it sent.
    first, end = round(start.timestamp(), 3), round(at.timestamp(), 3)
    last = first + math.floor((end - first) / step) * step
    active: dict[str, set[float]] = {}
    fired: set[str] = set()
    firing_now: set[str] = set()
    for item in series:
        metric = item.labels
        name = metric.get("alertname", "")
        times = {round(ts, 3) for ts, _value in item.points}
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
