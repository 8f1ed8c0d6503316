"""API errors as the real kube-apiserver reports them: `Status` objects.

Every refusal of the emulator is an `ApiError`, rendered as a ``kind: Status``
body with ``status: Failure`` and the ``reason``/``code`` pair the real server
uses for the same condition, and message texts copied from the apiserver's
wording (``configmaps "x" not found``, ``Operation cannot be fulfilled on ...``),
so code that parses them sees what it would see in a cluster.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

OPTIMISTIC_LOCK_MESSAGE = (
    "the object has been modified; please apply your changes to the latest version and try again"
)

_REASON_BY_CODE = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    406: "NotAcceptable",
    409: "Conflict",
    410: "Expired",
    415: "UnsupportedMediaType",
    422: "Invalid",
    429: "TooManyRequests",
    500: "InternalError",
    503: "ServiceUnavailable",
    504: "Timeout",
}


@dataclass(frozen=True)
class FieldError:
    """One cause of a 422 Invalid: the field path, the cause type and its message."""

    field: str
    message: str
    reason: str = "FieldValueInvalid"

    def cause(self) -> dict[str, str]:
        return {"reason": self.reason, "message": self.message, "field": self.field}


def invalid_value(path: str, value: Any, detail: str) -> FieldError:
    """``<path>: Invalid value: <value>: <detail>`` as apimachinery's field.Invalid prints it."""
    return FieldError(path, f"Invalid value: {_go_repr(value)}: {detail}")


def required_value(path: str, detail: str = "") -> FieldError:
    suffix = f": {detail}" if detail else ""
    return FieldError(path, f"Required value{suffix}", "FieldValueRequired")


def forbidden(path: str, detail: str) -> FieldError:
    return FieldError(path, f"Forbidden: {detail}", "FieldValueForbidden")


def unsupported_value(path: str, value: Any, supported: list[Any]) -> FieldError:
    listed = ", ".join(_go_repr(item) for item in supported)
    return FieldError(
        path,
        f"Unsupported value: {_go_repr(value)}: supported values: {listed}",
        "FieldValueNotSupported",
    )


def _go_repr(value: Any) -> str:
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, int | float):
        return str(value)
    return f'"{type(value).__name__}"'


@dataclass(eq=False)
class ApiError(Exception):
    """A request the emulated apiserver refuses, carried to the HTTP layer as a Status body."""

    code: int
    message: str
    reason: str | None = None
    details: dict[str, Any] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        super().__init__(self.message)
        if self.reason is None:
            # "" is the apiserver's StatusReasonUnknown: the body then has no reason at all
            self.reason = _REASON_BY_CODE.get(self.code, "")

    def status(self) -> dict[str, Any]:
        """The ``kind: Status`` body for this error."""
        body: dict[str, Any] = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if self.details:
            body["details"] = self.details
        if not self.reason:
            del body["reason"]
        return body


def qualified(resource: str, group: str) -> str:
    """``configmaps`` or ``leases.coordination.k8s.io``: how errors name a resource."""
    return f"{resource}.{group}" if group else resource


def _details(resource: str, group: str, name: str) -> dict[str, Any]:
    details: dict[str, Any] = {"name": name, "kind": resource}
    if group:
        details["group"] = group
    return details


def not_found(resource: str, group: str, name: str) -> ApiError:
    return ApiError(
        404,
        f'{qualified(resource, group)} "{name}" not found',
        details=_details(resource, group, name),
    )


def already_exists(resource: str, group: str, name: str) -> ApiError:
    return ApiError(
        409,
        f'{qualified(resource, group)} "{name}" already exists',
        "AlreadyExists",
        details=_details(resource, group, name),
    )


def conflict(resource: str, group: str, name: str, why: str = OPTIMISTIC_LOCK_MESSAGE) -> ApiError:
    return ApiError(
        409,
        f'Operation cannot be fulfilled on {qualified(resource, group)} "{name}": {why}',
        "Conflict",
        details=_details(resource, group, name),
    )


def invalid(kind: str, group: str, name: str, errors: list[FieldError]) -> ApiError:
    """422 Invalid with one cause per field error, worded like ``errors.NewInvalid``."""
    messages = [
        f"{error.field}: {error.message}" if error.field else error.message for error in errors
    ]
    aggregate = messages[0] if len(messages) == 1 else "[" + ", ".join(messages) + "]"
    details: dict[str, Any] = {
        "name": name,
        "kind": kind,
        "causes": [error.cause() for error in errors],
    }
    if group:
        details["group"] = group
    return ApiError(
        422,
        f'{qualified(kind, group)} "{name}" is invalid: {aggregate}',
        "Invalid",
        details=details,
    )


def bad_request(message: str) -> ApiError:
    return ApiError(400, message, "BadRequest")


def unsupported_media_type(content_type: str, accepted: list[str]) -> ApiError:
    return ApiError(
        415,
        f"the body of the request was in an unknown format - accepted media types include: "
        f"{', '.join(accepted)}",
        "UnsupportedMediaType",
        details={"causes": [{"message": f"unsupported media type {content_type!r}"}]},
    )


def resource_not_found_route() -> ApiError:
    """What the apiserver answers for a path that names no API at all."""
    return ApiError(404, "the server could not find the requested resource", "NotFound", details={})


def method_not_supported(resource: str, group: str, method: str) -> ApiError:
    return ApiError(
        405,
        f"{method} is not supported on resources of kind {qualified(resource, group)!r}",
        "MethodNotAllowed",
        details=_details(resource, group, ""),
    )


def gone(message: str) -> ApiError:
    return ApiError(410, message, "Expired")
