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
