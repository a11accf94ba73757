"""Interleavings with an apiserver restart that must not lose a change (issue 14).

After a restart the watches of a custom resource are answered ``429 storage is
(re)initializing`` for a while, longer than those of DaemonSets and Pods: reconciles woken by
DaemonSet events run against a resource cache that misses the changes made meanwhile, and the
resource's informer catches up with a re-list, which shows only the latest version of each
object, not the versions in between.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

import fakes
from deviceplugin_operator import devices, manager, settings
from deviceplugin_operator.controller import backoff, events, informer, reconciler
from deviceplugin_operator.kube import client, errors, objects, resources
from deviceplugin_operator.reconcile import daemonset, drift

GPU = devices.KINDS["gpu"]
GPU_PLUGINS = resources.Resource.of(
    GPU.resource.api_version, GPU.kind, GPU.plural, namespaced=False
)
NAMESPACE = "plugins"
CONFIG = settings.Settings(plugin_namespace=NAMESPACE, devices=("gpu",))
DS_NAME = "intel-gpu-plugin-a"
TIMEOUT = 2.0


def initializing() -> errors.ApiError:
    return errors.ApiError(429, "TooManyRequests", "storage is (re)initializing")


class RestartedKube(fakes.FakeKubeClient):
    """The in-memory API with a watch cache per resource that may still be initializing:
    its lists and watches are answered 429, as a restarted apiserver does."""

    def __init__(self) -> None:
        super().__init__()
        self.initializing: set[resources.Resource] = set()

    async def list(self, resource: resources.Resource, *args: Any, **kw: Any) -> client.ObjectList:
        if resource in self.initializing:
            self.requests["list"] += 1
            raise initializing()
        return await super().list(resource, *args, **kw)

    async def watch(  # type: ignore[override]
        self, resource: resources.Resource, *args: Any, **kw: Any
    ) -> AsyncIterator[client.WatchEvent]:
        if resource in self.initializing:
            self.requests["watch"] += 1
            raise initializing()
        async for event in super().watch(resource, *args, **kw):
            yield event


async def until(predicate: Callable[[], Any], what: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + TIMEOUT
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"Timed out waiting for {what}")
        await asyncio.sleep(0.001)


def fast_retry() -> backoff.Backoff:
    return backoff.Backoff(initial=0.001, cap=0.004)


class Operator:
    """One kind's informers, reconciler, controller and worker on the in-memory API, wired
    as the manager wires them."""

    def __init__(
        self, kube: fakes.FakeKubeClient, status_interval: float = reconciler.STATUS_INTERVAL
    ) -> None:
        self.kube = kube
        self.caches = reconciler.Caches(
            plugins=informer.Informer(kube, GPU_PLUGINS, retry=fast_retry()),
            daemonsets=informer.Informer(
                kube,
                resources.DAEMON_SETS,
                namespace=NAMESPACE,
                indexers=reconciler.DAEMONSET_INDEXERS,
                retry=fast_retry(),
            ),
            pods=informer.Informer(
                kube,
                resources.PODS,
                namespace=NAMESPACE,
                indexers=reconciler.POD_INDEXERS,
                retry=fast_retry(),
            ),
            nodes=informer.Informer(kube, resources.NODES, retry=fast_retry()),
        )
        self.reconciler = reconciler.Reconciler(
            GPU,
            CONFIG,
            kube,
            self.caches,
            recorder=events.Recorder(kube),
            status_interval=status_interval,
            progress_interval=status_interval,
        )
        self.controller = manager.Controller(self.reconciler, 1)
        self.caches.plugins.add_handler(self.controller.on_plugin)
        self.caches.daemonsets.add_handler(self.controller.on_daemonset)
        self.caches.pods.add_handler(self.controller.on_pod)
        self.tasks: list[asyncio.Task[Any]] = []

    @property
    def informers(self) -> list[informer.Informer]:
        return [self.caches.plugins, self.caches.daemonsets, self.caches.pods]

    async def start(self) -> None:
        for inf in self.informers:
            self.tasks.append(inf.start())
        for inf in self.informers:
            await asyncio.wait_for(inf.wait_synced(), TIMEOUT)
        self.tasks.append(asyncio.create_task(self.controller.work()))

    async def stop(self) -> None:
        self.controller.queue.shutdown()
        for task in self.tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def idle(self) -> bool:
        work = self.controller.queue
        return work.depth == 0 and work.processing == 0 and work.delayed == 0

    async def settled(self) -> None:
        """Nothing queued, delayed or in progress, and every watch open again."""
        await until(lambda: self.idle() and self.kube.open_watches == 3, "a settled operator")
        for _ in range(20):  # events still in flight get their turn
            await asyncio.sleep(0)
        await until(self.idle, "a settled operator")


def problems(kube: fakes.FakeKubeClient) -> list[str]:
    """What differs from a resource ``a`` that is reconciled at its current generation."""
    (resource,) = kube.stored(GPU_PLUGINS)
    found = [ds for ds in kube.stored(resources.DAEMON_SETS) if objects.name(ds) == DS_NAME]
    if not found:
        return ["no DaemonSet"]
    wanted = daemonset.desired_daemonset(
        GPU, "a", objects.uid(resource), GPU.spec_of(resource), CONFIG
    )
    wrong = []
    if not drift.matches(drift.with_rendered_lists(wanted), found[0]):
        wrong.append("DaemonSet differs from its spec")
    observed = (resource.get("status") or {}).get("observedGeneration")
    generation = objects.metadata(resource).get("generation")
    if observed != generation:
        wrong.append(f"status of generation {observed}, resource at {generation}")
    return wrong


async def converged(kube: fakes.FakeKubeClient) -> list[str]:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + TIMEOUT
    while True:
        wrong = problems(kube)
        if not wrong or loop.time() > deadline:
            return wrong
        await asyncio.sleep(0.005)


async def test_a_change_made_while_the_resource_watch_is_initializing_is_reconciled() -> None:
    """The status written from a stale cache lands on top of the change the cache misses: the
    version it returns carries that change, and the re-list shows only that version. It must
    not pass for the echo of our own write (which queues nothing)."""
    kube = RestartedKube()
    await kube.create(GPU_PLUGINS, {"metadata": {"name": "a"}, "spec": {}})
    operator = Operator(kube)
    await operator.start()
    try:
        assert await converged(kube) == []
        await operator.settled()

        # The apiserver restarts: every watch ends with 429; the DaemonSets' and Pods' come
        # back at once, the resource's keep being answered 429.
        kube.initializing.add(GPU_PLUGINS)
        kube.break_watches(initializing())
        await until(lambda: kube.open_watches == 2, "the DaemonSet and Pod watches back")

        # Unseen by the operator, the resource changes (generation 2) ...
        await kube.patch(GPU_PLUGINS, "a", {"spec": {"logLevel": 4}})
        # ... and the DaemonSet controller updates the DaemonSet's status: the reconcile this
        # wakes reads generation 1 from the cache and writes the status of generation 1.
        before = kube.requests["patch"]
        await kube.patch_status(
            resources.DAEMON_SETS,
            DS_NAME,
            {"status": {"desiredNumberScheduled": 1, "numberReady": 1}},
            NAMESPACE,
        )
        await until(lambda: kube.requests["patch"] > before + 1, "the stale status write")
        await until(operator.idle, "the stale reconcile done")
        (stored,) = kube.stored(GPU_PLUGINS)
        assert stored["status"]["observedGeneration"] == 1
        assert objects.metadata(stored)["generation"] == 2

        # The resource's watch cache is ready: its informer re-lists.
        kube.initializing.discard(GPU_PLUGINS)
        plugins = operator.caches.plugins
        await until(
            lambda: objects.metadata(plugins.get("a") or {}).get("generation") == 2, "the re-list"
        )
        assert plugins.relists >= 1
        assert await converged(kube) == []
    finally:
        await operator.stop()


async def test_a_status_written_over_a_change_the_cache_missed_is_no_echo() -> None:
    """The same at the reconciler: the version a status patch returns is an echo only if it
    carries nothing but that status on top of what the reconcile read."""
    kube = fakes.FakeKubeClient()
    stored = await kube.create(GPU_PLUGINS, {"metadata": {"name": "a"}, "spec": {}})
    operator = Operator(kube, status_interval=0)  # reconciles back to back, each one writing
    operator.caches.plugins.store.upsert(copy.deepcopy(stored))
    await kube.patch(GPU_PLUGINS, "a", {"spec": {"logLevel": 4}})  # not in the cache

    await operator.reconciler.reconcile("a")
    written = await kube.get(GPU_PLUGINS, "a")
    assert written["status"]["observedGeneration"] == 1
    work = operator.controller.queue
    operator.controller.on_plugin(informer.EventType.MODIFIED, written, stored)
    assert work.depth == 1, "the version that carries the unseen change queues a reconcile"

    # Without a change in between, the write's own version is an echo, as before.
    await work.get()
    work.done("a")
    operator.caches.plugins.store.upsert(copy.deepcopy(written))
    operator.caches.daemonsets.store.upsert(kube.stored(resources.DAEMON_SETS)[0])
    await operator.reconciler.reconcile("a")
    echo = await kube.get(GPU_PLUGINS, "a")
    assert echo["status"]["observedGeneration"] == 2
    operator.controller.on_plugin(informer.EventType.MODIFIED, echo, written)
    assert work.depth == 0


async def test_a_daemonset_update_is_conditional_on_the_version_read() -> None:
    """The other echoes are exact by construction: a create has nothing before it, and an
    update carries the resourceVersion the reconcile read, so it cannot land on a DaemonSet
    the cache did not show (its echo would then hide that change, as a status one did)."""
    kube = fakes.FakeKubeClient()
    stored = await kube.create(GPU_PLUGINS, {"metadata": {"name": "a"}, "spec": {}})
    operator = Operator(kube)
    operator.caches.plugins.store.upsert(copy.deepcopy(stored))
    await operator.reconciler.reconcile("a")
    operator.caches.daemonsets.store.upsert(kube.stored(resources.DAEMON_SETS)[0])

    # The DaemonSet changes on the server (unseen), and the resource in the cache.
    await kube.patch_status(
        resources.DAEMON_SETS, DS_NAME, {"status": {"numberReady": 1}}, NAMESPACE
    )
    changed = await kube.patch(GPU_PLUGINS, "a", {"spec": {"logLevel": 4}})
    operator.caches.plugins.store.upsert(copy.deepcopy(changed))
    with pytest.raises(errors.Conflict):
        await operator.reconciler.reconcile("a")
    assert kube.requests["update"] == 1
