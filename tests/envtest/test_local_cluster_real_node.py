"""The local control plane with a real kubelet node (``localcluster up --real-node``).

One cluster for the module, started through the CLI in a temporary directory: the real node
turns Ready next to a kwok node; a pod that is not hostNetwork runs a small static Go server on
it with a 10.88.0.x address, Ready by an HTTPS probe; the apiserver calls it as a validating
webhook through its Service and proxies to it; ``kubectl logs`` reads it; a pod with the
in-cluster configuration reaches the apiserver through the ``kubernetes`` Service 10.96.0.1
(kube-proxy). Last, ``down`` leaves the host exactly as it was: iptables, links, addresses,
routes, mounts, the kernel tunables kubelet would write, no process, no cgroup.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import os
import pathlib
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest

from clusters import TestCluster
from localcluster import binaries, cluster, errors, images, nodes, pki, processes, realnode
from polling import eventually

_MISSING = realnode.missing_prerequisites()

pytestmark = [
    pytest.mark.cluster,
    pytest.mark.skipif(bool(_MISSING), reason="no real node here: needs " + "; ".join(_MISSING)),
]

TESTSERVER_IMAGE = "localhost/localcluster/testserver:1"
EXTRA_LABEL = ("example.com/real-node-test", "yes")
SYSCTLS = (
    *realnode.KUBELET_SYSCTLS,
    "net/ipv4/ip_forward",
    "net/ipv4/conf/all/route_localnet",
    "net/netfilter/nf_conntrack_max",
    "net/netfilter/nf_conntrack_tcp_timeout_established",
    "net/bridge/bridge-nf-call-iptables",
)


def _output(*argv: str) -> str:
    return subprocess.run(argv, capture_output=True, text=True, check=True).stdout


def _mounts() -> list[str]:
    """Mount points and types of this mount namespace. Overlay layers that containers-storage
    (podman, buildah) mounts for image builds running at the same time are left out."""
    found = []
    for line in pathlib.Path("/proc/self/mountinfo").read_text().splitlines():
        fields = line.split(" ")
        fstype = line.partition(" - ")[2].split(" ")[0]
        if fstype == "overlay" and "/storage/overlay/" in fields[4]:
            continue
        found.append(f"{fields[4]} {fstype}")
    return sorted(found)


def _host_snapshot() -> dict[str, Any]:
    sysctls = {}
    for name in SYSCTLS:
        path = pathlib.Path("/proc/sys") / name
        if path.exists():
            sysctls[name] = path.read_text().strip()
    return {
        "iptables": [
            line for line in _output("iptables-save").splitlines() if not line.startswith("#")
        ],
        "ip6tables": [
            line for line in _output("ip6tables-save").splitlines() if not line.startswith("#")
        ],
        "links": _output("ip", "-o", "link").splitlines(),
        "addresses": _output("ip", "-o", "addr").splitlines(),
        "routes": _output("ip", "route", "show", "table", "all").splitlines()
        + _output("ip", "-6", "route", "show", "table", "all").splitlines(),
        "mounts": _mounts(),
        "sysctls": sysctls,
    }


@pytest.fixture(scope="module")
def real(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestCluster, dict[str, Any]]]:
    """The cluster (started by ``localcluster up --real-node``) and the host before it."""
    before = _host_snapshot()
    directory = tmp_path_factory.mktemp("real-node") / "cluster"
    started = time.monotonic()
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "localcluster.cli",
            "--dir",
            str(directory),
            "up",
            "--nodes",
            "1",
            "--real-node",
            "--real-node-labels",
            "=".join(EXTRA_LABEL),
        ],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    handle = cluster.Cluster(directory)
    try:
        assert completed.returncode == 0, completed.stderr
        print(f"real-node cluster up in {time.monotonic() - started:.1f}s", file=sys.stderr)
        yield TestCluster(handle, nodes.intel_nodes(1)), before
    finally:
        if not os.environ.get("DP_KEEP_TEST_CLUSTER"):
            handle.down()


@pytest.fixture(scope="module")
def namespace(real: tuple[TestCluster, dict[str, Any]]) -> str:
    test_cluster, _ = real
    name = "real-node-test"
    test_cluster.api.create(
        "/api/v1/namespaces", {"metadata": {"name": name, "labels": {"test": name}}}
    )
    return name


def _pod_ready(test_cluster: TestCluster, namespace: str, name: str) -> dict[str, Any] | None:
    pod = test_cluster.api.get(f"/api/v1/namespaces/{namespace}/pods/{name}")
    conditions = ((pod or {}).get("status") or {}).get("conditions") or []
    if any(c["type"] == "Ready" and c["status"] == "True" for c in conditions):
        return pod
    return None


def test_the_real_node_is_ready_next_to_the_kwok_node(
    real: tuple[TestCluster, dict[str, Any]],
) -> None:
    test_cluster, _ = real
    by_name = {n["metadata"]["name"]: n for n in test_cluster.kubectl_json("get", "nodes")["items"]}
    node = by_name[realnode.DEFAULT_NODE_NAME]
    assert nodes._ready(node)
    # kubelet reports it, not kwok: the real kubelet version and the runtime.
    assert node["status"]["nodeInfo"]["kubeletVersion"] == binaries.KUBERNETES_VERSION
    assert node["status"]["nodeInfo"]["containerRuntimeVersion"].startswith("containerd://")
    assert {"type": "InternalIP", "address": realnode.NODE_IP} in node["status"]["addresses"]
    labels = node["metadata"]["labels"]
    assert labels["kubernetes.io/os"] == "linux"
    assert labels["kubernetes.io/arch"] == images.architecture()
    assert labels["type"] == "real"
    assert labels[EXTRA_LABEL[0]] == EXTRA_LABEL[1]
    assert not [key for key in labels if key.startswith(nodes.FEATURE_PREFIX)]
    assert "kwok.x-k8s.io/node" not in node["metadata"].get("annotations", {})
    assert not node["spec"].get("taints")

    fake = by_name["intel-node-0"]
    assert nodes._ready(fake)
    assert fake["metadata"]["annotations"]["kwok.x-k8s.io/node"] == "fake"
    assert test_cluster.cluster.node_name == realnode.DEFAULT_NODE_NAME
    assert test_cluster.cluster.node_ip == realnode.NODE_IP


@pytest.fixture(scope="module")
def testserver_image(real: tuple[TestCluster, dict[str, Any]], tmp_path_factory: Any) -> str:
    test_cluster, _ = real
    program = binaries.ensure_program("testserver")
    archive = images.write_archive(
        tmp_path_factory.mktemp("images") / "testserver.tar",
        TESTSERVER_IMAGE,
        {"/testserver": program},
        ["/testserver"],
    )
    loaded = subprocess.run(
        [
            sys.executable,
            "-m",
            "localcluster.cli",
            "--dir",
            str(test_cluster.cluster.directory),
            "load-image",
            str(archive),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert loaded.returncode == 0, loaded.stderr
    assert f"Loaded {TESTSERVER_IMAGE}" in loaded.stderr
    return TESTSERVER_IMAGE


def _server_manifests(namespace: str, image: str, tls: pki.KeyPair) -> list[dict[str, Any]]:
    labels = {"app": "testserver"}
    return [
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "testserver-tls", "namespace": namespace},
            "type": "kubernetes.io/tls",
            "data": {
                "tls.crt": base64.b64encode(tls.cert_pem).decode(),
                "tls.key": base64.b64encode(tls.key_pem).decode(),
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "testserver", "namespace": namespace, "labels": labels},
            "spec": {
                "nodeSelector": {"type": "real"},
                "automountServiceAccountToken": False,
                "containers": [
                    {
                        "name": "server",
                        "image": image,
                        "imagePullPolicy": "Never",
                        "args": ["serve", "-cert=/tls/tls.crt", "-key=/tls/tls.key"],
                        "ports": [{"containerPort": 8443}],
                        "readinessProbe": {
                            "httpGet": {"path": "/healthz", "port": 8443, "scheme": "HTTPS"},
                            "periodSeconds": 1,
                        },
                        "volumeMounts": [{"name": "tls", "mountPath": "/tls"}],
                    }
                ],
                "volumes": [{"name": "tls", "secret": {"secretName": "testserver-tls"}}],
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "testserver", "namespace": namespace},
            "spec": {"selector": labels, "ports": [{"port": 443, "targetPort": 8443}]},
        },
    ]


def test_a_pod_serves_a_webhook_through_its_service(
    real: tuple[TestCluster, dict[str, Any]], namespace: str, testserver_image: str
) -> None:
    test_cluster, _ = real
    ca = pki.new_ca("real-node-test-ca")
    tls = pki.serving_cert(ca, [f"testserver.{namespace}.svc"], [])
    for manifest in _server_manifests(namespace, testserver_image, tls):
        test_cluster.kubectl("apply", "-f", "-", input=json.dumps(manifest))

    pod = eventually(
        lambda: _pod_ready(test_cluster, namespace, "testserver"),
        timeout=60,
        what="the testserver pod to be Ready on the real node",
    )
    assert pod["spec"]["nodeName"] == realnode.DEFAULT_NODE_NAME
    assert not pod["spec"].get("hostNetwork")
    assert pod["status"]["podIP"].startswith("10.88.0.")

    # The apiserver's service proxy reaches the pod.
    hello = test_cluster.kubectl(
        "get", "--raw", f"/api/v1/namespaces/{namespace}/services/https:testserver:443/proxy/hello"
    )
    assert hello.stdout.strip() == "hello from testserver"

    name = f"deny-configmaps-{namespace}"
    configuration = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": name},
        "webhooks": [
            {
                "name": "deny.testserver.real-node.local",
                "admissionReviewVersions": ["v1"],
                "sideEffects": "None",
                "failurePolicy": "Fail",
                "clientConfig": {
                    "service": {
                        "namespace": namespace,
                        "name": "testserver",
                        "path": "/validate",
                        "port": 443,
                    },
                    "caBundle": base64.b64encode(ca.cert_pem).decode(),
                },
                "namespaceSelector": {"matchLabels": {"test": namespace}},
                "rules": [
                    {
                        "apiGroups": [""],
                        "apiVersions": ["v1"],
                        "operations": ["CREATE"],
                        "resources": ["configmaps"],
                    }
                ],
            }
        ],
    }
    path = "/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations"
    assert test_cluster.api.create(path, configuration)
    try:
        configmaps = f"/api/v1/namespaces/{namespace}/configmaps"

        def denied() -> bytes | None:
            status, body = test_cluster.api.request(
                "POST", configmaps, {"metadata": {"name": "deny-x"}}
            )
            return body if status == 403 else None

        body = eventually(denied, timeout=30, what="the webhook in the pod to deny deny-x")
        assert b"testserver refuses names starting deny-: deny-x" in body

        allowed = test_cluster.kubectl("create", "configmap", "allowed", "-n", namespace)
        assert "created" in allowed.stdout
        refused = test_cluster.kubectl(
            "create", "configmap", "deny-y", "-n", namespace, check=False
        )
        assert refused.returncode != 0
        assert 'admission webhook "deny.testserver.real-node.local" denied' in refused.stderr
    finally:
        test_cluster.api.request("DELETE", f"{path}/{name}")

    # kubectl logs: the apiserver reads them from kubelet on 10.99.0.1:10250.
    logs = test_cluster.kubectl("logs", "-n", namespace, "testserver").stdout
    assert "serving on :8443 (tls=true)" in logs
    assert "validate deny-x allowed=false" in logs
    assert "validate allowed allowed=true" in logs


def test_a_pod_reaches_the_apiserver_with_its_in_cluster_configuration(
    real: tuple[TestCluster, dict[str, Any]], namespace: str, testserver_image: str
) -> None:
    test_cluster, _ = real
    eventually(
        lambda: test_cluster.api.get(f"/api/v1/namespaces/{namespace}/serviceaccounts/default"),
        timeout=30,
        what="the default service account",
    )
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "whoami", "namespace": namespace},
        "spec": {
            "nodeSelector": {"type": "real"},
            "restartPolicy": "Never",
            "containers": [
                {
                    "name": "whoami",
                    "image": testserver_image,
                    "imagePullPolicy": "Never",
                    "args": ["whoami"],
                }
            ],
        },
    }
    test_cluster.kubectl("apply", "-f", "-", input=json.dumps(pod))

    def finished() -> str | None:
        current = test_cluster.api.get(f"/api/v1/namespaces/{namespace}/pods/whoami") or {}
        phase = (current.get("status") or {}).get("phase")
        return phase if phase in ("Succeeded", "Failed") else None

    phase = eventually(finished, timeout=60, what="the whoami pod to finish")
    logs = test_cluster.kubectl("logs", "-n", namespace, "whoami").stdout
    assert phase == "Succeeded", logs
    assert f"whoami: system:serviceaccount:{namespace}:default via 10.96.0.1:443" in logs


def test_down_leaves_the_host_as_it_was(real: tuple[TestCluster, dict[str, Any]]) -> None:
    test_cluster, before = real
    handle = test_cluster.cluster
    state = handle.state()
    assert state is not None
    assert state.node is not None
    mount_ns = state.node.mount_ns
    assert mount_ns.startswith("mnt:[")
    assert realnode.namespace_processes(mount_ns)
    assert realnode.cgroup_directories(state.node.cgroup_root)

    started = time.monotonic()
    handle.down()
    print(f"real-node cluster down in {time.monotonic() - started:.1f}s", file=sys.stderr)

    assert not handle.directory.exists()
    assert not [pid for pid in state.pids.values() if processes.alive(pid)]
    assert realnode.namespace_processes(mount_ns) == []
    assert realnode.cgroup_directories(state.node.cgroup_root) == []
    after = _host_snapshot()
    for key in before:
        assert after[key] == before[key], key


def test_a_real_node_that_fails_to_start_leaves_nothing_behind(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = _host_snapshot()
    found = binaries.ensure_binaries()
    broken = dataclasses.replace(found, kubelet=pathlib.Path("/bin/false"))
    monkeypatch.setattr(binaries, "ensure_binaries", lambda **_: broken)
    seen: dict[str, Any] = {}
    original_launch = cluster.Cluster._launch

    def recording_launch(
        self: cluster.Cluster, state: cluster.State, name: str, argv: list[str]
    ) -> None:
        original_launch(self, state, name, argv)
        seen["state"] = state

    monkeypatch.setattr(cluster.Cluster, "_launch", recording_launch)
    local = cluster.Cluster(tmp_path / "broken", real_node=True)

    with pytest.raises(errors.StartError) as raised:
        local.up([], timeout=60)

    assert str(raised.value).startswith("kubelet exited; see ")
    state: cluster.State = seen["state"]
    assert state.node is not None
    assert state.node.mount_ns.startswith("mnt:[")
    assert set(state.pids) == set(state.components())
    assert not [pid for pid in state.pids.values() if processes.alive(pid)]
    assert realnode.namespace_processes(state.node.mount_ns) == []
    assert realnode.cgroup_directories(state.node.cgroup_root) == []
    assert not (tmp_path / "broken").exists()
    after = _host_snapshot()
    for key in before:
        assert after[key] == before[key], key
