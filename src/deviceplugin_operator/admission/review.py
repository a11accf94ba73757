"""AdmissionReview v1 on the wire, and the JSON patches that mutating answers carry.

``parse`` turns an HTTP body into an ``AdmissionRequest`` or raises ``MalformedReview`` (the
server answers 400); it never raises anything else. The object under review stays raw JSON
(``request.object``): the mutators patch it by position and must keep every field they do not
understand, and the rules parse it with the kind's own model. A review whose fields have their
expected types is read directly; any other goes through the pydantic schema of a review, whose
verdict and message (the field and the problem) it gets, as every review did before.

Answers are built as controller-runtime builds them: ``allowed`` (``status.code`` 200, an
optional JSON patch and warnings), ``denied`` (403, reason Forbidden, the message) and
``errored`` (any code, the message). ``body_of`` is the JSON of the answer on the wire.

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
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal

import pydantic
import pydantic_core

from deviceplugin_operator.admission import errors
from deviceplugin_operator.api import wire

API_VERSION = "admission.k8s.io/v1"
KIND = "AdmissionReview"


@dataclasses.dataclass(slots=True)
class GroupVersionKind:
    group: str = ""
    version: str = ""
    kind: str = ""

    def __str__(self) -> str:
        # apimachinery's GroupVersionKind.String(), which the reference's messages quote.
        return f"{self.group}/{self.version}, Kind={self.kind}"


@dataclasses.dataclass(slots=True)
class GroupVersionResource:
    group: str = ""
    version: str = ""
    resource: str = ""

    def __str__(self) -> str:
        return f"{self.group}/{self.version}, Resource={self.resource}"


# Not frozen: these are made for every review, and a frozen dataclass takes three times as
# long to make (object.__setattr__ per field).


@dataclasses.dataclass(slots=True)
class AdmissionRequest:
    """The ``request`` of an AdmissionReview: what the API server asks about."""

    uid: str
    kind: GroupVersionKind = dataclasses.field(default_factory=GroupVersionKind)
    resource: GroupVersionResource = dataclasses.field(default_factory=GroupVersionResource)
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


# The schema of a review, for what the direct reading below does not take (a field of another
# type, a snake_case name): pydantic's verdict and its message, as before that reading existed.


class _GroupVersionKindSchema(wire.Model):
    group: str = ""
    version: str = ""
    kind: str = ""


class _GroupVersionResourceSchema(wire.Model):
    group: str = ""
    version: str = ""
    resource: str = ""


class _RequestSchema(wire.Model):
    uid: str = pydantic.Field(min_length=1)
    # Factories, not instances: an instance would build the models' validators at import.
    kind: _GroupVersionKindSchema = pydantic.Field(default_factory=_GroupVersionKindSchema)
    resource: _GroupVersionResourceSchema = pydantic.Field(
        default_factory=_GroupVersionResourceSchema
    )
    sub_resource: str = ""
    name: str = ""
    namespace: str = ""
    operation: str = ""
    object: Any = None
    old_object: Any = None
    dry_run: bool | None = None

    def request(self) -> AdmissionRequest:
        return AdmissionRequest(
            uid=self.uid,
            kind=GroupVersionKind(self.kind.group, self.kind.version, self.kind.kind),
            resource=GroupVersionResource(
                self.resource.group, self.resource.version, self.resource.resource
            ),
            sub_resource=self.sub_resource,
            name=self.name,
            namespace=self.namespace,
            operation=self.operation,
            object=self.object,
            old_object=self.old_object,
            dry_run=self.dry_run,
        )


class _IncomingReview(wire.Model):
    api_version: str | None = None
    kind: str | None = None
    request: _RequestSchema | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class Status:
    code: int | None = None
    message: str | None = None
    reason: str | None = None

    def wire(self) -> dict[str, Any]:
        found: dict[str, Any] = {}
        if self.code is not None:
            found["code"] = self.code
        if self.message is not None:
            found["message"] = self.message
        if self.reason is not None:
            found["reason"] = self.reason
        return found


_OK = Status(code=200)


@dataclasses.dataclass(slots=True)
class AdmissionResponse:
    """The ``response`` of an AdmissionReview: the verdict."""

    uid: str
    allowed: bool
    status: Status | None = None
    patch: str | None = None
    """Base64 of the JSON patch."""

    patch_type: Literal["JSONPatch"] | None = None
    warnings: list[str] | None = None

    def wire(self) -> dict[str, Any]:
        """The JSON form: camelCase keys, unset (None) fields left out."""
        found: dict[str, Any] = {"uid": self.uid, "allowed": self.allowed}
        if self.status is not None:
            found["status"] = self.status.wire()
        if self.patch is not None:
            found["patch"] = self.patch
        if self.patch_type is not None:
            found["patchType"] = self.patch_type
        if self.warnings is not None:
            found["warnings"] = list(self.warnings)
        return found


def read_request(fields: Mapping[str, Any]) -> AdmissionRequest:
    """The ``request`` of a review from its JSON fields; ``MalformedReview`` says what is
    wrong (its field and the problem)."""
    document = {"request": fields}
    return _direct(document) or _validated(document)


FAST_JSON = 64 * 1024
"""Bodies up to this many bytes are parsed by pydantic_core (see ``parse``)."""


def parse(body: bytes) -> AdmissionRequest:
    """The request of an AdmissionReview v1 body; ``MalformedReview`` says what is wrong."""
    # pydantic_core's parser takes half the time of json's on a review of a few KiB. What it
    # refuses (a lone surrogate, a byte order mark, nesting over 200 levels, bad JSON) goes to
    # json, whose verdict and message stand, so any body is read as json would read it. Large
    # bodies (parsed on worker threads) stay with json: with the fast parser, four clients
    # sending 3 MB reviews held the event loop longer (tests/unit/admission, exhaustion).
    # Which parser read the body matters (so not ``kube.wirejson``, which hides it): only the
    # fast parser's documents go to ``_direct``, as json's may hold lone surrogates, which the
    # schema refuses and ``_direct`` would let through.
    try:
        document = (
            pydantic_core.from_json(body, cache_strings="keys") if len(body) <= FAST_JSON else None
        )
    except ValueError:
        document = None
    if isinstance(document, dict):
        request = _direct(document)
        if request is not None:
            return request
    else:
        try:
            document = json.loads(body)
        except (ValueError, RecursionError) as error:
            raise errors.MalformedReview(f"the body is not JSON: {error}") from None
    if not isinstance(document, dict):
        raise errors.MalformedReview("the body is not a JSON object")
    return _validated(document)


def _direct(document: Mapping[str, Any]) -> AdmissionRequest | None:
    """The request of a review whose fields all have their expected types, read without the
    schema (a fifth of a small review's parse); None for anything else, which
    ``_validated`` then judges. Both give the same request for what this reads."""
    api_version = document.get("apiVersion")
    kind = document.get("kind")
    request = document.get("request")
    if not (
        isinstance(request, dict)
        and "api_version" not in document
        and (api_version is None or isinstance(api_version, str))
        and (kind is None or isinstance(kind, str))
    ):
        return None
    uid = request.get("uid")
    dry_run = request.get("dryRun")
    if (
        not isinstance(uid, str)
        or not uid
        or not (dry_run is None or dry_run is True or dry_run is False)
        or "sub_resource" in request
        or "old_object" in request
        or "dry_run" in request
    ):
        return None
    strings = _strings(request, ("subResource", "name", "namespace", "operation"))
    gvk = _group(request, "kind", ("group", "version", "kind"))
    gvr = _group(request, "resource", ("group", "version", "resource"))
    if strings is None or gvk is None or gvr is None:
        return None
    _check_type(api_version, kind)
    sub_resource, name, namespace, operation = strings
    return AdmissionRequest(
        uid,
        GroupVersionKind(*gvk),
        GroupVersionResource(*gvr),
        sub_resource,
        name,
        namespace,
        operation,
        request.get("object"),
        request.get("oldObject"),
        dry_run,
    )


def _strings(fields: Mapping[str, Any], keys: tuple[str, ...]) -> list[str] | None:
    """The values of ``keys`` ("" when absent), None unless each is a string."""
    found = [fields.get(key, "") for key in keys]
    for value in found:
        if not isinstance(value, str):
            return None
    return found


def _group(request: Mapping[str, Any], field: str, keys: tuple[str, ...]) -> list[str] | None:
    """The strings of a group/version/kind or resource field; None unless it reads directly."""
    value = request.get(field)
    if value is None:
        return None if field in request else ["", "", ""]
    return _strings(value, keys) if isinstance(value, dict) else None


def _validated(document: Mapping[str, Any]) -> AdmissionRequest:
    try:
        incoming = _IncomingReview.model_validate(document)
    except pydantic.ValidationError as error:
        raise errors.MalformedReview(_first_error(error)) from None
    except RecursionError:
        raise errors.MalformedReview("the body is nested too deeply") from None
    _check_type(incoming.api_version, incoming.kind)
    if incoming.request is None:
        raise errors.MalformedReview("the AdmissionReview has no request")
    return incoming.request.request()


def _check_type(api_version: str | None, kind: str | None) -> None:
    if api_version not in (None, API_VERSION):
        raise errors.MalformedReview(
            f"unsupported apiVersion {api_version!r}, expected {API_VERSION}"
        )
    if kind not in (None, KIND):
        raise errors.MalformedReview(f"unexpected kind {kind!r}, expected {KIND}")


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
        status=_OK,
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


_PLAIN_ALLOWED = (
    b'{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","response":{"uid":%s,'
    b'"allowed":true,"status":{"code":200}}}'
)


def body_of(response: AdmissionResponse) -> bytes:
    """``envelope(response)`` as the JSON bytes of the HTTP answer; the common answer (allowed,
    no patch, no warnings) is filled into a template."""
    if (
        response.allowed
        and response.status is _OK
        and response.patch is None
        and response.warnings is None
    ):
        return _PLAIN_ALLOWED % json.dumps(response.uid).encode()
    return json.dumps(envelope(response), separators=(",", ":")).encode()


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
