"""The resource types the emulator serves and their kind-specific rules.

A `ResourceType` says how a resource is addressed (group, versions, plural, scope,
names) and what the generic registry must do for it (status subresource, when
``metadata.generation`` moves, whether an update without a resourceVersion is
allowed, whether PUT may create). A `KindHooks` holds what the real API server's
per-kind *strategy* does: defaulting, validation, and for ``events.k8s.io/v1`` the
conversion to and from the core/v1 Event storage both API groups share.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from .errors import FieldError, forbidden, invalid_value, required_value, unsupported_value
from .schema import apply_schema

ALL_VERBS = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")
META_FIELDS = ("metadata.name", "metadata.namespace")

_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS1123_SUBDOMAIN = re.compile(
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
)
_LABEL_NAME = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_CONFIG_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")

SUBDOMAIN_MESSAGE = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or "
    "'.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used "
    "for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
)
LABEL_MESSAGE = (
    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and "
    "must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex "
    "used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"
)


def dns1123_subdomain_errors(path: str, value: str) -> list[FieldError]:
    errors = []
    if len(value) > 253:
        errors.append(invalid_value(path, value, "must be no more than 253 characters"))
    if not _DNS1123_SUBDOMAIN.match(value):
        errors.append(invalid_value(path, value, SUBDOMAIN_MESSAGE))
    return errors


def dns1123_label_errors(path: str, value: str) -> list[FieldError]:
    errors = []
    if len(value) > 63:
        errors.append(invalid_value(path, value, "must be no more than 63 characters"))
    if not _DNS1123_LABEL.match(value):
        errors.append(invalid_value(path, value, LABEL_MESSAGE))
    return errors


def _qualified_name_errors(path: str, key: str) -> list[FieldError]:
    prefix, _, name = key.rpartition("/")
    errors = []
    if prefix and (len(prefix) > 253 or not _DNS1123_SUBDOMAIN.match(prefix)):
        errors.append(invalid_value(path, key, "prefix part " + SUBDOMAIN_MESSAGE))
    if not name or len(name) > 63 or not _LABEL_NAME.match(name):
        errors.append(
            invalid_value(
                path,
                key,
                "name part must consist of alphanumeric characters, '-', '_' or '.', and must "
                "start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or "
                "'123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')",
            )
        )
    return errors


def metadata_errors(obj: dict[str, Any]) -> list[FieldError]:
    """Label and annotation checks of ``ValidateObjectMeta`` shared by all kinds."""
    metadata = obj.get("metadata") or {}
    errors: list[FieldError] = []
    labels = metadata.get("labels") or {}
    if not isinstance(labels, dict):
        return [invalid_value("metadata.labels", labels, "must be a map of strings")]
    for key, value in labels.items():
        errors += _qualified_name_errors("metadata.labels", key)
        if not isinstance(value, str) or len(value) > 63 or not _LABEL_VALUE.match(value):
            errors.append(
                invalid_value(
                    "metadata.labels",
                    value,
                    "a valid label must be an empty string or consist of alphanumeric "
                    "characters, '-', '_' or '.', and must start and end with an alphanumeric "
                    "character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for "
                    "validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')",
                )
            )
    annotations = metadata.get("annotations") or {}
    if not isinstance(annotations, dict):
        return [
            *errors,
            invalid_value("metadata.annotations", annotations, "must be a map of strings"),
        ]
    for key, value in annotations.items():
        errors += _qualified_name_errors("metadata.annotations", key.lower())
        if not isinstance(value, str):
            errors.append(invalid_value(f"metadata.annotations[{key}]", value, "must be a string"))
    return errors


class KindHooks:
    """The per-kind strategy: defaults, validation and storage conversion (no-ops here)."""

    def to_storage(self, obj: dict[str, Any], version: str) -> dict[str, Any]:
        """Convert a request body in `version` to the stored representation."""
        return obj

    def from_storage(
        self, obj: dict[str, Any], rtype: ResourceType, version: str
    ) -> dict[str, Any]:
        """Render a stored object in `version` of `rtype`."""
        rendered = {"apiVersion": rtype.api_version(version), "kind": rtype.kind}
        rendered.update((k, copy.deepcopy(v)) for k, v in obj.items() if k not in rendered)
        return rendered

    def prepare_create(self, obj: dict[str, Any]) -> None:
        """Defaults the server fills in on create (the object already has its uid)."""

    def prepare_update(self, new: dict[str, Any], old: dict[str, Any]) -> None:
        """Defaults the server fills in on update."""

    def admit(
        self, obj: dict[str, Any], old: dict[str, Any] | None, version: str
    ) -> tuple[dict[str, Any], list[FieldError]]:
        """The object as it will be stored, and the validation errors (old is None on create)."""
        return obj, []


@dataclass
class ResourceType:
    """How one resource is addressed and which generic registry rules apply to it."""

    group: str
    versions: tuple[str, ...]
    plural: str
    singular: str
    kind: str
    namespaced: bool
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    verbs: tuple[str, ...] = ALL_VERBS
    status_subresource: bool = False
    # "" never set; "spec": bumped when .spec changes; "content": when anything but metadata
    # (and, with a status subresource, status) changes, as for custom resources
    generation: str = ""
    unconditional_update: bool = True
    create_on_update: bool = False
    strategic_merge: bool = True
    custom: bool = False
    storage_version: str = ""
    shares_storage_with: tuple[str, str] | None = None
    field_selectors: tuple[str, ...] = META_FIELDS
    delete_returns_object: bool = False
    name_validation: str = "subdomain"  # or "label"
    hooks: KindHooks = field(default_factory=KindHooks)
    crd_name: str = ""

    def __post_init__(self) -> None:
        if not self.storage_version:
            self.storage_version = self.versions[0]

    @property
    def storage_key(self) -> tuple[str, str]:
        return self.shares_storage_with or (self.group, self.plural)

    def api_version(self, version: str) -> str:
        return f"{self.group}/{version}" if self.group else version

    @property
    def list_kind(self) -> str:
        return f"{self.kind}List"

    def name_errors(self, name: str) -> list[FieldError]:
        if self.name_validation == "label":
            return dns1123_label_errors("metadata.name", name)
        return dns1123_subdomain_errors("metadata.name", name)


# --- built-in kinds -------------------------------------------------------------------


def _container_defaults(container: dict[str, Any]) -> None:
    container.setdefault("terminationMessagePath", "/dev/termination-log")
    container.setdefault("terminationMessagePolicy", "File")
    image = str(container.get("image", ""))
    tag = image.rsplit("/", 1)[-1]
    latest = "@" not in tag and (":" not in tag or tag.endswith(":latest"))
    container.setdefault("imagePullPolicy", "Always" if latest else "IfNotPresent")
    for port in container.get("ports") or []:
        if isinstance(port, dict):
            port.setdefault("protocol", "TCP")


def _pod_template_defaults(template: dict[str, Any], restart_policy: str) -> None:
    spec = template.get("spec")
    if not isinstance(spec, dict):
        return
    spec.setdefault("restartPolicy", restart_policy)
    spec.setdefault("terminationGracePeriodSeconds", 30)
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("securityContext", {})
    spec.setdefault("schedulerName", "default-scheduler")
    for key in ("containers", "initContainers"):
        for container in spec.get(key) or []:
            if isinstance(container, dict):
                _container_defaults(container)


def _pod_template_errors(template: Any, path: str) -> list[FieldError]:
    if not isinstance(template, dict):
        return [required_value(path)]
    spec = template.get("spec")
    if not isinstance(spec, dict):
        return [required_value(f"{path}.spec")]
    containers = spec.get("containers")
    if not isinstance(containers, list) or not containers:
        return [required_value(f"{path}.spec.containers")]
    errors: list[FieldError] = []
    seen: set[str] = set()
    for index, container in enumerate(containers):
        where = f"{path}.spec.containers[{index}]"
        if not isinstance(container, dict):
            errors.append(invalid_value(where, container, "must be an object"))
            continue
        name = container.get("name")
        if not name:
            errors.append(required_value(f"{where}.name"))
        else:
            errors += dns1123_label_errors(f"{where}.name", str(name))
            if name in seen:
                errors.append(
                    FieldError(f"{where}.name", f'Duplicate value: "{name}"', "FieldValueDuplicate")
                )
            seen.add(str(name))
        if not container.get("image"):
            errors.append(required_value(f"{where}.image"))
        for env_index, env in enumerate(container.get("env") or []):
            if not isinstance(env, dict) or not env.get("name"):
                errors.append(required_value(f"{where}.env[{env_index}].name"))
    return errors


def _selector_errors(spec: dict[str, Any], template_path: str) -> list[FieldError]:
    selector = spec.get("selector")
    if not isinstance(selector, dict) or not (
        selector.get("matchLabels") or selector.get("matchExpressions")
    ):
        return [required_value("spec.selector")]
    labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
    wanted = selector.get("matchLabels") or {}
    if any(labels.get(key) != value for key, value in wanted.items()):
        return [
            invalid_value(
                f"{template_path}.metadata.labels",
                ",".join(f"{k}={v}" for k, v in sorted(labels.items())),
                "`selector` does not match template `labels`",
            )
        ]
    return []


def _immutable(new: Any, old: Any, path: str) -> list[FieldError]:
    if new != old:
        return [invalid_value(path, _summary(new), "field is immutable")]
    return []


def _summary(value: Any) -> Any:
    return value if isinstance(value, str | int | float | bool) or value is None else "object"


class ConfigMapHooks(KindHooks):
    """ConfigMap keys must be config keys; ``immutable: true`` freezes data."""

    def admit(
        self, obj: dict[str, Any], old: dict[str, Any] | None, version: str
    ) -> tuple[dict[str, Any], list[FieldError]]:
        errors: list[FieldError] = []
        keys: set[str] = set()
        for section in ("data", "binaryData"):
            values = obj.get(section) or {}
            if not isinstance(values, dict):
                errors.append(invalid_value(section, values, "must be a map"))
                continue
            for key, value in values.items():
                if not _CONFIG_KEY.match(key) or len(key) > 253:
                    errors.append(
                        invalid_value(
                            f"{section}[{key}]",
                            key,
                            "a valid config key must consist of alphanumeric characters, '-', "
                            "'_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex "
                            "used for validation is '[-._a-zA-Z0-9]+')",
                        )
                    )
                if key in keys:
                    errors.append(invalid_value(section, key, "duplicate of key present in data"))
                keys.add(key)
                if not isinstance(value, str):
                    errors.append(invalid_value(f"{section}[{key}]", value, "must be a string"))
        if old is not None and old.get("immutable"):
            if obj.get("immutable") is not True:
                errors.append(forbidden("immutable", "field is immutable when `immutable` is set"))
            for section in ("data", "binaryData"):
                if (obj.get(section) or {}) != (old.get(section) or {}):
                    errors.append(forbidden(section, "field is immutable when `immutable` is set"))
        return obj, errors


class DeploymentHooks(KindHooks):
    """apps/v1 Deployment defaults and validation (selector, template, immutable selector)."""

    def prepare_create(self, obj: dict[str, Any]) -> None:
        spec = obj.get("spec")
        if not isinstance(spec, dict):
            return
        spec.setdefault("replicas", 1)
        spec.setdefault("revisionHistoryLimit", 10)
        spec.setdefault("progressDeadlineSeconds", 600)
        strategy = spec.setdefault("strategy", {})
        if isinstance(strategy, dict):
            strategy.setdefault("type", "RollingUpdate")
            if strategy["type"] == "RollingUpdate":
                rolling = strategy.setdefault("rollingUpdate", {})
                if isinstance(rolling, dict):
                    rolling.setdefault("maxUnavailable", "25%")
                    rolling.setdefault("maxSurge", "25%")
        if isinstance(spec.get("template"), dict):
            _pod_template_defaults(spec["template"], "Always")

    def prepare_update(self, new: dict[str, Any], old: dict[str, Any]) -> None:
        self.prepare_create(new)

    def admit(
        self, obj: dict[str, Any], old: dict[str, Any] | None, version: str
    ) -> tuple[dict[str, Any], list[FieldError]]:
        spec = obj.get("spec")
        if not isinstance(spec, dict):
            return obj, [required_value("spec")]
        errors = _selector_errors(spec, "spec.template")
        errors += _pod_template_errors(spec.get("template"), "spec.template")
        replicas = spec.get("replicas")
        if not isinstance(replicas, int) or replicas < 0:
            errors.append(
                invalid_value("spec.replicas", replicas, "must be greater than or equal to 0")
            )
        deadline = spec.get("progressDeadlineSeconds")
        if isinstance(deadline, int) and deadline <= int(spec.get("minReadySeconds") or 0):
            errors.append(
                invalid_value(
                    "spec.progressDeadlineSeconds", deadline, "must be greater than minReadySeconds"
                )
            )
        if old is not None:
            errors += _immutable(
                spec.get("selector"), (old.get("spec") or {}).get("selector"), "spec.selector"
            )
        return obj, errors


class JobHooks(KindHooks):
    """batch/v1 Job defaults (selector from the uid, pod labels) and validation."""

    def prepare_create(self, obj: dict[str, Any]) -> None:
        spec = obj.get("spec")
        if not isinstance(spec, dict):
            return
        metadata = obj["metadata"]
        uid, name = metadata.get("uid", ""), metadata.get("name", "")
        if not spec.get("manualSelector"):
            spec["selector"] = {"matchLabels": {"batch.kubernetes.io/controller-uid": uid}}
            template = spec.setdefault("template", {})
            if isinstance(template, dict):
                labels = template.setdefault("metadata", {}).setdefault("labels", {})
                labels.update(
                    {
                        "batch.kubernetes.io/controller-uid": uid,
                        "batch.kubernetes.io/job-name": name,
                        "controller-uid": uid,
                        "job-name": name,
                    }
                )
        self.prepare_update(obj, {})

    def prepare_update(self, new: dict[str, Any], old: dict[str, Any]) -> None:
        # defaulting applies to every body the server decodes; the generated selector and
        # pod labels only on create
        spec = new.get("spec")
        if not isinstance(spec, dict):
            return
        spec.setdefault("parallelism", 1)
        spec.setdefault("completions", 1)
        spec.setdefault("backoffLimit", 6)
        spec.setdefault("completionMode", "NonIndexed")
        spec.setdefault("suspend", False)
        spec.setdefault("podReplacementPolicy", "TerminatingOrFailed")
        if isinstance(spec.get("template"), dict):
            # the pod default (Always) is what makes a Job without restartPolicy invalid
            _pod_template_defaults(spec["template"], "Always")

    def admit(
        self, obj: dict[str, Any], old: dict[str, Any] | None, version: str
    ) -> tuple[dict[str, Any], list[FieldError]]:
        spec = obj.get("spec")
        if not isinstance(spec, dict):
            return obj, [required_value("spec")]
        errors = _pod_template_errors(spec.get("template"), "spec.template")
        restart = ((spec.get("template") or {}).get("spec") or {}).get("restartPolicy")
        if restart not in ("OnFailure", "Never"):
            errors.append(
                unsupported_value(
                    "spec.template.spec.restartPolicy", restart, ["OnFailure", "Never"]
                )
            )
        for key in ("parallelism", "completions", "backoffLimit"):
            value = spec.get(key)
            if value is not None and (not isinstance(value, int) or value < 0):
                errors.append(
                    invalid_value(f"spec.{key}", value, "must be greater than or equal to 0")
                )
        if old is not None:
            old_spec = old.get("spec") or {}
            errors += _immutable(spec.get("selector"), old_spec.get("selector"), "spec.selector")
            errors += _immutable(spec.get("template"), old_spec.get("template"), "spec.template")
            errors += _immutable(
                spec.get("completions"), old_spec.get("completions"), "spec.completions"
            )
        return obj, errors


class LeaseHooks(KindHooks):
    """coordination.k8s.io/v1 Lease validation."""

    def admit(
        self, obj: dict[str, Any], old: dict[str, Any] | None, version: str
    ) -> tuple[dict[str, Any], list[FieldError]]:
        spec = obj.get("spec") or {}
        errors: list[FieldError] = []
        duration = spec.get("leaseDurationSeconds")
        if duration is not None and (not isinstance(duration, int) or duration <= 0):
            errors.append(
                invalid_value("spec.leaseDurationSeconds", duration, "must be greater than 0")
            )
        transitions = spec.get("leaseTransitions")
        if transitions is not None and (not isinstance(transitions, int) or transitions < 0):
            errors.append(
                invalid_value(
                    "spec.leaseTransitions", transitions, "must be greater than or equal to 0"
                )
            )
        return obj, errors


class NamespaceHooks(KindHooks):
    """Namespaces get the ``kubernetes`` finalizer, phase Active and the name label."""

    def prepare_create(self, obj: dict[str, Any]) -> None:
        name = obj["metadata"]["name"]
        obj["metadata"].setdefault("labels", {})["kubernetes.io/metadata.name"] = name
        obj.setdefault("spec", {}).setdefault("finalizers", ["kubernetes"])
        obj["status"] = {"phase": "Active"}


# events.k8s.io/v1 field <-> core/v1 field (k8s.io/kubernetes/pkg/apis/events/v1 conversion)
_EVENTS_V1_TO_CORE = {
    "regarding": "involvedObject",
    "note": "message",
    "deprecatedSource": "source",
    "deprecatedFirstTimestamp": "firstTimestamp",
    "deprecatedLastTimestamp": "lastTimestamp",
    "deprecatedCount": "count",
    "reportingController": "reportingComponent",
}
_CORE_TO_EVENTS_V1 = {core: v1 for v1, core in _EVENTS_V1_TO_CORE.items()}


class EventsV1Hooks(KindHooks):
    """events.k8s.io/v1 Events are core/v1 Events renamed, as on the real server."""

    def to_storage(self, obj: dict[str, Any], version: str) -> dict[str, Any]:
        stored = {_EVENTS_V1_TO_CORE.get(key, key): value for key, value in obj.items()}
        stored["apiVersion"], stored["kind"] = "v1", "Event"
        return stored

    def from_storage(
        self, obj: dict[str, Any], rtype: ResourceType, version: str
    ) -> dict[str, Any]:
        rendered: dict[str, Any] = {"apiVersion": rtype.api_version(version), "kind": "Event"}
        for key, value in obj.items():
            if key not in ("apiVersion", "kind"):
                rendered[_CORE_TO_EVENTS_V1.get(key, key)] = copy.deepcopy(value)
        return rendered

    def admit(
        self, obj: dict[str, Any], old: dict[str, Any] | None, version: str
    ) -> tuple[dict[str, Any], list[FieldError]]:
        if old is not None:
            return obj, []
        errors: list[FieldError] = []
        # field names as the client sent them (events.k8s.io/v1)
        for core, path in (
            ("eventTime", "eventTime"),
            ("reportingComponent", "reportingController"),
            ("reportingInstance", "reportingInstance"),
            ("action", "action"),
            ("reason", "reason"),
        ):
            if not obj.get(core):
                errors.append(required_value(path))
        if obj.get("type") not in ("Normal", "Warning"):
            errors.append(unsupported_value("type", obj.get("type"), ["Normal", "Warning"]))
        return obj, errors


class CustomResourceHooks(KindHooks):
    """Custom resources: the CRD's structural schema of the request's version."""

    def __init__(self, schemas: dict[str, dict[str, Any] | None]) -> None:
        self.schemas = schemas

    def admit(
        self, obj: dict[str, Any], old: dict[str, Any] | None, version: str
    ) -> tuple[dict[str, Any], list[FieldError]]:
        return apply_schema(obj, self.schemas.get(version))


class CrdHooks(KindHooks):
    """CustomResourceDefinition validation of the parts the emulator relies on."""

    def admit(
        self, obj: dict[str, Any], old: dict[str, Any] | None, version: str
    ) -> tuple[dict[str, Any], list[FieldError]]:
        spec = obj.get("spec")
        if not isinstance(spec, dict):
            return obj, [required_value("spec")]
        errors: list[FieldError] = []
        group = spec.get("group")
        names = spec.get("names") or {}
        plural = names.get("plural")
        if not group:
            errors.append(required_value("spec.group"))
        elif "." not in str(group):
            errors.append(
                invalid_value("spec.group", group, "should be a domain with at least one dot")
            )
        if not plural:
            errors.append(required_value("spec.names.plural"))
        elif not _DNS1123_LABEL.match(str(plural)):
            errors.append(invalid_value("spec.names.plural", plural, LABEL_MESSAGE))
        if not names.get("kind"):
            errors.append(required_value("spec.names.kind"))
        if group and plural and obj["metadata"]["name"] != f"{plural}.{group}":
            errors.append(
                invalid_value(
                    "metadata.name",
                    obj["metadata"]["name"],
                    'must be spec.names.plural+"."+spec.group',
                )
            )
        if spec.get("scope") not in ("Namespaced", "Cluster"):
            errors.append(
                unsupported_value("spec.scope", spec.get("scope"), ["Cluster", "Namespaced"])
            )
        versions = spec.get("versions")
        if not isinstance(versions, list) or not versions:
            errors.append(
                required_value(
                    "spec.versions", "must have exactly one version marked as storage version"
                )
            )
        else:
            storage = [
                entry for entry in versions if isinstance(entry, dict) and entry.get("storage")
            ]
            if len(storage) != 1:
                errors.append(
                    invalid_value(
                        "spec.versions",
                        len(storage),
                        "must have exactly one version marked as storage version",
                    )
                )
            if not any(isinstance(entry, dict) and entry.get("served") for entry in versions):
                errors.append(
                    invalid_value(
                        "spec.versions", "", "must have at least one version marked as served"
                    )
                )
            for index, entry in enumerate(versions):
                if not isinstance(entry, dict) or not entry.get("name"):
                    errors.append(required_value(f"spec.versions[{index}].name"))
                elif not (entry.get("schema") or {}).get("openAPIV3Schema"):
                    errors.append(
                        required_value(
                            f"spec.versions[{index}].schema.openAPIV3Schema", "schemas are required"
                        )
                    )
        if old is not None:
            errors += _immutable(
                spec.get("group"), (old.get("spec") or {}).get("group"), "spec.group"
            )
            errors += _immutable(
                spec.get("scope"), (old.get("spec") or {}).get("scope"), "spec.scope"
            )
        return obj, errors


def resource_type_from_crd(crd: dict[str, Any]) -> ResourceType:
    """The ResourceType a CustomResourceDefinition defines (served versions, storage first)."""
    spec = crd["spec"]
    names = spec["names"]
    entries = [entry for entry in spec["versions"] if entry.get("served")]
    storage = next(entry["name"] for entry in spec["versions"] if entry.get("storage"))
    served = [entry["name"] for entry in entries]
    ordered = tuple(sorted(served, key=_version_priority))
    schemas = {
        entry["name"]: (entry.get("schema") or {}).get("openAPIV3Schema")
        for entry in spec["versions"]
    }
    status_subresource = {
        entry["name"]: "status" in (entry.get("subresources") or {}) for entry in spec["versions"]
    }
    return ResourceType(
        group=spec["group"],
        versions=ordered,
        storage_version=storage,
        plural=names["plural"],
        singular=names.get("singular") or names["kind"].lower(),
        kind=names["kind"],
        namespaced=spec.get("scope") == "Namespaced",
        short_names=tuple(names.get("shortNames") or ()),
        categories=tuple(names.get("categories") or ()),
        status_subresource=status_subresource.get(storage, False),
        generation="content",
        unconditional_update=False,
        strategic_merge=False,
        custom=True,
        hooks=CustomResourceHooks(schemas),
        crd_name=crd["metadata"]["name"],
    )


def _version_priority(version: str) -> tuple[int, int, int, str]:
    """Kubernetes version ordering: GA > beta > alpha, higher numbers first, then others."""
    match = re.fullmatch(r"v(\d+)(?:(alpha|beta)(\d+))?", version)
    if not match:
        return (3, 0, 0, version)
    major = int(match.group(1))
    stage = {None: 0, "beta": 1, "alpha": 2}[match.group(2)]
    minor = int(match.group(3) or 0)
    return (stage, -major, -minor, version)


def builtin_resource_types() -> list[ResourceType]:
    """The built-in resources the operator uses (see the module docstring of the package)."""
    event_fields = (
        *META_FIELDS,
        "involvedObject.kind",
        "involvedObject.namespace",
        "involvedObject.name",
        "involvedObject.uid",
        "involvedObject.apiVersion",
        "involvedObject.resourceVersion",
        "involvedObject.fieldPath",
        "reason",
        "reportingComponent",
        "source",
        "type",
    )
    return [
        ResourceType(
            "",
            ("v1",),
            "namespaces",
            "namespace",
            "Namespace",
            False,
            ("ns",),
            verbs=("create", "delete", "get", "list", "patch", "update", "watch"),
            status_subresource=True,
            name_validation="label",
            hooks=NamespaceHooks(),
            field_selectors=("metadata.name", "status.phase"),
        ),
        ResourceType(
            "",
            ("v1",),
            "configmaps",
            "configmap",
            "ConfigMap",
            True,
            ("cm",),
            hooks=ConfigMapHooks(),
        ),
        ResourceType(
            "",
            ("v1",),
            "events",
            "event",
            "Event",
            True,
            ("ev",),
            create_on_update=True,
            field_selectors=event_fields,
        ),
        ResourceType(
            "",
            ("v1",),
            "pods",
            "pod",
            "Pod",
            True,
            ("po",),
            categories=("all",),
            status_subresource=True,
            delete_returns_object=True,
            field_selectors=(
                *META_FIELDS,
                "spec.nodeName",
                "spec.serviceAccountName",
                "status.phase",
            ),
        ),
        ResourceType(
            "apps",
            ("v1",),
            "deployments",
            "deployment",
            "Deployment",
            True,
            ("deploy",),
            categories=("all",),
            status_subresource=True,
            generation="spec",
            hooks=DeploymentHooks(),
        ),
        ResourceType(
            "batch",
            ("v1",),
            "jobs",
            "job",
            "Job",
            True,
            (),
            categories=("all",),
            status_subresource=True,
            generation="spec",
            hooks=JobHooks(),
            field_selectors=(*META_FIELDS, "status.successful"),
        ),
        ResourceType(
            "coordination.k8s.io",
            ("v1",),
            "leases",
            "lease",
            "Lease",
            True,
            unconditional_update=False,
            create_on_update=True,
            hooks=LeaseHooks(),
        ),
        ResourceType(
            "events.k8s.io",
            ("v1",),
            "events",
            "event",
            "Event",
            True,
            ("ev",),
            create_on_update=True,
            shares_storage_with=("", "events"),
            hooks=EventsV1Hooks(),
            field_selectors=(
                *META_FIELDS,
                "regarding.kind",
                "regarding.namespace",
                "regarding.name",
                "regarding.uid",
                "reason",
                "reportingController",
                "type",
            ),
        ),
        ResourceType(
            "apiextensions.k8s.io",
            ("v1",),
            "customresourcedefinitions",
            "customresourcedefinition",
            "CustomResourceDefinition",
            False,
            ("crd", "crds"),
            categories=("api-extensions",),
            status_subresource=True,
            generation="spec",
            hooks=CrdHooks(),
        ),
    ]


def events_v1_field(path: str) -> str:
    """Map an events.k8s.io/v1 field-selector path onto the stored core/v1 field."""
    head, _, rest = path.partition(".")
    core = _EVENTS_V1_TO_CORE.get(head, head)
    return f"{core}.{rest}" if rest else core


def iter_types(types: Iterable[ResourceType], group: str, version: str) -> list[ResourceType]:
    return [rtype for rtype in types if rtype.group == group and version in rtype.versions]
