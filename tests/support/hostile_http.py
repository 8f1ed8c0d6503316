"""A misbehaving HTTP server on loopback, in front of a real Prometheus.

Tests give it a `rule`: a function of the request that returns a `Reply` (what to
send, and how: status, headers, a body given whole or as a stream of chunks, a
pause between chunks) or None to forward the request to the real Prometheus
unchanged. `mutate_json` builds the most common rule: forward, change the JSON
answer, send it back. It records every request it saw, so a test can show that a
redirect target was never asked.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


@dataclass
class Reply:
    """What the server sends: a whole body, or chunks with a pause between them."""

    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    chunks: Callable[[], Iterable[bytes]] | None = None
    pause_seconds: float = 0.0


@dataclass(frozen=True)
class Request:
    """One request the server received, with a way to ask the real Prometheus."""

    path: str
    params: dict[str, str]
    upstream: str | None

    def forward(self) -> tuple[int, bytes]:
        if self.upstream is None:
            raise RuntimeError("this hostile server has no upstream")
        query = urllib.request.urlopen(
            f"{self.upstream}{self.path}?{_encode(self.params)}", timeout=10
        )
        with query:
            return query.status, query.read()


Rule = Callable[[Request], Reply | None]


def _encode(params: dict[str, str]) -> str:
    from urllib.parse import urlencode

    return urlencode(params)


def json_reply(payload: Any, status: int = 200) -> Reply:
    """A reply of this JSON (NaN and Infinity written as JavaScript would)."""
    body = json.dumps(payload, allow_nan=True).encode()
    return Reply(status=status, headers={"Content-Type": "application/json"}, body=body)


def mutate_json(change: Callable[[Any, Request], Any]) -> Rule:
    """Forward to Prometheus, then send `change(answer, request)` instead of its answer."""

    def rule(request: Request) -> Reply:
        status, body = request.forward()
        return json_reply(change(json.loads(body), request), status)

    return rule


class HostileServer:
    """A threaded loopback HTTP server whose every answer is chosen by `rule`."""

    def __init__(self, upstream: str | None = None, rule: Rule | None = None) -> None:
        self.upstream = upstream.rstrip("/") if upstream else None
        self.rule: Rule = rule or (lambda _request: None)
        self.seen: list[Request] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> HostileServer:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                return

            def handle(self) -> None:
                # A client that hangs up on a hostile answer is the point of most tests.
                try:
                    super().handle()
                except (ConnectionResetError, BrokenPipeError):
                    return

            def do_GET(self) -> None:
                parts = urlsplit(self.path)
                params = {key: values[-1] for key, values in parse_qs(parts.query).items()}
                request = Request(parts.path, params, server.upstream)
                with server._lock:
                    server.seen.append(request)
                reply = server.rule(request)
                if reply is None:
                    status, body = request.forward()
                    reply = Reply(status, {"Content-Type": "application/json"}, body)
                try:
                    self._send(reply)
                except (BrokenPipeError, ConnectionResetError):
                    return

            def _send(self, reply: Reply) -> None:
                self.send_response(reply.status)
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                if reply.chunks is None:
                    self.send_header("Content-Length", str(len(reply.body)))
                    self.end_headers()
                    self._write(_pieces(reply.body, reply.pause_seconds), reply.pause_seconds)
                    return
                self.send_header("Connection", "close")
                self.end_headers()
                self.close_connection = True
                self._write(iter(reply.chunks()), reply.pause_seconds)

            def _write(self, pieces: Iterator[bytes], pause: float) -> None:
                for piece in pieces:
                    self.wfile.write(piece)
                    self.wfile.flush()
                    if pause:
                        time.sleep(pause)

        return Handler


def _pieces(body: bytes, pause: float) -> Iterator[bytes]:
    """A body whole, or one byte at a time when it is to trickle."""
    if not pause:
        yield body
        return
    for index in range(len(body)):
        yield body[index : index + 1]
