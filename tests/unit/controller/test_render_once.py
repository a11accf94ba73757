"""A spec is rendered once, and a live DaemonSet compared with it once per change of the
DaemonSet: the reconciles woken by pod and DaemonSet status changes reuse both
(docs/benchmarks.md, "Where a reconcile's time goes"). Drift is still reverted, whether it
changes the DaemonSet's spec (a new generation) or only its metadata."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from gpu_reconciler import CONFIG, GPU, GPU_PLUGINS, NAMESPACE, WRITE_AT_ONCE, caches

import fakes
from deviceplugin_operator.controller import events, reconciler
from deviceplugin_operator.kube import objects, resources
from deviceplugin_operator.reconcile import drift, validation


class Calls:
    """Counts the calls of a module function while passing them through."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, module: Any, name: str) -> None:
        self.count = 0
        real = getattr(module, name)

        def counted(*args: Any, **kwargs: Any) -> Any:
            self.count += 1
            return real(*args, **kwargs)

        monkeypatch.setattr(module, name, counted)


async def reconciled() -> tuple[fakes.FakeKubeClient, reconciler.Caches, reconciler.Reconciler]:
    """Resource ``a`` reconciled once, its DaemonSet and status in the caches."""
    kube = fakes.FakeKubeClient()
    await kube.create(GPU_PLUGINS, {"metadata": {"name": "a"}, "spec": {"logLevel": 2}})
    cached = caches(kube)
    rec = reconciler.Reconciler(
        GPU,
        CONFIG,
        kube,
        cached,
        recorder=events.Recorder(kube),
        **WRITE_AT_ONCE,
    )
    await sync(kube, cached)
    await rec.reconcile("a")
    await sync(kube, cached)
    await rec.reconcile("a")
    await sync(kube, cached)
    return kube, cached, rec


async def sync(kube: fakes.FakeKubeClient, cached: reconciler.Caches) -> None:
    cached.plugins.store.upsert(copy.deepcopy(await kube.get(GPU_PLUGINS, "a")))
    for ds in kube.stored(resources.DAEMON_SETS):
        cached.daemonsets.store.upsert(copy.deepcopy(ds))


def the_daemonset(kube: fakes.FakeKubeClient) -> dict[str, Any]:
    (ds,) = kube.stored(resources.DAEMON_SETS)
    return ds


async def test_status_changes_reuse_the_rendering_and_the_comparison(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    kube, cached, rec = await reconciled()
    parses = Calls(monkeypatch, validation, "parse")
    comparisons = Calls(monkeypatch, drift, "matches")

    # The DaemonSet controller writes the DaemonSet's status, over and over.
    for ready in range(5):
        live = copy.deepcopy(the_daemonset(kube))
        live["status"] = {"desiredNumberScheduled": 5, "numberReady": ready}
        live["metadata"]["resourceVersion"] = str(1000 + ready)
        cached.daemonsets.store.upsert(live)
        await rec.reconcile("a")

    assert parses.count == 0
    assert comparisons.count == 0
    assert kube.requests["update"] == 0


async def test_a_new_spec_is_rendered_and_written() -> None:
    kube, cached, rec = await reconciled()
    await kube.patch(GPU_PLUGINS, "a", {"spec": {"logLevel": 5}})
    await sync(kube, cached)

    await rec.reconcile("a")

    args = the_daemonset(kube)["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "-v" in args
    assert args[args.index("-v") + 1] == "5"


async def test_a_changed_daemonset_spec_is_reverted() -> None:
    kube, cached, rec = await reconciled()
    tampered = copy.deepcopy(the_daemonset(kube))
    tampered["spec"]["template"]["spec"]["containers"][0]["image"] = "elsewhere/plugin:1"
    await kube.replace(resources.DAEMON_SETS, objects.name(tampered), tampered, NAMESPACE)
    await sync(kube, cached)

    await rec.reconcile("a")

    image = the_daemonset(kube)["spec"]["template"]["spec"]["containers"][0]["image"]
    assert image == GPU.default_image


async def test_changed_daemonset_labels_are_reverted_without_a_new_generation() -> None:
    kube, cached, rec = await reconciled()
    before = the_daemonset(kube)
    tampered = copy.deepcopy(before)
    tampered["metadata"]["labels"]["app.kubernetes.io/managed-by"] = "someone"
    cached.daemonsets.store.upsert(tampered)  # as the watch shows a metadata-only change
    assert objects.metadata(tampered)["generation"] == objects.metadata(before)["generation"]

    await rec.reconcile("a")

    assert kube.requests["update"] == 1
    labels = objects.labels(the_daemonset(kube))
    assert labels["app.kubernetes.io/managed-by"] == "intel-deviceplugin-operator"
