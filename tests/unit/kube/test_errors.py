"""The API server's Status answers map onto the exception tree."""

from __future__ import annotations

import json

import pytest

from deviceplugin_operator.kube import errors


def status(code: int, reason: str, message: str = "m") -> bytes:
    return json.dumps(
        {"kind": "Status", "status": "Failure", "code": code, "reason": reason, "message": message}
    ).encode()


@pytest.mark.parametrize(
    ("code", "reason", "expected"),
    [
        (401, "Unauthorized", errors.Unauthorized),
        (403, "Forbidden", errors.Forbidden),
        (404, "NotFound", errors.NotFound),
        (409, "Conflict", errors.Conflict),
        (409, "AlreadyExists", errors.AlreadyExists),
        (410, "Expired", errors.Gone),
        (410, "Gone", errors.Gone),
        (422, "Invalid", errors.Invalid),
        (500, "InternalError", errors.ApiError),
        (400, "BadRequest", errors.ApiError),
    ],
)
def test_status_picks_the_class(code: int, reason: str, expected: type[errors.ApiError]) -> None:
    error = errors.from_status(code, status(code, reason, "details"))
    assert type(error) is expected
    assert isinstance(error, errors.KubeError)
    assert (error.status, error.reason, error.message) == (code, reason, "details")
    assert str(error) == f"{code} {reason}: details"


def test_the_status_code_in_a_watch_error_object_wins() -> None:
    error = errors.from_status(200, {"kind": "Status", "code": 410, "reason": "Expired"})
    assert isinstance(error, errors.Gone)


def test_a_body_that_is_not_json_becomes_the_message() -> None:
    error = errors.from_status(503, b"upstream connect error\n")
    assert type(error) is errors.ApiError
    assert error.message == "upstream connect error"
    assert error.retryable


@pytest.mark.parametrize(
    ("code", "retryable"), [(429, True), (500, True), (404, False), (422, False)]
)
def test_retryable(code: int, retryable: bool) -> None:
    assert errors.from_status(code, b"").retryable is retryable


def test_already_exists_is_not_a_conflict() -> None:
    # apimachinery's IsConflict is false for AlreadyExists; a retry-on-conflict loop must not
    # spin on a create.
    assert not issubclass(errors.AlreadyExists, errors.Conflict)
