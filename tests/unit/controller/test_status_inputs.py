"""A change of any input of a resource's status is written: the DaemonSet's status, a pod's
readiness, a node's devices, the resource's generation, the conditions someone else stored,
the reconciler's messages, and time itself (a node's devices grace running out). The
reconciler keeps what it computed last (the stored conditions it parsed, the status and what
it was computed from); none of it may hide a change. Each test changes one input at a time,
within the second of a reconcile that computed the status from all the others."""

from __future__ import annotations

import copy
import datetime
from typing import Any

from gpu_reconciler import CONFIG, GPU, GPU_PLUGINS, NAMESPACE, WRITE_AT_ONCE, caches

import fakes
from deviceplugin_operator.controller import events, reconciler
from deviceplugin_operator.kube import objects, resources
from deviceplugin_operator.reconcile import status

START = datetime.datetime(2026, 7, 1, 12, 0, 0, tzinfo=datetime.UTC)
GRACE = datetime.timedelta(minutes=5)


class Clock:
    """The wall clock of the reconciler, moved by the test."""

    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime.datetime:
        return self.now


class World:
    """Resource ``a``, its DaemonSet with two pods on nodes n0 and n1, the caches, the
    reconciler; each change goes to the caches as an informer would put it there."""

    def __init__(self, kube: fakes.FakeKubeClient, cached: reconciler.Caches) -> None:
        self.kube = kube
        self.cached = cached
        self.clock = Clock()
        self.rec = reconciler.Reconciler(
            GPU,
            CONFIG,
            kube,
            cached,
            recorder=events.Recorder(kube),
            clock=self.clock,
            devices_grace=GRACE,
            **WRITE_AT_ONCE,
        )

    @classmethod
    async def ready(cls) -> World:
        """Everything ready and advertising, the status written and cached."""
        kube = fakes.FakeKubeClient()
        stored = await kube.create(GPU_PLUGINS, {"metadata": {"name": "a"}, "spec": {}})
        cached = caches(kube)
        cached.plugins.store.upsert(copy.deepcopy(stored))
        world = cls(kube, cached)
        await world.rec.reconcile("a")
        (ds,) = kube.stored(resources.DAEMON_SETS)
        world.daemonset(ds, ready=2)
        for index in range(2):
            world.pod(index, ready_since=START - datetime.timedelta(hours=1))
            world.node(index, "2")
        await world.reconcile()
        world.clock.now += datetime.timedelta(seconds=7)
        await world.settle()
        return world

    async def settle(self) -> None:
        """A reconcile that finds nothing to write (the last one computed from every input
        as it is now)."""
        self.kube.reset_counts()
        await self.reconcile()
        assert self.kube.writes == 0

    def daemonset(self, ds: dict[str, Any] | None = None, *, ready: int) -> None:
        ds = copy.deepcopy(ds or self.cached.daemonsets.list()[0])
        ds["status"] = {
            "observedGeneration": 1,
            "desiredNumberScheduled": 2,
            "numberReady": ready,
            "updatedNumberScheduled": 2,
        }
        self.cached.daemonsets.store.upsert(ds)

    def pod(self, index: int, *, ready_since: datetime.datetime | None) -> None:
        (ds,) = self.cached.daemonsets.list()
        ready = {"type": "Ready", "status": "False"}
        if ready_since is not None:
            since = ready_since.isoformat().replace("+00:00", "Z")
            ready = {"type": "Ready", "status": "True", "lastTransitionTime": since}
        owner = {"apiVersion": "apps/v1", "kind": "DaemonSet", "controller": True}
        owner |= {"name": objects.name(ds), "uid": objects.uid(ds)}
        self.cached.pods.store.upsert(
            status.pod_essentials(
                {
                    "metadata": {
                        "name": f"p{index}",
                        "namespace": NAMESPACE,
                        "uid": f"pod-{index}",
                        "ownerReferences": [owner],
                    },
                    "spec": {"nodeName": f"n{index}"},
                    "status": {"phase": "Running", "conditions": [ready]},
                }
            )
        )

    def node(self, index: int, devices: str | None) -> None:
        figures = {} if devices is None else {"gpu.intel.com/i915": devices}
        self.cached.nodes.store.upsert(
            status.node_essentials(
                {
                    "metadata": {"name": f"n{index}"},
                    "status": {"capacity": figures, "allocatable": figures},
                },
                ("gpu.intel.com",),
            )
        )

    async def reconcile(self) -> float | None:
        """One reconcile, then the resource's informer catches up with what it wrote."""
        wait = await self.rec.reconcile("a")
        self.cached.plugins.store.upsert(copy.deepcopy(await self.kube.get(GPU_PLUGINS, "a")))
        return wait

    async def stored(self) -> dict[str, Any]:
        return dict((await self.kube.get(GPU_PLUGINS, "a"))["status"])

    async def condition(self, kind: str) -> dict[str, Any]:
        (found,) = [c for c in (await self.stored())["conditions"] if c["type"] == kind]
        return dict(found)


def at(moment: datetime.datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


async def test_the_ready_world_is_written_once_and_then_left_alone() -> None:
    world = await World.ready()
    written = await world.stored()
    assert (written["numberReady"], written["devices"][0]["capacity"]) == (2, 4)
    assert (await world.condition("DevicesAdvertised"))["status"] == "True"
    world.clock.now += datetime.timedelta(minutes=1)
    await world.settle()
    await world.settle()


async def test_a_daemonset_status_change_is_written() -> None:
    world = await World.ready()
    world.daemonset(ready=1)
    await world.reconcile()
    assert (await world.stored())["numberReady"] == 1
    ready = await world.condition("Ready")
    assert (ready["status"], ready["lastTransitionTime"]) == ("False", at(world.clock.now))


async def test_a_pod_readiness_change_is_written() -> None:
    world = await World.ready()
    world.node(0, None)  # n0 advertises nothing: its ready pod's node is reported
    await world.reconcile()
    assert (await world.condition("DevicesAdvertised"))["reason"] == "SomeNodesWithoutDevices"

    await world.settle()
    world.pod(0, ready_since=None)
    await world.reconcile()
    assert (await world.condition("DevicesAdvertised"))["reason"] == "AllNodesAdvertise"


async def test_a_node_devices_change_is_written() -> None:
    world = await World.ready()
    world.node(1, "3")
    await world.reconcile()
    assert (await world.stored())["devices"][0]["capacity"] == 5
    assert (await world.stored())["deviceTotals"] == "i915=5"


async def test_a_generation_change_is_written() -> None:
    world = await World.ready()
    resource = copy.deepcopy(world.cached.plugins.get("a"))
    assert resource is not None
    resource["metadata"]["generation"] = 5
    world.cached.plugins.store.upsert(resource)
    await world.reconcile()
    written = await world.stored()
    assert written["observedGeneration"] == 5
    assert {c["observedGeneration"] for c in written["conditions"]} == {5}


async def test_the_end_of_a_devices_grace_is_written_without_any_other_change() -> None:
    world = await World.ready()
    world.clock.now += datetime.timedelta(hours=1)
    world.pod(0, ready_since=world.clock.now - datetime.timedelta(minutes=1))
    world.node(0, None)
    wait = await world.reconcile()
    assert (await world.condition("DevicesAdvertised"))["reason"] == "WaitingForDevices"
    assert wait == (GRACE - datetime.timedelta(minutes=1)).total_seconds() + 1.0

    world.clock.now += datetime.timedelta(seconds=30)  # not yet: the same status
    world.kube.reset_counts()
    assert await world.reconcile() == wait - 30
    assert world.kube.writes == 0
    assert (await world.condition("DevicesAdvertised"))["reason"] == "WaitingForDevices"

    world.clock.now += datetime.timedelta(seconds=wait - 30)
    assert await world.reconcile() is None
    advertised = await world.condition("DevicesAdvertised")
    assert (advertised["status"], advertised["reason"]) == ("False", "SomeNodesWithoutDevices")
    assert advertised["lastTransitionTime"] == at(world.clock.now)


async def test_conditions_someone_else_stores_are_read_again() -> None:
    """The parse of the stored conditions is kept while they stay the same: a condition
    changed by another writer is put back with a new transition time, and one that another
    writer sets to what we would write keeps the time it carries."""
    world = await World.ready()
    ready_since = (await world.condition("Ready"))["lastTransitionTime"]
    resource = copy.deepcopy(world.cached.plugins.get("a"))
    assert resource is not None
    for condition in resource["status"]["conditions"]:
        if condition["type"] == "Ready":
            condition["status"] = "Unknown"
    resource["metadata"]["resourceVersion"] = "900"
    world.cached.plugins.store.upsert(resource)
    await world.reconcile()
    ready = await world.condition("Ready")
    assert ready["status"] == "True"
    assert ready["lastTransitionTime"] == at(world.clock.now) != ready_since

    world.clock.now += datetime.timedelta(seconds=7)
    await world.settle()
    earlier = at(START - datetime.timedelta(days=1))
    resource = copy.deepcopy(world.cached.plugins.get("a"))
    assert resource is not None
    for condition in resource["status"]["conditions"]:
        if condition["type"] == "Ready":
            condition["lastTransitionTime"] = earlier
    resource["metadata"]["resourceVersion"] = "901"
    world.cached.plugins.store.upsert(resource)
    world.kube.reset_counts()
    world.daemonset(ready=2)  # a reconcile for another reason: nothing changes
    await world.rec.reconcile("a")
    assert world.kube.writes == 0
    world.node(1, "3")
    await world.rec.reconcile("a")
    assert world.kube.writes == 1
    assert (await world.condition("Ready"))["lastTransitionTime"] == earlier


async def test_a_message_of_the_reconciler_is_written() -> None:
    world = await World.ready()
    world.rec.nodes_unreadable = "RBAC denied: list nodes"
    await world.reconcile()
    advertised = await world.condition("DevicesAdvertised")
    assert (advertised["reason"], advertised["message"]) == (
        "NodesNotReadable",
        "RBAC denied: list nodes",
    )
    assert "devices" not in await world.stored()


async def test_a_deleted_resource_leaves_nothing_behind() -> None:
    world = await World.ready()
    assert "a" in world.rec._tracked
    world.cached.plugins.store.remove("a")
    await world.rec.reconcile("a")
    assert "a" not in world.rec._tracked
