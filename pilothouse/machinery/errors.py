"""API errors as `metav1.Status` objects.

Every failure a client can see is an `APIError`: it carries the HTTP code, the Status
`reason` (NotFound, AlreadyExists, Conflict, Invalid, ...), a human message, and for
validation failures the per-field causes. The API server turns it into the JSON body
kubectl and client-go decode (`Error from server (NotFound): pods "x" not found`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# Cause reasons as field.ErrorType renders them in k8s.io/apimachinery.
REQUIRED = "FieldValueRequired"
INVALID = "FieldValueInvalid"
NOT_SUPPORTED = "FieldValueNotSupported"
DUPLICATE = "FieldValueDuplicate"
FORBIDDEN = "FieldValueForbidden"
TOO_LONG = "FieldValueTooLong"
TOO_MANY = "FieldValueTooMany"
TYPE_INVALID = "FieldValueTypeInvalid"
UNKNOWN_FIELD = "FieldValueUnknown"

_CAUSE_PREFIX = {
    REQUIRED: "Required value",
    INVALID: "Invalid value",
    NOT_SUPPORTED: "Unsupported value",
    DUPLICATE: "Duplicate value",
    FORBIDDEN: "Forbidden",
    TOO_LONG: "Too long",
    TOO_MANY: "Too many",
    TYPE_INVALID: "Invalid value",
    UNKNOWN_FIELD: "Unknown field",
}


@dataclass(frozen=True)
class Cause:
    """One field-level problem: `field` is a path such as `spec.containers[0].name`."""

    field: str
    message: str
    reason: str = INVALID

    def render(self) -> str:
        """The one-line form Kubernetes prints: `spec.x: Invalid value: ...: detail`."""
        return f"{self.field}: {self.message}" if self.field else self.message

    def to_dict(self) -> dict[str, str]:
        # As apimachinery's NewInvalid: the message is the error body, without the field.
        return {"reason": self.reason, "message": self.message, "field": self.field}


def required(field: str, detail: str = "") -> Cause:
    return Cause(field, "Required value" + (f": {detail}" if detail else ""), REQUIRED)


def invalid_value(field: str, value: Any, detail: str) -> Cause:
    shown = f'"{value}"' if isinstance(value, str) else _short(value)
    return Cause(field, f"Invalid value: {shown}: {detail}", INVALID)


def not_supported(field: str, value: Any, supported: list[str] | tuple[str, ...]) -> Cause:
    options = ", ".join(f'"{s}"' for s in supported)
    shown = f'"{value}"' if isinstance(value, str) else _short(value)
    return Cause(field, f"Unsupported value: {shown}: supported values: {options}", NOT_SUPPORTED)


def duplicate(field: str, value: Any) -> Cause:
    shown = f'"{value}"' if isinstance(value, str) else _short(value)
    return Cause(field, f"Duplicate value: {shown}", DUPLICATE)


def forbidden(field: str, detail: str) -> Cause:
    return Cause(field, f"Forbidden: {detail}", FORBIDDEN)


def _short(value: Any) -> str:
    text = repr(value) if not isinstance(value, (int, float, bool)) else str(value).lower()
    return text if len(text) < 80 else text[:77] + "..."


class APIError(Exception):
    """A failure the API reports to its client as a `metav1.Status`."""

    def __init__(
        self,
        code: int,
        reason: str,
        message: str,
        *,
        name: str | None = None,
        group: str | None = None,
        kind: str | None = None,
        causes: list[Cause] | None = None,
        retry_after: int | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.name = name
        self.group = group
        self.kind = kind
        self.causes = causes or []
        self.retry_after = retry_after

    def status(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        details: dict[str, Any] = {}
        if self.name is not None:
            details["name"] = self.name
        if self.group:
            details["group"] = self.group
        if self.kind is not None:
            details["kind"] = self.kind
        if self.causes:
            details["causes"] = [c.to_dict() for c in self.causes]
        if self.retry_after is not None:
            details["retryAfterSeconds"] = self.retry_after
        if details:
            body["details"] = details
        if not self.reason:
            del body["reason"]
        return body


def _qualified(resource: str, group: str) -> str:
    return f"{resource}.{group}" if group else resource


def bad_request(message: str) -> APIError:
    return APIError(400, "BadRequest", message)


def unauthorized(message: str = "Unauthorized") -> APIError:
    return APIError(401, "Unauthorized", message)


def forbidden_error(
    user: str, verb: str, resource: str, group: str, name: str | None, scope: str,
    subresource: str = "",
) -> APIError:
    what = _qualified(resource, group)
    named = f' "{name}"' if name else ""
    asked = f"{resource}/{subresource}" if subresource else resource
    return APIError(
        403,
        "Forbidden",
        f'{what}{named} is forbidden: User "{user}" cannot {verb} resource "{asked}" '
        f'in API group "{group}" {scope}',
        name=name or "",
        group=group,
        kind=resource,
    )


def not_found(resource: str, name: str, group: str = "") -> APIError:
    return APIError(
        404,
        "NotFound",
        f'{_qualified(resource, group)} "{name}" not found',
        name=name,
        group=group,
        kind=resource,
    )


def path_not_found(path: str) -> APIError:
    return APIError(404, "NotFound", f"the server could not find the requested resource ({path})")


def already_exists(resource: str, name: str, group: str = "") -> APIError:
    return APIError(
        409,
        "AlreadyExists",
        f'{_qualified(resource, group)} "{name}" already exists',
        name=name,
        group=group,
        kind=resource,
    )


def conflict(resource: str, name: str, group: str, detail: str) -> APIError:
    return APIError(
        409,
        "Conflict",
        f'Operation cannot be fulfilled on {_qualified(resource, group)} "{name}": {detail}',
        name=name,
        group=group,
        kind=resource,
    )


def stale_conflict(resource: str, name: str, group: str = "") -> APIError:
    return conflict(
        resource,
        name,
        group,
        "the object has been modified; please apply your changes to the latest version "
        "and try again",
    )


def gone(message: str) -> APIError:
    return APIError(410, "Expired", message)


def invalid(kind: str, name: str, causes: list[Cause], group: str = "") -> APIError:
    rendered = causes[0].render() if len(causes) == 1 else (
        "[" + ", ".join(c.render() for c in causes) + "]"
    )
    return APIError(
        422,
        "Invalid",
        f'{kind}{"." + group if group else ""} "{name}" is invalid: {rendered}',
        name=name,
        group=group,
        kind=kind,
        causes=causes,
    )


def method_not_allowed(message: str = "the server does not allow this method on the requested resource") -> APIError:
    return APIError(405, "MethodNotAllowed", message)


def unsupported_media_type(content_type: str) -> APIError:
    return APIError(415, "UnsupportedMediaType", f"the body of the request was in an unknown format - accepted media types include: application/json, application/yaml ({content_type})")


def not_acceptable(accept: str) -> APIError:
    return APIError(406, "NotAcceptable", f"only the following media types are accepted: application/json, application/yaml, application/json;as=Table;v=v1;g=meta.k8s.io ({accept})")


def too_large(limit: int) -> APIError:
    return APIError(413, "RequestEntityTooLarge", f"Request entity too large: limit is {limit}")


def internal(message: str) -> APIError:
    return APIError(500, "InternalError", f"Internal error occurred: {message}")


def too_many_requests(message: str, retry_after: int = 1) -> APIError:
    return APIError(429, "TooManyRequests", message, retry_after=retry_after)
