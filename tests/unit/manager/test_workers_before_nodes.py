"""The reconcile workers start before the node cache is filled (its list is the longest of a
start at scale): DaemonSets are written at once, and a status that shows plugin pods waits
for the nodes' devices instead of being written without them."""

from __future__ import annotations

import asyncio
from typing import Any

import fakes
from deviceplugin_operator import devices
from deviceplugin_operator.kube import objects, resources
from polling import eventually_async

GPU = devices.KINDS["gpu"]
GPU_PLUGINS = resources.Resource.of(
    GPU.resource.api_version, GPU.kind, GPU.plural, namespaced=False
)
NAMESPACE = "plugins"


async def test_daemonsets_do_not_wait_for_the_nodes_and_statuses_with_pods_wait_for_devices() -> (
    None
):
    kube = fakes.HeldLists(resources.NODES)
    await kube.create(
        resources.NODES,
        {
            "metadata": {"name": "n1"},
            "status": {
                "capacity": {"gpu.intel.com/i915": "2"},
                "allocatable": {"gpu.intel.com/i915": "2"},
            },
        },
    )
    await kube.create(
        GPU_PLUGINS, {"metadata": {"name": "a"}, "spec": {"image": "intel/intel-gpu-plugin:0.36.0"}}
    )
    async with fakes.embedded_manager(kube, ("gpu",), NAMESPACE) as mgr:
        await asyncio.wait_for(mgr.start_workers(), timeout=5)
        assert not mgr.nodes.synced

        async def created() -> objects.JsonObject | None:
            found = kube.stored(resources.DAEMON_SETS)
            return found[0] if found else None

        daemonset = await eventually_async(created, timeout=5)
        await kube.create(
            resources.PODS,
            fakes.plugin_pod("p1", daemonset, "n1", namespace=NAMESPACE, ready=True),
            NAMESPACE,
        )

        def status() -> dict[str, Any]:
            (stored,) = kube.stored(GPU_PLUGINS)
            return dict(stored.get("status") or {})

        # The pod is cached and every reconcile it queued is done: its node's devices are
        # not known yet, so no status shows it.
        (controller,) = mgr.controllers
        work = controller.queue

        async def pod_reconciled() -> bool:
            idle = len(work) == 0 and work.processing == 0 and work.delayed == 0
            return bool(mgr.pods.list()) and idle

        await eventually_async(pod_reconciled, timeout=5, interval=0.02)
        assert "n1" not in status().get("nodeNames", [])
        assert "deviceTotals" not in status()

        kube.release.set()

        async def with_devices() -> dict[str, Any] | None:
            current = status()
            return current if current.get("deviceTotals") else None

        written = await eventually_async(with_devices, timeout=5)
        assert written["nodeNames"] == ["n1"]
        assert written["deviceTotals"] == "i915=2"
