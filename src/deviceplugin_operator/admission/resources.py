"""Extended resources a container requests: Kubernetes quantities, read exactly.

``quantity`` parses the API's quantity notation (``1``, ``1Mi``, ``1048576``, ``1e3``,
``500m``) to an exact fraction with apimachinery's rounding (up to a multiple of 1n) and
capping (at the int64 maximum), so that ``1Mi`` and ``1048576`` are the same amount — the
reference compared the Go structs and told users that equal requests and limits differ.
``binary_si`` prints an integer the way ``resource.NewQuantity(n, BinarySI).String()`` does.

``requested`` is the reference's ``GetRequestedResources``: the extended resources of one
domain that a container asks for, with requests equal to limits and whole quantities.
"""

from __future__ import annotations

import dataclasses
import fractions
import json
import re
from collections.abc import Mapping
from typing import Any

from deviceplugin_operator.admission import errors

INT64_MAX = 2**63 - 1

_QUANTITY = re.compile(
    r"([+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+))"
    r"(Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E|[eE][+-]?[0-9]+)?"
)
_BINARY = {"Ki": 10, "Mi": 20, "Gi": 30, "Ti": 40, "Pi": 50, "Ei": 60}
_DECIMAL = {"n": -9, "u": -6, "m": -3, "": 0, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18}
_BINARY_SUFFIXES = ("", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei")
_NANO = fractions.Fraction(1, 10**9)
# Beyond this a non-zero amount is capped or rounded anyway; the bound keeps a hostile
# exponent such as 1e999999999 from costing time.
_EXPONENT_BOUND = 64


def quantity(value: object) -> fractions.Fraction:
    """The amount of a quantity given as a JSON string or number; ValueError if it is none."""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ValueError(f"quantity must be a string or a number, not {json.dumps(value)}")
    text = value.strip() if isinstance(value, str) else repr(value)
    match = _QUANTITY.fullmatch(text)
    if match is None:
        raise ValueError(f"quantities must match the regular expression {_QUANTITY.pattern!r}")
    number, suffix = match.group(1), match.group(2) or ""
    amount = fractions.Fraction(number)
    if not amount:
        return amount
    if suffix in _BINARY:
        amount *= 2 ** _BINARY[suffix]
    else:
        exponent = _DECIMAL[suffix] if suffix in _DECIMAL else int(suffix[1:])
        if abs(exponent) > _EXPONENT_BOUND:
            exponent = _EXPONENT_BOUND if exponent > 0 else -_EXPONENT_BOUND
        amount *= fractions.Fraction(10) ** exponent
    return _bounded(amount)


def _bounded(amount: fractions.Fraction) -> fractions.Fraction:
    # apimachinery rounds a magnitude up to a multiple of 1n and caps it at the int64 maximum.
    magnitude = abs(amount)
    if magnitude % _NANO:
        magnitude = (magnitude // _NANO + 1) * _NANO
    magnitude = min(magnitude, fractions.Fraction(INT64_MAX))
    return -magnitude if amount < 0 else magnitude


def binary_si(amount: int) -> str:
    """``amount`` as apimachinery prints an integer quantity in BinarySI format."""
    if -1024 < amount < 1024:
        return str(amount)
    exponent = 0
    while amount % 1024 == 0 and exponent < len(_BINARY_SUFFIXES) - 1:
        amount //= 1024
        exponent += 1
    return f"{amount}{_BINARY_SUFFIXES[exponent]}"


def equal(a: object, b: object) -> bool:
    """Whether two quantities (or already parsed amounts) are the same amount; False when
    either does not parse."""
    try:
        first = a if isinstance(a, fractions.Fraction) else quantity(a)
        second = b if isinstance(b, fractions.Fraction) else quantity(b)
    except ValueError:
        return False
    return first == second


@dataclasses.dataclass(frozen=True)
class Request:
    """One extended resource a container asks for."""

    name: str
    """The resource name as written in the container (also the key for patch paths)."""

    amount: int


def _quote(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)


def _resource_map(resources: Mapping[str, Any], field: str) -> Mapping[str, Any]:
    found = resources.get(field)
    if found is None:
        return {}
    if not isinstance(found, Mapping):
        raise errors.Rejected(f"resources.{field} must be an object", code=400)
    return found


def container_resources(container: Mapping[str, Any]) -> tuple[Mapping[str, Any], ...]:
    """(limits, requests) of a container; Rejected (400) when they are not objects."""
    resources = container.get("resources")
    if resources is None:
        return {}, {}
    if not isinstance(resources, Mapping):
        raise errors.Rejected("resources must be an object", code=400)
    return _resource_map(resources, "limits"), _resource_map(resources, "requests")


def requested(container: Mapping[str, Any], domain: str) -> dict[str, Request]:
    """The resources ``<domain>/...`` that ``container`` asks for, by name in name order.

    Extended resources cannot be overcommitted: each must be in both limits and requests with
    the same amount, and that amount must be a whole number; ``Rejected`` otherwise, with the
    reference's messages. (The reference matched the domain without the slash, so
    ``sgx.intel.community/x`` counted as SGX.)
    """
    limits, requests = container_resources(container)
    prefix = domain + "/"
    for name in sorted(requests):
        if name.startswith(prefix) and name not in limits:
            raise errors.Rejected(_overcommitted(name))
    found: dict[str, Request] = {}
    for name in sorted(limits):
        if not name.startswith(prefix):
            continue
        try:
            amount = quantity(limits[name])
        except ValueError as error:
            raise errors.Rejected(f"invalid quantity for {_quote(name)}: {error}") from None
        if name not in requests or not equal(amount, requests[name]):
            raise errors.Rejected(_overcommitted(name))
        if amount.denominator != 1 or not -INT64_MAX - 1 <= amount <= INT64_MAX:
            raise errors.Rejected(f"resource quantity isn't of integral type for {_quote(name)}")
        found[name] = Request(name=name, amount=int(amount))
    return found


def _overcommitted(name: str) -> str:
    return (
        f"'limits' and 'requests' for {_quote(name)} must be equal as extended resources "
        "cannot be overcommitted"
    )
