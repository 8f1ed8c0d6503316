"""Webhook notifications: a generic JSON payload or a Slack-compatible one.

The reconciler tells a `Notifier` what happened in a tick (transitions, rollbacks,
stalls, failed jobs, approvals needed, pauses, completions). `notify` only formats
the payloads and appends them to one bounded in-memory queue per sink, so it
returns at once whatever the webhooks do. One background thread per sink drains
its queue with an `httpx.Client`: a per-request timeout, then retries with
exponential backoff on connection errors, timeouts, 429 and 5xx (a 4xx other than
429 is the request's fault and is not retried). A full queue drops its oldest item
with a warning. A slow sink delays neither the tick nor the other sinks.

Sinks are configured with `NotificationSink`, a pydantic model, so a YAML or JSON
list can be validated with `TypeAdapter(list[NotificationSink])`.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import httpx
from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic.alias_generators import to_camel

from controller.clock import monotonic_seconds
from controller.redaction import remember_secret
from phases.actions import Event, EventKind

log = logging.getLogger("stage_rollout.notifications")

NOTIFIED_KINDS: frozenset[EventKind] = frozenset(
    {
        EventKind.TRANSITION,
        EventKind.ROLLBACK,
        EventKind.STALLED,
        EventKind.JOB_FAILED,
        EventKind.APPROVAL_NEEDED,
        EventKind.PAUSED,
        EventKind.COMPLETED,
    }
)
"""The event kinds worth a message; the others only become Kubernetes Events."""

_TITLES: Mapping[EventKind, str] = {
    EventKind.TRANSITION: "moved on",
    EventKind.ROLLBACK: "rolled back",
    EventKind.STALLED: "stalled",
    EventKind.JOB_FAILED: "job failed",
    EventKind.APPROVAL_NEEDED: "approval needed",
    EventKind.PAUSED: "paused",
    EventKind.COMPLETED: "completed",
}

_EMOJI: Mapping[EventKind, str] = {
    EventKind.APPROVAL_NEEDED: ":raising_hand:",
    EventKind.COMPLETED: ":white_check_mark:",
    EventKind.PAUSED: ":double_vertical_bar:",
}

WARNING_EMOJI = ":warning:"
_USER_AGENT = "stage-rollout-controller/notifications"


class NotificationSink(BaseModel):
    """One webhook: where to post, in which format, with which headers and timeout."""

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True
    )

    url: str
    kind: Literal["json", "slack"] = "json"
    timeout: float = Field(default=5.0, gt=0, description="seconds, per request")
    headers: dict[str, str] = Field(default_factory=dict)
    bearer_token_file: Path | None = Field(
        default=None, description="read before every request, so a rotated token is picked up"
    )

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        try:
            url = httpx.URL(value)
        except (httpx.InvalidURL, TypeError) as error:
            raise ValueError(f"not a URL: {error}") from None
        if url.scheme not in ("http", "https") or not url.host:
            raise ValueError("a webhook URL needs an http or https scheme and a host")
        return value

    @property
    def label(self) -> str:
        """The sink for logs: scheme and host only (Slack URLs carry their secret in the path)."""
        url = httpx.URL(self.url)
        return f"{url.scheme}://{url.host}"


def json_payload(namespace: str, rollout: str, event: Event, at: datetime) -> dict[str, Any]:
    """The generic webhook body for one event."""
    return {
        "rollout": f"{namespace}/{rollout}",
        "kind": event.kind.value,
        "step": event.step,
        "message": event.message,
        "warning": event.warning,
        "at": at.isoformat(),
        "details": dict(event.details),
    }


def _escape(text: str) -> str:
    """Slack mrkdwn treats &, < and > as control characters."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack_payload(namespace: str, rollout: str, event: Event, at: datetime) -> dict[str, Any]:
    """A Slack incoming-webhook body: a plain `text` fallback and Block Kit blocks."""
    name = f"{namespace}/{rollout}"
    emoji = WARNING_EMOJI if event.warning else _EMOJI.get(event.kind, ":arrow_forward:")
    title = _TITLES.get(event.kind, event.kind.value.replace("_", " "))
    headline = f"{emoji} *{_escape(name)}* {title} at step `{_escape(event.step)}`"
    context = f"{event.kind.value} · {at.isoformat()}"
    return {
        "text": f"{emoji} {name} {title} at step {event.step}: {event.message}",
        "blocks": [
            {
                "type": "section",
                "text": {"type": "mrkdwn", "text": f"{headline}\n{_escape(event.message)}"},
            },
            {"type": "context", "elements": [{"type": "mrkdwn", "text": context}]},
        ],
    }


_FORMATS: Mapping[str, Callable[[str, str, Event, datetime], dict[str, Any]]] = {
    "json": json_payload,
    "slack": slack_payload,
}


@dataclass(frozen=True, slots=True)
class _Item:
    rollout: str
    kind: str
    payload: dict[str, Any]


class _Counters:
    """Delivered, failed and dropped notifications, shared by the sink workers."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.delivered = 0
        self.failed = 0
        self.dropped = 0

    def add(self, name: Literal["delivered", "failed", "dropped"], count: int = 1) -> None:
        with self._lock:
            setattr(self, name, getattr(self, name) + count)


class _Retry(Exception):
    """An attempt that may succeed if tried again."""

    def __init__(self, reason: str, after: float | None = None) -> None:
        super().__init__(reason)
        self.after = after


class _Fatal(Exception):
    """An attempt that would fail the same way if tried again."""


class _SinkWorker:
    """One sink's bounded queue and the thread that posts from it."""

    def __init__(
        self,
        sink: NotificationSink,
        counters: _Counters,
        *,
        queue_size: int,
        attempts: int,
        backoff: float,
        max_backoff: float,
        transport: httpx.BaseTransport | None,
    ) -> None:
        self.sink = sink
        remember_secret(sink.url)
        remember_secret(httpx.URL(sink.url).raw_path.decode("ascii", "replace"))
        for value in sink.headers.values():
            remember_secret(value)
        self._counters = counters
        self._queue: deque[_Item] = deque()
        self._queue_size = queue_size
        self._attempts = attempts
        self._backoff = backoff
        self._max_backoff = max_backoff
        self._transport = transport
        self._ready = threading.Condition()
        self._closing = False
        self._abort = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"notify {sink.label}", daemon=True)
        self._thread.start()

    def put(self, item: _Item) -> None:
        with self._ready:
            if self._closing:
                self._counters.add("dropped")
                log.warning(
                    "notifier closed, %s not sent to %s",
                    item.kind,
                    self.sink.label,
                    extra={"rollout": item.rollout},
                )
                return
            if len(self._queue) >= self._queue_size:
                oldest = self._queue.popleft()
                self._counters.add("dropped")
                log.warning(
                    "notification queue for %s full, dropped the oldest (%s)",
                    self.sink.label,
                    oldest.kind,
                    extra={"rollout": oldest.rollout},
                )
            self._queue.append(item)
            self._ready.notify()

    def stop(self) -> None:
        with self._ready:
            self._closing = True
            self._ready.notify()

    def join(self, timeout: float) -> bool:
        self._thread.join(max(timeout, 0.0))
        return not self._thread.is_alive()

    def abort(self) -> None:
        """Stop waiting between attempts and give up on whatever is still queued."""
        self._abort.set()
        with self._ready:
            abandoned = len(self._queue)
            self._queue.clear()
            self._ready.notify()
        if abandoned:
            self._counters.add("dropped", abandoned)
            log.warning("%d notifications to %s abandoned on close", abandoned, self.sink.label)

    def _run(self) -> None:
        with httpx.Client(
            timeout=self.sink.timeout,
            headers={"User-Agent": _USER_AGENT},
            transport=self._transport,
        ) as client:
            while True:
                with self._ready:
                    while not self._queue and not self._closing:
                        self._ready.wait()
                    if not self._queue:
                        return
                    item = self._queue.popleft()
                try:
                    self._deliver(client, item)
                except Exception:  # the worker must outlive any surprise
                    self._counters.add("failed")
                    log.exception(
                        "%s notification to %s failed unexpectedly",
                        item.kind,
                        self.sink.label,
                        extra={"rollout": item.rollout},
                    )

    def _deliver(self, client: httpx.Client, item: _Item) -> None:
        reason = "not attempted"
        for attempt in range(1, self._attempts + 1):
            try:
                self._post(client, item)
            except _Retry as retry:
                reason = str(retry)
                if attempt == self._attempts:
                    break
                delay = min(self._backoff * 2 ** (attempt - 1), self._max_backoff)
                if retry.after is not None:
                    delay = min(max(delay, retry.after), self._max_backoff)
                if self._abort.wait(delay):
                    reason += " (abandoned on close)"
                    break
                continue
            except _Fatal as fatal:
                reason = str(fatal)
                break
            self._counters.add("delivered")
            return
        self._counters.add("failed")
        log.warning(
            "%s notification to %s failed: %s",
            item.kind,
            self.sink.label,
            reason,
            extra={"rollout": item.rollout},
        )

    def _post(self, client: httpx.Client, item: _Item) -> None:
        headers = dict(self.sink.headers)
        if self.sink.bearer_token_file is not None:
            try:
                token = self.sink.bearer_token_file.read_text().strip()
            except OSError as error:
                raise _Fatal(f"cannot read the bearer token: {type(error).__name__}") from None
            remember_secret(token)
            headers["Authorization"] = f"Bearer {token}"
        try:
            response = client.post(self.sink.url, json=item.payload, headers=headers)
        except httpx.TimeoutException as error:
            raise _Retry(f"timed out ({type(error).__name__})") from None
        except httpx.TransportError as error:
            raise _Retry(f"{type(error).__name__}: {error}") from None
        status = response.status_code
        if status == 429 or status >= 500:
            raise _Retry(f"HTTP {status}", _retry_after(response))
        if status >= 400:
            # The body is the receiver's words, not ours to log (it may echo the secret URL).
            raise _Fatal(f"HTTP {status}")


def _retry_after(response: httpx.Response) -> float | None:
    """Retry-After in seconds, when the server gave it as a number."""
    value = response.headers.get("Retry-After", "")
    try:
        seconds = float(value)
    except ValueError:
        return None
    return seconds if seconds >= 0 else None


class Notifier:
    """Posts notifications for a tick's events to webhooks without ever blocking the tick.

    `delivered`, `failed` and `dropped` count notifications (one per event and sink)
    across all sinks: delivered after any attempt succeeded, failed once the
    attempts are spent or the webhook refused the request, dropped when the queue
    overflowed, the notifier was closed, or `close` gave up on what was left.
    """

    def __init__(
        self,
        sinks: Iterable[NotificationSink],
        *,
        queue_size: int = 100,
        attempts: int = 3,
        backoff: float = 0.5,
        max_backoff: float = 30.0,
        kinds: Iterable[EventKind] = NOTIFIED_KINDS,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        if queue_size < 1 or attempts < 1 or backoff < 0 or max_backoff < 0:
            raise ValueError("queue_size and attempts must be positive, backoffs not negative")
        self.kinds = frozenset(kinds)
        self._counters = _Counters()
        self._workers = [
            _SinkWorker(
                sink,
                self._counters,
                queue_size=queue_size,
                attempts=attempts,
                backoff=backoff,
                max_backoff=max_backoff,
                transport=transport,
            )
            for sink in sinks
        ]

    @property
    def sinks(self) -> tuple[NotificationSink, ...]:
        return tuple(worker.sink for worker in self._workers)

    @property
    def delivered(self) -> int:
        return self._counters.delivered

    @property
    def failed(self) -> int:
        return self._counters.failed

    @property
    def dropped(self) -> int:
        return self._counters.dropped

    def notify(self, namespace: str, rollout: str, events: Sequence[Event], at: datetime) -> int:
        """Queue one notification per relevant event and sink; returns how many were queued.

        Never blocks on the network and never raises because of a webhook.
        """
        queued = 0
        for event in events:
            if event.kind not in self.kinds:
                continue
            for worker in self._workers:
                payload = _FORMATS[worker.sink.kind](namespace, rollout, event, at)
                worker.put(_Item(f"{namespace}/{rollout}", event.kind.value, payload))
                queued += 1
        return queued

    def close(self, timeout: float = 5.0) -> bool:
        """Deliver what is queued, then stop the workers; True if all finished in time.

        Past `timeout`, waits between retries end, what is still queued is counted
        as dropped, and a request in flight is left to its own timeout on a daemon
        thread.
        """
        deadline = monotonic_seconds() + timeout
        for worker in self._workers:
            worker.stop()
        finished = all([worker.join(deadline - monotonic_seconds()) for worker in self._workers])
        if not finished:
            for worker in self._workers:
                worker.abort()
        return finished

    def __enter__(self) -> Notifier:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
