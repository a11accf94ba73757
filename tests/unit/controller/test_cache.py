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


def placed(name: str, node: str, status: str = "Pending") -> objects.JsonObject:
    return {
        "metadata": {"name": name, "namespace": "ns"},
        "spec": {"nodeName": node},
        "status": {"phase": status},
    }


def by_node(obj: objects.JsonObject) -> list[str]:
    return [obj["spec"]["nodeName"]]


def test_an_index_values_version_moves_with_placement_not_with_updates_in_place() -> None:
    store = cache.Store({"node": by_node, cache.CONTROLLER_UID: cache.by_controller_uid})
    assert store.index_version("node", "n1") == 0
    store.upsert(placed("a", "n1"))
    added = store.index_version("node", "n1")
    assert added > 0
    everything = store.placement_version
    store.upsert(placed("a", "n1", status="Running"))  # an update in place
    assert (store.index_version("node", "n1"), store.placement_version) == (added, everything)
    store.upsert(placed("b", "n1"))
    with_b = store.index_version("node", "n1")
    assert with_b > added
    store.upsert(placed("a", "n2"))  # moved
    assert store.index_version("node", "n1") > with_b
    assert store.index_version("node", "n2") > 0
    on_n2 = store.index_version("node", "n2")
    owned = {**placed("a", "n2"), "metadata": pod("a", "u1")["metadata"]}
    store.upsert(owned)  # another index changed: its node's version moves too
    assert store.index_version("node", "n2") > on_n2
    assert store.index_version(cache.CONTROLLER_UID, "u1") > 0
    store.remove("ns/a")
    # n2 and u1 hold nothing now: 0, as for values never seen (nothing kept for them)
    assert store.index_version("node", "n2") == store.index_version(cache.CONTROLLER_UID, "u1") == 0
    assert store.by_index("node", "n2") == []
    store.remove("ns/b")
    assert store._versions == {}
