"""`plan validate --prometheus` says which signals return no data now, against a real server."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from typer.testing import CliRunner

from controller.catalog import load_plan
from controller.cli.main import app
from tests.support.prometheus import PrometheusServer


@pytest.mark.prometheus
def test_every_signal_without_data_is_warned_about(
    prometheus_server: Callable[..., PrometheusServer],
) -> None:
    server = prometheus_server()  # scrapes nothing: every query is valid and empty
    result = CliRunner().invoke(
        app, ["plan", "validate", "stage-validation-v3", "--prometheus", server.url]
    )
    assert result.exit_code == 0, result.stderr
    signals = sorted(load_plan().signals)
    warned = sorted(
        line.split("signal ", 1)[1].split(" ", 1)[0]
        for line in result.stderr.splitlines()
        if line.startswith("stagectl: warning: signal ")
    )
    assert warned == signals
    assert f"{len(signals)} of them return no data now" in result.stdout
    assert "its gates stay unknown (nothing promotes)" in result.stderr
