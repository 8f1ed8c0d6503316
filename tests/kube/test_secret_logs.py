"""Secrets stay secret: planted tokens, webhook paths and answer bodies never reach the logs.

Logging is configured as the operator configures it (`configure_logging`), at
DEBUG, so that the HTTP libraries' own loggers (urllib3, requests, httpx,
httpcore, the kubernetes client) would speak if they could. Then the operator's
code paths run against real servers of the tests' own: the API-server emulator
with a token-authenticated client, a real Prometheus reached with a token file and
a hostile one that answers errors quoting the secret, webhooks that refuse with a
body. Every line written is searched for every planted secret.
"""

from __future__ import annotations

import io
import logging
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from controller.kube.api import CONFIGMAPS, ROLLOUTS, KubeApi
from controller.kube.reconciler import Reconciler
from controller.notifications import NotificationSink, Notifier
from controller.prometheus.source import PrometheusSettings, PrometheusSource
from controller.redaction import QUIET_LOGGERS
from controller.telemetry import configure_logging
from phases.actions import Event, EventKind
from tests.kube.operator_world import OPERATOR_USER, make_world
from tests.support.kube_emulator import KubeEmulator

KUBE_TOKEN = "kube-token-Zq81xVb0"
CONFIGMAP_SECRET = "configmap-body-Hh27sd"
PROM_TOKEN = "prom-token-Pw93kLm2"
PROM_BODY_SECRET = "prom-body-Yt64nQ"
WEBHOOK_PATH = "/services/T0ABC/B0DEF/hookpath-Xr55aa"
WEBHOOK_TOKEN = "webhook-token-Ui88ee"
WEBHOOK_HEADER = "header-secret-Oo12pp"
WEBHOOK_BODY_SECRET = "webhook-body-Ll09kk"


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    """The operator's log configuration at DEBUG, written to a buffer; restored after."""
    root = logging.getLogger()
    saved = (root.handlers[:], root.level, {n: logging.getLogger(n).level for n in QUIET_LOGGERS})
    buffer = io.StringIO()
    configure_logging("DEBUG", stream=buffer)
    try:
        yield buffer
    finally:
        root.handlers[:], root.level = saved[0], saved[1]
        for name, level in saved[2].items():
            logging.getLogger(name).setLevel(level)


class _Hostile(BaseHTTPRequestHandler):
    """Answers every request with an error whose body quotes what it was sent."""

    body = b""
    code = 500

    def _answer(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(self.code)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    do_GET = do_POST = _answer

    def log_message(self, format: str, *args: Any) -> None:
        return


def serve(body: bytes, code: int) -> tuple[ThreadingHTTPServer, str]:
    handler = type("Handler", (_Hostile,), {"body": body, "code": code})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


def assert_clean(buffer: io.StringIO, *secrets: str) -> None:
    text = buffer.getvalue()
    assert text, "nothing was logged: the test would prove nothing"
    leaked = [s for s in secrets if s in text]
    lines = [line for line in text.splitlines() if any(s in line for s in leaked)]
    assert not leaked, f"secrets {leaked} in the logs: {lines[:3]}"


def test_webhook_paths_tokens_and_refusals_stay_out_of_the_logs(
    captured: io.StringIO, tmp_path: Path
) -> None:
    refusing, base = serve(f"no such hook {WEBHOOK_PATH}: {WEBHOOK_BODY_SECRET}".encode(), 400)
    token = tmp_path / "token"
    token.write_text(WEBHOOK_TOKEN, encoding="utf-8")
    sinks = [
        NotificationSink(
            url=base + WEBHOOK_PATH,
            kind="slack",
            headers={"X-Api-Key": WEBHOOK_HEADER},
            bearerTokenFile=token,
        ),
        NotificationSink(url="http://127.0.0.1:9" + WEBHOOK_PATH, timeout=0.5),
    ]
    event = Event(EventKind.ROLLBACK, "3@25", "rolled back", True)
    try:
        with Notifier(sinks, attempts=2, backoff=0.01) as notifier:
            notifier.notify("shop", "api", [event], datetime(2026, 3, 2, tzinfo=UTC))
    finally:
        refusing.shutdown()
    assert notifier.failed == 2
    assert "failed: HTTP 400" in captured.getvalue(), "the refusal itself is still logged"
    assert_clean(
        captured,
        WEBHOOK_PATH,
        "hookpath-Xr55aa",
        WEBHOOK_TOKEN,
        WEBHOOK_HEADER,
        WEBHOOK_BODY_SECRET,
    )


@pytest.mark.prometheus
def test_prometheus_tokens_and_answer_bodies_stay_out_of_the_logs(
    captured: io.StringIO, tmp_path: Path, prometheus_server: Callable[..., Any]
) -> None:
    token = tmp_path / "prom-token"
    token.write_text(PROM_TOKEN, encoding="utf-8")
    real = prometheus_server()
    hostile, hostile_url = serve(f'{{"error": "{PROM_BODY_SECRET} {PROM_TOKEN}"}}'.encode(), 500)
    now = datetime.now(UTC)
    try:
        for url in (real.url, hostile_url):
            settings = PrometheusSettings(url=url, bearer_token_file=token, retries=0)
            source = PrometheusSource(settings, timedelta(minutes=1))
            try:
                source.summarize("up", "up", timedelta(minutes=5), now)
                source.firing_alerts(["HighErrors"], now)
            finally:
                source.close()
    finally:
        hostile.shutdown()
    logging.getLogger("stage_rollout.test").debug("probe with %s", f"Bearer {PROM_TOKEN}")
    assert_clean(captured, PROM_TOKEN, PROM_BODY_SECRET)


def test_kubernetes_tokens_and_response_bodies_stay_out_of_the_logs(
    captured: io.StringIO, kube_emulator: Callable[..., KubeEmulator]
) -> None:
    emulator = kube_emulator(rollout_delay=0.01, job_delay=0.01)
    world = make_world(emulator)
    world.api.create(
        CONFIGMAPS,
        world.namespace,
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "flags", "namespace": world.namespace},
            "data": {"database-password": CONFIGMAP_SECRET},
        },
    )
    emulator.add_token(KUBE_TOKEN, OPERATOR_USER)
    api = KubeApi(emulator.api_client(KUBE_TOKEN))
    reconciler = Reconciler(api, lambda _spec, _plan: world.source)
    for _ in range(2):
        world.now += timedelta(minutes=1)
        reconciler.reconcile(world.namespace, world.name, world.now)
    # The operator itself may not read ConfigMaps: it read and patched this one as the
    # rollout's ServiceAccount, through the token-authenticated connection.
    flags = world.flags()  # read as the cluster admin
    assert flags.get("database-password") == CONFIGMAP_SECRET
    assert flags.get("STAGE_VALIDATION_MODE") == "warn", "the reconciler never wrote the target"
    assert_clean(captured, KUBE_TOKEN, CONFIGMAP_SECRET)


def test_a_kubeconfig_token_stays_out_of_logs_and_conditions_whatever_its_cluster_answers(
    captured: io.StringIO, kube_emulator: Callable[..., KubeEmulator]
) -> None:
    """A hostile "cluster" behind a rollout's kubeconfig answers with a long body quoting
    the token it was sent; neither the operator's log nor the rollout's condition repeats it."""
    from tests.kube.test_environments import (
        condition,
        env_world,
        kubeconfig,
        kubeconfig_secret,
        staging_namespace,
        with_environments,
    )

    token = "kubeconfig-token-Rt41mm"
    hostile, url = serve(f'{{"message": "{token} {"x" * 5000}"}}'.encode(), 500)
    try:
        world = env_world(kube_emulator(rollout_delay=0.05))
        kubeconfig_secret(world, "prod-cluster", kubeconfig(url, {"token": token}))
        production = {
            "target": {"configMap": "flags"},
            "kubeconfigSecret": {"name": "prod-cluster"},
        }
        with_environments(world, {"staging": staging_namespace(world), "production": production})
        reconciler = world.reconciler()
        world.tick(reconciler)
        # Where the rollout stands in production, each tick reads the hostile cluster.
        rollout = world.rollout()
        status = {**rollout["status"], "step": "e@50", "state": "soaking"}
        world.api.replace_status(
            ROLLOUTS, world.namespace, world.name, {**rollout, "status": status}
        )
        world.tick(reconciler, advance=timedelta(minutes=1))
    finally:
        hostile.shutdown()
    valid = condition(world, "Valid")
    assert valid["reason"] == "ClusterError" and "HTTP 500" in valid["message"], valid
    assert token not in valid["message"] and len(valid["message"]) < 600
    assert_clean(captured, token)
