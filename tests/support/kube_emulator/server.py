"""The HTTP face of the emulator: routing, discovery, watches, users, faults, request log."""

from __future__ import annotations

import contextlib
import copy
import json
import re
import select
import socket
import threading
import time
import traceback
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self
from urllib.parse import parse_qsl, unquote, urlsplit

import kubernetes.client

from . import errors as err
from .controllers import Controllers
from .errors import ApiError
from .install_kinds import add_install_types
from .rbac import Attributes, Authorizer, self_subject_access_review
from .resources import ResourceType
from .selectors import (
    FieldRequirement,
    Requirement,
    fields_match,
    labels_match,
    parse_field_selector,
    parse_label_selector,
)
from .store import Store, StoredEvent
from .tables import TABLE_CONTENT_TYPE, table_of, wants_table

EMULATED_VERSION = {
    "major": "1",
    "minor": "33",
    "gitVersion": "v1.33.0-kube-emulator",
    "gitCommit": "0000000000000000000000000000000000000000",
    "gitTreeState": "clean",
    "buildDate": "2025-04-23T00:00:00Z",
    "goVersion": "go1.24.2",
    "compiler": "gc",
    "platform": "linux/amd64",
}
USER_HEADER = "X-Emulator-User"
GROUPS_HEADER = "X-Emulator-Groups"
ANONYMOUS = "system:anonymous"


@dataclass(frozen=True)
class User:
    """Who a request authenticated as."""

    name: str
    groups: tuple[str, ...] = ()
    uid: str = ""


@dataclass
class RequestRecord:
    """One request as the emulator saw it; `status` is filled in once it is answered."""

    method: str
    path: str
    query: dict[str, str]
    content_type: str
    user: str
    groups: tuple[str, ...]
    verb: str = ""
    api_group: str = ""
    api_version: str = ""
    resource: str = ""
    subresource: str = ""
    namespace: str = ""
    name: str = ""
    status: int = 0
    authorization: str = ""
    impersonated_by: str = ""
    started: float = field(default_factory=time.monotonic)

    @property
    def rbac_rule(self) -> tuple[str, str, str]:
        """(apiGroup, resource[/subresource], verb): the RBAC permission this request needed."""
        resource = f"{self.resource}/{self.subresource}" if self.subresource else self.resource
        return (self.api_group, resource, self.verb)


@dataclass
class Fault:
    """An injected failure or slowdown for the requests it matches."""

    method: str | None
    path_regex: re.Pattern[str] | None
    status: int | None
    times: int | None
    delay: float
    retry_after: int | None
    message: str
    hold: bool = False
    hits: int = 0
    released: threading.Event = field(default_factory=threading.Event)

    def release(self) -> None:
        """Let the requests a `hold` fault is keeping (and any it meets later) go on."""
        self.released.set()

    def matches(self, method: str, path: str) -> bool:
        if self.times is not None and self.times <= 0:
            return False
        if self.method and self.method.upper() != method:
            return False
        return not (self.path_regex and not self.path_regex.search(path))


@dataclass
class _Route:
    group: str
    version: str
    resource: str
    namespace: str | None
    name: str
    subresource: str
    watch_path: bool


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, emulator: KubeEmulator) -> None:
        self.emulator = emulator
        super().__init__(("127.0.0.1", emulator.requested_port), _Handler)


class _WatchEnded(Exception):
    """The watch client went away or the emulator is stopping."""


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server
    server_version = "kube-emulator"
    sys_version = ""

    # connection bookkeeping so that stop() can end idle keep-alive connections
    def setup(self) -> None:
        super().setup()
        # Headers and body leave in separate writes; without TCP_NODELAY the client's
        # delayed ACK holds each answer back about 40 ms (Nagle), as no API server does.
        with contextlib.suppress(OSError):
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.server.emulator._connections.add(self.connection)

    def finish(self) -> None:
        with contextlib.suppress(OSError):
            super().finish()
        self.server.emulator._connections.discard(self.connection)

    def log_message(self, format: str, *args: Any) -> None:
        return

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def do_PUT(self) -> None:
        self._serve()

    def do_PATCH(self) -> None:
        self._serve()

    def do_DELETE(self) -> None:
        self._serve()

    # --- plumbing ------------------------------------------------------------------

    @property
    def emulator(self) -> KubeEmulator:
        return self.server.emulator

    def _send_json(
        self,
        code: int,
        body: Any,
        headers: dict[str, str] | None = None,
        content_type: str = "application/json",
    ) -> None:
        data = json.dumps(body).encode()
        # Logged before the answer leaves: a client that got it must find it logged.
        self._record.status = code
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)

    def _send_text(self, code: int, text: str) -> None:
        data = text.encode()
        self._record.status = code
        self.send_response(code)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _send_error(self, error: ApiError) -> None:
        if self._streaming:  # a watch already answered 200: errors can only end the stream
            self.close_connection = True
            return
        self._send_json(error.code, error.status(), error.headers)

    def _read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _authenticate(self) -> tuple[User, str]:
        """(the user the request acts as, the authenticated user if that is an impersonation)."""
        emulator = self.emulator
        named = self.headers.get(USER_HEADER)
        authorization = self.headers.get("Authorization") or ""
        if named:
            groups = tuple(
                group.strip()
                for group in (self.headers.get(GROUPS_HEADER) or "").split(",")
                if group.strip()
            )
            user = User(named, (*groups, "system:authenticated"))
        elif authorization.lower().startswith("bearer "):
            token = authorization[7:].strip()
            known = emulator._tokens.get(token)
            if known is None:
                raise ApiError(401, "Unauthorized", "Unauthorized")
            user = known
        else:
            user = User(ANONYMOUS, ("system:unauthenticated",))
        impersonate = self.headers.get("Impersonate-User")
        if impersonate:
            asked = tuple(self.headers.get_all("Impersonate-Group") or ())
            groups = emulator.rbac.impersonate(user.name, user.groups, impersonate, asked)
            return User(impersonate, groups), user.name
        return user, ""

    # --- request entry -----------------------------------------------------------------

    def _serve(self) -> None:
        method = self.command
        split = urlsplit(self.path)
        path = unquote(split.path)
        query = dict(parse_qsl(split.query, keep_blank_values=True))
        self._record = RequestRecord(
            method=method,
            path=path,
            query=query,
            content_type=self.headers.get("Content-Type") or "",
            user="",
            groups=(),
            authorization=self.headers.get("Authorization") or "",
        )
        self._streaming = False
        self.emulator._log(self._record)
        body = self._read_body()
        try:
            user, impersonator = self._authenticate()
            self._record.user, self._record.groups = user.name, user.groups
            self._record.impersonated_by = impersonator
            route = self._route(path)
            watch = route is not None and (
                route.watch_path or query.get("watch", "").lower() in ("true", "1")
            )
            if route is not None:
                self._describe(route, method, watch)
                self.emulator.rbac.check(
                    Attributes(
                        user.name,
                        user.groups,
                        self._record.verb,
                        route.group,
                        route.resource,
                        route.subresource,
                        route.namespace or "",
                        route.name,
                    )
                )
            fault = self.emulator._take_fault(method, path)
            if fault is not None:
                if fault.delay:
                    self.emulator._stopping.wait(fault.delay)
                while fault.hold and not fault.released.wait(0.05):
                    if self.emulator._stopping.is_set():
                        raise _WatchEnded()
                if fault.status is not None:
                    if watch and fault.status == 410:
                        self._start_stream()
                        self._write_event(
                            "ERROR", err.gone(fault.message or "too old resource version").status()
                        )
                        self._end_stream()
                        return
                    headers = {}
                    if fault.retry_after is not None:
                        headers["Retry-After"] = str(fault.retry_after)
                    raise ApiError(
                        fault.status,
                        fault.message or _default_fault_message(fault.status),
                        details={"retryAfterSeconds": fault.retry_after}
                        if fault.retry_after
                        else {},
                        headers=headers,
                    )
            if route is None:
                self._discovery(path, user)
                return
            self._dispatch(route, method, query, body, user, watch)
        except (OSError, _WatchEnded):  # the client went away, or stop() closed the socket
            self.close_connection = True
        except ApiError as error:
            self._send_error(error)
        except Exception as error:  # a bug in the emulator: say so in a Status
            detail = "".join(traceback.format_exception(error))
            self._send_error(
                ApiError(500, f"kube emulator internal error: {error}\n{detail}", "InternalError")
            )

    # --- routing ---------------------------------------------------------------------------

    def _route(self, path: str) -> _Route | None:
        parts = [part for part in path.split("/") if part]
        if len(parts) >= 2 and parts[0] == "api":
            group, version, rest = "", parts[1], parts[2:]
        elif len(parts) >= 3 and parts[0] == "apis":
            group, version, rest = parts[1], parts[2], parts[3:]
        else:
            return None
        if not rest:
            return None
        watch_path = False
        if rest[0] == "watch":
            watch_path, rest = True, rest[1:]
        namespace: str | None = None
        if (
            rest
            and rest[0] == "namespaces"
            and group == ""
            and (len(rest) == 2 or (len(rest) == 3 and rest[2] in ("status", "finalize")))
        ):
            return _Route(
                group,
                version,
                "namespaces",
                None,
                rest[1],
                rest[2] if len(rest) == 3 else "",
                watch_path,
            )
        if rest and rest[0] == "namespaces" and len(rest) >= 3:
            namespace, rest = rest[1], rest[2:]
        if not rest or len(rest) > 3:
            raise err.resource_not_found_route()
        return _Route(
            group,
            version,
            rest[0],
            namespace,
            rest[1] if len(rest) > 1 else "",
            rest[2] if len(rest) > 2 else "",
            watch_path,
        )

    def _describe(self, route: _Route, method: str, watch: bool) -> None:
        record = self._record
        record.api_group, record.api_version = route.group, route.version
        record.resource, record.subresource = route.resource, route.subresource
        record.namespace, record.name = route.namespace or "", route.name
        if method == "GET":
            record.verb = "get" if route.name else ("watch" if watch else "list")
        else:
            record.verb = {
                "POST": "create",
                "PUT": "update",
                "PATCH": "patch",
                "DELETE": "delete" if route.name else "deletecollection",
            }[method]

    def _dispatch(
        self,
        route: _Route,
        method: str,
        query: dict[str, str],
        body: bytes,
        user: User,
        watch: bool,
    ) -> None:
        store = self.emulator.store
        if (route.group, route.resource) == ("authentication.k8s.io", "selfsubjectreviews"):
            self._self_subject_review(route, method, body, user)
            return
        if (route.group, route.resource) == ("authorization.k8s.io", "selfsubjectaccessreviews"):
            if method != "POST" or route.name or route.namespace is not None:
                raise err.method_not_supported(route.resource, route.group, method)
            review = self_subject_access_review(
                self.emulator.rbac, user.name, user.groups, _parse_json(body)
            )
            self._send_json(201, review)
            return
        rtype = store.find_type(route.group, route.version, route.resource)
        if rtype is None:
            raise err.resource_not_found_route()
        if route.namespace is not None and not rtype.namespaced:
            raise err.resource_not_found_route()
        if route.subresource and not (route.subresource == "status" and rtype.status_subresource):
            raise err.resource_not_found_route()
        namespace = route.namespace or ""
        dry_run = query.get("dryRun") == "All"
        if "dryRun" in query and not dry_run:
            raise err.bad_request(f"Invalid dry run value: {query['dryRun']}")
        if method == "GET":
            if route.name:
                self._send_read(
                    rtype,
                    route.version,
                    query,
                    store.get(rtype, route.version, namespace, route.name),
                )
                return
            labels = parse_label_selector(query.get("labelSelector"))
            fields = parse_field_selector(query.get("fieldSelector"), rtype.field_selectors)
            if rtype.namespaced and route.namespace is None:
                scope: str | None = None
            else:
                scope = namespace if rtype.namespaced else None
            if watch:
                self._watch(rtype, route.version, scope, query, labels, fields)
                return
            try:
                limit = int(query.get("limit") or 0)
            except ValueError:
                raise err.bad_request(f"invalid limit: {query['limit']!r}") from None
            self._send_read(
                rtype,
                route.version,
                query,
                store.list_objects(
                    rtype,
                    route.version,
                    scope,
                    labels,
                    fields,
                    limit=limit,
                    continue_token=query.get("continue", ""),
                ),
            )
            return
        if rtype.namespaced and route.namespace is None:
            raise err.method_not_supported(rtype.plural, rtype.group, method)
        if method in ("POST", "PUT"):
            self._check_body_type()
        user_info = {"username": user.name, "uid": user.uid, "groups": list(user.groups)}
        parsed = (
            _parse_json(body)
            if method in ("POST", "PUT") or (method == "DELETE" and body)
            else None
        )
        if method == "POST" and not route.name:
            created = store.create(
                rtype, route.version, namespace, parsed, dry_run=dry_run, user_info=user_info
            )
            self._send_json(201, created)
        elif method == "PUT" and route.name:
            updated, code = store.update(
                rtype,
                route.version,
                namespace,
                route.name,
                parsed,
                subresource=route.subresource,
                dry_run=dry_run,
                user_info=user_info,
            )
            self._send_json(code, updated)
        elif method == "PATCH" and route.name:
            patched = store.patch(
                rtype,
                route.version,
                namespace,
                route.name,
                body,
                self.headers.get("Content-Type") or "",
                subresource=route.subresource,
                dry_run=dry_run,
                user_info=user_info,
            )
            self._send_json(200, patched)
        elif method == "DELETE" and route.name and not route.subresource:
            options = parsed if isinstance(parsed, dict) else {}
            self._send_json(
                200,
                store.delete(rtype, route.version, namespace, route.name, options, dry_run=dry_run),
            )
        elif method == "DELETE" and not route.name:
            labels = parse_label_selector(query.get("labelSelector"))
            fields = parse_field_selector(query.get("fieldSelector"), rtype.field_selectors)
            self._send_json(
                200,
                store.delete_collection(
                    rtype, route.version, namespace, labels, fields, dry_run=dry_run
                ),
            )
        else:
            raise err.method_not_supported(rtype.plural, rtype.group, method)

    def _send_read(
        self, rtype: ResourceType, version: str, query: dict[str, str], answer: dict[str, Any]
    ) -> None:
        """A GET answer as JSON, or as the Table kubectl asks for (see `tables`)."""
        if not wants_table(self.headers.get("Accept") or ""):
            self._send_json(200, answer)
            return
        columns = self.emulator.printer_columns(rtype, version)
        table = table_of(answer, columns, query.get("includeObject", ""), datetime.now(UTC))
        self._send_json(200, table, content_type=TABLE_CONTENT_TYPE)

    def _check_body_type(self) -> None:
        """JSON bodies only; no Content-Type means JSON, as the apiserver's negotiation has it."""
        media = (self.headers.get("Content-Type") or "").split(";", 1)[0].strip().lower()
        if media not in ("", "application/json"):
            raise err.unsupported_media_type(
                media,
                ["application/json", "(YAML, protobuf and CBOR bodies are not emulated)"],
            )

    def _self_subject_review(self, route: _Route, method: str, body: bytes, user: User) -> None:
        if route.version != "v1" or route.name or route.namespace is not None:
            raise err.resource_not_found_route()
        if method != "POST":
            raise err.method_not_supported("selfsubjectreviews", "authentication.k8s.io", method)
        self._check_body_type()
        request = _parse_json(body) if body else {}
        if not isinstance(request, dict):
            raise err.bad_request("the body of the request must be a JSON object")
        info: dict[str, Any] = {"username": user.name, "groups": list(user.groups)}
        if user.uid:
            info["uid"] = user.uid
        self._send_json(
            201,
            {
                "kind": "SelfSubjectReview",
                "apiVersion": "authentication.k8s.io/v1",
                "metadata": {"creationTimestamp": None},
                "status": {"userInfo": info},
            },
        )

    # --- discovery ---------------------------------------------------------------------------

    def _discovery(self, path: str, user: User) -> None:
        parts = [part for part in path.split("/") if part]
        types = self.emulator.store.types
        if parts in (["healthz"], ["readyz"], ["livez"]):
            self._send_text(200, "ok")
        elif parts == ["version"]:
            self._send_json(200, EMULATED_VERSION)
        elif parts == ["api"]:
            address = f"127.0.0.1:{self.emulator.port}"
            self._send_json(
                200,
                {
                    "kind": "APIVersions",
                    "versions": ["v1"],
                    "serverAddressByClientCIDRs": [
                        {"clientCIDR": "0.0.0.0/0", "serverAddress": address}
                    ],
                },
            )
        elif parts == ["api", "v1"]:
            self._send_json(200, _resource_list("", "v1", types))
        elif parts == ["apis"]:
            self._send_json(
                200, {"kind": "APIGroupList", "apiVersion": "v1", "groups": _groups(types)}
            )
        elif len(parts) == 2 and parts[0] == "apis":
            group = next((entry for entry in _groups(types) if entry["name"] == parts[1]), None)
            if group is None:
                raise err.resource_not_found_route()
            self._send_json(200, {"kind": "APIGroup", "apiVersion": "v1", **group})
        elif len(parts) == 3 and parts[0] == "apis":
            listing = _resource_list(parts[1], parts[2], types)
            if not listing["resources"]:
                raise err.resource_not_found_route()
            self._send_json(200, listing)
        else:
            raise err.resource_not_found_route()

    # --- watch ------------------------------------------------------------------------------------

    def _start_stream(self) -> None:
        self._record.status = 200
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Cache-Control", "no-cache, private")
        self.end_headers()
        self._streaming = True
        self.close_connection = True

    def _write_event(self, kind: str, obj: dict[str, Any]) -> None:
        line = json.dumps({"type": kind, "object": obj}).encode() + b"\n"
        self.wfile.write(f"{len(line):x}\r\n".encode() + line + b"\r\n")
        self.wfile.flush()

    def _end_stream(self) -> None:
        with contextlib.suppress(OSError):
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()

    def _client_gone(self) -> bool:
        try:
            readable, _, _ = select.select([self.connection], [], [], 0)
            if not readable:
                return False
            peeked: bytes = self.connection.recv(1, socket.MSG_PEEK)
            return peeked == b""
        except (OSError, ValueError):
            return True

    def _watch(
        self,
        rtype: ResourceType,
        version: str,
        namespace: str | None,
        query: dict[str, str],
        labels: list[Requirement],
        fields: list[FieldRequirement],
    ) -> None:
        emulator, store = self.emulator, self.emulator.store
        try:
            timeout = float(query.get("timeoutSeconds") or emulator.default_watch_timeout)
        except ValueError:
            raise err.bad_request(f"invalid timeoutSeconds: {query['timeoutSeconds']!r}") from None
        deadline = time.monotonic() + timeout
        bookmarks = query.get("allowWatchBookmarks", "").lower() == "true"
        send_initial = query.get("sendInitialEvents", "").lower() == "true"
        requested = query.get("resourceVersion", "")
        if send_initial and not bookmarks:
            raise err.invalid(
                "ListOptions",
                "meta.k8s.io",
                "",
                [
                    err.forbidden(
                        "allowWatchBookmarks", "sendInitialEvents requires allowWatchBookmarks"
                    )
                ],
            )
        if requested not in ("", "0") and not requested.isdigit():
            raise err.bad_request(f"invalid resource version: {requested!r}")
        generation = emulator._watch_generation

        def matches(obj: dict[str, Any]) -> bool:
            return labels_match(labels, obj) and fields_match(fields, obj)

        with store.lock:
            initial: list[dict[str, Any]] = []
            gone: ApiError | None = None
            if requested in ("", "0") or send_initial:
                position = store.resource_version
                initial = [
                    rendered
                    for rendered in (
                        store.render(rtype, version, obj)
                        for obj in store.iter_stored(rtype, namespace)
                    )
                    if matches(rendered)
                ]
            else:
                position = int(requested)
                try:
                    store.events_after(position)
                except ApiError as error:
                    gone = error
        self._start_stream()
        try:
            if gone is not None:
                self._write_event("ERROR", gone.status())
                return
            for obj in initial:
                self._write_event("ADDED", obj)
            if send_initial:
                self._write_event(
                    "BOOKMARK",
                    self._bookmark(rtype, version, position, {"k8s.io/initial-events-end": "true"}),
                )
            next_bookmark = time.monotonic() + emulator.bookmark_interval
            while True:
                now = time.monotonic()
                if (
                    now >= deadline
                    or emulator._stopping.is_set()
                    or generation != emulator._watch_generation
                ):
                    return
                expired: ApiError | None = None
                with store.changed:
                    try:
                        events = store.events_after(position)
                    except ApiError as error:  # this watcher fell behind the history
                        events, expired = [], error
                    if not events and expired is None:
                        position = max(position, store.resource_version)
                        store.changed.wait(min(0.2, max(0.0, deadline - now)))
                if expired is not None:
                    self._write_event("ERROR", expired.status())
                    return
                if not events:
                    if bookmarks and time.monotonic() >= next_bookmark:
                        self._write_event(
                            "BOOKMARK", self._bookmark(rtype, version, position, None)
                        )
                        next_bookmark = time.monotonic() + emulator.bookmark_interval
                    if self._client_gone():
                        raise _WatchEnded()
                    continue
                for event in events:
                    position = event.resource_version
                    translated = self._translate(rtype, version, namespace, event, matches)
                    if translated is not None:
                        self._write_event(*translated)
        finally:
            self._end_stream()

    def _bookmark(
        self, rtype: ResourceType, version: str, position: int, annotations: dict[str, str] | None
    ) -> dict[str, Any]:
        metadata: dict[str, Any] = {"resourceVersion": str(position)}
        if annotations:
            metadata["annotations"] = annotations
        return {"kind": rtype.kind, "apiVersion": rtype.api_version(version), "metadata": metadata}

    def _translate(
        self,
        rtype: ResourceType,
        version: str,
        namespace: str | None,
        event: StoredEvent,
        matches: Any,
    ) -> tuple[str, dict[str, Any]] | None:
        """The event a filtered watch sees: selector transitions become ADDED/DELETED."""
        if event.storage_key != rtype.storage_key:
            return None
        if namespace is not None and event.namespace != namespace:
            return None
        store = self.emulator.store
        now_obj = store.render(rtype, version, event.obj)
        if event.type == "DELETED":
            return ("DELETED", now_obj) if matches(now_obj) else None
        new_match = matches(now_obj)
        old_match = event.previous is not None and matches(
            store.render(rtype, version, event.previous)
        )
        if event.type == "ADDED":
            return ("ADDED", now_obj) if new_match else None
        if new_match and old_match:
            return ("MODIFIED", now_obj)
        if new_match:
            return ("ADDED", now_obj)
        if old_match:
            return ("DELETED", now_obj)
        return None


def _parse_json(body: bytes) -> Any:
    try:
        return json.loads(body or b"null")
    except ValueError as error:
        raise err.bad_request(f"error decoding request body: {error}") from None


def _default_fault_message(status: int) -> str:
    return {
        429: "Too many requests, please try again later.",
        500: "Internal error occurred: injected by the kube emulator",
        503: "the server is currently unable to handle the request",
        409: "Operation cannot be fulfilled: injected conflict; please apply your changes to the latest version and try again",
        410: "too old resource version",
        504: "Timeout: request did not complete within the allowed duration",
    }.get(status, f"injected failure {status}")


def _status_resource(rtype: ResourceType) -> dict[str, Any]:
    return {
        "name": f"{rtype.plural}/status",
        "singularName": "",
        "namespaced": rtype.namespaced,
        "kind": rtype.kind,
        "verbs": ["get", "patch", "update"],
    }


_VIRTUAL_RESOURCES: dict[tuple[str, str], list[dict[str, Any]]] = {
    ("authentication.k8s.io", "v1"): [
        {
            "name": "selfsubjectreviews",
            "singularName": "selfsubjectreview",
            "namespaced": False,
            "kind": "SelfSubjectReview",
            "verbs": ["create"],
        }
    ],
}


def _resource_list(group: str, version: str, types: list[ResourceType]) -> dict[str, Any]:
    resources: list[dict[str, Any]] = []
    for rtype in types:
        if rtype.group != group or version not in rtype.versions:
            continue
        entry: dict[str, Any] = {
            "name": rtype.plural,
            "singularName": rtype.singular,
            "namespaced": rtype.namespaced,
            "kind": rtype.kind,
            "verbs": list(rtype.verbs),
        }
        if rtype.short_names:
            entry["shortNames"] = list(rtype.short_names)
        if rtype.categories:
            entry["categories"] = list(rtype.categories)
        resources.append(entry)
        if rtype.status_subresource:
            resources.append(_status_resource(rtype))
    resources += _VIRTUAL_RESOURCES.get((group, version), [])
    gv = f"{group}/{version}" if group else version
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": gv,
        "resources": resources,
    }


def _groups(types: list[ResourceType]) -> list[dict[str, Any]]:
    versions: dict[str, list[str]] = {}
    for rtype in types:
        if rtype.group:
            known = versions.setdefault(rtype.group, [])
            known += [version for version in rtype.versions if version not in known]
    for group, version in _VIRTUAL_RESOURCES:
        known = versions.setdefault(group, [])
        if version not in known:
            known.append(version)
    groups = []
    for group, served in versions.items():
        entries = [{"groupVersion": f"{group}/{version}", "version": version} for version in served]
        groups.append({"name": group, "versions": entries, "preferredVersion": entries[0]})
    return groups


class KubeEmulator:
    """An emulated kube-apiserver on loopback for the official ``kubernetes`` client.

    ``with KubeEmulator() as kube: CoreV1Api(kube.api_client())...``. See the package
    docstring for what is and is not emulated.
    """

    def __init__(
        self,
        *,
        port: int = 0,
        rollout_delay: float = 0.2,
        job_delay: float = 0.2,
        history_size: int = 1000,
        bookmark_interval: float = 1.0,
        default_watch_timeout: float = 1800.0,
        rbac: bool = False,
    ) -> None:
        self.requested_port = port
        self.store = Store(history_size=history_size)
        add_install_types(self.store.types)
        self.rbac = Authorizer(self.store, enabled=rbac)
        """RBAC and impersonation checks (see `rbac`); off unless asked for."""
        self.controllers = Controllers(self.store, rollout_delay=rollout_delay, job_delay=job_delay)
        self.bookmark_interval = bookmark_interval
        self.default_watch_timeout = default_watch_timeout
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._connections: set[socket.socket] = set()
        self._tokens: dict[str, User] = {}
        self._faults: list[Fault] = []
        self._faults_lock = threading.Lock()
        self._requests: list[RequestRecord] = []
        self._requests_lock = threading.Lock()
        self._watch_generation = 0

    # --- lifecycle -------------------------------------------------------------------------

    def start(self) -> Self:
        """Listen on 127.0.0.1 (a free port unless one was given) and start the controllers."""
        if self._server is not None:
            return self
        self._stopping.clear()
        self._server = _Server(self)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.01},
            name="kube-emulator-http",
            daemon=True,
        )
        self._thread.start()
        self.controllers.start()
        return self

    def stop(self) -> None:
        """Stop serving, end open watches and connections, and stop the controllers."""
        server = self._server
        if server is None:
            return
        self._stopping.set()
        with self.store.lock:
            self.store.changed.notify_all()
        server.shutdown()
        for connection in list(self._connections):
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.controllers.stop()
        self._server = None
        self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the emulator is not running")
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # --- clients and users -----------------------------------------------------------------

    def add_token(
        self, token: str, user: str, groups: tuple[str, ...] | list[str] = (), uid: str = ""
    ) -> None:
        """Accept ``Authorization: Bearer <token>`` as `user` (plus system:authenticated)."""
        self._tokens[token] = User(user, (*groups, "system:authenticated"), uid)

    def client_configuration(self, token: str | None = None) -> kubernetes.client.Configuration:
        """A client Configuration for this emulator; with `token`, requests carry it as a bearer token."""
        configuration = kubernetes.client.Configuration()
        configuration.host = self.url
        if token is not None:
            configuration.api_key = {"authorization": f"Bearer {token}"}
        return configuration

    def api_client(
        self, token: str | None = None, *, user: str | None = None
    ) -> kubernetes.client.ApiClient:
        """An ApiClient; `user` sets the ``X-Emulator-User`` header instead of a token."""
        client = kubernetes.client.ApiClient(self.client_configuration(token))
        if user is not None:
            client.default_headers[USER_HEADER] = user
        return client

    # --- CRDs and objects ---------------------------------------------------------------------

    def register_crd(self, crd: dict[str, Any]) -> dict[str, Any]:
        """Create (or update) a CustomResourceDefinition; its resources are served at once."""
        return self.store.create_crd(crd)

    def register_admission_policy(
        self, policy: dict[str, Any], binding: dict[str, Any] | None = None
    ) -> None:
        """Create (or replace) a ValidatingAdmissionPolicy and its binding; see `admission`.

        Without a binding the policy is stored but enforces nothing, as on a real cluster.
        """
        for obj in (policy, binding):
            if obj is None:
                continue
            rtype, version = self._type_of(obj)
            body = copy.deepcopy(obj)
            name = str((body.get("metadata") or {}).get("name", ""))
            with self.store.lock:
                current = self.store.stored(rtype, "", name)
                if current is None:
                    self.store.create(rtype, version, "", body)
                    continue
                body["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
                self.store.update(rtype, version, "", name, body)

    def printer_columns(self, rtype: ResourceType, version: str) -> list[dict[str, Any]] | None:
        """A custom resource's printer columns in `version` (None for a built-in kind)."""
        if not rtype.crd_name:
            return None
        crds = self.store.resolve_type("customresourcedefinitions", "apiextensions.k8s.io")
        crd = self.store.stored(crds, "", rtype.crd_name) or {}
        entry: dict[str, Any] = next(
            (v for v in crd.get("spec", {}).get("versions", []) if v.get("name") == version), {}
        )
        return list(entry.get("additionalPrinterColumns") or [])

    def create(self, obj: dict[str, Any]) -> dict[str, Any]:
        """Create `obj` (with apiVersion, kind, metadata.name[, namespace]) bypassing HTTP."""
        rtype, version = self._type_of(obj)
        namespace = (
            (obj.get("metadata") or {}).get("namespace", "default") if rtype.namespaced else ""
        )
        return self.store.create(rtype, version, namespace, obj)

    def _type_of(self, obj: dict[str, Any]) -> tuple[ResourceType, str]:
        group, _, version = str(obj.get("apiVersion", "")).rpartition("/")
        for rtype in self.store.types:
            if rtype.group == group and rtype.kind == obj.get("kind") and version in rtype.versions:
                return rtype, version
        raise KeyError(f"no resource for {obj.get('apiVersion')} {obj.get('kind')}")

    def objects(
        self, resource: str, namespace: str | None = None, *, group: str | None = None
    ) -> list[dict[str, Any]]:
        """Stored objects of a resource (plural, singular, kind or short name), served form."""
        rtype = self.store.resolve_type(resource, group)
        with self.store.lock:
            return [
                self.store.render(rtype, rtype.versions[0], obj)
                for obj in self.store.iter_stored(rtype, namespace if rtype.namespaced else None)
            ]

    def get_object(
        self, resource: str, namespace: str | None, name: str, *, group: str | None = None
    ) -> dict[str, Any] | None:
        """One stored object in served form, or None."""
        rtype = self.store.resolve_type(resource, group)
        with self.store.lock:
            stored = self.store.stored(rtype, namespace or "", name)
            return None if stored is None else self.store.render(rtype, rtype.versions[0], stored)

    @property
    def resource_version(self) -> int:
        """The current value of the global resourceVersion counter."""
        return self.store.resource_version

    def compact(self) -> int:
        """Forget the watch history (as etcd compaction does); returns the current resourceVersion."""
        return self.store.compact()

    def close_watches(self) -> None:
        """End every open watch stream cleanly, as an apiserver restart would."""
        with self.store.lock:
            self._watch_generation += 1
            self.store.changed.notify_all()

    # --- controllers --------------------------------------------------------------------------

    @property
    def rollout_delay(self) -> float:
        return self.controllers.rollout_delay

    @rollout_delay.setter
    def rollout_delay(self, seconds: float) -> None:
        self.controllers.rollout_delay = seconds

    @property
    def job_delay(self) -> float:
        return self.controllers.job_delay

    @job_delay.setter
    def job_delay(self, seconds: float) -> None:
        self.controllers.job_delay = seconds

    def stall_deployment(self, namespace: str, name: str) -> None:
        """Make the deployment's rollouts never finish (until `unstall_deployment`)."""
        self.controllers.stall(namespace, name)

    def unstall_deployment(self, namespace: str, name: str) -> None:
        self.controllers.unstall(namespace, name)

    def fail_jobs(self, name_regex: str) -> None:
        """Jobs whose name matches (re.search) fail instead of succeeding."""
        self.controllers.fail_jobs(name_regex)

    def hold_jobs(self, name_regex: str) -> None:
        """Jobs whose name matches stay active until `release_jobs`."""
        self.controllers.hold_jobs(name_regex)

    def release_jobs(self) -> None:
        self.controllers.release_jobs()

    def clear_job_rules(self) -> None:
        self.controllers.clear_job_rules()

    # --- faults --------------------------------------------------------------------------------

    def inject(
        self,
        method: str | None = None,
        path_regex: str | None = None,
        status: int | None = None,
        times: int | None = 1,
        delay: float = 0.0,
        *,
        hold: bool = False,
        retry_after: int | None = None,
        message: str = "",
    ) -> Fault:
        """Fail (`status`) and/or slow down (`delay` seconds, or with `hold` until
        `Fault.release`) the next `times` matching requests.

        `method` matches the HTTP method, `path_regex` is searched in the URL path
        (without the query string); faults are tried in the order they were added.
        `times=None` keeps the fault until `clear_faults`. A 410 on a watch arrives as
        an ERROR event, as the real server sends it. `retry_after` adds a Retry-After
        header (and details.retryAfterSeconds); a 429 gets ``Retry-After: 1`` unless
        told otherwise, like the real server's priority-and-fairness rejections. Mind
        that urllib3's default Retry, which the client uses unless
        ``Configuration.retries`` says otherwise, transparently retries GET, PUT and
        DELETE answered 413/429/503 with a Retry-After header (up to 3 times): such a
        fault reaches the caller only when it outlasts those retries.
        """
        if status is None and not delay and not hold:
            raise ValueError("a fault needs a status, a delay, a hold or some of them")
        fault = Fault(
            method.upper() if method else None,
            re.compile(path_regex) if path_regex else None,
            status,
            times,
            delay,
            retry_after if retry_after is not None else (1 if status == 429 else None),
            message,
            hold,
        )
        with self._faults_lock:
            self._faults.append(fault)
        return fault

    def clear_faults(self) -> None:
        with self._faults_lock:
            self._faults.clear()

    def _take_fault(self, method: str, path: str) -> Fault | None:
        with self._faults_lock:
            for fault in self._faults:
                if fault.matches(method, path):
                    fault.hits += 1
                    if fault.times is not None:
                        fault.times -= 1
                    return fault
        return None

    # --- request log -----------------------------------------------------------------------------

    def _log(self, record: RequestRecord) -> None:
        with self._requests_lock:
            self._requests.append(record)

    def requests(
        self,
        *,
        method: str | None = None,
        path_regex: str | None = None,
        user: str | None = None,
        verb: str | None = None,
        resource: str | None = None,
    ) -> list[RequestRecord]:
        """Requests received so far, oldest first, optionally filtered."""
        with self._requests_lock:
            records = list(self._requests)
        pattern = re.compile(path_regex) if path_regex else None
        return [
            record
            for record in records
            if (method is None or record.method == method.upper())
            and (pattern is None or pattern.search(record.path))
            and (user is None or record.user == user)
            and (verb is None or record.verb == verb)
            and (resource is None or record.resource == resource)
        ]

    def clear_requests(self) -> None:
        with self._requests_lock:
            self._requests.clear()

    def rbac_rules_used(self, user: str | None = None) -> set[tuple[str, str, str]]:
        """{(apiGroup, resource[/subresource], verb)} of the API requests (of `user`) so far."""
        return {record.rbac_rule for record in self.requests(user=user) if record.verb}

    def __repr__(self) -> str:
        where = self.url if self._server is not None else "stopped"
        return f"KubeEmulator({where}, resourceVersion={self.store.resource_version})"
