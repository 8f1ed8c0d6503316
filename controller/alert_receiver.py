"""An Alertmanager webhook receiver: a firing alert ticks the rollouts whose plan names it.

Alertmanager POSTs its webhook payload (version 4: `status`, `alerts[]` with
`status` and `labels.alertname`, ...) when a group of alerts fires or resolves.
The body only causes ticks: it is never evidence. The tick reads the alerts from
Prometheus as every tick does, so a forged or stale payload costs one tick of
the rollouts concerned and changes no decision.

The body is hostile: its size is capped (413), it must be JSON of the payload's
shape within a small depth and count (400, with one line saying what is wrong),
and with a token file the request must carry `Authorization: Bearer <token>` (401).
A refused request ticks nothing; no answer carries a traceback. A standby replica
answers 503, so that Alertmanager sends the alerts again, possibly to the leader.
"""

from __future__ import annotations

import hmac
import json
import logging
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from controller.files import SMALL_FILE_BYTES, FileUnusable, read_text

log = logging.getLogger("stage_rollout.alerts")
WEBHOOK_PATH = "/alertmanager"
MAX_BODY_BYTES = 1 << 20
MAX_ALERTS = 1000
MAX_DEPTH = 8
"""The payload nests four levels (body, alerts, alert, labels); eight leaves room for extensions."""
MAX_NAME = 256
_TIMEOUT_SECONDS = 5.0


class PayloadError(ValueError):
    """A refused request: the HTTP status to answer and a one-line reason."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _depth(value: Any, limit: int) -> int:
    """How deeply `value` nests, counting no further than `limit` + 1."""
    depth, level = 0, [value]
    while level and depth <= limit:
        depth += 1
        nested: list[Any] = []
        for item in level:
            if isinstance(item, dict):
                nested.extend(item.values())
            elif isinstance(item, list):
                nested.extend(item)
        level = [item for item in nested if isinstance(item, dict | list)]
    return depth


def firing_alerts(body: bytes) -> frozenset[str]:
    """The names of the alerts a webhook body reports firing; PayloadError when it is refused."""
    if len(body) > MAX_BODY_BYTES:
        raise PayloadError(413, f"body larger than {MAX_BODY_BYTES} bytes")
    try:
        payload = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise PayloadError(400, "body is not UTF-8 JSON") from None
    if not isinstance(payload, dict):
        raise PayloadError(400, "body must be a JSON object (the Alertmanager webhook payload)")
    if _depth(payload, MAX_DEPTH) > MAX_DEPTH:
        raise PayloadError(400, f"body nests deeper than {MAX_DEPTH} levels")
    version = payload.get("version")
    if version is not None and version != "4":
        raise PayloadError(400, f"payload version {str(version)[:16]!r} is not 4")
    alerts = payload.get("alerts")
    if not isinstance(alerts, list):
        raise PayloadError(400, "alerts must be a list")
    if len(alerts) > MAX_ALERTS:
        raise PayloadError(400, f"more than {MAX_ALERTS} alerts")
    return frozenset(_firing_names(alerts))


def _firing_names(alerts: Iterable[Any]) -> Iterable[str]:
    for index, alert in enumerate(alerts):
        if not isinstance(alert, dict):
            raise PayloadError(400, f"alerts[{index}] must be an object")
        status = alert.get("status")
        if status not in ("firing", "resolved"):
            raise PayloadError(400, f"alerts[{index}].status must be firing or resolved")
        labels = alert.get("labels")
        if not isinstance(labels, dict):
            raise PayloadError(400, f"alerts[{index}].labels must be an object")
        name = labels.get("alertname")
        if not isinstance(name, str) or not 0 < len(name) <= MAX_NAME:
            raise PayloadError(
                400,
                f"alerts[{index}].labels.alertname must be a name of 1 to {MAX_NAME} characters",
            )
        if status == "firing":
            yield name


def read_token(path: Path) -> str:
    """The shared bearer token from a small file (surrounding whitespace stripped)."""
    token = read_text(path, "token file", limit=SMALL_FILE_BYTES).strip()
    if not token or any(not 32 < ord(c) < 127 for c in token):
        raise FileUnusable(f"token file {path} must hold one token of printable ASCII")
    return token


def authorised(header: str | None, token: str | None) -> bool:
    """Whether an Authorization header carries the token (always, without a token)."""
    if token is None:
        return True
    expected = f"Bearer {token}".encode()
    return hmac.compare_digest((header or "").encode(), expected)


@dataclass(frozen=True)
class Receiver:
    """What a webhook call does: find the rollouts naming a firing alert, tick each."""

    rollouts_naming: Callable[[frozenset[str]], list[tuple[str, str]]]
    tick: Callable[[str, str], None]
    token: str | None = None
    leading: Callable[[], bool] = lambda: True
    """False on a standby replica: it answers 503 so that Alertmanager retries (the
    Service may send the retry to the leader) instead of a 200 that ticked nothing."""

    def handle(self, path: str, headers: Mapping[str, str], body: bytes) -> tuple[int, str]:
        """The HTTP status and one-line answer for one POST."""
        if path.split("?", 1)[0] != WEBHOOK_PATH:
            return 404, "not found"
        if not authorised(headers.get("Authorization"), self.token):
            return 401, "missing or wrong bearer token"
        try:
            firing = firing_alerts(body)
        except PayloadError as error:
            return error.status, str(error)
        if not self.leading():
            return 503, "not the leader: send the alerts again"
        targets = self.rollouts_naming(firing) if firing else []
        for namespace, name in targets:
            self.tick(namespace, name)
        return 200, f"{len(targets)} rollouts ticked for {len(firing)} firing alerts"


def serve(receiver: Receiver, host: str, port: int) -> ThreadingHTTPServer:
    """Start the receiver on a daemon thread; POST only, bodies read up to the cap."""

    class Handler(BaseHTTPRequestHandler):
        timeout = _TIMEOUT_SECONDS

        def do_POST(self) -> None:
            try:
                length = int(self.headers.get("Content-Length") or "-1")
            except ValueError:
                length = -1
            if length < 0:
                self._answer(411, "a Content-Length is required")
                return
            if length > MAX_BODY_BYTES:
                self._answer(413, f"body larger than {MAX_BODY_BYTES} bytes")
                return
            try:
                body = self.rfile.read(length)
                status, message = receiver.handle(self.path, dict(self.headers.items()), body)
            except Exception as error:  # never a traceback to the caller
                log.warning("alert webhook failed: %s", type(error).__name__)
                status, message = 500, "internal error"
            self._answer(status, message)

        def do_GET(self) -> None:
            self._answer(405, "POST the Alertmanager webhook payload")

        def _answer(self, status: int, message: str) -> None:
            body = json.dumps({"status": status, "message": message}).encode() + b"\n"
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            if status >= 400:
                self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            return

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="alert-webhook", daemon=True).start()
    return server
