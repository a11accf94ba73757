"""Keeps a ``cache.Store`` equal to one resource on the API server and tells handlers what changed.

The informer LISTs once, then WATCHes from the list's resourceVersion with bookmarks, so the
resourceVersion it resumes from stays fresh even when nothing it selects changes. When a watch
ends it resumes from the last resourceVersion seen; when that is too old (410 Gone/Expired) it
lists again and turns the difference between the cache and the new list into ADDED, MODIFIED
and DELETED events, so a deletion that happened while it was not watching is still delivered.
Failures back off exponentially with jitter, up to a cap, and are retried forever: the informer
never stops on its own.

Scope is set server-side (namespace, label and field selectors) so that memory follows what the
operator owns, not the size of the cluster; ``metadata.managedFields``, often the largest part
of an object, is dropped before storing, and an optional ``transform`` keeps only the fields
the cache's readers use (applied page by page as a list arrives, so that a list of thousands
of nodes never has them all whole in memory at once). An optional periodic resync re-delivers
every cached object to the handlers (``RESYNC``) without any API request.

Handlers are plain callables, called in the informer's task; they should only look at the
object and put a key on a work queue.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import enum
import logging
import random
import time
from collections.abc import Callable, Mapping

from deviceplugin_operator.controller import backoff, cache, tasks
from deviceplugin_operator.kube import client, errors, objects, resources

logger = logging.getLogger(__name__)


class EventType(enum.StrEnum):
    ADDED = "ADDED"
    MODIFIED = "MODIFIED"
    DELETED = "DELETED"
    RESYNC = "RESYNC"
    """A periodic re-delivery of an unchanged cached object."""


Handler = Callable[[EventType, objects.JsonObject, objects.JsonObject | None], None]
"""Called with (event type, object, previous cached object or None)."""

# A watch that ends this soon without a single event is treated as a failure, so that a
# server or proxy that keeps closing watches at once cannot make the informer spin.
_SHORTEST_HEALTHY_WATCH = 1.0


def strip(obj: objects.JsonObject) -> objects.JsonObject:
    """``obj`` without ``metadata.managedFields`` (changed in place and returned)."""
    meta = obj.get("metadata")
    if meta:
        meta.pop("managedFields", None)
    return obj


class Informer:
    """LIST+WATCH of one resource into a store, with event handlers."""

    def __init__(
        self,
        kube: client.KubeClient,
        resource: resources.Resource,
        *,
        namespace: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
        indexers: Mapping[str, cache.IndexFunc] | None = None,
        resync_period: float | None = None,
        watch_timeout: float = 300.0,
        retry: backoff.Backoff | None = None,
        transform: Callable[[objects.JsonObject], objects.JsonObject] | None = None,
        page_size: int = 500,
    ) -> None:
        self.kube = kube
        self.resource = resource
        self.namespace = namespace
        self.label_selector = label_selector
        self.field_selector = field_selector
        self.store = cache.Store(indexers)
        self.resync_period = resync_period
        self.watch_timeout = watch_timeout
        """Seconds a watch lasts at least; each one asks for this plus up to 100 % jitter."""
        self.retry = retry or backoff.Backoff()
        self.transform = transform
        """Applied to every object before it is stored and handed to handlers (client-go's
        TransformFunc): keeps only what the readers of the cache need."""
        self.page_size = page_size
        """Objects per page of a list: with a transform, smaller pages hold fewer whole
        objects at a time."""
        self._handlers: builtins.list[Handler] = []
        self._synced = asyncio.Event()
        self._resource_version = ""
        self._task: asyncio.Task[None] | None = None
        self.relists = 0
        """Lists after the first one (watch expired or failed)."""

    @property
    def description(self) -> str:
        where = f" in {self.namespace}" if self.namespace else ""
        selector = f" with {self.label_selector}" if self.label_selector else ""
        return f"{self.resource.plural}{where}{selector}"

    # Handlers and reads --------------------------------------------------------------------
    def add_handler(self, handler: Handler) -> None:
        """Call ``handler`` on every change; once synced, it first gets an ADDED for every
        cached object, so that a late handler misses nothing."""
        self._handlers.append(handler)
        if self._synced.is_set():
            for obj in self.store.list():
                self._call(handler, EventType.ADDED, obj, None)

    def get(self, key: str) -> objects.JsonObject | None:
        """The cached object with key ``namespace/name`` (``name`` if cluster-scoped)."""
        return self.store.get(key)

    def list(self) -> builtins.list[objects.JsonObject]:
        return self.store.list()

    def by_index(self, index: str, value: str) -> builtins.list[objects.JsonObject]:
        return self.store.by_index(index, value)

    def index_version(self, index: str, value: str) -> int:
        return self.store.index_version(index, value)

    @property
    def placement_version(self) -> int:
        return self.store.placement_version

    @property
    def synced(self) -> bool:
        """Whether the first list has been stored and delivered."""
        return self._synced.is_set()

    async def wait_synced(self) -> None:
        await self._synced.wait()

    @property
    def resource_version(self) -> str:
        """The resourceVersion the next watch starts from."""
        return self._resource_version

    # Running -------------------------------------------------------------------------------
    def start(self) -> asyncio.Task[None]:
        """Run in a background task (idempotent)."""
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self.run(), name=f"informer {self.description}")
        return self._task

    async def stop(self) -> None:
        """Cancel the background task and wait for it to end."""
        task, self._task = self._task, None
        await tasks.cancel_and_wait(task)

    async def list_first(self) -> None:
        """Make the first LIST now, before ``start``, raising what it raises: a start-up check
        that is also the cache's fill. The task then begins with the watch."""
        await self._list()

    async def run(self) -> None:
        """List (unless ``list_first`` did) and watch until cancelled."""
        resync = None
        if self.resync_period:
            resync = asyncio.create_task(self._resync_forever(self.resync_period))
        try:
            await self._list_and_watch_forever()
        finally:
            await tasks.cancel_and_wait(resync)

    async def _list_and_watch_forever(self) -> None:
        must_list = not self._synced.is_set()
        while True:
            try:
                if must_list:
                    await self._list()
                    must_list = False
                    self.retry.reset()
                if await self._watch():
                    self.retry.reset()
                    continue
                raise errors.TransportError("Watch ended at once without events")
            except errors.Gone:
                logger.info(
                    "Watch expired",
                    extra={"resource": self.description, "resourceVersion": self._resource_version},
                )
                # The first re-list is immediate; a server that keeps answering Gone backs off.
                if must_list:
                    await asyncio.sleep(self.retry.next())
                must_list = True
            except errors.KubeError as exc:
                delay = self.retry.next()
                logger.warning(
                    "List failed" if must_list else "Watch failed",
                    extra={"resource": self.description, "error": str(exc), "retry_in": delay},
                )
                # A lost connection resumes from the last resourceVersion; an API error
                # (forbidden, too large resourceVersion …) starts over with a list.
                must_list = must_list or not isinstance(exc, errors.TransportError)
                await asyncio.sleep(delay)
            except Exception:
                delay = self.retry.next()
                logger.exception(
                    "Informer failed", extra={"resource": self.description, "retry_in": delay}
                )
                must_list = True
                await asyncio.sleep(delay)

    async def _list(self) -> None:
        listing = await self.kube.list(
            self.resource,
            self.namespace,
            label_selector=self.label_selector,
            field_selector=self.field_selector,
            transform=self._trimmed,
            page_size=self.page_size,
        )
        first = not self._synced.is_set()
        if not first:
            self.relists += 1
        listed: dict[str, objects.JsonObject] = {}
        for item in listing.items:
            listed[objects.key(item)] = item
        for key in sorted(set(self.store.keys()).difference(listed)):
            old = self.store.remove(key)
            if old is not None:
                self._notify(EventType.DELETED, old, old)
        for obj in listed.values():
            old = self.store.upsert(obj)
            if old is None:
                self._notify(EventType.ADDED, obj, None)
            elif objects.resource_version(old) != objects.resource_version(obj):
                self._notify(EventType.MODIFIED, obj, old)
        self._resource_version = listing.resource_version
        self._synced.set()
        logger.debug(
            "Listed objects" if first else "Re-listed objects",
            extra={"resource": self.description, "count": len(listed)},
        )

    async def _watch(self) -> bool:
        """One watch until the server ends it; False if it ended at once without events."""
        started = time.monotonic()
        seen = False
        timeout = int(self.watch_timeout * (1 + random.random()))  # noqa: S311 - jitter only
        stream = self.kube.watch(
            self.resource,
            self.namespace,
            resource_version=self._resource_version,
            label_selector=self.label_selector,
            field_selector=self.field_selector,
            timeout_seconds=max(timeout, 1),
        )
        async with contextlib.aclosing(stream):
            async for event in stream:
                seen = True
                self._apply(event)
        return seen or time.monotonic() - started >= _SHORTEST_HEALTHY_WATCH

    def _apply(self, event: client.WatchEvent) -> None:
        obj = event.object
        version = objects.resource_version(obj)
        if event.type == client.WatchEventType.BOOKMARK:
            if version:
                self._resource_version = version
            return
        obj = self._trimmed(obj)
        if event.type == client.WatchEventType.DELETED:
            old = self.store.remove(objects.key(obj))
            self._notify(EventType.DELETED, obj, old)
        else:
            old = self.store.upsert(obj)
            self._notify(EventType.ADDED if old is None else EventType.MODIFIED, obj, old)
        if version:
            self._resource_version = version

    def _trimmed(self, obj: objects.JsonObject) -> objects.JsonObject:
        strip(obj)
        return obj if self.transform is None else self.transform(obj)

    async def _resync_forever(self, period: float) -> None:
        while True:
            await asyncio.sleep(period)
            if self._synced.is_set():
                for obj in self.store.list():
                    self._notify(EventType.RESYNC, obj, obj)

    def _notify(
        self, kind: EventType, obj: objects.JsonObject, old: objects.JsonObject | None
    ) -> None:
        for handler in self._handlers:
            self._call(handler, kind, obj, old)

    def _call(
        self,
        handler: Handler,
        kind: EventType,
        obj: objects.JsonObject,
        old: objects.JsonObject | None,
    ) -> None:
        try:
            handler(kind, obj, old)
        except Exception:
            logger.exception(
                "Event handler failed",
                extra={"resource": self.description, "event": str(kind), "key": objects.key(obj)},
            )
