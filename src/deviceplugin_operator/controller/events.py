"""Kubernetes Events about our resources (``kubectl describe gpudeviceplugin ...`` shows them).

Recording never blocks or fails a reconcile: each Event is created by a background task and a
failure is only logged. Events of cluster-scoped resources live in the ``default``
namespace, as client-go's recorder puts them.

An install whose RBAC does not let the operator create Events there (the reference operator's:
it grants Events only in the operator's namespace) loses them and nothing else: the first
refusal in a namespace is logged once, as a warning naming the missing grant; later ones only
at debug level. Recording is still tried, so a grant added later takes effect at once.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import uuid

from deviceplugin_operator.kube import client, errors, objects, resources

log = logging.getLogger(__name__)

COMPONENT = "intel-deviceplugin-operator"


class Recorder:
    """Creates core/v1 Events for objects."""

    def __init__(self, kube: client.KubeClient, *, component: str = COMPONENT):
        self.kube = kube
        self.component = component
        self._pending: set[asyncio.Task[None]] = set()
        self._refused: set[str] = set()
        """Namespaces where creating an Event was refused (logged once)."""

    def normal(self, obj: objects.JsonObject, reason: str, message: str) -> None:
        self._record(obj, "Normal", reason, message)

    def warning(self, obj: objects.JsonObject, reason: str, message: str) -> None:
        self._record(obj, "Warning", reason, message)

    def _record(self, obj: objects.JsonObject, type_: str, reason: str, message: str) -> None:
        task = asyncio.create_task(self._create(obj, type_, reason, message))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _create(self, obj: objects.JsonObject, type_: str, reason: str, message: str) -> None:
        namespace = objects.namespace(obj) or "default"
        now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {
                "name": f"{objects.name(obj)}.{uuid.uuid4().hex[:16]}",
                "namespace": namespace,
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
        """Wait for the Events being created (used at shutdown and in tests)."""
        if self._pending:
            await asyncio.gather(*self._pending, return_exceptions=True)
