"""One bounded HTTP exchange with a Prometheus: a deadline, a size cap, no redirects.

Why httpx and not `prometheus-api-client` on `requests`: the exchange must end at
one deadline whatever the server does, retries and `Retry-After` waits included;
the body must be counted both as sent and as expanded, because a gzip answer of
1 MB can expand to hundreds; and nothing may be followed elsewhere. `requests`
decodes gzip inside urllib3 without a bound per read and its `Retry` honours
`Retry-After` up to hours, so we would have reimplemented the loop and the
decoder anyway. httpx gives the raw body stream (`iter_raw`), refuses redirects
by default, and takes a timeout per request, which is all this module needs.

The deadline holds for the caller exactly: the exchange runs on a worker thread
and the caller stops waiting when the deadline passes. A worker left behind
stops at its next chunk or at its read timeout (never longer than the deadline),
and its answer is dropped.

Memory: every answer is capped (`max_answer_bytes`, compressed and expanded), and
all answers being read at once share one process-wide budget, so a thousand
rollouts whose Prometheus all answer with 50 MB cannot take the operator past its
memory limit: the query that would exceed the budget is refused (`unknown`).
"""

from __future__ import annotations

import email.utils
import gc
import math
import ssl
import threading
import time
import zlib
from collections.abc import Callable, Generator, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC
from pathlib import Path
from typing import Any, TypeVar

import httpx

from controller.clock import SystemClock
from controller.files import FileUnusable, read_text
from controller.prometheus.answers import UnusableAnswer, excerpt, parse_json, read_error

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
SECRET_FILE_BYTES = 64 * 1024
_EXPAND_STEP = 64 * 1024
ResultT = TypeVar("ResultT")


class QueryFailed(Exception):
    """A query that gave no usable answer, with the reason in words."""


@dataclass(frozen=True, slots=True)
class ExchangeLimits:
    """What bounds one query: its deadline, retries, backoff and answer size."""

    deadline_seconds: float
    retries: int
    backoff_seconds: float
    max_answer_bytes: int


class AnswerBudget:
    """Memory that answers being read at once may take, across every source of the process.

    An answer is charged `PARSED_FACTOR` times its expanded size while it is read and
    parsed; parsing itself is limited to `PARSING` answers at a time.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._used = 0
        self._lock = threading.Lock()

    def take(self, count: int) -> None:
        with self._lock:
            if self._used + count > self.limit:
                raise QueryFailed(
                    f"answers being read at once already hold {self._used // 1024} KiB of the "
                    f"operator's {self.limit // 1024} KiB budget; this query is not read now"
                )
            self._used += count

    def give(self, count: int) -> None:
        with self._lock:
            self._used -= count


# Bytes read are held twice (the chunks and the joined body) before parsing.
PARSED_FACTOR = 2
# Parsing holds the GIL anyway, so one at a time costs no throughput. A parsed 1 MiB
# range answer takes about 10.5 MiB (tracemalloc); with every thread parsing at once
# the heap of tests/prometheus/test_answer_memory.py grew past the Deployment's 256 Mi.
# With one parse, 16 MiB of answer bytes in flight and gzip expanded 64 KiB at a time,
# its peak RSS was 152-160 MiB.
PARSING = threading.BoundedSemaphore(1)
ANSWER_BUDGET = AnswerBudget(16 * 1024 * 1024)


def read_secret(path: Path, what: str) -> str:
    """A token or password file, capped in size; QueryFailed naming it when unusable."""
    try:
        return read_text(path, what, limit=SECRET_FILE_BYTES).strip()
    except FileUnusable as error:
        raise QueryFailed(str(error)) from None


class TokenFileAuth(httpx.Auth):
    """A bearer token read from a file, read again whenever the file changes (rotation)."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._lock = threading.Lock()
        self._stamp: tuple[float, int] | None = None
        self._token = ""

    def token(self) -> str:
        try:
            stat = self._path.stat()
        except OSError as error:
            raise QueryFailed(f"bearer token file {self._path}: {error.strerror}") from None
        stamp = (stat.st_mtime, stat.st_size)
        with self._lock:
            if stamp != self._stamp:
                self._token = read_secret(self._path, "bearer token file")
                self._stamp = stamp
            return self._token

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Authorization"] = f"Bearer {self.token()}"
        yield request


class BearerToken(httpx.Auth):
    """A bearer token held in memory (from a rollout's Secret), never a file a rollout chose."""

    def __init__(self, token: str) -> None:
        self._token = token

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Authorization"] = f"Bearer {self._token}"
        yield request


class PasswordFileAuth(httpx.Auth):
    """Basic auth whose password is read from a file at each request."""

    def __init__(self, user: str, password_file: Path) -> None:
        self._user = user
        self._password_file = password_file

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        password = read_secret(self._password_file, "password file")
        yield from httpx.BasicAuth(self._user, password).auth_flow(request)


def tls_verification(ca_file: Path | None, insecure: bool) -> ssl.SSLContext | bool:
    """What httpx verifies the server with; QueryFailed when the CA bundle is unusable."""
    if ca_file is None:
        return not insecure
    try:
        return ssl.create_default_context(cafile=str(ca_file))
    except (OSError, ssl.SSLError) as error:
        reason = getattr(error, "strerror", None) or str(error)
        raise QueryFailed(f"CA bundle {ca_file} cannot be used: {reason}") from None


class Exchanger:
    """GETs against one Prometheus, each bounded by `ExchangeLimits`."""

    def __init__(
        self,
        base_url: str,
        limits: ExchangeLimits,
        *,
        auth: httpx.Auth | None,
        verify: ssl.SSLContext | bool,
        concurrency: int,
        budget: AnswerBudget = ANSWER_BUDGET,
    ) -> None:
        self._base = base_url.rstrip("/")
        self.limits = limits
        self._budget = budget
        self._client = httpx.Client(
            auth=auth,
            verify=verify,
            follow_redirects=False,
            trust_env=False,
            headers={"Accept": "application/json", "Accept-Encoding": "gzip, deflate"},
            limits=httpx.Limits(max_connections=concurrency * 2),
        )
        # Twice the callers: a worker abandoned at its deadline must not starve the next.
        self._workers = ThreadPoolExecutor(
            max_workers=concurrency * 2, thread_name_prefix="prometheus-exchange"
        )

    def close(self) -> None:
        self._workers.shutdown(wait=False, cancel_futures=True)
        self._client.close()

    def get(
        self, path: str, params: Mapping[str, str], reader: Callable[[Any], ResultT]
    ) -> ResultT:
        """GET `path` and apply `reader` to its JSON; QueryFailed with the reason otherwise."""
        deadline = time.monotonic() + self.limits.deadline_seconds
        abandoned = threading.Event()
        future = self._workers.submit(self._exchange, path, params, reader, deadline, abandoned)
        try:
            return future.result(timeout=max(0.0, deadline - time.monotonic()))
        except FutureTimeout:
            abandoned.set()
            raise QueryFailed(self._late()) from None
        except UnusableAnswer as error:
            raise QueryFailed(str(error)) from None
        except QueryFailed:
            raise
        except Exception as error:
            # Whatever else an exchange raises still ends as an unknown, never a crashed tick.
            raise QueryFailed(
                f"the query failed: {type(error).__name__}: {excerpt(str(error))}"
            ) from None

    def _late(self) -> str:
        return (
            f"Prometheus did not answer within the query timeout "
            f"({self.limits.deadline_seconds:g}s, retries included)"
        )

    def _exchange(
        self,
        path: str,
        params: Mapping[str, str],
        reader: Callable[[Any], ResultT],
        deadline: float,
        abandoned: threading.Event,
    ) -> ResultT:
        for attempt in range(self.limits.retries + 1):
            remaining = deadline - time.monotonic()
            if remaining <= 0 or abandoned.is_set():
                raise QueryFailed(self._late())
            try:
                with self._client.stream(
                    "GET", self._base + path, params=params, timeout=httpx.Timeout(remaining)
                ) as response:
                    wait = self._retry_wait(response, attempt, deadline)
                    if wait is None:
                        return self._answer(response, reader, deadline, abandoned)
            except httpx.ConnectError as error:
                if attempt == self.limits.retries:
                    raise QueryFailed(f"Prometheus unreachable: {_cause(error)}") from None
                wait = self._backoff(attempt)
            except httpx.TimeoutException:
                raise QueryFailed(self._late()) from None
            except httpx.TransportError as error:
                raise QueryFailed(f"request to Prometheus failed: {_cause(error)}") from None
            except (httpx.InvalidURL, UnicodeError) as error:
                raise QueryFailed(f"the Prometheus URL cannot be used: {_cause(error)}") from None
            if wait > deadline - time.monotonic():
                raise QueryFailed(self._late())
            abandoned.wait(wait)
        raise QueryFailed(self._late())  # pragma: no cover - the loop always returns or raises

    def _backoff(self, attempt: int) -> float:
        return float(self.limits.backoff_seconds * (2**attempt))

    def _retry_wait(self, response: httpx.Response, attempt: int, deadline: float) -> float | None:
        """None to read this answer; otherwise how long to wait before the next attempt."""
        code = response.status_code
        if 300 <= code < 400:
            target = excerpt(response.headers.get("location", "nowhere"))
            raise QueryFailed(
                f"Prometheus answered a redirect (HTTP {code} to {target}); redirects are not followed"
            )
        if code not in RETRY_STATUSES or attempt == self.limits.retries:
            return None
        asked = retry_after_seconds(response.headers.get("retry-after"))
        wait = self._backoff(attempt) if asked is None else asked
        if wait > deadline - time.monotonic():
            raise QueryFailed(
                f"Prometheus answered HTTP {code} and asked to retry after {excerpt(wait)}s, "
                f"past the query's deadline of {self.limits.deadline_seconds:g}s"
            )
        return wait

    def _answer(
        self,
        response: httpx.Response,
        reader: Callable[[Any], ResultT],
        deadline: float,
        abandoned: threading.Event,
    ) -> ResultT:
        with self._reserved() as take:
            body = read_capped(response, self.limits.max_answer_bytes, deadline, abandoned, take)
            if response.status_code != 200:
                raise QueryFailed(_http_error(response.status_code, body))
            with PARSING, _collector_paused():
                return reader(parse_json(body))

    @contextmanager
    def _reserved(self) -> Iterator[Callable[[int], None]]:
        taken = 0

        def take(count: int) -> None:
            nonlocal taken
            self._budget.take(count)
            taken += count

        try:
            yield take
        finally:
            self._budget.give(taken)


@contextmanager
def _collector_paused() -> Iterator[None]:
    """No cycle collection while one answer is parsed (callers hold `PARSING`).

    A range answer is a tree of small lists, tens of thousands of them, and none
    in a cycle: reference counting frees them all, while the collections their
    allocation sets off walked every live object and took half of the parse's CPU.
    Parses can follow one another without a pause, so the young generation is
    collected once after each, as the allocations would have had it collected:
    the cycles other threads left meanwhile (a refused answer's traceback) go.
    """
    paused = gc.isenabled()
    if paused:
        gc.disable()
    try:
        yield
    finally:
        if paused:
            gc.enable()
            if gc.get_count()[0] >= gc.get_threshold()[0]:
                gc.collect(0)


def read_capped(
    response: httpx.Response,
    cap: int,
    deadline: float,
    abandoned: threading.Event,
    take: Callable[[int], None],
) -> bytes:
    """The decoded body, refused past `cap` bytes on the wire or expanded, or past the deadline."""
    declared = response.headers.get("content-length", "")
    if declared.isascii() and declared.isdigit() and int(declared) > cap:
        raise QueryFailed(
            f"Prometheus announced an answer of {declared} bytes, over the {_size(cap)} cap"
        )
    decoder = _decoder(response.headers.get("content-encoding", "identity"))
    parts: list[bytes] = []
    try:
        _read_into(parts, response, decoder, cap, deadline, abandoned, take)
    except BaseException:
        # The traceback keeps this frame alive until the garbage collector finds the
        # cycle: drop the megabytes now, or a pass of refused answers piles them up.
        parts.clear()
        raise
    return b"".join(parts)


def _read_into(
    parts: list[bytes],
    response: httpx.Response,
    decoder: Any,
    cap: int,
    deadline: float,
    abandoned: threading.Event,
    take: Callable[[int], None],
) -> None:
    wire = expanded = 0
    for chunk in response.iter_raw():
        wire += len(chunk)
        if wire > cap:
            raise QueryFailed(f"Prometheus sent more than the {_size(cap)} cap on one answer")
        piece = chunk
        while piece:
            # Expand 64 KiB at a time, so that the budget sees a bomb before it is whole.
            room = min(_EXPAND_STEP, cap - expanded + 1)
            out: bytes = decoder.decompress(piece, room) if decoder else piece
            piece = decoder.unconsumed_tail if decoder else b""
            expanded += len(out)
            if expanded > cap:
                raise QueryFailed(f"Prometheus's answer expands past the {_size(cap)} cap")
            take(len(out) * PARSED_FACTOR)
            parts.append(out)
        if time.monotonic() > deadline or abandoned.is_set():
            raise QueryFailed("Prometheus did not finish its answer within the query timeout")


def _decoder(encoding: str) -> Any:
    name = encoding.strip().lower()
    if name in ("", "identity"):
        return None
    if name == "gzip":
        return zlib.decompressobj(16 + zlib.MAX_WBITS)
    if name == "deflate":
        return zlib.decompressobj()
    raise QueryFailed(f"Prometheus answered in the encoding {excerpt(encoding)}, not asked for")


def retry_after_seconds(header: str | None) -> float | None:
    """A `Retry-After` header in seconds (delta or HTTP date); None when absent or unreadable."""
    if header is None:
        return None
    text = header.strip()
    if text.isascii() and text.isdigit():
        return float(text[:12])
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    seconds = (when - SystemClock().now()).total_seconds()
    return max(0.0, seconds) if math.isfinite(seconds) else None


def _http_error(code: int, body: bytes) -> str:
    try:
        words = read_error(parse_json(body))
    except UnusableAnswer:
        words = None
    if words is not None:
        return words if "bad_data" in words else f"HTTP {code} from Prometheus: {words}"
    text = body[:200].decode("utf-8", errors="replace")
    return f"HTTP {code} from Prometheus: {excerpt(text)}"


def _cause(error: BaseException) -> str:
    while error.__cause__ is not None or error.__context__ is not None:
        error = error.__cause__ or error.__context__  # type: ignore[assignment]
    return excerpt(str(error) or type(error).__name__)


def _size(count: int) -> str:
    return f"{count / (1024 * 1024):g} MiB" if count >= 1024 * 1024 else f"{count} bytes"
