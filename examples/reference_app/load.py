"""Steady, adjustable traffic for the reference app.

Rates and ratios only mean something with traffic behind them. This generator sends
requests to the four runbook endpoints at a target rate (open loop: a slow server
does not slow the schedule down; ticks that find every worker busy are dropped and
counted), each with a fresh ``X-Request-Id``, with chosen shares of deprecated and
unknown stages. A test can change the rate, the shares and the app's injected
latency while it runs, and it always ends by itself after a duration or a request
count.

Run it with ``python -m examples.reference_app.load --url http://127.0.0.1:3333``.
"""

from __future__ import annotations

import argparse
import http.client
import json
import queue
import random
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self
from urllib.parse import urlencode, urlsplit

from .validation import CANONICAL_STAGES

# (method, path) pairs per endpoint; an endpoint is picked uniformly, then a method.
ENDPOINT_CALLS: Mapping[str, tuple[tuple[str, str], ...]] = {
    "/api/portfolio/strategies": (
        ("POST", "/api/portfolio/strategies"),
        ("PUT", "/api/portfolio/strategies"),
        ("PATCH", "/api/portfolio/strategies"),
    ),
    "/api/monte-carlo/simulate": (("POST", "/api/monte-carlo/simulate"),),
    "/api/funds/:fundId/companies": (("GET", "/api/funds/{fund_id}/companies"),),
    "/api/allocations": (
        ("POST", "/api/allocations"),
        ("PUT", "/api/allocations"),
        ("PATCH", "/api/allocations"),
    ),
}
DEPRECATED_SAMPLES: tuple[str, ...] = ("late-stage", "growth", "Series A", "Seed", "preseed")
UNKNOWN_SAMPLES: tuple[str, ...] = ("invalid", "mezzanine", "series-z", "bridge")


@dataclass(frozen=True)
class PreparedRequest:
    """One request, fully decided before a worker sends it."""

    method: str
    path: str
    body: bytes | None
    request_id: str


@dataclass(frozen=True)
class LoadStats:
    """What a run did so far: responses by status, transport errors and dropped ticks."""

    sent: int
    responses: Mapping[int, int]
    transport_errors: int
    dropped: int
    elapsed_seconds: float

    @property
    def answered(self) -> int:
        return sum(self.responses.values())


@dataclass
class _Tally:
    sent: int = 0
    transport_errors: int = 0
    dropped: int = 0
    responses: Counter[int] = field(default_factory=Counter)


def _check_fraction(name: str, value: float) -> float:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be from 0 to 1, not {value}")
    return value


class LoadGenerator:
    """Sends requests to a reference app at a target rate until a duration or count is reached.

    `invalid_fraction` is the share of requests carrying a deprecated variant
    ("late-stage", "Series A"), `unknown_fraction` the share carrying an unknown
    stage; they are drawn separately, so enforce mode rejects about their sum.
    """

    def __init__(
        self,
        url: str,
        *,
        rate: float,
        invalid_fraction: float = 0.0,
        unknown_fraction: float = 0.0,
        duration: float | None = None,
        max_requests: int | None = None,
        workers: int = 8,
        timeout: float = 5.0,
        seed: int | None = None,
    ) -> None:
        if duration is None and max_requests is None:
            raise ValueError("give a duration or max_requests: the load must end by itself")
        if duration is not None and duration <= 0:
            raise ValueError(f"duration must be positive, not {duration}")
        if max_requests is not None and max_requests <= 0:
            raise ValueError(f"max_requests must be positive, not {max_requests}")
        if workers < 1:
            raise ValueError(f"workers must be at least 1, not {workers}")
        parts = urlsplit(url)
        if parts.scheme != "http" or parts.hostname is None:
            raise ValueError(f"url must be http://host:port, not {url!r}")
        self._host = parts.hostname
        self._port = parts.port or 80
        self._duration = duration
        self._max_requests = max_requests
        self._timeout = timeout
        self._lock = threading.Lock()
        self._rate = 0.0
        self._invalid = 0.0
        self._unknown = 0.0
        self.set_rate(rate)
        self.set_fractions(invalid=invalid_fraction, unknown=unknown_fraction)
        self._random = random.Random(seed)
        self._tally = _Tally()
        self._queue: queue.Queue[PreparedRequest | None] = queue.Queue(maxsize=2 * workers)
        self._abort = threading.Event()
        self._threads = [threading.Thread(target=self._dispatch, name="load-dispatch", daemon=True)]
        self._threads += [
            threading.Thread(target=self._work, name=f"load-worker-{n}", daemon=True)
            for n in range(workers)
        ]
        self._workers_left = workers
        self._started_at: float | None = None
        self._ended_at: float | None = None

    def set_rate(self, rate: float) -> None:
        """Requests per second from now on; 0 pauses."""
        if rate < 0:
            raise ValueError(f"rate must not be negative, not {rate}")
        with self._lock:
            self._rate = rate

    def set_invalid_fraction(self, fraction: float) -> None:
        self.set_fractions(invalid=fraction)

    def set_unknown_fraction(self, fraction: float) -> None:
        self.set_fractions(unknown=fraction)

    def set_fractions(self, *, invalid: float | None = None, unknown: float | None = None) -> None:
        """Change the shares of deprecated and of unknown stages; together at most 1."""
        with self._lock:
            new_invalid = self._invalid if invalid is None else invalid
            new_unknown = self._unknown if unknown is None else unknown
            _check_fraction("invalid_fraction", new_invalid)
            _check_fraction("unknown_fraction", new_unknown)
            if new_invalid + new_unknown > 1.0:
                raise ValueError(
                    f"invalid_fraction + unknown_fraction must be at most 1, "
                    f"not {new_invalid} + {new_unknown}"
                )
            self._invalid, self._unknown = new_invalid, new_unknown

    def set_injected_latency(self, seconds: float) -> dict[str, Any]:
        """Ask the app to add `seconds` to every validation (POST /admin/faults)."""
        status, body = self._call("POST", "/admin/faults", {"latency_seconds": seconds})
        if status != 200:
            raise RuntimeError(f"the app refused the latency change ({status}): {body}")
        return dict(body)

    def start(self) -> Self:
        if self._started_at is not None:
            raise RuntimeError("a load generator runs once; create another one")
        self._started_at = time.monotonic()
        for thread in self._threads:
            thread.start()
        return self

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for the run to end by itself; True once it has."""
        if self._started_at is None:
            raise RuntimeError("the load generator was not started")
        deadline = None if timeout is None else time.monotonic() + timeout
        for thread in self._threads:
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            thread.join(remaining)
            if thread.is_alive():
                return False
        return True

    def stop(self, timeout: float = 10.0) -> LoadStats:
        """End the run now: queued requests are dropped, requests in flight finish."""
        self._abort.set()
        if self._started_at is not None and not self.wait(timeout):
            raise RuntimeError(f"load threads still running after {timeout}s")
        return self.stats()

    def run(self) -> LoadStats:
        """Start, wait for the end, and return the totals."""
        self.start()
        self.wait()
        return self.stats()

    @property
    def running(self) -> bool:
        return any(thread.is_alive() for thread in self._threads)

    def stats(self) -> LoadStats:
        now = time.monotonic()
        with self._lock:
            started = self._started_at if self._started_at is not None else now
            ended = self._ended_at if self._ended_at is not None else now
            return LoadStats(
                sent=self._tally.sent,
                responses=dict(self._tally.responses),
                transport_errors=self._tally.transport_errors,
                dropped=self._tally.dropped,
                elapsed_seconds=ended - started,
            )

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _dispatch(self) -> None:
        assert self._started_at is not None
        start = self._started_at
        due = start
        ticks = 0
        try:
            while not self._abort.is_set():
                now = time.monotonic()
                if self._duration is not None and now - start >= self._duration:
                    break
                if self._max_requests is not None and ticks >= self._max_requests:
                    break
                with self._lock:
                    rate = self._rate
                if rate <= 0:
                    due = now
                    self._abort.wait(0.05)
                    continue
                if due > now:
                    self._abort.wait(min(due - now, 0.05))
                    continue
                ticks += 1
                try:
                    self._queue.put_nowait(self._prepare())
                except queue.Full:
                    with self._lock:
                        self._tally.dropped += 1
                # After a long stall, resume the schedule instead of bursting to catch up.
                due = max(due + 1.0 / rate, now - 1.0)
        finally:
            for _ in range(len(self._threads) - 1):
                self._queue.put(None)

    def _work(self) -> None:
        try:
            self._work_until_told()
        finally:
            with self._lock:
                self._workers_left -= 1
                if self._workers_left == 0:
                    self._ended_at = time.monotonic()

    def _work_until_told(self) -> None:
        while True:
            request = self._queue.get()
            if request is None:
                return
            if self._abort.is_set():
                with self._lock:
                    self._tally.dropped += 1
                continue
            status = self._send(request)
            with self._lock:
                self._tally.sent += 1
                if status is None:
                    self._tally.transport_errors += 1
                else:
                    self._tally.responses[status] += 1

    def _prepare(self) -> PreparedRequest:
        with self._lock:
            invalid, unknown = self._invalid, self._unknown
        draw = self._random
        endpoint = draw.choice(tuple(ENDPOINT_CALLS))
        method, path = draw.choice(ENDPOINT_CALLS[endpoint])
        stages = draw.sample(CANONICAL_STAGES, draw.randint(1, 3))
        roll = draw.random()
        if roll < unknown:
            stages[0] = draw.choice(UNKNOWN_SAMPLES)
        elif roll < unknown + invalid:
            stages[0] = draw.choice(DEPRECATED_SAMPLES)
        fund_id = draw.randint(1, 50)
        body: dict[str, Any]
        if method == "GET":
            path = path.format(fund_id=fund_id) + "?" + urlencode([("stage", s) for s in stages])
            return PreparedRequest(method, path, None, uuid.uuid4().hex)
        if endpoint == "/api/allocations":
            body = {"fundId": fund_id, "stage": stages[0], "amount": draw.randint(1, 100) * 1000}
        else:
            weight = round(1.0 / len(stages), 6)
            body = {
                "fundId": fund_id,
                "runs": 1000,
                "stageDistribution": [{"stage": s, "weight": weight} for s in stages],
            }
        return PreparedRequest(method, path, json.dumps(body).encode(), uuid.uuid4().hex)

    def _send(self, request: PreparedRequest) -> int | None:
        headers = {"X-Request-Id": request.request_id}
        if request.body is not None:
            headers["Content-Type"] = "application/json"
        connection = http.client.HTTPConnection(self._host, self._port, timeout=self._timeout)
        try:
            connection.request(request.method, request.path, body=request.body, headers=headers)
            response = connection.getresponse()
            response.read()
            return response.status
        except (OSError, http.client.HTTPException):
            return None
        finally:
            connection.close()

    def _call(self, method: str, path: str, payload: Mapping[str, Any]) -> tuple[int, Any]:
        connection = http.client.HTTPConnection(self._host, self._port, timeout=self._timeout)
        try:
            connection.request(
                method,
                path,
                body=json.dumps(payload).encode(),
                headers={"Content-Type": "application/json"},
            )
            response = connection.getresponse()
            return response.status, json.loads(response.read() or b"null")
        finally:
            connection.close()


def main(argv: Sequence[str] | None = None) -> int:
    """Run one bounded load and print its totals as JSON."""
    parser = argparse.ArgumentParser(
        prog="python -m examples.reference_app.load", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--url", required=True, help="the app, e.g. http://127.0.0.1:3333")
    parser.add_argument("--rate", type=float, default=10.0, help="requests per second")
    parser.add_argument("--invalid-fraction", type=float, default=0.0)
    parser.add_argument("--unknown-fraction", type=float, default=0.0)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds (default 10)")
    parser.add_argument("--max-requests", type=int, default=None)
    parser.add_argument("--latency", type=float, default=None, help="set the app's extra latency")
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args(argv)
    try:
        load = LoadGenerator(
            args.url,
            rate=args.rate,
            invalid_fraction=args.invalid_fraction,
            unknown_fraction=args.unknown_fraction,
            duration=args.duration,
            max_requests=args.max_requests,
            workers=args.workers,
            seed=args.seed,
        )
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if args.latency is not None:
        load.set_injected_latency(args.latency)
    load.start()
    try:
        load.wait()
    except KeyboardInterrupt:
        load.stop()
    stats = load.stats()
    summary = {
        "sent": stats.sent,
        "responses": {str(code): count for code, count in sorted(stats.responses.items())},
        "transport_errors": stats.transport_errors,
        "dropped": stats.dropped,
        "elapsed_seconds": round(stats.elapsed_seconds, 3),
    }
    print(json.dumps(summary), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
