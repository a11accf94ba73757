"""``make demo`` waits for the samples it applied, and only for them.

A resource of the user's that selects no node reports DESIRED 0 for good; a second ``make demo``
on such a cluster used to wait for it and fail after 120 s.
"""

from __future__ import annotations

import json
import pathlib
import subprocess
from typing import Any

import pytest

import tool_modules
from clusters import TestCluster
from deviceplugin_operator import devices

ROOT = pathlib.Path(__file__).resolve().parents[2]


demo = tool_modules.load("demo.py", "demo")


def sample_manifests() -> str:
    return subprocess.run(
        ["kubectl", "kustomize", str(ROOT / "deployments/operator/samples")],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout


def test_the_samples_are_one_resource_of_each_kind() -> None:
    samples = demo.applied_samples(sample_manifests())
    assert sorted(plural for plural, _ in samples) == sorted(
        kind.plural for kind in devices.KINDS.values()
    )
    # The FPGA mappings in the same kustomization are not device-plugin resources.
    assert all(name.endswith("-sample") for _, name in samples)


def _status(cluster: TestCluster, name: str, desired: int, ready: int) -> None:
    body: dict[str, Any] = {
        "status": {"desiredNumberScheduled": desired, "numberReady": ready, "nodeNames": []}
    }
    cluster.kubectl(
        "patch",
        "gpudeviceplugin",
        name,
        "--subresource=status",
        "--type=merge",
        f"-p={json.dumps(body)}",
    )


@pytest.mark.cluster
def test_only_the_applied_samples_are_waited_for(cluster: TestCluster) -> None:
    cluster.kubectl("apply", "--server-side", "-f", str(ROOT / "deployments/operator/crd/bases/"))
    crd = "crd/gpudeviceplugins.deviceplugin.intel.com"
    cluster.kubectl("wait", "--for=condition=Established", "--timeout=60s", crd)
    unrelated = "demo-test-selects-no-node"
    sample = "demo-test-sample"
    for name in (unrelated, sample):
        cluster.kubectl(
            "apply",
            "-f",
            "-",
            input=(
                "apiVersion: deviceplugin.intel.com/v1\nkind: GpuDevicePlugin\n"
                f"metadata: {{name: {name}}}\n"
                "spec: {image: 'intel/intel-gpu-plugin:0.36.0', "
                f"nodeSelector: {{no-such-label: '{name}'}}}}\n"
            ),
        )
    try:
        waited = [("gpudeviceplugins", sample)]
        _status(cluster, unrelated, 0, 0)
        _status(cluster, sample, 2, 1)
        assert demo.pending_samples(cluster.kubeconfig, waited) == [f"gpudeviceplugins/{sample}"]
        _status(cluster, sample, 2, 2)
        # The resource that will never have a node does not hold the demo up.
        assert demo.pending_samples(cluster.kubeconfig, waited) == []
        _status(cluster, sample, 0, 0)
        assert demo.pending_samples(cluster.kubeconfig, waited) == [f"gpudeviceplugins/{sample}"]
    finally:
        cluster.kubectl("delete", "gpudeviceplugin", unrelated, sample, "--wait=false", check=False)
