"""The Prometheus rule files: promtool accepts them and their unit tests pass (and can fail)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support import RULES_DIR
from tests.support.prometheus import PrometheusBinaries

RULE_FILES = sorted(RULES_DIR.glob("*.rules.yml"))
UNIT_TEST_FILES = sorted((RULES_DIR / "tests").glob("*.test.yml"))

SIGNALS = {
    "job:stage_validation_error_ratio:rate5m",
    "job:stage_normalization_p99_seconds:rate5m",
    "job:stage_validation_would_reject_ratio:rate5m",
    "job:stage_warn_unknown_ratio:rate5m",
}
BASELINES = {
    "job:stage_validation_error_ratio:baseline24h",
    "job:stage_normalization_p99_seconds:baseline24h",
}
ALERTS = {
    "StageValidationHighErrorRate",
    "ShadowModeBlastRadiusTooHigh",
    "StageValidatorLatencyRegression",
    "EnforceGateUnknownRateHigh",
    "RedisModeFetchFailing",
    "StageValidationHighErrorRateVsStaging",
    "StageValidatorLatencyRegressionVsStaging",
}
ADAPTIVE_ALERTS = {
    "StageValidationHighErrorRate": "job:stage_validation_error_ratio:baseline24h",
    "StageValidatorLatencyRegression": "job:stage_normalization_p99_seconds:baseline24h",
    "StageValidationHighErrorRateVsStaging": "stage_rollout_baseline",
    "StageValidatorLatencyRegressionVsStaging": "stage_rollout_baseline",
}
EXPORTED_FORM = "stage-validation-exported-baseline-alerts.rules.yml"


def promtool(binaries: PrometheusBinaries, *args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(binaries.promtool), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def rules_of(path: Path) -> list[dict[str, Any]]:
    document = yaml.safe_load(path.read_text())
    return [rule for group in document["groups"] for rule in group["rules"]]


def test_the_rule_files_define_the_runbook_names() -> None:
    rules = [rule for path in RULE_FILES for rule in rules_of(path)]
    assert {r["record"] for r in rules if "record" in r} == SIGNALS | BASELINES
    assert {r["alert"] for r in rules if "alert" in r} == ALERTS


def test_baselines_average_the_signals_over_24h() -> None:
    for rule in rules_of(RULES_DIR / "stage-validation-baselines.rules.yml"):
        signal = rule["record"].replace(":baseline24h", ":rate5m")
        assert f"avg_over_time({signal}[24h])" in rule["expr"]


@pytest.mark.prometheus
def test_promtool_accepts_the_rule_files(prometheus_binary: PrometheusBinaries) -> None:
    result = promtool(prometheus_binary, "check", "rules", *RULE_FILES)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("SUCCESS") == len(RULE_FILES) == 4


BROKEN_RULES = {
    "unbalanced parenthesis": """
groups:
  - name: broken
    rules:
      - record: job:stage_validation_error_ratio:rate5m
        expr: sum by (job) (rate(stage_validation_errors_total[5m])
""",
    "invalid record name": """
groups:
  - name: broken
    rules:
      - record: job stage ratio
        expr: vector(1)
""",
    "alert with a bad duration": """
groups:
  - name: broken
    rules:
      - alert: StageValidationHighErrorRate
        expr: vector(1) > 0
        for: five minutes
""",
}


@pytest.mark.prometheus
@pytest.mark.parametrize("case", sorted(BROKEN_RULES))
def test_promtool_rejects_a_broken_rule_file(
    prometheus_binary: PrometheusBinaries, tmp_path: Path, case: str
) -> None:
    broken = tmp_path / "broken.rules.yml"
    broken.write_text(BROKEN_RULES[case])
    result = promtool(prometheus_binary, "check", "rules", broken)
    assert result.returncode != 0
    assert "FAILED" in result.stdout + result.stderr


@pytest.mark.prometheus
@pytest.mark.parametrize("test_file", UNIT_TEST_FILES, ids=lambda path: path.name)
def test_the_rule_unit_tests_pass(prometheus_binary: PrometheusBinaries, test_file: Path) -> None:
    result = promtool(prometheus_binary, "test", "rules", test_file)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


@pytest.mark.prometheus
def test_the_rule_unit_tests_fail_when_an_alert_changes(
    prometheus_binary: PrometheusBinaries, tmp_path: Path
) -> None:
    # The runbook's own sample expression: it fires whenever the comparison is false.
    copy = tmp_path / "prometheus"
    shutil.copytree(RULES_DIR, copy)
    alerts = copy / "stage-validation-alerts.rules.yml"
    document = yaml.safe_load(alerts.read_text())
    for rule in document["groups"][0]["rules"]:
        if rule.get("alert") == "StageValidationHighErrorRate":
            rule["expr"] = (
                "job:stage_validation_error_ratio:rate5m"
                " > (job:stage_validation_error_ratio:baseline24h * 2) or vector(0.01)"
            )
    alerts.write_text(yaml.safe_dump(document))
    # Only the first-day cases: the same verdicts, without a day of samples to evaluate.
    unit_tests = yaml.safe_load((copy / "tests" / "alerts.test.yml").read_text())
    unit_tests["tests"] = [g for g in unit_tests["tests"] if "no baseline" in g["name"]]
    assert len(unit_tests["tests"]) == 4
    short = copy / "tests" / "first-day.test.yml"
    short.write_text(yaml.safe_dump(unit_tests))
    assert promtool(prometheus_binary, "test", "rules", short).returncode != 0
    shutil.copy(RULES_DIR / "stage-validation-alerts.rules.yml", alerts)
    result = promtool(prometheus_binary, "test", "rules", short)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.prometheus
@pytest.mark.parametrize(
    ("wrong", "right"),
    [
        # Reading the production baseline instead of the staging one.
        ('environment="staging"', 'environment="production"'),
        # Ignoring the exported baseline: the minimum alone.
        ("2 * max(", "0 * max("),
        # Forgetting the operator's restarts: the baseline drops with its last scrape.
        ("[1h]", "[1m]"),
    ],
)
def test_the_exported_baseline_unit_tests_fail_when_the_alert_misreads_it(
    prometheus_binary: PrometheusBinaries, tmp_path: Path, wrong: str, right: str
) -> None:
    copy = tmp_path / "prometheus"
    shutil.copytree(RULES_DIR, copy)
    rules = copy / EXPORTED_FORM
    text = rules.read_text()
    assert wrong in text
    rules.write_text(text.replace(wrong, right))
    tests = copy / "tests" / "exported-baselines.test.yml"
    assert promtool(prometheus_binary, "check", "rules", rules).returncode == 0
    assert promtool(prometheus_binary, "test", "rules", tests).returncode != 0


def test_the_exported_form_reads_the_operators_metric_for_each_adaptive_signal() -> None:
    from controller.catalog import load_plan

    captured = [phase.baseline for phase in load_plan().phases if phase.baseline]
    plan_signals = {signal for capture in captured for signal in capture.signals}
    assert plan_signals == {"error_ratio", "p99_latency_seconds"}
    exprs = [rule["expr"] for rule in rules_of(RULES_DIR / EXPORTED_FORM)]
    for signal in plan_signals:
        selector = f'stage_rollout_baseline{{signal="{signal}", environment="staging"}}'
        assert sum(selector in expr for expr in exprs) == 1, signal


def unit_test_groups() -> list[dict[str, Any]]:
    return [
        group for path in UNIT_TEST_FILES for group in yaml.safe_load(path.read_text())["tests"]
    ]


@pytest.mark.parametrize("alert", sorted(ALERTS))
def test_every_alert_has_a_firing_and_a_quiet_unit_test(alert: str) -> None:
    cases = [
        case
        for group in unit_test_groups()
        for case in group.get("alert_rule_test", [])
        if case["alertname"] == alert
    ]
    assert any(case["exp_alerts"] for case in cases), f"{alert} is never shown firing"
    assert any(not case["exp_alerts"] for case in cases), f"{alert} is never shown quiet"


@pytest.mark.parametrize("alert", sorted(ADAPTIVE_ALERTS))
def test_adaptive_alerts_have_a_unit_test_without_baseline(alert: str) -> None:
    baseline = ADAPTIVE_ALERTS[alert]
    fallback_groups = [
        group
        for group in unit_test_groups()
        if any(case["expr"] == f"absent({baseline})" for case in group.get("promql_expr_test", []))
    ]
    assert any(
        case["alertname"] == alert and case["exp_alerts"]
        for group in fallback_groups
        for case in group.get("alert_rule_test", [])
    ), f"{alert} is never shown firing on its minimum while the baseline is absent"
