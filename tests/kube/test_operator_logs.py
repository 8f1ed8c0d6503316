"""The operator's log: quiet while nothing changes, one line per change, error and write.

The whole operator runs (APScheduler passes, watches, `transitions` machines inside
`decide`) with its real logging setup, `configure_logging`, writing to a buffer.
"""

from __future__ import annotations

import io
import json
import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from controller.kube.api import ROLLOUTS, KubeApi
from controller.operator import Operator, OperatorSettings
from controller.redaction import QUIET_LOGGERS
from controller.telemetry import QUIET_LIBRARIES, configure_logging
from phases.flags import hash_flags
from tests.kube.operator_world import OPERATOR_USER, quick_operator
from tests.support.kube_emulator import KubeEmulator

B_FLAGS = {
    "STAGE_VALIDATION_MODE": "enforce",
    "ENFORCE_WRITE_ONLY": "false",
    "ENFORCEMENT_PERCENT": "10",
    "STAGE_VALIDATION_DRY_RUN": "false",
}


@pytest.fixture
def logged() -> Iterator[Callable[[str], io.StringIO]]:
    """configure_logging into a buffer; the test runner's handlers come back afterwards."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    levels = {name: logging.getLogger(name).level for name in QUIET_LIBRARIES}

    def configure(log_level: str) -> io.StringIO:
        buffer = io.StringIO()
        configure_logging(log_level, stream=buffer)
        return buffer

    yield configure
    root.handlers[:], root.level = handlers, level
    for name, previous in levels.items():
        logging.getLogger(name).setLevel(previous)


def lines(buffer: io.StringIO, start: int = 0) -> list[dict[str, Any]]:
    return [json.loads(line) for line in buffer.getvalue()[start:].splitlines()]


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(0.05)


def test_idle_passes_log_nothing_and_a_promotion_logs_exactly_its_changes_and_writes(
    kube_emulator: Callable[..., KubeEmulator], logged: Callable[[str], io.StringIO]
) -> None:
    buffer = logged("info")
    emulator = kube_emulator(rollout_delay=0.05)
    with quick_operator(emulator) as (world, _operator):
        wait_for(lambda: world.status().get("state") == "awaiting_approval", "approval is due")
        time.sleep(0.3)  # the tick that wrote awaiting_approval has logged it
        quiet_from, passes_from = len(buffer.getvalue()), time.monotonic()
        time.sleep(3.5)
        # Passes read the rollout from the operator's cache; the example Role grants the
        # rollout's account no list or watch, so each tick still reads the flags itself.
        passes = [
            r
            for r in emulator.requests()
            if r.verb == "get" and r.path.endswith("/configmaps/flags") and r.started > passes_from
        ]
        assert len(passes) >= 3, "the operator did not pass over the rollout while idle"
        assert lines(buffer, quiet_from) == []

        held_from = len(buffer.getvalue())
        emulator.inject(method="GET", path_regex=r"/configmaps/flags$", status=500, times=None)
        time.sleep(2.5)  # several passes meet the same error
        emulator.clear_faults()
        wait_for(lambda: len(lines(buffer, held_from)) == 2, "the error clears")
        held, cleared = lines(buffer, held_from)
        assert (held["level"], held["message"].split(":")[0]) == ("warning", "tick held")
        assert "500" in held["message"] or "Internal error" in held["message"], held
        assert (cleared["level"], cleared["message"]) == ("info", "tick no longer held")

        promoted_from = len(buffer.getvalue())
        world.approve("a")
        wait_for(lambda: world.status().get("state") == "completed", "the rollout completes")
        time.sleep(2.5)  # more passes: a completed rollout logs nothing more
        promotion = lines(buffer, promoted_from)

    assert [entry["message"] for entry in promotion] == [
        "promote: a awaiting_approval -> b applying",
        "patch ConfigMap shop/flags: {'ENFORCEMENT_PERCENT': '10', 'STAGE_VALIDATION_MODE': 'enforce'}",
        f"restart Deployment shop/api onto flags {hash_flags(B_FLAGS)}",
        "verified: b applying -> b soaking",
        "complete: b soaking -> b completed",
    ]
    assert {(e["level"], e["rollout"], e["step"]) for e in promotion} == {
        ("info", "shop/api-rollout", "b")
    }
    assert "approved by alice" in promotion[0]["reason"]


def test_library_chatter_is_kept_at_warning_unless_the_level_is_debug(
    logged: Callable[[str], io.StringIO],
) -> None:
    buffer = logged("info")
    noisy = (*QUIET_LIBRARIES, *QUIET_LOGGERS)
    for name in noisy:
        logging.getLogger(f"{name}.core").info("chatter")
        logging.getLogger(name).warning("worth saying")
    logging.getLogger("stage_rollout.operator").info("ours")
    assert [e["message"] for e in lines(buffer)] == ["worth saying"] * len(noisy) + ["ours"]

    buffer = logged("debug")
    logging.getLogger("transitions.core").debug("every state change")
    logging.getLogger("urllib3.connectionpool").debug("GET /api/v1?token=hunter2")
    assert [e["logger"] for e in lines(buffer)] == ["transitions.core"]

    buffer = logged("error")
    logging.getLogger("urllib3").warning("retrying")
    assert lines(buffer) == []


def test_a_watch_bookmark_ticks_no_rollout(kube: KubeEmulator) -> None:
    """Bookmarks carry only a resourceVersion; they once ticked a rollout named "" each second."""
    operator = Operator(KubeApi(kube.api_client(user=OPERATOR_USER)), OperatorSettings())
    bookmark = {"metadata": {"resourceVersion": "1042"}}
    added = {"metadata": {"namespace": "shop", "name": "api", "generation": 1}}
    assert operator.handle_event(ROLLOUTS, "BOOKMARK", bookmark) is None
    assert operator.handle_event(ROLLOUTS, "ADDED", added) == ("shop", "api")
