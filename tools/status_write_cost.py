"""What a resource's status costs the API server on every write of the resource (no timing
assertions; a measurement for docs/benchmarks.md).

Every write of a custom resource, a user's spec change included, makes the API server decode,
validate and track the managed fields of the whole object, status and ``managedFields`` too.
This starts a local control plane with no nodes, stores one GpuDevicePlugin per status shape,
writes its status as the operator does (a merge patch of ``/status`` with the operator's
field manager), then merge-patches ``spec.logLevel`` of each in turn, interleaved, and prints
the client-side p50 (p25-p75) per shape and the object's size as stored:

* ``none``: no status;
* ``reference``: the reference operator's fields only (``controlledDaemonSet`` with its
  ``resourceVersion``, ``desiredNumberScheduled``, ``numberReady``, ``nodeNames``);
* ``this``: the status this operator's reconciler writes for 3 ready plugin pods on 3 nodes
  with devices (the fake cluster of ``tools/status_microbench.py``), on the CRD as generated;
* ``this-map-lists``: the same status on a copy of the CRD (another API group) whose
  ``conditions`` and ``devices`` are ``map`` lists, as they were before session 9.

Run: ``.venv/bin/python tools/status_write_cost.py [--rounds N]`` (nothing else running).
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import json
import pathlib
import statistics
import sys
import tempfile
import time
from typing import Any

import yaml

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tools")]

from bench import kube  # noqa: E402
from status_microbench import GPU_PLUGINS, reconciled_resource  # noqa: E402

from localcluster import cluster as lc_cluster  # noqa: E402

CRD = ROOT / "deployments/operator/crd/bases/deviceplugin.intel.com_gpudeviceplugins.yaml"
GROUP = "deviceplugin.intel.com"
MAP_LISTS_GROUP = "maplists.example.com"
LIST_KEYS = {"conditions": "type", "devices": "resource"}
FIELD_MANAGER = "intel-deviceplugin-operator"


def crd_with_map_lists() -> dict[str, Any]:
    """The GpuDevicePlugin CRD in ``MAP_LISTS_GROUP`` with the status lists as ``map`` lists."""
    crd: dict[str, Any] = yaml.safe_load(CRD.read_text())
    crd["spec"]["group"] = MAP_LISTS_GROUP
    crd["metadata"]["name"] = f"{crd['spec']['names']['plural']}.{MAP_LISTS_GROUP}"
    fields = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["status"]
    for name, key in LIST_KEYS.items():
        fields["properties"][name]["x-kubernetes-list-type"] = "map"
        fields["properties"][name]["x-kubernetes-list-map-keys"] = [key]
    return crd


async def this_operators_status() -> dict[str, Any]:
    fake, _, _ = await reconciled_resource()
    written = await fake.get(GPU_PLUGINS, "a")
    result: dict[str, Any] = written["status"]
    return result


def reference_status(ours: dict[str, Any]) -> dict[str, Any]:
    shape = {k: ours[k] for k in ("desiredNumberScheduled", "numberReady", "nodeNames")}
    return {**shape, "controlledDaemonSet": {**ours["controlledDaemonSet"], "resourceVersion": "1"}}


async def measure(handle: lc_cluster.Cluster, rounds: int) -> None:
    ours = await this_operators_status()
    shapes: dict[str, tuple[str, dict[str, Any] | None]] = {
        "none": (GROUP, None),
        "reference": (GROUP, reference_status(ours)),
        "this": (GROUP, ours),
        "this-map-lists": (MAP_LISTS_GROUP, ours),
    }
    paths: dict[str, str] = {}
    async with kube.Api(handle) as api:
        for name, (group, status) in shapes.items():
            plural = f"/apis/{group}/v1/gpudeviceplugins"
            await api.create(
                plural,
                {
                    "apiVersion": f"{group}/v1",
                    "kind": "GpuDevicePlugin",
                    "metadata": {"name": name},
                    "spec": {"image": "intel/intel-gpu-plugin:0.32.0", "logLevel": 4},
                },
            )
            if status is not None:
                await api.request(
                    "PATCH",
                    f"{plural}/{name}/status",
                    {"status": copy.deepcopy(status)},
                    params={"fieldManager": FIELD_MANAGER},
                    content_type="application/merge-patch+json",
                )
            paths[name] = f"{plural}/{name}"
        times: dict[str, list[float]] = {name: [] for name in shapes}
        for index in range(rounds):
            for name, path in paths.items():
                started = time.perf_counter()
                await api.merge_patch(path, {"spec": {"logLevel": 5 + index % 2}})
                times[name].append((time.perf_counter() - started) * 1000)
        for name, path in paths.items():
            stored = await api.get(path)
            quartiles = statistics.quantiles(times[name], n=4)
            print(
                f"{name:15} p50 {quartiles[1]:.2f} ms (p25 {quartiles[0]:.2f}, "
                f"p75 {quartiles[2]:.2f}), {len(json.dumps(stored))} bytes stored"
            )


def established(handle: lc_cluster.Cluster, crd: dict[str, Any]) -> None:
    """Create ``crd`` and wait until the API server serves it."""
    handle.api().create("/apis/apiextensions.k8s.io/v1/customresourcedefinitions", crd)
    handle.wait_crds_established([crd["metadata"]["name"]])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=300, help="spec patches per shape")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="status-write-cost-") as directory:
        handle = lc_cluster.Cluster(pathlib.Path(directory) / "cluster", echo=print)
        handle.up([], timeout=300)
        try:
            for crd in (yaml.safe_load(CRD.read_text()), crd_with_map_lists()):
                established(handle, crd)
            asyncio.run(measure(handle, args.rounds))
        finally:
            handle.down()


if __name__ == "__main__":
    main()
