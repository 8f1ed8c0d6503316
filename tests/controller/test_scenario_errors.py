"""Malformed scenarios: each is rejected with the file, the field path, the line and the reason."""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources

import pytest

from controller.catalog import bundled_scenarios
from controller.sim.scenario import parse_scenario
from phases.documents import DocumentError

HAPPY = resources.files("controller.sim").joinpath("scenarios", "happy-path.yaml").read_text()


def swap(old: str, new: str, text: str = HAPPY) -> str:
    assert text.count(old) == 1, f"{old!r} occurs {text.count(old)} times"
    return text.replace(old, new)


def line_of(text: str, needle: str, after: int = 1) -> int:
    for number, line in enumerate(text.splitlines(), start=1):
        if number >= after and needle in line:
            return number
    raise AssertionError(f"{needle!r} not in the text")


@dataclass(frozen=True)
class Case:
    id: str
    text: str
    path: str
    line: int
    reason: str


def case(id: str, text: str, path: str, line: int | str, reason: str) -> Case:
    return Case(id, text, path, line if isinstance(line, int) else line_of(text, line), reason)


ERROR_RATIO = "  error_ratio: [{at: 0s, value: 0.0004}]\n"


def _cases() -> list[Case]:
    cases: list[Case] = []
    add = cases.append

    text = swap("tick: 1m\n", "tick: [1m\n")
    add(
        case(
            "yaml-unclosed-flow-sequence",
            text,
            "(document)",
            "duration: 30d",
            f"YAML syntax: expected ',' or ']', but got ':' (while parsing a flow sequence "
            f"started on line {line_of(text, 'tick: [1m')})",
        )
    )

    text = swap("tick: 1m\n", "tick: 1m\ntick: 5m\n")
    add(
        case(
            "yaml-duplicate-key",
            text,
            "tick",
            "tick: 5m",
            f"key 'tick' appears twice in one mapping (first on line {line_of(text, 'tick: 1m')})",
        )
    )

    add(
        case(
            "top-level-list",
            "- name: happy-path\n",
            "(document)",
            1,
            "expected a mapping at the top, found a list",
        )
    )

    text = swap("tick: 1m\n", "tik: 1m\n")
    add(case("unknown-top-level-field", text, "tik", "tik: 1m", "unknown field 'tik'"))

    text = swap("{at: 0s, value: 0.0004}", "{at: 0s, value: 0.0004, unit: ratio}")
    add(
        case(
            "unknown-field-in-point",
            text,
            "signals.error_ratio[0].unit",
            "unit: ratio",
            "unknown field 'unit'",
        )
    )

    text = swap(
        ERROR_RATIO,
        "  error_ratio:\n    - {at: 0s, value: 0.0004}\n    - {at: 2h, value: 0.02}\n"
        "    - {at: 1h, value: 0.0004}\n",
    )
    add(
        case(
            "points-out-of-order",
            text,
            "signals.error_ratio[2].at",
            "{at: 1h",
            "points must be in increasing time order",
        )
    )

    text = swap(ERROR_RATIO, "  error_ratio: []\n")
    add(
        case(
            "empty-timeline",
            text,
            "signals.error_ratio",
            "error_ratio: []",
            "a timeline needs at least one point",
        )
    )

    text = swap("value: 0.0004}", "value: low}")
    add(
        case(
            "value-not-a-number",
            text,
            "signals.error_ratio[0].value",
            "value: low",
            "Input should be a valid number, unable to parse string as a number, not 'low'",
        )
    )

    text = swap("{at: 0s, value: 0.0004}", "{at: soon, value: 0.0004}")
    add(
        case(
            "point-time-not-a-duration",
            text,
            "signals.error_ratio[0].at",
            "at: soon",
            "invalid duration 'soon'",
        )
    )

    text = swap("approvals:\n", "outages:\n  - {from: 2h, to: 1h}\napprovals:\n")
    add(
        case(
            "outage-to-before-from",
            text,
            "outages[0].to",
            "{from: 2h, to: 1h}",
            "'to' (1h) must be after 'from' (2h)",
        )
    )

    text = swap(
        "approvals:\n",
        "alerts:\n  - name: StageValidationHighErrorRate\n    from: 3h\n    to: 3h\napprovals:\n",
    )
    add(
        case(
            "alert-to-equals-from",
            text,
            "alerts[0].to",
            "    to: 3h",
            "'to' (3h) must be after 'from' (3h)",
        )
    )

    text = swap("tick: 1m\n", "tick: 0s\n")
    add(case("tick-zero", text, "tick", "tick: 0s", "tick must be longer than 0s"))

    text = swap("duration: 30d\n", "duration: 30s\n")
    add(
        case(
            "tick-longer-than-duration",
            text,
            "tick",
            "tick: 1m",
            "tick is longer than the scenario's duration",
        )
    )

    text = swap("approvals:\n", "commands:\n  - {at: 3h, kind: promote}\napprovals:\n")
    add(
        case(
            "unknown-command-kind",
            text,
            "commands[0].kind",
            "kind: promote",
            "Input should be 'pause', 'resume', 'abort', 'rollback' or 'retry', not 'promote'",
        )
    )

    text = swap("tick: 1m\n", "start: 2026-01-05T09:00:00\ntick: 1m\n")
    add(
        case(
            "naive-start-time",
            text,
            "start",
            "start: 2026-01-05",
            "start needs a time zone offset, e.g. 2026-01-05T09:00:00Z",
        )
    )

    text = swap("{duration: 40m}", "{duration: 40m, outcome: passed}")
    add(
        case(
            "unknown-job-outcome",
            text,
            "jobs.create-indexes.outcome",
            "outcome: passed",
            "Input should be 'succeeded' or 'failed', not 'passed'",
        )
    )

    text = swap(
        "  auto: {delay: 30m, approver: alice@example.com}\n",
        "  scripted:\n    - {at: 1h, approver: bob@example.com}\n",
    )
    add(
        case(
            "scripted-approval-without-step",
            text,
            "approvals.scripted[0].step",
            "approver: bob@example.com",
            "required field 'step' is missing",
        )
    )
    return cases


CASES = _cases()


@pytest.mark.parametrize("bad", CASES, ids=[c.id for c in CASES])
def test_malformed_scenario_names_file_path_line_and_reason(bad: Case) -> None:
    with pytest.raises(DocumentError) as raised:
        parse_scenario(bad.text, source="bad.yaml")
    rendered = str(raised.value)
    assert rendered.splitlines()[0] == "bad.yaml: invalid scenario (1 problem)", rendered
    assert rendered.splitlines()[1].startswith(f"  {bad.path}, line {bad.line}: "), rendered
    assert bad.reason in rendered.splitlines()[1], rendered


def test_every_problem_of_a_scenario_is_reported_at_once() -> None:
    text = swap("tick: 1m\n", "tik: 1m\n")
    text = swap("approvals:\n", "outages:\n  - {from: 2h, to: 1h}\napprovals:\n", text)
    with pytest.raises(DocumentError) as raised:
        parse_scenario(text, source="bad.yaml")
    assert {(p.path, p.line) for p in raised.value.problems} == {
        (("tik",), line_of(text, "tik: 1m")),
        (("outages", 0, "to"), line_of(text, "{from: 2h, to: 1h}")),
    }


@pytest.mark.parametrize("name", bundled_scenarios())
def test_bundled_scenarios_parse(name: str) -> None:
    text = resources.files("controller.sim").joinpath("scenarios", f"{name}.yaml").read_text()
    assert parse_scenario(text, source=f"{name}.yaml").name == name
