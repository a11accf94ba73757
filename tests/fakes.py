"""An in-memory ``KubeClient`` for unit tests: the port's fake, like httpx's MockTransport.

It keeps objects per resource with a cluster-wide resourceVersion counter, uids, generations
and an event history, so that lists and watches behave like the API server's: watches replay
from a resourceVersion, honour namespace/label/field selectors (an object that stops matching
a label selector is DELETED for that watch), and raise ``errors.Gone`` from a compacted
resourceVersion. Tests drive the unhappy paths explicitly: ``fail`` makes the next calls of a
verb raise, ``break_watches`` cuts open watches with an error, ``end_watches`` closes them as a
server timeout does, ``bookmark`` sends bookmarks, ``compact`` forgets the history.

Simplifications, on purpose: a strategic merge patch is applied as a JSON merge patch, and
server-side apply merges the intent into the live object (fields dropped from the intent are
not removed); there is no admission, defaulting or garbage collection.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import copy
import dataclasses
import datetime
import re
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterable
from typing import Any

from deviceplugin_operator.kube import client, errors, objects, resources

JsonObject = objects.JsonObject
Matcher = Callable[[JsonObject], bool]

WRITE_VERBS = frozenset({"create", "update", "patch", "delete"})

_END = object()


@dataclasses.dataclass(frozen=True)
class Call:
    """One request the fake received."""

    verb: str
    resource: str
    namespace: str | None
    name: str | None


@dataclasses.dataclass
class _Change:
    version: int
    resource: resources.Resource
    type: client.WatchEventType
    obj: JsonObject
    old: JsonObject | None


@dataclasses.dataclass
class _Watcher:
    resource: resources.Resource
    matches: Matcher
    queue: asyncio.Queue[object]


class FakeKubeClient:
    """``client.KubeClient`` in memory."""

    def __init__(self) -> None:
        self.requests: collections.Counter[str] = collections.Counter()
        self.calls: list[Call] = []
        self._objects: dict[resources.Resource, dict[tuple[str | None, str], JsonObject]] = {}
        self._version = 0
        self._history: list[_Change] = []
        self._horizon = 0
        self._watchers: list[_Watcher] = []
        self._failures: dict[str, collections.deque[BaseException]] = collections.defaultdict(
            collections.deque
        )
        self.closed = False

    # Test controls -------------------------------------------------------------------------
    @property
    def writes(self) -> int:
        """Write requests received so far."""
        return sum(self.requests[verb] for verb in WRITE_VERBS)

    @property
    def resource_version(self) -> str:
        """The latest resourceVersion handed out."""
        return str(self._version)

    @property
    def open_watches(self) -> int:
        return len(self._watchers)

    def reset_counts(self) -> None:
        self.requests.clear()
        self.calls.clear()

    def fail(self, verb: str, exc: BaseException, times: int = 1) -> None:
        """Make the next ``times`` requests of ``verb`` raise ``exc``."""
        self._failures[verb].extend([exc] * times)

    def break_watches(self, exc: BaseException | None = None) -> None:
        """Make every open watch raise ``exc`` (a transport failure by default)."""
        for watcher in self._watchers:
            watcher.queue.put_nowait(exc or errors.TransportError("connection reset by fake"))

    def expire_watches(self) -> None:
        """Make every open watch raise 410 Gone, as when it falls behind compaction."""
        self.break_watches(errors.Gone(410, "Expired", "too old resource version"))

    def end_watches(self) -> None:
        """Close every open watch normally, as the server does after ``timeoutSeconds``."""
        for watcher in self._watchers:
            watcher.queue.put_nowait(_END)

    def bookmark(self) -> None:
        """Send a BOOKMARK at the current resourceVersion to every open watch."""
        for watcher in self._watchers:
            mark = {
                "apiVersion": watcher.resource.api_version,
                "kind": watcher.resource.kind,
                "metadata": {"resourceVersion": str(self._version)},
            }
            watcher.queue.put_nowait(client.WatchEvent(client.WatchEventType.BOOKMARK, mark))

    def compact(self) -> None:
        """Forget the history: watches from any resourceVersion seen so far get 410 Gone."""
        self._history.clear()
        self._horizon = self._version + 1
        self._version += 1

    def touch(self) -> None:
        """Advance the resourceVersion, as changes to objects nobody watches here do."""
        self._version += 1

    def stored(self, resource: resources.Resource) -> list[JsonObject]:
        """Copies of the stored objects of ``resource`` (no request is counted)."""
        return [copy.deepcopy(obj) for obj in self._objects.get(resource, {}).values()]

    # Bookkeeping ---------------------------------------------------------------------------
    def _request(
        self, verb: str, resource: resources.Resource, namespace: str | None, name: str | None
    ) -> None:
        self.requests[verb] += 1
        self.calls.append(Call(verb, resource.plural, namespace, name))
        pending = self._failures.get(verb)
        if pending:
            raise pending.popleft()

    def _bucket(self, resource: resources.Resource) -> dict[tuple[str | None, str], JsonObject]:
        return self._objects.setdefault(resource, {})

    @staticmethod
    def _namespace(
        resource: resources.Resource, namespace: str | None, body: JsonObject | None = None
    ) -> str | None:
        if not resource.namespaced:
            return None
        namespace = namespace or (objects.namespace(body) if body is not None else None)
        if not namespace:
            raise ValueError(f"{resource.kind} is namespaced: a namespace is required")
        return namespace

    def _existing(
        self, resource: resources.Resource, name: str, namespace: str | None
    ) -> JsonObject:
        found = self._bucket(resource).get((namespace, name))
        if found is None:
            raise errors.NotFound(404, "NotFound", f'{resource.plural} "{name}" not found')
        return found

    def _record(
        self,
        resource: resources.Resource,
        kind: client.WatchEventType,
        obj: JsonObject,
        old: JsonObject | None,
    ) -> None:
        change = _Change(self._version, resource, kind, copy.deepcopy(obj), old)
        self._history.append(change)
        for watcher in self._watchers:
            if watcher.resource == resource:
                event = _event_for(watcher.matches, change)
                if event is not None:
                    watcher.queue.put_nowait(event)

    def _store(
        self,
        resource: resources.Resource,
        obj: JsonObject,
        old: JsonObject | None,
        *,
        status_only: bool = False,
    ) -> JsonObject:
        """Write ``obj`` (the new full state) with a fresh resourceVersion and notify."""
        self._version += 1
        meta = obj.setdefault("metadata", {})
        meta["resourceVersion"] = str(self._version)
        obj["apiVersion"] = resource.api_version
        obj["kind"] = resource.kind
        if old is not None and not status_only and _spec_of(old) != _spec_of(obj):
            meta["generation"] = int(objects.metadata(old).get("generation", 1)) + 1
        key = (objects.namespace(obj), objects.name(obj))
        if old is not None and meta.get("deletionTimestamp") and not meta.get("finalizers"):
            del self._bucket(resource)[key]
            self._record(resource, client.WatchEventType.DELETED, obj, old)
            return copy.deepcopy(obj)
        self._bucket(resource)[key] = obj
        kind = client.WatchEventType.ADDED if old is None else client.WatchEventType.MODIFIED
        self._record(resource, kind, obj, old)
        return copy.deepcopy(obj)

    # The KubeClient protocol ---------------------------------------------------------------
    async def get(
        self, resource: resources.Resource, name: str, namespace: str | None = None
    ) -> JsonObject:
        namespace = self._namespace(resource, namespace)
        self._request("get", resource, namespace, name)
        return copy.deepcopy(self._existing(resource, name, namespace))

    async def list(
        self,
        resource: resources.Resource,
        namespace: str | None = None,
        *,
        label_selector: str | None = None,
        field_selector: str | None = None,
        transform: Callable[[objects.JsonObject], objects.JsonObject] | None = None,
        page_size: int = 500,
    ) -> client.ObjectList:
        namespace = namespace if resource.namespaced else None
        self._request("list", resource, namespace, None)
        matches = matcher(namespace, label_selector, field_selector)
        items = [
            copy.deepcopy(obj) if transform is None else transform(copy.deepcopy(obj))
            for _, obj in sorted(self._bucket(resource).items(), key=lambda item: str(item[0]))
            if matches(obj)
        ]
        return client.ObjectList(items, str(self._version))

    async def watch(
        self,
        resource: resources.Resource,
        namespace: str | None = None,
        *,
        resource_version: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
        timeout_seconds: int | None = None,
    ) -> AsyncGenerator[client.WatchEvent, None]:
        namespace = namespace if resource.namespaced else None
        self._request("watch", resource, namespace, None)
        watcher = _Watcher(
            resource, matcher(namespace, label_selector, field_selector), asyncio.Queue()
        )
        backlog: list[client.WatchEvent] = []
        if resource_version in (None, "", "0"):
            for obj in self._bucket(resource).values():
                if watcher.matches(obj):
                    backlog.append(
                        client.WatchEvent(client.WatchEventType.ADDED, copy.deepcopy(obj))
                    )
        else:
            start = int(resource_version or 0)
            if start < self._horizon:
                raise errors.Gone(410, "Expired", f"too old resource version: {start}")
            for change in self._history:
                if change.version > start and change.resource == resource:
                    event = _event_for(watcher.matches, change)
                    if event is not None:
                        backlog.append(event)
        self._watchers.append(watcher)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_seconds if timeout_seconds else None
        try:
            for event in backlog:
                yield event
            while True:
                try:
                    async with asyncio.timeout_at(deadline):
                        item = await watcher.queue.get()
                except TimeoutError:
                    return
                if item is _END:
                    return
                if isinstance(item, BaseException):
                    raise item
                assert isinstance(item, client.WatchEvent)
                yield item
        finally:
            self._watchers.remove(watcher)

    async def create(
        self,
        resource: resources.Resource,
        body: JsonObject,
        namespace: str | None = None,
        *,
        field_manager: str | None = None,
    ) -> JsonObject:
        namespace = self._namespace(resource, namespace, body)
        self._request("create", resource, namespace, objects.name(body) or None)
        return self._create(resource, body, namespace)

    def _create(
        self, resource: resources.Resource, body: JsonObject, namespace: str | None
    ) -> JsonObject:
        obj = copy.deepcopy(body)
        meta = obj.setdefault("metadata", {})
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = meta["generateName"] + uuid.uuid4().hex[:5]
        name = str(meta.get("name") or "")
        if not name:
            raise errors.Invalid(422, "Invalid", "metadata.name: Required value")
        if (namespace, name) in self._bucket(resource):
            raise errors.AlreadyExists(
                409, "AlreadyExists", f'{resource.plural} "{name}" already exists'
            )
        if namespace is not None:
            meta["namespace"] = namespace
        meta.pop("resourceVersion", None)
        meta["uid"] = str(uuid.uuid4())
        meta["generation"] = 1
        meta["creationTimestamp"] = _now()
        return self._store(resource, obj, None)

    async def replace(
        self,
        resource: resources.Resource,
        name: str,
        body: JsonObject,
        namespace: str | None = None,
        *,
        field_manager: str | None = None,
    ) -> JsonObject:
        namespace = self._namespace(resource, namespace, body)
        self._request("update", resource, namespace, name)
        current = self._existing(resource, name, namespace)
        wanted = objects.resource_version(body)
        if wanted and wanted != objects.resource_version(current):
            raise errors.Conflict(
                409,
                "Conflict",
                f'Operation cannot be fulfilled on {resource.plural} "{name}": '
                "the object has been modified; please apply your changes to the latest version",
            )
        obj = copy.deepcopy(body)
        meta = obj.setdefault("metadata", {})
        for kept in ("uid", "creationTimestamp", "generation", "deletionTimestamp"):
            if kept in current["metadata"]:
                meta[kept] = current["metadata"][kept]
        meta["name"] = name
        if namespace is not None:
            meta["namespace"] = namespace
        if "status" in current:
            obj["status"] = copy.deepcopy(current["status"])
        return self._store(resource, obj, current)

    async def patch(
        self,
        resource: resources.Resource,
        name: str,
        body: JsonObject | client.JsonPatch,
        namespace: str | None = None,
        *,
        patch_type: client.PatchType = client.PatchType.MERGE,
        field_manager: str | None = None,
        force: bool = False,
        subresource: str | None = None,
    ) -> JsonObject:
        namespace = self._namespace(resource, namespace, body if isinstance(body, dict) else None)
        self._request("patch", resource, namespace, name)
        current = self._bucket(resource).get((namespace, name))
        if current is None:
            if patch_type is client.PatchType.APPLY and subresource is None:
                assert isinstance(body, dict)
                return self._create(resource, body, namespace)
            raise errors.NotFound(404, "NotFound", f'{resource.plural} "{name}" not found')
        if patch_type is client.PatchType.JSON:
            assert isinstance(body, list)
            patched = json_patch(current, body)
        else:
            assert isinstance(body, dict)
            patched = merge_patch(current, body)
        if subresource == "status":
            obj = copy.deepcopy(current)
            if "status" in patched:
                obj["status"] = patched["status"]
            else:
                obj.pop("status", None)
            return self._store(resource, obj, current, status_only=True)
        if "status" in current:
            patched["status"] = copy.deepcopy(current["status"])
        patched["metadata"]["uid"] = current["metadata"]["uid"]
        return self._store(resource, patched, current)

    async def apply(
        self,
        resource: resources.Resource,
        body: JsonObject,
        namespace: str | None = None,
        *,
        field_manager: str,
        force: bool = True,
        subresource: str | None = None,
    ) -> JsonObject:
        return await self.patch(
            resource,
            objects.name(body),
            body,
            namespace,
            patch_type=client.PatchType.APPLY,
            field_manager=field_manager,
            force=force,
            subresource=subresource,
        )

    async def patch_status(
        self,
        resource: resources.Resource,
        name: str,
        body: JsonObject,
        namespace: str | None = None,
        *,
        field_manager: str | None = None,
    ) -> JsonObject:
        return await self.patch(resource, name, body, namespace, subresource="status")

    async def delete(
        self,
        resource: resources.Resource,
        name: str,
        namespace: str | None = None,
        *,
        propagation_policy: str | None = None,
        uid: str | None = None,
        resource_version: str | None = None,
    ) -> JsonObject:
        namespace = self._namespace(resource, namespace)
        self._request("delete", resource, namespace, name)
        current = self._existing(resource, name, namespace)
        if uid is not None and uid != objects.uid(current):
            raise errors.Conflict(
                409, "Conflict", f"Precondition failed: UID in precondition: {uid}"
            )
        if resource_version is not None and resource_version != objects.resource_version(current):
            raise errors.Conflict(
                409,
                "Conflict",
                f"Precondition failed: ResourceVersion in precondition: {resource_version}",
            )
        obj = copy.deepcopy(current)
        obj["metadata"].setdefault("deletionTimestamp", _now())
        if obj["metadata"].get("finalizers"):
            return self._store(resource, obj, current)
        self._version += 1
        obj["metadata"]["resourceVersion"] = str(self._version)
        del self._bucket(resource)[(namespace, name)]
        self._record(resource, client.WatchEventType.DELETED, obj, current)
        return {"apiVersion": "v1", "kind": "Status", "status": "Success"}

    async def close(self) -> None:
        self.closed = True


class HeldLists(FakeKubeClient):
    """The fake, holding every list of ``held`` until ``release`` is set (a first list that
    takes long, e.g. a cluster's nodes)."""

    def __init__(self, held: resources.Resource) -> None:
        super().__init__()
        self.held = held
        self.release = asyncio.Event()

    async def list(
        self, resource: resources.Resource, namespace: str | None = None, **selectors: Any
    ) -> client.ObjectList:
        if resource == self.held:
            await self.release.wait()
        return await super().list(resource, namespace, **selectors)


@contextlib.asynccontextmanager
async def embedded_manager(
    kube: FakeKubeClient, devices: tuple[str, ...], namespace: str = "plugins"
) -> AsyncIterator[Any]:
    """A ``manager.Manager`` of ``devices`` on ``kube``, serving (probes on a free port, no
    webhooks, informers started) and stopped on exit; its workers are the test's to start."""
    from deviceplugin_operator import manager, settings

    config = settings.Settings(plugin_namespace=namespace, devices=devices)
    options = manager.Options(health_probe_bind_address="127.0.0.1:0", webhook_port=0)
    mgr = manager.Manager(config, options, kube)
    await mgr.serve()
    try:
        yield mgr
    finally:
        await mgr.stop()


def plugin_pod(
    name: str, daemonset: JsonObject, node: str, *, namespace: str = "plugins", ready: bool = False
) -> JsonObject:
    """A Running pod of ``daemonset`` (its controller) on ``node``, Ready if ``ready``."""
    labels = ((daemonset.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": dict(labels) or {"app": "intel-gpu-plugin"},
            "ownerReferences": [
                {
                    "apiVersion": "apps/v1",
                    "kind": "DaemonSet",
                    "name": objects.name(daemonset),
                    "uid": objects.uid(daemonset),
                    "controller": True,
                }
            ],
        },
        "spec": {"nodeName": node, "containers": [{"name": "c", "image": "x"}]},
        "status": {
            "phase": "Running",
            **({"conditions": [{"type": "Ready", "status": "True"}]} if ready else {}),
        },
    }


# Selectors -------------------------------------------------------------------------------
_REQUIREMENT = re.compile(
    r"^\s*(?P<neg>!)?\s*(?P<key>[\w./-]+)\s*"
    r"(?:(?P<op>==|!=|=)\s*(?P<value>[\w.-]*)|\s+(?P<setop>in|notin)\s*\((?P<values>[^)]*)\))?\s*$"
)


def _split(selector: str) -> Iterable[str]:
    """Split on commas outside parentheses."""
    depth, start = 0, 0
    for index, char in enumerate(selector):
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        elif char == "," and depth == 0:
            yield selector[start:index]
            start = index + 1
    yield selector[start:]


def _requirement_holds(labels: dict[str, str], key: str, op: str, values: frozenset[str]) -> bool:
    if op == "exists":
        return key in labels
    if op == "!exists":
        return key not in labels
    if op in ("!=", "notin"):
        return labels.get(key) not in values
    return labels.get(key) in values  # =, ==, in


def label_matcher(selector: str | None) -> Matcher:
    """A predicate for a label selector (equality, set and existence requirements)."""
    requirements: list[tuple[str, str, frozenset[str]]] = []
    for part in _split(selector or ""):
        if not part.strip():
            continue
        found = _REQUIREMENT.match(part)
        if found is None:
            raise errors.ApiError(400, "BadRequest", f"unable to parse requirement: {part!r}")
        if found["setop"]:
            values = frozenset(v.strip() for v in found["values"].split(","))
            requirements.append((found["key"], found["setop"], values))
        elif found["op"]:
            requirements.append((found["key"], found["op"], frozenset({found["value"]})))
        else:
            requirements.append(
                (found["key"], "!exists" if found["neg"] else "exists", frozenset())
            )
    return lambda obj: all(
        _requirement_holds(objects.labels(obj), key, op, values) for key, op, values in requirements
    )


def field_matcher(selector: str | None) -> Matcher:
    """A predicate for a field selector of ``path=value`` / ``path!=value`` terms."""
    checks: list[Matcher] = []
    for part in (selector or "").split(","):
        if not part.strip():
            continue
        negate = "!=" in part
        path, _, value = part.partition("!=" if negate else "=")
        path, value = path.strip(), value.lstrip("=").strip()

        def check(
            obj: JsonObject, path: str = path, value: str = value, negate: bool = negate
        ) -> bool:
            node: Any = obj
            for step in path.split("."):
                node = node.get(step) if isinstance(node, dict) else None
            return (str(node if node is not None else "") == value) != negate

        checks.append(check)
    return lambda obj: all(check(obj) for check in checks)


def matcher(namespace: str | None, labels: str | None, fields: str | None) -> Matcher:
    by_label, by_field = label_matcher(labels), field_matcher(fields)
    return lambda obj: (
        (namespace is None or objects.namespace(obj) == namespace)
        and by_label(obj)
        and by_field(obj)
    )


def _event_for(matches: Matcher, change: _Change) -> client.WatchEvent | None:
    """What a watch with this filter sees of ``change`` (None when nothing)."""
    now = matches(change.obj)
    before = change.old is not None and matches(change.old)
    kind: client.WatchEventType | None
    if change.type == client.WatchEventType.DELETED:
        kind = change.type if now or before else None
    elif now:
        kind = client.WatchEventType.MODIFIED if before else client.WatchEventType.ADDED
    else:
        kind = client.WatchEventType.DELETED if before else None
    return None if kind is None else client.WatchEvent(kind, copy.deepcopy(change.obj))


# Patches -----------------------------------------------------------------------------------
def merge_patch(target: JsonObject, patch: JsonObject) -> JsonObject:
    """RFC 7386 JSON merge patch of a copy of ``target``."""
    result = copy.deepcopy(target)
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        elif isinstance(value, dict) and isinstance(result.get(key), dict):
            result[key] = merge_patch(result[key], value)
        elif isinstance(value, dict):
            result[key] = merge_patch({}, value)
        else:
            result[key] = copy.deepcopy(value)
    return result


def _pointer(path: str) -> list[str]:
    if not path.startswith("/"):
        raise errors.Invalid(422, "Invalid", f"bad JSON pointer {path!r}")
    return [step.replace("~1", "/").replace("~0", "~") for step in path[1:].split("/")]


def json_patch(target: JsonObject, operations: client.JsonPatch) -> JsonObject:
    """RFC 6902 add/remove/replace/test on a copy of ``target``."""
    result = copy.deepcopy(target)
    for operation in operations:
        *parents, last = _pointer(str(operation["path"]))
        node: Any = result
        for step in parents:
            node = node[int(step)] if isinstance(node, list) else node[step]
        op = operation["op"]
        if isinstance(node, list):
            index = len(node) if last == "-" else int(last)
            if op == "add":
                node.insert(index, copy.deepcopy(operation["value"]))
            elif op == "remove":
                del node[index]
            elif op == "replace":
                node[index] = copy.deepcopy(operation["value"])
            elif op == "test" and node[index] != operation["value"]:
                raise errors.Invalid(422, "Invalid", f"test failed at {operation['path']}")
        elif op in ("add", "replace"):
            if op == "replace" and last not in node:
                raise errors.Invalid(422, "Invalid", f"missing path {operation['path']}")
            node[last] = copy.deepcopy(operation["value"])
        elif op == "remove":
            if last not in node:
                raise errors.Invalid(422, "Invalid", f"missing path {operation['path']}")
            del node[last]
        elif op == "test" and node.get(last) != operation["value"]:
            raise errors.Invalid(422, "Invalid", f"test failed at {operation['path']}")
    return result


def _spec_of(obj: JsonObject) -> JsonObject:
    return {key: value for key, value in obj.items() if key not in ("metadata", "status")}


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
