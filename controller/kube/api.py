"""The one module that talks to the Kubernetes API, through the official client.

Everything else in the operator sees plain dicts and `KubeError`s. Keeping the
client behind this seam means the calls the operator makes are listed in one
place (the RBAC in `manifests/` grants exactly these) and every API error reaches
the rest of the code with a message saying what was refused and why.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import urllib3
import yaml
from kubernetes import client, config, watch
from kubernetes.client.exceptions import ApiException

from controller.kube.resources import GROUP, PLURAL, VERSION


@dataclass(frozen=True, slots=True)
class Kind:
    """A resource kind the operator uses, and how to reach it."""

    name: str
    group: str
    version: str
    plural: str
    namespaced: bool = True

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version


CONFIGMAPS = Kind("ConfigMap", "", "v1", "configmaps")
SECRETS = Kind("Secret", "", "v1", "secrets")
DEPLOYMENTS = Kind("Deployment", "apps", "v1", "deployments")
JOBS = Kind("Job", "batch", "v1", "jobs")
EVENTS = Kind("Event", "", "v1", "events")
ADMISSION_POLICIES = Kind(
    "ValidatingAdmissionPolicy",
    "admissionregistration.k8s.io",
    "v1",
    "validatingadmissionpolicies",
    namespaced=False,
)
ADMISSION_BINDINGS = Kind(
    "ValidatingAdmissionPolicyBinding",
    "admissionregistration.k8s.io",
    "v1",
    "validatingadmissionpolicybindings",
    namespaced=False,
)
LEASES = Kind("Lease", "coordination.k8s.io", "v1", "leases")
ROLLOUTS = Kind("StageRollout", GROUP, VERSION, PLURAL)
APPROVALS = Kind("StageApproval", GROUP, VERSION, "stageapprovals")
COMMANDS = Kind("StageCommand", GROUP, VERSION, "stagecommands")

IMPERSONATE_USER = "Impersonate-User"
_BUILT_IN = {CONFIGMAPS.plural, DEPLOYMENTS.plural, JOBS.plural, EVENTS.plural, LEASES.plural}
_HINTS = {
    401: "the credentials were not accepted",
    403: "the caller lacks this permission (the operator's rights: manifests/base/rbac.yaml)",
    404: "it does not exist",
    409: "it changed since it was read (resourceVersion conflict)",
    410: "the requested resourceVersion is too old",
    422: "the API server rejected the object as invalid",
    429: "the API server asks to slow down",
}


class KubeError(Exception):
    """A refused or failed API call, with the HTTP status and a sentence for people."""

    def __init__(
        self,
        status: int,
        reason: str,
        message: str,
        *,
        verb: str = "",
        resource: str = "",
        namespace: str = "",
        acting_as: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason
        self.verb = verb
        self.resource = resource
        self.namespace = namespace
        self.acting_as = acting_as
        """The impersonated user the call was made as, if any."""

    @property
    def forbidden(self) -> bool:
        return self.status == 403

    @property
    def conflict(self) -> bool:
        return self.status == 409

    @property
    def not_found(self) -> bool:
        return self.status == 404


def load_api_client(kubeconfig: str | None = None, context: str | None = None) -> client.ApiClient:
    """In-cluster configuration when running in a pod, else the given or default kubeconfig."""
    if kubeconfig is None:
        try:
            config.load_incluster_config()
            return client.ApiClient()
        except config.ConfigException:
            pass
    if kubeconfig is not None:
        _check_kubeconfig_files(kubeconfig)
    try:
        configuration = client.Configuration()
        config.load_kube_config(
            config_file=kubeconfig, context=context, client_configuration=configuration
        )
    except (config.ConfigException, OSError, ValueError, yaml.YAMLError) as error:
        where = kubeconfig or "~/.kube/config"
        raise KubeError(
            0, "NoConfig", f"no cluster reachable: cannot load kubeconfig {where}: {error}"
        ) from None
    return client.ApiClient(configuration)


_IN_CLUSTER_NAMESPACE = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"


def context_namespace(kubeconfig: str | None = None, context: str | None = None) -> str:
    """The namespace kubectl would use: the context's, the pod's in-cluster, else `default`."""
    try:
        contexts, active = config.list_kube_config_contexts(config_file=kubeconfig)
    except (config.ConfigException, FileNotFoundError, OSError, TypeError):
        contexts, active = [], None
    chosen = next((c for c in contexts if c.get("name") == context), None) if context else active
    namespace = ((chosen or {}).get("context") or {}).get("namespace")
    if isinstance(namespace, str) and namespace:
        return namespace
    if kubeconfig is None and not contexts:
        try:
            with open(_IN_CLUSTER_NAMESPACE, encoding="utf-8") as handle:
                return handle.read(256).strip() or "default"
        except OSError:
            pass
    return "default"


def _check_kubeconfig_files(kubeconfig: str) -> None:
    """Each file of a kubeconfig list is a regular UTF-8 file of at most 1 MiB."""
    from pathlib import Path

    from controller.files import FileUnusable, read_text

    for part in kubeconfig.split(os.pathsep):
        try:
            read_text(Path(part), "kubeconfig")
        except FileUnusable as error:
            raise KubeError(0, "NoConfig", f"no cluster reachable: {error}") from None


class KubeApi:
    """The operator's calls, each one verb on one kind, returning plain dicts."""

    def __init__(
        self,
        api_client: client.ApiClient,
        *,
        timeout_seconds: float = 10.0,
        impersonate: str | None = None,
    ) -> None:
        self._client = api_client
        self._custom = client.CustomObjectsApi(api_client)
        self._timeout = timeout_seconds
        self.impersonating = impersonate

    def as_service_account(self, namespace: str, name: str) -> KubeApi:
        """The same connection, acting as a ServiceAccount (the API server checks
        `impersonate` on serviceaccounts). Only the user is sent: the API server
        adds the account's own groups (system:serviceaccounts, ...:<namespace>)
        itself, so the operator needs no right to impersonate arbitrary groups."""
        user = f"system:serviceaccount:{namespace}:{name}"
        return KubeApi(self._client, timeout_seconds=self._timeout, impersonate=user)

    def detached(self) -> KubeApi:
        """The same identity on a connection pool of its own (for a long-lived watch)."""
        own = client.ApiClient(self._client.configuration)
        own.default_headers.update(self._client.default_headers)
        return KubeApi(own, timeout_seconds=self._timeout, impersonate=self.impersonating)

    # generic verbs ------------------------------------------------------------

    def get(self, kind: Kind, namespace: str, name: str) -> dict[str, Any] | None:
        """The object, or None when it does not exist."""
        try:
            return self._call("GET", kind, namespace, name)
        except KubeError as error:
            if error.not_found:
                return None
            raise

    def get_fresh(self, kind: Kind, namespace: str, name: str) -> dict[str, Any] | None:
        """The object as the API server has it now, never from a cache (after a conflict)."""
        return KubeApi.get(self, kind, namespace, name)

    def list(
        self, kind: Kind, namespace: str | None, label_selector: str | None = None
    ) -> tuple[list[dict[str, Any]], str]:
        """Items and the list's resourceVersion (for a watch to start from)."""
        query = {"labelSelector": label_selector} if label_selector else {}
        body = self._call("GET", kind, namespace, None, query=query)
        return list(body.get("items", [])), str(body.get("metadata", {}).get("resourceVersion", ""))

    def create(self, kind: Kind, namespace: str, body: Mapping[str, Any]) -> dict[str, Any]:
        return self._call("POST", kind, namespace, None, body=body)

    def merge_patch(
        self, kind: Kind, namespace: str, name: str, patch: Mapping[str, Any]
    ) -> dict[str, Any]:
        """RFC 7386 merge patch: keys not in the patch are left alone."""
        return self._call(
            "PATCH", kind, namespace, name, body=patch, content_type="application/merge-patch+json"
        )

    def replace(
        self, kind: Kind, namespace: str, name: str, body: Mapping[str, Any]
    ) -> dict[str, Any]:
        """PUT guarded by the body's metadata.resourceVersion: a stale writer gets a conflict."""
        return self._call("PUT", kind, namespace, name, body=body)

    def replace_status(
        self, kind: Kind, namespace: str, name: str, body: Mapping[str, Any]
    ) -> dict[str, Any]:
        """PUT to the status subresource, guarded by metadata.resourceVersion."""
        return self._call("PUT", kind, namespace, name, body=body, subresource="status")

    def delete(self, kind: Kind, namespace: str, name: str) -> None:
        self._call("DELETE", kind, namespace, name)

    def watch(
        self, kind: Kind, namespace: str | None, resource_version: str, timeout_seconds: int = 300
    ) -> Iterator[tuple[str, dict[str, Any]]]:
        """(type, object) events after `resource_version`; KubeError(410) when it is too old."""
        stream = watch.Watch()
        method, args = self._list_method(kind, namespace)
        # The generated list methods do not send this connection's headers: as a
        # ServiceAccount, the watch must say so itself, or it would run as the operator.
        headers = {IMPERSONATE_USER: self.impersonating} if self.impersonating else {}
        try:
            for event in stream.stream(
                method,
                *args,
                resource_version=resource_version,
                timeout_seconds=timeout_seconds,
                allow_watch_bookmarks=True,
                _headers=headers,
            ):
                raw = event.get("raw_object") or event.get("object")
                if event.get("type") == "ERROR":
                    code = int((raw or {}).get("code", 500))
                    raise KubeError(
                        code,
                        str((raw or {}).get("reason", "")),
                        _describe(
                            "WATCH",
                            kind,
                            namespace,
                            None,
                            code,
                            str((raw or {}).get("message", "")),
                        ),
                    )
                yield (
                    str(event.get("type")),
                    raw if isinstance(raw, dict) else self._client.sanitize_for_serialization(raw),
                )
        except ApiException as error:
            raise _error(
                "WATCH", kind, namespace, None, error.status, error.body or error.reason
            ) from None
        except (OSError, urllib3.exceptions.HTTPError) as error:
            raise KubeError(
                0, "Unreachable", f"no cluster reachable: watch {kind.plural}: {_root(error)}"
            ) from None
        finally:
            stream.stop()

    def who_am_i(self) -> dict[str, Any]:
        """The caller as the API server sees it (a SelfSubjectReview)."""
        review = Kind(
            "SelfSubjectReview",
            "authentication.k8s.io",
            "v1",
            "selfsubjectreviews",
            namespaced=False,
        )
        body = {"apiVersion": review.api_version, "kind": review.name}
        answer = self._call("POST", review, None, None, body=body)
        return dict(answer.get("status", {}).get("userInfo", {}))

    def may(self, verb: str, kind: Kind, namespace: str, name: str | None = None) -> bool:
        """Whether the caller (or the impersonated account) may do this, asked of the API
        server with a SelfSubjectAccessReview; every authenticated user may ask."""
        review = Kind(
            "SelfSubjectAccessReview",
            "authorization.k8s.io",
            "v1",
            "selfsubjectaccessreviews",
            namespaced=False,
        )
        attributes = {"namespace": namespace, "verb": verb, "group": kind.group}
        attributes |= {"resource": kind.plural, **({"name": name} if name else {})}
        body = {
            "apiVersion": review.api_version,
            "kind": review.name,
            "spec": {"resourceAttributes": attributes},
        }
        answer = self._call("POST", review, None, None, body=body)
        return bool((answer.get("status") or {}).get("allowed"))

    # plumbing -----------------------------------------------------------------

    def _path(
        self, kind: Kind, namespace: str | None, name: str | None, subresource: str | None
    ) -> str:
        root = f"/apis/{kind.group}/{kind.version}" if kind.group else f"/api/{kind.version}"
        parts = [root]
        if kind.namespaced and namespace:
            parts.append(f"namespaces/{namespace}")
        parts.append(kind.plural)
        if name:
            parts.append(name)
        if subresource:
            parts.append(subresource)
        return "/".join(parts)

    def _call(
        self,
        method: str,
        kind: Kind,
        namespace: str | None,
        name: str | None,
        *,
        body: Mapping[str, Any] | None = None,
        query: Mapping[str, str] | None = None,
        content_type: str = "application/json",
        subresource: str | None = None,
    ) -> dict[str, Any]:
        path = self._path(kind, namespace, name, subresource)
        payload = dict(body) if body is not None else None
        try:
            prepared = self._client.param_serialize(
                method=method,
                resource_path=path,
                query_params=list((query or {}).items()),
                header_params=self._headers(content_type),
                body=payload,
                auth_settings=["BearerToken"],
            )
            response = self._client.call_api(*prepared, _request_timeout=self._timeout)
            response.read()
        except ApiException as error:
            raise _error(
                method, kind, namespace, name, error.status, error.body, self.impersonating
            ) from None
        except (OSError, urllib3.exceptions.HTTPError) as error:
            if "timed out" in str(error).lower() or isinstance(
                error, TimeoutError | urllib3.exceptions.TimeoutError
            ):
                raise KubeError(
                    0,
                    "Timeout",
                    f"{method} {path}: the API server did not answer within {self._timeout:g}s",
                ) from None
            raise KubeError(
                0, "Unreachable", f"no cluster reachable: {method} {path}: {_root(error)}"
            ) from None
        data = response.data or b""
        if not 200 <= response.status <= 299:
            raise _error(
                method,
                kind,
                namespace,
                name,
                response.status,
                data.decode("utf-8", "replace"),
                self.impersonating,
            )
        return dict(json.loads(data)) if data else {}

    def _headers(self, content_type: str) -> dict[str, str]:
        headers = {"Content-Type": content_type, "Accept": "application/json"}
        if self.impersonating:
            headers[IMPERSONATE_USER] = self.impersonating
        return headers

    def _list_method(self, kind: Kind, namespace: str | None) -> tuple[Any, tuple[Any, ...]]:
        if kind.plural in _BUILT_IN:
            api: Any = {
                "": client.CoreV1Api,
                "apps": client.AppsV1Api,
                "batch": client.BatchV1Api,
                "coordination.k8s.io": client.CoordinationV1Api,
            }[kind.group](self._client)
            singular = {
                "configmaps": "config_map",
                "deployments": "deployment",
                "jobs": "job",
                "events": "event",
                "leases": "lease",
            }[kind.plural]
            if namespace:
                return getattr(api, f"list_namespaced_{singular}"), (namespace,)
            return getattr(api, f"list_{singular}_for_all_namespaces"), ()
        if namespace:
            return self._custom.list_namespaced_custom_object, (
                kind.group,
                kind.version,
                namespace,
                kind.plural,
            )
        return self._custom.list_cluster_custom_object, (kind.group, kind.version, kind.plural)


_VERBS = {
    "GET": "get",
    "POST": "create",
    "PUT": "update",
    "PATCH": "patch",
    "DELETE": "delete",
    "WATCH": "watch",
}


def _error(
    method: str,
    kind: Kind,
    namespace: str | None,
    name: str | None,
    status: int | None,
    body: Any,
    acting_as: str | None = None,
) -> KubeError:
    message, reason = "", ""
    if body:
        try:
            payload = json.loads(body)
            message, reason = str(payload.get("message", "")), str(payload.get("reason", ""))
        except (ValueError, AttributeError, TypeError):
            message = str(body)[:300]
    code = int(status or 0)
    described = _describe(method, kind, namespace, name, code, message)
    if acting_as and code == 403:
        described = described.replace(_HINTS[403], f"{acting_as} lacks this permission")
    return KubeError(
        code,
        reason,
        described,
        verb="list" if method == "GET" and not name else _VERBS.get(method, method),
        resource=f"{kind.plural}.{kind.group}" if kind.group else kind.plural,
        namespace=namespace or "",
        acting_as=acting_as if code == 403 else None,
    )


def _root(error: BaseException) -> str:
    while error.__cause__ is not None or error.__context__ is not None:
        error = error.__cause__ or error.__context__  # type: ignore[assignment]
    return str(error) or type(error).__name__


def _describe(
    method: str, kind: Kind, namespace: str | None, name: str | None, status: int, message: str
) -> str:
    verb = _VERBS.get(method, method)
    target = f"{kind.plural}/{name}" if name else kind.plural
    where = f" in namespace {namespace}" if namespace else ""
    hint = _HINTS.get(status, "")
    detail = f": {message}" if message else ""
    return f"{verb} {target}{where} failed with HTTP {status}{' (' + hint + ')' if hint else ''}{detail}"
