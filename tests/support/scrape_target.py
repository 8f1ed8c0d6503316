"""A scrape target the tests control: chosen series of one counter, or a 503 when down.

Real Prometheus servers scrape it, so that staleness markers (a series that
vanishes, a target that fails its scrapes) and counter resets happen the way they
do in a cluster, at moments a test picks.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Exposition:
    """What the target answers: the counter's chosen series, each scrape `step` higher."""

    def __init__(self, counter: str, step: int = 1) -> None:
        self.counter = counter
        self.step = step
        self.series: tuple[str, ...] = ("read", "write")
        self.down = False
        self.count = 0

    def body(self) -> bytes | None:
        if self.down:
            return None
        self.count += self.step
        lines = [f"# TYPE {self.counter} counter"]
        lines += [f'{self.counter}{{operation="{op}"}} {self.count}' for op in self.series]
        return ("\n".join(lines) + "\n").encode()


@contextmanager
def serving(exposition: Exposition) -> Iterator[str]:
    """Serve `exposition` on loopback; yields its host:port."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = exposition.body()
            self.send_response(503 if body is None else 200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.end_headers()
            self.wfile.write(body or b"down\n")

        def log_message(self, *_args: object) -> None:
            pass

    http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=http.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{http.server_address[1]}"
    finally:
        http.shutdown()
        http.server_close()
