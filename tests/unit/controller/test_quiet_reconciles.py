"""Work the latency benchmark showed to be wasted: a status written twice because the cache had
not caught up with the first write, and reconciles for pod updates that change nothing the
status shows (docs/benchmarks.md)."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest
from gpu_reconciler import CONFIG, GPU, GPU_PLUGINS, NAMESPACE, WRITE_AT_ONCE, caches

import fakes
from deviceplugin_operator import manager
from deviceplugin_operator.controller import events, informer, reconciler
from deviceplugin_operator.kube import errors, objects, resources


async def reconciler_of_one_resource() -> tuple[
    fakes.FakeKubeClient, reconciler.Caches, reconciler.Reconciler
]:
    """A GpuDevicePlugin ``a`` stored and cached, and a reconciler over those caches."""
    kube = fakes.FakeKubeClient()
    stored = await kube.create(GPU_PLUGINS, {"metadata": {"name": "a"}, "spec": {}})
    cached = caches(kube)
    cached.plugins.store.upsert(copy.deepcopy(stored))
    rec = reconciler.Reconciler(
        GPU,
        CONFIG,
        kube,
        cached,
        recorder=events.Recorder(kube),
        **WRITE_AT_ONCE,
    )
    return kube, cached, rec


def queues(controller: manager.Controller, deliver: Callable[[], None]) -> bool:
    """Whether delivering an event added anything to the controller's queue."""
    before = controller.queue.adds_total
    deliver()
    queued = controller.queue.adds_total > before
    controller.queue.reopen()
    return queued


async def test_a_status_is_not_written_again_until_the_cache_shows_the_first_write() -> None:
    kube, cached, rec = await reconciler_of_one_resource()

    await rec.reconcile("a")
    assert kube.requests["create"] >= 1
    created = kube.stored(resources.DAEMON_SETS)[0]
    cached.daemonsets.store.upsert(copy.deepcopy(created))
    kube.reset_counts()

    # Woken by the DaemonSet's ADDED event before the resource's own MODIFIED event arrived:
    # the cached resource still has no status, the one just written is not written again.
    await rec.reconcile("a")
    assert kube.writes == 0

    # The cache catches up: still nothing to write.
    current = await kube.get(GPU_PLUGINS, "a")
    cached.plugins.store.upsert(copy.deepcopy(current))
    await rec.reconcile("a")
    assert kube.writes == 0

    # Someone else changes the status: the cache moves past it, and it is written again.
    changed = copy.deepcopy(current)
    changed["status"]["numberReady"] = 7
    changed["metadata"]["resourceVersion"] = "999"
    cached.plugins.store.upsert(changed)
    await rec.reconcile("a")
    assert kube.requests["patch"] == 1


def plugin_pod(owner: dict[str, Any], node: str | None) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": "p",
            "namespace": NAMESPACE,
            "resourceVersion": "1",
            "ownerReferences": [
                {
                    "apiVersion": "apps/v1",
                    "kind": "DaemonSet",
                    "name": objects.name(owner),
                    "uid": objects.uid(owner),
                    "controller": True,
                }
            ],
        },
        "spec": {"nodeName": node} if node else {},
        "status": {"phase": "Pending"},
    }


def test_pod_updates_that_change_no_status_input_queue_nothing() -> None:
    kube = fakes.FakeKubeClient()
    cached = caches(kube)
    ds = {
        "metadata": {
            "name": "intel-gpu-plugin-a",
            "namespace": NAMESPACE,
            "uid": "ds-uid",
            "ownerReferences": [
                {
                    "apiVersion": "deviceplugin.intel.com/v1",
                    "kind": "GpuDevicePlugin",
                    "name": "a",
                    "uid": "cr-uid",
                    "controller": True,
                }
            ],
        }
    }
    cached.daemonsets.store.upsert(ds)
    rec = reconciler.Reconciler(
        GPU,
        CONFIG,
        kube,
        cached,
        recorder=events.Recorder(kube),
        **WRITE_AT_ONCE,
    )
    controller = manager.Controller(rec, 1)
    modified = informer.EventType.MODIFIED

    def queued_by(new: dict[str, Any], old: dict[str, Any] | None, kind: Any = modified) -> bool:
        return queues(controller, lambda: controller.on_pod(kind, new, old))

    pending = plugin_pod(ds, None)
    assert queued_by(pending, None, informer.EventType.ADDED)
    scheduled = plugin_pod(ds, "node-1")
    assert queued_by(scheduled, pending)

    running = copy.deepcopy(scheduled)
    running["status"] = {
        "phase": "Running",
        "podIP": "10.0.0.1",
        "conditions": [{"type": "Ready", "status": "True"}],
        "containerStatuses": [{"name": "c", "image": "x", "state": {"running": {}}}],
    }
    # Readiness is an input: DevicesAdvertised judges the nodes of ready plugin pods.
    assert queued_by(running, scheduled)
    moved = copy.deepcopy(running)
    moved["status"]["podIP"] = "10.0.0.2"
    moved["status"]["conditions"].append({"type": "ContainersReady", "status": "True"})
    assert not queued_by(moved, running)  # IPs and other conditions: nothing the status shows

    crashing = copy.deepcopy(running)
    crashing["status"]["containerStatuses"][0]["state"] = {
        "waiting": {"reason": "CrashLoopBackOff", "message": "back-off"}
    }
    assert queued_by(crashing, running)

    failed = copy.deepcopy(running)
    failed["status"]["phase"] = "Failed"
    assert queued_by(failed, running)

    going = copy.deepcopy(running)
    going["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    assert queued_by(going, running)
    assert queued_by(going, going, informer.EventType.DELETED)


async def test_the_watch_events_of_our_own_writes_queue_no_reconcile() -> None:
    kube, _, rec = await reconciler_of_one_resource()
    controller = manager.Controller(rec, 1)
    added, modified = informer.EventType.ADDED, informer.EventType.MODIFIED

    def queued_by(handler: Any, kind: Any, new: dict[str, Any]) -> bool:
        return queues(controller, lambda: handler(kind, new, None))

    await rec.reconcile("a")
    created = copy.deepcopy(kube.stored(resources.DAEMON_SETS)[0])
    resource = copy.deepcopy(await kube.get(GPU_PLUGINS, "a"))
    assert resource.get("status"), "the reconcile wrote a status"

    # A deletion is never an echo (and does not use up the one of the write).
    assert queued_by(controller.on_daemonset, informer.EventType.DELETED, created)
    # The DaemonSet's ADDED event and the resource's MODIFIED event are our own writes.
    assert not queued_by(controller.on_daemonset, added, created)
    assert not queued_by(controller.on_plugin, modified, resource)
    # Matched once: the same version delivered again (a relist) reconciles.
    assert queued_by(controller.on_daemonset, added, created)
    assert queued_by(controller.on_plugin, modified, resource)

    # A version someone else wrote is no echo.
    other = copy.deepcopy(created)
    other["metadata"]["resourceVersion"] = "12345"
    assert queued_by(controller.on_daemonset, modified, other)
    spec_change = copy.deepcopy(resource)
    spec_change["spec"]["logLevel"] = 5
    spec_change["metadata"]["resourceVersion"] = "67890"
    assert queued_by(controller.on_plugin, modified, spec_change)


async def test_a_status_is_compared_with_our_last_write_while_the_cache_is_behind_it() -> None:
    kube, cached, rec = await reconciler_of_one_resource()
    await rec.reconcile("a")
    ds = copy.deepcopy(kube.stored(resources.DAEMON_SETS)[0])
    cached.daemonsets.store.upsert(ds)
    cached.plugins.store.upsert(copy.deepcopy(await kube.get(GPU_PLUGINS, "a")))
    assert "nodeNames" not in (await kube.get(GPU_PLUGINS, "a"))["status"]

    # A plugin pod is scheduled: the status says so. The cache still shows the old status.
    cached.pods.store.upsert(plugin_pod(ds, "node-1"))
    await rec.reconcile("a")
    assert (await kube.get(GPU_PLUGINS, "a"))["status"]["nodeNames"] == ["node-1"]

    # The pod goes before that write came back: the status wanted now equals the cached one,
    # but not the server's, which has our last write.
    cached.pods.store.remove(f"{NAMESPACE}/p")
    await rec.reconcile("a")
    assert "nodeNames" not in (await kube.get(GPU_PLUGINS, "a"))["status"]


async def test_a_write_is_no_echo_once_another_reconcile_has_run_before_it_came_back() -> None:
    kube, _, rec = await reconciler_of_one_resource()
    controller = manager.Controller(rec, 1)
    await rec.reconcile("a")
    # This reconcile read a cache without the DaemonSet and the status just written: it
    # creates the DaemonSet again, which the API server refuses (the controller retries).
    with pytest.raises(errors.AlreadyExists, match='daemonsets "intel-gpu-plugin-a"'):
        await rec.reconcile("a")
    written = await kube.get(GPU_PLUGINS, "a")
    assert queues(
        controller, lambda: controller.on_plugin(informer.EventType.MODIFIED, written, None)
    )


def node(name: str, version: str, **figures: str) -> dict[str, Any]:
    """A node as the node cache keeps it, plus a heartbeat field the cache would drop."""
    return {
        "metadata": {"name": name, "resourceVersion": version},
        "status": {
            "capacity": dict(figures),
            "allocatable": dict(figures),
            "conditions": [{"type": "Ready", "lastHeartbeatTime": version}],
        },
    }


async def ready_plugin_on(
    node_name: str,
) -> tuple[fakes.FakeKubeClient, reconciler.Caches, reconciler.Reconciler, manager.Controller]:
    """Resource ``a`` reconciled once, its DaemonSet cached, a ready plugin pod on a node."""
    kube, cached, rec = await reconciler_of_one_resource()
    await rec.reconcile("a")
    ds = copy.deepcopy(kube.stored(resources.DAEMON_SETS)[0])
    cached.daemonsets.store.upsert(ds)
    pod = plugin_pod(ds, node_name)
    pod["status"] = {
        "phase": "Running",
        "conditions": [
            {"type": "Ready", "status": "True", "lastTransitionTime": "2020-01-01T00:00:00Z"}
        ],
    }
    cached.pods.store.upsert(pod)
    return kube, cached, rec, manager.Controller(rec, 1)


async def test_node_events_queue_the_residents_only_when_the_domains_figures_change() -> None:
    *_, controller = await ready_plugin_on("node-1")
    modified, added = informer.EventType.MODIFIED, informer.EventType.ADDED

    def queued_by(kind: Any, new: dict[str, Any], old: dict[str, Any] | None) -> bool:
        return queues(controller, lambda: controller.on_node(kind, new, old))

    i915 = {"gpu.intel.com/i915": "1"}
    first = node("node-1", "1", **i915)
    assert queued_by(added, first, None)
    assert not queued_by(modified, node("node-1", "2", **i915), first), "a heartbeat"
    assert not queued_by(modified, node("node-1", "3", **i915, cpu="31"), first)
    assert not queued_by(
        modified, node("node-1", "4", **i915, **{"qat.intel.com/generic": "4"}), first
    ), "another kind's domain"
    assert queued_by(modified, node("node-1", "5"), first), "the devices are gone"
    assert queued_by(modified, node("node-1", "6", **{"gpu.intel.com/i915": "2"}), first)
    # No plugin of this kind on the node: nothing to look at.
    assert not queued_by(modified, node("node-2", "7"), node("node-2", "1", **i915))
    assert not queued_by(added, node("node-9", "1"), None), "a new node without devices"
    assert not queued_by(informer.EventType.RESYNC, first, first)


async def test_unchanged_devices_write_nothing_and_a_change_is_one_status_patch() -> None:
    kube, cached, rec, _ = await ready_plugin_on("node-1")
    cached.nodes.store.upsert(node("node-1", "1", **{"gpu.intel.com/i915": "1"}))

    async def settle() -> None:
        """Reconcile until nothing is written, the cache following each write."""
        for _ in range(3):
            kube.reset_counts()
            await rec.reconcile("a")
            cached.plugins.store.upsert(copy.deepcopy(await kube.get(GPU_PLUGINS, "a")))
            if not kube.writes:
                return
        raise AssertionError("the status keeps being written")

    await settle()
    stored = (await kube.get(GPU_PLUGINS, "a"))["status"]
    assert stored["devices"] == [
        {"resource": "gpu.intel.com/i915", "capacity": 1, "allocatable": 1, "nodes": 1}
    ]
    assert stored["deviceTotals"] == "i915=1"
    # Heartbeats and a resync: zero writes.
    for version in ("2", "3"):
        cached.nodes.store.upsert(node("node-1", version, **{"gpu.intel.com/i915": "1"}))
        kube.reset_counts()
        assert await rec.reconcile("a") is None
        assert kube.writes == 0, kube.calls
    # The node loses its devices: one patch, False at once (ready long ago).
    cached.nodes.store.upsert(node("node-1", "4"))
    kube.reset_counts()
    await rec.reconcile("a")
    assert kube.requests["patch"] == 1
    stored = (await kube.get(GPU_PLUGINS, "a"))["status"]
    (advertised,) = [c for c in stored["conditions"] if c["type"] == "DevicesAdvertised"]
    assert (advertised["status"], advertised["reason"]) == ("False", "NoDevices")
    assert stored["deviceTotals"] == "none"


async def test_a_deleted_daemonset_queues_the_resources_beside_its_pods() -> None:
    """Its pods stop counting in their neighbours' overlap condition when it goes (they no
    longer trace back to a resource), and their own deletions later cannot say whose they
    were: the neighbours are queued with the DaemonSet's deletion."""
    _, cached, _, controller = await ready_plugin_on("node-1")
    ghost_ds = {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": {
            "name": "intel-gpu-plugin-ghost",
            "namespace": NAMESPACE,
            "uid": "ghost-ds",
            "resourceVersion": "7",
            "ownerReferences": [
                {
                    "apiVersion": "deviceplugin.intel.com/v1",
                    "kind": "GpuDevicePlugin",
                    "name": "ghost",
                    "uid": "ghost-uid",
                    "controller": True,
                }
            ],
        },
    }
    ghost_pod = plugin_pod(ghost_ds, "node-1")
    ghost_pod["metadata"]["name"] = "ghost-pod"
    cached.pods.store.upsert(ghost_pod)  # the DaemonSet is no longer cached: handlers come after

    controller.on_daemonset(informer.EventType.DELETED, ghost_ds, None)
    queued = {await controller.queue.get() for _ in range(controller.queue.depth)}
    assert queued == {"ghost", "a"}
