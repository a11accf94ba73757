"""The benchmark driver's own small async client (aiohttp, admin client certificate).

It sends ``User-Agent: deviceplugin-bench`` so that its requests are told apart from the
measured operators' in the audit log.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp

from localcluster import cluster as lc_cluster

USER_AGENT = "deviceplugin-bench"
GROUP = "deviceplugin.intel.com"
VERSION = "v1"

Json = dict[str, Any]


class ApiError(RuntimeError):
    def __init__(self, method: str, path: str, status: int, body: str):
        super().__init__(f"{method} {path} answered {status}: {body[:300]}")
        self.status = status


class Api:
    def __init__(self, handle: lc_cluster.Cluster):
        state = handle.state()
        if state is None:
            raise RuntimeError(f"no cluster in {handle.directory}")
        self.server = state.server
        context = ssl.create_default_context(cafile=str(handle.pki / "ca.crt"))
        context.load_cert_chain(str(handle.pki / "admin.crt"), str(handle.pki / "admin.key"))
        self._ssl = context
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Api:
        self._session = aiohttp.ClientSession(
            headers={"User-Agent": USER_AGENT, "Accept": "application/json"},
            connector=aiohttp.TCPConnector(ssl=self._ssl, limit=50),
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._session is not None:
            await self._session.close()

    @property
    def session(self) -> aiohttp.ClientSession:
        assert self._session is not None
        return self._session

    async def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        params: dict[str, str] | None = None,
        content_type: str = "application/json",
        ok: tuple[int, ...] = (200, 201, 202),
    ) -> Json | None:
        """Send a request; the decoded body, None on 404 (unless 404 is in ``ok``)."""
        data = json.dumps(body) if body is not None else None
        headers = {"Content-Type": content_type} if data is not None else {}
        async with self.session.request(
            method, self.server + path, data=data, params=params, headers=headers
        ) as reply:
            text = await reply.text()
            if reply.status in ok:
                return json.loads(text) if text else {}
            if reply.status == 404:
                return None
            raise ApiError(method, path, reply.status, text)

    async def get(self, path: str, **params: str) -> Json | None:
        return await self.request("GET", path, params=params or None)

    async def create(self, path: str, body: Json) -> Json:
        result = await self.request("POST", path, body)
        assert result is not None
        return result

    async def merge_patch(self, path: str, patch: Json) -> Json | None:
        return await self.request("PATCH", path, patch, content_type="application/merge-patch+json")

    async def delete(self, path: str, propagation: str = "Background") -> Json | None:
        return await self.request("DELETE", path, {"propagationPolicy": propagation}, ok=(200, 202))

    async def count(self, path: str) -> int:
        """Number of objects at a list path without transferring them (no selectors)."""
        listing = await self.get(path, limit="1") or {}
        return len(listing.get("items", [])) + int(
            (listing.get("metadata") or {}).get("remainingItemCount") or 0
        )

    async def watch(
        self, path: str, resource_version: str | None = None, **params: str
    ) -> AsyncIterator[tuple[str, Json]]:
        """WATCH from ``resource_version``; without one, LIST first and yield ADDED for each.

        Re-watches after the server ends the stream; re-lists after 410 Gone.
        """
        while True:
            if resource_version is None:
                listing = await self.get(path, **params) or {}
                resource_version = listing["metadata"]["resourceVersion"]
                for item in listing.get("items", []):
                    yield "ADDED", item
            query = dict(
                params,
                watch="1",
                resourceVersion=resource_version,
                allowWatchBookmarks="true",
                timeoutSeconds="600",
            )
            async with self.session.get(
                self.server + path, params=query, timeout=aiohttp.ClientTimeout(total=None)
            ) as reply:
                if reply.status == 410:
                    resource_version = None
                    continue
                if reply.status != 200:
                    raise ApiError("WATCH", path, reply.status, await reply.text())
                async for line in reply.content:
                    if not line.strip():
                        continue
                    event = json.loads(line)
                    kind, obj = event["type"], event["object"]
                    if kind == "ERROR":
                        resource_version = None
                        break
                    resource_version = obj["metadata"]["resourceVersion"]
                    if kind != "BOOKMARK":
                        yield kind, obj


def plural_path(plural: str, name: str | None = None) -> str:
    path = f"/apis/{GROUP}/{VERSION}/{plural}"
    return f"{path}/{name}" if name else path


def ds_path(namespace: str, name: str | None = None) -> str:
    path = f"/apis/apps/v1/namespaces/{namespace}/daemonsets"
    return f"{path}/{name}" if name else path


class Mirror:
    """A watched collection kept in a dict, with waiters woken on every event.

    ``wait_for(predicate)`` returns the monotonic time at which the event that made the
    predicate true arrived, i.e. when the driver learned of the change (the same observer for
    every implementation).
    """

    def __init__(self, api: Api, path: str, **params: str):
        self.objects: dict[str, Json] = {}
        self._api = api
        self._path = path
        self._params = params
        self._changed = asyncio.Condition()
        self._task: asyncio.Task[None] | None = None
        self.last_event = time.monotonic()
        self.events = 0
        self.first_true: dict[str, float] = {}
        self._track: Callable[[Json], bool] | None = None

    def track(self, predicate: Callable[[Json], bool]) -> None:
        """From now on, record in ``first_true`` when each object first satisfied it."""
        self.first_true.clear()
        self._track = predicate

    async def start(self) -> Mirror:
        listing = await self._api.get(self._path, **self._params) or {}
        for item in listing.get("items", []):
            self.objects[item["metadata"]["name"]] = item
        self._task = asyncio.create_task(self._run(listing["metadata"]["resourceVersion"]))
        return self

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task

    async def _run(self, resource_version: str) -> None:
        async for kind, obj in self._api.watch(self._path, resource_version, **self._params):
            self.last_event = time.monotonic()
            name = obj["metadata"]["name"]
            if kind == "DELETED":
                self.objects.pop(name, None)
            else:
                self.objects[name] = obj
                if self._track and name not in self.first_true and self._track(obj):
                    self.first_true[name] = self.last_event
            self.events += 1
            async with self._changed:
                self._changed.notify_all()

    async def wait_for(self, predicate: Callable[[], bool], timeout: float) -> float:
        """Wait until ``predicate()`` holds; the monotonic time of the event that made it so."""
        deadline = time.monotonic() + timeout
        if predicate():
            return time.monotonic()
        async with self._changed:
            while not predicate():
                if self._task is not None and self._task.done():
                    self._task.result()  # a failed watch raises here
                    raise RuntimeError(f"the watch of {self._path} ended")
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"condition on {self._path} not met in {timeout:.0f}s")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._changed.wait(), min(remaining, 1.0))
        return self.last_event
