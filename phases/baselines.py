"""Baselines as records: what was measured, where, over which window, from which query.

A baseline feeds the adaptive thresholds (`max(min, baseline × multiplier)`). It
comes from one of three sources, in this order of precedence:

- `pinned`: a value a person wrote in the plan's `baselines:` block, with a reason;
- `captured`: averaged by this rollout over a phase's time in effect;
- `carried`: exported by another rollout and given in this rollout's spec.

The status keeps the records that count (`RolloutStatus.baselines`, one per
signal); `settle` brings them in line with the plan's pins and the carried ones at
each tick, and `baseline_values` is what the adaptive thresholds read. A signal
with no record has no baseline: its adaptive gates are `unknown`.

`BaselineExport` is the document `stagectl baseline export` prints and a spec may
carry. It is hostile input: `check_export` refuses anything but finite numbers for
the importing plan's own signals measured by the same query.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Literal, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
)
from pydantic.alias_generators import to_camel

from phases.documents import parse_document
from phases.numbers import NUMBER_LIMIT, FiniteNumber, short

if TYPE_CHECKING:
    from phases.plan import Plan
    from phases.status import RolloutStatus

StatusT = TypeVar("StatusT", bound="RolloutStatus")
BaselineSource = Literal["captured", "pinned", "carried"]
EXPORT_API_VERSION = "stage.example.com/v1"
EXPORT_KIND = "BaselineExport"
EXPORT_LIMIT = 64
"""Most records an export document may hold (a plan has far fewer signals)."""
MIGRATED_REASON = "recorded before baselines were records: window and query unknown"

_RECORD_CONFIG = ConfigDict(frozen=True, alias_generator=to_camel, populate_by_name=True)
"""Records in a status ignore fields they do not know: a status is never lost to one."""
_EXPORT_CONFIG = ConfigDict(
    frozen=True, alias_generator=to_camel, populate_by_name=True, extra="forbid"
)


class BaselineRecord(BaseModel):
    """One baseline: its value and where it comes from, stored in the status and exported."""

    model_config = _RECORD_CONFIG

    signal: str = Field(min_length=1, max_length=253)
    value: FiniteNumber
    source: BaselineSource = "captured"
    environment: str = Field(default="", max_length=63, description="where it was measured")
    step: str = Field(default="", max_length=253, description="the step it was averaged over")
    window_from: datetime | None = None
    window_to: datetime | None = None
    query: str = Field(default="", max_length=8192, description="the signal's PromQL")
    plan_hash: str = Field(default="", max_length=64, pattern=r"^[0-9a-f]*$")
    captured_at: datetime | None = None
    reason: str = Field(default="", max_length=1024, description="why a person pinned it")
    carried_from: str = Field(default="", max_length=253, description="the exporting rollout")

    @field_validator("window_to")
    @classmethod
    def _window_order(cls, value: datetime | None, info: ValidationInfo) -> datetime | None:
        start = info.data.get("window_from")
        if value is not None and start is not None and value < start:
            raise ValueError(
                f"window ends ({value.isoformat()}) before it starts ({start.isoformat()})"
            )
        return value


def usable(value: float | None) -> bool:
    """Whether a measured average can be a baseline: a finite number a record holds."""
    return value is not None and math.isfinite(value) and abs(value) <= NUMBER_LIMIT


def migrate_records(value: object) -> object:
    """Statuses written before records held bare numbers per signal: read them as records."""
    if not isinstance(value, Mapping):
        return value
    return {
        signal: (
            {"signal": signal, "value": record, "source": "captured", "reason": MIGRATED_REASON}
            if isinstance(record, int | float) and not isinstance(record, bool)
            else record
        )
        for signal, record in value.items()
    }


def captured_record(
    plan: Plan,
    signal: str,
    value: float,
    *,
    environment: str,
    step: str,
    since: datetime,
    now: datetime,
) -> BaselineRecord:
    """The record of a baseline this rollout averaged over `[since, now]`."""
    return BaselineRecord(
        signal=signal,
        value=value,
        environment=environment,
        step=step,
        window_from=since,
        window_to=now,
        query=plan.signals[signal].query,
        plan_hash=plan.content_hash,
        captured_at=now,
    )


def pinned_records(plan: Plan) -> dict[str, BaselineRecord]:
    """The plan's pinned baselines as records (carried expectations hold no value)."""
    return {
        signal: BaselineRecord(
            signal=signal,
            value=pin.value,
            source="pinned",
            query=plan.signals[signal].query if signal in plan.signals else "",
            plan_hash=plan.content_hash,
            reason=pin.reason,
        )
        for signal, pin in plan.baselines.items()
        if pin.value is not None
    }


def settle(
    plan: Plan,
    records: Mapping[str, BaselineRecord],
    carried: Iterable[BaselineRecord] | None = None,
) -> dict[str, BaselineRecord]:
    """The records that count: pins over this rollout's captures over carried ones.

    A pin removed from the plan leaves no record (its signal has no baseline until
    captured again). Carried records are replaced by `carried`; None (nothing was
    read this tick) keeps those the status holds.
    """
    settled = {s: r for s, r in records.items() if r.source == "captured"}
    if carried is None:
        carried = (r for r in records.values() if r.source == "carried")
    for record in carried:
        if record.signal not in settled:
            settled[record.signal] = record
    settled.update(pinned_records(plan))
    return settled


def settled_status(
    plan: Plan, status: StatusT, carried: Iterable[BaselineRecord] | None = None
) -> StatusT:
    """`status` with its baselines settled; the very same object when nothing changes."""
    nothing_given = carried is None and not plan.baselines
    if nothing_given and all(r.source != "pinned" for r in status.baselines.values()):
        return status  # the common tick: nothing to settle
    settled = settle(plan, status.baselines, carried)
    if settled == status.baselines:
        return status
    return status.model_copy(update={"baselines": settled})


def baseline_values(plan: Plan, status: RolloutStatus) -> dict[str, float]:
    """What adaptive thresholds read: the status's records with the plan's pins applied."""
    values = {signal: record.value for signal, record in status.baselines.items()}
    values.update({s: p.value for s, p in plan.baselines.items() if p.value is not None})
    return values


class ExportedRecord(BaselineRecord):
    """A record in an export document: hostile input, so an unknown field is an error."""

    model_config = _EXPORT_CONFIG


class ExportedPlan(BaseModel):
    """Which plan the exporting rollout ran."""

    model_config = _EXPORT_CONFIG

    name: str = Field(min_length=1, max_length=253)
    version: str = Field(min_length=1, max_length=63)
    hash: str = Field(pattern=r"^[0-9a-f]{64}$")


class BaselineExport(BaseModel):
    """The document `stagectl baseline export` prints and `spec.baselines.document` carries."""

    model_config = _EXPORT_CONFIG

    api_version: Literal["stage.example.com/v1"]
    kind: Literal["BaselineExport"]
    rollout: str = Field(min_length=1, max_length=253)
    namespace: str = Field(default="", max_length=63)
    plan: ExportedPlan
    exported_at: datetime
    baselines: list[ExportedRecord] = Field(max_length=EXPORT_LIMIT)


def export_document(
    plan: Plan, status: RolloutStatus, *, rollout: str, namespace: str, now: datetime
) -> BaselineExport:
    """The baselines a rollout holds, as a document another rollout can carry."""
    return BaselineExport(
        api_version=EXPORT_API_VERSION,
        kind=EXPORT_KIND,
        rollout=rollout,
        namespace=namespace,
        plan=ExportedPlan(name=plan.name, version=plan.version, hash=plan.content_hash),
        exported_at=now,
        baselines=[
            ExportedRecord.model_validate(record.model_dump())
            for _, record in sorted(status.baselines.items())
        ],
    )


class ExportRefused(ValueError):
    """A carried export document that must not count, with the one-line reason."""


def parse_export(text: str, *, source: str) -> BaselineExport:
    """An export document from YAML or JSON text; DocumentError naming every problem."""
    return parse_document(text, BaselineExport, source=source, kind="baseline export")


def read_export(data: object, *, source: str) -> BaselineExport:
    """An export document given as data (a spec field); ExportRefused in one line."""
    try:
        return BaselineExport.model_validate(data)
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "document"
        more = f" (and {error.error_count() - 1} more problems)" if error.error_count() > 1 else ""
        raise ExportRefused(f"{source}: {where}: {first['msg']}{more}") from None


def check_export(plan: Plan, document: BaselineExport) -> tuple[list[BaselineRecord], list[str]]:
    """The records a rollout of `plan` may carry from an export document, and warnings."""
    label = f"{document.plan.name} {document.plan.version}"
    return check_carried(
        plan,
        document.baselines,
        rollout=document.rollout,
        plan_hash=document.plan.hash,
        label=label,
    )


def check_carried(
    plan: Plan,
    given: Iterable[BaselineRecord],
    *,
    rollout: str,
    plan_hash: str,
    label: str = "",
) -> tuple[list[BaselineRecord], list[str]]:
    """The records a rollout of `plan` may carry from `rollout`, and warnings.

    Refused (ExportRefused): a signal the plan does not know, one given twice, a
    non-finite value, or a query other than the plan's for that signal (the
    number would measure something else). A different plan hash is only a
    warning: the exporting rollout (staging) and this one (production) are
    expected to run different plan versions, and the query check already ties
    each number to what this plan measures.
    """
    seen: set[str] = set()
    records: list[BaselineRecord] = []
    for index, record in enumerate(given):
        where = f"baselines[{index}] ({short(record.signal)})"
        if record.signal not in plan.signals:
            known = ", ".join(sorted(plan.signals))
            raise ExportRefused(f"{where}: not a signal of plan {plan.name} (signals: {known})")
        if record.signal in seen:
            raise ExportRefused(f"{where}: signal given twice")
        if not math.isfinite(record.value):
            raise ExportRefused(f"{where}: value is not finite")
        if record.query != plan.signals[record.signal].query:
            raise ExportRefused(
                f"{where}: measured by query {short(record.query)}, but plan {plan.name} "
                f"measures it by {short(plan.signals[record.signal].query)}"
            )
        seen.add(record.signal)
        carried = {**record.model_dump(), "source": "carried", "carried_from": rollout}
        records.append(BaselineRecord.model_validate({**carried, "reason": ""}))
    warnings = []
    if plan_hash != plan.content_hash:
        under = f"plan {label} ({plan_hash[:12]})" if label else f"plan {plan_hash[:12]}"
        warnings.append(
            f"baselines carried from {rollout} were captured under {under}, "
            f"not this plan {plan.name} {plan.version} ({plan.short_hash})"
        )
    return records, warnings
