"""A subset of CRD structural-schema handling: pruning, defaulting and validation.

What a CRD's ``openAPIV3Schema`` does on the real server and is emulated here:

* pruning: fields not named in ``properties`` (and not covered by
  ``additionalProperties`` or ``x-kubernetes-preserve-unknown-fields: true``) are
  dropped silently; ``apiVersion``, ``kind`` and ``metadata`` at the root are kept;
* ``null`` for a field that is not ``nullable: true`` is dropped;
* ``default`` values are filled in for absent properties;
* validation: ``type`` (object, array, string, integer, number, boolean),
  ``x-kubernetes-int-or-string``, ``required``, ``enum``, ``minimum``/``maximum``
  (and exclusive forms), ``minLength``/``maxLength``, ``pattern``,
  ``minItems``/``maxItems``, ``minProperties``/``maxProperties``.

Not emulated: ``format`` checks, ``oneOf``/``anyOf``/``allOf``/``not``,
``x-kubernetes-validations`` (CEL), list-type/map-type uniqueness,
``x-kubernetes-embedded-resource`` metadata validation and ratcheting.
"""

from __future__ import annotations

import copy
import re
from typing import Any

from .errors import FieldError, invalid_value, required_value, unsupported_value

_ROOT_KEYS = ("apiVersion", "kind", "metadata")
_TYPES: dict[str, tuple[type, ...]] = {
    "object": (dict,),
    "array": (list,),
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
}


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return "null"


def _type_ok(value: Any, expected: str) -> bool:
    if isinstance(value, bool) and expected in ("integer", "number"):
        return False
    if expected == "integer" and isinstance(value, float):
        return value.is_integer()
    return isinstance(value, _TYPES.get(expected, (object,)))


def apply_schema(
    obj: dict[str, Any], schema: dict[str, Any] | None
) -> tuple[dict[str, Any], list[FieldError]]:
    """Prune, default and validate a custom object; returns the new object and the errors."""
    if not schema:
        return obj, []
    result = copy.deepcopy(obj)
    errors: list[FieldError] = []
    root = {key: result[key] for key in _ROOT_KEYS if key in result}
    rest = {key: value for key, value in result.items() if key not in _ROOT_KEYS}
    pruned = _walk(rest, schema, "", errors, root=True)
    merged = dict(pruned) if isinstance(pruned, dict) else {}
    merged.update(root)
    return merged, errors


def _walk(
    value: Any, schema: dict[str, Any], path: str, errors: list[FieldError], *, root: bool = False
) -> Any:
    name = path or "<root>"
    if schema.get("x-kubernetes-int-or-string"):
        if not (isinstance(value, str) or _type_ok(value, "integer")):
            errors.append(
                invalid_value(
                    name,
                    _json_type(value),
                    f"{name} in body must be of type int-or-string: {_json_type(value)!r}",
                )
            )
        return value
    expected = schema.get("type")
    if expected and not _type_ok(value, expected):
        errors.append(
            invalid_value(
                name,
                _json_type(value),
                f'{name} in body must be of type {expected}: "{_json_type(value)}"',
            )
        )
        return value
    _check_scalars(value, schema, name, errors)
    if isinstance(value, dict):
        return _walk_object(value, schema, path, errors, root=root)
    if isinstance(value, list):
        items = schema.get("items")
        if isinstance(items, dict):
            return [
                _walk(item, items, f"{path}[{index}]", errors) for index, item in enumerate(value)
            ]
    return value


def _walk_object(
    value: dict[str, Any],
    schema: dict[str, Any],
    path: str,
    errors: list[FieldError],
    *,
    root: bool,
) -> dict[str, Any]:
    properties: dict[str, Any] = schema.get("properties") or {}
    additional = schema.get("additionalProperties")
    preserve = bool(schema.get("x-kubernetes-preserve-unknown-fields"))
    result: dict[str, Any] = {}
    for key, item in value.items():
        child = f"{path}.{key}" if path else key
        if key in properties:
            sub = properties[key] or {}
            if item is None and not sub.get("nullable"):
                continue
            result[key] = _walk(item, sub, child, errors) if item is not None else None
        elif isinstance(additional, dict):
            if item is None and not additional.get("nullable"):
                continue
            result[key] = _walk(item, additional, child, errors) if item is not None else None
        elif preserve or additional is True:
            result[key] = item
        # anything else is pruned, as the real server does
    for key, sub in properties.items():
        if key not in result and isinstance(sub, dict) and "default" in sub:
            result[key] = copy.deepcopy(sub["default"])
    for key in schema.get("required") or []:
        if key not in result and not (root and key in _ROOT_KEYS):
            errors.append(required_value(f"{path}.{key}" if path else key))
    return result


def _check_scalars(value: Any, schema: dict[str, Any], name: str, errors: list[FieldError]) -> None:
    enum = schema.get("enum")
    if isinstance(enum, list) and value not in enum:
        errors.append(unsupported_value(name, value, enum))
    if isinstance(value, int | float) and not isinstance(value, bool):
        minimum, maximum = schema.get("minimum"), schema.get("maximum")
        if minimum is not None:
            if schema.get("exclusiveMinimum") and value <= minimum:
                errors.append(
                    invalid_value(name, value, f"{name} in body should be greater than {minimum}")
                )
            elif value < minimum:
                errors.append(
                    invalid_value(
                        name, value, f"{name} in body should be greater than or equal to {minimum}"
                    )
                )
        if maximum is not None:
            if schema.get("exclusiveMaximum") and value >= maximum:
                errors.append(
                    invalid_value(name, value, f"{name} in body should be less than {maximum}")
                )
            elif value > maximum:
                errors.append(
                    invalid_value(
                        name, value, f"{name} in body should be less than or equal to {maximum}"
                    )
                )
    if isinstance(value, str):
        if "minLength" in schema and len(value) < schema["minLength"]:
            errors.append(
                invalid_value(
                    name,
                    value,
                    f"{name} in body should be at least {schema['minLength']} chars long",
                )
            )
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            errors.append(
                FieldError(
                    name,
                    f"Too long: may not be more than {schema['maxLength']} bytes",
                    "FieldValueTooLong",
                )
            )
        if "pattern" in schema and not re.search(schema["pattern"], value):
            errors.append(
                invalid_value(name, value, f"{name} in body should match '{schema['pattern']}'")
            )
    if isinstance(value, list):
        if "minItems" in schema and len(value) < schema["minItems"]:
            errors.append(
                invalid_value(
                    name,
                    len(value),
                    f"{name} in body should have at least {schema['minItems']} items",
                )
            )
        if "maxItems" in schema and len(value) > schema["maxItems"]:
            errors.append(
                FieldError(
                    name,
                    f"Too many: {len(value)}: must have at most {schema['maxItems']} items",
                    "FieldValueTooMany",
                )
            )
    if isinstance(value, dict):
        if "minProperties" in schema and len(value) < schema["minProperties"]:
            errors.append(
                invalid_value(
                    name,
                    len(value),
                    f"{name} in body should have at least {schema['minProperties']} properties",
                )
            )
        if "maxProperties" in schema and len(value) > schema["maxProperties"]:
            errors.append(
                invalid_value(
                    name,
                    len(value),
                    f"{name} in body should have at most {schema['maxProperties']} properties",
                )
            )
