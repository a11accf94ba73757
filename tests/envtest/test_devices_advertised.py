"""What the plugins' nodes advertise, in the status, on the real local control plane.

The nodes' ``status.capacity``/``allocatable`` are patched as a device plugin's kubelet would
(kwok keeps them); the operator runs with a short ``--devices-grace-period``. One operator
(GPU and FPGA, its own plugin namespace) runs for the module; the nodes get their figures
back at the end.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import pathlib
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import pytest_asyncio

from clusters import GPU_LABEL, TestCluster
from deviceplugin_operator import devices, manager, settings
from deviceplugin_operator.kube import client, resources
from polling import eventually_async

pytestmark = [pytest.mark.cluster, pytest.mark.asyncio(loop_scope="session")]

ROOT = pathlib.Path(__file__).resolve().parents[2]
GPU, FPGA = devices.KINDS["gpu"], devices.KINDS["fpga"]
GRACE = 6.0
"""Seconds of --devices-grace-period: long enough to see the Unknown before it."""
WRITE_VERBS = ("create", "update", "patch", "delete")
AF = "fpga.intel.com/af-695.d84.aVKNtusxV3qMNmj5-qCB9thCTcSko8QT-J5DNoP5BAs"
REGION = "fpga.intel.com/region-ce48969398f05f33946d560708be108a"
GPU_NODES = ["gpu-only-node", "intel-node-0", "intel-node-1"]


def plural(kind: devices.DeviceKind[Any]) -> resources.Resource:
    return resources.Resource.of(
        kind.resource.api_version, kind.kind, kind.plural, namespaced=False
    )


class Running:
    def __init__(self, mgr: manager.Manager, kube: client.HttpKubeClient):
        self.manager = mgr
        self.kube = kube

    def writes(self) -> dict[str, int]:
        return {verb: self.manager.kube.requests[verb] for verb in WRITE_VERBS}

    async def status(self, kind: devices.DeviceKind[Any], name: str) -> dict[str, Any]:
        cr = await self.kube.get(plural(kind), name)
        found: dict[str, Any] = cr.get("status") or {}
        return found


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def running(cluster: TestCluster) -> AsyncIterator[Running]:
    cluster.install_crds(ROOT / "deployments/operator/crd/bases")
    namespace = f"dp-devices-{uuid.uuid4().hex[:6]}"
    cluster.kubectl("create", "namespace", namespace)
    kube = await client.connect(cluster.kubeconfig)
    observer = await client.connect(cluster.kubeconfig)
    mgr = manager.Manager(
        settings.Settings(plugin_namespace=namespace, devices=("gpu", "fpga")),
        manager.Options(
            health_probe_bind_address="127.0.0.1:0",
            resync_period=3600,
            webhook_port=0,
            devices_grace_period=GRACE,
        ),
        kube,
    )
    await mgr.start()
    try:
        yield Running(mgr, observer)
    finally:
        await mgr.stop()
        await kube.close()
        await observer.close()
        cluster.kubectl("delete", "namespace", namespace, "--wait=false", check=False)


@pytest.fixture
def node_figures(cluster: TestCluster) -> Iterator[Any]:
    """``set(node, {resource: count or None})`` patches a node's capacity and allocatable;
    every resource set is removed again afterwards."""
    touched: dict[str, set[str]] = {}

    def set_figures(node: str, figures: dict[str, str | None]) -> None:
        touched.setdefault(node, set()).update(figures)
        body = {"status": {"capacity": figures, "allocatable": figures}}
        cluster.kubectl(
            "patch", "node", node, "--subresource=status", "--type=merge", "-p", json.dumps(body)
        )

    yield set_figures
    for node, names in touched.items():
        set_figures(node, dict.fromkeys(names))


def condition(status: dict[str, Any]) -> dict[str, Any]:
    found = [c for c in status.get("conditions") or () if c["type"] == "DevicesAdvertised"]
    return found[0] if found else {}


async def create(running: Running, kind: devices.DeviceKind[Any], name: str, spec: Any) -> None:
    body = {
        "apiVersion": kind.resource.api_version,
        "kind": kind.kind,
        "metadata": {"name": name},
        "spec": spec,
    }
    await running.kube.create(plural(kind), body)


async def delete(running: Running, kind: devices.DeviceKind[Any], name: str) -> None:
    with contextlib.suppress(Exception):
        await running.kube.delete(plural(kind), name)


async def test_gpu_devices_grace_loss_and_gain_with_the_printer_column(
    cluster: TestCluster, running: Running, node_figures: Any
) -> None:
    node_figures("intel-node-0", {"gpu.intel.com/i915": "2", "gpu.intel.com/millicores": "2000"})
    node_figures("intel-node-1", {"gpu.intel.com/i915": "1"})
    name = f"devices-{uuid.uuid4().hex[:6]}"
    await create(running, GPU, name, {"nodeSelector": {GPU_LABEL: "true"}})
    try:
        seen: list[str] = []
        started = time.monotonic()

        async def reported_false() -> dict[str, Any] | None:
            status = await running.status(GPU, name)
            reason = condition(status).get("reason", "")
            if not seen or seen[-1] != reason:
                seen.append(reason)
            return status if reason == "SomeNodesWithoutDevices" else None

        status = await eventually_async(
            reported_false, timeout=90, what="gpu-only-node reported without devices"
        )
        took = time.monotonic() - started
        assert status["nodeNames"] == GPU_NODES
        assert status["devices"] == [
            {"resource": "gpu.intel.com/i915", "capacity": 3, "allocatable": 3, "nodes": 2},
            {
                "resource": "gpu.intel.com/millicores",
                "capacity": 2000,
                "allocatable": 2000,
                "nodes": 1,
            },
        ]
        assert status["deviceTotals"] == "i915=3, millicores=2000"
        false = condition(status)
        assert false["status"] == "False"
        assert (
            "1 of 3 nodes with a ready plugin pod advertise no gpu.intel.com resources"
            in (false["message"])
        )
        assert "(gpu-only-node)" in false["message"]
        # The grace period: Unknown while the plugin on gpu-only-node is young.
        assert "WaitingForDevices" in seen, seen
        assert took >= GRACE - 1, (took, seen)

        table = cluster.kubectl("get", GPU.plural, name).stdout.splitlines()
        assert table[0].split()[:4] == ["NAME", "DESIRED", "READY", "DEVICES"]
        assert table[1].split()[:5] == [name, "3", "3", "i915=3,", "millicores=2000"]

        # gpu-only-node gains a device: True.
        node_figures("gpu-only-node", {"gpu.intel.com/i915": "1"})

        async def all_advertise() -> dict[str, Any] | None:
            status = await running.status(GPU, name)
            return status if condition(status).get("status") == "True" else None

        status = await eventually_async(all_advertise, timeout=30, what="DevicesAdvertised True")
        assert condition(status)["reason"] == "AllNodesAdvertise"
        assert status["devices"][0] == {
            "resource": "gpu.intel.com/i915",
            "capacity": 4,
            "allocatable": 4,
            "nodes": 3,
        }

        # intel-node-1 loses its device: False at once (its plugin is ready for long enough).
        node_figures("intel-node-1", {"gpu.intel.com/i915": None})
        lost = time.monotonic()

        async def lost_one() -> dict[str, Any] | None:
            status = await running.status(GPU, name)
            return status if condition(status).get("status") == "False" else None

        status = await eventually_async(lost_one, timeout=30, what="intel-node-1 without devices")
        assert time.monotonic() - lost < GRACE, "no grace for a pod ready long ago"
        assert "(intel-node-1)" in condition(status)["message"]
        assert status["devices"][0]["nodes"] == 2
    finally:
        await delete(running, GPU, name)


async def test_node_updates_of_other_figures_bring_no_work_and_no_write(
    cluster: TestCluster, running: Running, node_figures: Any
) -> None:
    node_figures("intel-node-0", {"gpu.intel.com/i915": "1"})
    name = f"steady-{uuid.uuid4().hex[:6]}"
    await create(running, GPU, name, {"nodeSelector": {"kubernetes.io/hostname": "intel-node-0"}})
    try:

        async def settled() -> bool:
            status = await running.status(GPU, name)
            return condition(status).get("status") == "True"

        await eventually_async(settled, timeout=60, what="the resource to settle")
        controller = next(c for c in running.manager.controllers if c.name == "gpudeviceplugin")

        async def quiet() -> dict[str, int] | None:
            """Two seconds without a write or a queued resource."""
            before, adds = running.writes(), controller.queue.adds_total
            await running.manager.recorder.flush()
            await asyncio.sleep(2)
            return (
                before
                if (running.writes(), controller.queue.adds_total)
                == (
                    before,
                    adds,
                )
                else None
            )

        before = await eventually_async(quiet, timeout=60, interval=0, what="a steady state")
        adds = controller.queue.adds_total
        # What kwok's heartbeats do, and figures of other domains: no work at all.
        cluster.kubectl("label", "node", "intel-node-0", f"dp-test={name}", "--overwrite")
        node_figures("intel-node-0", {"example.com/widget": "3", "qat.intel.com/generic": "4"})
        await asyncio.sleep(3)
        assert controller.queue.adds_total == adds
        assert running.writes() == before
        cluster.kubectl("label", "node", "intel-node-0", "dp-test-")
    finally:
        await delete(running, GPU, name)


async def test_fpga_dynamic_resource_names(running: Running, node_figures: Any) -> None:
    node_figures("intel-node-0", {AF: "2"})
    node_figures("intel-node-1", {REGION: "1"})
    name = f"fpga-{uuid.uuid4().hex[:6]}"
    selector = {"intel.feature.node.kubernetes.io/fpga-arria10": "true"}
    await create(running, FPGA, name, {"nodeSelector": selector, "mode": "af"})
    try:
        last: list[dict[str, Any]] = [{}]

        async def advertised() -> dict[str, Any] | None:
            last[0] = await running.status(FPGA, name)
            return last[0] if condition(last[0]).get("status") == "True" else None

        try:
            status = await eventually_async(advertised, timeout=120, what="FPGA devices")
        except AssertionError as timeout:
            raise AssertionError(f"{timeout}; last status: {last[0]}") from None
        assert status["devices"] == [
            {"resource": AF, "capacity": 2, "allocatable": 2, "nodes": 1},
            {"resource": REGION, "capacity": 1, "allocatable": 1, "nodes": 1},
        ]
        assert status["deviceTotals"] == f"{AF.partition('/')[2]}=2, {REGION.partition('/')[2]}=1"
    finally:
        await delete(running, FPGA, name)
