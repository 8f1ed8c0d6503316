"""The Alertmanager webhook receiver: a firing alert ticks the rollouts that name it, nothing else.

The payload is Alertmanager's webhook JSON (version 4); the body is hostile, so
every malformed, oversized or unauthorised request is refused with a one-line
reason and ticks nothing.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from controller.alert_receiver import (
    MAX_ALERTS,
    MAX_BODY_BYTES,
    WEBHOOK_PATH,
    Receiver,
    firing_alerts,
    read_token,
    serve,
)
from controller.files import FileUnusable

PLANS = {("shop", "paged"): {"HighErrorRate"}, ("shop", "quiet"): {"Other"}}


def payload(*alerts: tuple[str, str], **extra: Any) -> bytes:
    """An Alertmanager v4 webhook body with (alertname, status) alerts."""
    return json.dumps(
        {
            "version": "4",
            "groupKey": '{}:{alertname="HighErrorRate"}',
            "truncatedAlerts": 0,
            "status": "firing",
            "receiver": "stage-rollout",
            "groupLabels": {"alertname": alerts[0][0] if alerts else ""},
            "commonLabels": {},
            "commonAnnotations": {},
            "externalURL": "http://alertmanager:9093",
            "alerts": [
                {
                    "status": status,
                    "labels": {"alertname": name, "severity": "page"},
                    "annotations": {"summary": "errors"},
                    "startsAt": "2026-03-02T09:00:00Z",
                    "endsAt": "0001-01-01T00:00:00Z",
                    "generatorURL": "http://prometheus/graph",
                    "fingerprint": "c0ffee",
                }
                for name, status in alerts
            ],
            **extra,
        }
    ).encode()


class Recorder:
    def __init__(self, token: str | None = None) -> None:
        self.ticked: list[tuple[str, str]] = []
        self.receiver = Receiver(self.naming, self.tick, token)

    @staticmethod
    def naming(alerts: frozenset[str]) -> list[tuple[str, str]]:
        return sorted(key for key, names in PLANS.items() if names & alerts)

    def tick(self, namespace: str, name: str) -> None:
        self.ticked.append((namespace, name))


def test_a_firing_alert_ticks_only_the_rollouts_whose_plan_names_it() -> None:
    recorder = Recorder()
    body = payload(("HighErrorRate", "firing"), ("Unrelated", "firing"))
    status, message = recorder.receiver.handle(WEBHOOK_PATH, {}, body)
    assert (status, recorder.ticked) == (200, [("shop", "paged")])
    assert message == "1 rollouts ticked for 2 firing alerts"


def test_resolved_alerts_tick_nothing() -> None:
    recorder = Recorder()
    status, _ = recorder.receiver.handle(WEBHOOK_PATH, {}, payload(("HighErrorRate", "resolved")))
    assert (status, recorder.ticked) == (200, [])


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b"{not json", "body is not UTF-8 JSON"),
        (b"\xff\xfe", "body is not UTF-8 JSON"),
        (b"[" * 100_000 + b"]" * 100_000, "body is not UTF-8 JSON"),
        (b'{"alerts": [[[[[[[[[[1]]]]]]]]]]}', "body nests deeper than 8 levels"),
        (b"[]", "body must be a JSON object (the Alertmanager webhook payload)"),
        (b'{"alerts": {}}', "alerts must be a list"),
        (b'{"alerts": [1]}', "alerts[0] must be an object"),
        (
            b'{"alerts": [{"status": "on", "labels": {}}]}',
            "alerts[0].status must be firing or resolved",
        ),
        (b'{"alerts": [{"status": "firing", "labels": []}]}', "alerts[0].labels must be an object"),
        (
            b'{"alerts": [{"status": "firing", "labels": {"alertname": 7}}]}',
            "alerts[0].labels.alertname must be a name of 1 to 256 characters",
        ),
        (payload(("HighErrorRate", "firing"), version="3"), "payload version '3' is not 4"),
        (
            json.dumps(
                {"alerts": [{"status": "firing", "labels": {"alertname": "A"}}] * (MAX_ALERTS + 1)}
            ).encode(),
            f"more than {MAX_ALERTS} alerts",
        ),
    ],
)
def test_a_malformed_body_is_refused_with_400_and_ticks_nothing(body: bytes, expected: str) -> None:
    recorder = Recorder()
    status, message = recorder.receiver.handle(WEBHOOK_PATH, {}, body)
    assert (status, message, recorder.ticked) == (400, expected, [])


def test_a_valid_alert_before_a_malformed_one_ticks_nothing() -> None:
    body = json.dumps(
        {"alerts": [{"status": "firing", "labels": {"alertname": "HighErrorRate"}}, "junk"]}
    ).encode()
    recorder = Recorder()
    assert recorder.receiver.handle(WEBHOOK_PATH, {}, body)[0] == 400
    assert recorder.ticked == []


def test_an_oversized_body_is_refused_with_413() -> None:
    with pytest.raises(ValueError, match="larger than"):
        firing_alerts(b" " * (MAX_BODY_BYTES + 1))
    recorder = Recorder()
    assert recorder.receiver.handle(WEBHOOK_PATH, {}, b" " * (MAX_BODY_BYTES + 1))[0] == 413
    assert recorder.ticked == []


@pytest.mark.parametrize("header", [None, "", "Bearer wrong", "Bearer s3cret ", "s3cret"])
def test_without_the_token_nothing_is_ticked(header: str | None) -> None:
    recorder = Recorder(token="s3cret")
    headers = {} if header is None else {"Authorization": header}
    status, _ = recorder.receiver.handle(
        WEBHOOK_PATH, headers, payload(("HighErrorRate", "firing"))
    )
    assert (status, recorder.ticked) == (401, [])
    ok, _ = recorder.receiver.handle(
        WEBHOOK_PATH, {"Authorization": "Bearer s3cret"}, payload(("HighErrorRate", "firing"))
    )
    assert (ok, recorder.ticked) == (200, [("shop", "paged")])


def test_the_token_file_must_hold_one_printable_token(tmp_path: Path) -> None:
    good = tmp_path / "token"
    good.write_text("s3cret\n")
    assert read_token(good) == "s3cret"
    for text in ("", "two words", "\n\n"):
        good.write_text(text)
        with pytest.raises(FileUnusable):
            read_token(good)
    with pytest.raises(FileUnusable, match="directory"):
        read_token(tmp_path)


# over HTTP ---------------------------------------------------------------------------


@pytest.fixture
def served() -> Iterator[tuple[Recorder, str]]:
    recorder = Recorder(token="s3cret")
    server = serve(recorder.receiver, "127.0.0.1", 0)
    try:
        yield recorder, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


AUTH = {"Authorization": "Bearer s3cret"}


def test_over_http_a_firing_alert_ticks_and_refusals_are_one_line_json(
    served: tuple[Recorder, str],
) -> None:
    recorder, url = served
    ok = httpx.post(url + WEBHOOK_PATH, content=payload(("HighErrorRate", "firing")), headers=AUTH)
    assert ok.status_code == 200 and recorder.ticked == [("shop", "paged")]
    answers = {
        "wrong token": httpx.post(
            url + WEBHOOK_PATH, content=payload(), headers={"Authorization": "Bearer x"}
        ),
        "bad json": httpx.post(url + WEBHOOK_PATH, content=b"{", headers=AUTH),
        "other path": httpx.post(url + "/elsewhere", content=payload(), headers=AUTH),
        "get": httpx.get(url + WEBHOOK_PATH),
    }
    assert {why: r.status_code for why, r in answers.items()} == {
        "wrong token": 401,
        "bad json": 400,
        "other path": 404,
        "get": 405,
    }
    for answer in answers.values():
        assert "Traceback" not in answer.text and answer.text.count("\n") == 1
        assert set(answer.json()) == {"status", "message"}
    assert recorder.ticked == [("shop", "paged")]


def test_over_http_a_body_announced_too_large_is_refused_unread(
    served: tuple[Recorder, str],
) -> None:
    recorder, url = served
    port = int(url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=5) as connection:
        connection.sendall(
            f"POST {WEBHOOK_PATH} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer s3cret\r\n"
            f"Content-Length: {MAX_BODY_BYTES + 1}\r\n\r\n{{}}".encode()
        )
        answer = connection.recv(4096).decode()
    assert answer.startswith("HTTP/1.0 413") or answer.startswith("HTTP/1.1 413")
    assert recorder.ticked == []


def test_a_standby_replica_answers_503_so_that_alertmanager_retries() -> None:
    recorder = Recorder()
    standby = Receiver(recorder.naming, recorder.tick, leading=lambda: False)
    status, _ = standby.handle(WEBHOOK_PATH, {}, payload(("HighErrorRate", "firing")))
    assert (status, recorder.ticked) == (503, [])
