"""The local control plane is real: readiness, DaemonSet pods on kwok nodes, garbage
collection, admission webhooks that are really called, RBAC that really denies."""

from __future__ import annotations

import base64
import json
import pathlib
import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from clusters import GPU_LABEL, TestCluster
from localcluster import pki
from polling import eventually

pytestmark = pytest.mark.cluster


def test_apiserver_is_ready(cluster: TestCluster) -> None:
    status, body = cluster.api.request("GET", "/readyz?verbose")
    assert status == 200, body
    assert b"readyz check passed" in body


def test_fake_nodes_are_ready_with_their_labels(cluster: TestCluster) -> None:
    listing = cluster.kubectl_json("get", "nodes")
    by_name = {item["metadata"]["name"]: item for item in listing["items"]}
    assert set(by_name) >= {spec.name for spec in cluster.node_specs}
    for spec in cluster.node_specs:
        node = by_name[spec.name]
        ready = [c for c in node["status"]["conditions"] if c["type"] == "Ready"]
        assert ready
        assert ready[0]["status"] == "True"
        for key, value in spec.labels.items():
            assert node["metadata"]["labels"][key] == value
    assert GPU_LABEL not in by_name["plain-node"]["metadata"]["labels"]


def test_daemonset_gets_one_ready_pod_per_matching_node(
    cluster: TestCluster, namespace: str
) -> None:
    selector = {GPU_LABEL: "true"}
    expected_nodes = cluster.nodes_matching(selector)
    assert len(expected_nodes) == 3  # two full Intel nodes and the GPU-only node
    daemonset = {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": {"name": "gpu-probe"},
        "spec": {
            "selector": {"matchLabels": {"app": "gpu-probe"}},
            "template": {
                "metadata": {"labels": {"app": "gpu-probe"}},
                "spec": {
                    "nodeSelector": selector,
                    "automountServiceAccountToken": False,
                    "containers": [{"name": "probe", "image": "example.invalid/probe:1"}],
                },
            },
        },
    }
    assert cluster.api.create(f"/apis/apps/v1/namespaces/{namespace}/daemonsets", daemonset)

    def settled() -> dict[str, Any] | None:
        current = cluster.api.get(f"/apis/apps/v1/namespaces/{namespace}/daemonsets/gpu-probe")
        status = (current or {}).get("status", {})
        desired = status.get("desiredNumberScheduled")
        if desired == len(expected_nodes) and status.get("numberReady") == desired:
            return status
        return None

    status = eventually(settled, timeout=60, what="DaemonSet pods Ready on every GPU node")
    assert status["numberReady"] == status["desiredNumberScheduled"] == 3

    pods = cluster.kubectl_json("get", "pods", "-n", namespace, "-l", "app=gpu-probe")["items"]
    running = [p for p in pods if p["status"].get("phase") == "Running"]
    assert sorted(p["spec"]["nodeName"] for p in running) == expected_nodes


def test_deleting_an_owner_garbage_collects_its_dependent(
    cluster: TestCluster, namespace: str
) -> None:
    path = f"/api/v1/namespaces/{namespace}/configmaps"
    owner = cluster.api.create(path, {"metadata": {"name": "owner"}, "data": {}})
    assert owner is not None
    reference = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "name": "owner",
        "uid": owner["metadata"]["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }
    cluster.api.create(path, {"metadata": {"name": "dependent", "ownerReferences": [reference]}})
    status, _ = cluster.api.request("DELETE", f"{path}/owner")
    assert status == 200

    eventually(
        lambda: cluster.api.get(f"{path}/dependent") is None,
        timeout=60,
        what="the garbage collector to delete the dependent ConfigMap",
    )


class _DenyingWebhook(BaseHTTPRequestHandler):
    """Denies ConfigMaps whose name starts with ``deny-``; counts every call."""

    calls: list[str]

    def do_POST(self) -> None:
        review = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        request = review["request"]
        name = request["object"]["metadata"]["name"]
        type(self).calls.append(name)
        allowed = not name.startswith("deny-")
        response: dict[str, Any] = {"uid": request["uid"], "allowed": allowed}
        if not allowed:
            response["status"] = {
                "code": 403,
                "message": f"names starting deny- are refused: {name}",
            }
        body = json.dumps(
            {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": response}
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def https_webhook(tmp_path: pathlib.Path) -> Iterator[tuple[int, bytes, list[str]]]:
    ca = pki.new_ca("test-webhook-ca")
    cert, key = pki.serving_cert(ca, ["localhost"], ["127.0.0.1"]).write(tmp_path, "webhook")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    calls: list[str] = []
    handler = type("Handler", (_DenyingWebhook,), {"calls": calls})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1], ca.cert_pem, calls
    finally:
        server.shutdown()
        server.server_close()


def test_validating_webhook_is_called_and_can_deny(
    cluster: TestCluster, namespace: str, https_webhook: tuple[int, bytes, list[str]]
) -> None:
    port, ca_pem, calls = https_webhook
    name = f"deny-configmaps-{namespace}"
    configuration = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": name},
        "webhooks": [
            {
                "name": "deny.configmaps.test.local",
                "admissionReviewVersions": ["v1"],
                "sideEffects": "None",
                "failurePolicy": "Fail",
                "clientConfig": {
                    "url": f"https://127.0.0.1:{port}/validate",
                    "caBundle": base64.b64encode(ca_pem).decode(),
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
    assert cluster.api.create(path, configuration)
    try:
        configmaps = f"/api/v1/namespaces/{namespace}/configmaps"

        # The apiserver picks up a new configuration asynchronously: poll until it calls us.
        def denied() -> bytes | None:
            status, body = cluster.api.request("POST", configmaps, {"metadata": {"name": "deny-x"}})
            return body if status == 403 else None

        body = eventually(denied, timeout=30, what="the webhook to deny deny-x")
        assert b"names starting deny- are refused: deny-x" in body
        assert "deny-x" in calls

        allowed = cluster.kubectl("create", "configmap", "allowed", "-n", namespace)
        assert "created" in allowed.stdout
        assert "allowed" in calls

        refused = cluster.kubectl("create", "configmap", "deny-y", "-n", namespace, check=False)
        assert refused.returncode != 0
        assert 'admission webhook "deny.configmaps.test.local" denied the request' in refused.stderr
    finally:
        cluster.api.request("DELETE", f"{path}/{name}")


def test_rbac_refuses_a_service_account_without_bindings(
    cluster: TestCluster, namespace: str
) -> None:
    cluster.kubectl("create", "serviceaccount", "nobody", "-n", namespace)
    token = cluster.kubectl("create", "token", "nobody", "-n", namespace).stdout.strip()
    assert token
    server = cluster.api.server
    as_nobody = [
        f"--server={server}",
        f"--token={token}",
        "--kubeconfig=/dev/null",
        f"--certificate-authority={cluster.cluster.pki / 'ca.crt'}",
    ]
    completed = cluster.kubectl("get", "pods", "-n", namespace, *as_nobody, check=False)
    assert completed.returncode != 0
    assert "forbidden" in completed.stderr.lower()
    assert f"system:serviceaccount:{namespace}:nobody" in completed.stderr

    # The same request with the admin identity succeeds: it is RBAC, not a broken apiserver.
    assert cluster.kubectl("get", "pods", "-n", namespace).returncode == 0
