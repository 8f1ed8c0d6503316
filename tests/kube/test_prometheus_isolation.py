"""Prometheus endpoints are the operator's: a rollout chooses one by name, or brings a URL
and a Secret of its own namespace; it never makes the operator read a file or send the
operator's credentials elsewhere.

A real Prometheus answers; a recording HTTP server of the test's own stands in front
of it (or alone, as the attacker's server) and keeps every Authorization header.
"""

from __future__ import annotations

import base64
import threading
import urllib.request
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from controller.kube.api import ROLLOUTS, SECRETS, KubeError
from controller.kube.prometheus_refs import PrometheusEndpoints
from controller.kube.reconciler import Reconciler
from controller.prometheus.source import PrometheusSettings
from tests.kube.operator_world import World, make_world
from tests.support.kube_emulator import KubeEmulator
from tests.support.prometheus import PrometheusServer

PLANTED = "planted-token-5d1e"


class Recorder:
    """An HTTP server that records each request's path and Authorization header and,
    given an upstream, forwards the request there (else answers 503)."""

    def __init__(self, upstream: str | None = None) -> None:
        self.seen: list[tuple[str, str]] = []
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                recorder.seen.append((self.path, self.headers.get("Authorization") or ""))
                if upstream is None:
                    self.send_response(503)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                with urllib.request.urlopen(upstream + self.path, timeout=5) as answer:
                    body = answer.read()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_POST = do_GET

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def recorder() -> Iterator[Callable[..., Recorder]]:
    made: list[Recorder] = []

    def make(upstream: str | None = None) -> Recorder:
        made.append(Recorder(upstream))
        return made[-1]

    yield make
    for item in made:
        item.close()


@pytest.fixture
def world(kube_emulator: Callable[..., KubeEmulator]) -> World:
    return make_world(kube_emulator(rollout_delay=0.05, job_delay=0.05))


def with_prometheus(world: World, prometheus: dict[str, Any]) -> None:
    rollout = world.rollout()
    rollout["spec"]["prometheus"] = prometheus
    world.api.replace(ROLLOUTS, world.namespace, world.name, rollout)


def reconciler(world: World, endpoints: PrometheusEndpoints) -> Reconciler:
    assert world.operator_api is not None
    return Reconciler(world.operator_api, endpoints=endpoints)


def tick_until_gates_are_read(world: World, reconciler: Reconciler) -> None:
    """Into the soak, where the errors-low gate queries Prometheus."""
    for _ in range(4):
        world.tick(reconciler)
        world.wait_rolled_out()
    assert world.status()["state"] == "soaking", world.status().get("blockers")


def valid_condition(world: World) -> dict[str, Any]:
    return next(c for c in world.status().get("conditions", []) if c["type"] == "Valid")


def planted_file(tmp_path: Path) -> Path:
    path = tmp_path / "token"
    path.write_text(PLANTED, encoding="utf-8")
    return path


def test_a_token_file_named_by_a_rollout_is_never_read_nor_sent(
    world: World, recorder: Callable[..., Recorder], tmp_path: Path
) -> None:
    attacker = recorder()
    with_prometheus(world, {"url": attacker.url, "bearerTokenFile": str(planted_file(tmp_path))})
    assert "bearerTokenFile" not in world.rollout()["spec"]["prometheus"]  # pruned by the schema
    tick_until_gates_are_read(world, reconciler(world, PrometheusEndpoints()))
    assert attacker.seen, "the rollout's own URL is read"
    assert all(PLANTED not in auth for _path, auth in attacker.seen)
    assert PLANTED not in repr(world.status())


def test_a_spec_that_still_names_a_token_file_is_refused(
    world: World, recorder: Callable[..., Recorder], tmp_path: Path
) -> None:
    attacker = recorder()
    forged = world.rollout()
    forged["spec"]["prometheus"] = {
        "url": attacker.url,
        "bearerTokenFile": str(planted_file(tmp_path)),
    }
    reconciler(world, PrometheusEndpoints()).reconcile(
        world.namespace, world.name, world.now, listed=forged
    )
    assert valid_condition(world)["reason"] == "SpecInvalid"
    assert attacker.seen == [] and world.flags() == {}


def test_the_operators_credentials_never_go_to_a_rollouts_url(
    world: World, recorder: Callable[..., Recorder], tmp_path: Path
) -> None:
    attacker = recorder()
    endpoints = PrometheusEndpoints(
        {
            "default": PrometheusSettings(
                url="http://127.0.0.1:9", bearer_token_file=planted_file(tmp_path)
            )
        },
        default="default",
    )
    with_prometheus(world, {"url": attacker.url})
    tick_until_gates_are_read(world, reconciler(world, endpoints))
    assert attacker.seen and all(auth == "" for _path, auth in attacker.seen)


@pytest.mark.parametrize("url", ["file:///etc/passwd", "gopher://127.0.0.1:70/", "ftp://x/"])
def test_only_http_and_https_urls_are_accepted(world: World, url: str) -> None:
    with pytest.raises(KubeError) as refused:
        with_prometheus(world, {"url": url})
    assert refused.value.status == 422 and "spec.prometheus.url" in str(refused.value)


def test_an_endpoint_the_operator_lacks_is_refused_naming_those_it_has(world: World) -> None:
    with_prometheus(world, {"endpoint": "elsewhere"})
    endpoints = PrometheusEndpoints({"team-a": PrometheusSettings(url="http://127.0.0.1:9")})
    world.tick(reconciler(world, endpoints))
    valid = valid_condition(world)
    assert valid["reason"] == "PrometheusRefused"
    assert "'elsewhere' is not configured on the operator (configured: team-a)" in valid["message"]
    assert world.flags() == {}


def test_a_named_endpoint_is_read_with_the_operators_credentials(
    world: World,
    recorder: Callable[..., Recorder],
    prometheus_server: Callable[..., PrometheusServer],
    tmp_path: Path,
) -> None:
    upstream = recorder(prometheus_server().url)
    endpoints = PrometheusEndpoints(
        {"team-a": PrometheusSettings(url=upstream.url, bearer_token_file=planted_file(tmp_path))}
    )
    with_prometheus(world, {"endpoint": "team-a"})
    tick_until_gates_are_read(world, reconciler(world, endpoints))
    assert upstream.seen and {auth for _p, auth in upstream.seen} == {f"Bearer {PLANTED}"}
    gate = next(v for v in world.status()["lastVerdicts"] if v["name"] == "errors-low")
    assert gate["outcome"] == "unknown" and "no data" in gate["reason"].lower(), gate


def test_credentials_come_from_a_secret_read_as_the_rollouts_account(
    world: World,
    recorder: Callable[..., Recorder],
    prometheus_server: Callable[..., PrometheusServer],
) -> None:
    upstream = recorder(prometheus_server().url)
    token = base64.b64encode(b"tenant-token-1").decode()
    world.api.create(
        SECRETS,
        world.namespace,
        {"metadata": {"name": "prometheus-credentials"}, "data": {"token": token}},
    )
    with_prometheus(
        world, {"url": upstream.url, "credentialsSecret": {"name": "prometheus-credentials"}}
    )
    assert world.emulator is not None
    world.emulator.clear_requests()
    tick_until_gates_are_read(world, reconciler(world, PrometheusEndpoints()))
    assert {auth for _p, auth in upstream.seen} == {"Bearer tenant-token-1"}
    reads = [r for r in world.emulator.requests() if r.resource == "secrets"]
    assert reads and {r.user for r in reads} == {"system:serviceaccount:shop:stage-rollout"}
    assert "tenant-token-1" not in repr(world.status())


def test_a_secret_the_account_may_not_read_is_a_forbidden_condition(world: World) -> None:
    world.api.create(
        SECRETS,
        world.namespace,
        {"metadata": {"name": "database"}, "data": {"token": base64.b64encode(b"db").decode()}},
    )
    with_prometheus(world, {"url": "http://127.0.0.1:9", "credentialsSecret": {"name": "database"}})
    world.tick(reconciler(world, PrometheusEndpoints()))
    valid = valid_condition(world)
    assert (
        valid["reason"] == "Forbidden"
        and "may not get secrets in namespace shop" in valid["message"]
    )
    assert world.flags() == {}
