"""Kubernetes Events about our resources (``kubectl describe gpudeviceplugin ...`` shows them).

Recording never blocks or fails a reconcile: each Event is created by a background task, a
tenth of a second after the change it tells of, and a failure is only logged. Events of
cluster-scoped resources live in the ``default`` namespace, as client-go's recorder puts them.

An install whose RBAC does not let the operator create Events there (the reference operator's:
it grants Events only in the operator's namespace) loses them and nothing else: the first
refusal in a namespace is logged once, as a warning naming the missing grant; later ones only
at debug level. Recording is still tried, so a grant added later takes effect at once.
"""

from __future__ import annotations

import asyncio
import datetime
import itertools
import logging
import uuid

from deviceplugin_operator.kube import client, errors, objects, resources

log = logging.getLogger(__name__)

COMPONENT = "intel-deviceplugin-operator"
EVENT_DELAY = 0.1
"""Seconds between a change and the creation of its Event (its timestamps are the change's).
Events are read by people; the DaemonSet write they tell of is followed at once by the API
server's watch fan-out to the DaemonSet controller and every other watcher, which an Event
created in the same milliseconds slows on a busy control plane."""


class Recorder:
    """Creates core/v1 Events for objects."""

    def __init__(
        self, kube: client.KubeClient, *, component: str = COMPONENT, delay: float = EVENT_DELAY
    ):
        self.kube = kube
        self.component = component
        self.delay = delay
        self._waiting: dict[int, tuple[asyncio.TimerHandle, objects.JsonObject]] = {}
        """Events whose delay has not ended, by a number of their own."""
        self._numbers = itertools.count()
        self._pending: set[asyncio.Task[None]] = set()
        self._refused: set[str] = set()
        """Namespaces where creating an Event was refused (logged once)."""

    def normal(self, obj: objects.JsonObject, reason: str, message: str) -> None:
        self._record(obj, "Normal", reason, message)

    def warning(self, obj: objects.JsonObject, reason: str, message: str) -> None:
        self._record(obj, "Warning", reason, message)

    def _record(self, obj: objects.JsonObject, type_: str, reason: str, message: str) -> None:
        event = self._event(obj, type_, reason, message)
        number = next(self._numbers)
        handle = asyncio.get_running_loop().call_later(self.delay, self._due, number)
        self._waiting[number] = (handle, event)

    def _due(self, number: int) -> None:
        _, event = self._waiting.pop(number)
        self._start(event)

    def _start(self, event: objects.JsonObject) -> None:
        task = asyncio.create_task(self._create(event))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    def _event(
        self, obj: objects.JsonObject, type_: str, reason: str, message: str
    ) -> objects.JsonObject:
        now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        return {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {
                "name": f"{objects.name(obj)}.{uuid.uuid4().hex[:16]}",
                "namespace": objects.namespace(obj) or "default",
            },
            "involvedObject": {
                "apiVersion": obj.get("apiVersion"),
                "kind": obj.get("kind"),
                "name": objects.name(obj),
                "uid": objects.uid(obj),
                **({"namespace": objects.namespace(obj)} if objects.namespace(obj) else {}),
            },
            "reason": reason,
            "message": message[:1024],
            "type": type_,
            "source": {"component": self.component},
            "reportingComponent": self.component,
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }

    async def _create(self, event: objects.JsonObject) -> None:
        namespace = str(event["metadata"]["namespace"])
        reason = event["reason"]
        try:
            await self.kube.create(resources.EVENTS, event, namespace=namespace)
        except errors.Forbidden as error:
            if namespace in self._refused:
                log.debug("Recording an event refused", extra={"reason": reason})
                return
            self._refused.add(namespace)
            log.warning(
                "Events cannot be recorded in namespace %s: RBAC does not let the operator "
                "create them there; they are dropped (nothing else is affected) and further "
                "refusals are not logged. Grant create and patch on events in %s to record them",
                namespace,
                namespace,
                extra={"reason": reason, "error": str(error)},
            )
        except errors.KubeError as error:
            log.warning("Recording an event failed", extra={"reason": reason, "error": str(error)})

    async def flush(self) -> None:
        """Create the Events still waiting at once and wait for all being created (used at
        shutdown and in tests)."""
        waiting, self._waiting = self._waiting, {}
        for handle, event in waiting.values():
            handle.cancel()
            self._start(event)
        if self._pending:
            await asyncio.gather(*self._pending, return_exceptions=True)
