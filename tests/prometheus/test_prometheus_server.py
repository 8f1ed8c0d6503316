"""The Prometheus test server: starts, scrapes, restarts on the same TSDB, fails loudly."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from examples.reference_app.server import ReferenceApp
from tests.support.prometheus import (
    PrometheusBinaries,
    PrometheusNotInstalled,
    PrometheusServer,
    PrometheusStartError,
)

MakeServer = Callable[..., PrometheusServer]
MakeApp = Callable[..., ReferenceApp]


def test_missing_binaries_are_reported_with_the_install_command(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(PrometheusNotInstalled) as raised:
        PrometheusBinaries.locate()
    message = str(raised.value)
    assert "prometheus and promtool not found" in message
    assert "apt-get install -y prometheus" in message


@pytest.mark.prometheus
def test_the_binaries_are_the_debian_2_42_release(prometheus_binary: PrometheusBinaries) -> None:
    assert prometheus_binary.version.startswith("prometheus, version 2.42")


@pytest.mark.prometheus
def test_the_server_scrapes_and_keeps_its_data_across_a_restart(
    prometheus_server: MakeServer, reference_app: MakeApp
) -> None:
    app = reference_app()
    server = prometheus_server(scrape_targets={"stage-app": [f"127.0.0.1:{app.port}"]})
    assert server.url.startswith("http://127.0.0.1:")
    server.wait_for('up{job="stage-app"}', lambda up: up == 1)
    scrapes = server.wait_for('count_over_time(up{job="stage-app"}[1h])', lambda n: n >= 2)
    port = server.port

    server.stop()
    assert not server.running
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{server.url}/-/ready", timeout=1)

    server.restart()
    assert server.port == port
    kept = server.value('count_over_time(up{job="stage-app"}[1h])')
    assert kept is not None and kept >= scrapes
    server.wait_for('count_over_time(up{job="stage-app"}[1h])', lambda n: n > kept)


def rule_file(path: Path, record: str, value: int) -> Path:
    path.write_text(
        f"groups:\n  - name: {record}\n    rules:\n"
        f"      - record: {record}\n        expr: vector({value})\n"
    )
    return path


@pytest.mark.prometheus
def test_the_server_loads_rule_files_and_reloads_new_ones(
    prometheus_server: MakeServer, tmp_path: Path
) -> None:
    server = prometheus_server(rule_files=[rule_file(tmp_path / "a.yml", "answer", 42)])
    assert server.wait_for("answer", timeout=10) == 42
    server.rule_files.append(rule_file(tmp_path / "b.yml", "question", 7))
    server.reload()
    assert server.wait_for("question", timeout=10) == 7


@pytest.mark.prometheus
def test_a_server_that_cannot_start_says_why(prometheus_server: MakeServer) -> None:
    with pytest.raises(PrometheusStartError) as raised:
        prometheus_server(extra_args=["--query.timeout=forever"])
    message = str(raised.value)
    assert "exited with 2" in message
    assert "--query.timeout=forever" in message
    assert 'not a valid duration string: "forever"' in message


def test_scrape_targets_must_be_loopback(tmp_path: Path) -> None:
    binaries = PrometheusBinaries(Path("prometheus"), Path("promtool"), "")
    with pytest.raises(ValueError, match="loopback"):
        PrometheusServer(tmp_path, binaries=binaries, scrape_targets={"x": ["10.0.0.1:80"]})
