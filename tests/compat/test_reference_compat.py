"""Migration to and from Intel's operator (v0.36.0, the real binary) on one control plane.

The tests run in order and share the module's cluster and plugin namespace:

1. the reference, on its own CRDs, makes the DaemonSets of 24 resources (3 per kind,
   together every spec field it renders) and reports their statuses;
2. it stops and this operator starts (no ``--plugin-service-account``): every DaemonSet
   keeps its UID, generation and pods (kwok pods: their UIDs) but the documented
   ``ADOPTION_ROLLS`` (plugin pods lose the API token the reference's GPU, NPU and FPGA
   templates give them; DSA vfio-pci gets the right mount), statuses follow within seconds,
   and in a steady window of 60 s it writes nothing (from the audit log);
3. this operator stops and the reference adopts the DaemonSets back, again without a pod
   restart;
4. both run with leader election on the Lease ``d1c7b6d5.intel.com``: from the audit log,
   every write of either was made while its own user held the Lease; killing the leader
   hands over to the other, both ways;
5. this operator with ``--plugin-service-account`` rolls every plugin exactly once.

A DaemonSet's pods are those whose controller owner reference is its UID; "statuses follow"
is judged on the reference's status fields only (its CRDs have no others).
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
import pathlib
import signal
import threading
import time
from collections.abc import Mapping
from typing import Any

import pydantic
import pytest
from bench import impls
from bench import reference as bench_reference

from clusters import TestCluster
from compat.support import (
    REFERENCE_USER,
    THIS_USER,
    Reference,
    audit_entries,
    describe,
    now,
    when,
    writes,
)
from deviceplugin_operator.api import fpga as fpga_api
from deviceplugin_operator.controller import election
from localcluster import errors as cluster_errors
from operators import Operator, start_operator
from polling import eventually
from reliability import fleet
from reliability.audit import overlapping_writes

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

NAMESPACE = "compat-plugins"
GROUP = "/apis/deviceplugin.intel.com/v1"
V = "0.36.0"
EXTRA = "compat.test/extra"
"""Label of the nodes the third resource of each kind selects; moved between phases, so that
statuses have something to follow while no operator runs."""
TOLERATIONS = [
    {"key": "compat", "operator": "Equal", "value": "x", "effect": "NoSchedule"},
    {"key": "other", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 30},
]
PLUGIN_ACCOUNT = "compat-plugin"
NO_TOKEN = "template.spec.automountServiceAccountToken: null -> false"
ADOPTION_ROLLS = {
    # The reference's DSA controller sets the vfio-pci mount path on a copy of the container
    # (a no-op): its plugin sees the host's /dev/vfio at /dev/dsa. This operator mounts it
    # where the plugin looks, which rolls such a DaemonSet once (docs/install.md).
    "intel-dsa-plugin-compat-dsa-c": [
        'template.spec.containers[0].volumeMounts[0].mountPath: "/dev/dsa" -> "/dev/vfio"'
    ],
    # The reference's GPU, NPU and FPGA templates mount an API token into these hostPath
    # pods (its ServiceAccount can create privileged DaemonSets); this operator never gives
    # plugin pods a token, so they roll once (SECURITY.md, docs/install.md).
    **{
        f"intel-{dev}-plugin-compat-{dev}-{variant}": [NO_TOKEN]
        for dev in ("fpga", "gpu", "npu")
        for variant in "abc"
    },
}
"""The DaemonSets this operator changes when it adopts the reference's, and how."""
STEADY_SECONDS = 60.0


def image(name: str) -> str:
    return f"intel/{name}:{V}"


def feature(dev: str) -> dict[str, str]:
    return {f"intel.feature.node.kubernetes.io/{dev}": "true"}


# Three resources per kind; together every field the reference renders, every enum value of
# the fields that are rendered as arguments.
SPECS: Mapping[str, Mapping[str, dict[str, Any]]] = {
    "dlb": {
        "a": {"image": image("intel-dlb-plugin")},
        "b": {
            "image": image("intel-dlb-plugin"),
            "initImage": image("intel-dlb-initcontainer"),
            "nodeSelector": feature("dlb"),
            "tolerations": TOLERATIONS,
            "logLevel": 2,
        },
        "c": {"image": image("intel-dlb-plugin"), "logLevel": 4, "nodeSelector": {EXTRA: "true"}},
    },
    "dsa": {
        "a": {"image": image("intel-dsa-plugin")},
        "b": {
            "image": image("intel-dsa-plugin"),
            "initImage": image("intel-idxd-config-initcontainer"),
            "provisioningConfig": "dsa-config",
            "driver": "idxd",
            "sharedDevNum": 10,
            "nodeSelector": feature("dsa"),
            "tolerations": TOLERATIONS,
            "logLevel": 3,
        },
        "c": {
            "image": image("intel-dsa-plugin"),
            "initImage": image("intel-idxd-config-initcontainer"),
            "driver": "vfio-pci",
            "sharedDevNum": 2,
            "nodeSelector": {EXTRA: "true"},
        },
    },
    "fpga": {
        # The reference cannot render FPGA without initImage (it writes the base's init
        # container with an empty image, which the API server refuses), and its webhook
        # requires one: every FPGA resource it runs has one.
        "a": {
            "image": image("intel-fpga-plugin"),
            "initImage": image("intel-fpga-initcontainer"),
            "mode": "af",
        },
        "b": {
            "image": image("intel-fpga-plugin"),
            "initImage": image("intel-fpga-initcontainer"),
            "mode": "region",
            "nodeSelector": feature("fpga-arria10"),
            "tolerations": TOLERATIONS,
            "logLevel": 1,
        },
        "c": {
            "image": image("intel-fpga-plugin"),
            "initImage": image("intel-fpga-initcontainer"),
            "mode": "regiondevel",
            "nodeSelector": {EXTRA: "true"},
        },
    },
    "gpu": {
        "a": {"image": image("intel-gpu-plugin"), "preferredAllocationPolicy": "none"},
        "b": {
            "image": image("intel-gpu-plugin"),
            "initImage": image("intel-gpu-initcontainer"),
            "sharedDevNum": 4,
            "preferredAllocationPolicy": "packed",
            "allowIDs": "0x4905,0x56a0",
            "bypathMode": "all",
            "enableMonitoring": True,
            "monitoringMode": "split",
            "nodeSelector": feature("gpu"),
            "tolerations": TOLERATIONS,
            "logLevel": 2,
        },
        "c": {
            "image": image("intel-gpu-plugin"),
            "denyIDs": "0x56c0",
            "sharedDevNum": 2,
            "preferredAllocationPolicy": "balanced",
            "bypathMode": "none",
            "enableMonitoring": True,
            "monitoringMode": "single",
            "nodeSelector": {EXTRA: "true"},
        },
    },
    "iaa": {
        "a": {"image": image("intel-iaa-plugin")},
        "b": {
            "image": image("intel-iaa-plugin"),
            "initImage": image("intel-idxd-config-initcontainer"),
            "provisioningConfig": "iaa-config",
            "sharedDevNum": 5,
            "nodeSelector": feature("iaa"),
            "tolerations": TOLERATIONS,
            "logLevel": 1,
        },
        "c": {
            "image": image("intel-iaa-plugin"),
            "initImage": image("intel-idxd-config-initcontainer"),
            "sharedDevNum": 1,
            "nodeSelector": {EXTRA: "true"},
        },
    },
    "npu": {
        "a": {"image": image("intel-npu-plugin")},
        "b": {
            "image": image("intel-npu-plugin"),
            "sharedDevNum": 3,
            "nodeSelector": feature("npu"),
            "tolerations": TOLERATIONS,
            "logLevel": 2,
        },
        "c": {"image": image("intel-npu-plugin"), "nodeSelector": {EXTRA: "true"}},
    },
    "qat": {
        "a": {"image": image("intel-qat-plugin")},
        "b": {
            "image": image("intel-qat-plugin"),
            "initImage": image("intel-qat-initcontainer"),
            "provisioningConfig": "qat-config",
            "kernelVfDrivers": ["4xxxvf", "420xxvf"],
            "dpdkDriver": "vfio-pci",
            "maxNumDevices": 16,
            "preferredAllocationPolicy": "balanced",
            "nodeSelector": feature("qat"),
            "tolerations": TOLERATIONS,
            "logLevel": 2,
        },
        "c": {
            "image": image("intel-qat-plugin"),
            "initImage": image("intel-qat-initcontainer"),
            "dpdkDriver": "igb_uio",
            "kernelVfDrivers": ["c6xxvf", "c3xxxvf", "d15xxvf", "dh895xccvf", "c4xxxvf"],
            "maxNumDevices": 8,
            "preferredAllocationPolicy": "packed",
            "nodeSelector": {EXTRA: "true"},
        },
    },
    "sgx": {
        "a": {"image": image("intel-sgx-plugin")},
        "b": {
            "image": image("intel-sgx-plugin"),
            "initImage": image("intel-sgx-initcontainer"),
            "enclaveLimit": 110,
            "provisionLimit": 110,
            "dcapInfraResources": True,
            "nodeSelector": feature("sgx"),
            "tolerations": TOLERATIONS,
            "logLevel": 4,
        },
        "c": {
            "image": image("intel-sgx-plugin"),
            "enclaveLimit": 20,
            "provisionLimit": 2,
            "nodeSelector": {EXTRA: "true"},
        },
    },
}
CONFIG_MAPS = ("dsa-config", "iaa-config", "qat-config")


def plural(dev: str) -> str:
    return f"{dev}deviceplugins"


def kind_of(dev: str) -> str:
    return f"{dev.capitalize()}DevicePlugin"


def resource_names() -> list[tuple[str, str]]:
    return [(dev, f"compat-{dev}-{variant}") for dev, specs in SPECS.items() for variant in specs]


def ds_name(dev: str, name: str) -> str:
    return f"intel-{dev}-plugin-{name}"


# The cluster as both operators see it ---------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class DaemonSetState:
    uid: str
    generation: int
    template: dict[str, Any]
    pods: frozenset[str]
    """UIDs of the live pods it controls."""


Snapshot = dict[str, DaemonSetState]


def _items(cluster: TestCluster, path: str) -> list[dict[str, Any]]:
    found = cluster.api.get(path)
    return list((found or {}).get("items") or [])


def controlled_pods(cluster: TestCluster) -> dict[str, list[dict[str, Any]]]:
    by_owner: dict[str, list[dict[str, Any]]] = {}
    for pod in _items(cluster, f"/api/v1/namespaces/{NAMESPACE}/pods"):
        if pod["metadata"].get("deletionTimestamp"):
            continue
        for ref in pod["metadata"].get("ownerReferences") or []:
            if ref.get("controller"):
                by_owner.setdefault(ref["uid"], []).append(pod)
    return by_owner


def snapshot(cluster: TestCluster) -> Snapshot:
    pods = controlled_pods(cluster)
    result = {}
    for ds in _items(cluster, f"/apis/apps/v1/namespaces/{NAMESPACE}/daemonsets"):
        meta = ds["metadata"]
        result[meta["name"]] = DaemonSetState(
            meta["uid"],
            int(meta["generation"]),
            ds["spec"]["template"],
            frozenset(pod["metadata"]["uid"] for pod in pods.get(meta["uid"], [])),
        )
    return result


def unsettled(cluster: TestCluster) -> list[str]:
    """What still keeps the cluster from agreeing with the resources, in the reference's
    terms: one DaemonSet per resource, rolled out and ready, and a status (the reference's
    four fields) that says so."""
    problems: list[str] = []
    daemonsets = {
        ds["metadata"]["name"]: ds
        for ds in _items(cluster, f"/apis/apps/v1/namespaces/{NAMESPACE}/daemonsets")
    }
    pods = controlled_pods(cluster)
    for dev, name in resource_names():
        cr = cluster.api.get(f"{GROUP}/{plural(dev)}/{name}")
        ds = daemonsets.get(ds_name(dev, name))
        if cr is None or ds is None:
            problems.append(f"{dev}/{name}: resource {cr is not None}, DaemonSet {ds is not None}")
            continue
        ds_status = ds.get("status") or {}
        desired = ds_status.get("desiredNumberScheduled", 0)
        if ds_status.get("observedGeneration") != ds["metadata"]["generation"] or not (
            desired == ds_status.get("numberReady", 0) == ds_status.get("updatedNumberScheduled")
        ):
            problems.append(f"{dev}/{name}: DaemonSet not rolled out: {ds_status}")
            continue
        status = cr.get("status") or {}
        nodes = sorted(
            pod["spec"].get("nodeName", "") for pod in pods.get(ds["metadata"]["uid"], [])
        )
        seen = (
            (status.get("controlledDaemonSet") or {}).get("uid"),
            status.get("desiredNumberScheduled"),
            status.get("numberReady"),
            sorted(status.get("nodeNames") or []),
        )
        wanted = (ds["metadata"]["uid"], desired, ds_status.get("numberReady", 0), nodes)
        if seen != wanted:
            problems.append(f"{dev}/{name}: status {seen} != {wanted}")
    return problems


def wait_settled(cluster: TestCluster, timeout: float = 120.0) -> float:
    """Seconds until ``unsettled`` has nothing to say."""
    started = time.monotonic()
    last: list[str] = []
    while time.monotonic() - started < timeout:
        try:
            last = unsettled(cluster)
        except cluster_errors.ClusterError as error:
            last = [str(error)]
        if not last:
            return time.monotonic() - started
        time.sleep(0.1)
    raise AssertionError(f"not settled after {timeout:.0f}s: {last[:8]}")


def rolled(before: Snapshot, after: Snapshot) -> dict[str, list[str]]:
    """DaemonSets whose identity, generation or pods changed: what changed."""
    changes: dict[str, list[str]] = {}
    for name, old in before.items():
        new = after.get(name)
        if new is None:
            changes[name] = ["gone"]
            continue
        what = []
        if new.uid != old.uid:
            what.append("replaced (new UID)")
        if new.generation != old.generation:
            what.append(f"generation {old.generation} -> {new.generation}")
            what += template_diff(old.template, new.template)
        if not old.pods <= new.pods:
            what.append(f"{len(old.pods - new.pods)} of {len(old.pods)} pods restarted")
        if what:
            changes[name] = what
    return changes


def template_changes(changes: Mapping[str, list[str]]) -> dict[str, list[str]]:
    """``rolled`` reduced to the template fields that changed."""
    return {
        name: [what for what in found if what.startswith("template")]
        for name, found in changes.items()
    }


def template_diff(old: Any, new: Any, path: str = "template") -> list[str]:
    if isinstance(old, dict) and isinstance(new, dict):
        found = []
        for key in sorted(set(old) | set(new)):
            found += template_diff(old.get(key), new.get(key), f"{path}.{key}")
        return found
    if isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        found = []
        for index, (a, b) in enumerate(zip(old, new, strict=True)):
            found += template_diff(a, b, f"{path}[{index}]")
        return found
    if old != new:
        return [f"{path}: {json.dumps(old)} -> {json.dumps(new)}"]
    return []


def label_node(cluster: TestCluster, node: str, value: str | None) -> None:
    patch = {"metadata": {"labels": {EXTRA: value}}}
    status, body = cluster.api.request(
        "PATCH", f"/api/v1/nodes/{node}", patch, content_type="application/merge-patch+json"
    )
    assert status == 200, body


def follows_label(cluster: TestCluster, nodes: list[str]) -> bool:
    """Every third resource's status names exactly ``nodes`` and counts them ready."""
    for dev, name in resource_names():
        if not name.endswith("-c"):
            continue
        status = (cluster.api.get(f"{GROUP}/{plural(dev)}/{name}") or {}).get("status") or {}
        if sorted(status.get("nodeNames") or []) != nodes or status.get("numberReady") != len(
            nodes
        ):
            return False
    return True


# The operators ---------------------------------------------------------------------------------
@dataclasses.dataclass
class Compat:
    cluster: TestCluster
    reference: Reference
    workdir: pathlib.Path
    made: Snapshot | None = None
    """The DaemonSets as the reference made them (phase 1)."""
    figures: dict[str, Any] = dataclasses.field(default_factory=dict)

    def kubeconfig(self, user: str) -> pathlib.Path:
        return self.cluster.cluster.user_kubeconfig(user)

    def start_reference(self, tag: str, *extra: str, leader: bool = False) -> impls.Running:
        deadline = time.monotonic() + 120
        while not impls.port_free(bench_reference.WEBHOOK_PORT):
            if time.monotonic() > deadline:
                pytest.fail(f"port {bench_reference.WEBHOOK_PORT} stays taken (the reference's")
            time.sleep(1)
        return impls.start(
            impls.REFERENCE,
            kubeconfig=self.kubeconfig(REFERENCE_USER),
            namespace=NAMESPACE,
            workdir=self.workdir,
            tag=tag,
            extra_args=(*extra, *(("--leader-elect",) if leader else ())),
            lease_namespace=NAMESPACE if leader else None,
        )

    def start_this(self, tag: str, *extra: str) -> Operator:
        process = start_operator(
            self.kubeconfig(THIS_USER), NAMESPACE, self.workdir / f"this-{tag}.log", *extra
        )
        process.wait_logging()
        return process

    def report(self, name: str, figures: dict[str, Any]) -> None:
        self.figures[name] = figures
        path = pathlib.Path(os.environ.get("COMPAT_RESULTS", self.workdir)) / "compat.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.figures, indent=2, sort_keys=True, default=str))
        print(f"\n{name}: {json.dumps(figures, sort_keys=True, default=str)}")


def kill(running: impls.Running) -> None:
    """kill -9 of the reference (its process group)."""
    try:
        os.killpg(running.pid, signal.SIGKILL)
    except ProcessLookupError:
        return
    eventually(lambda: not running.alive, timeout=10, what="the reference to die")


@pytest.fixture(scope="module")
def compat(
    compat_cluster: TestCluster, reference: Reference, tmp_path_factory: pytest.TempPathFactory
) -> Compat:
    cluster = compat_cluster
    cluster.kubectl("create", "namespace", NAMESPACE)
    cluster.kubectl("create", "serviceaccount", PLUGIN_ACCOUNT, "-n", NAMESPACE)
    for name in CONFIG_MAPS:
        cluster.kubectl("create", "configmap", name, "-n", NAMESPACE, f"--from-literal={name}=x")
    label_node(cluster, "intel-node-0", "true")
    state = Compat(cluster, reference, tmp_path_factory.mktemp("compat"))
    state.figures["reference_build_seconds_this_session"] = reference.build_seconds
    state.figures["reference_build"] = bench_reference.build_info(reference.version)
    return state


def require(state: Compat) -> Snapshot:
    if state.made is None:
        pytest.skip("the reference did not make its DaemonSets (first test)")
    return state.made


# 1. The reference makes its DaemonSets -------------------------------------------------------
def test_the_reference_makes_its_daemonsets_on_its_own_crds(compat: Compat) -> None:
    took = make_with_reference(compat)
    assert compat.made is not None
    assert len(compat.made) == len(resource_names())
    assert all(state.pods for state in compat.made.values())
    compat.report(
        "reference_made",
        {
            "resources": len(resource_names()),
            "daemonsets": len(compat.made),
            "pods": sum(len(state.pods) for state in compat.made.values()),
            "settled_s": round(took, 1),
        },
    )


def make_with_reference(compat: Compat) -> float:
    """The reference creates the DaemonSets of every resource of ``SPECS`` and reports their
    statuses, then stops; ``compat.made`` is what it made. Seconds until it had settled."""
    cluster = compat.cluster
    running = compat.start_reference("made")
    try:
        for dev, name in resource_names():
            body = {
                "apiVersion": "deviceplugin.intel.com/v1",
                "kind": kind_of(dev),
                "metadata": {"name": name},
                "spec": SPECS[dev][name.rsplit("-", 1)[1]],
            }
            assert cluster.api.create(f"{GROUP}/{plural(dev)}", body) is not None
        took = wait_settled(cluster)
        # The reference changes some of its DaemonSets right after creating them (FPGA's
        # init image, IAA's nodeSelector); what it made is what it leaves once quiet.
        time.sleep(3)
        took += wait_settled(cluster)
        compat.made = snapshot(cluster)
    finally:
        running.stop()
    return took


def daemonsets_rolled_out(cluster: TestCluster) -> bool:
    for ds in _items(cluster, f"/apis/apps/v1/namespaces/{NAMESPACE}/daemonsets"):
        status = ds.get("status") or {}
        if status.get("observedGeneration") != ds["metadata"]["generation"]:
            return False
        desired = status.get("desiredNumberScheduled", 0)
        if not desired == status.get("numberReady", 0) == status.get("updatedNumberScheduled", 0):
            return False
    return True


def third_resources_on(cluster: TestCluster, nodes: list[str]) -> bool:
    """The DaemonSets of every third resource run on exactly ``nodes`` and are ready."""
    pods = controlled_pods(cluster)
    for ds in _items(cluster, f"/apis/apps/v1/namespaces/{NAMESPACE}/daemonsets"):
        if not ds["metadata"]["name"].endswith("-c"):
            continue
        where = sorted(
            pod["spec"].get("nodeName", "") for pod in pods.get(ds["metadata"]["uid"], [])
        )
        if where != nodes:
            return False
    return daemonsets_rolled_out(cluster)


def summary(entries: list[dict[str, Any]]) -> dict[str, int]:
    """Write requests by verb, resource and subresource."""
    counted: dict[str, int] = {}
    for entry in writes(entries):
        ref = entry.get("objectRef") or {}
        key = "/".join(filter(None, (entry["verb"], ref.get("resource"), ref.get("subresource"))))
        counted[key] = counted.get(key, 0) + 1
    return dict(sorted(counted.items()))


# 2. This operator adopts them ------------------------------------------------------------------
def test_this_operator_adopts_them_rolling_only_the_documented_plugins(compat: Compat) -> None:
    made = require(compat)
    cluster = compat.cluster
    # While no operator runs, one more node gets the label the third resources select: their
    # DaemonSets get a pod more, and their statuses are behind.
    label_node(cluster, "intel-node-1", "true")
    both = ["intel-node-0", "intel-node-1"]
    eventually(lambda: third_resources_on(cluster, both), timeout=60, what="the new pods")
    before = snapshot(cluster)
    assert not rolled(made, before)
    since = now()
    process = compat.start_this("adopt")
    eventually(
        lambda: follows_label(cluster, both), timeout=60, interval=0.05, what="statuses to follow"
    )
    followed = time.monotonic() - process.started
    settled = wait_settled(cluster)
    # Its first pass is over when it has written nothing for a while.
    quiet = quiet_since(cluster, THIS_USER, since, seconds=5.0)
    after = snapshot(cluster)
    first_pass = audit_entries(cluster, [THIS_USER], since, quiet)
    sample = cluster.api.get(f"{GROUP}/gpudeviceplugins/compat-gpu-b") or {}
    status_fields = sorted(sample.get("status") or {})

    window_start = now()
    time.sleep(STEADY_SECONDS)
    window = audit_entries(
        cluster,
        [THIS_USER],
        window_start,
        window_start + datetime.timedelta(seconds=STEADY_SECONDS),
    )
    alive = process.popen.poll() is None
    process.terminate()
    compat.report(
        "this_adopts",
        {
            "statuses_followed_s_after_start": round(followed, 2),
            "settled_s_after_that": round(settled, 2),
            "first_pass_writes": summary(first_pass),
            "daemonsets_changed": rolled(before, after),
            "pods_restarted": sum(len(s.pods - after[n].pods) for n, s in before.items()),
            "status_fields_on_reference_crds": status_fields,
            "steady_window_s": STEADY_SECONDS,
            "steady_window_writes": [describe(e) for e in writes(window)],
            "steady_window_requests": len(window),
        },
    )
    assert alive, fleet.tracebacks(process.log)
    assert template_changes(rolled(before, after)) == ADOPTION_ROLLS
    assert not writes(window), [describe(e) for e in writes(window)]
    assert not fleet.tracebacks(process.log)


def quiet_since(
    cluster: TestCluster, user: str, since: datetime.datetime, seconds: float
) -> datetime.datetime:
    """The first moment after ``since`` from which ``user`` wrote nothing for ``seconds``."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        last = max(
            (
                when(e["requestReceivedTimestamp"])
                for e in writes(audit_entries(cluster, [user], since))
            ),
            default=since,
        )
        if now() - last >= datetime.timedelta(seconds=seconds):
            return last + datetime.timedelta(milliseconds=1)
        time.sleep(0.5)
    raise AssertionError(f"{user} kept writing for 120 s")


# 3. The reference adopts them back -------------------------------------------------------------
def test_the_reference_adopts_them_back_without_restarting_a_plugin(compat: Compat) -> None:
    require(compat)
    cluster = compat.cluster
    label_node(cluster, "intel-node-1", None)
    only = ["intel-node-0"]
    eventually(lambda: third_resources_on(cluster, only), timeout=60, what="pods to go")
    before = snapshot(cluster)
    since = now()
    running = compat.start_reference("back")
    try:
        eventually(
            lambda: follows_label(cluster, only),
            timeout=60,
            interval=0.05,
            what="statuses to follow",
        )
        followed = time.monotonic() - running.started
        settled = wait_settled(cluster)
        quiet = quiet_since(cluster, REFERENCE_USER, since, seconds=5.0)
        after = snapshot(cluster)
    finally:
        running.stop()
    entries = audit_entries(cluster, [REFERENCE_USER], since, quiet)
    updated = sorted(
        {
            (e.get("objectRef") or {}).get("name", "")
            for e in writes(entries)
            if (e.get("objectRef") or {}).get("resource") == "daemonsets"
        }
    )
    compat.report(
        "reference_adopts_back",
        {
            "statuses_followed_s_after_start": round(followed, 2),
            "settled_s_after_that": round(settled, 2),
            "first_pass_writes": summary(entries),
            "daemonsets_written": updated,
            "daemonsets_changed": rolled(before, after),
            "pods_restarted": sum(len(s.pods - after[n].pods) for n, s in before.items()),
        },
    )
    assert not rolled(before, after)


# 4. Both elect a leader on one Lease -----------------------------------------------------------
LEASE_PATH = f"/apis/coordination.k8s.io/v1/namespaces/{NAMESPACE}/leases/{election.LEASE_NAME}"


class SpecChurn:
    """Changes the ``logLevel`` of the first resources of every kind from a thread, so that
    whichever operator leads has DaemonSets and statuses to write."""

    def __init__(self, cluster: TestCluster) -> None:
        self.cluster = cluster
        self.changes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        targets = [(dev, name) for dev, name in resource_names() if name.endswith("-a")]
        step = 0
        while not self._stop.wait(0.25):
            dev, name = targets[step % len(targets)]
            step += 1
            patch = {"spec": {"logLevel": step % 5}}
            try:
                status, _ = self.cluster.api.request(
                    "PATCH",
                    f"{GROUP}/{plural(dev)}/{name}",
                    patch,
                    content_type="application/merge-patch+json",
                )
            except cluster_errors.ClusterError:
                continue
            self.changes += status == 200

    def __enter__(self) -> SpecChurn:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


def lease_holder(cluster: TestCluster) -> str:
    lease = cluster.api.get(LEASE_PATH) or {}
    return str((lease.get("spec") or {}).get("holderIdentity") or "")


def identity_of(process: Operator) -> str | None:
    for record in fleet.log_records(process.log):
        if record.get("identity"):
            return str(record["identity"])
    return None


def test_one_lease_one_writer_and_the_leaders_death_hands_over(compat: Compat) -> None:
    require(compat)
    cluster = compat.cluster
    since = now()
    takeovers: dict[str, float] = {}
    ours: Operator | None = None
    running = compat.start_reference("leader-1", leader=True)
    try:
        eventually(lambda: lease_holder(cluster), timeout=60, what="the reference to lead")
        ours = compat.start_this(
            "leader", "--leader-elect", f"--leader-elect-namespace={NAMESPACE}"
        )
        mine = eventually(lambda: identity_of(ours), timeout=30, what="our identity")
        with SpecChurn(cluster) as churn:
            time.sleep(8)
            assert lease_holder(cluster) != mine, "we took the reference's Lease"
            killed = time.monotonic()
            kill(running)
            eventually(
                lambda: lease_holder(cluster) == mine,
                timeout=60,
                interval=0.05,
                what="this operator to take over",
            )
            takeovers["reference killed -> this leads"] = time.monotonic() - killed
            time.sleep(8)
            running = compat.start_reference("leader-2", leader=True)
            running_now = running
            eventually(running_now.ready, timeout=60, what="the reference to be ready")
            time.sleep(4)
            assert lease_holder(cluster) == mine, "the reference took our Lease"
            killed = time.monotonic()
            ours.kill()
            eventually(
                lambda: lease_holder(cluster) not in ("", mine),
                timeout=60,
                interval=0.05,
                what="the reference to take over",
            )
            takeovers["this killed -> reference leads"] = time.monotonic() - killed
            time.sleep(8)
        settled = wait_settled(cluster)
    finally:
        running.stop()
        if ours is not None:
            ours.terminate()
    entries = audit_entries(cluster, [REFERENCE_USER, THIS_USER], since)
    checked, wrong = overlapping_writes(entries, NAMESPACE)
    by_user = {
        user: summary([e for e in entries if e["user"]["username"] == user])
        for user in (REFERENCE_USER, THIS_USER)
    }
    compat.report(
        "leader_election",
        {
            "spec_changes": churn.changes,
            "takeover_s": {what: round(took, 2) for what, took in takeovers.items()},
            "writes_checked_against_lease_terms": checked,
            "writes_outside_own_term": wrong[:20],
            "writes_by_user": by_user,
            "settled_s_after_churn": round(settled, 2),
        },
    )
    assert checked > 0
    assert not wrong, wrong[:10]
    for user, counted in by_user.items():
        assert any("daemonsets" in key for key in counted), f"{user} wrote no DaemonSet"
    assert not fleet.tracebacks(ours.log)


# 5. The plugin service account ---------------------------------------------------------------
def test_the_plugin_service_account_rolls_each_plugin_once(compat: Compat) -> None:
    require(compat)
    cluster = compat.cluster
    eventually(lambda: daemonsets_rolled_out(cluster), timeout=120, what="rollouts to finish")
    before = snapshot(cluster)
    process = compat.start_this("account", f"--plugin-service-account={PLUGIN_ACCOUNT}")

    def moved() -> bool:
        current = snapshot(cluster)
        return daemonsets_rolled_out(cluster) and all(
            state.template["spec"].get("serviceAccountName") == PLUGIN_ACCOUNT
            for state in current.values()
        )

    eventually(moved, timeout=180, interval=0.5, what="every plugin to run as the account")
    rolled_out = time.monotonic() - process.started
    time.sleep(10)  # and nothing more happens
    after = snapshot(cluster)
    alive = process.popen.poll() is None
    process.terminate()
    changes = rolled(before, after)
    fields = sorted(
        {what.split(":", 1)[0] for found in template_changes(changes).values() for what in found}
    )
    compat.report(
        "plugin_service_account",
        {
            "rolled_out_s_after_start": round(rolled_out, 1),
            "daemonsets_rolled": len(changes),
            "template_fields_changed": fields,
            "pods_restarted": sum(len(s.pods - after[n].pods) for n, s in before.items()),
        },
    )
    assert alive
    assert set(changes) == set(before)
    for name, state in before.items():
        assert after[name].uid == state.uid
        assert after[name].generation == state.generation + 1, (name, changes[name])
        assert not state.pods & after[name].pods, name
    assert set(fields) <= {
        "template.spec.serviceAccountName",
        "template.spec.serviceAccount",  # the API server's deprecated copy of the name
        "template.spec.automountServiceAccountToken",
    }, fields


# The AcceleratorFunction schema --------------------------------------------------------------
@pytest.mark.parametrize(
    "mode", ["af", "region", "afx", "subregion", "af|region", "regiondevel", "regionx", "xaf"]
)
def test_accelerator_function_modes_are_the_references(compat: Compat, mode: str) -> None:
    """Our model (and so our CRD) accepts exactly what the reference's CRD accepts."""
    body = {
        "apiVersion": "fpga.intel.com/v2",
        "kind": "AcceleratorFunction",
        "metadata": {"name": "mode-check", "namespace": NAMESPACE},
        "spec": {"afuId": "d8424dc4", "interfaceId": "ce489693", "mode": mode},
    }
    status, _ = compat.cluster.api.request(
        "POST",
        f"/apis/fpga.intel.com/v2/namespaces/{NAMESPACE}/acceleratorfunctions?dryRun=All",
        body,
    )
    try:
        fpga_api.AcceleratorFunctionSpec.model_validate(body["spec"])
        ours = True
    except pydantic.ValidationError:
        ours = False
    assert (status == 201) == ours, (mode, status)
