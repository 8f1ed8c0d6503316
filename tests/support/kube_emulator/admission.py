"""ValidatingAdmissionPolicy for the emulator: the policies' own CEL, evaluated with cel-python.

Served resources
    admissionregistration.k8s.io/v1 validatingadmissionpolicies (+/status) and
    validatingadmissionpolicybindings, cluster-scoped, ordinary CRUD. A policy whose
    ``expression``, ``messageExpression``, ``matchConditions`` or ``variables`` do
    not compile is refused on write (422 Invalid), as the real server refuses them.

Admission (`review`, called by the store on CREATE and UPDATE, PATCH included, of
any resource when the write came over HTTP with a user)
    Every binding whose ``policyName`` names a stored policy, and whose
    ``validationActions`` contain ``Deny``, applies when the policy's
    ``matchConstraints`` and the binding's ``matchResources`` both match the request:
    ``resourceRules`` (apiGroups, apiVersions, operations, resources with ``*``,
    ``res/sub``, ``*/sub``, ``res/*``; resourceNames; scope), ``excludeResourceRules``,
    ``objectSelector`` and ``namespaceSelector`` (matchLabels, matchExpressions with
    In, NotIn, Exists, DoesNotExist), then ``matchConditions``. Each validation's
    ``expression`` is evaluated with the variables ``object``, ``oldObject`` (null
    on CREATE), ``request`` (operation, userInfo.username/uid/groups, name,
    namespace, kind, resource, subResource, requestKind, requestResource, dryRun),
    ``namespaceObject`` and ``variables`` (the policy's ``variables``, in order).
    A false result is a denial: the Status the real server answers, e.g. 422 Invalid
    ``stageapprovals.stage.rollout.dev "x" is forbidden: ValidatingAdmissionPolicy
    'P' with binding 'B' denied request: MESSAGE``, MESSAGE being the
    ``messageExpression`` result, else ``message``, else ``failed expression: EXPR``;
    the validation's ``reason`` picks the code (Invalid 422, Forbidden 403,
    Unauthorized 401, RequestEntityTooLarge 413). An evaluation error, or a result
    that is not a bool, denies with the error under ``failurePolicy: Fail`` (the
    default) and is skipped under ``Ignore``.

Not emulated
    ``paramKind``/``paramRef`` (a policy with params is evaluated with ``params``
    null), the ``authorizer`` variable, Kubernetes' CEL extension libraries beyond
    what cel-python's standard functions cover, ``Warn`` and ``Audit`` actions and
    ``auditAnnotations`` (ignored), type checking of expressions against schemas,
    cost limits, DELETE and CONNECT admission, and writes that bypass HTTP
    (`KubeEmulator.create` is not admitted).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import celpy
from celpy import celtypes
from celpy.adapter import json_to_cel
from celpy.evaluation import CELEvalError

from .errors import ApiError, FieldError, invalid_value, qualified, required_value
from .resources import KindHooks, ResourceType

if TYPE_CHECKING:
    from .store import Store

GROUP = "admissionregistration.k8s.io"
POLICIES = "validatingadmissionpolicies"
BINDINGS = "validatingadmissionpolicybindings"
_REASON_CODES = {
    "Invalid": 422,
    "Forbidden": 403,
    "Unauthorized": 401,
    "RequestEntityTooLarge": 413,
}

_ENV = celpy.Environment()
_PROGRAMS: dict[str, Any] = {}


class CelError(Exception):
    """An expression that did not compile or did not evaluate."""


def _program(expression: str) -> Any:
    program = _PROGRAMS.get(expression)
    if program is None:
        try:
            program = _ENV.program(_ENV.compile(expression))
        except Exception as error:  # celpy raises its parser's and lark's errors
            raise CelError(f"compilation failed: {str(error).strip()}") from None
        _PROGRAMS[expression] = program
    return program


def evaluate(expression: str, activation: Mapping[str, Any]) -> Any:
    """The CEL value of `expression`; CelError when it does not compile or evaluate."""
    program = _program(expression)
    try:
        result = program.evaluate(dict(activation))
    except CelError:
        raise
    except Exception as error:  # CELEvalError, and Python errors from inside celpy
        raise CelError(f"expression '{expression}' resulted in error: {error}") from None
    if isinstance(result, CELEvalError):
        raise CelError(f"expression '{expression}' resulted in error: {result}")
    return result


# --- the served resources ----------------------------------------------------------


class _PolicyHooks(KindHooks):
    """Refuse policies whose CEL does not compile, as the real server's validation does."""

    def admit(
        self, obj: dict[str, Any], old: dict[str, Any] | None, version: str
    ) -> tuple[dict[str, Any], list[FieldError]]:
        spec = obj.get("spec")
        if not isinstance(spec, dict):
            return obj, [required_value("spec")]
        errors: list[FieldError] = []
        spec.setdefault("failurePolicy", "Fail")
        for section, keys in (
            ("validations", ("expression", "messageExpression")),
            ("matchConditions", ("expression",)),
            ("variables", ("expression",)),
        ):
            for index, item in enumerate(spec.get(section) or []):
                for key in keys:
                    text = item.get(key) if isinstance(item, dict) else None
                    if text is None:
                        if key == "expression":
                            errors.append(required_value(f"spec.{section}[{index}].{key}"))
                        continue
                    try:
                        _program(str(text))
                    except CelError as error:
                        errors.append(
                            invalid_value(f"spec.{section}[{index}].{key}", text, str(error))
                        )
        return obj, errors


class _BindingHooks(KindHooks):
    def admit(
        self, obj: dict[str, Any], old: dict[str, Any] | None, version: str
    ) -> tuple[dict[str, Any], list[FieldError]]:
        spec = obj.get("spec")
        if not isinstance(spec, dict) or not spec.get("policyName"):
            return obj, [required_value("spec.policyName")]
        if not spec.get("validationActions"):
            return obj, [required_value("spec.validationActions")]
        return obj, []


def resource_types() -> list[ResourceType]:
    """The admissionregistration.k8s.io/v1 resources the store serves."""
    return [
        ResourceType(
            GROUP,
            ("v1",),
            POLICIES,
            "validatingadmissionpolicy",
            "ValidatingAdmissionPolicy",
            False,
            status_subresource=True,
            generation="spec",
            unconditional_update=False,
            hooks=_PolicyHooks(),
        ),
        ResourceType(
            GROUP,
            ("v1",),
            BINDINGS,
            "validatingadmissionpolicybinding",
            "ValidatingAdmissionPolicyBinding",
            False,
            generation="spec",
            unconditional_update=False,
            hooks=_BindingHooks(),
        ),
    ]


# --- admission ---------------------------------------------------------------------


@dataclass(frozen=True)
class Request:
    """One write as admission sees it."""

    rtype: ResourceType
    version: str
    operation: str  # CREATE or UPDATE
    namespace: str
    name: str
    subresource: str
    obj: dict[str, Any]  # served form
    old: dict[str, Any] | None
    user_info: Mapping[str, Any]
    dry_run: bool


def review(store: Store, request: Request) -> None:
    """Raise the Status a Deny binding answers when a matching policy's validation fails."""
    policies = _by_name(store, POLICIES)
    if not policies:
        return
    namespace_obj = None
    if request.rtype.namespaced and request.namespace:
        namespace_type = store.resolve_type("namespaces", "")
        namespace_obj = store.stored(namespace_type, "", request.namespace)
    for binding_name, binding in sorted(_by_name(store, BINDINGS).items()):
        spec = binding.get("spec") or {}
        policy = policies.get(str(spec.get("policyName", "")))
        if policy is None or "Deny" not in (spec.get("validationActions") or []):
            continue
        policy_spec = policy.get("spec") or {}
        if not _matches(policy_spec.get("matchConstraints") or {}, request, namespace_obj, True):
            continue
        if not _matches(spec.get("matchResources") or {}, request, namespace_obj, False):
            continue
        denial = _validate(policy_spec, request, namespace_obj)
        if denial is not None:
            message, reason = denial
            raise _denied(request, policy["metadata"]["name"], binding_name, message, reason)


def _by_name(store: Store, plural: str) -> dict[str, dict[str, Any]]:
    rtype = store.find_type(GROUP, "v1", plural)
    if rtype is None:
        return {}
    return {obj["metadata"]["name"]: obj for obj in store.iter_stored(rtype, None)}


def _denied(request: Request, policy: str, binding: str, message: str, reason: str) -> ApiError:
    text = (
        f"ValidatingAdmissionPolicy '{policy}' with binding '{binding}' denied request: {message}"
    )
    rtype = request.rtype
    details: dict[str, Any] = {"name": request.name, "kind": rtype.plural, "causes": []}
    if rtype.group:
        details["group"] = rtype.group
    details["causes"].append({"message": text})
    reason = reason or "Invalid"
    return ApiError(
        _REASON_CODES.get(reason, 500),
        f'{qualified(rtype.plural, rtype.group)} "{request.name}" is forbidden: {text}',
        reason,
        details=details,
    )


def _activation(
    request: Request, namespace_obj: dict[str, Any] | None, policy_spec: Mapping[str, Any]
) -> dict[str, Any]:
    rtype = request.rtype
    kind = {"group": rtype.group, "version": request.version, "kind": rtype.kind}
    resource = {"group": rtype.group, "version": request.version, "resource": rtype.plural}
    user = dict(request.user_info)
    user.setdefault("uid", "")
    user["groups"] = list(user.get("groups") or [])
    body = {
        "uid": "",
        "kind": kind,
        "resource": resource,
        "subResource": request.subresource,
        "requestKind": kind,
        "requestResource": resource,
        "requestSubResource": request.subresource,
        "name": request.name,
        "namespace": request.namespace,
        "operation": request.operation,
        "userInfo": user,
        "dryRun": request.dry_run,
    }
    activation: dict[str, Any] = {
        "object": json_to_cel(copy.deepcopy(request.obj)),
        "oldObject": json_to_cel(copy.deepcopy(request.old)),
        "request": json_to_cel(body),
        "namespaceObject": json_to_cel(copy.deepcopy(namespace_obj)),
        "params": None,
    }
    variables: dict[str, Any] = {}
    activation["variables"] = celtypes.MapType({})
    for variable in policy_spec.get("variables") or []:
        value = evaluate(str(variable.get("expression", "")), activation)
        variables[str(variable.get("name", ""))] = value
        activation["variables"] = celtypes.MapType(
            {celtypes.StringType(k): v for k, v in variables.items()}
        )
    return activation


def _validate(
    policy_spec: Mapping[str, Any], request: Request, namespace_obj: dict[str, Any] | None
) -> tuple[str, str] | None:
    """(message, reason) of the first failed validation, or None when the request passes."""
    fail = policy_spec.get("failurePolicy", "Fail") != "Ignore"
    try:
        activation = _activation(request, namespace_obj, policy_spec)
        for condition in policy_spec.get("matchConditions") or []:
            if not _as_bool(evaluate(str(condition.get("expression", "")), activation)):
                return None
    except CelError as error:
        return (str(error), "Invalid") if fail else None
    for validation in policy_spec.get("validations") or []:
        expression = str(validation.get("expression", ""))
        try:
            if _as_bool(evaluate(expression, activation)):
                continue
        except CelError as error:
            if fail:
                return str(error), "Invalid"
            continue
        message = str(validation.get("message") or f"failed expression: {expression.strip()}")
        if validation.get("messageExpression"):
            try:
                value = evaluate(str(validation["messageExpression"]), activation)
                if isinstance(value, str) and value.strip():
                    message = str(value)
            except CelError:
                pass
        return message, str(validation.get("reason") or "Invalid")
    return None


def _as_bool(value: Any) -> bool:
    if isinstance(value, celtypes.BoolType):
        return bool(value)
    raise CelError(f"validation expression must evaluate to bool, got {type(value).__name__}")


# --- matching ------------------------------------------------------------------------


def _matches(
    match: Mapping[str, Any],
    request: Request,
    namespace_obj: dict[str, Any] | None,
    rules_required: bool,
) -> bool:
    rules = match.get("resourceRules")
    if rules is None and rules_required:
        return False
    if rules is not None and not any(_rule_matches(rule, request) for rule in rules):
        return False
    if any(_rule_matches(rule, request) for rule in match.get("excludeResourceRules") or []):
        return False
    labels = [((request.obj.get("metadata") or {}).get("labels") or {})]
    if request.old is not None:
        labels.append((request.old.get("metadata") or {}).get("labels") or {})
    object_selector = match.get("objectSelector")
    if object_selector and not any(_selector_matches(object_selector, each) for each in labels):
        return False
    namespace_selector = match.get("namespaceSelector")
    if namespace_selector and request.rtype.namespaced:
        namespace_labels = ((namespace_obj or {}).get("metadata") or {}).get("labels") or {}
        if not _selector_matches(namespace_selector, namespace_labels):
            return False
    return True


def _rule_matches(rule: Mapping[str, Any], request: Request) -> bool:
    rtype = request.rtype
    operations = rule.get("operations") or []
    if "*" not in operations and request.operation not in operations:
        return False
    groups = rule.get("apiGroups") or []
    if "*" not in groups and rtype.group not in groups:
        return False
    versions = rule.get("apiVersions") or []
    if "*" not in versions and not set(versions) & set(rtype.versions):
        return False
    scope = rule.get("scope") or "*"
    if (scope == "Cluster" and rtype.namespaced) or (
        scope == "Namespaced" and not rtype.namespaced
    ):
        return False
    names = rule.get("resourceNames") or []
    if names and request.name not in names:
        return False
    return any(
        _resource_matches(str(entry), rtype.plural, request.subresource)
        for entry in rule.get("resources") or []
    )


def _resource_matches(entry: str, plural: str, subresource: str) -> bool:
    resource, _, sub = entry.partition("/")
    if resource not in ("*", plural):
        return False
    if not sub:
        return not subresource
    return sub == "*" or sub == subresource


def _selector_matches(selector: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expression in selector.get("matchExpressions") or []:
        key, operator = expression.get("key"), expression.get("operator")
        values = expression.get("values") or []
        if operator == "In" and labels.get(key) not in values:
            return False
        if operator == "NotIn" and key in labels and labels[key] in values:
            return False
        if operator == "Exists" and key not in labels:
            return False
        if operator == "DoesNotExist" and key in labels:
            return False
    return True
