"""Webhook notifications against a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from pydantic import TypeAdapter, ValidationError

from controller.notifications import NotificationSink, Notifier
from phases.actions import Event, EventKind

AT = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
ROLLBACK = Event(
    EventKind.ROLLBACK,
    "3@25",
    "error ratio 4.1% above 2% for 5m",
    warning=True,
    details={"gate": "errors"},
)
COMPLETED = Event(EventKind.COMPLETED, "5@100", "all steps passed")


class Webhook:
    """A recording webhook that can fail, be slow, or hold requests until released."""

    def __init__(self) -> None:
        self.requests: list[tuple[dict[str, str], Any]] = []
        self.failures = 0
        self.failure_status = 500
        self.delay = 0.0
        self.gate = threading.Event()
        self.gate.set()
        self.arrived = threading.Event()
        self._lock = threading.Lock()
        webhook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                with webhook._lock:
                    webhook.requests.append((dict(self.headers), json.loads(body)))
                    fail = webhook.failures > 0
                    webhook.failures -= fail
                webhook.arrived.set()
                webhook.gate.wait(10)
                if webhook.delay:
                    time.sleep(webhook.delay)
                status = webhook.failure_status if fail else 200
                try:
                    self.send_response(status)
                    self.send_header("Content-Length", "2")
                    self.end_headers()
                    self.wfile.write(b"ok")
                except OSError:
                    pass  # the client gave up first

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    @property
    def payloads(self) -> list[Any]:
        with self._lock:
            return [payload for _, payload in self.requests]

    def stop(self) -> None:
        self.gate.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def webhook() -> Iterator[Webhook]:
    server = Webhook()
    yield server
    server.stop()


@pytest.fixture
def other_webhook() -> Iterator[Webhook]:
    server = Webhook()
    yield server
    server.stop()


def refused_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/hook"


def sink(url: str, **fields: Any) -> NotificationSink:
    return NotificationSink(url=url, timeout=fields.pop("timeout", 2.0), **fields)


def test_json_payload_of_a_rollback_with_headers_and_bearer_token(
    webhook: Webhook, tmp_path: Path
) -> None:
    token = tmp_path / "token"
    token.write_text("s3cret\n")
    notifier = Notifier(
        [sink(webhook.url, headers={"X-Team": "payments"}, bearer_token_file=token)],
        backoff=0.01,
    )
    ignored = Event(EventKind.APPROVAL_IGNORED, "3@25", "not an approver")
    assert notifier.notify("shop", "api", [ROLLBACK, ignored], AT) == 1
    assert notifier.close(5)
    [(headers, payload)] = webhook.requests
    assert payload == {
        "rollout": "shop/api",
        "kind": "rollback",
        "step": "3@25",
        "message": "error ratio 4.1% above 2% for 5m",
        "warning": True,
        "at": "2026-03-02T09:00:00+00:00",
        "details": {"gate": "errors"},
    }
    assert headers["Authorization"] == "Bearer s3cret"
    assert headers["X-Team"] == "payments"
    assert headers["Content-Type"] == "application/json"
    assert (notifier.delivered, notifier.failed, notifier.dropped) == (1, 0, 0)


def test_slack_payload_has_a_fallback_text_and_blocks(webhook: Webhook) -> None:
    notifier = Notifier([sink(webhook.url, kind="slack")])
    notifier.notify("shop", "api", [ROLLBACK, COMPLETED], AT)
    assert notifier.close(5)
    warning, done = webhook.payloads
    assert warning["text"].startswith(":warning: shop/api rolled back at step 3@25")
    section, context = warning["blocks"]
    assert section["type"] == "section" and section["text"]["type"] == "mrkdwn"
    assert "*shop/api*" in section["text"]["text"] and "`3@25`" in section["text"]["text"]
    assert "error ratio 4.1% above 2% for 5m" in section["text"]["text"]
    assert context["type"] == "context" and "rollback" in context["elements"][0]["text"]
    assert ":warning:" not in done["text"] and "completed" in done["text"]


def test_two_server_errors_then_success_takes_three_attempts(webhook: Webhook) -> None:
    webhook.failures = 2
    notifier = Notifier([sink(webhook.url)], backoff=0.01)
    notifier.notify("shop", "api", [ROLLBACK], AT)
    assert notifier.close(5)
    assert len(webhook.requests) == 3
    assert (notifier.delivered, notifier.failed) == (1, 0)


def test_a_client_error_is_not_retried(webhook: Webhook) -> None:
    webhook.failures = 5
    webhook.failure_status = 400
    notifier = Notifier([sink(webhook.url)], backoff=0.01)
    notifier.notify("shop", "api", [ROLLBACK], AT)
    assert notifier.close(5)
    assert len(webhook.requests) == 1
    assert (notifier.delivered, notifier.failed) == (0, 1)


def test_too_many_requests_is_retried(webhook: Webhook) -> None:
    webhook.failures = 1
    webhook.failure_status = 429
    notifier = Notifier([sink(webhook.url)], backoff=0.01)
    notifier.notify("shop", "api", [ROLLBACK], AT)
    assert notifier.close(5)
    assert len(webhook.requests) == 2 and notifier.delivered == 1


def test_a_slow_webhook_blocks_neither_notify_nor_the_other_sink(
    webhook: Webhook, other_webhook: Webhook
) -> None:
    webhook.delay = 1.0
    notifier = Notifier(
        [sink(webhook.url, timeout=0.2), sink(other_webhook.url, kind="slack")], backoff=0.01
    )
    started = time.monotonic()
    notifier.notify("shop", "api", [ROLLBACK], AT)
    assert time.monotonic() - started < 0.05
    deadline = time.monotonic() + 1.0
    while not other_webhook.requests and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(other_webhook.requests) == 1, "the fast sink waited for the slow one"
    assert notifier.close(5)
    assert len(webhook.requests) == 3
    assert (notifier.delivered, notifier.failed) == (1, 1)


def test_a_refused_connection_fails_after_its_retries() -> None:
    notifier = Notifier([sink(refused_url())], backoff=0.01)
    notifier.notify("shop", "api", [ROLLBACK], AT)
    assert notifier.close(5)
    assert (notifier.delivered, notifier.failed) == (0, 1)


def test_a_full_queue_drops_the_oldest(webhook: Webhook) -> None:
    webhook.gate.clear()
    notifier = Notifier([sink(webhook.url, timeout=5)], queue_size=2)
    events = [Event(EventKind.TRANSITION, f"{n}@10", f"event {n}") for n in range(4)]
    notifier.notify("shop", "api", events[:1], AT)
    assert webhook.arrived.wait(2), "the worker never picked up the first event"
    notifier.notify("shop", "api", events[1:], AT)
    assert notifier.dropped == 1
    webhook.gate.set()
    assert notifier.close(5)
    assert [payload["message"] for payload in webhook.payloads] == [
        "event 0",
        "event 2",
        "event 3",
    ]
    assert (notifier.delivered, notifier.failed, notifier.dropped) == (3, 0, 1)


def test_close_delivers_everything_pending(webhook: Webhook) -> None:
    webhook.delay = 0.02
    notifier = Notifier([sink(webhook.url)])
    for n in range(10):
        notifier.notify("shop", "api", [Event(EventKind.TRANSITION, f"{n}@10", f"event {n}")], AT)
    assert notifier.close(5)
    assert [payload["message"] for payload in webhook.payloads] == [f"event {n}" for n in range(10)]
    assert notifier.delivered == 10
    notifier.notify("shop", "api", [ROLLBACK], AT)
    assert notifier.dropped == 1


def test_close_gives_up_at_its_timeout() -> None:
    notifier = Notifier([sink(refused_url())], backoff=10.0)
    notifier.notify("shop", "api", [ROLLBACK, COMPLETED], AT)
    started = time.monotonic()
    assert not notifier.close(0.3)
    assert time.monotonic() - started < 1.0
    time.sleep(0.1)
    assert (notifier.failed, notifier.dropped) == (1, 1)


def test_sinks_are_validated_from_a_camel_case_list() -> None:
    sinks = TypeAdapter(list[NotificationSink]).validate_python(
        [
            {"url": "https://hooks.slack.com/services/T/B/x", "kind": "slack"},
            {"url": "http://alerts.internal/hook", "timeout": 1.5, "bearerTokenFile": "/t"},
        ]
    )
    assert sinks[0].label == "https://hooks.slack.com"
    assert sinks[1].timeout == 1.5 and sinks[1].bearer_token_file == Path("/t")
    for bad in (
        {"url": "ftp://example.com/x"},
        {"url": "not a url"},
        {"url": "http://x/hook", "kind": "teams"},
        {"url": "http://x/hook", "timeout": 0},
    ):
        with pytest.raises(ValidationError):
            NotificationSink.model_validate(bad)
