"""AdmissionReview v1 on the wire, and the JSON patches that mutating answers carry.

``parse`` turns an HTTP body into an ``AdmissionRequest`` or raises ``MalformedReview`` (the
server answers 400); it never raises anything else. The object under review stays raw JSON
(``request.object``): the mutators patch it by position and must keep every field they do not
understand, and the rules parse it with the kind's own model.

Answers are built as controller-runtime builds them: ``allowed`` (``status.code`` 200, an
optional JSON patch and warnings), ``denied`` (403, reason Forbidden, the message) and
``errored`` (any code, the message).

Patches are RFC 6902 operations whose paths are RFC 6901 pointers (``pointer`` escapes ``~``
and ``/``, so ``sgx.intel.com/epc`` becomes ``sgx.intel.com~1epc``). ``apply`` applies them as
the API server would, which lets tests check what a patch does and that a second call of a
mutator has nothing left to do.
"""

from __future__ import annotations

import base64
import copy
import dataclasses
import json
from collections.abc import Iterable, Sequence
from typing import Any, Literal

import pydantic

from deviceplugin_operator.admission import errors
from deviceplugin_operator.api import wire

API_VERSION = "admission.k8s.io/v1"
KIND = "AdmissionReview"


class GroupVersionKind(wire.Model):
    group: str = ""
    version: str = ""
    kind: str = ""

    def __str__(self) -> str:
        # apimachinery's GroupVersionKind.String(), which the reference's messages quote.
        return f"{self.group}/{self.version}, Kind={self.kind}"


class GroupVersionResource(wire.Model):
    group: str = ""
    version: str = ""
    resource: str = ""

    def __str__(self) -> str:
        return f"{self.group}/{self.version}, Resource={self.resource}"


class AdmissionRequest(wire.Model):
    """The ``request`` of an AdmissionReview: what the API server asks about."""

    uid: str = pydantic.Field(min_length=1)
    # Factories, not instances: an instance would build the models' validators at import.
    kind: GroupVersionKind = pydantic.Field(default_factory=GroupVersionKind)
    resource: GroupVersionResource = pydantic.Field(default_factory=GroupVersionResource)
    sub_resource: str = ""
    name: str = ""
    namespace: str = ""
    operation: str = ""
    """CREATE, UPDATE, DELETE or CONNECT."""

    object: Any = None
    """The object as the API server would store it (raw JSON; None for DELETE)."""

    old_object: Any = None
    """The stored object an UPDATE replaces (raw JSON)."""

    dry_run: bool | None = None


class _IncomingReview(wire.Model):
    api_version: str | None = None
    kind: str | None = None
    request: AdmissionRequest | None = None


class Status(wire.Model):
    code: int | None = None
    message: str | None = None
    reason: str | None = None


class AdmissionResponse(wire.Model):
    """The ``response`` of an AdmissionReview: the verdict."""

    uid: str
    allowed: bool
    status: Status | None = None
    patch: str | None = None
    """Base64 of the JSON patch."""

    patch_type: Literal["JSONPatch"] | None = None
    warnings: list[str] | None = None


def parse(body: bytes) -> AdmissionRequest:
    """The request of an AdmissionReview v1 body; ``MalformedReview`` says what is wrong."""
    try:
        document = json.loads(body)
    except (ValueError, RecursionError) as error:
        raise errors.MalformedReview(f"the body is not JSON: {error}") from None
    if not isinstance(document, dict):
        raise errors.MalformedReview("the body is not a JSON object")
    try:
        incoming = _IncomingReview.model_validate(document)
    except pydantic.ValidationError as error:
        raise errors.MalformedReview(_first_error(error)) from None
    except RecursionError:
        raise errors.MalformedReview("the body is nested too deeply") from None
    if incoming.api_version not in (None, API_VERSION):
        raise errors.MalformedReview(
            f"unsupported apiVersion {incoming.api_version!r}, expected {API_VERSION}"
        )
    if incoming.kind not in (None, KIND):
        raise errors.MalformedReview(f"unexpected kind {incoming.kind!r}, expected {KIND}")
    if incoming.request is None:
        raise errors.MalformedReview("the AdmissionReview has no request")
    return incoming.request


def _first_error(error: pydantic.ValidationError) -> str:
    problem = error.errors()[0]
    location = ".".join(str(part) for part in problem["loc"]) or "body"
    return f"{location}: {problem['msg']}"


def allowed(
    uid: str, patch: Sequence[Operation] = (), warnings: Iterable[str] = ()
) -> AdmissionResponse:
    """Admit, applying ``patch`` (if any) and showing ``warnings`` to the client."""
    found = list(warnings)
    return AdmissionResponse(
        uid=uid,
        allowed=True,
        status=Status(code=200),
        patch=encode(patch) if patch else None,
        patch_type="JSONPatch" if patch else None,
        warnings=found or None,
    )


def denied(uid: str, message: str, code: int = 403) -> AdmissionResponse:
    """Refuse with ``message``; 403 is controller-runtime's ``Denied``."""
    reason = "Forbidden" if code == 403 else None
    return AdmissionResponse(
        uid=uid, allowed=False, status=Status(code=code, message=message, reason=reason)
    )


def errored(uid: str, code: int, message: str) -> AdmissionResponse:
    """Refuse because the request could not be handled (controller-runtime's ``Errored``)."""
    return AdmissionResponse(uid=uid, allowed=False, status=Status(code=code, message=message))


def envelope(response: AdmissionResponse) -> dict[str, Any]:
    """The AdmissionReview that carries ``response`` back to the API server."""
    return {"apiVersion": API_VERSION, "kind": KIND, "response": response.wire()}


# JSON patch ------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Operation:
    """One RFC 6902 operation."""

    op: Literal["add", "remove", "replace"]
    path: str
    value: Any = None
    """The JSON value of add and replace; unused by remove."""

    def wire(self) -> dict[str, Any]:
        if self.op == "remove":
            return {"op": self.op, "path": self.path}
        return {"op": self.op, "path": self.path, "value": self.value}


def escape(token: str) -> str:
    """One RFC 6901 reference token: ``~`` is ``~0`` and ``/`` is ``~1``."""
    return token.replace("~", "~0").replace("/", "~1")


def pointer(*tokens: str | int) -> str:
    """The JSON pointer to a location, e.g. ``pointer("spec", "containers", 0)``."""
    return "".join("/" + escape(str(token)) for token in tokens)


def add(path: str, value: Any) -> Operation:
    """Add, or replace what is there (RFC 6902 add on an existing member replaces it)."""
    return Operation("add", path, value)


def remove(path: str) -> Operation:
    return Operation("remove", path)


def replace(path: str, value: Any) -> Operation:
    return Operation("replace", path, value)


def encode(patch: Sequence[Operation]) -> str:
    """The base64 form that ``AdmissionResponse.patch`` carries."""
    text = json.dumps([operation.wire() for operation in patch], separators=(",", ":"))
    return base64.b64encode(text.encode()).decode()


def decode(patch: str) -> list[Operation]:
    """The operations of a base64 patch (what the API server reads from a response)."""
    return [
        Operation(item["op"], item["path"], item.get("value"))
        for item in json.loads(base64.b64decode(patch))
    ]


def apply(document: Any, patch: Iterable[Operation]) -> Any:
    """``document`` (JSON) after ``patch``, as the API server applies it; ValueError when an
    operation does not fit the document. The input is not modified."""
    # Through JSON, as on the wire: a copy that shares no object between two places.
    result = json.loads(json.dumps(document))
    for operation in patch:
        result = _apply_one(result, operation)
    return result


def _tokens(path: str) -> list[str]:
    if path == "":
        return []
    if not path.startswith("/"):
        raise ValueError(f"JSON pointer {path!r} does not start with /")
    return [token.replace("~1", "/").replace("~0", "~") for token in path[1:].split("/")]


def _apply_one(document: Any, operation: Operation) -> Any:
    tokens = _tokens(operation.path)
    if not tokens:
        if operation.op == "remove":
            raise ValueError("cannot remove the whole document")
        return copy.deepcopy(operation.value)
    parent = document
    for token in tokens[:-1]:
        parent = _child(parent, token, operation.path)
    last = tokens[-1]
    value = copy.deepcopy(operation.value)
    if isinstance(parent, dict):
        if operation.op != "add" and last not in parent:
            raise ValueError(f"{operation.op} {operation.path}: no such member")
        if operation.op == "remove":
            del parent[last]
        else:
            parent[last] = value
    elif isinstance(parent, list):
        if operation.op == "add" and last == "-":
            parent.append(value)
            return document
        index = _index(last, operation.path)
        limit = len(parent) if operation.op == "add" else len(parent) - 1
        if index > limit:
            raise ValueError(f"{operation.op} {operation.path}: index out of range")
        if operation.op == "add":
            parent.insert(index, value)
        elif operation.op == "remove":
            del parent[index]
        else:
            parent[index] = value
    else:
        raise ValueError(f"{operation.op} {operation.path}: parent is not a container")
    return document


def _child(node: Any, token: str, path: str) -> Any:
    if isinstance(node, dict):
        if token not in node:
            raise ValueError(f"{path}: no member {token!r}")
        return node[token]
    if isinstance(node, list):
        index = _index(token, path)
        if index >= len(node):
            raise ValueError(f"{path}: index {index} out of range")
        return node[index]
    raise ValueError(f"{path}: {token!r} is inside a scalar")


def _index(token: str, path: str) -> int:
    if not token.isdigit() or (token.startswith("0") and len(token) > 1):
        raise ValueError(f"{path}: {token!r} is not an array index")
    return int(token)
