"""What a waiting rollout says: what is known, and what is not (issue 12, item 4)."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from rollout_driver import UID, Driver

from controller.catalog import load_plan
from phases.decide import decide
from phases.observations import Observations, TargetState
from phases.status import StepState

PLAN = load_plan()


def verifying(modes: tuple[str, ...] | None) -> list[str]:
    driver = Driver(PLAN)
    driver.rolled_out = False
    driver.tick()
    driver.tick()
    assert driver.status.state is StepState.VERIFYING
    seen = Observations(
        rollout_uid=UID,
        target=TargetState(driver.target_flags_hash, True, None, modes),
    )
    decision = decide(PLAN, driver.status, seen, driver.now + timedelta(minutes=1))
    assert decision.status.state is StepState.VERIFYING
    return list(decision.blockers)


def test_an_unanswered_mode_query_is_said_as_unknown_not_as_an_app_reporting_nothing() -> None:
    (line,) = verifying(None)
    assert "Prometheus did not answer the mode query" in line
    assert "workloads rolled out" in line
    assert "reports nothing" not in line


def test_no_mode_series_is_told_apart_from_prometheus_down() -> None:
    (line,) = verifying(())
    assert "Prometheus answers but has no mode series for the app yet" in line


def test_a_wrong_mode_names_what_the_pods_report() -> None:
    (line,) = verifying(("off", "warn"))
    assert line.endswith("waiting for the app to report mode warn: its pods report off, warn")


def test_workloads_still_rolling_out_are_said_before_any_mode() -> None:
    driver = Driver(PLAN)
    driver.rolled_out = False
    driver.tick()
    driver.tick()
    seen = Observations(
        rollout_uid=UID, target=replace(TargetState(driver.target_flags_hash), rolled_out=False)
    )
    decision = decide(PLAN, driver.status, seen, driver.now)
    assert decision.blockers == ("waiting for the workloads to finish rolling out",)
