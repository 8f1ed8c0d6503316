"""YAML documents (plans, scenarios) parsed into models with errors people can act on.

A bad plan must never half-load. Every problem is reported with the document's
name, the field path (`phases[3].steps[0].flags.ENFORCEMENT_PERCENT`) and the line,
whether it comes from YAML syntax, a field's shape or a rule across fields. This
module parses text; reading files is the caller's business.

Documents come from people and from namespace users, so the text is bounded before
it is trusted: at most `MAX_DOCUMENT_CHARS`, parsed once, nesting refused past
`MAX_DEPTH` (with its line, before Python's own stack would overflow), aliases
refused when they expand past `MAX_VALUES`, and messages quote at most a short
excerpt of a bad value.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar, get_args

import yaml
from pydantic import BaseModel, ValidationError

from phases.numbers import short

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
            lines.append(f"  {_short(where)}{line}: {_short(problem.message)}")
        return "\n".join(lines)


def format_path(path: Path) -> str:
    """`('phases', 3, 'id')` → `phases[3].id`."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text


MAX_DOCUMENT_CHARS = 1024 * 1024
MAX_DEPTH = 64
MAX_VALUES = 200_000
_MAX_MESSAGE = 300


class _TooDeep(Exception):
    """Nesting past MAX_DEPTH, found while composing (before Python's stack runs out)."""

    def __init__(self, line: int) -> None:
        self.line = line


class _BoundedLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing nesting deeper than MAX_DEPTH while it composes."""

    _depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise _TooDeep(self.peek_event().start_mark.line + 1)  # type: ignore[no-untyped-call]
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def compose(text: str, source: str, kind: str) -> tuple[yaml.Node | None, Any]:
    """Parse the YAML once: its node tree (for lines) and its data; DocumentError if bad."""
    if len(text) > MAX_DOCUMENT_CHARS:
        raise DocumentError(
            source,
            kind,
            [
                Located(
                    (),
                    f"{len(text)} characters; a {kind} may hold at most {MAX_DOCUMENT_CHARS}",
                    None,
                )
            ],
        )
    try:
        loader = _BoundedLoader(text)
    except yaml.reader.ReaderError as error:
        raise DocumentError(source, kind, [_reader_problem(error, text)]) from None
    try:
        root = loader.get_single_node()
        problems = list(_duplicate_keys(root)) + list(_expansion(root))
        if problems:
            raise DocumentError(source, kind, problems)
        data = loader.construct_document(root) if root is not None else None
    except DocumentError:
        raise
    except _TooDeep as deep:
        message = f"nested deeper than {MAX_DEPTH} levels"
        raise DocumentError(source, kind, [Located((), message, deep.line)]) from None
    except yaml.MarkedYAMLError as error:
        raise DocumentError(source, kind, [_syntax_problem(error, text)]) from None
    except yaml.reader.ReaderError as error:
        raise DocumentError(source, kind, [_reader_problem(error, text)]) from None
    except yaml.YAMLError as error:
        raise DocumentError(
            source, kind, [Located((), f"YAML: {_short(str(error))}", None)]
        ) from None
    except (ValueError, OverflowError, RecursionError) as error:
        # PyYAML's constructors call int() and float() on hostile digits.
        message = f"a value YAML cannot construct: {_short(str(error))}"
        raise DocumentError(source, kind, [Located((), message, None)]) from None
    finally:
        loader.dispose()
    return root, data


def parse_document(
    text: str,
    model: type[ModelT],
    *,
    source: str,
    kind: str,
    checks: Callable[[ModelT], Iterable[Problem]] | None = None,
) -> ModelT:
    """Parse YAML text into `model`, running `checks` after; raise DocumentError on any problem."""
    root, data = compose(text, source, kind)
    if not isinstance(data, dict):
        found = "an empty document" if data is None else _found(data)
        raise DocumentError(
            source, kind, [Located((), f"expected a mapping at the top, found {found}", 1)]
        )
    try:
        parsed = model.model_validate(data)
    except ValidationError as error:
        located = _locate_validation_errors(error.errors(), data, root, model)
        raise DocumentError(source, kind, located) from None
    if checks is not None:
        problems = [Located(p.path, p.message, _line_of(root, p.path)) for p in checks(parsed)]
        if problems:
            raise DocumentError(source, kind, problems)
    return parsed


def _reader_problem(error: yaml.reader.ReaderError, text: str) -> Located:
    """A character YAML does not allow (a NUL, a control character), with its line."""
    offset = error.position
    line = text.count("\n", 0, offset) + 1
    code = f"U+{error.character:04X}" if isinstance(error.character, int) else "a character"
    message = f"YAML does not allow the character {code} (character {offset} of the text)"
    return Located((), message, line)


def _expansion(root: yaml.Node | None) -> Iterator[Located]:
    """Aliases that expand a small text into a huge tree (a billion laughs)."""
    sizes: dict[int, int] = {}
    order: list[yaml.Node] = []
    pending = [root] if root is not None else []
    while pending:
        node = pending.pop()
        if id(node) in sizes:
            continue
        sizes[id(node)] = 0
        order.append(node)
        pending.extend(_children(node))
    for node in reversed(order):
        sizes[id(node)] = min(MAX_VALUES + 1, 1 + sum(sizes[id(c)] for c in _children(node)))
    if root is not None and sizes[id(root)] > MAX_VALUES:
        message = f"its aliases expand to more than {MAX_VALUES} values"
        yield Located((), message, None)


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def _short(text: str) -> str:
    return text if len(text) <= _MAX_MESSAGE else f"{text[:_MAX_MESSAGE]}…"


def locate(text: str, source: str, kind: str, problems: Iterable[Problem]) -> DocumentError | None:
    """Problems found outside parsing (e.g. by Prometheus), located in the document's text."""
    found = list(problems)
    if not found:
        return None
    root, _data = compose(text, source, kind)
    return DocumentError(
        source, kind, [Located(p.path, p.message, _line_of(root, p.path)) for p in found]
    )


def _syntax_problem(error: yaml.MarkedYAMLError, text: str) -> Located:
    """One YAML syntax problem: what is wrong, on the line where it was found."""
    mark = error.problem_mark or error.context_mark
    line = mark.line + 1 if mark is not None else None
    if line is not None:
        # The end of the stream lies past the last line; point at the last line instead.
        line = min(line, max(1, len(text.splitlines())))
    problem = error.problem or "invalid YAML"
    context = error.context
    context_line = error.context_mark.line + 1 if error.context_mark is not None else None
    if context and context_line is not None:
        if problem.startswith("but "):
            reason = f"{context} (line {context_line}), {problem}"
        elif context_line != line:
            reason = f"{problem} ({context} started on line {context_line})"
        else:
            reason = f"{problem} ({context})"
    else:
        reason = problem
    return Located((), f"YAML syntax: {reason}", line)


def _duplicate_keys(root: yaml.Node | None) -> Iterator[Located]:
    """Keys written twice in one mapping: YAML would silently keep only the last value."""
    seen_nodes: set[int] = set()
    pending: list[tuple[yaml.Node, Path]] = [(root, ())] if root is not None else []
    while pending:
        node, path = pending.pop(0)
        if id(node) in seen_nodes:
            continue
        seen_nodes.add(id(node))
        if isinstance(node, yaml.MappingNode):
            first_lines: dict[str, int] = {}
            for key, value in node.value:
                if not isinstance(key, yaml.ScalarNode) or key.tag.endswith(":merge"):
                    continue
                name = str(key.value)
                line = key.start_mark.line + 1
                if name in first_lines:
                    yield Located(
                        (*path, name),
                        f"key {name!r} appears twice in one mapping (first on line "
                        f"{first_lines[name]}); remove one, YAML would keep only the last",
                        line,
                    )
                else:
                    first_lines[name] = line
                pending.append((value, (*path, name)))
        elif isinstance(node, yaml.SequenceNode):
            pending.extend((item, (*path, index)) for index, item in enumerate(node.value))


_FOUND_TYPES = frozenset(
    {
        "literal_error",
        "enum",
        "greater_than",
        "greater_than_equal",
        "less_than",
        "less_than_equal",
        "multiple_of",
    }
)
_SCALAR_NAMES = {
    "float": "a number",
    "int": "a whole number",
    "str": "a string",
    "bool": "true/false",
    "dict[str,any]": "a mapping",
    "function-before[finite_number(), float]": "a number",
}


def _locate_validation_errors(
    items: Sequence[Any], data: Any, root: yaml.Node | None, model: type[BaseModel]
) -> list[Located]:
    """Pydantic's errors as located problems, one per field.

    A value that fits no member of a union (`float | AdaptiveThreshold`) makes pydantic
    report one error per member. When the value went into a member (a mapping with a
    bad key), only that member's errors are kept; otherwise the members are named in
    a single "expected A or B" problem.
    """
    members: dict[Path, list[str]] = {}
    deep: set[Path] = set()
    entries: list[tuple[Path | None, Any]] = []
    for item in items:
        path, site, member = _data_path(
            tuple(item["loc"]), data, keep_last=item["type"] == "missing"
        )
        if site is None or member is None or len(path) > len(site):
            if site is not None:
                deep.add(site)
            entries.append((None, item))
            continue
        if site not in members:
            entries.append((site, item))
        members.setdefault(site, []).append(member)
    located: list[Located] = []
    for site, item in entries:
        if site is None or (site not in deep and len(members[site]) == 1):
            located.append(_locate_validation(item, data, root))
        elif site not in deep:
            named = [_member_text(name, model) for name in members[site]]
            wanted = ", ".join(named[:-1]) + f" or {named[-1]}"
            message = f"expected {wanted}, not {_found(item['input'])}"
            located.append(Located(site, message, _line_of(root, site)))
    return located


def _locate_validation(item: Any, data: Any, root: yaml.Node | None) -> Located:
    path, _site, _member = _data_path(tuple(item["loc"]), data, keep_last=item["type"] == "missing")
    message = str(item["msg"])
    kind = str(item["type"])
    if kind == "extra_forbidden":
        message = f"unknown field {path[-1]!r}" if path else "unknown field"
    elif kind == "missing":
        message = f"required field {path[-1]!r} is missing" if path else "required field missing"
    elif message.startswith("Value error, "):
        message = message.removeprefix("Value error, ")
    elif kind.endswith("_kind") and isinstance(item.get("input"), dict):
        keys = ", ".join(str(key) for key in item["input"])
        message = f"{message}; found keys {keys}" if keys else f"{message}; found no keys"
    elif kind in _FOUND_TYPES or kind.endswith(("_type", "_parsing", "_kind")):
        message = f"{message}, not {_found(item.get('input'))}"
    line = _line_of(root, path)
    return Located(path, message, line)


def _found(value: Any) -> str:
    if isinstance(value, dict):
        keys = ", ".join(str(key) for key in value)
        return f"a mapping with keys {keys}" if keys else "an empty mapping"
    if isinstance(value, list):
        return "a list"
    if value is None:
        return "an empty value (null)"
    return short(value) if isinstance(value, str) else _short(repr(value))


def _member_text(name: str, model: type[BaseModel]) -> str:
    if name in _SCALAR_NAMES:
        return _SCALAR_NAMES[name]
    found = _models_in(model).get(name)
    if found is not None:
        fields = ", ".join(info.alias or field for field, info in found.model_fields.items())
        return f"a mapping with keys {fields}"
    return name


def _models_in(model: type[BaseModel]) -> dict[str, type[BaseModel]]:
    """Every model reachable from `model`'s fields, by class name."""
    found: dict[str, type[BaseModel]] = {}
    pending: list[Any] = [model]
    while pending:
        current = pending.pop()
        if isinstance(current, type) and issubclass(current, BaseModel):
            if current.__name__ in found:
                continue
            found[current.__name__] = current
            pending.extend(info.annotation for info in current.model_fields.values())
        else:
            pending.extend(get_args(current))
    return found


def _data_path(loc: Path, data: Any, *, keep_last: bool) -> tuple[Path, Path | None, str | None]:
    """Drop the parts of a pydantic location that name union members, not data keys.

    Returns the data path, and where a union member was named (the data path up to
    it, and the member's name), if one was.
    """
    kept: list[str | int] = []
    site: Path | None = None
    member: str | None = None
    node = data
    for position, part in enumerate(loc):
        child = _child(node, part)
        if child is not _ABSENT:
            kept.append(part)
            node = child
        elif position == len(loc) - 1 and keep_last:
            kept.append(part)
        elif site is None and isinstance(part, str) and not part.endswith(":kind"):
            site, member = tuple(kept), part
    return tuple(kept), site, member


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
