"""The store keeps objects by key and its indexes in step with every write."""

from __future__ import annotations

import pytest

from deviceplugin_operator.controller import cache
from deviceplugin_operator.kube import objects


def pod(name: str, owner_uid: str | None = None, namespace: str = "ns") -> objects.JsonObject:
    meta: objects.JsonObject = {"name": name, "namespace": namespace}
    if owner_uid is not None:
        meta["ownerReferences"] = [
            {"kind": "ReplicaSet", "name": "other", "uid": "not-the-controller"},
            {"kind": "DaemonSet", "name": "ds", "uid": owner_uid, "controller": True},
        ]
    return {"metadata": meta}


def test_objects_are_keyed_by_namespace_and_name() -> None:
    store = cache.Store()
    assert store.upsert(pod("a")) is None
    assert store.upsert({"metadata": {"name": "node-1"}}) is None
    assert sorted(store.keys()) == ["node-1", "ns/a"]
    assert store.get("ns/a") == pod("a")
    assert "ns/a" in store
    assert len(store) == 2
    replaced = store.upsert(pod("a", "u1"))
    assert replaced == pod("a")
    assert store.remove("ns/a") == pod("a", "u1")
    assert store.remove("ns/a") is None


def test_the_controller_uid_index_follows_updates_and_removals() -> None:
    store = cache.Store({cache.CONTROLLER_UID: cache.by_controller_uid})
    store.upsert(pod("a", "u1"))
    store.upsert(pod("b", "u1"))
    store.upsert(pod("c"))
    assert [objects.name(o) for o in store.by_index(cache.CONTROLLER_UID, "u1")] == ["a", "b"]
    assert store.index_keys(cache.CONTROLLER_UID, "not-the-controller") == []
    store.upsert(pod("b", "u2"))
    assert store.index_keys(cache.CONTROLLER_UID, "u1") == ["ns/a"]
    assert store.index_keys(cache.CONTROLLER_UID, "u2") == ["ns/b"]
    store.remove("ns/a")
    assert store.index_keys(cache.CONTROLLER_UID, "u1") == []


def test_an_index_added_later_covers_the_objects_already_stored() -> None:
    store = cache.Store()
    store.upsert(pod("a", namespace="x"))
    store.upsert(pod("b", namespace="y"))
    store.add_indexer("namespace", cache.by_namespace)
    assert store.index_keys("namespace", "x") == ["x/a"]
    with pytest.raises(ValueError, match="exists"):
        store.add_indexer("namespace", cache.by_namespace)


def test_an_unknown_index_is_an_error() -> None:
    with pytest.raises(KeyError):
        cache.Store().by_index("nope", "x")
