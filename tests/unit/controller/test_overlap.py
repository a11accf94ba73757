"""The OverlappingNodeSelector condition: found through the pod cache's node and owner indexes
(no walk over every pod), set on both resources whose plugins share a node, and cleared when
one of the pods goes, through the neighbours of that node only."""

from __future__ import annotations

import asyncio
from typing import Any

import fakes
from deviceplugin_operator import devices, manager, settings
from deviceplugin_operator.kube import objects, resources
from polling import eventually_async

GPU = devices.KINDS["gpu"]
GPU_PLUGINS = resources.Resource.of(
    GPU.resource.api_version, GPU.kind, GPU.plural, namespaced=False
)
NAMESPACE = "plugins"


async def plugin_daemonsets(kube: fakes.FakeKubeClient, count: int) -> dict[str, dict[str, Any]]:
    """The operator's DaemonSets by resource name, once there are ``count`` of them."""

    async def made() -> dict[str, dict[str, Any]] | None:
        found = {
            objects.name(ds).removeprefix("intel-gpu-plugin-"): ds
            for ds in kube.stored(resources.DAEMON_SETS)
        }
        return found if len(found) == count else None

    found: dict[str, dict[str, Any]] = await eventually_async(made, timeout=5, interval=0.01)
    return found


async def reason(kube: fakes.FakeKubeClient, name: str) -> str | None:
    stored = await kube.get(GPU_PLUGINS, name)
    for condition in (stored.get("status") or {}).get("conditions") or []:
        if condition["type"] == "Degraded":
            return str(condition["reason"])
    return None


async def test_plugins_sharing_a_node_degrade_both_and_recover_when_one_goes() -> None:
    kube = fakes.FakeKubeClient()
    for name in ("left", "right", "apart"):
        await kube.create(GPU_PLUGINS, {"metadata": {"name": name}, "spec": {}})
    config = settings.Settings(plugin_namespace=NAMESPACE, devices=("gpu",))
    mgr = manager.Manager(
        config, manager.Options(health_probe_bind_address="0", webhook_port=0), kube
    )
    await mgr.start()
    try:
        made = await plugin_daemonsets(kube, 3)
        await kube.create(resources.PODS, fakes.plugin_pod("l", made["left"], "node-1"), NAMESPACE)
        await kube.create(resources.PODS, fakes.plugin_pod("r", made["right"], "node-1"), NAMESPACE)
        await kube.create(resources.PODS, fakes.plugin_pod("a", made["apart"], "node-2"), NAMESPACE)

        async def both_overlap() -> bool:
            found = [await reason(kube, name) for name in ("left", "right")]
            return found == ["OverlappingNodeSelector"] * 2

        await eventually_async(both_overlap, timeout=5, interval=0.01)
        assert await reason(kube, "apart") != "OverlappingNodeSelector"

        await kube.delete(resources.PODS, "r", NAMESPACE)

        async def left_recovered() -> bool:
            return await reason(kube, "left") != "OverlappingNodeSelector"

        await eventually_async(left_recovered, timeout=5, interval=0.01)
    finally:
        await mgr.stop()


async def test_the_overlap_found_holds_only_while_nothing_moves_on_the_nodes() -> None:
    """A reconcile for a pod's status takes the overlap found before; a pod orphaned in place
    or a DaemonSet gone (its pods still there) is looked at anew."""
    kube = fakes.FakeKubeClient()
    for name in ("left", "right"):
        await kube.create(GPU_PLUGINS, {"metadata": {"name": name}, "spec": {}})
    config = settings.Settings(plugin_namespace=NAMESPACE, devices=("gpu",))
    mgr = manager.Manager(
        config, manager.Options(health_probe_bind_address="0", webhook_port=0), kube
    )
    (controller,) = mgr.controllers
    rec = controller.reconciler
    walks: list[str] = []
    walk = rec._overlap_on

    def counted(resource: objects.JsonObject, *args: Any) -> str | None:
        walks.append(objects.name(resource))
        return walk(resource, *args)

    rec._overlap_on = counted  # type: ignore[method-assign]
    await mgr.start()
    try:
        made = await plugin_daemonsets(kube, 2)
        left = fakes.plugin_pod("l", made["left"], "node-1")
        right = fakes.plugin_pod("r", made["right"], "node-1")
        await kube.create(resources.PODS, left, NAMESPACE)
        await kube.create(resources.PODS, right, NAMESPACE)

        async def both_overlap() -> bool:
            found = [await reason(kube, name) for name in ("left", "right")]
            return found == ["OverlappingNodeSelector"] * 2

        await eventually_async(both_overlap, timeout=5, interval=0.01)

        async def settled() -> bool:
            await asyncio.sleep(0.02)
            return controller.queue.depth == 0 and controller.queue.processing == 0

        await eventually_async(settled, timeout=5, interval=0)
        walks.clear()
        for _ in range(3):  # reconciles with nothing moved on node-1
            controller.queue.add("left")
            await eventually_async(settled, timeout=5, interval=0)
        assert "left" not in walks

        # right's pod orphaned in place (same node, no controller any more): left is alone
        orphaned = await kube.get(resources.PODS, "r", NAMESPACE)
        orphaned["metadata"]["ownerReferences"] = []
        await kube.replace(resources.PODS, "r", orphaned, NAMESPACE)
        controller.queue.add("left")

        async def left_recovered() -> bool:
            return await reason(kube, "left") != "OverlappingNodeSelector"

        await eventually_async(left_recovered, timeout=5, interval=0.01)
        assert "left" in walks
    finally:
        await mgr.stop()
