"""``deviceplugin-operator support-bundle`` on the local control plane: what an issue report
needs is in the archive, and secrets planted where a careless bundle would pick them up are not.

A real operator process reconciles a GPU resource; an operator Deployment (labelled like every
install's, pods run by kwok) stands in for the installed operator. Planted: a Secret, an
environment value of the Deployment's pods (also in its last-applied annotation), annotations
that look like or are named like tokens, and the very token the bundle is made with (in an
Event's message too). Each planted string is first shown to be readable from the cluster, so
the test fails if the bundle copied it.
"""

from __future__ import annotations

import base64
import json
import pathlib
import secrets
import subprocess
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

import support_bundles
from clusters import TestCluster
from localcluster import nodes
from operators import (
    COMMAND,
    TokenKubeconfig,
    cluster_admin_account,
    kill_all,
    start_operator,
)
from polling import eventually

pytestmark = [pytest.mark.cluster]

ROOT = pathlib.Path(__file__).resolve().parents[2]
S = uuid.uuid4().hex[:6]
NAMESPACE = f"bundle-{S}"
RESOURCE = f"bundle-gpu-{S}"
NODE = f"bundle-node-{S}"
FEATURE = f"{nodes.FEATURE_PREFIX}bundle-{S}"
"""The node's feature label; it has no ``kubernetes.io/arch`` either, so no resource left by
another module selects it."""
ENV_SECRET = "hunter2-" + secrets.token_hex(8)
SECRET_DATA = "s3cr3t-" + secrets.token_hex(8)
LOOKS_LIKE_TOKEN = secrets.token_urlsafe(30)
NAMED_TOKEN = "named-" + secrets.token_hex(6)
OPERATOR_LABELS = {"control-plane": "controller-manager", "manager": "intel-deviceplugin-operator"}


class Setup:
    def __init__(self, cluster: TestCluster, account: TokenKubeconfig, directory: pathlib.Path):
        self.cluster = cluster
        self.account = account
        self.directory = directory


def deployment() -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": "intel-deviceplugins-controller-manager",
            "namespace": NAMESPACE,
            "labels": OPERATOR_LABELS,
        },
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": OPERATOR_LABELS},
            "template": {
                "metadata": {
                    "labels": OPERATOR_LABELS,
                    "annotations": {"example.com/session": LOOKS_LIKE_TOKEN},
                },
                "spec": {
                    "nodeSelector": {"kubernetes.io/hostname": NODE},
                    "containers": [
                        {
                            "name": "manager",
                            "image": "docker.io/intel/intel-deviceplugin-operator-py:devel",
                            "args": ["--leader-elect", "--devices=gpu"],
                            "env": [
                                {"name": "DEVICEPLUGIN_NAMESPACE", "value": NAMESPACE},
                                {"name": "API_PASSWORD", "value": ENV_SECRET},
                            ],
                        }
                    ],
                },
            },
        },
    }


@pytest.fixture(scope="module")
def setup(cluster: TestCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    cluster.install_crds(ROOT / "deployments/operator/crd/bases")
    directory = tmp_path_factory.mktemp("bundle")
    cluster.kubectl("create", "namespace", NAMESPACE)
    manifest = nodes.manifest(nodes.NodeSpec(NODE, {FEATURE: "true"}))
    del manifest["metadata"]["labels"]["kubernetes.io/arch"]
    cluster.api.create("/api/v1/nodes", manifest)
    nodes.wait_ready(cluster.api, [NODE], timeout=60)
    devices = {"gpu.intel.com/i915": "1"}
    cluster.kubectl(
        "patch",
        "node",
        NODE,
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps({"status": {"capacity": devices, "allocatable": devices}}),
    )
    operator = start_operator(
        cluster.kubeconfig, NAMESPACE, directory / "operator.log", devices=["gpu"]
    )
    with cluster_admin_account(cluster, NAMESPACE, directory, account="bundler") as account:
        try:
            operator.wait_ready()
            cluster.kubectl(
                "create",
                "secret",
                "generic",
                "planted",
                "-n",
                NAMESPACE,
                f"--from-literal=password={SECRET_DATA}",
            )
            cluster.kubectl("apply", "-f", "-", input=json.dumps(deployment()))
            resource = {
                "apiVersion": "deviceplugin.intel.com/v1",
                "kind": "GpuDevicePlugin",
                "metadata": {
                    "name": RESOURCE,
                    "annotations": {
                        "example.com/api-token": NAMED_TOKEN,
                        "example.com/session": LOOKS_LIKE_TOKEN,
                    },
                },
                "spec": {
                    "image": "intel/intel-gpu-plugin:0.36.0",
                    "nodeSelector": {FEATURE: "true"},
                },
            }
            cluster.kubectl("create", "-f", "-", input=json.dumps(resource))
            event = {
                "apiVersion": "v1",
                "kind": "Event",
                "metadata": {"name": f"planted-{S}", "namespace": NAMESPACE},
                "involvedObject": {"kind": "Pod", "name": "somepod", "namespace": NAMESPACE},
                "reason": "Planted",
                "message": f"someone pasted their token {account.token} here",
                "type": "Warning",
            }
            cluster.kubectl("create", "-f", "-", input=json.dumps(event))
            wait_ready(cluster)
            yield Setup(cluster, account, directory)
        finally:
            cluster.kubectl("delete", "gpudeviceplugin", RESOURCE, "--ignore-not-found")
            kill_all()
            cluster.kubectl("delete", "node", NODE, "--ignore-not-found", "--wait=false")
            cluster.kubectl("delete", "namespace", NAMESPACE, "--wait=false", check=False)


def wait_ready(cluster: TestCluster) -> None:
    def ready() -> bool:
        status = cluster.kubectl_json("get", "gpudeviceplugin", RESOURCE).get("status") or {}
        pods = cluster.kubectl_json("get", "pods", "-n", NAMESPACE, "-l", "manager")["items"]
        return status.get("numberReady") == 1 and any(
            p["status"].get("phase") == "Running" for p in pods
        )

    eventually(ready, timeout=60, what="the plugin and the operator pod to run")


@pytest.fixture(scope="module")
def bundle(setup: Setup) -> dict[str, str]:
    output = setup.directory / "bundle.tar.gz"
    made = support_bundles.make(output, setup.account.path)
    assert str(output) in made.stdout
    assert made.roots == {"bundle"}
    return made.files


def test_planted_secrets_are_readable_in_the_cluster(setup: Setup) -> None:
    """The positive control: a bundle that copied what it read would contain them."""
    cluster = setup.cluster
    out = cluster.kubectl("get", "deployments,pods", "-n", NAMESPACE, "-o", "json").stdout
    assert ENV_SECRET in out
    assert LOOKS_LIKE_TOKEN in out
    resource = cluster.kubectl("get", "gpudeviceplugin", RESOURCE, "-o", "json").stdout
    assert NAMED_TOKEN in resource
    events = cluster.kubectl("get", "events", "-n", NAMESPACE, "-o", "json").stdout
    assert setup.account.token in events
    secret = cluster.kubectl("get", "secret", "planted", "-n", NAMESPACE, "-o", "json").stdout
    assert base64.b64encode(SECRET_DATA.encode()).decode() in secret


def test_no_secret_is_in_the_bundle(setup: Setup, bundle: dict[str, str]) -> None:
    everything = "\n".join(bundle.values())
    planted = {
        "env value": ENV_SECRET,
        "Secret data": SECRET_DATA,
        "Secret data, base64": base64.b64encode(SECRET_DATA.encode()).decode(),
        "token-like annotation": LOOKS_LIKE_TOKEN,
        "token-named annotation": NAMED_TOKEN,
        "kubeconfig token": setup.account.token,
        "kubeconfig token, payload": setup.account.token.split(".")[1],
    }
    leaked = [what for what, value in planted.items() if value in everything]
    assert leaked == []
    assert "last-applied-configuration" not in everything
    assert '"kind": "Secret"' not in everything


def test_what_an_issue_report_needs_is_there(setup: Setup, bundle: dict[str, str]) -> None:
    resources = json.loads(bundle["resources/gpudeviceplugins.json"])
    (mine,) = [r for r in resources if r["metadata"]["name"] == RESOURCE]
    assert mine["status"]["numberReady"] == 1
    assert mine["metadata"]["annotations"]["example.com/api-token"] == "<redacted>"
    daemonsets = json.loads(bundle["daemonsets.json"])
    assert f"intel-gpu-plugin-{RESOURCE}" in {d["metadata"]["name"] for d in daemonsets}
    pods = json.loads(bundle["pods.json"])
    assert any(p["nodeName"] == NODE and p["status"]["phase"] == "Running" for p in pods)
    assert all("spec" not in p for p in pods)
    events = json.loads(bundle["events.json"])
    assert any(
        e["involvedObject"].get("name") == RESOURCE and e["reason"] == "Created" for e in events
    )
    assert any(e["reason"] == "Planted" for e in events)
    nodes_found = {n["name"]: n for n in json.loads(bundle["nodes.json"])}
    assert nodes_found[NODE]["allocatable"] == {"gpu.intel.com/i915": "1"}
    assert nodes_found[NODE]["labels"][FEATURE] == "true"
    assert "cpu" not in nodes_found[NODE]["allocatable"]
    diagnosis = json.loads(bundle["diagnose.json"])
    gpu = next(r for r in diagnosis["resources"] if r["name"] == RESOURCE)
    assert {f["node"]: f["answer"] for f in gpu["nodes"]}[NODE] == "Ready"

    version = json.loads(bundle["version.json"])
    assert version["tool"]
    (operator,) = [o for o in version["operators"] if o["deployment"].startswith(f"{NAMESPACE}/")]
    (container,) = operator["containers"]
    assert container["args"] == ["--leader-elect", "--devices=gpu"]
    assert container["image"].endswith("intel-deviceplugin-operator-py:devel")
    env = {v["name"]: v["value"] for v in container["env"]}
    assert env == {"DEVICEPLUGIN_NAMESPACE": NAMESPACE, "API_PASSWORD": "<redacted>"}
    operator_pods = json.loads(bundle["operator/pods.json"])
    assert any(p["metadata"]["namespace"] == NAMESPACE for p in operator_pods)
    # kwok runs no container, so there is no log to read: the bundle says so.
    logs = [name for name in bundle if name.startswith("operator/logs/")]
    errors = bundle.get("errors.txt", "")
    assert logs or f"log of {NAMESPACE}/" in errors


def test_unwritable_output_is_a_usage_error(setup: Setup) -> None:
    completed = subprocess.run(
        [
            str(COMMAND),
            "support-bundle",
            "-o",
            "/nonexistent-dir/b.tar.gz",
            f"--kubeconfig={setup.account.path}",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert completed.returncode == 2
    assert "/nonexistent-dir" in completed.stderr
