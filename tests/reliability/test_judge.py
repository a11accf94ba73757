"""The judge of "nothing lost" and the churn's bookkeeping can fail: fed what a broken run
would give them (no cluster needed), they report it."""

from __future__ import annotations

import random
from typing import Any

import pytest

from localcluster import errors as cluster_errors
from reliability import fleet


class Answers:
    """A stand-in for the API client: one answer for every request, whatever it is."""

    def __init__(self, status: int, body: bytes = b"{}", *, listed: Any = None):
        self.status = status
        self.body = body
        self.listed = listed

    def request(self, method: str, path: str, body: Any = None, **_: Any) -> tuple[int, bytes]:
        if self.status == fleet.OUTAGE:
            raise cluster_errors.ClusterError(f"{method} {path} failed: connection refused")
        return self.status, self.body

    def get(self, path: str) -> Any:
        return self.listed


def test_a_list_that_does_not_exist_is_no_empty_list() -> None:
    # The API server answers 404 for every list (the CRDs are gone): nothing is checked, which
    # must never read as "nothing wrong".
    api: Any = Answers(404)
    with pytest.raises(cluster_errors.ClusterError, match="404"):
        fleet.check(api, "ns", "run")
    done = fleet.wait_converged(api, "ns", "run", expected={("gpu", "a")}, timeout=0.3)
    assert done.problems
    assert "404" in done.problems[0]


def test_the_resources_checked_must_be_those_the_churn_left() -> None:
    # Every list is empty: no problem with any resource, but the churn says one exists.
    api: Any = Answers(200, listed={"kind": "List", "items": []})
    assert fleet.check(api, "ns", "run") == (set(), [])
    problems = fleet.converged(api, "ns", "run", expected={("gpu", "rel-run-0")})
    assert problems == [
        "checked 0 resources, the churn says 1 exist: not found [('gpu', 'rel-run-0')], "
        "not expected []"
    ]
    with pytest.raises(AssertionError, match="nothing to check"):
        fleet.wait_converged(api, "ns", "run", expected=set())
    assert not fleet.wait_converged(api, "ns", "run", expected=set(), allow_none=True).problems


@pytest.mark.parametrize(
    ("status", "outages", "unexpected"),
    [
        (403, False, True),  # e.g. RBAC or a webhook refusing: never expected
        (422, True, True),  # an invalid body, even while the apiserver restarts
        (500, False, True),
        (500, True, False),
        (fleet.OUTAGE, False, True),
        (fleet.OUTAGE, True, False),
    ],
)
def test_the_churn_counts_refused_writes(status: int, outages: bool, unexpected: bool) -> None:
    api: Any = Answers(status, b'{"message": "refused"}', listed=None)
    churn = fleet.Churn(api, "run", outages=outages)
    rng = random.Random(1)
    for _ in range(20):
        churn.step(rng)
    assert churn.operations == 0
    assert churn.failures == 20
    assert bool(churn.unexpected) is unexpected
    if unexpected:
        with pytest.raises(AssertionError, match="failed unexpectedly"):
            churn.assert_no_unexpected_failures()
    else:
        churn.assert_no_unexpected_failures()
        assert churn.uncertain  # a write without an answer may have been carried out


def test_expected_refusals_are_counted_not_failed() -> None:
    churn = fleet.Churn(Answers(200), "run")  # type: ignore[arg-type]
    key = ("gpu", "rel-run-0")
    churn._record(key, "delete", 404)
    churn._record(key, "update", 409)
    churn._record(key, "create", 201)
    churn.assert_no_unexpected_failures()
    assert churn.exists == {key}
    assert churn.figures()["writes_refused_or_unanswered"] == {"delete 404": 1, "update 409": 1}
