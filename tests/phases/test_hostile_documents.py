"""Plans as hostile input: bounded, parsed once, finite, ASCII, hashed exactly.

ARCHITECTURE, the trust boundary: files are trusted with "nothing", enforced by
"size and depth caps, encodings, ranges; exit 2 with a message".
"""

from __future__ import annotations

from importlib import resources

import pytest
import yaml

from phases.documents import MAX_DEPTH, DocumentError
from phases.plan_checks import parse_plan

PLAN = resources.files("phases").joinpath("plans/stage-validation-v3.yaml").read_text()
# One gate written once, in one place: 2.1's baseline error ratio (phases[0].gates[0]).
# Gates shared through YAML anchors (the canary gates of 2.7 and 3, for instance)
# would report one problem per use, so the mutations below target this one.
GATE = '{name: baseline-error-ratio, signal: error_ratio, comparator: "<", threshold: 0.01, window: 24h}'
GATE_LINE = PLAN.splitlines().index("      - " + GATE) + 1
GATE_THRESHOLD = "threshold: 0.01, window: 24h}"
GATE_WINDOW = "window: 24h}"


def problem_of(text: str) -> str:
    with pytest.raises(DocumentError) as raised:
        parse_plan(text, source="bad.yaml")
    assert len(raised.value.problems) == 1, raised.value
    return str(raised.value).splitlines()[1]


def swapped(old: str, new: str) -> str:
    assert PLAN.count(old) == 1, old
    return PLAN.replace(old, new, 1)


def in_gate(old: str, new: str) -> str:
    """The plan with `old` replaced by `new` inside GATE only."""
    assert GATE.count(old) == 1, old
    return swapped(GATE, GATE.replace(old, new))


@pytest.mark.parametrize("threshold", [".inf", "-.inf", ".nan", "1.0e400", "'1e400'"])
def test_a_threshold_that_is_not_a_finite_number_is_refused(threshold: str) -> None:
    """A threshold of infinity is a gate that always passes or a trigger that never fires."""
    message = problem_of(in_gate(GATE_THRESHOLD, f"threshold: {threshold}, window: 24h}}"))
    assert message.startswith(f"  phases[0].gates[0].threshold, line {GATE_LINE}: "), message
    assert "a number" in message


def test_a_zero_resolution_is_refused() -> None:
    message = problem_of(swapped("resolution: 1m", "resolution: 0s"))
    assert message.startswith("  evaluation.resolution, line ")
    assert "resolution must be at least 1s" in message


def test_non_ascii_digits_are_not_read_as_numbers() -> None:
    percent = problem_of(swapped("ENFORCEMENT_PERCENT: 10}", "ENFORCEMENT_PERCENT: '١٠'}"))
    assert "ENFORCEMENT_PERCENT must be a whole number from 0 to 100, not '١٠'" in percent
    duration = problem_of(in_gate(GATE_WINDOW, "window: ٣٠m}"))
    assert duration.startswith(f"  phases[0].gates[0].window, line {GATE_LINE}: "), duration
    assert "invalid duration '٣٠m'" in duration and "ASCII digits" in duration


def test_sub_second_durations_are_refused_so_the_hash_covers_every_duration() -> None:
    """Two plans differing only below a second shared a hash, so one's approval counted for both."""
    message = problem_of(in_gate(GATE_WINDOW, "window: 24h0.5s}"))
    assert message.startswith(f"  phases[0].gates[0].window, line {GATE_LINE}: "), message
    assert "duration '24h0.5s' is not a whole number of seconds" in message
    one_second_more = parse_plan(in_gate(GATE_WINDOW, "window: 24h1s}"), source="b.yaml")
    assert one_second_more.content_hash != parse_plan(PLAN, source="a.yaml").content_hash


def test_a_duration_beyond_ten_years_is_refused_not_an_overflow() -> None:
    message = problem_of(in_gate(GATE_WINDOW, "window: 99999999999999d}"))
    assert message.startswith(f"  phases[0].gates[0].window, line {GATE_LINE}: "), message
    assert "duration '99999999999999d' is longer than the 3660d (ten years) allowed" in message


def test_nesting_past_the_depth_cap_is_refused_with_its_line() -> None:
    deep = "".join("  " * level + f"k{level}:\n" for level in range(MAX_DEPTH + 10))
    message = problem_of(PLAN + "\nextra:\n" + "\n".join("  " + line for line in deep.splitlines()))
    line = PLAN.count("\n") + 2 + MAX_DEPTH - 1
    assert f"line {line}: nested deeper than {MAX_DEPTH} levels" in message, message
    flow = problem_of("name: x\ndeep: " + "[" * 5000 + "]" * 5000)
    assert "line 2: nested deeper than" in flow


def test_aliases_that_expand_past_the_cap_are_refused() -> None:
    bomb = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    for level in range(1, 7):
        bomb.append(f"a{level}: &a{level} [" + ", ".join([f"*a{level - 1}"] * 10) + "]")
    assert "aliases expand to more than" in problem_of("\n".join(bomb))


def test_digits_yaml_cannot_construct_are_a_problem_not_an_exception() -> None:
    message = problem_of(
        swapped("ENFORCEMENT_PERCENT: 10}", "ENFORCEMENT_PERCENT: " + "9" * 5000 + "}")
    )
    assert "a value YAML cannot construct" in message
    assert len(message) < 400


def test_a_long_bad_value_is_quoted_as_a_short_excerpt() -> None:
    huge = "x" * 100_000
    with pytest.raises(DocumentError) as raised:
        parse_plan(
            in_gate(GATE_THRESHOLD, f"threshold: {huge}, window: 24h}}"),
            source="b",
        )
    assert len(str(raised.value)) < 1000, len(str(raised.value))
    assert "(100000 characters)" in str(raised.value)


def test_an_oversized_document_is_refused_before_parsing() -> None:
    message = problem_of(PLAN + "\n# " + "x" * (1024 * 1024))
    assert "a plan may hold at most 1048576" in message


def test_the_yaml_is_parsed_once_from_one_node_tree(monkeypatch: pytest.MonkeyPatch) -> None:
    """The issue: 50 MB files were parsed twice. Neither whole-document entry point is used."""

    def refuse(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("the document was parsed a second time")

    monkeypatch.setattr(yaml, "compose", refuse)
    monkeypatch.setattr(yaml, "safe_load", refuse)
    monkeypatch.setattr(yaml, "load", refuse)
    assert parse_plan(PLAN, source="plan.yaml").name == "stage-validation-v3"


def test_a_character_yaml_forbids_is_reported_with_its_line_not_raised() -> None:
    """Found by the fuzz suite: a NUL byte escaped as yaml.reader.ReaderError."""
    message = problem_of("name: x\nversion: \x07\n")
    assert "line 2: YAML does not allow the character U+0007 (character 17 of the text)" in message
    assert "U+0000" in problem_of("\x00" + PLAN)
