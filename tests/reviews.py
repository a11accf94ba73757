"""AdmissionReview requests the webhook tests send, built in one place."""

from __future__ import annotations

from typing import Any


def gpu_plugin_create(name: str, uid: str) -> dict[str, Any]:
    """The review of creating the GpuDevicePlugin ``name`` with a valid spec."""
    return {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": uid,
            "kind": {"group": "deviceplugin.intel.com", "version": "v1", "kind": "GpuDevicePlugin"},
            "resource": {
                "group": "deviceplugin.intel.com",
                "version": "v1",
                "resource": "gpudeviceplugins",
            },
            "operation": "CREATE",
            "name": name,
            "object": {
                "apiVersion": "deviceplugin.intel.com/v1",
                "kind": "GpuDevicePlugin",
                "metadata": {"name": name},
                "spec": {"image": "intel/intel-gpu-plugin:0.36.0"},
            },
        },
    }
