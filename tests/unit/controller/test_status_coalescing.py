"""Status writes of one resource are at least ``STATUS_INTERVAL`` apart, and none follows a
DaemonSet write at once: the burst of DaemonSet and pod changes after a write ends in one or
two status writes with the final state instead of one per intermediate state
(docs/benchmarks.md, "Status writes per change"). A write that only counts (pods, nodes,
devices, the conditions' messages) waits ``PROGRESS_INTERVAL`` after the last one. No status
change is ever lost: a write due inside an interval is made at its end."""

from __future__ import annotations

import asyncio
import copy
from typing import Any

import pytest
from gpu_reconciler import CONFIG, GPU, GPU_PLUGINS, caches, one_gpu_resource

import fakes
from deviceplugin_operator import manager
from deviceplugin_operator.controller import events, reconciler
from deviceplugin_operator.kube import objects, resources

INTERVAL = 0.05
PROGRESS = 10 * INTERVAL


class Clock:
    """A monotonic clock the test moves."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


async def one_resource(
    clock: Clock,
) -> tuple[fakes.FakeKubeClient, reconciler.Caches, reconciler.Reconciler]:
    return await one_gpu_resource(
        status_interval=INTERVAL, progress_interval=PROGRESS, monotonic=clock
    )


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

    clock.now += PROGRESS
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


async def test_counts_alone_wait_for_the_progress_interval_and_are_written_once() -> None:
    clock = Clock()
    kube, cached, rec = await written_once(clock)
    written_at = clock.now
    assert status_patches(kube) == 1

    # Plugin pods come up one after another, each past the status interval of the last write.
    for desired, elapsed in ((1, 2 * INTERVAL), (2, 4 * INTERVAL), (3, 6 * INTERVAL)):
        clock.now = written_at + elapsed
        ds_status(kube, cached, desiredNumberScheduled=desired, numberReady=0)
        wait = await rec.reconcile("a")
        assert wait is not None
        assert abs(wait - (PROGRESS - elapsed)) < 1e-9, "it comes back when it may write"
    assert status_patches(kube) == 1

    clock.now = written_at + PROGRESS
    assert await rec.reconcile("a") is None
    assert status_patches(kube) == 2
    written = (await kube.get(GPU_PLUGINS, "a"))["status"]
    assert (written["desiredNumberScheduled"], written["numberReady"]) == (3, 0)


async def test_a_new_generation_is_written_after_the_status_interval_only() -> None:
    clock = Clock()
    kube, cached, rec = await written_once(clock)
    stored = await kube.get(GPU_PLUGINS, "a")
    assert stored["status"]["observedGeneration"] == 1

    changed = copy.deepcopy(stored)
    changed["metadata"]["generation"] = 2  # a spec change that renders the same DaemonSet
    cached.plugins.store.upsert(changed)
    clock.now += 2 * INTERVAL  # past the status interval, well inside the progress interval
    await rec.reconcile("a")
    assert status_patches(kube) == 2
    assert (await kube.get(GPU_PLUGINS, "a"))["status"]["observedGeneration"] == 2


def condition(kind: str, state: str, reason: str, message: str) -> dict[str, Any]:
    return {
        "type": kind,
        "status": state,
        "reason": reason,
        "message": message,
        "observedGeneration": 1,
        "lastTransitionTime": "2026-01-01T00:00:00Z",
    }


STORED = {
    "observedGeneration": 1,
    "controlledDaemonSet": {"name": "intel-gpu-plugin-a", "uid": "u1"},
    "desiredNumberScheduled": 3,
    "numberReady": 1,
    "nodeNames": ["n0"],
    "conditions": [
        condition("Ready", "False", "PodsNotReady", "1 of 3 plugin pods are ready"),
        condition("Degraded", "False", "AsExpected", "No problem observed"),
    ],
}


def changed(**fields: Any) -> dict[str, Any]:
    return {**copy.deepcopy(STORED), **fields}


@pytest.mark.parametrize(
    ("wanted", "counts_only"),
    [
        (changed(numberReady=2, nodeNames=["n0", "n1"]), True),
        (
            changed(
                numberReady=2,
                conditions=[
                    condition("Ready", "False", "PodsNotReady", "2 of 3 plugin pods are ready"),
                    STORED["conditions"][1],
                ],
            ),
            True,
        ),
        (changed(observedGeneration=2), False),
        (changed(controlledDaemonSet={"name": "intel-gpu-plugin-a", "uid": "u2"}), False),
        (
            changed(
                conditions=[
                    STORED["conditions"][0],
                    condition("Degraded", "True", "PodsFailing", "1 pod fails"),
                ]
            ),
            False,
        ),
        (
            changed(
                conditions=[
                    condition("Ready", "False", "NoNodes", "No node is selected"),
                    STORED["conditions"][1],
                ]
            ),
            False,
        ),
        (changed(conditions=STORED["conditions"][:1]), False),
        ({k: v for k, v in STORED.items() if k != "nodeNames"}, False),
    ],
    ids=[
        "counts",
        "a message",
        "observedGeneration",
        "another DaemonSet",
        "a condition's status",
        "a condition's reason",
        "a condition gone",
        "a field gone",
    ],
)
def test_what_counts_only(wanted: dict[str, Any], counts_only: bool) -> None:
    assert reconciler._counts_only(STORED, wanted) is counts_only
    assert reconciler._counts_only({}, wanted) is False, "a first status is never held"
