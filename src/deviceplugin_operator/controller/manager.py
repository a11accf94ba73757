"""Runs the operator: informers, one work queue and reconciler per enabled kind, probes.

What is watched is only what is ours: the resources of the enabled kinds, and DaemonSets and
Pods only in the plugin namespace and only with the ``app: intel-<dev>-plugin`` labels (a
server-side label selector), so memory does not grow with unrelated Pods in the cluster.

Events on a DaemonSet or a Pod are mapped to the resource that controls it and queue that
resource's name; a periodic resync re-queues every resource (level-triggered, no API call).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import Sequence

from deviceplugin_operator import devices, settings
from deviceplugin_operator.controller import events, informer, probes, queue, reconciler
from deviceplugin_operator.kube import client, errors, objects, resources

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Options:
    """How the process runs (as opposed to what it reconciles: ``settings.Settings``)."""

    kubeconfig: str | None = None
    """Path of a kubeconfig; None for in-cluster configuration."""

    health_probe_bind_address: str = ":8081"
    """Address of /healthz and /readyz; "0" disables them."""

    metrics_bind_address: str = ":8080"
    """Address of /metrics; "0" disables it."""

    resync_period: float = 600.0
    """Seconds between re-reconciles of every resource from the cache."""

    workers: int = 1
    """Concurrent reconciles per kind."""


def plugin_label_selector(device_names: Sequence[str]) -> str:
    """``app in (intel-gpu-plugin, ...)``: the DaemonSets and Pods of the enabled kinds."""
    names = ",".join(sorted(devices.KINDS[name].base_name for name in device_names))
    return f"app in ({names})"


class Controller:
    """One kind's queue, reconciler and workers."""

    def __init__(self, rec: reconciler.Reconciler, workers: int):
        self.reconciler = rec
        self.queue: queue.WorkQueue[str] = queue.WorkQueue(rec.kind.name)
        self.workers = workers

    def on_plugin(
        self,
        kind: informer.EventType,
        obj: objects.JsonObject,
        old: objects.JsonObject | None,
    ) -> None:
        self.queue.add(objects.name(obj))

    def on_daemonset(
        self,
        kind: informer.EventType,
        obj: objects.JsonObject,
        old: objects.JsonObject | None,
    ) -> None:
        for candidate in (obj, old):
            if candidate is not None and (owner := self.reconciler.owner_of_daemonset(candidate)):
                self.queue.add(owner)

    def on_pod(
        self,
        kind: informer.EventType,
        obj: objects.JsonObject,
        old: objects.JsonObject | None,
    ) -> None:
        owner = self.reconciler.owner_of_pod(obj)
        if owner is None:
            return
        self.queue.add(owner)
        node = (obj.get("spec") or {}).get("nodeName")
        old_node = None if old is None else (old.get("spec") or {}).get("nodeName")
        if kind is informer.EventType.DELETED or node != old_node:
            # Where a plugin runs decides the overlap condition of every resource of the
            # kind, not only of the pod's own.
            for other in self.reconciler.caches.plugins.list():
                self.queue.add(objects.name(other))

    async def work(self) -> None:
        while True:
            try:
                name = await self.queue.get()
            except queue.ShutDown:
                return
            try:
                requeue = await self.reconciler.reconcile(name)
            except errors.Conflict:
                # The cache was behind the server; the watch brings the newer object soon.
                self.queue.add_rate_limited(name)
            except errors.KubeError as error:
                log.warning(
                    "Reconcile failed",
                    extra={
                        "kind": self.reconciler.kind.kind,
                        "resource": name,
                        "error": str(error),
                    },
                )
                self.queue.add_rate_limited(name)
            except Exception:
                log.exception(
                    "Reconcile crashed", extra={"kind": self.reconciler.kind.kind, "resource": name}
                )
                self.queue.add_rate_limited(name)
            else:
                self.queue.forget(name)
                if requeue is not None:
                    self.queue.add_after(name, requeue)
            finally:
                self.queue.done(name)


class Manager:
    """Everything one operator process runs, wired together."""

    def __init__(self, config: settings.Settings, options: Options, kube: client.KubeClient):
        self.config = config
        self.options = options
        self.kube = kube
        selector = plugin_label_selector(config.devices)
        namespace = config.plugin_namespace
        self.daemonsets = informer.Informer(
            kube, resources.DAEMON_SETS, namespace=namespace, label_selector=selector
        )
        self.pods = informer.Informer(
            kube, resources.PODS, namespace=namespace, label_selector=selector
        )
        self.recorder = events.Recorder(kube)
        self.plugin_informers: list[informer.Informer] = []
        self.controllers: list[Controller] = []
        for name in config.devices:
            kind = devices.KINDS[name]
            plugins = informer.Informer(
                kube,
                resources.Resource.of(
                    kind.resource.api_version, kind.kind, kind.plural, namespaced=False
                ),
                resync_period=options.resync_period,
            )
            caches = reconciler.Caches(plugins=plugins, daemonsets=self.daemonsets, pods=self.pods)
            controller = Controller(
                reconciler.Reconciler(kind, config, kube, caches, recorder=self.recorder),
                options.workers,
            )
            plugins.add_handler(controller.on_plugin)
            self.daemonsets.add_handler(controller.on_daemonset)
            self.pods.add_handler(controller.on_pod)
            self.plugin_informers.append(plugins)
            self.controllers.append(controller)
        self.probes = probes.ProbeServer()
        self.probes.checks["informers-synced"] = self.synced
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def informers(self) -> list[informer.Informer]:
        return [self.daemonsets, self.pods, *self.plugin_informers]

    def synced(self) -> bool:
        return all(inf.synced for inf in self.informers)

    async def start(self) -> None:
        await self.probes.start(self.options.health_probe_bind_address)
        for inf in self.informers:
            inf.start()
        # Workers start once the DaemonSet and Pod caches are filled: a reconcile against an
        # empty cache would try to create DaemonSets that already exist.
        await self.daemonsets.wait_synced()
        await self.pods.wait_synced()
        for controller in self.controllers:
            for index in range(controller.workers):
                self._tasks.append(
                    asyncio.create_task(
                        controller.work(), name=f"{controller.reconciler.kind.name}-{index}"
                    )
                )
        log.info("Started controllers", extra={"devices": ",".join(self.config.devices)})

    async def stop(self) -> None:
        for controller in self.controllers:
            controller.queue.shutdown()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for inf in self.informers:
            await inf.stop()
        await self.recorder.flush()
        await self.probes.stop()


async def run(config: settings.Settings, options: Options, stop: asyncio.Event) -> None:
    """Run until ``stop`` is set."""
    kube = await client.connect(options.kubeconfig)
    manager = Manager(config, options, kube)
    try:
        await manager.start()
        await stop.wait()
        log.info("Stopping operator")
    finally:
        await manager.stop()
        await kube.close()
