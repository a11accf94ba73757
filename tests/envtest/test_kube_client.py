"""``HttpKubeClient`` against the real API server: every verb, every patch format, the error
tree, and watches that resume from a resourceVersion."""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import pytest

from deviceplugin_operator.kube import client, errors, objects, resources
from polling import eventually_async

if TYPE_CHECKING:
    # Only for annotations: "conftest" may name tests/unit/conftest.py when both are loaded.
    from clusters import TestCluster

pytestmark = pytest.mark.cluster

CM = resources.CONFIG_MAPS
DS = resources.DAEMON_SETS
WIDGETS_GROUP = "kubeclient.test.deviceplugin.example"
WIDGETS = resources.Resource.of(f"{WIDGETS_GROUP}/v1", "Widget", "widgets", namespaced=False)


@pytest.fixture
async def kube(cluster: TestCluster) -> AsyncIterator[client.HttpKubeClient]:
    kube = await client.connect(cluster.kubeconfig)
    try:
        yield kube
    finally:
        await kube.close()


def config_map(name: str, namespace: str, **labels: str) -> objects.JsonObject:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "data": {"key": "one"},
    }


def daemon_set(name: str, namespace: str) -> objects.JsonObject:
    return {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {
                    "nodeSelector": {"no-such-node": "true"},
                    "automountServiceAccountToken": False,
                    "containers": [
                        {"name": "main", "image": "example.invalid/main:1"},
                        {"name": "side", "image": "example.invalid/side:1"},
                    ],
                },
            },
        },
    }


async def test_create_get_list_replace_delete(kube: client.HttpKubeClient, namespace: str) -> None:
    created = await kube.create(CM, config_map("first", namespace, app="plugin"))
    await kube.create(CM, config_map("second", namespace))
    assert objects.uid(created)
    assert created["data"] == {"key": "one"}

    fetched = await kube.get(CM, "first", namespace)
    assert objects.resource_version(fetched) == objects.resource_version(created)

    listing = await kube.list(CM, namespace, label_selector="app=plugin")
    assert [objects.name(item) for item in listing.items] == ["first"]
    assert listing.items[0]["kind"] == "ConfigMap"
    assert listing.items[0]["apiVersion"] == "v1"
    assert int(listing.resource_version) >= int(objects.resource_version(created))
    by_field = await kube.list(CM, namespace, field_selector="metadata.name=second")
    assert [objects.name(item) for item in by_field.items] == ["second"]

    fetched["data"] = {"key": "two"}
    replaced = await kube.replace(CM, "first", fetched)
    assert replaced["data"] == {"key": "two"}

    fetched["data"] = {"key": "stale"}
    with pytest.raises(errors.Conflict):
        await kube.replace(CM, "first", fetched)  # still carries the old resourceVersion

    with pytest.raises(errors.Conflict):
        await kube.delete(CM, "first", namespace, uid=str(uuid.uuid4()))
    await kube.delete(CM, "first", namespace, uid=objects.uid(created))
    with pytest.raises(errors.NotFound):
        await kube.get(CM, "first", namespace)
    with pytest.raises(errors.NotFound):
        await kube.delete(CM, "first", namespace)


async def test_errors_map_onto_the_tree(kube: client.HttpKubeClient, namespace: str) -> None:
    await kube.create(CM, config_map("taken", namespace))
    with pytest.raises(errors.AlreadyExists) as exists:
        await kube.create(CM, config_map("taken", namespace))
    assert exists.value.status == 409
    with pytest.raises(errors.Invalid) as invalid:
        await kube.create(CM, config_map("Not_A_DNS_Name", namespace))
    assert "Not_A_DNS_Name" in invalid.value.message
    with pytest.raises(errors.NotFound):
        await kube.get(CM, "absent", namespace)
    with pytest.raises(errors.NotFound):
        await kube.list(resources.Resource.of("nothing.example/v1", "Nothing", "nothings"))


async def test_requests_are_counted_by_verb(cluster: TestCluster, namespace: str) -> None:
    records: list[client.RequestRecord] = []
    kube = await client.connect(cluster.kubeconfig, request_hook=records.append)
    async with kube:
        await kube.create(CM, config_map("counted", namespace))
        await kube.get(CM, "counted", namespace)
        await kube.list(CM, namespace)
        await kube.patch(CM, "counted", {"data": {"k": "v"}}, namespace)
        with contextlib.suppress(errors.NotFound):
            await kube.get(CM, "absent", namespace)
        await kube.delete(CM, "counted", namespace)
    assert kube.requests == {"create": 1, "get": 2, "list": 1, "patch": 1, "delete": 1}
    assert [(r.verb, r.code) for r in records][-3:] == [
        ("patch", 200),
        ("get", 404),
        ("delete", 200),
    ]


async def test_patch_formats_on_a_daemon_set(kube: client.HttpKubeClient, namespace: str) -> None:
    await kube.create(DS, daemon_set("ds", namespace))

    merged = await kube.patch(DS, "ds", {"metadata": {"labels": {"merged": "yes"}}}, namespace)
    assert objects.labels(merged) == {"merged": "yes"}

    # A strategic merge patch merges containers by name; a JSON merge patch would replace the list.
    strategic = await kube.patch(
        DS,
        "ds",
        {"spec": {"template": {"spec": {"containers": [{"name": "side", "image": "x/side:2"}]}}}},
        namespace,
        patch_type=client.PatchType.STRATEGIC,
    )
    containers = strategic["spec"]["template"]["spec"]["containers"]
    assert [(c["name"], c["image"]) for c in containers] == [
        ("main", "example.invalid/main:1"),
        ("side", "x/side:2"),
    ]

    patched = await kube.patch(
        DS,
        "ds",
        [
            {"op": "test", "path": "/metadata/labels/merged", "value": "yes"},
            {
                "op": "replace",
                "path": "/spec/template/spec/containers/0/image",
                "value": "x/main:3",
            },
        ],
        namespace,
        patch_type=client.PatchType.JSON,
    )
    assert patched["spec"]["template"]["spec"]["containers"][0]["image"] == "x/main:3"

    with pytest.raises(errors.Invalid):
        await kube.patch(
            DS,
            "ds",
            [{"op": "test", "path": "/metadata/labels/merged", "value": "no"}],
            namespace,
            patch_type=client.PatchType.JSON,
        )


async def test_server_side_apply_owns_fields_per_manager(
    kube: client.HttpKubeClient, namespace: str
) -> None:
    intent = config_map("applied", namespace)
    created = await kube.apply(CM, intent, field_manager="operator")
    assert created["data"] == {"key": "one"}
    managers = {entry["manager"] for entry in objects.metadata(created)["managedFields"]}
    assert managers == {"operator"}

    unchanged = await kube.apply(CM, intent, field_manager="operator")
    assert objects.resource_version(unchanged) == objects.resource_version(created), (
        "an identical apply writes nothing"
    )

    rival = config_map("applied", namespace)
    rival["data"] = {"key": "rival"}
    with pytest.raises(errors.Conflict):
        await kube.apply(CM, rival, field_manager="someone-else", force=False)
    forced = await kube.apply(CM, rival, field_manager="someone-else", force=True)
    assert forced["data"] == {"key": "rival"}

    # Fields the manager no longer applies are removed.
    intent["data"] = {"other": "x"}
    taken_back = await kube.apply(CM, intent, field_manager="operator")
    assert taken_back["data"] == {"key": "rival", "other": "x"}


@pytest.fixture(scope="module")
def widgets_crd(cluster: TestCluster) -> resources.Resource:
    """A cluster-scoped CRD with a status subresource, to patch status on."""
    crd = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"widgets.{WIDGETS_GROUP}"},
        "spec": {
            "group": WIDGETS_GROUP,
            "scope": "Cluster",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "properties": {
                                "spec": {
                                    "type": "object",
                                    "x-kubernetes-preserve-unknown-fields": True,
                                },
                                "status": {
                                    "type": "object",
                                    "x-kubernetes-preserve-unknown-fields": True,
                                },
                            },
                        }
                    },
                }
            ],
        },
    }
    cluster.kubectl("apply", "-f", "-", input=json.dumps(crd))
    cluster.kubectl(
        "wait", "--for=condition=Established", f"crd/widgets.{WIDGETS_GROUP}", "--timeout=60s"
    )
    return WIDGETS


async def test_status_patch_touches_only_status(
    kube: client.HttpKubeClient, widgets_crd: resources.Resource
) -> None:
    name = f"w-{uuid.uuid4().hex[:8]}"
    body = {
        "apiVersion": widgets_crd.api_version,
        "kind": "Widget",
        "metadata": {"name": name},
        "spec": {"size": 1},
    }

    async def created() -> objects.JsonObject | None:
        # A freshly established CRD can take a moment to be served.
        with contextlib.suppress(errors.NotFound):
            return await kube.create(widgets_crd, body)
        return None

    widget = await eventually_async(created, timeout=30, what="the Widget CRD to be served")
    try:
        generation = objects.metadata(widget)["generation"]
        patched = await kube.patch_status(
            widgets_crd, name, {"status": {"ready": True}, "spec": {"size": 99}}
        )
        assert patched["status"] == {"ready": True}
        assert patched["spec"] == {"size": 1}, "the status subresource ignores spec"
        assert objects.metadata(patched)["generation"] == generation

        spec_patched = await kube.patch(
            widgets_crd, name, {"spec": {"size": 2}, "status": {"x": 1}}
        )
        assert spec_patched["spec"] == {"size": 2}
        assert spec_patched["status"] == {"ready": True}, "the main resource ignores status"
        assert objects.metadata(spec_patched)["generation"] == generation + 1
    finally:
        await kube.delete(widgets_crd, name)


async def _collect(
    stream: AsyncIterator[client.WatchEvent], count: int, timeout: float = 30
) -> list[client.WatchEvent]:
    events: list[client.WatchEvent] = []

    async def read() -> None:
        async for event in stream:
            if event.type != client.WatchEventType.BOOKMARK:
                events.append(event)
                if len(events) == count:
                    return

    await asyncio.wait_for(read(), timeout)
    return events


async def test_watch_resumes_from_a_resource_version(
    kube: client.HttpKubeClient, namespace: str
) -> None:
    start = (await kube.list(CM, namespace)).resource_version
    await kube.create(CM, config_map("w", namespace))
    await kube.patch(CM, "w", {"data": {"key": "two"}}, namespace)
    await kube.delete(CM, "w", namespace)

    # Everything after the list's resourceVersion is replayed, in order. Only "w": the
    # controller-manager adds kube-root-ca.crt to a new namespace whenever it gets to it.
    only_w = "metadata.name=w"
    stream = kube.watch(
        CM, namespace, resource_version=start, field_selector=only_w, timeout_seconds=60
    )
    async with contextlib.aclosing(stream):
        events = await _collect(stream, 3)
    assert [event.type for event in events] == ["ADDED", "MODIFIED", "DELETED"]
    assert events[1].object["data"] == {"key": "two"}
    versions = [int(objects.resource_version(event.object)) for event in events]
    assert versions == sorted(versions)

    # And resuming from the middle gives only what came after.
    middle = objects.resource_version(events[0].object)
    stream = kube.watch(
        CM, namespace, resource_version=middle, field_selector=only_w, timeout_seconds=60
    )
    async with contextlib.aclosing(stream):
        later = await _collect(stream, 2)
    assert [event.type for event in later] == ["MODIFIED", "DELETED"]


async def test_watch_sees_live_changes_through_its_selector(
    kube: client.HttpKubeClient, namespace: str
) -> None:
    start = (await kube.list(CM, namespace)).resource_version
    stream = kube.watch(
        CM, namespace, resource_version=start, label_selector="app=plugin", timeout_seconds=60
    )
    async with contextlib.aclosing(stream):
        reader = asyncio.create_task(_collect(stream, 2))
        await kube.create(CM, config_map("ignored", namespace))
        await kube.create(CM, config_map("seen", namespace, app="plugin"))
        await kube.patch(CM, "seen", {"metadata": {"labels": {"app": "other"}}}, namespace)
        events = await reader
    assert [(event.type, objects.name(event.object)) for event in events] == [
        ("ADDED", "seen"),
        ("DELETED", "seen"),  # it left the selector
    ]


async def test_a_watch_ends_when_the_server_times_it_out(
    kube: client.HttpKubeClient, namespace: str
) -> None:
    # A selector nothing matches: the controller-manager's kube-root-ca.crt ConfigMap may
    # appear in the fresh namespace at any moment.
    selector = "watch-test=nothing"
    start = (await kube.list(CM, namespace, label_selector=selector)).resource_version
    loop = asyncio.get_running_loop()
    began = loop.time()
    seen: list[Any] = []
    async for event in kube.watch(
        CM, namespace, resource_version=start, timeout_seconds=1, label_selector=selector
    ):
        seen.append(event)
    assert loop.time() - began < 10
    assert all(event.type == client.WatchEventType.BOOKMARK for event in seen)


async def test_separate_clients_have_separate_connections(
    cluster: TestCluster, kube: client.HttpKubeClient, namespace: str
) -> None:
    other = await client.connect(cluster.kubeconfig)
    await other.get(resources.NAMESPACES, namespace)
    await other.close()
    assert (await kube.get(resources.NAMESPACES, namespace))["metadata"]["name"] == namespace
    assert kube.requests == {"get": 1}
