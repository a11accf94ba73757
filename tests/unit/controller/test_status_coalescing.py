"""Status writes of one resource are at least ``STATUS_INTERVAL`` apart, and none follows a
DaemonSet write at once: the burst of DaemonSet and pod changes after a write ends in one or
two status writes with the final state instead of one per intermediate state
(docs/benchmarks.md, "Status writes per change"). No status change is ever lost: a write due
inside the interval is made at its end."""

from __future__ import annotations

import asyncio
import copy

from gpu_reconciler import CONFIG, GPU, GPU_PLUGINS, caches, one_gpu_resource

import fakes
from deviceplugin_operator import manager
from deviceplugin_operator.controller import events, reconciler
from deviceplugin_operator.kube import objects, resources

INTERVAL = 0.05


class Clock:
    """A monotonic clock the test moves."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


async def one_resource(
    clock: Clock,
) -> tuple[fakes.FakeKubeClient, reconciler.Caches, reconciler.Reconciler]:
    return await one_gpu_resource(status_interval=INTERVAL, monotonic=clock)


async def written_once(
    clock: Clock,
) -> tuple[fakes.FakeKubeClient, reconciler.Caches, reconciler.Reconciler]:
    """Resource ``a`` with its DaemonSet and its first status written, the caches caught up."""
    kube, cached, rec = await one_resource(clock)
    await rec.reconcile("a")
    await sync_caches(kube, cached)
    clock.now += INTERVAL
    await rec.reconcile("a")
    await sync_caches(kube, cached)
    return kube, cached, rec


def status_patches(kube: fakes.FakeKubeClient) -> int:
    return sum(1 for call in kube.calls if call.verb == "patch" and call.resource == GPU.plural)


async def sync_caches(kube: fakes.FakeKubeClient, cached: reconciler.Caches) -> None:
    """The informers catch up with everything stored."""
    cached.plugins.store.upsert(copy.deepcopy(await kube.get(GPU_PLUGINS, "a")))
    for ds in kube.stored(resources.DAEMON_SETS):
        cached.daemonsets.store.upsert(copy.deepcopy(ds))


def ds_status(kube: fakes.FakeKubeClient, cached: reconciler.Caches, **status: int) -> None:
    """The DaemonSet controller's answer, as the DaemonSet informer shows it."""
    (ds,) = kube.stored(resources.DAEMON_SETS)
    changed = copy.deepcopy(ds)
    changed["status"] = dict(status)
    cached.daemonsets.store.upsert(changed)


async def test_a_created_daemonset_is_not_followed_by_a_status_write_at_once() -> None:
    clock = Clock()
    kube, cached, rec = await one_resource(clock)

    wait = await rec.reconcile("a")

    assert len(kube.stored(resources.DAEMON_SETS)) == 1, "the DaemonSet is never held back"
    assert status_patches(kube) == 0
    assert wait is not None
    assert abs(wait - INTERVAL) < 1e-9, "the reconcile comes back when the status may be written"

    await sync_caches(kube, cached)
    clock.now += INTERVAL
    assert await rec.reconcile("a") is None
    assert status_patches(kube) == 1
    written = (await kube.get(GPU_PLUGINS, "a"))["status"]
    assert written["controlledDaemonSet"]["name"] == "intel-gpu-plugin-a"


async def test_changes_inside_the_interval_are_one_write_of_the_last_state() -> None:
    clock = Clock()
    kube, cached, rec = await one_resource(clock)
    await rec.reconcile("a")
    await sync_caches(kube, cached)

    # The DaemonSet controller and the pods move through three states within 30 ms.
    for ready, elapsed in ((0, 0.01), (1, 0.02), (2, 0.03)):
        clock.now = 100.0 + elapsed
        ds_status(kube, cached, desiredNumberScheduled=2, numberReady=ready)
        wait = await rec.reconcile("a")
        assert wait is not None
        assert abs(wait - (INTERVAL - elapsed)) < 1e-9
    assert status_patches(kube) == 0

    clock.now = 100.0 + INTERVAL
    await rec.reconcile("a")
    assert status_patches(kube) == 1
    written = (await kube.get(GPU_PLUGINS, "a"))["status"]
    assert (written["desiredNumberScheduled"], written["numberReady"]) == (2, 2)


async def test_a_change_after_a_quiet_interval_is_written_at_once() -> None:
    clock = Clock()
    kube, cached, rec = await written_once(clock)
    assert status_patches(kube) == 1

    clock.now += 10 * INTERVAL
    ds_status(kube, cached, desiredNumberScheduled=1, numberReady=1)
    assert await rec.reconcile("a") is None
    assert status_patches(kube) == 2

    # ... and the next one, within the interval of that write, waits for its end.
    clock.now += INTERVAL / 5
    ds_status(kube, cached, desiredNumberScheduled=1, numberReady=0)
    assert await rec.reconcile("a") is not None
    assert status_patches(kube) == 2


async def test_nothing_to_write_returns_no_wait() -> None:
    clock = Clock()
    kube, _, rec = await written_once(clock)
    kube.reset_counts()

    clock.now += INTERVAL / 10  # inside the interval, but the status is what is stored
    assert await rec.reconcile("a") is None
    assert kube.writes == 0


async def test_the_workers_write_a_held_status_without_another_event() -> None:
    """With the real clock and queue: the requeue after the interval brings the write."""
    kube = fakes.FakeKubeClient()
    await kube.create(GPU_PLUGINS, {"metadata": {"name": "a"}, "spec": {}})
    cached = caches(kube)
    rec = reconciler.Reconciler(
        GPU, CONFIG, kube, cached, recorder=events.Recorder(kube), status_interval=INTERVAL
    )
    controller = manager.Controller(rec, 1)
    cached.daemonsets.add_handler(controller.on_daemonset)
    informers = [cached.plugins, cached.daemonsets, cached.pods]
    for running in informers:
        running.start()
        await running.wait_synced()
    worker = asyncio.create_task(controller.work())
    try:
        controller.queue.add("a")
        for _ in range(1000):  # up to 5 s
            if (await kube.get(GPU_PLUGINS, "a")).get("status"):
                break
            await asyncio.sleep(0.005)
        assert objects.name(kube.stored(resources.DAEMON_SETS)[0]) == "intel-gpu-plugin-a"
        assert status_patches(kube) == 1
    finally:
        controller.queue.shutdown()
        worker.cancel()
        for running in informers:
            await running.stop()


async def test_a_resource_turning_ready_is_written_at_once() -> None:
    """What ``kubectl wait --for=condition=Ready`` waits for is not held back by the interval
    (the convergence scenario's status lag doubled when it was)."""
    clock = Clock()
    kube, cached, rec = await one_resource(clock)
    await rec.reconcile("a")
    await sync_caches(kube, cached)
    clock.now += INTERVAL
    ds_status(kube, cached, observedGeneration=1, desiredNumberScheduled=2, numberReady=1)
    await rec.reconcile("a")
    await sync_caches(kube, cached)
    assert status_patches(kube) == 1

    clock.now += INTERVAL / 10
    ds_status(kube, cached, observedGeneration=1, desiredNumberScheduled=2, numberReady=2)
    assert await rec.reconcile("a") is None
    assert status_patches(kube) == 2
    written = (await kube.get(GPU_PLUGINS, "a"))["status"]
    (ready,) = [c for c in written["conditions"] if c["type"] == "Ready"]
    assert ready["status"] == "True"
