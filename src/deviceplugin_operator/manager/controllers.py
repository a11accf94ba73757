"""One kind's controller: its work queue, its reconciler and the workers between them, and
which resource each watch event queues.

Events on a DaemonSet or a Pod are mapped to the resource that controls it and queue that
resource's name; a periodic resync re-queues every resource (level-triggered, no API call).
A node event queues the resources of the kind with a plugin pod on that node, and only when
the node's figures of the kind's resource domain changed. The watch events that bring back
the operator's own writes, pod updates that change nothing the status shows, and node
updates that change no figure of the domain (heartbeats, conditions, images) queue nothing.
"""

from __future__ import annotations

import logging
import time

from deviceplugin_operator.controller import heap, informer, queue, reconciler
from deviceplugin_operator.controller.metrics import recording
from deviceplugin_operator.kube import errors, objects
from deviceplugin_operator.reconcile import status

log = logging.getLogger(__name__)

_CHANGES = frozenset({informer.EventType.ADDED, informer.EventType.MODIFIED})


class Controller:
    """One kind's queue, reconciler and workers."""

    def __init__(
        self,
        rec: reconciler.Reconciler,
        workers: int,
        metrics: recording.Metrics | None = None,
        *,
        heap_trimmer: heap.IdleHeapTrimmer | None = None,
    ):
        self.reconciler = rec
        self.heap_trimmer = heap_trimmer
        self.name = rec.kind.kind.lower()
        """controller-runtime's name for the controller of this kind (``gpudeviceplugin``)."""
        registry = metrics or recording.Metrics()
        self.metrics = registry.controller(self.name, workers)
        self.queue: queue.WorkQueue[str] = queue.WorkQueue(self.name, observer=self.metrics)
        registry.add_queue(self.name, self.queue)
        self.workers = workers

    def on_plugin(
        self,
        kind: informer.EventType,
        obj: objects.JsonObject,
        old: objects.JsonObject | None,
    ) -> None:
        name = objects.name(obj)
        if kind is informer.EventType.MODIFIED and self.reconciler.is_echo(name, name, obj):
            return  # our own status write coming back
        self.queue.add(name)

    def on_daemonset(
        self,
        kind: informer.EventType,
        obj: objects.JsonObject,
        old: objects.JsonObject | None,
    ) -> None:
        owner = self.reconciler.owner_of_daemonset(obj)
        if owner is not None and kind is informer.EventType.ADDED:
            early = self.reconciler.caches.pods.by_index(reconciler.POD_OWNER, objects.uid(obj))
            if early:
                # Pods seen before their DaemonSet (two watch streams) could not be traced to
                # a resource until now: its status and its neighbours' overlap count them now.
                self.queue.add(owner)
                self._queue_residents({node for pod in early for node in reconciler.pod_node(pod)})
        if kind is informer.EventType.DELETED and owner is not None:
            # Its pods, until the garbage collector removes them, no longer trace back to a
            # resource: the overlap condition of their neighbours changes now, and the pods'
            # own deletions later cannot tell whose they were.
            left = self.reconciler.caches.pods.by_index(reconciler.POD_OWNER, objects.uid(obj))
            self._queue_residents({node for pod in left for node in reconciler.pod_node(pod)})
        if kind in _CHANGES and owner and self.reconciler.is_echo(owner, objects.key(obj), obj):
            return  # our own create or update coming back
        if owner is not None:
            self.queue.add(owner)
        if old is not None and (previous := self.reconciler.owner_of_daemonset(old)) is not None:
            self.queue.add(previous)

    def on_pod(
        self,
        kind: informer.EventType,
        obj: objects.JsonObject,
        old: objects.JsonObject | None,
    ) -> None:
        if (
            kind is informer.EventType.MODIFIED
            and old is not None
            and status.pod_inputs(obj) == status.pod_inputs(old)
        ):
            # Most pod updates (conditions, IPs, readiness, which the DaemonSet's status
            # counts and its own event brings) change nothing the resource's status shows.
            return
        owner = self.reconciler.owner_of_pod(obj)
        if owner is None:
            return
        self.queue.add(owner)
        node = (obj.get("spec") or {}).get("nodeName")
        old_node = None if old is None else (old.get("spec") or {}).get("nodeName")
        if kind is informer.EventType.DELETED or node != old_node:
            # Where a plugin runs decides the overlap condition of the other resources with
            # a plugin on the same node, not only of the pod's own.
            self._queue_residents({str(where) for where in (node, old_node) if where})

    def on_node(
        self,
        kind: informer.EventType,
        obj: objects.JsonObject,
        old: objects.JsonObject | None,
    ) -> None:
        if kind is informer.EventType.RESYNC:
            return
        if kind is informer.EventType.MODIFIED and self.reconciler.node_devices(
            obj
        ) == self.reconciler.node_devices(old):
            return
        if kind is not informer.EventType.MODIFIED and not any(self.reconciler.node_devices(obj)):
            # A node added or deleted without devices of the kind: the status of a resource
            # with a plugin there already counts it as advertising nothing (its pod events
            # bring the rest).
            return
        self._queue_residents({objects.name(obj)})

    def _queue_residents(self, nodes: set[str]) -> None:
        """Queue the resources of this kind with a plugin pod on any of ``nodes``."""
        pods = self.reconciler.caches.pods
        for where in nodes:
            for neighbour in pods.by_index(reconciler.POD_NODE, where):
                if (other := self.reconciler.owner_of_pod(neighbour)) is not None:
                    self.queue.add(other)

    async def work(self) -> None:
        while True:
            try:
                name = await self.queue.get()
            except queue.ShutDown:
                return
            started = time.monotonic()
            result: str | None = None
            self.metrics.started()
            try:
                requeue = await self.reconciler.reconcile(name)
            except errors.Conflict:
                # The cache was behind the server; the watch brings the newer object soon.
                result = "requeue"
                self.queue.add_rate_limited(name)
            except errors.KubeError as error:
                result = "error"
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
                result = "error"
                log.exception(
                    "Reconcile crashed", extra={"kind": self.reconciler.kind.kind, "resource": name}
                )
                self.queue.add_rate_limited(name)
            else:
                result = "success"
                self.queue.forget(name)
                if requeue is not None:
                    result = "requeue_after"
                    self.queue.add_after(name, requeue)
            finally:
                self.queue.done(name)
                self.metrics.finished(result, time.monotonic() - started)
                if self.heap_trimmer is not None:
                    self.heap_trimmer.worked()
