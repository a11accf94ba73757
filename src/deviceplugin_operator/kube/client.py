"""The connection to the API server: raw-JSON requests with kubernetes-asyncio's credentials.

``KubeClient`` is the port the rest of the operator is written against (the unit tests plug an
in-memory fake into it); ``HttpKubeClient`` is the real thing. It uses the library only for what
it does well, loading kubeconfig or in-cluster credentials into a ``Configuration`` (and
refreshing an exec plugin's token through it), and sends every request through its own aiohttp
session so that bodies travel as plain JSON: the library's ``ApiClient`` walks every body to
"sanitize" it, looks the proxy environment up for every request, and its generated models are
far too slow to build for every watched DaemonSet and Pod.

Every client owns its own connection pool, so a second one (leader election's) never queues
behind a busy controller. Each request is counted by Kubernetes verb in ``requests`` and, if a
``request_hook`` is given, reported to it with its status code and duration.
"""

from __future__ import annotations

import builtins
import collections
import dataclasses
import enum
import json
import os
import ssl
import time
import urllib.parse
import urllib.request
from collections.abc import AsyncGenerator, Callable, Iterable, Sequence
from typing import Any, Protocol

import aiohttp

from deviceplugin_operator.kube import errors, library, objects, resources, wirejson

k8s_client, k8s_config = library.load()

JsonPatch = Sequence[objects.JsonObject]
"""An RFC 6902 JSON patch: a list of operations."""

USER_AGENT = "intel-deviceplugin-operator"

# A watch line is one whole object; etcd caps objects at 1.5 MiB, so this is never legitimately hit.
_MAX_WATCH_LINE = 64 * 2**20


class PatchType(enum.StrEnum):
    """The patch formats the API server accepts, by their content type."""

    MERGE = "application/merge-patch+json"
    STRATEGIC = "application/strategic-merge-patch+json"
    JSON = "application/json-patch+json"
    APPLY = "application/apply-patch+yaml"


class WatchEventType(enum.StrEnum):
    ADDED = "ADDED"
    MODIFIED = "MODIFIED"
    DELETED = "DELETED"
    BOOKMARK = "BOOKMARK"


@dataclasses.dataclass(frozen=True)
class WatchEvent:
    """One event of a watch stream; a ``BOOKMARK`` object carries only its resourceVersion."""

    type: WatchEventType
    object: objects.JsonObject


@dataclasses.dataclass(frozen=True)
class ObjectList:
    """The result of a list: the items (with apiVersion and kind filled in) and the
    resourceVersion of the snapshot, from which a watch continues."""

    items: builtins.list[objects.JsonObject]
    resource_version: str


@dataclasses.dataclass(frozen=True)
class RequestRecord:
    """What ``request_hook`` learns about each finished request."""

    verb: str
    """Kubernetes verb: get, list, watch, create, update, patch, delete."""
    resource: str
    """The resource's plural (``daemonsets``)."""
    code: int | None
    """HTTP status, or None when no answer came (transport failure)."""
    seconds: float
    """Time to the response headers (a watch's duration is not counted)."""


RequestHook = Callable[[RequestRecord], None]


class KubeClient(Protocol):
    """The operations the operator needs from the API server, on raw JSON objects.

    ``namespace`` is ignored by cluster-scoped resources; for create, replace and apply it
    defaults to the body's ``metadata.namespace``. ``list`` items and ``watch`` objects are
    fresh dictionaries the caller may keep or change.
    """

    requests: collections.Counter[str]
    """Requests sent so far, by Kubernetes verb."""

    async def get(
        self, resource: resources.Resource, name: str, namespace: str | None = None
    ) -> objects.JsonObject: ...

    async def list(
        self,
        resource: resources.Resource,
        namespace: str | None = None,
        *,
        label_selector: str | None = None,
        field_selector: str | None = None,
        transform: Callable[[objects.JsonObject], objects.JsonObject] | None = None,
        page_size: int = 500,
    ) -> ObjectList:
        """Every object selected, fetched ``page_size`` at a time; ``transform`` is applied to
        each as it arrives, so that only one page of whole objects is held at a time (an
        informer's trimmed cache of thousands of nodes would otherwise cost the whole list at
        its start, and what a large page leaves fragmented stays resident)."""
        ...

    def watch(
        self,
        resource: resources.Resource,
        namespace: str | None = None,
        *,
        resource_version: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
        timeout_seconds: int | None = None,
    ) -> AsyncGenerator[WatchEvent, None]:
        """Stream changes after ``resource_version``, bookmarks included.

        Ends normally when the server closes the watch after ``timeout_seconds``; raises
        ``errors.Gone`` when the resourceVersion is too old. Close it with ``aclose()``
        (``contextlib.aclosing``) when leaving early.
        """
        ...

    async def create(
        self,
        resource: resources.Resource,
        body: objects.JsonObject,
        namespace: str | None = None,
        *,
        field_manager: str | None = None,
        dry_run: bool = False,
    ) -> objects.JsonObject:
        """POST ``body``; ``dry_run`` runs admission and validation but stores nothing."""
        ...

    async def replace(
        self,
        resource: resources.Resource,
        name: str,
        body: objects.JsonObject,
        namespace: str | None = None,
        *,
        field_manager: str | None = None,
    ) -> objects.JsonObject:
        """PUT ``body``; a ``metadata.resourceVersion`` in it makes the write conditional."""
        ...

    async def patch(
        self,
        resource: resources.Resource,
        name: str,
        body: objects.JsonObject | JsonPatch,
        namespace: str | None = None,
        *,
        patch_type: PatchType = PatchType.MERGE,
        field_manager: str | None = None,
        force: bool = False,
        subresource: str | None = None,
    ) -> objects.JsonObject:
        """PATCH in any format; ``force`` only applies to server-side apply."""
        ...

    async def apply(
        self,
        resource: resources.Resource,
        body: objects.JsonObject,
        namespace: str | None = None,
        *,
        field_manager: str,
        force: bool = True,
        subresource: str | None = None,
    ) -> objects.JsonObject:
        """Server-side apply of the complete intent ``body`` (which names the object)."""
        ...

    async def patch_status(
        self,
        resource: resources.Resource,
        name: str,
        body: objects.JsonObject,
        namespace: str | None = None,
        *,
        field_manager: str | None = None,
    ) -> objects.JsonObject:
        """Merge-patch the ``/status`` subresource; ``body`` is ``{"status": {...}}``."""
        ...

    async def delete(
        self,
        resource: resources.Resource,
        name: str,
        namespace: str | None = None,
        *,
        propagation_policy: str | None = None,
        uid: str | None = None,
        resource_version: str | None = None,
    ) -> objects.JsonObject:
        """DELETE, optionally only if the object still has ``uid`` / ``resource_version``.

        Returns the API server's answer: the object (still there while finalizers run) or a
        Status.
        """
        ...

    async def close(self) -> None: ...


def _resolve_namespace(
    resource: resources.Resource, namespace: str | None, body: objects.JsonObject | None = None
) -> str | None:
    if not resource.namespaced:
        return None
    if namespace is None and body is not None:
        namespace = objects.namespace(body)
    if namespace is None:
        raise ValueError(f"{resource.kind} is namespaced: a namespace is required")
    return namespace


def _query(**params: str | int | bool | None) -> builtins.list[tuple[str, str]]:
    """Query parameters with None left out and booleans spelled as Go parses them."""
    query = []
    for key, value in params.items():
        if value is None:
            continue
        text = ("true" if value else "false") if isinstance(value, bool) else str(value)
        query.append((key, text))
    return query


async def connect(
    kubeconfig: str | os.PathLike[str] | None = None,
    *,
    context: str | None = None,
    request_hook: RequestHook | None = None,
    timeout: float = 60.0,
) -> HttpKubeClient:
    """A new client with its own connection pool.

    Credentials come from ``kubeconfig`` when given (a path, or several joined with ``:`` like
    ``KUBECONFIG``), else from the in-cluster service account, else from the client library's
    default kubeconfig location. ``timeout`` bounds every request except watches.
    """
    configuration = k8s_client.Configuration()
    try:
        if kubeconfig is not None:
            await k8s_config.load_kube_config(
                config_file=os.fspath(kubeconfig),
                context=context,
                client_configuration=configuration,
                persist_config=False,
            )
        else:
            try:
                k8s_config.load_incluster_config(client_configuration=configuration)
            except k8s_config.ConfigException:
                await k8s_config.load_kube_config(
                    context=context, client_configuration=configuration, persist_config=False
                )
    except (k8s_config.ConfigException, OSError, ValueError, KeyError) as exc:
        raise errors.ConfigError(f"No usable Kubernetes configuration: {exc}") from exc
    return HttpKubeClient(configuration, request_hook=request_hook, timeout=timeout)


def _session_for(configuration: Any) -> tuple[aiohttp.ClientSession, str | None]:
    """An aiohttp session with the TLS settings of a loaded library ``Configuration``, and the
    proxy to use: the kubeconfig's, else the environment's (``HTTPS_PROXY``/``NO_PROXY``),
    looked up once here rather than for every request."""
    context = ssl.create_default_context(cafile=configuration.ssl_ca_cert)
    if configuration.cert_file:
        context.load_cert_chain(configuration.cert_file, keyfile=configuration.key_file)
    if not configuration.verify_ssl:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if configuration.disable_strict_ssl_verification:
        context.verify_flags &= ~ssl.VERIFY_X509_STRICT
    session = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=configuration.connection_pool_maxsize, ssl=context),
        trust_env=False,
        read_bufsize=2**21,  # one watch event can be a whole object of up to 1.5 MiB
    )
    proxy: str | None = configuration.proxy
    if not proxy:
        url = urllib.parse.urlsplit(configuration.host)
        if not urllib.request.proxy_bypass(url.hostname or ""):
            proxy = urllib.request.getproxies().get(url.scheme)
    return session, proxy


class HttpKubeClient:
    """``KubeClient`` over a loaded kubernetes-asyncio ``Configuration`` (made by ``connect``)."""

    def __init__(
        self,
        configuration: Any,  # the library's Configuration (loaded untyped: kube/library.py)
        *,
        request_hook: RequestHook | None = None,
        timeout: float = 60.0,
    ) -> None:
        self._configuration = configuration
        self._hook = request_hook
        self._timeout = timeout
        self.requests: collections.Counter[str] = collections.Counter()
        self._session, self._proxy = _session_for(configuration)

    @property
    def host(self) -> str:
        """The API server's base URL."""
        return str(self._configuration.host)

    async def close(self) -> None:
        await self._session.close()

    async def __aenter__(self) -> HttpKubeClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def _record(
        self, verb: str, resource: resources.Resource, code: int | None, start: float
    ) -> None:
        self.requests[verb] += 1
        if self._hook is not None:
            self._hook(RequestRecord(verb, resource.plural, code, time.monotonic() - start))

    async def _open(
        self,
        verb: str,
        resource: resources.Resource,
        method: str,
        path: str,
        *,
        query: Iterable[tuple[str, str]] = (),
        body: objects.JsonObject | JsonPatch | None = None,
        content_type: str = "application/json",
        timeout: float | aiohttp.ClientTimeout | None = None,
        accept: str = "application/json",
    ) -> aiohttp.ClientResponse:
        """Send one request and return the response with its body unread."""
        start = time.monotonic()
        configuration = self._configuration
        headers = {
            "User-Agent": USER_AGENT,
            "Accept": accept,
            "Content-Type": content_type,
        }
        # The library's bearer token, refreshed by its hook when it expires (exec plugins).
        bearer = (await configuration.auth_settings()).get("BearerToken")
        if bearer:
            headers["authorization"] = bearer["value"]
        limit = self._timeout if timeout is None else timeout
        arguments: dict[str, Any] = {
            "params": builtins.list(query) or None,
            "headers": headers,
            "data": None if body is None else json.dumps(body),
            "timeout": limit
            if isinstance(limit, aiohttp.ClientTimeout)
            else aiohttp.ClientTimeout(total=limit),
        }
        if self._proxy:
            arguments["proxy"] = self._proxy
            if configuration.proxy_headers:
                arguments["proxy_headers"] = configuration.proxy_headers
        if configuration.tls_server_name:
            arguments["server_hostname"] = configuration.tls_server_name
        try:
            response: aiohttp.ClientResponse = await self._session.request(
                method, configuration.host + path, **arguments
            )
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            self._record(verb, resource, None, start)
            raise errors.TransportError(f"{method} {path} failed: {exc!r}") from exc
        self._record(verb, resource, response.status, start)
        return response

    async def _request(
        self,
        verb: str,
        resource: resources.Resource,
        method: str,
        path: str,
        *,
        query: Iterable[tuple[str, str]] = (),
        body: objects.JsonObject | JsonPatch | None = None,
        content_type: str = "application/json",
    ) -> objects.JsonObject:
        response = await self._open(
            verb, resource, method, path, query=query, body=body, content_type=content_type
        )
        data = await _successful_body(response, method, path)
        try:
            decoded: objects.JsonObject = wirejson.loads(data)
        except ValueError as exc:
            raise errors.TransportError(f"{method} {path} answered with non-JSON") from exc
        return decoded

    async def get(
        self, resource: resources.Resource, name: str, namespace: str | None = None
    ) -> objects.JsonObject:
        path = resource.path(_resolve_namespace(resource, namespace), name)
        return await self._request("get", resource, "GET", path)

    async def list(
        self,
        resource: resources.Resource,
        namespace: str | None = None,
        *,
        label_selector: str | None = None,
        field_selector: str | None = None,
        transform: Callable[[objects.JsonObject], objects.JsonObject] | None = None,
        page_size: int = 500,
    ) -> ObjectList:
        """List in pages of ``page_size``; all pages come from one consistent snapshot."""
        path = resource.path(namespace if resource.namespaced else None)
        items: builtins.list[objects.JsonObject] = []
        resource_version = ""
        token: str | None = None
        while True:
            page = await self._request(
                "list",
                resource,
                "GET",
                path,
                query=_query(
                    labelSelector=label_selector,
                    fieldSelector=field_selector,
                    limit=page_size,
                    **{"continue": token},
                ),
            )
            for item in page.get("items") or ():
                item.setdefault("apiVersion", resource.api_version)
                item.setdefault("kind", resource.kind)
                items.append(item if transform is None else transform(item))
            meta = page.get("metadata") or {}
            resource_version = resource_version or str(meta.get("resourceVersion", ""))
            token = meta.get("continue") or None
            if token is None:
                return ObjectList(items, resource_version)

    async def watch(
        self,
        resource: resources.Resource,
        namespace: str | None = None,
        *,
        resource_version: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
        timeout_seconds: int | None = None,
    ) -> AsyncGenerator[WatchEvent, None]:
        path = resource.path(namespace if resource.namespaced else None)
        query = _query(
            watch=True,
            allowWatchBookmarks=True,
            resourceVersion=resource_version,
            labelSelector=label_selector,
            fieldSelector=field_selector,
            timeoutSeconds=timeout_seconds,
        )
        # The server ends the watch after timeoutSeconds; the read timeout only catches a
        # connection that died silently.
        read_timeout = (timeout_seconds or 1800) + 30
        timeout = aiohttp.ClientTimeout(
            total=None, connect=self._timeout, sock_connect=self._timeout, sock_read=read_timeout
        )
        response = await self._open("watch", resource, "GET", path, query=query, timeout=timeout)
        try:
            if response.status != 200:
                raise errors.from_status(response.status, await response.read())
            while True:
                line = await response.content.readline(max_line_length=_MAX_WATCH_LINE)
                if not line:
                    return
                if not line.strip():
                    continue
                event = wirejson.loads(line)
                kind, obj = event.get("type"), event.get("object") or {}
                if kind == "ERROR":
                    raise errors.from_status(int(obj.get("code") or 500), obj)
                yield WatchEvent(WatchEventType(kind), obj)
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise errors.TransportError(f"Watch of {resource.plural} failed: {exc!r}") from exc
        except ValueError as exc:
            raise errors.TransportError(f"Watch of {resource.plural} sent garbage") from exc
        finally:
            response.close()

    async def create(
        self,
        resource: resources.Resource,
        body: objects.JsonObject,
        namespace: str | None = None,
        *,
        field_manager: str | None = None,
        dry_run: bool = False,
    ) -> objects.JsonObject:
        path = resource.path(_resolve_namespace(resource, namespace, body))
        query = _query(fieldManager=field_manager, dryRun="All" if dry_run else None)
        return await self._request("create", resource, "POST", path, query=query, body=body)

    async def replace(
        self,
        resource: resources.Resource,
        name: str,
        body: objects.JsonObject,
        namespace: str | None = None,
        *,
        field_manager: str | None = None,
    ) -> objects.JsonObject:
        path = resource.path(_resolve_namespace(resource, namespace, body), name)
        return await self._request(
            "update", resource, "PUT", path, query=_query(fieldManager=field_manager), body=body
        )

    async def patch(
        self,
        resource: resources.Resource,
        name: str,
        body: objects.JsonObject | JsonPatch,
        namespace: str | None = None,
        *,
        patch_type: PatchType = PatchType.MERGE,
        field_manager: str | None = None,
        force: bool = False,
        subresource: str | None = None,
    ) -> objects.JsonObject:
        path = resource.path(_resolve_namespace(resource, namespace), name, subresource)
        query = _query(
            fieldManager=field_manager,
            force=True if force and patch_type is PatchType.APPLY else None,
        )
        return await self._request(
            "patch", resource, "PATCH", path, query=query, body=body, content_type=patch_type
        )

    async def apply(
        self,
        resource: resources.Resource,
        body: objects.JsonObject,
        namespace: str | None = None,
        *,
        field_manager: str,
        force: bool = True,
        subresource: str | None = None,
    ) -> objects.JsonObject:
        return await self.patch(
            resource,
            objects.name(body),
            body,
            _resolve_namespace(resource, namespace, body),
            patch_type=PatchType.APPLY,
            field_manager=field_manager,
            force=force,
            subresource=subresource,
        )

    async def patch_status(
        self,
        resource: resources.Resource,
        name: str,
        body: objects.JsonObject,
        namespace: str | None = None,
        *,
        field_manager: str | None = None,
    ) -> objects.JsonObject:
        return await self.patch(
            resource, name, body, namespace, field_manager=field_manager, subresource="status"
        )

    async def delete(
        self,
        resource: resources.Resource,
        name: str,
        namespace: str | None = None,
        *,
        propagation_policy: str | None = None,
        uid: str | None = None,
        resource_version: str | None = None,
    ) -> objects.JsonObject:
        path = resource.path(_resolve_namespace(resource, namespace), name)
        options: objects.JsonObject = {"apiVersion": "v1", "kind": "DeleteOptions"}
        if propagation_policy is not None:
            options["propagationPolicy"] = propagation_policy
        preconditions = {
            key: value
            for key, value in (("uid", uid), ("resourceVersion", resource_version))
            if value is not None
        }
        if preconditions:
            options["preconditions"] = preconditions
        return await self._request("delete", resource, "DELETE", path, body=options)

    async def logs(
        self,
        pod: str,
        namespace: str,
        *,
        container: str | None = None,
        tail_lines: int | None = None,
        limit_bytes: int | None = None,
        previous: bool = False,
    ) -> str:
        """The log of a pod's container (``pods/log``), as text."""
        path = resources.PODS.path(namespace, pod, "log")
        query = _query(
            container=container,
            tailLines=tail_lines,
            limitBytes=limit_bytes,
            previous=previous or None,
        )
        response = await self._open(
            "get", resources.PODS, "GET", path, query=query, accept="text/plain, */*"
        )
        data = await _successful_body(response, "GET", path)
        return data.decode("utf-8", errors="replace")


async def _successful_body(response: aiohttp.ClientResponse, method: str, path: str) -> bytes:
    """The whole body of a 2xx answer; a transport failure or any other status as KubeError."""
    try:
        async with response:
            data = await response.read()
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        raise errors.TransportError(f"{method} {path} failed: {exc!r}") from exc
    if not 200 <= response.status < 300:
        raise errors.from_status(response.status, data)
    return data
