"""What ``HttpKubeClient`` puts on the wire and how it reads the answers, against a scripted
local HTTP server (the real API server is in tests/envtest/test_kube_client.py)."""

from __future__ import annotations

import json
import pathlib
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web
from kubernetes_asyncio import client as k8s_client

from deviceplugin_operator.kube import client, errors, resources

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Server:
    """Records requests; answers with the handler set for (method, path)."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str, dict[str, str], str, Any]] = []
        self.routes: dict[tuple[str, str], Handler] = {}
        self.authorizations: list[str | None] = []
        self.url = ""

    async def dispatch(self, request: web.Request) -> web.StreamResponse:
        body = await request.text()
        self.authorizations.append(request.headers.get("Authorization"))
        self.requests.append(
            (
                request.method,
                request.path,
                dict(request.query),
                request.headers.get("Content-Type", ""),
                json.loads(body) if body else None,
            )
        )
        handler = self.routes.get((request.method, request.path))
        if handler is None:
            return web.json_response(
                {"kind": "Status", "code": 404, "reason": "NotFound", "message": "nope"},
                status=404,
            )
        return await handler(request)


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    fake = Server()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", fake.dispatch)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    fake.url = f"http://127.0.0.1:{port}"
    yield fake
    await runner.cleanup()


def make_client(host: str, hook: client.RequestHook | None = None) -> client.HttpKubeClient:
    return client.HttpKubeClient(k8s_client.Configuration(host=host), request_hook=hook, timeout=5)


@pytest.fixture
async def kube(server: Server) -> AsyncIterator[client.HttpKubeClient]:
    records: list[client.RequestRecord] = []
    kube = make_client(server.url, records.append)
    kube.records = records  # type: ignore[attr-defined]
    yield kube
    await kube.close()


def answer(body: Any, status: int = 200) -> Handler:
    async def handler(request: web.Request) -> web.StreamResponse:
        return web.json_response(body, status=status)

    return handler


async def test_get_returns_the_raw_object_and_counts_the_request(
    server: Server, kube: client.HttpKubeClient
) -> None:
    path = "/apis/apps/v1/namespaces/ns/daemonsets/ds"
    server.routes["GET", path] = answer({"kind": "DaemonSet", "metadata": {"name": "ds"}})
    obj = await kube.get(resources.DAEMON_SETS, "ds", "ns")
    assert obj == {"kind": "DaemonSet", "metadata": {"name": "ds"}}
    assert kube.requests == {"get": 1}
    (record,) = kube.records  # type: ignore[attr-defined]
    assert (record.verb, record.resource, record.code) == ("get", "daemonsets", 200)


async def test_failures_raise_the_tree_and_are_counted(
    server: Server, kube: client.HttpKubeClient
) -> None:
    with pytest.raises(errors.NotFound) as caught:
        await kube.get(resources.PODS, "missing", "ns")
    assert caught.value.message == "nope"
    assert kube.requests == {"get": 1}
    assert kube.records[0].code == 404  # type: ignore[attr-defined]


async def test_list_follows_continue_tokens_and_fills_in_kind(
    server: Server, kube: client.HttpKubeClient
) -> None:
    async def pages(request: web.Request) -> web.StreamResponse:
        if "continue" not in request.query:
            meta = {"resourceVersion": "10", "continue": "next"}
            return web.json_response({"metadata": meta, "items": [{"metadata": {"name": "a"}}]})
        return web.json_response(
            {"metadata": {"resourceVersion": "10"}, "items": [{"metadata": {"name": "b"}}]}
        )

    server.routes["GET", "/api/v1/namespaces/ns/pods"] = pages
    listing = await kube.list(
        resources.PODS, "ns", label_selector="app=x", field_selector="spec.nodeName=n", page_size=1
    )
    assert [item["metadata"]["name"] for item in listing.items] == ["a", "b"]
    assert all(item["kind"] == "Pod" and item["apiVersion"] == "v1" for item in listing.items)
    assert listing.resource_version == "10"
    first, second = (request[2] for request in server.requests)
    assert first == {"labelSelector": "app=x", "fieldSelector": "spec.nodeName=n", "limit": "1"}
    assert second["continue"] == "next"
    assert kube.requests == {"list": 2}


def watch_stream(*events: dict[str, Any]) -> Handler:
    async def handler(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        response.content_type = "application/json"
        await response.prepare(request)
        for event in events:
            await response.write(json.dumps(event).encode() + b"\n")
        await response.write_eof()
        return response

    return handler


async def test_watch_sends_bookmark_and_version_parameters_and_yields_events(
    server: Server, kube: client.HttpKubeClient
) -> None:
    server.routes["GET", "/apis/apps/v1/namespaces/ns/daemonsets"] = watch_stream(
        {"type": "ADDED", "object": {"metadata": {"name": "a", "resourceVersion": "11"}}},
        {"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "12"}}},
        {"type": "DELETED", "object": {"metadata": {"name": "a", "resourceVersion": "13"}}},
    )
    events = [
        event
        async for event in kube.watch(
            resources.DAEMON_SETS, "ns", resource_version="10", timeout_seconds=30
        )
    ]
    assert [event.type for event in events] == ["ADDED", "BOOKMARK", "DELETED"]
    assert events[1].type is client.WatchEventType.BOOKMARK
    query = server.requests[0][2]
    assert query == {
        "watch": "true",
        "allowWatchBookmarks": "true",
        "resourceVersion": "10",
        "timeoutSeconds": "30",
    }
    assert kube.requests == {"watch": 1}


async def test_a_watch_error_event_with_410_raises_gone(
    server: Server, kube: client.HttpKubeClient
) -> None:
    server.routes["GET", "/api/v1/pods"] = watch_stream(
        {"type": "ADDED", "object": {"metadata": {"name": "a"}}},
        {
            "type": "ERROR",
            "object": {"kind": "Status", "code": 410, "reason": "Expired", "message": "too old"},
        },
    )
    seen: list[client.WatchEvent] = []

    async def consume() -> None:
        async for event in kube.watch(resources.PODS, resource_version="1"):
            seen.append(event)

    with pytest.raises(errors.Gone, match="too old"):
        await consume()
    assert len(seen) == 1


async def test_a_watch_refused_up_front_raises_from_its_status(
    server: Server, kube: client.HttpKubeClient
) -> None:
    server.routes["GET", "/api/v1/pods"] = answer(
        {"kind": "Status", "code": 403, "reason": "Forbidden", "message": "denied"}, status=403
    )
    with pytest.raises(errors.Forbidden):
        async for _ in kube.watch(resources.PODS):
            pass


async def test_patch_content_types_and_apply_parameters(
    server: Server, kube: client.HttpKubeClient
) -> None:
    path = "/apis/apps/v1/namespaces/ns/daemonsets/ds"
    server.routes["PATCH", path] = answer({"metadata": {"name": "ds"}})
    server.routes["PATCH", path + "/status"] = answer({"metadata": {"name": "ds"}})
    ds = resources.DAEMON_SETS
    await kube.patch(ds, "ds", {"spec": {}}, "ns")
    await kube.patch(ds, "ds", {"spec": {}}, "ns", patch_type=client.PatchType.STRATEGIC)
    await kube.patch(
        ds, "ds", [{"op": "remove", "path": "/spec/x"}], "ns", patch_type=client.PatchType.JSON
    )
    body = {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": {"name": "ds", "namespace": "ns"},
    }
    await kube.apply(ds, body, field_manager="operator")
    await kube.patch_status(ds, "ds", {"status": {"x": 1}}, "ns")
    sent = [(request[1], request[2], request[3]) for request in server.requests]
    assert sent == [
        (path, {}, "application/merge-patch+json"),
        (path, {}, "application/strategic-merge-patch+json"),
        (path, {}, "application/json-patch+json"),
        (path, {"fieldManager": "operator", "force": "true"}, "application/apply-patch+yaml"),
        (path + "/status", {}, "application/merge-patch+json"),
    ]
    assert server.requests[2][4] == [{"op": "remove", "path": "/spec/x"}]
    assert server.requests[3][4] == body
    assert kube.requests == {"patch": 5}


async def test_create_replace_and_delete_bodies(
    server: Server, kube: client.HttpKubeClient
) -> None:
    collection = "/api/v1/namespaces/ns/configmaps"
    server.routes["POST", collection] = answer({"metadata": {"name": "c"}}, status=201)
    server.routes["PUT", collection + "/c"] = answer({"metadata": {"name": "c"}})
    server.routes["DELETE", collection + "/c"] = answer({"kind": "Status", "status": "Success"})
    body = {"metadata": {"name": "c", "namespace": "ns"}, "data": {"k": "v"}}
    await kube.create(resources.CONFIG_MAPS, body, field_manager="op")
    await kube.replace(resources.CONFIG_MAPS, "c", body)
    await kube.delete(resources.CONFIG_MAPS, "c", "ns", propagation_policy="Foreground", uid="u-1")
    assert [request[0] for request in server.requests] == ["POST", "PUT", "DELETE"]
    assert server.requests[0][2] == {"fieldManager": "op"}
    assert server.requests[0][4] == body
    assert server.requests[2][4] == {
        "apiVersion": "v1",
        "kind": "DeleteOptions",
        "propagationPolicy": "Foreground",
        "preconditions": {"uid": "u-1"},
    }
    assert kube.requests == {"create": 1, "update": 1, "delete": 1}


async def test_a_namespaced_write_needs_a_namespace(kube: client.HttpKubeClient) -> None:
    with pytest.raises(ValueError, match="namespace"):
        await kube.create(resources.CONFIG_MAPS, {"metadata": {"name": "c"}})


async def test_no_answer_is_a_transport_error() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    records: list[client.RequestRecord] = []
    kube = make_client(f"http://127.0.0.1:{port}", records.append)
    try:
        with pytest.raises(errors.TransportError):
            await kube.get(resources.PODS, "p", "ns")
        with pytest.raises(errors.TransportError):
            async for _ in kube.watch(resources.PODS):
                pass
    finally:
        await kube.close()
    assert [(record.verb, record.code) for record in records] == [("get", None), ("watch", None)]


async def test_connect_reads_a_kubeconfig(server: Server, tmp_path: pathlib.Path) -> None:
    server.routes["GET", "/api/v1/namespaces/default"] = answer({"metadata": {"name": "default"}})
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": {"server": server.url}}],
                "users": [{"name": "u", "user": {"token": "secret-token"}}],
                "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "x",
            }
        )
    )
    kube = await client.connect(kubeconfig)
    async with kube:
        assert kube.host == server.url
        await kube.get(resources.NAMESPACES, "default")
    assert server.requests[0][1] == "/api/v1/namespaces/default"
    assert server.authorizations == ["Bearer secret-token"]


async def test_connect_without_configuration_fails_clearly(tmp_path: pathlib.Path) -> None:
    with pytest.raises(errors.ConfigError):
        await client.connect(tmp_path / "missing")
