"""The informer against the real API server: it sees only what its selector selects, survives
watch timeouts without re-listing, strips managedFields, and indexes real DaemonSet pods by
their controlling owner."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

import pytest

from deviceplugin_operator.controller import backoff, cache, informer
from deviceplugin_operator.kube import client, objects, resources
from localcluster import nodes

if TYPE_CHECKING:
    # Only for annotations: "conftest" may name tests/unit/conftest.py when both are loaded.
    from clusters import TestCluster

pytestmark = pytest.mark.cluster

GPU_LABEL = nodes.FEATURE_PREFIX + "gpu"

CM = resources.CONFIG_MAPS
TIMEOUT = 60.0


@pytest.fixture
async def kube(cluster: TestCluster) -> AsyncIterator[client.HttpKubeClient]:
    kube = await client.connect(cluster.kubeconfig)
    try:
        yield kube
    finally:
        await kube.close()


@pytest.fixture
async def informers() -> AsyncIterator[list[informer.Informer]]:
    running: list[informer.Informer] = []
    yield running
    for each in running:
        await each.stop()


async def until(predicate: Callable[[], Any], what: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + TIMEOUT
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"Timed out after {TIMEOUT:.0f}s waiting for {what}")
        await asyncio.sleep(0.02)


def config_map(name: str, namespace: str, **labels: str) -> objects.JsonObject:
    return {"metadata": {"name": name, "namespace": namespace, "labels": labels}, "data": {}}


async def test_a_label_selected_informer_sees_only_labelled_objects(
    kube: client.HttpKubeClient, namespace: str, informers: list[informer.Informer]
) -> None:
    await kube.create(CM, config_map("before", namespace, plugin="yes"))
    await kube.create(CM, config_map("unlabelled-before", namespace))
    events: list[tuple[str, str]] = []
    inf = informer.Informer(kube, CM, namespace=namespace, label_selector="plugin=yes")
    inf.add_handler(lambda kind, obj, old: events.append((kind, objects.name(obj))))
    informers.append(inf)
    inf.start()
    await asyncio.wait_for(inf.wait_synced(), TIMEOUT)
    assert inf.store.keys() == [f"{namespace}/before"]

    await kube.create(CM, config_map("unlabelled-after", namespace))
    await kube.create(CM, config_map("after", namespace, plugin="yes"))
    await until(lambda: f"{namespace}/after" in inf.store, "the labelled ConfigMap")
    await kube.patch(CM, "before", {"metadata": {"labels": {"plugin": None}}}, namespace)
    await until(lambda: f"{namespace}/before" not in inf.store, "the unlabelled one to leave")

    assert events == [("ADDED", "before"), ("ADDED", "after"), ("DELETED", "before")]
    assert sorted(inf.store.keys()) == [f"{namespace}/after"]
    for obj in inf.list():
        assert "managedFields" not in obj["metadata"]


async def test_watches_ended_by_the_server_resume_without_a_list(
    kube: client.HttpKubeClient, namespace: str, informers: list[informer.Informer]
) -> None:
    seen: list[str] = []
    inf = informer.Informer(
        kube,
        CM,
        namespace=namespace,
        label_selector="resume=yes",
        watch_timeout=1,  # each watch lasts 1-2 s
        retry=backoff.Backoff(initial=0.05, cap=0.5),
    )
    inf.add_handler(lambda kind, obj, old: seen.append(f"{kind} {objects.name(obj)}"))
    informers.append(inf)
    inf.start()
    await asyncio.wait_for(inf.wait_synced(), TIMEOUT)

    for index in range(3):
        await kube.create(CM, config_map(f"cm-{index}", namespace, resume="yes"))
        watches = kube.requests["watch"]
        # The next change is made after the current watch has timed out and been replaced.
        await until(lambda n=watches: kube.requests["watch"] > n, "the watch to be renewed")
    await until(lambda: len(inf.store) == 3, "three ConfigMaps")

    assert seen == ["ADDED cm-0", "ADDED cm-1", "ADDED cm-2"]
    assert kube.requests["list"] == 1
    assert inf.relists == 0


async def test_pods_of_a_daemon_set_are_indexed_by_their_controller(
    kube: client.HttpKubeClient,
    cluster: TestCluster,
    namespace: str,
    informers: list[informer.Informer],
) -> None:
    selector = {GPU_LABEL: "true"}
    ds = await kube.create(
        resources.DAEMON_SETS,
        {
            "metadata": {"name": "indexed", "namespace": namespace},
            "spec": {
                "selector": {"matchLabels": {"app": "indexed"}},
                "template": {
                    "metadata": {"labels": {"app": "indexed"}},
                    "spec": {
                        "nodeSelector": selector,
                        "automountServiceAccountToken": False,
                        "containers": [{"name": "c", "image": "example.invalid/c:1"}],
                    },
                },
            },
        },
    )
    pods = informer.Informer(
        kube,
        resources.PODS,
        namespace=namespace,
        label_selector="app=indexed",
        indexers={cache.CONTROLLER_UID: cache.by_controller_uid},
    )
    informers.append(pods)
    pods.start()
    await asyncio.wait_for(pods.wait_synced(), TIMEOUT)

    expected = cluster.nodes_matching(selector)

    def scheduled() -> list[str]:
        owned = pods.by_index(cache.CONTROLLER_UID, objects.uid(ds))
        return sorted(str(pod["spec"].get("nodeName")) for pod in owned)

    await until(lambda: scheduled() == expected, f"one pod on each of {expected}")
    assert kube.requests["list"] == 1
