"""``deviceplugin-operator diagnose`` on the local control plane: one case per answer.

A real operator process reconciles GPU resources onto kwok nodes made for this module; each
node is made to show one situation for real: a missing label, an untolerated taint, a second
resource selecting it, no room for a pod (the scheduler leaves it Pending), an image that
cannot be pulled and a crashing container (container statuses written through the pod's
status subresource, which kwok leaves alone once a pod runs), no devices in the node's
status, devices advertised. ``diagnose`` runs as a process with a token of a read-only
ClusterRole, so a write it attempted would fail; ``kubectl deviceplugins`` runs through the
real kubectl with the virtualenv on PATH.
"""

from __future__ import annotations

import contextlib
import json
import os
import pathlib
import subprocess
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from clusters import TestCluster
from localcluster import nodes
from operators import COMMAND, Operator, kill_all, start_operator, token_kubeconfig
from polling import eventually

pytestmark = [pytest.mark.cluster]

ROOT = pathlib.Path(__file__).resolve().parents[2]
S = uuid.uuid4().hex[:6]
MARK = f"diag-{S}"
FEATURE = f"{nodes.FEATURE_PREFIX}diag-{S}"
"""The module's nodes carry these labels, and no ``kubernetes.io/arch``: no resource left by
another module (``gpu: "true"`` samples, default selectors) selects them."""
OVERLAP = f"diag-overlap-{S}"
A, B, BAD = f"diag-a-{S}", f"diag-b-{S}", f"diag-bad-{S}"
TAINT = {"key": "diag.example.com/reserved", "value": "yes", "effect": "NoSchedule"}
CRASH_MESSAGE = "no /dev/dri: is the i915 driver loaded?"
PULL_MESSAGE = 'failed to pull "intel/intel-gpu-plugin:0.36.0": registry unreachable'

NODE = {
    "ready": f"diag-ready-{S}",
    "nodev": f"diag-nodev-{S}",
    "unlabelled": f"diag-unlabelled-{S}",
    "tainted": f"diag-tainted-{S}",
    "full": f"diag-full-{S}",
    "pull": f"diag-pull-{S}",
    "crash": f"diag-crash-{S}",
    "overlap": f"diag-overlap-node-{S}",
}


class Setup:
    def __init__(self, cluster: TestCluster, operator: Operator, namespace: str, reader: Any):
        self.cluster = cluster
        self.operator = operator
        self.namespace = namespace
        self.reader = reader


def node_manifest(name: str, labels: dict[str, str], **status: Any) -> dict[str, Any]:
    body = nodes.manifest(nodes.NodeSpec(name, labels))
    del body["metadata"]["labels"]["kubernetes.io/arch"]
    if "taint" in status:
        body["spec"] = {"taints": [status.pop("taint")]}
    return body


def patch_status(
    cluster: TestCluster, what: str, name: str, status: dict[str, Any], *ns: str
) -> None:
    cluster.kubectl(
        "patch",
        what,
        name,
        *ns,
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps({"status": status}),
    )


def gpu(name: str, selector: dict[str, str], image: str = "intel/intel-gpu-plugin:0.36.0") -> str:
    return json.dumps(
        {
            "apiVersion": "deviceplugin.intel.com/v1",
            "kind": "GpuDevicePlugin",
            "metadata": {"name": name},
            "spec": {"image": image, "nodeSelector": selector},
        }
    )


READER_RULES = [
    {"apiGroups": [""], "resources": ["nodes", "pods"], "verbs": ["get", "list"]},
    {"apiGroups": ["apps"], "resources": ["daemonsets"], "verbs": ["get", "list"]},
    {"apiGroups": ["deviceplugin.intel.com"], "resources": ["*"], "verbs": ["get", "list"]},
]


@pytest.fixture(scope="module")
def setup(cluster: TestCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    cluster.install_crds(ROOT / "deployments/operator/crd/bases")
    directory = tmp_path_factory.mktemp("diagnose")
    namespace = f"diag-{S}"
    cluster.kubectl("create", "namespace", namespace)
    selected = {FEATURE: "true", MARK: "true"}
    manifests = [
        node_manifest(NODE["ready"], selected),
        node_manifest(NODE["nodev"], selected),
        node_manifest(NODE["unlabelled"], {MARK: "true"}),
        node_manifest(NODE["tainted"], selected, taint=TAINT),
        node_manifest(NODE["full"], selected),
        node_manifest(NODE["pull"], selected),
        node_manifest(NODE["crash"], selected),
        node_manifest(NODE["overlap"], {**selected, OVERLAP: "true"}),
    ]
    for manifest in manifests:
        cluster.api.create("/api/v1/nodes", manifest)
    nodes.wait_ready(cluster.api, list(NODE.values()), timeout=60)
    # kwok keeps what is written to a running node's status.
    patch_status(cluster, "node", NODE["full"], {"allocatable": {"pods": "0"}})
    for key in ("ready", "overlap", "pull", "crash"):
        devices = {"gpu.intel.com/i915": "2", "gpu.intel.com/i915_monitoring": "0"}
        patch_status(cluster, "node", NODE[key], {"capacity": devices, "allocatable": devices})

    role = f"diag-reader-{S}"
    cluster.kubectl("create", "serviceaccount", "reader", "-n", namespace)
    cluster.kubectl(
        "apply",
        "-f",
        "-",
        input=json.dumps(
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "ClusterRole",
                "metadata": {"name": role},
                "rules": READER_RULES,
            }
        ),
    )
    cluster.kubectl(
        "create",
        "clusterrolebinding",
        role,
        f"--clusterrole={role}",
        f"--serviceaccount={namespace}:reader",
    )
    reader = token_kubeconfig(cluster, "reader", namespace, directory / "reader.kubeconfig")
    operator = start_operator(
        cluster.kubeconfig, namespace, directory / "operator.log", devices=["gpu"]
    )
    try:
        operator.wait_ready()
        cluster.kubectl("create", "-f", "-", input=gpu(A, selected))
        cluster.kubectl("create", "-f", "-", input=gpu(B, {OVERLAP: "true"}))
        # Stored while no webhook was registered: the operator refuses to render it.
        cluster.kubectl("create", "-f", "-", input=gpu(BAD, selected, "evil/intel-gpu-plugin:0.1"))
        for key in ("pull", "crash"):
            pod = running_pod(cluster, namespace, NODE[key], A)
            patch_status(cluster, "pod", pod["metadata"]["name"], broken(pod, key), "-n", namespace)
        yield Setup(cluster, operator, namespace, reader)
    finally:
        problems = operator.problems()
        cluster.kubectl(
            "delete", "gpudeviceplugins", A, B, BAD, "--ignore-not-found", "--wait=false"
        )
        kill_all()
        cluster.kubectl("delete", "nodes", *NODE.values(), "--ignore-not-found", "--wait=false")
        cluster.kubectl("delete", "clusterrolebinding,clusterrole", role, "--ignore-not-found")
        cluster.kubectl("delete", "namespace", namespace, "--wait=false", check=False)
        assert not problems, problems


def running_pod(cluster: TestCluster, namespace: str, node: str, resource: str) -> dict[str, Any]:
    def running() -> dict[str, Any] | None:
        pods = cluster.kubectl_json(
            "get", "pods", "-n", namespace, f"--field-selector=spec.nodeName={node}"
        )["items"]
        for pod in pods:
            if pod["metadata"]["name"].startswith(f"intel-gpu-plugin-{resource}-") and any(
                c["type"] == "Ready" and c["status"] == "True"
                for c in pod["status"].get("conditions") or ()
            ):
                return dict(pod)
        return None

    return eventually(running, timeout=60, what=f"a running plugin pod on {node}")


def broken(pod: dict[str, Any], how: str) -> dict[str, Any]:
    """The status a kubelet reports for a plugin that cannot be pulled or keeps crashing."""
    container = pod["spec"]["containers"][0]
    status: dict[str, Any] = {
        "name": container["name"],
        "image": container["image"],
        "imageID": "",
        "ready": False,
        "started": False,
    }
    if how == "pull":
        status |= {
            "restartCount": 0,
            "state": {"waiting": {"reason": "ErrImagePull", "message": PULL_MESSAGE}},
        }
    else:
        status |= {
            "restartCount": 4,
            "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 40s"}},
            "lastState": {
                "terminated": {
                    "exitCode": 1,
                    "reason": "Error",
                    "message": CRASH_MESSAGE,
                    "startedAt": "2026-01-01T00:00:00Z",
                    "finishedAt": "2026-01-01T00:00:01Z",
                }
            },
        }
    conditions = [
        {"type": kind, "status": "False" if kind in ("Ready", "ContainersReady") else "True"}
        for kind in ("PodScheduled", "Initialized", "ContainersReady", "Ready")
    ]
    return {"phase": "Running", "conditions": conditions, "containerStatuses": [status]}


def diagnose(setup: Setup, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(COMMAND), "diagnose", f"--kubeconfig={setup.reader.path}", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def decoded(completed: subprocess.CompletedProcess[str]) -> Any:
    """The JSON output; a failure shows what the command wrote to stderr."""
    try:
        return json.loads(completed.stdout)
    except ValueError:
        raise AssertionError(
            f"not JSON (exit {completed.returncode}): {completed.stderr}"
        ) from None


def answer(setup: Setup, node: str, expected: str, resource: str = A) -> dict[str, Any]:
    """The JSON answer for one node and resource: ``expected`` once the cluster shows it
    (pods take a moment), else the last one seen."""
    last: dict[str, Any] = {}

    def settled() -> bool:
        completed = diagnose(setup, node, f"gpu/{resource}", "-o", "json")
        assert completed.returncode in (0, 1), completed.stderr
        (only,) = decoded(completed)["resources"]
        (finding,) = only["nodes"]
        last.clear()
        last.update(finding, exit=completed.returncode)
        return bool(finding["answer"] == expected)

    # On a timeout the caller's assertion shows what was found instead.
    with contextlib.suppress(AssertionError):
        eventually(settled, timeout=30, interval=0.3, what=f"{node}: {expected}")
    return last


def test_all_fine(setup: Setup) -> None:
    found = answer(setup, NODE["ready"], "Ready")
    assert found["answer"] == "Ready", found
    assert found["devices"]["gpu.intel.com/i915"] == {"capacity": "2", "allocatable": "2"}
    assert found["exit"] == 0
    text = diagnose(setup, NODE["ready"], f"GpuDevicePlugin/{A}")
    assert text.returncode == 0, text.stderr
    assert "Ready" in text.stdout
    assert "gpu.intel.com/i915: 2" in text.stdout
    assert "No problem found." in text.stdout


def test_node_not_selected_names_the_missing_label(setup: Setup) -> None:
    found = answer(setup, NODE["unlabelled"], "NotSelected")
    assert found["answer"] == "NotSelected"
    assert f"label {FEATURE}=true is missing" in found["message"]
    assert found["problem"] is False
    assert found["exit"] == 0


def test_taint_not_tolerated(setup: Setup) -> None:
    found = answer(setup, NODE["tainted"], "TaintNotTolerated")
    assert found["answer"] == "TaintNotTolerated", found
    assert "diag.example.com/reserved=yes:NoSchedule" in found["message"]
    assert found["exit"] == 1


def test_overlap_names_the_other_resource(setup: Setup) -> None:
    for mine, other in ((A, B), (B, A)):
        found = answer(setup, NODE["overlap"], "Overlap", mine)
        assert found["answer"] == "Overlap", found
        assert other in found["message"]
        assert found["exit"] == 1


def test_pending_pod_with_the_schedulers_reason(setup: Setup) -> None:
    found = answer(setup, NODE["full"], "Pending")
    assert found["answer"] == "Pending", found
    assert "Too many pods" in found["message"]
    assert found["pod"].startswith(f"{setup.namespace}/intel-gpu-plugin-{A}-")


def test_image_pull_failure_with_the_kubelets_message(setup: Setup) -> None:
    found = answer(setup, NODE["pull"], "ImagePullFailed")
    assert found["answer"] == "ImagePullFailed", found
    assert "ErrImagePull" in found["message"]
    assert PULL_MESSAGE in found["message"]


def test_crashing_with_the_last_message(setup: Setup) -> None:
    found = answer(setup, NODE["crash"], "Crashing")
    assert found["answer"] == "Crashing", found
    assert "4 restarts" in found["message"]
    assert "exit code 1" in found["message"]
    assert CRASH_MESSAGE in found["message"]


def test_ready_without_devices(setup: Setup) -> None:
    found = answer(setup, NODE["nodev"], "NoDevices")
    assert found["answer"] == "NoDevices", found
    assert "gpu.intel.com/" in found["message"]
    assert f"kubectl logs -n {setup.namespace} intel-gpu-plugin-{A}-" in found["message"]


def test_refused_spec_has_no_daemonset(setup: Setup) -> None:
    completed = diagnose(setup, f"gpu/{BAD}", "-o", "json")
    assert completed.returncode == 1, completed.stderr
    (only,) = decoded(completed)["resources"]
    (finding,) = only["nodes"]
    assert finding["answer"] == "NoDaemonSet"
    assert finding["node"] is None
    assert "invalid resource" in finding["message"]


def test_whole_cluster_text_report(setup: Setup) -> None:
    completed = diagnose(setup)
    assert completed.returncode == 1
    out = completed.stdout
    assert f"GpuDevicePlugin {A}  (DaemonSet {setup.namespace}/intel-gpu-plugin-{A}:" in out
    for node in ("tainted", "full", "pull", "crash", "nodev", "ready"):
        assert NODE[node] in out
    assert "not selected:" in out
    assert out.rstrip().endswith("problem(s) found.")


def test_names_that_do_not_exist_and_bad_arguments(setup: Setup) -> None:
    for args, expected in (
        (("no-such-node",), "node 'no-such-node' not found"),
        (("gpu/no-such",), "GpuDevicePlugin 'no-such' not found"),
        (("widget/x",), "unknown kind 'widget'"),
        (("a", "b"), "one NODE at most"),
    ):
        completed = diagnose(setup, *args)
        assert completed.returncode == 2, (args, completed)
        assert expected in completed.stderr


def test_unreachable_cluster(setup: Setup, tmp_path: pathlib.Path) -> None:
    config = json.loads(setup.reader.path.read_text())
    config["clusters"][0]["cluster"]["server"] = "https://127.0.0.1:1"
    broken_config = tmp_path / "kubeconfig"
    broken_config.write_text(json.dumps(config))
    completed = subprocess.run(
        [str(COMMAND), "diagnose", f"--kubeconfig={broken_config}"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert completed.returncode == 3, completed
    assert "cannot read the cluster" in completed.stderr


def test_as_a_kubectl_plugin(setup: Setup) -> None:
    env = {
        **os.environ,
        "PATH": f"{COMMAND.parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "KUBECONFIG": str(setup.reader.path),
    }
    listed = subprocess.run(
        ["kubectl", "plugin", "list"], capture_output=True, text=True, env=env, check=False
    )
    assert "kubectl-deviceplugins" in listed.stdout
    completed = subprocess.run(
        ["kubectl", "deviceplugins", "diagnose", NODE["ready"], f"gpu/{A}", "-o", "json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    (only,) = decoded(completed)["resources"]
    assert only["nodes"][0]["answer"] == "Ready"
    failing = subprocess.run(
        ["kubectl", "deviceplugins", "diagnose", NODE["tainted"], f"gpu/{A}"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert failing.returncode == 1
    assert "TaintNotTolerated" in failing.stdout
