"""Malformed plans: each is rejected with the file, the field path, the line and the reason.

Every case is a small edit of the bundled stage-validation-v3 plan, so a case shows
what one mistake in a realistic plan is reported as. Lines are computed from the
edited text itself, so the assertion checks that the line points at the mistake.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from typing import Any

import pytest
import yaml

from phases.documents import DocumentError
from phases.plan_checks import check_plan, parse_plan

PLAN_TEXT = resources.files("phases").joinpath("plans", "stage-validation-v3.yaml").read_text()
SIGNALS = (
    "error_ratio, invalid_write_ratio, observed_mode, p99_latency_seconds, "
    "unknown_stage_ratio, would_reject_ratio"
)


def swap(old: str, new: str, text: str = PLAN_TEXT) -> str:
    """The plan with `old` (which must occur exactly once) replaced by `new`."""
    assert text.count(old) == 1, f"{old!r} occurs {text.count(old)} times"
    return text.replace(old, new)


def line_of(text: str, needle: str, after: int = 1) -> int:
    """The 1-based number of the first line at or after `after` that contains `needle`."""
    for number, line in enumerate(text.splitlines(), start=1):
        if number >= after and needle in line:
            return number
    raise AssertionError(f"{needle!r} not in the text")


def edited(change: Callable[[dict[str, Any]], object]) -> str:
    """The plan loaded, changed as a data structure, and dumped back to YAML."""
    document = yaml.safe_load(PLAN_TEXT)
    change(document)
    return yaml.safe_dump(document, sort_keys=False)


@dataclass(frozen=True)
class Case:
    id: str
    text: str
    path: str
    line: int
    reason: str
    problems: int = 1


def case(id: str, text: str, path: str, line: int | str, reason: str, problems: int = 1) -> Case:
    """A case; `line` may be a needle, meaning the first line of `text` containing it."""
    number = line if isinstance(line, int) else line_of(text, line)
    return Case(id, text, path, number, reason, problems)


def _cases() -> list[Case]:
    cases: list[Case] = []
    add = cases.append

    # --- YAML itself ---
    text = swap("    name: Index creation\n", "    name: Index creation: concurrently\n")
    add(
        case(
            "yaml-mapping-value-in-value",
            text,
            "(document)",
            "Index creation: concurrently",
            "YAML syntax: mapping values are not allowed here",
        )
    )

    text = swap("    min_duration: 1h\n", "\tmin_duration: 1h\n")
    add(
        case(
            "yaml-tab-indent",
            text,
            "(document)",
            "\tmin_duration: 1h",
            "YAML syntax: found character '\\t' that cannot start any token",
        )
    )

    text = swap(
        "      signals: [error_ratio, p99_latency_seconds]\n",
        "      signals: [error_ratio, p99_latency_seconds\n",
    )
    opened = line_of(text, "signals: [error_ratio, p99_latency_seconds")
    add(
        case(
            "yaml-unclosed-flow-sequence",
            text,
            "(document)",
            line_of(text, "gates:", opened),
            f"expected ',' or ']', but got ':' (while parsing a flow sequence started on "
            f"line {opened})",
        )
    )

    text = PLAN_TEXT + "extra: [1, 2\n"
    add(
        case(
            "yaml-unclosed-at-end-of-file",
            text,
            "(document)",
            len(text.splitlines()),
            "expected ',' or ']', but got '<stream end>'",
        )
    )

    text = swap(
        "    min_duration: 1h\n    max_duration: 2h\n",
        "    min_duration: 1h\n    max_duration: 2h\n    min_duration: 3h\n",
    )
    add(
        case(
            "yaml-duplicate-key",
            text,
            "phases[1].min_duration",
            "min_duration: 3h",
            f"key 'min_duration' appears twice in one mapping (first on line "
            f"{line_of(text, 'min_duration: 1h')})",
        )
    )

    # --- the document as a whole ---
    text = yaml.safe_dump(yaml.safe_load(PLAN_TEXT)["phases"], sort_keys=False)
    add(
        case("top-level-list", text, "(document)", 1, "expected a mapping at the top, found a list")
    )
    add(
        case(
            "empty-document",
            "",
            "(document)",
            1,
            "expected a mapping at the top, found an empty document",
        )
    )
    add(
        case(
            "comments-only",
            "# a plan will go here\n",
            "(document)",
            1,
            "expected a mapping at the top, found an empty document",
        )
    )
    add(
        case(
            "top-level-scalar",
            "stage-validation-v3\n",
            "(document)",
            1,
            "expected a mapping at the top, found 'stage-validation-v3'",
        )
    )

    text = swap('version: "3.0"\n', 'version: "3.0"\nowner: team-payments\n')
    add(
        case(
            "unknown-top-level-field",
            text,
            "owner",
            "owner: team-payments",
            "unknown field 'owner'",
        )
    )

    text = swap("name: stage-validation-v3\n", "")
    add(
        case(
            "missing-plan-name", text, "name", 'version: "3.0"', "required field 'name' is missing"
        )
    )

    # --- shapes and types ---
    text = swap("threshold: 0.01, window: 24h}", "threshold: 0.01, window: 24h, severity: page}")
    add(
        case(
            "unknown-field-in-gate",
            text,
            "phases[0].gates[0].severity",
            "severity: page",
            "unknown field 'severity'",
        )
    )

    text = swap(
        'comparator: "<", threshold: 0.01, window: 24h}',
        'comparator: "<", threshold: "low", window: 24h}',
    )
    add(
        case(
            "threshold-a-string",
            text,
            "phases[0].gates[0].threshold",
            'threshold: "low"',
            "expected a number or a mapping with keys min, baseline, multiplier, not 'low'",
        )
    )

    text = swap(
        "threshold: {min: 0.005, baseline: p99_latency_seconds, multiplier: 2}\n        window: 30m",
        "threshold: {min: 0.005, baseline: p99_latency_seconds, multiplier: 0}\n        window: 30m",
    )
    add(
        case(
            "adaptive-multiplier-zero",
            text,
            "phases[1].gates[1].threshold.multiplier",
            "multiplier: 0}",
            "Input should be greater than 0, not 0",
        )
    )

    text = swap("    min_duration: 1h\n", "    min_duration: 60\n")
    add(
        case(
            "min-duration-bare-number",
            text,
            "phases[1].min_duration",
            "min_duration: 60",
            "a duration needs a unit: write 60s, 60m or 60h",
        )
    )

    text = swap("    max_duration: 2h\n", "    max_duration: 2 hours\n")
    add(
        case(
            "duration-bad-text",
            text,
            "phases[1].max_duration",
            "max_duration: 2 hours",
            "invalid duration '2 hours'; write a number and a unit",
        )
    )

    text = swap(
        "# signs off that the indexes are in place.\n    approval: {required: true}",
        "# signs off that the indexes are in place.\n    approval: {required: true, approvers: 0}",
    )
    add(
        case(
            "approvers-zero",
            text,
            "phases[1].approval.approvers",
            "approvers: 0",
            "Input should be greater than or equal to 1, not 0",
        )
    )

    text = swap(
        '{id: "3@10", flags: {ENFORCEMENT_PERCENT: 10}}',
        '{id: "3@10", flags: {ENFORCEMENT_PERCENT: [10]}}',
    )
    add(
        case(
            "flag-value-a-list",
            text,
            "phases[4].steps[0].flags.ENFORCEMENT_PERCENT",
            "ENFORCEMENT_PERCENT: [10]",
            "expected a string, true/false, a whole number or a mapping, not a list",
        )
    )

    text = swap('{id: "3@10", flags', '{id: "3 at 10", flags')
    add(
        case(
            "step-id-with-space",
            text,
            "phases[4].steps[0].id",
            '"3 at 10"',
            "step id '3 at 10' may hold letters, digits",
        )
    )

    text = swap(
        "    # Nothing precedes 2.1, so a degradation pauses the rollout instead.\n"
        "    on_degradation: pause\n",
        "    on_degradation: panic\n",
    )
    add(
        case(
            "on-degradation-unknown",
            text,
            "phases[0].on_degradation",
            "on_degradation: panic",
            "Input should be 'rollback' or 'pause', not 'panic'",
        )
    )

    # --- flags ---
    text = swap(
        '{id: "3@25", flags: {ENFORCEMENT_PERCENT: 25}}',
        '{id: "3@25", flags: {ENFORCEMENT_PERCENT: 150}}',
    )
    add(
        case(
            "percent-150",
            text,
            "phases[4].steps[1].flags.ENFORCEMENT_PERCENT",
            "ENFORCEMENT_PERCENT: 150",
            "ENFORCEMENT_PERCENT must be from 0 to 100, not 150",
        )
    )

    text = swap(
        "      ENFORCE_WRITE_ONLY: true\n      ENFORCEMENT_PERCENT: 0\n"
        "      STAGE_VALIDATION_DRY_RUN: false\n",
        "      ENFORCE_WRITE_ONLY: true\n      ENFORCEMENT_PERCENT: -1\n"
        "      STAGE_VALIDATION_DRY_RUN: false\n",
    )
    add(
        case(
            "percent-minus-1",
            text,
            "phases[2].flags.ENFORCEMENT_PERCENT",
            "ENFORCEMENT_PERCENT: -1",
            "ENFORCEMENT_PERCENT must be from 0 to 100, not -1",
        )
    )

    text = swap(
        '{id: "3@10", flags: {ENFORCEMENT_PERCENT: 10}}',
        '{id: "3@10", flags: {ENFORCEMENT_PERCENT: "ten"}}',
    )
    add(
        case(
            "percent-ten-in-words",
            text,
            "phases[4].steps[0].flags.ENFORCEMENT_PERCENT",
            'ENFORCEMENT_PERCENT: "ten"',
            "ENFORCEMENT_PERCENT must be a whole number from 0 to 100, not 'ten'",
        )
    )

    text = swap(
        "      STAGE_VALIDATION_MODE: enforce\n      # Enforce mode",
        "      STAGE_VALIDATION_MODE: on\n      # Enforce mode",
    )
    add(
        case(
            "mode-bare-on",
            text,
            "phases[4].flags.STAGE_VALIDATION_MODE",
            "STAGE_VALIDATION_MODE: on",
            'YAML reads a bare off/on as a boolean, so quote it: "off"',
        )
    )

    text = swap(
        "    flags:\n      STAGE_VALIDATION_MODE: enforce\n      ENFORCE_WRITE_ONLY: true\n"
        "      ENFORCEMENT_PERCENT: 100\n",
        "    flags:\n      STAGE_VALIDATION_MODE: off\n      ENFORCE_WRITE_ONLY: true\n"
        "      ENFORCEMENT_PERCENT: 100\n",
    )
    add(
        case(
            "mode-bare-off",
            text,
            "phases[5].flags.STAGE_VALIDATION_MODE",
            "STAGE_VALIDATION_MODE: off",
            "STAGE_VALIDATION_MODE must be one of off, warn, enforce; YAML reads a bare off/on",
        )
    )

    # 2.4 takes 2.1's flags through a YAML alias: the line is where the value is written.
    text = swap(
        "      STAGE_VALIDATION_MODE: warn\n      ENFORCE_WRITE_ONLY: false\n",
        "      STAGE_VALIDATION_MODE: warn\n      ENFORCE_WRITE_ONLY: yes-please\n",
    )
    add(
        case(
            "write-only-not-boolean-via-alias",
            text,
            "phases[1].flags.ENFORCE_WRITE_ONLY",
            "ENFORCE_WRITE_ONLY: yes-please",
            "ENFORCE_WRITE_ONLY must be true or false, not 'yes-please'",
            problems=2,
        )
    )

    text = swap(
        "      STAGE_VALIDATION_DRY_RUN: true\n",
        "      STAGE_VALIDATION_DRY_RUN: true\n      ENFORCE_READS: true\n",
    )
    add(
        case(
            "unknown-flag",
            text,
            "phases[3].flags.ENFORCE_READS",
            "ENFORCE_READS: true",
            "unknown flag 'ENFORCE_READS'; known flags are STAGE_VALIDATION_MODE, "
            "ENFORCE_WRITE_ONLY, ENFORCEMENT_PERCENT, STAGE_VALIDATION_DRY_RUN, "
            "STAGE_VALIDATION_ENDPOINT_MODES",
        )
    )

    text = swap(
        "      ENFORCEMENT_PERCENT: 100\n      STAGE_VALIDATION_DRY_RUN: false\n",
        "      ENFORCEMENT_PERCENT: 100\n",
    )
    add(
        case(
            "phase-missing-a-flag",
            text,
            "phases[5].flags",
            line_of(text, "    flags:", line_of(text, '  - id: "4"')),
            "step '4' leaves STAGE_VALIDATION_DRY_RUN unset; every step sets every declared flag",
        )
    )

    text = swap(
        "      STAGE_VALIDATION_DRY_RUN: false\n      # The runbook's production configuration",
        "      # The runbook's production configuration",
    )
    add(
        case(
            "steps-missing-a-flag",
            text,
            "phases[4].steps[2].flags",
            '{id: "3@50"',
            "step '3@50' leaves STAGE_VALIDATION_DRY_RUN unset",
            problems=4,
        )
    )

    # --- progression and approvals ---
    text = swap("      ENFORCEMENT_PERCENT: 100\n", "      ENFORCEMENT_PERCENT: 50\n")
    add(
        case(
            "percent-decreasing-between-phases",
            text,
            "phases[5].flags.ENFORCEMENT_PERCENT",
            "      ENFORCEMENT_PERCENT: 50",
            "step '4' sets ENFORCEMENT_PERCENT=50 after '3@100' set 100; steps must increase "
            "the percentage",
        )
    )

    text = swap(
        '{id: "3@50", flags: {ENFORCEMENT_PERCENT: 50}}',
        '{id: "3@50", flags: {ENFORCEMENT_PERCENT: 25}}',
    )
    add(
        case(
            "percent-not-increasing-in-phase-3",
            text,
            "phases[4].steps[2].flags.ENFORCEMENT_PERCENT",
            '{id: "3@50"',
            "step '3@50' sets ENFORCEMENT_PERCENT=25 after '3@25' set 25; steps must increase "
            "the percentage within a phase",
        )
    )

    text = swap(
        "contacted: a person decides.\n    approval: {required: true}",
        "contacted: a person decides.\n    approval: {required: false}",
    )
    add(
        case(
            "percent-rises-without-approval",
            text,
            "phases[3].approval.required",
            "approval: {required: false}",
            "promotion out of '2.7' raises ENFORCEMENT_PERCENT from 0 to 10, so it must "
            "require an approval",
            # The endpoint overrides change there too, and they are marked approval_to_change.
            problems=2,
        )
    )

    # --- declared flags ---
    text = swap(
        "ENFORCE_WRITE_ONLY: {type: boolean, safe: false}",
        "ENFORCE_WRITE_ONLY: {type: boolean, safe: maybe}",
    )
    add(
        case(
            "safe-value-of-the-wrong-type",
            text,
            "flags.ENFORCE_WRITE_ONLY.safe",
            "safe: maybe",
            "Input should be a valid boolean",
        )
    )
    text = swap(
        'STAGE_VALIDATION_MODE: {type: enum, values: ["off", warn, enforce], safe: warn}',
        'STAGE_VALIDATION_MODE: {type: enum, values: ["off", warn, enforce], safe: warm}',
    )
    add(
        case(
            "safe-value-outside-the-enum",
            text,
            "flags.STAGE_VALIDATION_MODE.safe",
            "safe: warm",
            "STAGE_VALIDATION_MODE must be one of off, warn, enforce, not 'warm'",
        )
    )
    text = swap(
        'STAGE_VALIDATION_MODE: {type: enum, values: ["off", warn, enforce], safe: warn}',
        'STAGE_VALIDATION_MODE: {type: enum, values: ["off", warn], safe: warn}',
    )
    add(
        case(
            "step-value-outside-the-declared-enum",
            text,
            "phases[4].flags.STAGE_VALIDATION_MODE",
            ["      STAGE_VALIDATION_MODE: enforce", "      # Enforce mode"][0],
            "STAGE_VALIDATION_MODE must be one of off, warn, not 'enforce'",
            problems=2,  # phases 3 and 4
        )
    )
    text = swap(
        "ENFORCEMENT_PERCENT: {type: integer, min: 0, max: 100, exposure: true, safe: 0}",
        "ENFORCEMENT_PERCENT: {type: integer, min: 0, max: 50, exposure: true, safe: 0}",
    )
    add(
        case(
            "step-value-outside-the-integer-range",
            text,
            "phases[4].steps[3].flags.ENFORCEMENT_PERCENT",
            '{id: "3@100"',
            "ENFORCEMENT_PERCENT must be from 0 to 50, not 100",
            problems=2,
        )
    )
    text = swap(
        "ENFORCE_WRITE_ONLY: {type: boolean, safe: false}",
        "ENFORCE_WRITE_ONLY: {type: integer, min: 0, max: 1}",
    )
    add(
        case(
            "step-value-of-the-wrong-type",
            text,
            "phases[0].flags.ENFORCE_WRITE_ONLY",
            "      ENFORCE_WRITE_ONLY: false",
            "ENFORCE_WRITE_ONLY must be a whole number from 0 to 1, not true/false",
            problems=6,
        )
    )
    text = swap(
        "      STAGE_VALIDATION_ENDPOINT_MODES: {}\n    min_duration: 2d",
        "      STAGE_VALIDATION_ENDPOINT_MODES: '{\"/api/allocations\": enforce}'\n"
        "    min_duration: 2d",
    )
    add(
        case(
            "json-object-flag-not-json",
            text,
            "phases[2].flags.STAGE_VALIDATION_ENDPOINT_MODES",
            "STAGE_VALIDATION_ENDPOINT_MODES: '{",
            "STAGE_VALIDATION_ENDPOINT_MODES is not valid JSON: Expecting value at character 21",
        )
    )
    text = swap(
        "      STAGE_VALIDATION_ENDPOINT_MODES: {}\n    min_duration: 2d",
        "      STAGE_VALIDATION_ENDPOINT_MODES: [/api/allocations]\n    min_duration: 2d",
    )
    add(
        case(
            "json-object-flag-a-list",
            text,
            "phases[2].flags.STAGE_VALIDATION_ENDPOINT_MODES",
            "STAGE_VALIDATION_ENDPOINT_MODES: [",
            "expected a string, true/false, a whole number or a mapping, not a list",
        )
    )
    text = swap(
        "  STAGE_VALIDATION_DRY_RUN: {type: boolean, safe: false}\n",
        "  STAGE_VALIDATION_DRY_RUN: {type: boolean, safe: false}\n"
        "  SHADOW_PERCENT: {type: integer, min: 0, max: 100, exposure: true}\n",
    )
    add(
        case(
            "two-exposure-flags",
            text,
            "flags.SHADOW_PERCENT.exposure",
            "SHADOW_PERCENT:",
            "ENFORCEMENT_PERCENT is already the exposure percentage; a plan has at most one",
        )
    )
    text = swap(
        "  STAGE_VALIDATION_DRY_RUN: {type: boolean, safe: false}\n",
        "  STAGE_VALIDATION_DRY_RUN: {type: boolean, safe: false}\n"
        "  CACHE_TTL_SECONDS: {type: integer, min: 1}\n",
    )
    add(
        case(
            "a-step-missing-a-declared-flag",
            text,
            "phases[0].flags",
            line_of(text, "    flags: &warn"),
            "step '2.1' leaves CACHE_TTL_SECONDS unset; every step sets every declared flag",
            problems=9,
        )
    )
    text = swap(
        "  STAGE_VALIDATION_DRY_RUN: {type: boolean, safe: false}\n",
        "  STAGE_VALIDATION_DRY_RUN: {type: boolean, safe: false}\n"
        "  stage validation/mode: {type: boolean}\n",
    )
    add(
        case(
            "flag-name-not-a-configmap-key",
            text,
            "flags.stage validation/mode",
            "  stage validation/mode:",
            "flag name 'stage validation/mode' is not a valid ConfigMap key",
        )
    )
    text = swap(
        "  ENFORCE_WRITE_ONLY: {type: boolean, safe: false}\n",
        "  ENFORCE_WRITE_ONLY: {type: bool, safe: false}\n",
    )
    add(
        case(
            "flag-type-unknown",
            text,
            "flags.ENFORCE_WRITE_ONLY",
            "ENFORCE_WRITE_ONLY: {type: bool",
            "a flag declaration needs type: enum, boolean, integer, string or json_object",
        )
    )
    text = swap(
        "  STAGE_VALIDATION_DRY_RUN: {type: boolean, safe: false}\n",
        "  STAGE_VALIDATION_DRY_RUN: {type: boolean, exposure: true}\n",
    )
    add(
        case(
            "exposure-flag-not-an-integer",
            text,
            "flags.STAGE_VALIDATION_DRY_RUN",
            "STAGE_VALIDATION_DRY_RUN: {type: boolean, exposure: true}",
            "only an integer flag can be the exposure percentage",
        )
    )
    text = swap("  flag: STAGE_VALIDATION_MODE\n", "  flag: STAGE_VALIDATION_DRY_RUN\n")
    add(
        case(
            "observed-mode-reads-a-boolean-flag",
            text,
            "observed_mode.flag",
            "  flag: STAGE_VALIDATION_DRY_RUN",
            "observed_mode reads flag 'STAGE_VALIDATION_DRY_RUN', which is not an enum flag",
        )
    )

    # --- durations ---
    text = swap("    min_duration: 2d\n", "    min_duration: 5d\n")
    add(
        case(
            "min-duration-above-max",
            text,
            "phases[2].min_duration",
            "min_duration: 5d",
            "step '2.5' has min_duration 5d longer than max_duration 4d",
        )
    )

    text = swap(
        '{id: "3@50", flags: {ENFORCEMENT_PERCENT: 50}}',
        '{id: "3@50", flags: {ENFORCEMENT_PERCENT: 50}, min_duration: 5d}',
    )
    add(
        case(
            "step-min-duration-above-phase-max",
            text,
            "phases[4].steps[2].min_duration",
            "min_duration: 5d",
            "step '3@50' has min_duration 5d longer than max_duration 4d",
        )
    )

    text = swap("threshold: 0, window: 24h}", "threshold: 0, window: 0s}")
    add(
        case(
            "gate-window-zero",
            text,
            "phases[2].gates[2].window",
            "window: 0s}",
            "a gate's window must be longer than 0s",
        )
    )

    # --- references: signals, comparators, jobs, ids, baselines ---
    text = swap(
        "{name: blast-radius, signal: would_reject_ratio",
        "{name: blast-radius, signal: would_reject_rate",
    )
    add(
        case(
            "gate-unknown-signal",
            text,
            "phases[3].gates[0].signal",
            "would_reject_rate",
            f"unknown signal 'would_reject_rate'; the plan defines {SIGNALS}",
        )
    )

    text = swap(
        "{name: canary-latency-degraded, signal: p99_latency_seconds",
        "{name: canary-latency-degraded, signal: p99_latency",
    )
    add(
        case(
            "trigger-unknown-signal",
            text,
            "phases[4].triggers[4].signal",
            "signal: p99_latency,",
            f"unknown signal 'p99_latency'; the plan defines {SIGNALS}",
        )
    )

    text = swap("  signal: observed_mode\n", "  signal: observed_mode_gauge\n")
    add(
        case(
            "observed-mode-unknown-signal",
            text,
            "observed_mode.signal",
            "signal: observed_mode_gauge",
            "unknown signal 'observed_mode_gauge'",
        )
    )

    text = swap(
        'comparator: "<"\n        threshold: {min: 0.005, baseline: p99_latency_seconds, '
        "multiplier: 2}\n        window: 48h",
        'comparator: "=<"\n        threshold: {min: 0.005, baseline: p99_latency_seconds, '
        "multiplier: 2}\n        window: 48h",
    )
    add(
        case(
            "unknown-comparator",
            text,
            "phases[5].gates[1].comparator",
            'comparator: "=<"',
            "Input should be '<', '<=', '>' or '>=', not '=<'",
        )
    )

    text = swap("      - {job_succeeded: create-indexes}\n", "      - {job: create-indexes}\n")
    add(
        case(
            "gate-of-no-kind",
            text,
            "phases[1].gates[0]",
            "{job: create-indexes}",
            "a gate needs one of the keys signal, no_firing_alerts or job_succeeded; "
            "found keys job",
        )
    )

    def alert_trigger_misspelt(document: dict[str, Any]) -> None:
        document["phases"][5]["triggers"][1] = {"name": "high-error-rate-alert", "alert": "X"}

    text = edited(alert_trigger_misspelt)
    add(
        case(
            "trigger-of-no-kind",
            text,
            "phases[5].triggers[1]",
            line_of(text, "alert: X") - 1,
            "a trigger needs one of the keys signal or alert_firing; found keys name, alert",
        )
    )

    text = swap(
        "      - {job_succeeded: verify-migration}\n",
        "      - {job_succeeded: verify-migrations}\n",
    )
    add(
        case(
            "job-gate-undeclared-job",
            text,
            "phases[2].gates[1].job_succeeded",
            "verify-migrations",
            "gate names job 'verify-migrations', which phase '2.5' does not declare "
            "(jobs: migrate-stages, verify-migration)",
        )
    )

    text = swap("after: [migrate-stages]", "after: [migrate-stage]")
    add(
        case(
            "job-after-unknown-job",
            text,
            "phases[2].jobs[1].after[0]",
            "after: [migrate-stage]",
            "job 'verify-migration' runs after 'migrate-stage', which is not a job declared "
            "earlier in phase '2.5'",
        )
    )

    text = swap('{id: "3@100", flags', '{id: "3@50", flags')
    add(
        case(
            "duplicate-step-id",
            text,
            "phases[4].steps[3].id",
            '{id: "3@50", flags: {ENFORCEMENT_PERCENT: 100}}',
            "step id '3@50' appears twice",
        )
    )

    text = swap('  - id: "2.4"\n', '  - id: "2.1"\n')
    add(
        case(
            "duplicate-phase-id",
            text,
            "phases[1].id",
            line_of(text, '  - id: "2.1"', line_of(text, '  - id: "2.1"') + 1),
            "phase id '2.1' appears twice",
        )
    )

    text = swap(
        "      signals: [error_ratio, p99_latency_seconds]\n", "      signals: [error_ratio]\n"
    )
    add(
        case(
            "adaptive-baseline-never-captured",
            text,
            "phases[1].gates[1].threshold.baseline",
            "baseline: p99_latency_seconds",
            "adaptive threshold uses the baseline of 'p99_latency_seconds', which no earlier "
            "phase captures",
            problems=2,
        )
    )

    text = swap(
        "    # Nothing precedes 2.1, so a degradation pauses the rollout instead.\n"
        "    on_degradation: pause\n",
        "    on_degradation: rollback\n",
    )
    add(
        case(
            "first-phase-rolls-back",
            text,
            "phases[0].on_degradation",
            "on_degradation: rollback",
            "the first step has no earlier step to roll back to; set on_degradation: pause",
        )
    )

    text = swap("    degradation_window: 30m\n", "")
    add(
        case(
            "degradation-scope-without-window",
            text,
            "phases[4].triggers[3].scope",
            "name: canary-error-rate-degraded",
            "trigger is scoped to the degradation window, but phase '3' sets no degradation_window",
            problems=3,
        )
    )

    # --- promotion window ---
    text = swap("evaluation:\n", "promotion_window:\n  timezone: Europe/Atlantis\n\nevaluation:\n")
    add(
        case(
            "promotion-window-unknown-zone",
            text,
            "promotion_window.timezone",
            "Europe/Atlantis",
            "unknown time zone 'Europe/Atlantis'; use an IANA name such as Europe/Berlin",
        )
    )

    text = swap(
        "evaluation:\n",
        "promotion_window:\n  timezone: Europe/Berlin\n  freezes:\n"
        "    - start: 2026-12-24T00:00:00Z\n      end: 2026-12-20T00:00:00Z\n"
        "      reason: holidays\n\nevaluation:\n",
    )
    add(
        case(
            "freeze-ends-before-start",
            text,
            "promotion_window.freezes[0].end",
            "end: 2026-12-20",
            "freeze end 2026-12-20T00:00:00+00:00 must be after its start 2026-12-24T00:00:00+00:00",
        )
    )

    text = swap(
        "evaluation:\n", 'promotion_window:\n  start: "17:00"\n  end: "09:00"\n\nevaluation:\n'
    )
    add(
        case(
            "promotion-window-ends-before-start",
            text,
            "promotion_window.end",
            'end: "09:00"',
            "promotion window end 09:00 must be after its start 17:00 on the same day",
        )
    )
    return cases


CASES = _cases()


def test_the_table_is_large_and_its_cases_distinct() -> None:
    assert len(CASES) >= 25
    assert len({c.id for c in CASES}) == len(CASES)
    assert len({c.text for c in CASES}) == len(CASES)


@pytest.mark.parametrize("bad", CASES, ids=[c.id for c in CASES])
def test_malformed_plan_names_file_path_line_and_reason(bad: Case) -> None:
    with pytest.raises(DocumentError) as raised:
        parse_plan(bad.text, source="bad.yaml")
    error = raised.value
    rendered = str(error)
    count = f"{bad.problems} problem{'s' if bad.problems != 1 else ''}"
    assert rendered.splitlines()[0] == f"bad.yaml: invalid plan ({count})", rendered
    assert error.source == "bad.yaml"
    assert len(error.problems) == bad.problems, rendered
    where = f"  {bad.path}, line {bad.line}: "
    matching = [line for line in rendered.splitlines() if line.startswith(where)]
    assert matching, f"no problem at {where!r} in:\n{rendered}"
    assert any(bad.reason in line for line in matching), rendered


def test_every_problem_of_the_shape_is_reported_at_once() -> None:
    text = swap('version: "3.0"\n', 'version: "3.0"\nowner: team-payments\n')
    text = swap("    max_duration: 2h\n", "    max_duration: 2 hours\n", text)
    text = swap(
        "# signs off that the indexes are in place.\n    approval: {required: true}",
        "# signs off that the indexes are in place.\n    approval: {required: true, approvers: 0}",
        text,
    )
    with pytest.raises(DocumentError) as raised:
        parse_plan(text, source="bad.yaml")
    rendered = str(raised.value)
    assert rendered.splitlines()[0] == "bad.yaml: invalid plan (3 problems)"
    assert f"  owner, line {line_of(text, 'owner:')}: unknown field 'owner'" in rendered
    assert (
        f"  phases[1].max_duration, line {line_of(text, '2 hours')}: invalid duration" in rendered
    )
    assert (
        f"  phases[1].approval.approvers, line {line_of(text, 'approvers: 0')}: "
        "Input should be greater than or equal to 1" in rendered
    )


def test_every_problem_across_fields_is_reported_at_once() -> None:
    text = swap(
        "{name: blast-radius, signal: would_reject_ratio",
        "{name: blast-radius, signal: would_reject_rate",
    )
    text = swap("after: [migrate-stages]", "after: [migrate-stage]", text)
    text = swap("    min_duration: 2d\n", "    min_duration: 5d\n", text)
    with pytest.raises(DocumentError) as raised:
        parse_plan(text, source="bad.yaml")
    problems = {(p.path, p.line) for p in raised.value.problems}
    assert problems == {
        (("phases", 3, "gates", 0, "signal"), line_of(text, "would_reject_rate")),
        (("phases", 2, "jobs", 1, "after", 0), line_of(text, "after: [migrate-stage]")),
        (("phases", 2, "min_duration"), line_of(text, "min_duration: 5d")),
    }
    assert str(raised.value).splitlines()[0] == "bad.yaml: invalid plan (3 problems)"


def test_the_bundled_plan_has_no_problems() -> None:
    plan = parse_plan(PLAN_TEXT, source="stage-validation-v3.yaml")
    assert plan.name == "stage-validation-v3"
    assert check_plan(plan) == []


def test_unquoted_promotion_window_times_are_a_located_problem() -> None:
    text = swap("evaluation:\n", "promotion_window:\n  start: 09:00\n  end: 17:00\n\nevaluation:\n")
    with pytest.raises(DocumentError) as raised:
        parse_plan(text, source="bad.yaml")
    rendered = str(raised.value)
    assert f"promotion_window.end, line {line_of(text, 'end: 17:00')}: " in rendered
    assert "YAML read an unquoted time as the number 1020; quote it: '17:00'" in rendered
