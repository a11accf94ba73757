"""AdmissionReview v1 parsing and answers, and RFC 6902/6901 JSON patches."""

from __future__ import annotations

import base64
import contextlib
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from deviceplugin_operator.admission import errors, review

REQUEST = {
    "uid": "705ab4f5-6393-11e8-b7cc-42010a800002",
    "kind": {"group": "deviceplugin.intel.com", "version": "v1", "kind": "GpuDevicePlugin"},
    "resource": {
        "group": "deviceplugin.intel.com",
        "version": "v1",
        "resource": "gpudeviceplugins",
    },
    "requestKind": {"group": "deviceplugin.intel.com", "version": "v1", "kind": "GpuDevicePlugin"},
    "name": "gpu",
    "operation": "UPDATE",
    "userInfo": {"username": "admin", "groups": ["system:masters"]},
    "object": {"spec": {"image": "x"}},
    "oldObject": {"spec": {}},
    "dryRun": False,
    "options": {"kind": "UpdateOptions"},
}


def body(document: Any) -> bytes:
    return json.dumps(document).encode()


def test_a_review_from_the_api_server_is_read() -> None:
    request = review.parse(
        body({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": REQUEST})
    )
    assert request.uid == REQUEST["uid"]
    assert (request.kind.group, request.kind.kind) == ("deviceplugin.intel.com", "GpuDevicePlugin")
    assert request.resource.resource == "gpudeviceplugins"
    assert request.operation == "UPDATE"
    assert request.object == {"spec": {"image": "x"}}
    assert request.old_object == {"spec": {}}
    assert str(request.kind) == "deviceplugin.intel.com/v1, Kind=GpuDevicePlugin"


def test_apiversion_and_kind_may_be_left_out() -> None:
    assert review.parse(body({"request": {"uid": "u"}})).uid == "u"


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"not json", "the body is not JSON"),
        (b"\xff\xfe\x00", "the body is not JSON"),
        (b"[1, 2]", "the body is not a JSON object"),
        (b"{}", "the AdmissionReview has no request"),
        (b'{"request": null}', "the AdmissionReview has no request"),
        (b'{"request": {}}', "request.uid: Field required"),
        (b'{"request": {"uid": ""}}', "request.uid: String should have at least 1 character"),
        (b'{"request": {"uid": 5}}', "request.uid: Input should be a valid string"),
        (b'{"request": "x"}', "request: Input should be a valid dictionary"),
        (
            b'{"apiVersion": "admission.k8s.io/v1beta1", "request": {"uid": "u"}}',
            "unsupported apiVersion",
        ),
        (b'{"kind": "Pod", "request": {"uid": "u"}}', "unexpected kind 'Pod'"),
        (b"[" * 100_000 + b"]" * 100_000, "the body is not JSON"),
    ],
)
def test_malformed_reviews_are_explained(raw: bytes, message: str) -> None:
    with pytest.raises(errors.MalformedReview) as raised:
        review.parse(raw)
    assert str(raised.value).startswith(message)


@settings(max_examples=300, deadline=None)
@given(raw=st.binary(max_size=200) | st.text(max_size=200).map(str.encode))
def test_any_bytes_are_a_request_or_malformed(raw: bytes) -> None:
    with contextlib.suppress(errors.MalformedReview):
        review.parse(raw)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=10),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=15,
)


@settings(max_examples=300, deadline=None)
@given(document=st.dictionaries(st.sampled_from(["apiVersion", "kind", "request"]), json_values))
def test_any_json_is_a_request_or_malformed(document: dict[str, Any]) -> None:
    with contextlib.suppress(errors.MalformedReview):
        review.parse(body(document))


# Reviews are read directly when their fields have the expected types, else by the schema:
# both must give the same request, and the schema's message for anything it refuses.


def schema_verdict(raw: bytes) -> review.AdmissionRequest | str:
    """What the schema alone makes of a body (how every review was read before)."""
    try:
        document = json.loads(raw)
    except (ValueError, RecursionError):
        return "not JSON"
    if not isinstance(document, dict):
        return "not an object"
    try:
        return review._validated(document)
    except errors.MalformedReview as malformed:
        return str(malformed)


def verdict(raw: bytes) -> review.AdmissionRequest | str:
    try:
        return review.parse(raw)
    except errors.MalformedReview as malformed:
        message = str(malformed)
        if message.startswith("the body is not JSON"):
            return "not JSON"
        if message == "the body is not a JSON object":
            return "not an object"
        return message


field_values = (
    st.none()
    | st.booleans()
    | st.integers(-2, 2)
    | st.sampled_from(["", "u", "CREATE", "true", "no", "1"])
    | st.lists(st.integers(), max_size=2)
    | st.dictionaries(
        st.sampled_from(["group", "version", "kind", "resource", "x"]),
        st.none() | st.integers(0, 1) | st.sampled_from(["", "apps", "v1", "Pod"]),
        max_size=4,
    )
)
request_fields = st.dictionaries(
    st.sampled_from(
        [
            "uid",
            "kind",
            "resource",
            "subResource",
            "name",
            "namespace",
            "operation",
            "object",
            "oldObject",
            "dryRun",
            "userInfo",
            "options",
            "sub_resource",
            "old_object",
            "dry_run",
        ]
    ),
    field_values,
)


@settings(max_examples=500, deadline=None)
@given(
    top=st.dictionaries(
        st.sampled_from(["apiVersion", "kind", "api_version"]),
        st.none() | st.integers(0, 1) | st.sampled_from([review.API_VERSION, review.KIND, "v1"]),
    ),
    fields=request_fields | st.builds(lambda f: {**f, "uid": "u"}, request_fields),
)
def test_direct_reading_and_the_schema_agree(top: dict[str, Any], fields: dict[str, Any]) -> None:
    raw = body({**top, "request": fields})
    assert verdict(raw) == schema_verdict(raw)


@pytest.mark.parametrize("operation", ["CREATE", "UPDATE", "DELETE", "CONNECT"])
@pytest.mark.parametrize("dry_run", [True, False, None, "absent"])
def test_operation_dry_run_and_both_objects_are_read(operation: str, dry_run: Any) -> None:
    fields = {**REQUEST, "operation": operation, "dryRun": dry_run}
    if dry_run == "absent":
        del fields["dryRun"]
    if operation == "DELETE":
        fields["object"] = None
    raw = body({"apiVersion": review.API_VERSION, "kind": review.KIND, "request": fields})
    request = review.parse(raw)
    assert request == schema_verdict(raw)
    assert request.operation == operation
    assert request.dry_run is (None if dry_run == "absent" else dry_run)
    assert request.old_object == {"spec": {}}
    assert request.object == (None if operation == "DELETE" else {"spec": {"image": "x"}})
    assert request.sub_resource == request.namespace == ""


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"uid": "u", "dryRun": 1}, None),  # the schema's lax bool: True
        ({"uid": "u", "dryRun": "maybe"}, "request.dryRun: Input should be a valid boolean"),
        ({"uid": "u", "kind": None}, "request.kind: Input should be a valid dictionary"),
        ({"uid": "u", "kind": {"group": 5}}, "request.kind.group: Input should be a valid str"),
        ({"uid": "u", "name": ["a"]}, "request.name: Input should be a valid string"),
        ({"uid": "u", "old_object": {"a": 1}}, None),  # a snake_case name, as the schema took it
    ],
)
def test_fields_of_other_types_get_the_schemas_verdict(
    fields: dict[str, Any], message: str | None
) -> None:
    raw = body({"request": fields})
    if message is None:
        assert review.parse(raw) == schema_verdict(raw)
    else:
        with pytest.raises(errors.MalformedReview) as raised:
            review.parse(raw)
        assert str(raised.value).startswith(message)
        assert str(raised.value) == schema_verdict(raw)


@pytest.mark.parametrize(
    "raw",
    [
        # What the fast parser refuses and json reads: a lone surrogate, a byte order mark,
        # an object nested deeper than 200 levels.
        b'{"request": {"uid": "u", "object": {"a": "\\ud800"}}}',
        b'{"request": {"uid": "\\ud800"}}',
        '{"request": {"uid": "u"}}'.encode("utf-8-sig"),
        b'{"request": {"uid": "u", "object": ' + b"[" * 300 + b"]" * 300 + b"}}",
        # Over FAST_JSON: json reads it.
        body({"request": {**REQUEST, "object": {"a": "x" * review.FAST_JSON}}}),
        body({"request": {**REQUEST, "dryRun": 1, "object": {"a": "x" * review.FAST_JSON}}}),
    ],
)
def test_bodies_only_json_reads_are_read_as_json_reads_them(raw: bytes) -> None:
    assert verdict(raw) == schema_verdict(raw)


@pytest.mark.parametrize(
    "response",
    [
        review.allowed("u"),
        review.allowed('u"\\\u2028é'),
        review.allowed("u", [review.add("/a", 1)], ["w"]),
        review.allowed("u", warnings=["only a warning"]),
        review.denied("u", "invalid resource: x"),
        review.errored("u", 500, "oops"),
    ],
)
def test_the_answer_body_is_the_envelope(response: review.AdmissionResponse) -> None:
    assert json.loads(review.body_of(response)) == review.envelope(response)


def test_allowed_answers_carry_a_base64_json_patch_and_warnings() -> None:
    patch = [review.add("/spec/image", "intel/intel-gpu-plugin:0.36.0")]
    answer = review.envelope(review.allowed("u", patch, ["look out"]))
    assert answer == {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "response": {
            "uid": "u",
            "allowed": True,
            "status": {"code": 200},
            "patch": base64.b64encode(
                b'[{"op":"add","path":"/spec/image","value":"intel/intel-gpu-plugin:0.36.0"}]'
            ).decode(),
            "patchType": "JSONPatch",
            "warnings": ["look out"],
        },
    }


def test_an_empty_patch_is_left_out() -> None:
    assert review.allowed("u").wire() == {"uid": "u", "allowed": True, "status": {"code": 200}}


def test_denials_are_controller_runtimes() -> None:
    assert review.denied("u", "invalid resource: x").wire() == {
        "uid": "u",
        "allowed": False,
        "status": {"code": 403, "message": "invalid resource: x", "reason": "Forbidden"},
    }
    assert review.denied("u", "bad", 400).wire()["status"] == {"code": 400, "message": "bad"}
    assert review.errored("u", 500, "oops").wire() == {
        "uid": "u",
        "allowed": False,
        "status": {"code": 500, "message": "oops"},
    }


def test_pointers_escape_tilde_and_slash() -> None:
    assert review.escape("sgx.intel.com/epc") == "sgx.intel.com~1epc"
    assert review.escape("a~b/c") == "a~0b~1c"
    assert review.pointer("spec", "containers", 0, "resources", "limits", "a/b~c") == (
        "/spec/containers/0/resources/limits/a~1b~0c"
    )


def test_patches_round_trip_through_base64() -> None:
    patch = [
        review.add("/a/b~1c", {"x": ['"quoted"\n']}),
        review.remove("/d"),
        review.replace("/e/0", None),
    ]
    assert review.decode(review.encode(patch)) == patch
    assert [op.wire() for op in patch][1] == {"op": "remove", "path": "/d"}


def test_apply_follows_rfc_6902() -> None:
    document = {"a": {"b/c": 1, "list": [1, 2]}, "d": 1}
    patch = [
        review.add("/a/b~1c", 2),
        review.add("/a/list/-", 3),
        review.add("/a/list/0", 0),
        review.remove("/d"),
        review.replace("/a/list/1", 10),
        review.add("/new", {"x": 1}),
    ]
    assert review.apply(document, patch) == {
        "a": {"b/c": 2, "list": [0, 10, 2, 3]},
        "new": {"x": 1},
    }
    assert document == {"a": {"b/c": 1, "list": [1, 2]}, "d": 1}
    assert review.apply(document, [review.replace("", [1])]) == [1]


@pytest.mark.parametrize(
    "operation",
    [
        review.remove("/missing"),
        review.replace("/missing", 1),
        review.add("/missing/child", 1),
        review.add("/list/5", 1),
        review.remove("/list/-"),
        review.add("/list/01", 1),
        review.add("/scalar/x", 1),
        review.add("no-slash", 1),
        review.remove(""),
    ],
)
def test_apply_refuses_what_does_not_fit(operation: review.Operation) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - each case has its own message
        review.apply({"list": [1], "scalar": 1}, [operation])
