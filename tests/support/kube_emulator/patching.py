"""The three PATCH formats the apiserver accepts for JSON bodies.

* RFC 7386 JSON merge patch (``application/merge-patch+json``): objects merge
  recursively, ``null`` deletes a key, anything else (lists included) replaces.
* Kubernetes strategic merge patch (``application/strategic-merge-patch+json``):
  like a merge patch, except that lists of known element types merge by a key
  (containers, env, volumes by ``name``; volumeMounts by ``mountPath``; container
  ports by ``containerPort``; conditions by ``type``; ...), ``finalizers`` merge as
  a set, and the directives ``$patch: delete|replace|merge``, ``$retainKeys``,
  ``$deleteFromPrimitiveList/<field>`` and ``$setElementOrder/<field>`` are
  understood. The real server takes merge keys from the Go struct tags of the
  object's type; this emulation looks them up by field name alone (see
  `MERGE_KEYS`), which agrees with the struct tags for the fields of
  Deployments, Jobs, pods and their templates.
* RFC 6902 JSON patch (``application/json-patch+json``): add, remove, replace,
  move, copy and test, with RFC 6901 pointers; a failed operation is a 422 as on
  the real server.
"""

from __future__ import annotations

import copy
from typing import Any

from .errors import ApiError, bad_request

# field name -> merge key of the list's elements (from the `patchMergeKey` tags of
# the core/apps/batch/meta types). `ports` is special-cased in `_merge_key`.
MERGE_KEYS: dict[str, str] = {
    "containers": "name",
    "initContainers": "name",
    "ephemeralContainers": "name",
    "env": "name",
    "volumes": "name",
    "volumeMounts": "mountPath",
    "volumeDevices": "devicePath",
    "imagePullSecrets": "name",
    "conditions": "type",
    "ownerReferences": "uid",
    "hostAliases": "ip",
    "topologySpreadConstraints": "topologyKey",
    "resourceClaims": "name",
    "podFailurePolicy": "",
}
# lists of scalars whose patch strategy is "merge" (set union)
MERGED_SCALAR_LISTS = frozenset({"finalizers"})

_DIRECTIVE = "$patch"


class PatchTestFailed(ApiError):
    """A JSON patch `test` operation did not hold."""


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386: the result of applying `patch` to `target` (neither is modified)."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result: dict[str, Any] = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


# --- strategic merge patch -------------------------------------------------------


class _Deleted:
    """Marker: a `$patch: delete` removed the whole map."""


_DELETED = _Deleted()


def strategic_merge_patch(target: Any, patch: Any) -> Any:
    """Apply a Kubernetes strategic merge patch to a JSON object."""
    if not isinstance(patch, dict):
        raise bad_request("strategic merge patch body must be a JSON object")
    result = _merge_map(target if isinstance(target, dict) else {}, patch)
    return {} if isinstance(result, _Deleted) else result


def _merge_map(original: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any] | _Deleted:
    directive = patch.get(_DIRECTIVE)
    if directive == "delete":
        return _DELETED
    if directive == "replace":
        return {k: _strip_directives(v) for k, v in patch.items() if not k.startswith("$")}
    if directive not in (None, "merge"):
        raise bad_request(f"unknown patch type: {directive}")
    result = copy.deepcopy(original)
    retain_keys = patch.get("$retainKeys")
    for key, value in patch.items():
        if key in (_DIRECTIVE, "$retainKeys") or key.startswith("$setElementOrder/"):
            continue
        if key.startswith("$deleteFromPrimitiveList/"):
            field = key.split("/", 1)[1]
            if isinstance(result.get(field), list) and isinstance(value, list):
                result[field] = [item for item in result[field] if item not in value]
            continue
        if value is None:
            result.pop(key, None)
        elif isinstance(value, dict):
            merged = _merge_map(result[key] if isinstance(result.get(key), dict) else {}, value)
            if isinstance(merged, _Deleted):
                result.pop(key, None)
            else:
                result[key] = merged
        elif isinstance(value, list):
            result[key] = _merge_list(key, result.get(key), value)
        else:
            result[key] = value
    if isinstance(retain_keys, list):
        result = {key: item for key, item in result.items() if key in retain_keys}
    return result


def _merge_key(field: str, patch_items: list[Any], original: list[Any]) -> str | None:
    if field == "ports":
        sample = [item for item in [*patch_items, *original] if isinstance(item, dict)]
        if any("containerPort" in item for item in sample):
            return "containerPort"
        if any("port" in item for item in sample):
            return "port"
        return None
    return MERGE_KEYS.get(field) or None


def _merge_list(field: str, original: Any, patch: list[Any]) -> list[Any]:
    current: list[Any] = copy.deepcopy(original) if isinstance(original, list) else []
    if any(isinstance(item, dict) and item.get(_DIRECTIVE) == "replace" for item in patch):
        return [
            _strip_directives(item)
            for item in patch
            if not (isinstance(item, dict) and _DIRECTIVE in item)
        ]
    if field in MERGED_SCALAR_LISTS:
        merged = list(current)
        for item in patch:
            if item not in merged:
                merged.append(item)
        return merged
    key = _merge_key(field, patch, current)
    if key is None:
        return [_strip_directives(item) for item in patch]
    for item in patch:
        if not isinstance(item, dict) or key not in item:
            raise bad_request(f"map: {item!r} does not contain declared merge key: {key}")
        position = next(
            (
                index
                for index, existing in enumerate(current)
                if isinstance(existing, dict) and existing.get(key) == item[key]
            ),
            None,
        )
        if item.get(_DIRECTIVE) == "delete":
            if position is not None:
                del current[position]
            continue
        if position is None:
            current.append(_strip_directives(item))
        else:
            merged_item = _merge_map(current[position], item)
            if isinstance(merged_item, _Deleted):
                del current[position]
            else:
                current[position] = merged_item
    return current


def _strip_directives(value: Any) -> Any:
    if isinstance(value, dict):
        return {
            key: _strip_directives(item) for key, item in value.items() if not key.startswith("$")
        }
    if isinstance(value, list):
        return [_strip_directives(item) for item in value]
    return value


# --- JSON patch --------------------------------------------------------------------


def _unprocessable(message: str) -> ApiError:
    return ApiError(422, message, "Invalid")


def _parse_pointer(pointer: Any) -> list[str]:
    if not isinstance(pointer, str):
        raise bad_request(f"json patch path must be a string, got {pointer!r}")
    if pointer == "":
        return []
    if not pointer.startswith("/"):
        raise _unprocessable(f"invalid JSON pointer {pointer!r}: must start with /")
    return [part.replace("~1", "/").replace("~0", "~") for part in pointer[1:].split("/")]


def _container(document: Any, parts: list[str], pointer: str) -> Any:
    node = document
    for part in parts[:-1]:
        if isinstance(node, dict):
            if part not in node:
                raise _unprocessable(f"doc is missing path: {pointer!r}: missing value")
            node = node[part]
        elif isinstance(node, list):
            index = _index(part, len(node), pointer, allow_end=False)
            node = node[index]
        else:
            raise _unprocessable(f"doc is missing path: {pointer!r}: missing value")
    return node


def _index(part: str, length: int, pointer: str, *, allow_end: bool) -> int:
    if part == "-" and allow_end:
        return length
    if not part.isdigit() or (len(part) > 1 and part.startswith("0")):
        raise _unprocessable(f"invalid array index {part!r} in {pointer!r}")
    index = int(part)
    limit = length if allow_end else length - 1
    if index > limit:
        raise _unprocessable(f"array index {index} out of bounds in {pointer!r}")
    return index


def _get(document: Any, pointer: str) -> Any:
    parts = _parse_pointer(pointer)
    if not parts:
        return document
    node = _container(document, parts, pointer)
    last = parts[-1]
    if isinstance(node, dict):
        if last not in node:
            raise _unprocessable(f"doc is missing key: {pointer!r}: missing value")
        return node[last]
    if isinstance(node, list):
        return node[_index(last, len(node), pointer, allow_end=False)]
    raise _unprocessable(f"doc is missing path: {pointer!r}: missing value")


def _add(document: Any, pointer: str, value: Any) -> Any:
    parts = _parse_pointer(pointer)
    if not parts:
        return value
    node = _container(document, parts, pointer)
    last = parts[-1]
    if isinstance(node, dict):
        node[last] = value
    elif isinstance(node, list):
        node.insert(_index(last, len(node), pointer, allow_end=True), value)
    else:
        raise _unprocessable(f"doc is missing path: {pointer!r}: missing value")
    return document


def _remove(document: Any, pointer: str) -> tuple[Any, Any]:
    parts = _parse_pointer(pointer)
    if not parts:
        raise _unprocessable("cannot remove the whole document")
    node = _container(document, parts, pointer)
    last = parts[-1]
    if isinstance(node, dict):
        if last not in node:
            raise _unprocessable(f"unable to remove nonexistent key: {last}: missing value")
        return document, node.pop(last)
    if isinstance(node, list):
        return document, node.pop(_index(last, len(node), pointer, allow_end=False))
    raise _unprocessable(f"doc is missing path: {pointer!r}: missing value")


def json_patch(document: Any, operations: Any) -> Any:
    """Apply RFC 6902 `operations` to a copy of `document` and return it."""
    if not isinstance(operations, list):
        raise bad_request("json: cannot unmarshal object into Go value of type jsonpatch.Patch")
    result = copy.deepcopy(document)
    for operation in operations:
        if not isinstance(operation, dict) or "op" not in operation:
            raise bad_request(f"invalid JSON patch operation: {operation!r}")
        op = operation["op"]
        path = operation.get("path")
        source = operation.get("from")
        if not isinstance(path, str) or (op in ("move", "copy") and not isinstance(source, str)):
            raise bad_request(
                f"invalid JSON patch operation (path/from must be strings): {operation!r}"
            )
        if op in ("add", "replace", "test") and "value" not in operation:
            raise _unprocessable(f"missing value for {op} operation on {path!r}")
        value = copy.deepcopy(operation.get("value"))
        if op == "add":
            result = _add(result, path, value)
        elif op == "remove":
            result, _ = _remove(result, path)
        elif op == "replace":
            _get(result, path)
            if _parse_pointer(path):
                result, _ = _remove(result, path)
                result = _add(result, path, value)
            else:
                result = value
        elif op == "move":
            assert isinstance(source, str)
            result, moved = _remove(result, source)
            result = _add(result, path, moved)
        elif op == "copy":
            assert isinstance(source, str)
            result = _add(result, path, copy.deepcopy(_get(result, source)))
        elif op == "test":
            if _get(result, path) != value:
                raise PatchTestFailed(422, f"testing value {path} failed: test failed", "Invalid")
        else:
            raise bad_request(f"Unexpected kind: {op}")
    return result
