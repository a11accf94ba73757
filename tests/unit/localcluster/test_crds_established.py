"""Which CRDs of a listing the apiserver does not serve yet (``Cluster.wait_crds_established``)."""

from __future__ import annotations

from typing import Any

from localcluster.cluster import crds_not_established


def crd(name: str, *conditions: tuple[str, str]) -> dict[str, Any]:
    item: dict[str, Any] = {"metadata": {"name": name}}
    if conditions:
        item["status"] = {"conditions": [{"type": t, "status": s} for t, s in conditions]}
    return item


LISTING = {
    "items": [
        crd("a.example.com", ("NamesAccepted", "True"), ("Established", "True")),
        crd("b.example.com"),  # just created: no status yet
        crd("c.example.com", ("NamesAccepted", "True"), ("Established", "False")),
    ]
}


def test_every_crd_not_established_is_named_when_no_names_are_given() -> None:
    assert crds_not_established(LISTING) == ["b.example.com", "c.example.com"]


def test_only_the_named_crds_count() -> None:
    assert crds_not_established(LISTING, {"a.example.com"}) == []
    assert crds_not_established(LISTING, {"a.example.com", "c.example.com"}) == ["c.example.com"]


def test_a_named_crd_the_listing_lacks_is_not_established() -> None:
    assert crds_not_established(LISTING, {"d.example.com"}) == ["d.example.com"]
    assert crds_not_established({}, {"d.example.com"}) == ["d.example.com"]


def test_an_empty_listing_has_nothing_to_wait_for() -> None:
    assert crds_not_established({"items": []}) == []
