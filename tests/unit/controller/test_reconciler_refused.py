"""A DaemonSet the API server refuses (422) is reported on the resource, not retried forever.

Found by the fuzzing scenario (docs/reliability.md, 6): a GPU resource with
``nodeSelector: {"not a label key!": x}`` passes the webhooks (as with the reference), but its
DaemonSet fails the API server's pod validation; the resource used to stay without any status
while the controller retried the create with backoff for ever.
"""

from __future__ import annotations

from typing import Any

import fakes
from deviceplugin_operator import devices, manager, settings
from deviceplugin_operator.kube import errors, resources
from polling import eventually_async

GPU = devices.KINDS["gpu"]
GPU_PLUGINS = resources.Resource.of(
    GPU.resource.api_version, GPU.kind, GPU.plural, namespaced=False
)
REFUSAL = (
    'DaemonSet.apps "intel-gpu-plugin-odd" is invalid: spec.template.spec.nodeSelector: '
    'Invalid value: "not a label key!": name part must consist of alphanumeric characters'
)


async def test_a_refused_daemonset_becomes_degraded_render_failed_without_retries() -> None:
    kube = fakes.FakeKubeClient()
    await kube.create(
        GPU_PLUGINS, {"metadata": {"name": "odd"}, "spec": {"nodeSelector": {"x": "y"}}}
    )
    # The API server refuses the same DaemonSet every time.
    kube.fail("create", errors.Invalid(422, "Invalid", REFUSAL), times=1000)
    config = settings.Settings(plugin_namespace="plugins", devices=("gpu",))
    options = manager.Options(health_probe_bind_address="0", webhook_port=0)
    mgr = manager.Manager(config, options, kube)
    await mgr.start()
    try:

        async def degraded() -> dict[str, Any] | None:
            stored = await kube.get(GPU_PLUGINS, "odd")
            for condition in (stored.get("status") or {}).get("conditions") or []:
                if condition["type"] == "Degraded" and condition["status"] == "True":
                    return dict(condition)
            return None

        condition = await eventually_async(degraded, timeout=5, interval=0.01)
        assert condition["reason"] == "RenderFailed"
        assert condition["message"].startswith("The API server refused the rendered DaemonSet: ")
        assert REFUSAL in condition["message"]
        controller = mgr.controllers[0]
        await eventually_async(lambda: _idle(controller), timeout=5, interval=0.01)
        # Terminal: one more reconcile for the status change, then no backoff loop.
        assert controller.queue.num_requeues("odd") == 0
        assert kube.requests["create"] <= 1 + 3
    finally:
        await mgr.stop()


async def _idle(controller: manager.Controller) -> bool:
    return len(controller.queue) == 0 and controller.queue.processing == 0
