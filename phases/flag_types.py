"""The flags a plan declares: each one's name, type, safe value and sign-off rules.

A plan names the ConfigMap keys it owns and what each may hold (an enum, a boolean,
an integer range, a string, a JSON object). One integer flag may be the exposure
percentage: it never falls across the plan's steps and never rises without an
approval. Any flag may be marked `approval_to_change`: it never changes without one.
A plan without a declaration gets the runbook's four flags (`LEGACY_FLAGS`), so old
plans keep their meaning. Values end up as ConfigMap text, normalised here once.
"""

from __future__ import annotations

import json
import math
import re
from abc import abstractmethod
from collections.abc import Mapping
from types import MappingProxyType
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    field_validator,
    model_validator,
)

from phases.numbers import short

FlagValue = str | bool | int | dict[str, Any]
"""A flag value as a plan writes it; a JSON object flag may be a mapping or its JSON text."""

MAX_FLAGS = 64
MAX_VALUE_BYTES = 64 * 1024
_CONFIGMAP_KEY = re.compile(r"^[-._a-zA-Z0-9]{1,253}$")


def check_flag_name(name: str) -> str:
    """A flag name is a ConfigMap key: letters, digits, '-', '_' and '.', not '.' or '..'."""
    if not _CONFIGMAP_KEY.match(name) or name in (".", "..") or name.startswith(".."):
        raise ValueError(
            f"flag name {short(name)} is not a valid ConfigMap key: use up to 253 letters, "
            "digits, '-', '_' and '.' (not '.', '..' or a leading '..')"
        )
    return name


class _Declaration(BaseModel):
    """What every flag declaration has: a description and the two sign-off marks."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    description: str = ""
    approval_to_change: bool = Field(
        default=False, description="a step that changes this flag needs an approval"
    )
    exposure: bool = Field(
        default=False,
        description="this integer flag is the exposure percentage: it never falls and "
        "never rises without an approval",
    )

    @abstractmethod
    def normalise(self, name: str, value: object) -> str:
        """The ConfigMap text of `value`, or ValueError naming the problem."""

    @model_validator(mode="after")
    def _exposure_is_an_integer(self) -> _Declaration:
        if self.exposure and not isinstance(self, IntegerFlag):
            raise ValueError("only an integer flag can be the exposure percentage")
        return self


class EnumFlag(_Declaration):
    """One of a fixed list of words; matched without regard to case."""

    type: Literal["enum"]
    values: list[str] = Field(min_length=1, max_length=64)
    safe: str | None = Field(default=None, description="the value a full rollback sets")

    @field_validator("values", mode="before")
    @classmethod
    def _quoted(cls, value: Any) -> Any:
        if isinstance(value, list) and any(isinstance(item, bool) for item in value):
            raise ValueError('YAML reads a bare off/on/yes/no as a boolean; quote it: "off"')
        return value

    @field_validator("values")
    @classmethod
    def _distinct(cls, value: list[str]) -> list[str]:
        folded = [item.strip().lower() for item in value]
        if any(not item for item in folded):
            raise ValueError("enum values must not be empty")
        if len(set(folded)) != len(folded):
            raise ValueError("enum values must be distinct (case does not count)")
        return value

    def normalise(self, name: str, value: object) -> str:
        allowed = ", ".join(self.values)
        if isinstance(value, bool):
            raise ValueError(
                f"{name} must be one of {allowed}; YAML reads a bare off/on as a boolean, "
                'so quote it: "off"'
            )
        if not isinstance(value, str | int):
            raise ValueError(f"{name} must be one of {allowed}, not {_kind(value)}")
        text = str(value).strip().lower()
        for word in self.values:
            if text == word.lower():
                return word
        raise ValueError(f"{name} must be one of {allowed}, not {short(str(value))}")


class BooleanFlag(_Declaration):
    """`true` or `false`."""

    type: Literal["boolean"]
    safe: bool | None = Field(default=None, description="the value a full rollback sets")

    def normalise(self, name: str, value: object) -> str:
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, str) and value.strip().lower() in ("true", "false"):
            return value.strip().lower()
        shown = short(value) if isinstance(value, str) else _kind(value)
        raise ValueError(f"{name} must be true or false, not {shown}")


class IntegerFlag(_Declaration):
    """A whole number in ASCII digits, within `min` and `max` when given."""

    type: Literal["integer"]
    min: int | None = Field(default=None, ge=-(10**15), le=10**15)
    max: int | None = Field(default=None, ge=-(10**15), le=10**15)
    safe: int | None = Field(default=None, description="the value a full rollback sets")

    @model_validator(mode="after")
    def _range(self) -> IntegerFlag:
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min {self.min} is above max {self.max}")
        if self.exposure and (self.low < 0 or self.high > 100):
            raise ValueError("the exposure percentage's range must lie within 0 to 100")
        return self

    @property
    def low(self) -> int:
        return self.min if self.min is not None else (0 if self.exposure else -(10**15))

    @property
    def high(self) -> int:
        return self.max if self.max is not None else (100 if self.exposure else 10**15)

    def normalise(self, name: str, value: object) -> str:
        bounded = self.min is not None or self.max is not None or self.exposure
        wrong = f"{name} must be a whole number" + (
            f" from {self.low} to {self.high}" if bounded else ""
        )
        if isinstance(value, bool) or not isinstance(value, int | str):
            raise ValueError(f"{wrong}, not {_kind(value)}")
        if isinstance(value, str):
            text = value.strip()
            digits = text[1:] if text[:1] == "-" else text
            # int() alone would read non-ASCII digits: '٣٠' as 30.
            if not (digits.isascii() and digits.isdigit() and len(digits) <= 16):
                raise ValueError(f"{wrong}, not {short(text)}")
            value = int(text)
        if not self.low <= value <= self.high:
            shown = str(value) if abs(value) < 10**16 else "a number that large"
            raise ValueError(f"{name} must be from {self.low} to {self.high}, not {shown}")
        return str(value)


class StringFlag(_Declaration):
    """Any text up to `max_length` characters; YAML's bare true/1 must be quoted."""

    type: Literal["string"]
    max_length: int = Field(default=1024, ge=1, le=MAX_VALUE_BYTES)
    safe: str | None = Field(default=None, description="the value a full rollback sets")

    def normalise(self, name: str, value: object) -> str:
        if not isinstance(value, str):
            raise ValueError(
                f"{name} is a string flag, not {_kind(value)}; quote the value in YAML"
            )
        if len(value) > self.max_length:
            raise ValueError(f"{name} is longer than its max_length of {self.max_length}")
        return value


class JsonObjectFlag(_Declaration):
    """A JSON object, written as a YAML mapping or as JSON text; stored as canonical JSON."""

    type: Literal["json_object"]
    safe: dict[str, Any] | None = Field(default=None, description="the value a full rollback sets")

    def normalise(self, name: str, value: object) -> str:
        if isinstance(value, str):
            if len(value.encode()) > MAX_VALUE_BYTES:
                raise ValueError(f"{name} is larger than {MAX_VALUE_BYTES} bytes as JSON")
            try:
                value = json.loads(value)
            except json.JSONDecodeError as error:
                raise ValueError(
                    f"{name} is not valid JSON: {error.msg} at character {error.pos}"
                ) from None
            except RecursionError:
                raise ValueError(f"{name} nests too deeply to be read as JSON") from None
        if not isinstance(value, dict):
            raise ValueError(f"{name} must be a JSON object, not {_kind(value)}")
        try:
            text = json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=False)
        except (TypeError, ValueError):
            raise ValueError(
                f"{name} holds a value JSON cannot carry (a date, a NaN, an infinity); quote it"
            ) from None
        if len(text.encode()) > MAX_VALUE_BYTES:
            raise ValueError(f"{name} is larger than {MAX_VALUE_BYTES} bytes as JSON")
        return text


AnyFlag = EnumFlag | BooleanFlag | IntegerFlag | StringFlag | JsonObjectFlag
FLAG_TYPES = ("enum", "boolean", "integer", "string", "json_object")


def _flag_type(value: Any) -> str | None:
    if isinstance(value, dict):
        kind = value.get("type")
        return kind if isinstance(kind, str) and kind in FLAG_TYPES else None
    return getattr(value, "type", None)


FlagDeclaration = Annotated[
    Annotated[EnumFlag, Tag("enum")]
    | Annotated[BooleanFlag, Tag("boolean")]
    | Annotated[IntegerFlag, Tag("integer")]
    | Annotated[StringFlag, Tag("string")]
    | Annotated[JsonObjectFlag, Tag("json_object")],
    Discriminator(
        _flag_type,
        custom_error_type="flag_type",
        custom_error_message="a flag declaration needs type: enum, boolean, integer, string "
        "or json_object",
    ),
]


class FlagSet:
    """A plan's flags resolved: names in order, the exposure flag, the sign-off flags."""

    def __init__(self, declared: Mapping[str, AnyFlag]) -> None:
        self.declared: Mapping[str, AnyFlag] = MappingProxyType(dict(declared))
        self.names: tuple[str, ...] = tuple(declared)
        exposures = [name for name, flag in declared.items() if flag.exposure]
        self.exposure: str | None = exposures[0] if exposures else None
        self.approval_flags: tuple[str, ...] = tuple(
            name for name, flag in declared.items() if flag.approval_to_change
        )

    def normalise(self, name: str, value: object) -> str:
        """The ConfigMap text of one flag's value; ValueError names an unknown flag too."""
        flag = self.declared.get(name)
        if flag is None:
            raise ValueError(f"unknown flag {name!r}; known flags are {', '.join(self.names)}")
        return flag.normalise(name, value)

    def percent(self, flags: Mapping[str, str]) -> int:
        """The exposure percentage of a normalised flag set (0 for a plan without one)."""
        if self.exposure is None:
            return 0
        text = flags.get(self.exposure, "0")
        return int(text) if text.lstrip("-").isdigit() else 0

    @property
    def safe(self) -> Mapping[str, str] | None:
        """Every flag at its safe value (a full rollback), or None if one has none."""
        values: dict[str, str] = {}
        for name, flag in self.declared.items():
            if flag.safe is None:
                return None
            values[name] = flag.normalise(name, flag.safe)
        return MappingProxyType(values)


LEGACY_FLAGS: Mapping[str, AnyFlag] = MappingProxyType(
    {
        "STAGE_VALIDATION_MODE": EnumFlag(
            type="enum", values=["off", "warn", "enforce"], safe="warn"
        ),
        "ENFORCE_WRITE_ONLY": BooleanFlag(type="boolean", safe=False),
        "ENFORCEMENT_PERCENT": IntegerFlag(type="integer", min=0, max=100, exposure=True, safe=0),
        "STAGE_VALIDATION_DRY_RUN": BooleanFlag(type="boolean", safe=False),
    }
)
"""The runbook's four, which a plan without a `flags:` declaration gets (the old shape)."""

LEGACY_FLAG_SET = FlagSet(LEGACY_FLAGS)


def _kind(value: object) -> str:
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, float):
        return "a decimal number" if math.isfinite(value) else "not a number"
    if value is None:
        return "empty (null)"
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, int):
        return "a number"
    return short(str(value))
