"""Table answers for ``kubectl get``: the server-side printing kubectl asks for.

kubectl sends ``Accept: application/json;as=Table;v=v1;g=meta.k8s.io, ...,
application/json`` and prints the ``meta.k8s.io/v1`` Table it gets back. A real
API server fills the columns from a kind's printer; for a custom resource, from
the CRD's ``additionalPrinterColumns`` of the version asked for (Age from
``metadata.creationTimestamp`` when a CRD declares none). This module does the
same for custom resources: a Name column first, then each printer column with
its ``priority`` (kubectl shows priority > 0 only with ``-o wide``), cells
typed as the real convertor types them (a value of the wrong JSON type is an
empty cell, a ``date`` is an age such as ``5m``), and each row's object as
``PartialObjectMetadata`` (``includeObject=Metadata``, the default), the whole
object (``Object``) or nothing (``None``).

Built-in kinds get the default convertor of the real server (Name, Created At),
not their kube-apiserver printers (no READY or UP-TO-DATE for Deployments).
Column ``jsonPath`` supports field paths (``.status.step``) and list indexes
(``.status.conditions[0].type``), not filters or wildcards.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from . import errors as err

TABLE_CONTENT_TYPE = "application/json;as=Table;v=v1;g=meta.k8s.io"
NAME_COLUMN = {
    "name": "Name",
    "type": "string",
    "format": "name",
    "description": "Name must be unique within a namespace.",
    "priority": 0,
}
DEFAULT_CRD_COLUMNS = [
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
]
_PATH_PART = re.compile(r"\.([A-Za-z0-9_-]+)|\[(\d+)\]")


def wants_table(accept: str) -> bool:
    """True when the first media type of `accept` the emulator can give is a v1 Table."""
    for media in accept.split(","):
        kind, *raw = (part.strip() for part in media.split(";"))
        params = dict(p.split("=", 1) for p in raw if "=" in p)
        if kind not in ("application/json", "*/*"):
            continue
        if params.get("as") == "Table":
            if params.get("g") == "meta.k8s.io" and params.get("v") == "v1":
                return True
            continue  # a Table version the emulator does not serve: try the next one
        return False
    return False


def table_of(
    answer: dict[str, Any],
    columns: list[dict[str, Any]] | None,
    include_object: str,
    now: datetime,
) -> dict[str, Any]:
    """The Table for one object or a list; `columns` are printer columns (None: built-in)."""
    if include_object not in ("", "None", "Metadata", "Object"):
        raise err.bad_request(f"unsupported includeObject value: {include_object!r}")
    items = answer.get("items", [answer])
    definitions, paths = _definitions(columns)
    metadata = {
        key: value
        for key, value in (answer.get("metadata") or {}).items()
        if key in ("resourceVersion", "continue", "remainingItemCount") and "items" in answer
    }
    return {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": metadata,
        "columnDefinitions": definitions,
        "rows": [
            _row(item, definitions, paths, include_object or "Metadata", now) for item in items
        ],
    }


def _definitions(
    columns: list[dict[str, Any]] | None,
) -> tuple[list[dict[str, Any]], list[str]]:
    if columns is None:
        created = {
            "name": "Created At",
            "type": "date",
            "format": "",
            "description": "CreationTimestamp is a timestamp representing the server time when this object was created.",
            "priority": 0,
        }
        return [NAME_COLUMN, created], [".metadata.creationTimestamp"]
    definitions = [NAME_COLUMN]
    for column in columns or DEFAULT_CRD_COLUMNS:
        definitions.append(
            {
                "name": column["name"],
                "type": column.get("type", "string"),
                "format": column.get("format", ""),
                "description": column.get("description", ""),
                "priority": int(column.get("priority", 0)),
            }
        )
    return definitions, [c["jsonPath"] for c in columns or DEFAULT_CRD_COLUMNS]


def _row(
    item: dict[str, Any],
    definitions: list[dict[str, Any]],
    paths: list[str],
    include_object: str,
    now: datetime,
) -> dict[str, Any]:
    metadata = item.get("metadata") or {}
    cells: list[Any] = [metadata.get("name", "")]
    for definition, path in zip(definitions[1:], paths, strict=True):
        value = _lookup(item, path)
        if definition["name"] == "Created At" and isinstance(value, str):
            cells.append(value)  # the default convertor prints the timestamp itself
        else:
            cells.append(_cell(definition["type"], value, now))
    row: dict[str, Any] = {"cells": cells}
    if include_object == "Metadata":
        row["object"] = {
            "kind": "PartialObjectMetadata",
            "apiVersion": "meta.k8s.io/v1",
            "metadata": metadata,
        }
    elif include_object == "Object":
        row["object"] = item
    return row


def _lookup(item: Any, path: str) -> Any:
    position, value = 0, item
    while position < len(path):
        match = _PATH_PART.match(path, position)
        if match is None:
            raise err.bad_request(f"printer column jsonPath {path!r} is not emulated")
        key, index = match.groups()
        if key is not None:
            value = value.get(key) if isinstance(value, dict) else None
        else:
            value = (
                value[int(index)] if isinstance(value, list) and int(index) < len(value) else None
            )
        position = match.end()
    return value


def _cell(column_type: str, value: Any, now: datetime) -> Any:
    if value is None:
        return None
    if column_type == "integer":
        return (
            int(value) if isinstance(value, int | float) and not isinstance(value, bool) else None
        )
    if column_type == "number":
        return value if isinstance(value, int | float) and not isinstance(value, bool) else None
    if column_type == "boolean":
        return value if isinstance(value, bool) else None
    if column_type == "date":
        if not isinstance(value, str):
            return None
        try:
            moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return "<invalid>"
        return human_duration((now - moment.astimezone(UTC)).total_seconds())
    return value if isinstance(value, str) else None


def human_duration(seconds: float) -> str:
    """An age as kubectl and the API server print it: 45s, 3m20s, 2h5m, 4d, 1y30d."""
    if seconds < -1:
        return "<invalid>"
    s = max(int(seconds), 0)
    minutes, hours, days = s // 60, s // 3600, s // 86400
    if s < 120:
        return f"{s}s"
    if minutes < 10:
        return f"{minutes}m{s % 60}s" if s % 60 else f"{minutes}m"
    if hours < 3:
        return f"{minutes}m"
    if hours < 8:
        return f"{hours}h{minutes % 60}m" if minutes % 60 else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        return f"{days}d{hours % 24}h" if hours % 24 else f"{days}d"
    if days < 365 * 2:
        return f"{days}d"
    if days < 365 * 8:
        return f"{days // 365}y{days % 365}d" if days % 365 else f"{days // 365}y"
    return f"{days // 365}y"
