"""Label and field selectors in the apiserver's query-string syntax.

Label selectors: comma-separated requirements ``k=v``, ``k==v``, ``k!=v``,
``k in (a,b)``, ``k notin (a,b)``, ``k`` (exists), ``!k`` (does not exist),
``k>1`` and ``k<1``, all of which must hold. Field selectors: ``f=v``, ``f==v``,
``f!=v`` on the fields a resource supports; an unsupported field is a 400.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any

from .errors import bad_request

_LABEL_KEY = re.compile(
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
    r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$"
)
_LABEL_VALUE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$")


@dataclass(frozen=True)
class Requirement:
    """One term of a label selector."""

    key: str
    operator: str  # "=", "!=", "in", "notin", "exists", "!", "gt", "lt"
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        present = self.key in labels
        value = labels.get(self.key)
        if self.operator == "exists":
            return present
        if self.operator == "!":
            return not present
        if self.operator in ("=", "in"):
            return present and value in self.values
        if self.operator in ("!=", "notin"):
            return not present or value not in self.values
        if self.operator in ("gt", "lt"):
            try:
                number = int(value or "")
            except ValueError:
                return False
            bound = int(self.values[0])
            return number > bound if self.operator == "gt" else number < bound
        raise AssertionError(self.operator)


def _split_terms(text: str) -> list[str]:
    terms, depth, start = [], 0, 0
    for index, char in enumerate(text):
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        elif char == "," and depth == 0:
            terms.append(text[start:index])
            start = index + 1
    terms.append(text[start:])
    return [term.strip() for term in terms if term.strip()]


def _check_key(key: str, selector: str) -> str:
    if not _LABEL_KEY.match(key):
        raise bad_request(
            f"unable to parse requirement: invalid label key {key!r} in selector {selector!r}"
        )
    return key


def _check_value(value: str, selector: str) -> str:
    if not _LABEL_VALUE.match(value) or len(value) > 63:
        raise bad_request(
            f"unable to parse requirement: invalid label value {value!r} in selector {selector!r}"
        )
    return value


_SET_TERM = re.compile(r"^(?P<key>\S+)\s+(?P<op>in|notin)\s*\((?P<values>[^)]*)\)$")
_COMPARE_TERM = re.compile(r"^(?P<key>[^=!<>\s]+)\s*(?P<op>==|=|!=|>|<)\s*(?P<value>.*)$")


def parse_label_selector(text: str | None) -> list[Requirement]:
    """Parse a ``labelSelector`` query value; a syntax error is a 400 BadRequest."""
    if not text:
        return []
    requirements: list[Requirement] = []
    for term in _split_terms(text):
        if set_match := _SET_TERM.match(term):
            values = tuple(
                _check_value(value.strip(), text)
                for value in set_match["values"].split(",")
                if value.strip()
            )
            requirements.append(
                Requirement(_check_key(set_match["key"], text), set_match["op"], values)
            )
        elif compare := _COMPARE_TERM.match(term):
            operator = {"==": "=", "=": "=", "!=": "!=", ">": "gt", "<": "lt"}[compare["op"]]
            value = compare["value"].strip()
            if operator in ("gt", "lt") and not re.fullmatch(r"-?\d+", value):
                raise bad_request(
                    f"unable to parse requirement: for 'Gt', 'Lt' operators, the value must be "
                    f"an integer: {value!r}"
                )
            requirements.append(
                Requirement(
                    _check_key(compare["key"], text), operator, (_check_value(value, text),)
                )
            )
        elif term.startswith("!"):
            requirements.append(Requirement(_check_key(term[1:].strip(), text), "!"))
        elif " " not in term:
            requirements.append(Requirement(_check_key(term, text), "exists"))
        else:
            raise bad_request(f"unable to parse requirement: found {term!r} in selector {text!r}")
    return requirements


def labels_match(requirements: list[Requirement], obj: Mapping[str, Any]) -> bool:
    labels = (obj.get("metadata") or {}).get("labels") or {}
    return all(requirement.matches(labels) for requirement in requirements)


@dataclass(frozen=True)
class FieldRequirement:
    """One term of a field selector."""

    field: str
    value: str
    negated: bool


FieldGetter = Callable[[Mapping[str, Any]], str]


def parse_field_selector(text: str | None, supported: Collection[str]) -> list[FieldRequirement]:
    """Parse a ``fieldSelector``; fields outside `supported` are a 400 as on the real server."""
    if not text:
        return []
    requirements = []
    for term in _split_terms(text):
        match = re.match(r"^([^=!]+?)\s*(==|=|!=)\s*(.*)$", term)
        if not match:
            raise bad_request(f"invalid selector: {text!r}; can't understand {term!r}")
        field, operator, value = match.group(1).strip(), match.group(2), match.group(3).strip()
        if field not in supported:
            raise bad_request(f"field label not supported: {field}")
        requirements.append(FieldRequirement(field, value, operator == "!="))
    return requirements


def field_value(obj: Mapping[str, Any], path: str) -> str:
    """The string value of a dotted field path of `obj` ("" when absent), as fields.Set has it."""
    node: Any = obj
    for part in path.split("."):
        if not isinstance(node, Mapping):
            return ""
        node = node.get(part)
    if node is None:
        return ""
    if isinstance(node, bool):
        return "true" if node else "false"
    return str(node)


def fields_match(requirements: list[FieldRequirement], obj: Mapping[str, Any]) -> bool:
    for requirement in requirements:
        equal = field_value(obj, requirement.field) == requirement.value
        if equal == requirement.negated:
            return False
    return True
