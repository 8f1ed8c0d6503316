"""The emulated apiserver's registry: objects, resourceVersions, history and the write rules.

`Store` holds every object in its storage representation, keyed by resource and
``(namespace, name)``, under one lock. Every committed write takes the next value
of a single global counter as its ``metadata.resourceVersion`` and appends a
watch event to a bounded history, from which watches replay and resume. Reads and
writes go through the same generic rules as the real server's generic registry
(``k8s.io/apiserver/pkg/registry/generic/registry.Store``) plus the per-kind
strategies of `resources`.
"""

from __future__ import annotations

import base64
import binascii
import copy
import json
import random
import threading
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from . import admission, rbac
from . import errors as err
from .errors import ApiError, FieldError
from .patching import json_patch, merge_patch, strategic_merge_patch
from .resources import (
    ResourceType,
    builtin_resource_types,
    metadata_errors,
    resource_type_from_crd,
)
from .selectors import (
    FieldRequirement,
    Requirement,
    fields_match,
    labels_match,
)

MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_PATCH = "application/strategic-merge-patch+json"
JSON_PATCH = "application/json-patch+json"
APPLY_PATCH_YAML = "application/apply-patch+yaml"
_SYSTEM_META = (
    "uid",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "generation",
)
_NAME_SUFFIX_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"

ObjectKey = tuple[str, str]  # (namespace, name)
StorageKey = tuple[str, str]  # (group, plural) of the stored representation


def now_rfc3339() -> str:
    """The current time the way metav1.Time serialises it (seconds, UTC, Z)."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def now_micro() -> str:
    """The current time as metav1.MicroTime (microseconds, UTC, Z)."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True)
class StoredEvent:
    """One committed write as watches see it, in storage representation."""

    resource_version: int
    type: str  # ADDED, MODIFIED, DELETED
    storage_key: StorageKey
    namespace: str
    obj: dict[str, Any]
    previous: dict[str, Any] | None


class Store:
    """All objects of the emulated cluster and the generic create/update/patch/delete rules."""

    def __init__(self, *, history_size: int = 1000, initial_resource_version: int = 1000) -> None:
        self.lock = threading.RLock()
        self.changed = threading.Condition(self.lock)
        self.resource_version = initial_resource_version
        self.compacted_resource_version = initial_resource_version
        self.history: deque[StoredEvent] = deque()
        self.history_size = history_size
        self.types: list[ResourceType] = (
            builtin_resource_types() + admission.resource_types() + rbac.resource_types()
        )
        self._objects: dict[StorageKey, dict[ObjectKey, dict[str, Any]]] = {}
        self.write_hooks: list[Callable[[StoredEvent], None]] = []
        for namespace in ("default", "kube-system", "kube-public", "kube-node-lease"):
            self.ensure_namespace(namespace)

    # --- resource types ----------------------------------------------------------

    def find_type(self, group: str, version: str, plural: str) -> ResourceType | None:
        with self.lock:
            for rtype in self.types:
                if rtype.group == group and rtype.plural == plural and version in rtype.versions:
                    return rtype
        return None

    def resolve_type(self, name: str, group: str | None = None) -> ResourceType:
        """A resource by plural, singular, kind or short name (for the inspection helpers)."""
        wanted = name.lower()
        with self.lock:
            for rtype in self.types:
                if group is not None and rtype.group != group:
                    continue
                if wanted in (rtype.plural, rtype.singular, rtype.kind.lower(), *rtype.short_names):
                    return rtype
        raise KeyError(f"no resource type {name!r}" + (f" in group {group!r}" if group else ""))

    # --- reads ----------------------------------------------------------------------

    def stored(self, rtype: ResourceType, namespace: str, name: str) -> dict[str, Any] | None:
        with self.lock:
            return self._objects.get(rtype.storage_key, {}).get((self._ns(rtype, namespace), name))

    def render(self, rtype: ResourceType, version: str, obj: dict[str, Any]) -> dict[str, Any]:
        return rtype.hooks.from_storage(obj, rtype, version)

    def get(self, rtype: ResourceType, version: str, namespace: str, name: str) -> dict[str, Any]:
        with self.lock:
            current = self.stored(rtype, namespace, name)
            if current is None:
                raise err.not_found(rtype.plural, rtype.group, name)
            return self.render(rtype, version, current)

    def iter_stored(self, rtype: ResourceType, namespace: str | None) -> Iterator[dict[str, Any]]:
        with self.lock:
            bucket = self._objects.get(rtype.storage_key, {})
            for key in sorted(bucket):
                if namespace is None or key[0] == namespace:
                    yield bucket[key]

    def list_objects(
        self,
        rtype: ResourceType,
        version: str,
        namespace: str | None,
        labels: list[Requirement],
        fields: list[FieldRequirement],
        *,
        limit: int = 0,
        continue_token: str = "",
    ) -> dict[str, Any]:
        with self.lock:
            start: tuple[str, str] | None = None
            list_rv = self.resource_version
            if continue_token:
                start, list_rv = self._decode_continue(continue_token)
            items: list[dict[str, Any]] = []
            remaining = 0
            next_token = ""
            bucket = self._objects.get(rtype.storage_key, {})
            for key in sorted(bucket):
                if namespace is not None and key[0] != namespace:
                    continue
                if start is not None and key <= start:
                    continue
                rendered = self.render(rtype, version, bucket[key])
                if not (labels_match(labels, rendered) and fields_match(fields, rendered)):
                    continue
                if limit and len(items) >= limit:
                    remaining += 1
                    continue
                if not rtype.custom:
                    rendered.pop("apiVersion", None)
                    rendered.pop("kind", None)
                items.append(rendered)
            metadata: dict[str, Any] = {"resourceVersion": str(list_rv)}
            if remaining:
                last = items[-1]["metadata"]
                next_token = self._encode_continue(
                    (last.get("namespace", ""), last["name"]), list_rv
                )
                metadata["continue"] = next_token
                metadata["remainingItemCount"] = remaining
            return {
                "kind": rtype.list_kind,
                "apiVersion": rtype.api_version(version),
                "metadata": metadata,
                "items": items,
            }

    @staticmethod
    def _encode_continue(key: tuple[str, str], rv: int) -> str:
        raw = json.dumps({"v": "emulator", "rv": rv, "start": list(key)})
        return base64.urlsafe_b64encode(raw.encode()).decode()

    def _decode_continue(self, token: str) -> tuple[tuple[str, str], int]:
        try:
            data = json.loads(base64.urlsafe_b64decode(token.encode()))
            start = (str(data["start"][0]), str(data["start"][1]))
            rv = int(data["rv"])
        except (ValueError, KeyError, IndexError, TypeError, binascii.Error):
            raise err.bad_request(f"invalid continue token: {token!r}") from None
        if rv < self.compacted_resource_version:
            raise err.gone(
                "The provided continue parameter is too old to display a consistent list result. "
                "You can start a new list without the continue parameter."
            )
        return start, rv

    # --- writes ---------------------------------------------------------------------

    def _ns(self, rtype: ResourceType, namespace: str) -> str:
        return namespace if rtype.namespaced else ""

    def _commit(
        self,
        rtype: ResourceType,
        event_type: str,
        obj: dict[str, Any],
        previous: dict[str, Any] | None,
    ) -> dict[str, Any]:
        """Store (or remove, for DELETED) `obj` at the next resourceVersion and record the event."""
        self.resource_version += 1
        stored = copy.deepcopy(obj)
        stored["metadata"]["resourceVersion"] = str(self.resource_version)
        namespace = stored["metadata"].get("namespace", "") if rtype.namespaced else ""
        key = (namespace, stored["metadata"]["name"])
        bucket = self._objects.setdefault(rtype.storage_key, {})
        if event_type == "DELETED":
            bucket.pop(key, None)
        else:
            bucket[key] = stored
        event = StoredEvent(
            self.resource_version,
            event_type,
            rtype.storage_key,
            namespace,
            stored,
            copy.deepcopy(previous) if previous is not None else None,
        )
        self.history.append(event)
        while len(self.history) > self.history_size:
            dropped = self.history.popleft()
            self.compacted_resource_version = dropped.resource_version
        for hook in list(self.write_hooks):
            hook(event)
        self.changed.notify_all()
        return stored

    def compact(self) -> int:
        """Forget all watch history: watches from any older resourceVersion get 410 Gone."""
        with self.lock:
            self.history.clear()
            self.compacted_resource_version = self.resource_version
            self.changed.notify_all()
            return self.resource_version

    def ensure_namespace(self, name: str) -> None:
        """Namespaces are implicit: using one creates it (as if it had been there all along)."""
        with self.lock:
            rtype = self.resolve_type("namespaces", "")
            if name and self.stored(rtype, "", name) is None:
                self.create(rtype, "v1", "", {"metadata": {"name": name}})

    def _decode(self, rtype: ResourceType, version: str, body: Any) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise err.bad_request(
                f"the body of the request must be a JSON object, not {type(body).__name__}"
            )
        obj = copy.deepcopy(body)
        expected = rtype.api_version(version)
        api_version, kind = obj.get("apiVersion"), obj.get("kind")
        if api_version and api_version != expected:
            raise err.bad_request(
                f"the API version in the data ({api_version}) does not match the expected API "
                f"version ({expected})"
            )
        if kind and kind != rtype.kind:
            raise err.bad_request(
                f"the kind in the data ({kind}) does not match the expected kind ({rtype.kind})"
            )
        obj["apiVersion"], obj["kind"] = expected, rtype.kind
        metadata = obj.setdefault("metadata", {})
        if metadata is None:
            obj["metadata"] = metadata = {}
        if not isinstance(metadata, dict):
            raise err.bad_request("metadata must be an object")
        stored = rtype.hooks.to_storage(obj, version)
        if rtype.custom:
            stored["apiVersion"] = rtype.api_version(rtype.storage_version)
        return stored

    def _check_namespace(
        self, rtype: ResourceType, metadata: dict[str, Any], namespace: str
    ) -> None:
        if rtype.namespaced:
            given = metadata.get("namespace")
            if given and given != namespace:
                raise err.bad_request(
                    "the namespace of the provided object does not match the namespace sent on "
                    "the request"
                )
            metadata["namespace"] = namespace
        else:
            metadata.pop("namespace", None)

    def _reject_invalid(self, rtype: ResourceType, name: str, errors: list[FieldError]) -> None:
        if errors:
            raise err.invalid(rtype.kind, rtype.group, name, errors)

    def create(
        self,
        rtype: ResourceType,
        version: str,
        namespace: str,
        body: Any,
        *,
        dry_run: bool = False,
        user_info: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """POST: the created object as served in `version`; admitted when `user_info` is given."""
        with self.lock:
            obj = self._decode(rtype, version, body)
            metadata = obj["metadata"]
            self._check_namespace(rtype, metadata, namespace)
            name = metadata.get("name") or ""
            if not name and metadata.get("generateName"):
                name = str(metadata["generateName"]) + "".join(
                    random.choice(_NAME_SUFFIX_ALPHABET) for _ in range(5)
                )
                metadata["name"] = name
            if not name:
                self._reject_invalid(
                    rtype,
                    "",
                    [err.required_value("metadata.name", "name or generateName is required")],
                )
            self._reject_invalid(rtype, name, rtype.name_errors(name))
            if metadata.get("resourceVersion"):
                raise ApiError(
                    500, "resourceVersion should not be set on objects to be created", ""
                )
            for key in (*_SYSTEM_META, "managedFields", "selfLink"):
                metadata.pop(key, None)
            metadata["uid"] = str(uuid.uuid4())
            metadata["creationTimestamp"] = now_rfc3339()
            if rtype.generation:
                metadata["generation"] = 1
            if rtype.status_subresource:
                if rtype.custom:
                    obj.pop("status", None)
                else:
                    obj["status"] = {}
            rtype.hooks.prepare_create(obj)
            obj, errors = rtype.hooks.admit(obj, None, version)
            self._reject_invalid(rtype, name, metadata_errors(obj) + errors)
            self._admit(rtype, version, "CREATE", obj, None, "", user_info, dry_run)
            if self.stored(rtype, namespace, name) is not None:
                raise err.already_exists(rtype.plural, rtype.group, name)
            if dry_run:
                return self.render(rtype, version, obj)
            if rtype.namespaced:
                self.ensure_namespace(namespace)
            stored = self._commit(rtype, "ADDED", obj, None)
            self._after_write(rtype, stored)
            return self.render(rtype, version, self.stored(rtype, namespace, name) or stored)

    def update(
        self,
        rtype: ResourceType,
        version: str,
        namespace: str,
        name: str,
        body: Any,
        *,
        subresource: str = "",
        dry_run: bool = False,
        user_info: dict[str, Any] | None = None,
    ) -> tuple[dict[str, Any], int]:
        """PUT: (object, 200), or (object, 201) when a kind that allows it is created by PUT."""
        with self.lock:
            new = self._decode(rtype, version, body)
            return self._update(
                rtype,
                version,
                namespace,
                name,
                new,
                subresource,
                dry_run,
                patch=False,
                user_info=user_info,
            )

    def patch(
        self,
        rtype: ResourceType,
        version: str,
        namespace: str,
        name: str,
        raw: bytes,
        content_type: str,
        *,
        subresource: str = "",
        dry_run: bool = False,
        user_info: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """PATCH with one of the JSON patch types; the patched object."""
        media = content_type.split(";", 1)[0].strip().lower()
        accepted = [JSON_PATCH, MERGE_PATCH, APPLY_PATCH_YAML]
        if rtype.strategic_merge:
            accepted.insert(2, STRATEGIC_PATCH)
        if media == APPLY_PATCH_YAML or media == "application/apply-patch+cbor":
            raise err.unsupported_media_type(
                media,
                [item for item in accepted if item != APPLY_PATCH_YAML]
                + ["(server-side apply is not emulated)"],
            )
        if media not in accepted:
            raise err.unsupported_media_type(media, accepted)
        try:
            document = json.loads(raw or b"null")
        except ValueError as error:
            raise err.bad_request(f"error decoding patch: {error}") from None
        with self.lock:
            current = self.stored(rtype, namespace, name)
            if current is None:
                raise err.not_found(rtype.plural, rtype.group, name)
            served = self.render(rtype, version, current)
            if media == JSON_PATCH:
                patched = json_patch(served, document)
            elif media == MERGE_PATCH:
                if not isinstance(document, dict):
                    raise err.bad_request("merge patch body must be a JSON object")
                patched = merge_patch(served, document)
            else:
                patched = strategic_merge_patch(served, document)
            if not isinstance(patched, dict):
                raise err.bad_request("the patched object is not a JSON object")
            metadata = patched.get("metadata")
            if isinstance(metadata, dict) and not metadata.get("resourceVersion"):
                metadata["resourceVersion"] = current["metadata"]["resourceVersion"]
            new = self._decode(rtype, version, patched)
            result, _ = self._update(
                rtype,
                version,
                namespace,
                name,
                new,
                subresource,
                dry_run,
                patch=True,
                user_info=user_info,
            )
            return result

    def _update(
        self,
        rtype: ResourceType,
        version: str,
        namespace: str,
        name: str,
        new: dict[str, Any],
        subresource: str,
        dry_run: bool,
        *,
        patch: bool,
        user_info: dict[str, Any] | None = None,
    ) -> tuple[dict[str, Any], int]:
        metadata = new["metadata"]
        given_name = metadata.get("name")
        if given_name and given_name != name:
            raise err.bad_request(
                f"the name of the object ({given_name}) does not match the name on the URL ({name})"
            )
        metadata["name"] = name
        self._check_namespace(rtype, metadata, namespace)
        current = self.stored(rtype, namespace, name)
        if current is None:
            if subresource or patch or not rtype.create_on_update:
                raise err.not_found(rtype.plural, rtype.group, name)
            metadata.pop("resourceVersion", None)
            return self.create(
                rtype,
                version,
                namespace,
                self.render(rtype, version, new),
                dry_run=dry_run,
                user_info=user_info,
            ), 201
        current_rv = current["metadata"]["resourceVersion"]
        given_rv = metadata.get("resourceVersion") or ""
        if not given_rv:
            if not rtype.unconditional_update:
                raise err.invalid(
                    rtype.plural,
                    rtype.group,
                    name,
                    [
                        FieldError(
                            "metadata.resourceVersion",
                            "Invalid value: 0x0: must be specified for an update",
                        )
                    ],
                )
        elif given_rv != current_rv:
            raise err.conflict(rtype.plural, rtype.group, name)
        given_uid = metadata.get("uid")
        if given_uid and given_uid != current["metadata"]["uid"]:
            raise err.conflict(
                rtype.plural,
                rtype.group,
                name,
                f"Precondition failed: UID in precondition: {given_uid}, UID in object meta: "
                f"{current['metadata']['uid']}",
            )
        if subresource == "status":
            result = copy.deepcopy(current)
            if "status" in new:
                result["status"] = new["status"]
            else:
                result.pop("status", None)
        else:
            result = new
            for key in _SYSTEM_META:
                if key in current["metadata"]:
                    metadata[key] = current["metadata"][key]
                else:
                    metadata.pop(key, None)
            metadata.pop("managedFields", None)
            metadata.pop("selfLink", None)
            if rtype.status_subresource:
                if "status" in current:
                    result["status"] = copy.deepcopy(current["status"])
                else:
                    result.pop("status", None)
            rtype.hooks.prepare_update(result, current)
            if rtype.generation and self._generation_changes(rtype, result, current):
                metadata["generation"] = int(current["metadata"].get("generation", 1)) + 1
            errors = self._finalizer_errors(result, current)
            self._reject_invalid(rtype, name, errors)
        result["metadata"]["resourceVersion"] = current_rv
        result, errors = rtype.hooks.admit(result, current, version)
        self._reject_invalid(rtype, name, metadata_errors(result) + errors)
        self._admit(rtype, version, "UPDATE", result, current, subresource, user_info, dry_run)
        if result == current:
            return self.render(rtype, version, current), 200
        if dry_run:
            return self.render(rtype, version, result), 200
        deleting = result["metadata"].get("deletionTimestamp")
        if deleting and not result["metadata"].get("finalizers"):
            stored = self._remove(rtype, result, current)
            return self.render(rtype, version, stored), 200
        stored = self._commit(rtype, "MODIFIED", result, current)
        self._after_write(rtype, stored)
        return self.render(rtype, version, self.stored(rtype, namespace, name) or stored), 200

    def _admit(
        self,
        rtype: ResourceType,
        version: str,
        operation: str,
        obj: dict[str, Any],
        old: dict[str, Any] | None,
        subresource: str,
        user_info: dict[str, Any] | None,
        dry_run: bool,
    ) -> None:
        """ValidatingAdmissionPolicies (see `admission`), for writes made by a user over HTTP."""
        if user_info is None:
            return
        metadata = obj["metadata"]
        admission.review(
            self,
            admission.Request(
                rtype=rtype,
                version=version,
                operation=operation,
                namespace=str(metadata.get("namespace", "")),
                name=str(metadata.get("name", "")),
                subresource=subresource,
                obj=self.render(rtype, version, obj),
                old=None if old is None else self.render(rtype, version, old),
                user_info=user_info,
                dry_run=dry_run,
            ),
        )

    @staticmethod
    def _generation_changes(rtype: ResourceType, new: dict[str, Any], old: dict[str, Any]) -> bool:
        if rtype.generation == "spec":
            return new.get("spec") != old.get("spec")

        def content(obj: dict[str, Any]) -> dict[str, Any]:
            return {k: v for k, v in obj.items() if k not in ("metadata", "apiVersion", "kind")}

        return content(new) != content(old)

    @staticmethod
    def _finalizer_errors(new: dict[str, Any], old: dict[str, Any]) -> list[FieldError]:
        if not old["metadata"].get("deletionTimestamp"):
            return []
        added = [
            item
            for item in new["metadata"].get("finalizers") or []
            if item not in (old["metadata"].get("finalizers") or [])
        ]
        if not added:
            return []
        listed = ", ".join(f'"{item}"' for item in added)
        return [
            err.forbidden(
                "metadata.finalizers",
                f"no new finalizers can be added if the object is being deleted, found new "
                f"finalizers []string{{{listed}}}",
            )
        ]

    def delete(
        self,
        rtype: ResourceType,
        version: str,
        namespace: str,
        name: str,
        options: dict[str, Any] | None = None,
        *,
        dry_run: bool = False,
    ) -> dict[str, Any]:
        """DELETE: the deleted (or now terminating) object, or a Success Status."""
        with self.lock:
            current = self.stored(rtype, namespace, name)
            if current is None:
                raise err.not_found(rtype.plural, rtype.group, name)
            preconditions = (options or {}).get("preconditions") or {}
            for field, label in (("uid", "UID"), ("resourceVersion", "ResourceVersion")):
                wanted = preconditions.get(field)
                if wanted and wanted != current["metadata"].get(field):
                    raise err.conflict(
                        rtype.plural,
                        rtype.group,
                        name,
                        f"Precondition failed: {label} in precondition: {wanted}, {label} in "
                        f"object meta: {current['metadata'].get(field)}",
                    )
            if current["metadata"].get("finalizers"):
                if current["metadata"].get("deletionTimestamp") or dry_run:
                    return self.render(rtype, version, current)
                terminating = copy.deepcopy(current)
                terminating["metadata"]["deletionTimestamp"] = now_rfc3339()
                terminating["metadata"]["deletionGracePeriodSeconds"] = 0
                if rtype.generation:
                    terminating["metadata"]["generation"] = (
                        int(current["metadata"].get("generation", 1)) + 1
                    )
                stored = self._commit(rtype, "MODIFIED", terminating, current)
                return self.render(rtype, version, stored)
            if dry_run:
                return self.render(rtype, version, current)
            stored = self._remove(rtype, current, current)
            if rtype.delete_returns_object:
                return self.render(rtype, version, stored)
            details: dict[str, Any] = {
                "name": name,
                "kind": rtype.plural,
                "uid": current["metadata"]["uid"],
            }
            if rtype.group:
                details["group"] = rtype.group
            return {
                "kind": "Status",
                "apiVersion": "v1",
                "metadata": {},
                "status": "Success",
                "details": details,
            }

    def delete_collection(
        self,
        rtype: ResourceType,
        version: str,
        namespace: str | None,
        labels: list[Requirement],
        fields: list[FieldRequirement],
        *,
        dry_run: bool = False,
    ) -> dict[str, Any]:
        with self.lock:
            listed = self.list_objects(rtype, version, namespace, labels, fields)
            for item in listed["items"]:
                meta = item["metadata"]
                self.delete(
                    rtype, version, meta.get("namespace", ""), meta["name"], dry_run=dry_run
                )
            return listed

    def _remove(
        self, rtype: ResourceType, final: dict[str, Any], previous: dict[str, Any]
    ) -> dict[str, Any]:
        metadata = final["metadata"]
        if rtype.plural == "namespaces" and rtype.group == "":
            self._delete_namespace_contents(metadata["name"])
        if rtype.group == "apiextensions.k8s.io" and rtype.plural == "customresourcedefinitions":
            self._unregister_crd(metadata["name"])
        committed = self._commit(rtype, "DELETED", final, previous)
        self._collect_dependents(metadata.get("uid", ""), metadata.get("namespace", ""))
        return committed

    def _collect_dependents(self, uid: str, namespace: str) -> None:
        """Garbage collection, at once: objects of the owner's namespace (every namespace for
        a cluster-scoped owner) whose ownerReferences name `uid` are deleted, their own
        dependents after them; a dependent with finalizers is left alone."""
        if not uid:
            return
        for rtype in list(self.types):
            if rtype.shares_storage_with or not rtype.namespaced:
                continue
            for obj in list(self.iter_stored(rtype, namespace or None)):
                meta = obj["metadata"]
                owners = meta.get("ownerReferences") or []
                if meta.get("finalizers") or not any(o.get("uid") == uid for o in owners):
                    continue
                self._remove(rtype, obj, obj)

    def _delete_namespace_contents(self, namespace: str) -> None:
        for rtype in list(self.types):
            if not rtype.namespaced or rtype.shares_storage_with:
                continue
            for obj in list(self.iter_stored(rtype, namespace)):
                self._commit(rtype, "DELETED", obj, obj)

    # --- internal writes (controllers) --------------------------------------------------

    def system_update(
        self,
        rtype: ResourceType,
        namespace: str,
        name: str,
        mutate: Callable[[dict[str, Any]], None],
    ) -> dict[str, Any] | None:
        """A controller's write: `mutate` a copy of the latest object; commit if it changed."""
        with self.lock:
            current = self.stored(rtype, namespace, name)
            if current is None:
                return None
            updated = copy.deepcopy(current)
            mutate(updated)
            if updated == current:
                return current
            return self._commit(rtype, "MODIFIED", updated, current)

    # --- custom resource definitions -------------------------------------------------------

    def _after_write(self, rtype: ResourceType, stored: dict[str, Any]) -> None:
        if rtype.group == "apiextensions.k8s.io" and rtype.plural == "customresourcedefinitions":
            self._register_crd(stored)

    def _register_crd(self, crd: dict[str, Any]) -> None:
        new_type = resource_type_from_crd(crd)
        self.types = [rtype for rtype in self.types if rtype.crd_name != new_type.crd_name]
        self.types.append(new_type)
        crd_type = self.resolve_type("customresourcedefinitions", "apiextensions.k8s.io")
        names = crd["spec"]["names"]

        def establish(obj: dict[str, Any]) -> None:
            accepted = {
                "plural": names["plural"],
                "singular": new_type.singular,
                "kind": names["kind"],
                "listKind": names.get("listKind") or f"{names['kind']}List",
            }
            for key in ("shortNames", "categories"):
                if names.get(key):
                    accepted[key] = list(names[key])
            previous = {
                condition["type"]: condition
                for condition in (obj.get("status") or {}).get("conditions") or []
            }
            conditions = []
            for kind, reason, message in (
                ("NamesAccepted", "NoConflicts", "no conflicts found"),
                ("Established", "InitialNamesAccepted", "the initial names have been accepted"),
            ):
                old = previous.get(kind)
                conditions.append(
                    {
                        "type": kind,
                        "status": "True",
                        "reason": reason,
                        "message": message,
                        "lastTransitionTime": old["lastTransitionTime"] if old else now_rfc3339(),
                    }
                )
            stored_versions = list((obj.get("status") or {}).get("storedVersions") or [])
            if new_type.storage_version not in stored_versions:
                stored_versions.append(new_type.storage_version)
            obj["status"] = {
                "acceptedNames": accepted,
                "conditions": conditions,
                "storedVersions": stored_versions,
            }

        self.system_update(crd_type, "", crd["metadata"]["name"], establish)

    def _unregister_crd(self, crd_name: str) -> None:
        for rtype in [rtype for rtype in self.types if rtype.crd_name == crd_name]:
            for obj in list(self.iter_stored(rtype, None)):
                self._commit(rtype, "DELETED", obj, obj)
            self.types.remove(rtype)

    def create_crd(self, crd: dict[str, Any]) -> dict[str, Any]:
        """Create (or replace) a CRD and serve its resources."""
        rtype = self.resolve_type("customresourcedefinitions", "apiextensions.k8s.io")
        with self.lock:
            name = (crd.get("metadata") or {}).get("name", "")
            existing = self.stored(rtype, "", name) if name else None
            if existing is None:
                return self.create(rtype, "v1", "", crd)
            body = copy.deepcopy(crd)
            body.setdefault("metadata", {})["resourceVersion"] = existing["metadata"][
                "resourceVersion"
            ]
            updated, _ = self.update(rtype, "v1", "", name, body)
            return updated

    # --- watch ------------------------------------------------------------------------

    def events_after(self, resource_version: int) -> list[StoredEvent]:
        """Committed events newer than `resource_version`; 410 Gone if some were forgotten."""
        with self.lock:
            if resource_version < self.compacted_resource_version:
                raise err.gone(
                    f"too old resource version: {resource_version} "
                    f"({self.compacted_resource_version + 1})"
                )
            newer: list[StoredEvent] = []
            for event in reversed(self.history):
                if event.resource_version <= resource_version:
                    break
                newer.append(event)
            newer.reverse()
            return newer
