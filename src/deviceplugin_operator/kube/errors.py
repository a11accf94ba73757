"""The one exception tree of the Kubernetes boundary.

Callers decide between "retry", "give up" and "the object is simply gone" by exception type, so
the client library's exceptions never escape ``kube/``: they are wrapped here with
``raise ... from`` and the HTTP status the API server answered with picks the class::

    KubeError                  anything that went wrong talking to the API server
    ├── ConfigError            no usable kubeconfig or in-cluster service account
    ├── TransportError         no HTTP answer: connection refused or reset, TLS, timeout
    └── ApiError               the API server answered with a failure Status
        ├── Unauthorized       401
        ├── Forbidden          403: RBAC denied the request
        ├── NotFound           404
        ├── Conflict           409 Conflict: stale resourceVersion or failed precondition
        ├── AlreadyExists      409 AlreadyExists: create of an existing name
        ├── Gone               410 Expired/Gone: watch or continue token too old, re-list
        └── Invalid            422: the object failed validation or admission

``TransportError`` and 5xx/429 ``ApiError`` are worth retrying with backoff; ``Forbidden`` and
``Invalid`` will not heal by themselves.
"""

# ruff: noqa: N818  - the names are the Kubernetes Status reasons, as in apimachinery's errors

from __future__ import annotations

import json

from deviceplugin_operator.kube import objects


class KubeError(Exception):
    """Base of every error raised by the ``kube`` package."""


class ConfigError(KubeError):
    """No kubeconfig could be loaded and the process does not run in a cluster."""


class TransportError(KubeError):
    """The request got no HTTP answer (connection, TLS or timeout failure)."""


class ApiError(KubeError):
    """The API server answered with a failure ``Status``."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status = status
        """HTTP status code (the Status object's ``code``)."""
        self.reason = reason
        """Machine-readable ``Status.reason`` such as ``NotFound`` or ``Expired``."""
        self.message = message
        """Human-readable ``Status.message``."""

    @property
    def retryable(self) -> bool:
        """Whether the same request may succeed later without any change."""
        return self.status == 429 or self.status >= 500


class Unauthorized(ApiError):
    """401: the credentials were rejected."""


class Forbidden(ApiError):
    """403: the request was denied by authorization or admission."""


class NotFound(ApiError):
    """404: the object (or the resource type) does not exist."""


class Conflict(ApiError):
    """409 Conflict: the object changed since it was read, or a precondition failed."""


class AlreadyExists(ApiError):
    """409 AlreadyExists: an object with this name exists already."""


class Gone(ApiError):
    """410: the requested resourceVersion has been compacted away; list again."""


class Invalid(ApiError):
    """422: the object was rejected by validation."""


_BY_STATUS: dict[int, type[ApiError]] = {
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    410: Gone,
    422: Invalid,
}


def from_status(code: int, status: object) -> ApiError:
    """The ``ApiError`` for an HTTP ``code`` and the ``Status`` it came with.

    ``status`` is the decoded Status object, or the raw body when it was not JSON.
    """
    reason, message = "", ""
    if isinstance(status, bytes | str):
        text = status.decode(errors="replace") if isinstance(status, bytes) else status
        try:
            status = json.loads(text)
        except ValueError:
            message = text.strip()
    if isinstance(status, dict):
        decoded: objects.JsonObject = status
        reason = str(decoded.get("reason") or "")
        message = str(decoded.get("message") or message)
        code = int(decoded.get("code") or code)
    if code == 409 and reason == "AlreadyExists":
        return AlreadyExists(code, reason, message)
    return _BY_STATUS.get(code, ApiError)(code, reason, message)
