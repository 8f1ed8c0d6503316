"""Fixtures shared by the whole suite: a real Prometheus and the reference app.

Both are factories so that a test states what it needs (targets, rules, history,
flags) and the fixture only guarantees that everything it started is stopped.
"""

from __future__ import annotations

import faulthandler
import sys
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest

# examples/ is not an installed package; the repository root makes it importable
# whichever way pytest is launched.
REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from examples.reference_app.server import ReferenceApp  # noqa: E402
from examples.reference_app.validation import AppConfig  # noqa: E402
from tests.support.backfill import Series  # noqa: E402
from tests.support.prometheus import (  # noqa: E402
    PrometheusBinaries,
    PrometheusNotInstalled,
    PrometheusServer,
)

EXIT_GRACE_SECONDS = 120
"""How long the interpreter may take to exit once the session ends."""


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config: pytest.Config) -> None:
    """A thread still running at the end fails the run with every thread's stack.

    Python joins the threads of every thread pool before it exits, so a worker stuck
    in a deadlock would otherwise hold CI until its time limit, and print nothing.
    """
    faulthandler.dump_traceback_later(EXIT_GRACE_SECONDS, exit=True, file=sys.__stderr__)


@pytest.fixture(scope="session")
def prometheus_binary() -> PrometheusBinaries:
    """The prometheus and promtool binaries; a missing one fails the test, never skips it."""
    try:
        return PrometheusBinaries.locate()
    except PrometheusNotInstalled as error:
        missing = str(error)
    pytest.fail(missing, pytrace=False)


@pytest.fixture
def prometheus_server(
    prometheus_binary: PrometheusBinaries, tmp_path: Path
) -> Iterator[Callable[..., PrometheusServer]]:
    """Make Prometheus servers: ``prometheus_server(scrape_targets=..., history=[...])``.

    Keyword arguments go to `PrometheusServer`; `history` is backfilled before the
    first start, and ``start=False`` leaves the server stopped.
    """
    servers: list[PrometheusServer] = []

    def make(
        *, history: Iterable[Series] = (), start: bool = True, **options: Any
    ) -> PrometheusServer:
        server = PrometheusServer(
            tmp_path / f"prometheus-{len(servers)}", binaries=prometheus_binary, **options
        )
        servers.append(server)
        history = list(history)
        if history:
            server.backfill(history)
        if start:
            server.start()
        return server

    yield make
    for server in servers:
        server.close()


@pytest.fixture
def reference_app() -> Iterator[Callable[..., ReferenceApp]]:
    """Start reference apps on free loopback ports: ``reference_app(AppConfig(mode="enforce"))``."""
    apps: list[ReferenceApp] = []

    def make(config: AppConfig | None = None, **options: Any) -> ReferenceApp:
        app = ReferenceApp(config, **options).start()
        apps.append(app)
        return app

    yield make
    for app in apps:
        app.stop()
