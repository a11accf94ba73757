"""The informer against the in-memory API: list then watch, re-list after 410 with synthetic
events for what was missed, backoff on failures, bookmarks, stripping, indexes, resync."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

import fakes
from deviceplugin_operator.controller import backoff, cache, informer
from deviceplugin_operator.kube import errors, objects, resources

NS = "plugins"
CM = resources.CONFIG_MAPS
TIMEOUT = 2.0


@dataclasses.dataclass
class Seen:
    type: informer.EventType
    key: str
    old_version: str | None
    version: str


class Recorder:
    def __init__(self) -> None:
        self.events: list[Seen] = []

    def __call__(
        self, kind: informer.EventType, obj: objects.JsonObject, old: objects.JsonObject | None
    ) -> None:
        old_version = None if old is None else objects.resource_version(old)
        self.events.append(Seen(kind, objects.key(obj), old_version, objects.resource_version(obj)))

    def of(self, *kinds: informer.EventType) -> list[tuple[informer.EventType, str]]:
        return [(seen.type, seen.key) for seen in self.events if seen.type in kinds]

    def clear(self) -> None:
        self.events.clear()


async def until(predicate: Callable[[], Any], what: str = "") -> None:
    """Poll ``predicate`` every millisecond until true; fail after TIMEOUT."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + TIMEOUT
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"Timed out waiting for {what or predicate}")
        await asyncio.sleep(0.001)


def config_map(name: str, namespace: str = NS, **labels: str) -> objects.JsonObject:
    return {
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": labels,
            "managedFields": [{"manager": "kubectl", "operation": "Apply"}],
        },
        "data": {"v": "1"},
    }


def fast_retry() -> backoff.Backoff:
    return backoff.Backoff(initial=0.001, cap=0.004)


@pytest.fixture
def kube() -> fakes.FakeKubeClient:
    return fakes.FakeKubeClient()


@pytest.fixture
async def started(
    kube: fakes.FakeKubeClient,
) -> AsyncIterator[Callable[..., informer.Informer]]:
    running: list[informer.Informer] = []

    def start(**options: Any) -> informer.Informer:
        options.setdefault("retry", fast_retry())
        options.setdefault("namespace", NS)
        handler = options.pop("handler", None)
        inf = informer.Informer(kube, options.pop("resource", CM), **options)
        if handler is not None:
            inf.add_handler(handler)
        inf.start()
        running.append(inf)
        return inf

    yield start
    for inf in running:
        await inf.stop()


async def test_lists_then_watches_and_delivers_every_change(
    kube: fakes.FakeKubeClient, started: Callable[..., informer.Informer]
) -> None:
    await kube.create(CM, config_map("a"))
    await kube.create(CM, config_map("b"))
    await kube.create(CM, config_map("elsewhere", namespace="other"))
    recorder = Recorder()
    inf = started(handler=recorder)
    await asyncio.wait_for(inf.wait_synced(), TIMEOUT)
    assert inf.synced
    assert sorted(inf.store.keys()) == ["plugins/a", "plugins/b"]
    assert recorder.of(informer.EventType.ADDED) == [
        (informer.EventType.ADDED, "plugins/a"),
        (informer.EventType.ADDED, "plugins/b"),
    ]
    await until(lambda: kube.open_watches == 1, "the watch")
    recorder.clear()

    await kube.create(CM, config_map("c"))
    before = inf.get("plugins/a")
    assert before is not None
    await kube.patch(CM, "a", {"data": {"v": "2"}}, NS)
    await kube.delete(CM, "b", NS)
    await until(lambda: len(recorder.events) == 3, "three events")

    assert [(seen.type, seen.key) for seen in recorder.events] == [
        (informer.EventType.ADDED, "plugins/c"),
        (informer.EventType.MODIFIED, "plugins/a"),
        (informer.EventType.DELETED, "plugins/b"),
    ]
    assert recorder.events[1].old_version == objects.resource_version(before)
    assert sorted(inf.store.keys()) == ["plugins/a", "plugins/c"]
    after = inf.get("plugins/a")
    assert after is not None
    assert after["data"] == {"v": "2"}
    assert inf.resource_version == kube.resource_version
    assert kube.requests == {"create": 4, "patch": 1, "delete": 1, "list": 1, "watch": 1}


async def test_managed_fields_are_stripped_from_listed_and_watched_objects(
    kube: fakes.FakeKubeClient, started: Callable[..., informer.Informer]
) -> None:
    await kube.create(CM, config_map("listed"))
    inf = started()
    await asyncio.wait_for(inf.wait_synced(), TIMEOUT)
    await until(lambda: kube.open_watches == 1)
    await kube.create(CM, config_map("watched"))
    await until(lambda: "plugins/watched" in inf.store)
    for obj in inf.list():
        assert "managedFields" not in obj["metadata"]
        assert obj["metadata"]["labels"] == {}
    assert "managedFields" in kube.stored(CM)[0]["metadata"], "the server's copy is untouched"


async def test_a_transform_trims_listed_watched_and_deleted_objects(
    kube: fakes.FakeKubeClient, started: Callable[..., informer.Informer]
) -> None:
    def trim(obj: objects.JsonObject) -> objects.JsonObject:
        assert "managedFields" not in obj["metadata"], "stripped first"
        return {"metadata": obj["metadata"], "kept": obj["data"]["v"]}

    await kube.create(CM, config_map("listed"))
    recorder = Recorder()
    inf = started(transform=trim, handler=recorder)
    await asyncio.wait_for(inf.wait_synced(), TIMEOUT)
    await until(lambda: kube.open_watches == 1)
    await kube.create(CM, config_map("watched"))
    await kube.delete(CM, "listed", NS)
    await until(lambda: len(recorder.events) == 3)
    assert inf.list() == [{"metadata": inf.list()[0]["metadata"], "kept": "1"}]
    handed: list[objects.JsonObject] = []
    inf.add_handler(lambda kind, obj, old: handed.append(obj))
    assert "data" not in handed[0]


async def test_expired_watch_relists_and_reports_what_changed_during_the_gap(
    kube: fakes.FakeKubeClient, started: Callable[..., informer.Informer]
) -> None:
    for name in ("kept", "changed", "deleted"):
        await kube.create(CM, config_map(name))
    recorder = Recorder()
    inf = started(handler=recorder)
    await asyncio.wait_for(inf.wait_synced(), TIMEOUT)
    await until(lambda: kube.open_watches == 1)
    recorder.clear()

    # Everything below happens without the informer running in between: it sees the watch
    # break, misses the changes, and finds its resourceVersion compacted away.
    kube.break_watches()
    await kube.delete(CM, "deleted", NS)
    await kube.patch(CM, "changed", {"data": {"v": "2"}}, NS)
    await kube.create(CM, config_map("added"))
    kube.compact()

    await until(lambda: inf.relists == 1, "a re-list")
    assert {(seen.type, seen.key) for seen in recorder.events} == {
        (informer.EventType.ADDED, "plugins/added"),
        (informer.EventType.MODIFIED, "plugins/changed"),
        (informer.EventType.DELETED, "plugins/deleted"),
    }
    assert len(recorder.events) == 3, "nothing about the unchanged object"
    deleted = next(seen for seen in recorder.events if seen.type == informer.EventType.DELETED)
    assert deleted.old_version == deleted.version, "the last known state is delivered"
    assert sorted(inf.store.keys()) == ["plugins/added", "plugins/changed", "plugins/kept"]
    assert kube.requests["list"] == 2
    await until(lambda: kube.open_watches == 1, "watching again")
    await kube.delete(CM, "kept", NS)
    await until(lambda: "plugins/kept" not in inf.store, "the watch works after the re-list")


async def test_gone_on_a_live_watch_relists(
    kube: fakes.FakeKubeClient, started: Callable[..., informer.Informer]
) -> None:
    inf = started()
    await asyncio.wait_for(inf.wait_synced(), TIMEOUT)
    await until(lambda: kube.open_watches == 1)
    kube.expire_watches()
    await until(lambda: inf.relists == 1)
    await until(lambda: kube.open_watches == 1)
    assert kube.requests["list"] == 2


async def test_list_failures_back_off_and_never_stop_the_informer(
    kube: fakes.FakeKubeClient, started: Callable[..., informer.Informer]
) -> None:
    ceilings: list[float] = []

    def uniform(low: float, high: float) -> float:
        ceilings.append(high)
        return low

    retry = backoff.Backoff(initial=0.001, cap=0.004, uniform=uniform)
    kube.fail("list", errors.TransportError("refused"), times=4)
    await kube.create(CM, config_map("a"))
    inf = started(retry=retry)
    await asyncio.wait_for(inf.wait_synced(), TIMEOUT)
    assert kube.requests["list"] == 5
    assert ceilings == [0.001, 0.002, 0.004, 0.004]
    assert retry.attempts == 0, "reset by the successful list"
    assert inf.get("plugins/a") is not None


async def test_transport_errors_on_the_watch_resume_without_a_list(
    kube: fakes.FakeKubeClient, started: Callable[..., informer.Informer]
) -> None:
    inf = started()
    await asyncio.wait_for(inf.wait_synced(), TIMEOUT)
    await until(lambda: kube.open_watches == 1)
    kube.fail("watch", errors.TransportError("refused"), times=3)
    kube.break_watches()
    await until(lambda: kube.requests["watch"] == 5 and kube.open_watches == 1, "re-watched")
    await kube.create(CM, config_map("after"))
    await until(lambda: "plugins/after" in inf.store)
    assert kube.requests["list"] == 1


async def test_other_api_errors_on_the_watch_start_over_with_a_list(
    kube: fakes.FakeKubeClient, started: Callable[..., informer.Informer]
) -> None:
    inf = started()
    await asyncio.wait_for(inf.wait_synced(), TIMEOUT)
    await until(lambda: kube.open_watches == 1)
    kube.break_watches(errors.Forbidden(403, "Forbidden", "no"))
    await until(lambda: inf.relists == 1)


async def test_a_watch_closed_by_the_server_resumes_from_the_last_version(
    kube: fakes.FakeKubeClient, started: Callable[..., informer.Informer]
) -> None:
    recorder = Recorder()
    inf = started(handler=recorder)
    await asyncio.wait_for(inf.wait_synced(), TIMEOUT)
    await until(lambda: kube.open_watches == 1)
    await kube.create(CM, config_map("a"))
    await until(lambda: len(recorder.events) == 1)
    kube.end_watches()
    await until(lambda: kube.requests["watch"] == 2 and kube.open_watches == 1)
    watches = [call for call in kube.calls if call.verb == "watch"]
    assert len(watches) == 2
    assert kube.requests["list"] == 1
    assert len(recorder.events) == 1, "nothing replayed twice"


async def test_bookmarks_advance_the_resource_version(
    kube: fakes.FakeKubeClient, started: Callable[..., informer.Informer]
) -> None:
    recorder = Recorder()
    inf = started(handler=recorder)
    await asyncio.wait_for(inf.wait_synced(), TIMEOUT)
    await until(lambda: kube.open_watches == 1)
    listed_at = inf.resource_version
    # Other objects change: the resourceVersion moves on without events for this informer.
    await kube.create(CM, config_map("unrelated", namespace="other"))
    kube.touch()
    kube.bookmark()
    await until(lambda: inf.resource_version == kube.resource_version)
    assert int(inf.resource_version) > int(listed_at)
    assert recorder.events == [], "a bookmark is no event"
    assert len(inf.store) == 0


async def test_a_bookmarked_version_survives_compaction_of_older_versions(
    kube: fakes.FakeKubeClient, started: Callable[..., informer.Informer]
) -> None:
    inf = started()
    await asyncio.wait_for(inf.wait_synced(), TIMEOUT)
    await until(lambda: kube.open_watches == 1)
    kube.compact()  # the list's version is now too old to watch from
    kube.bookmark()
    await until(lambda: inf.resource_version == kube.resource_version)
    kube.break_watches()
    await until(lambda: kube.requests["watch"] == 2 and kube.open_watches == 1)
    assert inf.relists == 0, "resumed from the bookmark, no 410"


async def test_label_selector_is_applied_by_the_server(
    kube: fakes.FakeKubeClient, started: Callable[..., informer.Informer]
) -> None:
    await kube.create(CM, config_map("ours", app="plugin"))
    await kube.create(CM, config_map("theirs", app="other"))
    recorder = Recorder()
    inf = started(handler=recorder, label_selector="app=plugin")
    await asyncio.wait_for(inf.wait_synced(), TIMEOUT)
    await until(lambda: kube.open_watches == 1)
    assert inf.store.keys() == ["plugins/ours"]
    await kube.patch(CM, "ours", {"metadata": {"labels": {"app": "gone"}}}, NS)
    await until(lambda: len(inf.store) == 0, "relabelled object dropped")
    assert recorder.of(informer.EventType.DELETED) == [(informer.EventType.DELETED, "plugins/ours")]


async def test_indexers_follow_changes(
    kube: fakes.FakeKubeClient, started: Callable[..., informer.Informer]
) -> None:
    def owned(name: str, owner_uid: str) -> objects.JsonObject:
        obj = config_map(name)
        obj["metadata"]["ownerReferences"] = [
            {"apiVersion": "v1", "kind": "Owner", "name": "o", "uid": owner_uid, "controller": True}
        ]
        return obj

    await kube.create(CM, owned("a", "uid-1"))
    await kube.create(CM, owned("b", "uid-1"))
    await kube.create(CM, config_map("orphan"))
    inf = started(indexers={cache.CONTROLLER_UID: cache.by_controller_uid})
    await asyncio.wait_for(inf.wait_synced(), TIMEOUT)
    await until(lambda: kube.open_watches == 1)
    names = lambda uid: [objects.name(o) for o in inf.by_index(cache.CONTROLLER_UID, uid)]  # noqa: E731
    assert names("uid-1") == ["a", "b"]

    moved = owned("b", "uid-2")
    await kube.patch(
        CM, "b", {"metadata": {"ownerReferences": moved["metadata"]["ownerReferences"]}}, NS
    )
    await kube.delete(CM, "a", NS)
    await until(lambda: names("uid-2") == ["b"])
    await until(lambda: names("uid-1") == [])


async def test_resync_redelivers_the_cache_without_requests(
    kube: fakes.FakeKubeClient, started: Callable[..., informer.Informer]
) -> None:
    await kube.create(CM, config_map("a"))
    await kube.create(CM, config_map("b"))
    recorder = Recorder()
    inf = started(handler=recorder, resync_period=0.005)
    await asyncio.wait_for(inf.wait_synced(), TIMEOUT)
    await until(lambda: len(recorder.of(informer.EventType.RESYNC)) >= 4, "two resyncs")
    resynced = [seen for seen in recorder.events if seen.type == informer.EventType.RESYNC]
    assert {seen.key for seen in resynced} == {"plugins/a", "plugins/b"}
    assert all(seen.old_version == seen.version for seen in resynced)
    assert kube.requests["list"] == 1
    assert kube.requests["get"] == 0


async def test_a_failing_handler_neither_stops_the_informer_nor_other_handlers(
    kube: fakes.FakeKubeClient, started: Callable[..., informer.Informer]
) -> None:
    def broken(*_: object) -> None:
        raise RuntimeError("bug in a handler")

    recorder = Recorder()
    inf = started(handler=broken)
    inf.add_handler(recorder)
    await asyncio.wait_for(inf.wait_synced(), TIMEOUT)
    await until(lambda: kube.open_watches == 1)
    await kube.create(CM, config_map("a"))
    await kube.create(CM, config_map("b"))
    await until(lambda: len(recorder.events) == 2)
    assert inf.relists == 0


async def test_a_late_handler_first_gets_the_cached_objects(
    kube: fakes.FakeKubeClient, started: Callable[..., informer.Informer]
) -> None:
    await kube.create(CM, config_map("a"))
    inf = started()
    await asyncio.wait_for(inf.wait_synced(), TIMEOUT)
    recorder = Recorder()
    inf.add_handler(recorder)
    assert recorder.of(informer.EventType.ADDED) == [(informer.EventType.ADDED, "plugins/a")]


async def test_cluster_scoped_resources_are_keyed_by_name(
    kube: fakes.FakeKubeClient, started: Callable[..., informer.Informer]
) -> None:
    await kube.create(resources.NAMESPACES, {"metadata": {"name": "team-a"}})
    inf = started(resource=resources.NAMESPACES, namespace=None)
    await asyncio.wait_for(inf.wait_synced(), TIMEOUT)
    assert inf.store.keys() == ["team-a"]


async def test_stop_closes_the_watch(
    kube: fakes.FakeKubeClient, started: Callable[..., informer.Informer]
) -> None:
    inf = started()
    await asyncio.wait_for(inf.wait_synced(), TIMEOUT)
    await until(lambda: kube.open_watches == 1)
    await inf.stop()
    assert kube.open_watches == 0


async def test_watches_that_end_at_once_back_off() -> None:
    class Closing(fakes.FakeKubeClient):
        async def watch(self, *args: Any, **kwargs: Any) -> AsyncIterator[Any]:  # type: ignore[override]
            self.requests["watch"] += 1
            return
            yield

    closing = Closing()
    retry = backoff.Backoff(initial=0.001, cap=0.004)
    inf = informer.Informer(closing, CM, namespace=NS, retry=retry)
    inf.start()
    try:
        await until(lambda: closing.requests["watch"] >= 5)
        assert retry.attempts >= 4, "each empty watch counted as a failure"
    finally:
        await inf.stop()
