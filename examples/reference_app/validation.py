"""The reference app's decisions for one request, kept free of HTTP and metrics.

The rollout controller changes five flags and trusts the app to interpret them the
way the runbook describes. Writing that interpretation as plain functions lets the
tests pin it down (which requests are enforced, rejected or shadow-rejected) without
starting a server, and lets the server stay a thin shell around it.

Interpretation, where the runbook leaves room:

- ``off`` validates nothing.
- ``ENFORCE_WRITE_ONLY=true`` enforces every write, in warn and in enforce mode
  alike (phase 2.5, kept through phases 3 and 4 as the runbook's production
  configuration shows it beside ``enforcementPercent: 10``). In warn mode reads
  stay warned.
- ``ENFORCEMENT_PERCENT`` selects, by a SHA-256 bucket of the request id, which
  requests ``enforce`` mode enforces; the others are warned (phase 3). It adds to
  write enforcement and never thins it out: with write enforcement on, every write
  is enforced at any percentage, and reads are enforced at the percentage.
- ``STAGE_VALIDATION_DRY_RUN=true`` shadow-enforces the requests that would only be
  warned: they are judged as in enforce mode but never rejected (phase 2.7).
  Requests that are really enforced (writes under write-only) stay enforced, so
  shadow mode never lets invalid writes back in.
- ``STAGE_VALIDATION_ENDPOINT_MODES`` (a JSON object, endpoint to mode: the
  runbook's ``endpointMode``) gives an endpoint its own mode. An override is the
  endpoint's whole mode: ``enforce`` enforces every request to it, ``warn`` warns
  every one (dry run still shadows them), ``off`` validates none; neither the
  global mode, write enforcement nor the percentage applies to it.
- Enforcement accepts canonical stages only: a deprecated variant is normalised and
  allowed with warnings in warn mode, and rejected like an unknown stage when
  enforced, which is what the runbook's dry-run example headers show.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal, get_args

Mode = Literal["off", "warn", "enforce"]
Operation = Literal["read", "write"]
Result = Literal["ok", "warn", "reject", "would_reject"]
StageStatus = Literal["canonical", "deprecated", "unknown"]

MODES: tuple[Mode, ...] = get_args(Mode)
RESULTS: tuple[Result, ...] = get_args(Result)

MODE_ENV = "STAGE_VALIDATION_MODE"
WRITE_ONLY_ENV = "ENFORCE_WRITE_ONLY"
PERCENT_ENV = "ENFORCEMENT_PERCENT"
DRY_RUN_ENV = "STAGE_VALIDATION_DRY_RUN"
ENDPOINT_MODES_ENV = "STAGE_VALIDATION_ENDPOINT_MODES"

CANONICAL_STAGES: tuple[str, ...] = (
    "pre-seed",
    "seed",
    "series-a",
    "series-b",
    "series-c",
    "series-c+",
)

# Spellings clients are known to send, mapped to the stage they mean. Case and
# separator variants of canonical names ("Series A", "series_b") are recognised
# by `classify_stage` without being listed here.
DEPRECATED_VARIANTS: Mapping[str, str] = {
    "preseed": "pre-seed",
    "angel": "pre-seed",
    "seriesa": "series-a",
    "seriesb": "series-b",
    "seriesc": "series-c",
    "series-d": "series-c+",
    "series-e": "series-c+",
    "late-stage": "series-c+",
    "growth": "series-c+",
}

_SEPARATORS = re.compile(r"[\s_]+")


class ConfigError(ValueError):
    """A flag value the app refuses to start (or reconfigure) with."""


@dataclass(frozen=True)
class AppConfig:
    """The runbook flags (and per-endpoint modes) as the app runs with them.

    Unset variables take the legacy behaviour: warn mode (the runbook's
    ``defaultMode``), no write-only enforcement, no dry run, and enforcement of
    every request once the mode is ``enforce``.
    """

    mode: Mode = "warn"
    enforce_write_only: bool = False
    enforcement_percent: int = 100
    dry_run: bool = False
    endpoint_modes: tuple[tuple[str, Mode], ...] = ()
    """Per-endpoint overrides, sorted by endpoint (the runbook's ``endpointMode``)."""

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ConfigError(f"{MODE_ENV} must be one of {', '.join(MODES)}, not {self.mode!r}")
        if isinstance(self.enforcement_percent, bool) or not isinstance(
            self.enforcement_percent, int
        ):
            raise ConfigError(f"{PERCENT_ENV} must be a whole number from 0 to 100")
        if not 0 <= self.enforcement_percent <= 100:
            raise ConfigError(
                f"{PERCENT_ENV} must be from 0 to 100, not {self.enforcement_percent}"
            )
        for endpoint, mode in self.endpoint_modes:
            if mode not in MODES:
                raise ConfigError(
                    f"{ENDPOINT_MODES_ENV}: {endpoint} must be one of {', '.join(MODES)}, "
                    f"not {mode!r}"
                )

    def endpoint_mode(self, endpoint: str | None) -> Mode | None:
        """The endpoint's own mode, or None when it follows the global flags."""
        return dict(self.endpoint_modes).get(endpoint) if endpoint is not None else None

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> AppConfig:
        """Read the flags from environment-style text; raise ConfigError naming a bad one."""
        defaults = cls()
        return cls(
            mode=_parse_mode(env.get(MODE_ENV, defaults.mode)),
            enforce_write_only=_parse_bool(
                WRITE_ONLY_ENV, env.get(WRITE_ONLY_ENV, str(defaults.enforce_write_only))
            ),
            enforcement_percent=_parse_percent(
                env.get(PERCENT_ENV, str(defaults.enforcement_percent))
            ),
            dry_run=_parse_bool(DRY_RUN_ENV, env.get(DRY_RUN_ENV, str(defaults.dry_run))),
            endpoint_modes=_parse_endpoint_modes(env.get(ENDPOINT_MODES_ENV, "{}")),
        )

    def to_env(self) -> dict[str, str]:
        """The flags as the environment text `from_env` reads back."""
        return {
            MODE_ENV: self.mode,
            WRITE_ONLY_ENV: str(self.enforce_write_only).lower(),
            PERCENT_ENV: str(self.enforcement_percent),
            DRY_RUN_ENV: str(self.dry_run).lower(),
            ENDPOINT_MODES_ENV: json.dumps(
                dict(self.endpoint_modes), sort_keys=True, separators=(",", ":")
            ),
        }


def _parse_mode(text: str) -> Mode:
    value = text.strip().lower()
    for mode in MODES:
        if value == mode:
            return mode
    raise ConfigError(f"{MODE_ENV} must be one of {', '.join(MODES)}, not {text!r}")


def _parse_endpoint_modes(text: str) -> tuple[tuple[str, Mode], ...]:
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        raise ConfigError(f"{ENDPOINT_MODES_ENV} is not valid JSON: {text[:80]!r}") from None
    if not isinstance(value, dict):
        raise ConfigError(f"{ENDPOINT_MODES_ENV} must be a JSON object of endpoint to mode")
    modes: dict[str, Mode] = {}
    for endpoint, mode in value.items():
        if not isinstance(mode, str):
            raise ConfigError(f"{ENDPOINT_MODES_ENV}: {endpoint} must be a mode, not {mode!r}")
        try:
            modes[endpoint] = _parse_mode(mode)
        except ConfigError:
            raise ConfigError(
                f"{ENDPOINT_MODES_ENV}: {endpoint} must be one of {', '.join(MODES)}, not {mode!r}"
            ) from None
    return tuple(sorted(modes.items()))


def _parse_bool(name: str, text: str) -> bool:
    value = text.strip().lower()
    if value in ("true", "false"):
        return value == "true"
    raise ConfigError(f"{name} must be true or false, not {text!r}")


def _parse_percent(text: str) -> int:
    try:
        percent = int(text.strip())
    except ValueError:
        raise ConfigError(
            f"{PERCENT_ENV} must be a whole number from 0 to 100, not {text!r}"
        ) from None
    if not 0 <= percent <= 100:
        raise ConfigError(f"{PERCENT_ENV} must be from 0 to 100, not {text!r}")
    return percent


@dataclass(frozen=True)
class StageCheck:
    """One stage as a client sent it, and what the app makes of it."""

    stage: str
    status: StageStatus
    canonical: str | None


def classify_stage(stage: str) -> StageCheck:
    """Tell a canonical stage from a deprecated variant (with its meaning) and an unknown one."""
    if stage in CANONICAL_STAGES:
        return StageCheck(stage, "canonical", stage)
    key = _SEPARATORS.sub("-", stage.strip().lower())
    if key in CANONICAL_STAGES:
        return StageCheck(stage, "deprecated", key)
    meaning = DEPRECATED_VARIANTS.get(key)
    if meaning is not None:
        return StageCheck(stage, "deprecated", meaning)
    return StageCheck(stage, "unknown", None)


def enforcement_bucket(request_id: str) -> int:
    """The request's bucket from 0 to 99, from the SHA-256 of its id."""
    digest = hashlib.sha256(request_id.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % 100


def enforcement_applies(request_id: str, percent: int) -> bool:
    """Whether a rollout at `percent` enforces this request; one id always gets one answer."""
    return enforcement_bucket(request_id) < percent


def effective_mode(
    config: AppConfig, operation: Operation, request_id: str, endpoint: str | None = None
) -> Mode:
    """The mode one request is validated in: its endpoint's override, else the flags' rules."""
    override = config.endpoint_mode(endpoint)
    if override is not None:
        return override
    if config.mode == "off":
        return "off"
    if config.enforce_write_only and operation == "write":
        return "enforce"
    if config.mode == "enforce" and enforcement_applies(request_id, config.enforcement_percent):
        return "enforce"
    return "warn"


@dataclass(frozen=True)
class Verdict:
    """The outcome of validating one request; `result` is None when nothing was validated."""

    mode: Mode
    result: Result | None
    checks: tuple[StageCheck, ...]

    @property
    def rejected(self) -> bool:
        return self.result == "reject"

    @property
    def deprecated(self) -> tuple[StageCheck, ...]:
        return tuple(check for check in self.checks if check.status == "deprecated")

    @property
    def unknown(self) -> tuple[StageCheck, ...]:
        return tuple(check for check in self.checks if check.status == "unknown")


def judge(
    config: AppConfig,
    *,
    operation: Operation,
    request_id: str,
    stages: Iterable[str],
    endpoint: str | None = None,
) -> Verdict:
    """Validate the stages of one request to `endpoint` under `config`."""
    mode = effective_mode(config, operation, request_id, endpoint)
    if mode == "off":
        return Verdict(mode, None, ())
    checks = tuple(classify_stage(stage) for stage in stages)
    if all(check.status == "canonical" for check in checks):
        result: Result = "ok"
    elif mode == "enforce":
        result = "reject"
    elif config.dry_run:
        result = "would_reject"
    else:
        result = "warn"
    return Verdict(mode, result, checks)
