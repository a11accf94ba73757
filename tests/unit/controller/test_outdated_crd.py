"""A CRD whose schema drops status fields is reported once and not fought (issue 13).

The reference's CRDs, which Helm (``crds/`` is never upgraded) and OLM leave in place, have no
``status.observedGeneration`` and no ``status.conditions``: the API server prunes them from
every status patch. The reconciler says so once per kind (a warning naming the fix and a
Warning Event ``OutdatedCRD``), then compares only what the CRD keeps, so an unchanged status
is never patched again; once the CRD keeps the fields again, it writes them again.
"""

from __future__ import annotations

import asyncio
import copy
import datetime
import logging
from typing import Any

import gpu_reconciler
import pytest

import fakes
from deviceplugin_operator import devices, settings
from deviceplugin_operator.controller import events, reconciler
from deviceplugin_operator.kube import resources

GPU = devices.KINDS["gpu"]
GPU_PLUGINS = resources.Resource.of(
    GPU.resource.api_version, GPU.kind, GPU.plural, namespaced=False
)
NAMESPACE = "plugins"
CONFIG = settings.Settings(plugin_namespace=NAMESPACE, devices=("gpu",))
NAMES = ("a", "b", "c")
PRUNED = ("conditions", "deviceTotals", "devices", "observedGeneration")
"""What the reference's CRD schema has not: the API server prunes them from every patch."""


class PruningKube(fakes.FakeKubeClient):
    """The fake with the reference's CRD schema: the status keeps only its four fields."""

    def __init__(self) -> None:
        super().__init__()
        self.pruning = True

    async def patch(
        self,
        resource: resources.Resource,
        name: str,
        body: Any,
        namespace: str | None = None,
        **options: Any,
    ) -> dict[str, Any]:
        patched = await super().patch(resource, name, body, namespace, **options)
        if self.pruning and options.get("subresource") == "status":
            stored = self._bucket(resource)[(None, name)]
            for obj in (stored, patched):
                for field in PRUNED:
                    (obj.get("status") or {}).pop(field, None)
        return patched


class Clock:
    def __init__(self) -> None:
        self.now = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)

    def __call__(self) -> datetime.datetime:
        return self.now


async def setup() -> tuple[PruningKube, reconciler.Caches, reconciler.Reconciler, Clock]:
    kube = PruningKube()
    caches = gpu_reconciler.caches(kube)
    for name in NAMES:
        stored = await kube.create(GPU_PLUGINS, {"metadata": {"name": name}, "spec": {}})
        caches.plugins.store.upsert(copy.deepcopy(stored))
    clock = Clock()
    rec = reconciler.Reconciler(
        GPU,
        CONFIG,
        kube,
        caches,
        recorder=events.Recorder(kube),
        clock=clock,
        **gpu_reconciler.WRITE_AT_ONCE,
    )
    kube.reset_counts()
    return kube, caches, rec, clock


async def reconcile_all(rec: reconciler.Reconciler) -> None:
    """As the kind's workers do: concurrently."""
    await asyncio.gather(*(rec.reconcile(name) for name in NAMES))
    await rec.recorder.flush()


async def catch_up(kube: fakes.FakeKubeClient, caches: reconciler.Caches) -> None:
    """The caches show what is stored, as after the watch events arrived."""
    for obj in kube.stored(GPU_PLUGINS):
        caches.plugins.store.upsert(obj)
    for obj in kube.stored(resources.DAEMON_SETS):
        caches.daemonsets.store.upsert(obj)


def status_patches(kube: fakes.FakeKubeClient) -> list[str | None]:
    return [call.name for call in kube.calls if call.verb == "patch"]


def outdated_events(kube: fakes.FakeKubeClient) -> list[dict[str, Any]]:
    return [e for e in kube.stored(resources.EVENTS) if e["reason"] == "OutdatedCRD"]


async def test_a_crd_that_drops_status_fields_is_reported_once_and_not_fought(
    caplog: pytest.LogCaptureFixture,
) -> None:
    kube, caches, rec, _ = await setup()
    with caplog.at_level(logging.INFO, logger=reconciler.__name__):
        await reconcile_all(rec)
        assert sorted(status_patches(kube)) == sorted(NAMES)  # in flight before any answer

        # The DaemonSets' ADDED events arrive before the resources' own MODIFIED events.
        for obj in kube.stored(resources.DAEMON_SETS):
            caches.daemonsets.store.upsert(obj)
        kube.reset_counts()
        await reconcile_all(rec)
        assert kube.writes == 0, kube.calls
        for _ in range(2):  # the caches caught up, then a resync
            await catch_up(kube, caches)
            await reconcile_all(rec)
            assert kube.writes == 0, kube.calls

    reports = [r for r in caplog.records if "deployments/operator/crd/bases" in r.getMessage()]
    (report,) = reports
    assert report.levelno == logging.WARNING
    assert (report.__dict__["kind"], report.__dict__["crd"]) == (
        "GpuDevicePlugin",
        "gpudeviceplugins.deviceplugin.intel.com",
    )
    assert (
        "status.conditions, status.deviceTotals, status.devices, status.observedGeneration"
        in report.getMessage()
    )
    assert report.getMessage().endswith(
        "kubectl apply --server-side -f deployments/operator/crd/bases"
    )
    (event,) = outdated_events(kube)
    assert event["type"] == "Warning"
    assert event["metadata"]["namespace"] == "default"
    assert event["involvedObject"]["kind"] == "GpuDevicePlugin"
    assert event["involvedObject"]["name"] in NAMES
    assert event["message"] == report.getMessage()

    # The reference's four fields are still written.
    for stored in kube.stored(GPU_PLUGINS):
        assert set(stored["status"]) == {
            "controlledDaemonSet",
            "desiredNumberScheduled",
            "numberReady",
        }


async def test_an_upgraded_crd_is_noticed_on_the_periodic_recheck(
    caplog: pytest.LogCaptureFixture,
) -> None:
    kube, caches, rec, clock = await setup()
    await reconcile_all(rec)
    await catch_up(kube, caches)
    kube.pruning = False  # kubectl apply --server-side -f deployments/operator/crd/bases

    kube.reset_counts()
    clock.now += reconciler.SCHEMA_RECHECK / 2
    await reconcile_all(rec)
    assert kube.writes == 0

    clock.now += reconciler.SCHEMA_RECHECK / 2
    with caplog.at_level(logging.INFO, logger=reconciler.__name__):
        await rec.reconcile("a")
    assert status_patches(kube) == ["a"]
    assert "conditions" in (await kube.get(GPU_PLUGINS, "a"))["status"]
    assert "The CRD keeps every status field again" in caplog.messages

    # The others follow with their next reconcile, then all is quiet again.
    await reconcile_all(rec)
    for stored in kube.stored(GPU_PLUGINS):
        assert {"conditions", "observedGeneration"} <= set(stored["status"])
    await catch_up(kube, caches)
    kube.reset_counts()
    await reconcile_all(rec)
    assert kube.writes == 0
    assert len(outdated_events(kube)) == 1


async def test_a_recheck_on_a_crd_still_outdated_is_one_patch_per_period() -> None:
    kube, caches, rec, clock = await setup()
    await reconcile_all(rec)
    await catch_up(kube, caches)

    kube.reset_counts()
    clock.now += reconciler.SCHEMA_RECHECK
    await reconcile_all(rec)
    await reconcile_all(rec)
    assert len(status_patches(kube)) == 1
    assert len(outdated_events(kube)) == 1


async def test_a_real_status_change_notices_the_upgrade_at_once() -> None:
    kube, caches, rec, _ = await setup()
    await reconcile_all(rec)
    await catch_up(kube, caches)
    kube.pruning = False

    # Someone else changes a status: it is written back with every field.
    changed = await kube.patch(
        GPU_PLUGINS, "b", {"status": {"numberReady": 7}}, subresource="status"
    )
    caches.plugins.store.upsert(changed)
    kube.reset_counts()
    await rec.reconcile("b")
    assert status_patches(kube) == ["b"]
    await reconcile_all(rec)
    for stored in kube.stored(GPU_PLUGINS):
        assert "conditions" in stored["status"], stored["metadata"]["name"]


async def test_a_status_written_by_the_reference_is_taken_over_in_one_patch() -> None:
    kube, caches, rec, _ = await setup()
    await reconcile_all(rec)
    await catch_up(kube, caches)
    # The reference's controlledDaemonSet carries the DaemonSet's resourceVersion, which a
    # merge patch keeps unless it is removed explicitly.
    stored = await kube.get(GPU_PLUGINS, "a")
    reference = copy.deepcopy(stored["status"]["controlledDaemonSet"])
    reference["resourceVersion"] = "408"
    changed = await kube.patch(
        GPU_PLUGINS, "a", {"status": {"controlledDaemonSet": reference}}, subresource="status"
    )
    caches.plugins.store.upsert(changed)

    kube.reset_counts()
    await rec.reconcile("a")
    assert status_patches(kube) == ["a"]
    stored = await kube.get(GPU_PLUGINS, "a")
    assert "resourceVersion" not in stored["status"]["controlledDaemonSet"]
    await catch_up(kube, caches)
    kube.reset_counts()
    await rec.reconcile("a")
    assert kube.writes == 0
