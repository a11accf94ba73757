"""Kubernetes quantities and the extended resources a container requests."""

from __future__ import annotations

import fractions
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from deviceplugin_operator.admission import errors, resources

F = fractions.Fraction


@pytest.mark.parametrize(
    ("text", "amount"),
    [
        ("1", F(1)),
        ("1Mi", F(2**20)),
        ("1048576", F(2**20)),
        ("1Ki", F(1024)),
        ("1.5Gi", F(3 * 2**29)),
        ("1Ei", F(2**60)),
        ("1k", F(1000)),
        ("1M", F(10**6)),
        ("1E", F(10**18)),
        ("1e3", F(1000)),
        ("1E3", F(1000)),
        ("1e-3", F(1, 1000)),
        ("500m", F(1, 2)),
        ("100u", F(1, 10**4)),
        ("5n", F(5, 10**9)),
        (".5", F(1, 2)),
        ("5.", F(5)),
        ("+2", F(2)),
        ("-2", F(-2)),
        (" 2 ", F(2)),  # apimachinery trims a JSON string
        (3, F(3)),
        (1.5, F(3, 2)),
        (1e20, F(2**63 - 1)),  # capped
        ("0.0000000001", F(1, 10**9)),  # rounded up to 1n
        ("-0.0000000001", F(-1, 10**9)),
        ("1e999999999", F(2**63 - 1)),
        ("0e999999999", F(0)),
        ("1e-999999999", F(1, 10**9)),
    ],
)
def test_quantities_are_read_exactly(text: Any, amount: fractions.Fraction) -> None:
    assert resources.quantity(text) == amount


@pytest.mark.parametrize(
    "text",
    [
        "",
        "Mi",
        "1 Mi",
        "1mi",
        "1.2.3",
        "--1",
        "1e",
        "1e1.5",
        "0x10",
        "nan",
        True,
        None,
        [1],
        float("inf"),
    ],
)
def test_what_is_no_quantity_is_a_value_error(text: Any) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - the message is for people
        resources.quantity(text)


def test_equality_is_by_amount() -> None:
    assert resources.equal("1Mi", "1048576")
    assert resources.equal("1k", 1000)
    assert resources.equal("1", F(1))
    assert not resources.equal("1Mi", "1M")
    assert not resources.equal("x", "x")


@pytest.mark.parametrize(
    ("amount", "text"),
    [
        (0, "0"),
        (1, "1"),
        (1023, "1023"),
        (1024, "1Ki"),
        (1536, "1536"),
        (2**20, "1Mi"),
        (3 * 2**20, "3Mi"),
        (2**30, "1Gi"),
        (2**70, "1024Ei"),
        (-2048, "-2Ki"),
    ],
)
def test_binary_si_is_apimachinerys_format(amount: int, text: str) -> None:
    assert resources.binary_si(amount) == text


@settings(max_examples=200, deadline=None)
@given(amount=st.integers(min_value=-(2**62), max_value=2**62))
def test_binary_si_reads_back_to_the_same_amount(amount: int) -> None:
    assert resources.quantity(resources.binary_si(amount)) == amount


def container(limits: dict[str, Any] | None, requests: dict[str, Any] | None) -> dict[str, Any]:
    spec: dict[str, Any] = {}
    if limits is not None:
        spec["limits"] = limits
    if requests is not None:
        spec["requests"] = requests
    return {"name": "c", "resources": spec}


def test_requested_resources_of_a_domain() -> None:
    found = resources.requested(
        container(
            {"x.io/b": "2", "x.io/a": 1, "cpu": "1", "x.iox/c": "1"},
            {"x.io/b": "2", "x.io/a": "1", "cpu": "500m", "x.iox/c": "2"},
        ),
        "x.io",
    )
    assert found == {
        "x.io/a": resources.Request("x.io/a", 1),
        "x.io/b": resources.Request("x.io/b", 2),
    }
    assert list(found) == ["x.io/a", "x.io/b"]
    assert resources.requested({"name": "c"}, "x.io") == {}
    assert resources.requested(container(None, None), "x.io") == {}


@pytest.mark.parametrize(
    ("limits", "requests", "message"),
    [
        ({"x.io/a": 1}, None, "'limits' and 'requests' for \"x.io/a\" must be equal"),
        (None, {"x.io/a": 1}, "'limits' and 'requests' for \"x.io/a\" must be equal"),
        ({"x.io/a": 1}, {"x.io/a": 2}, "'limits' and 'requests' for \"x.io/a\" must be equal"),
        (
            {"x.io/a": "1.5"},
            {"x.io/a": "1.5"},
            'resource quantity isn\'t of integral type for "x.io/a"',
        ),
        ({"x.io/a": "?"}, {"x.io/a": "?"}, 'invalid quantity for "x.io/a"'),
    ],
)
def test_requests_that_are_not_whole_and_equal_are_rejected(
    limits: dict[str, Any] | None, requests: dict[str, Any] | None, message: str
) -> None:
    with pytest.raises(errors.Rejected) as raised:
        resources.requested(container(limits, requests), "x.io")
    assert raised.value.message.startswith(message)


def test_the_cap_makes_huge_amounts_integral_like_apimachinery() -> None:
    found = resources.requested(container({"x.io/a": "1e30"}, {"x.io/a": "1e30"}), "x.io")
    assert found["x.io/a"].amount == 2**63 - 1


@pytest.mark.parametrize("broken", [{"resources": []}, {"resources": {"limits": []}}])
def test_unreadable_resources_are_a_400_denial(broken: dict[str, Any]) -> None:
    with pytest.raises(errors.Rejected) as raised:
        resources.requested(broken, "x.io")
    assert raised.value.code == 400
