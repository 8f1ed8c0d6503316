"""How `stagectl status` and `history` read to people: ages, colours, one line per gate."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from controller.cli.rollout_commands import _status_table
from controller.rendering import age

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("ago", "text"),
    [
        (timedelta(seconds=45), "45s ago"),
        (timedelta(minutes=12, seconds=30), "12m ago"),
        (timedelta(hours=3, minutes=20), "3h20m ago"),
        (timedelta(days=2, hours=4), "2d4h ago"),
        (timedelta(seconds=-5), "0s ago"),  # a clock a little ahead never reads "in the future"
    ],
)
def test_ages_read_as_people_read_them(ago: timedelta, text: str) -> None:
    assert age((NOW - ago).isoformat().replace("+00:00", "Z"), NOW) == text


def view(state: str = "stalled") -> dict:
    return {
        "name": "demo",
        "namespace": "shop",
        "step": "2.7",
        "state": state,
        "percent": 0,
        "timeInStep": "3d",
        "blockers": ["would-reject: fail: would_reject_ratio reached 0.01"],
        "verdicts": [],
        "transitions": [
            {
                "at": (NOW - timedelta(minutes=12)).isoformat(),
                "fromStep": "2.5",
                "fromState": "awaiting_approval",
                "toStep": "2.7",
                "toState": "applying",
                "trigger": "promote",
                "reason": "approved",
            }
        ],
    }


def test_colours_only_when_asked_for() -> None:
    plain = _status_table([view()], NOW, colours=False)
    coloured = _status_table([view()], NOW, colours=True)
    assert "\033[" not in plain
    assert "\033[31mstalled\033[0m" in coloured  # red: it needs a person
    assert coloured.replace("\033[31m", "").replace("\033[33m", "").replace("\033[0m", "") == plain


def test_the_transition_line_shows_its_age_and_the_first_blocker_has_a_column() -> None:
    table = _status_table([view()], NOW)
    assert "12m ago  2.5 (awaiting_approval) → 2.7 (applying)  promote: approved" in table
    header, row = table.splitlines()[:2]
    assert header.endswith("IN STEP  BLOCKED BY")
    assert row.endswith("would-reject: fail: would_reject_ratio reached 0.01")


def test_the_table_says_how_old_its_evidence_is() -> None:
    stale = {**view(), "lastTickAt": (NOW - timedelta(minutes=12)).isoformat()}
    lines = _status_table([stale], NOW).splitlines()
    assert lines[2] == "  as of the operator's last status change, 12m ago:"
    assert "last status change" not in _status_table([view()], NOW)  # never ticked: nothing claimed
