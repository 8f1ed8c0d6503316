"""YAML documents (plans, scenarios) parsed into models with errors people can act on.

A bad plan must never half-load. Every problem is reported with the document's
name, the field path (`phases[3].steps[0].flags.ENFORCEMENT_PERCENT`) and the line,
whether it comes from YAML syntax, a field's shape or a rule across fields. This
module parses text; reading files is the caller's business.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

ModelT = TypeVar("ModelT", bound=BaseModel)
Path = tuple[str | int, ...]


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with a document, and where (its field path)."""

    path: Path
    message: str


@dataclass(frozen=True, slots=True)
class Located:
    """A problem with the line it was found on (1-based), when known."""

    path: Path
    message: str
    line: int | None


class DocumentError(ValueError):
    """A document that cannot be used, with every problem located."""

    def __init__(self, source: str, kind: str, problems: Sequence[Located]) -> None:
        self.source = source
        self.kind = kind
        self.problems = tuple(problems)
        super().__init__(self.render())

    def render(self) -> str:
        count = len(self.problems)
        head = f"{self.source}: invalid {self.kind} ({count} problem{'s' if count != 1 else ''})"
        lines = [head]
        for problem in self.problems:
            where = format_path(problem.path) or "(document)"
            line = f", line {problem.line}" if problem.line is not None else ""
            lines.append(f"  {where}{line}: {problem.message}")
        return "\n".join(lines)


def format_path(path: Path) -> str:
    """`('phases', 3, 'id')` → `phases[3].id`."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text


def parse_document(
    text: str,
    model: type[ModelT],
    *,
    source: str,
    kind: str,
    checks: Callable[[ModelT], Iterable[Problem]] | None = None,
) -> ModelT:
    """Parse YAML text into `model`, running `checks` after; raise DocumentError on any problem."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        line = mark.line + 1 if mark is not None else None
        reason = " ".join(part for part in (error.context, error.problem) if part)
        raise DocumentError(source, kind, [Located((), f"YAML syntax: {reason}", line)]) from None
    except yaml.YAMLError as error:
        raise DocumentError(source, kind, [Located((), f"YAML: {error}", None)]) from None
    if not isinstance(data, dict):
        found = "an empty document" if data is None else f"a {type(data).__name__}"
        raise DocumentError(
            source, kind, [Located((), f"expected a mapping at the top, found {found}", 1)]
        )
    try:
        parsed = model.model_validate(data)
    except ValidationError as error:
        located = [_locate_validation(item, data, root) for item in error.errors()]
        raise DocumentError(source, kind, located) from None
    if checks is not None:
        problems = [Located(p.path, p.message, _line_of(root, p.path)) for p in checks(parsed)]
        if problems:
            raise DocumentError(source, kind, problems)
    return parsed


def _locate_validation(item: Any, data: Any, root: yaml.Node | None) -> Located:
    path = _data_path(tuple(item["loc"]), data, keep_last=item["type"] == "missing")
    message = str(item["msg"])
    if item["type"] == "extra_forbidden":
        message = f"unknown field {path[-1]!r}" if path else "unknown field"
    elif item["type"] == "missing":
        message = f"required field {path[-1]!r} is missing" if path else "required field missing"
    elif message.startswith("Value error, "):
        message = message.removeprefix("Value error, ")
    line = _line_of(root, path)
    return Located(path, message, line)


def _data_path(loc: Path, data: Any, *, keep_last: bool) -> Path:
    """Drop the parts of a pydantic location that name union members, not data keys."""
    kept: list[str | int] = []
    node = data
    for position, part in enumerate(loc):
        child = _child(node, part)
        if child is not _ABSENT:
            kept.append(part)
            node = child
        elif position == len(loc) - 1 and keep_last:
            kept.append(part)
    return tuple(kept)


_ABSENT = object()


def _child(node: Any, part: str | int) -> Any:
    if isinstance(node, dict):
        return node.get(part, _ABSENT)
    if isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
        return node[part]
    return _ABSENT


def _line_of(root: yaml.Node | None, path: Path) -> int | None:
    node = root
    line = root.start_mark.line + 1 if root is not None else None
    for part in path:
        if isinstance(node, yaml.MappingNode):
            match = next((pair for pair in node.value if pair[0].value == part), None)
            if match is None:
                return line
            line = match[0].start_mark.line + 1
            node = match[1]
        elif (
            isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value)
        ):
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            return line
    return line
