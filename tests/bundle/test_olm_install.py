"""The bundle installed as OLM would install it, without OLM (not available here), on the real
local control plane: the CRDs applied, the CSV's permissions turned into (Cluster)Roles bound to
its ServiceAccount, the bundle's other objects created, the Deployment accepted by a server-side
dry run, and then the operator itself run with the CSV's container arguments, as that
ServiceAccount (its token), with a certificate pair mounted where OLM mounts one and the webhook
configurations OLM would make from the CSV's webhook definitions (pointed at the process).

It must become ready with only the CSV's permissions, serve the mounted pair, admit and deny
through the CSV's webhook paths, and turn a resource from ``alm-examples`` into its DaemonSet.
"""

from __future__ import annotations

import base64
import datetime
import json
import pathlib
import ssl
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from bundle_paths import BUNDLE

import operators
from clusters import TestCluster
from deviceplugin_operator.controller import certificates
from deviceplugin_operator.manifests import olm
from localcluster import processes
from polling import eventually

pytestmark = pytest.mark.cluster


def csv() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((BUNDLE / olm.CSV_FILE).read_text())
    return loaded


def bundle_objects() -> list[dict[str, Any]]:
    objects = []
    for path in sorted((BUNDLE / olm.MANIFESTS).glob("*.yaml")):
        objects.extend(d for d in yaml.safe_load_all(path.read_text()) if d)
    return objects


@pytest.fixture(autouse=True)
def _no_operator_left() -> Iterator[None]:
    yield
    operators.kill_all()


def webhook_configurations(port: int, ca: bytes, suffix: str) -> list[dict[str, Any]]:
    """What OLM makes of the CSV's webhook definitions, with a URL to the process instead of
    OLM's Service (the local control plane has no Service routing)."""
    by_type: dict[str, list[dict[str, Any]]] = {}
    for definition in csv()["spec"]["webhookdefinitions"]:
        hook = {
            "admissionReviewVersions": definition["admissionReviewVersions"],
            "clientConfig": {
                "url": f"https://127.0.0.1:{port}{definition['webhookPath']}",
                "caBundle": base64.b64encode(ca).decode(),
            },
            "failurePolicy": definition["failurePolicy"],
            "name": definition["generateName"],
            "rules": definition["rules"],
            "sideEffects": definition["sideEffects"],
        }
        for optional in ("timeoutSeconds", "reinvocationPolicy", "objectSelector", "matchPolicy"):
            if optional in definition:
                hook[optional] = definition[optional]
        by_type.setdefault(definition["type"], []).append(hook)
    kinds = {
        "MutatingAdmissionWebhook": "MutatingWebhookConfiguration",
        "ValidatingAdmissionWebhook": "ValidatingWebhookConfiguration",
    }
    return [
        {
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": kinds[webhook_type],
            "metadata": {"name": f"olm-{suffix}-{webhook_type.lower()}"},
            "webhooks": hooks,
        }
        for webhook_type, hooks in sorted(by_type.items())
    ]


def test_the_csv_installs_and_runs_the_operator(
    cluster: TestCluster, namespace: str, tmp_path: pathlib.Path
) -> None:
    spec = csv()["spec"]
    strategy = spec["install"]["spec"]
    objects = bundle_objects()

    crds = tmp_path / "crds"
    crds.mkdir()
    for item in objects:
        if item["kind"] == "CustomResourceDefinition":
            (crds / f"{item['metadata']['name']}.yaml").write_text(yaml.safe_dump(item))
    cluster.install_crds(crds)

    account = olm.SERVICE_ACCOUNT
    cluster_role = f"{namespace}-olm-cluster-permissions"
    rbac = [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": account}},
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": cluster_role},
            "rules": strategy["clusterPermissions"][0]["rules"],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": cluster_role},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                        "name": cluster_role},
            "subjects": [{"kind": "ServiceAccount", "name": account, "namespace": namespace}],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": {"name": "olm-permissions"},
            "rules": strategy["permissions"][0]["rules"],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": "olm-permissions"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                        "name": "olm-permissions"},
            "subjects": [{"kind": "ServiceAccount", "name": account, "namespace": namespace}],
        },
    ]  # fmt: skip
    namespaced = [
        item
        for item in objects
        if item["kind"] in ("ServiceAccount", "Service", "PodDisruptionBudget", "NetworkPolicy")
    ]
    cluster_scoped = [item for item in objects if item["kind"] == "ClusterRole"]
    [deployment] = strategy["deployments"]
    manifest = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": deployment["name"], "labels": deployment["label"]},
        "spec": deployment["spec"],
    }
    suffix = namespace
    configurations: list[dict[str, Any]] = []
    sample_name = f"bundle-{namespace}"
    try:
        cluster.kubectl("apply", "-n", namespace, "-f", "-", input=_list(rbac + namespaced))
        cluster.kubectl("apply", "--dry-run=server", "-f", "-", input=_list(cluster_scoped))
        cluster.kubectl("apply", "-n", namespace, "--dry-run=server", "-f", "-",
                        input=_list([manifest]))  # fmt: skip

        # The operator as the pod runs it: the CSV's arguments and fieldRef variables, its
        # ServiceAccount's token, a pair where OLM mounts one.
        now = datetime.datetime.now(datetime.UTC)
        pair = certificates.issue(["127.0.0.1"], now)
        mounted = tmp_path / "serving-certs"
        mounted.mkdir()
        (mounted / "tls.crt").write_bytes(pair.cert)
        (mounted / "tls.key").write_bytes(pair.key)
        kubeconfig = operators.token_kubeconfig(cluster, account, namespace, tmp_path / "kc")
        container = deployment["spec"]["template"]["spec"]["containers"][0]
        operator = operators.start_operator(
            kubeconfig.path,
            namespace,
            tmp_path / "operator.log",
            f"--webhook-cert-dir={mounted}",
            before=container["args"],
            webhook_port=processes.free_port(),
            env={"POD_NAMESPACE": namespace, "DEVICEPLUGIN_NAMESPACE": namespace},
        )
        port = operator.webhook_port
        operator.wait_ready(timeout=90)
        served = ssl.get_server_certificate(("127.0.0.1", port)).encode()
        assert _der(served) == _der(pair.cert), "the operator does not serve the mounted pair"

        configurations = webhook_configurations(port, pair.ca_cert, suffix)
        cluster.kubectl("apply", "-f", "-", input=_list(configurations))

        examples = json.loads(csv()["metadata"]["annotations"]["alm-examples"])
        gpu = next(e for e in examples if e["kind"] == "GpuDevicePlugin")
        gpu["metadata"]["name"] = sample_name
        broken = json.loads(json.dumps(gpu))
        broken["spec"]["image"] = "intel/intel-gpu-plugin:not a tag"

        def denied() -> str | None:
            attempt = cluster.kubectl("create", "--dry-run=server", "-f", "-",
                                      input=json.dumps(broken), check=False)  # fmt: skip
            return attempt.stderr if "denied the request" in attempt.stderr else None

        message = eventually(denied, timeout=30, what="the validating webhook to deny")
        assert "vgpudeviceplugin.kb.io" in message, message

        # The Pod mutators (failurePolicy Ignore under OLM, so a silent miss would pass): an
        # SGX pod gets its enclave device; a pod asking for no device is admitted as it is.
        sgx_pod = _pod("sgx", {"sgx.intel.com/epc": "1Mi"})
        mutated = eventually(
            lambda: _created_dry_run(cluster, namespace, sgx_pod),
            timeout=30,
            what="the SGX pod mutated",
        )
        limits = mutated["spec"]["containers"][0]["resources"]["limits"]
        assert limits.get("sgx.intel.com/enclave") == "1", mutated
        plain = json.loads(
            cluster.kubectl("create", "--dry-run=server", "-n", namespace, "-o", "json",
                            "-f", "-", input=json.dumps(_pod("plain", {}))).stdout
        )  # fmt: skip
        assert "intel.com" not in json.dumps(plain), plain

        cluster.kubectl("create", "-f", "-", input=json.dumps(gpu))

        def daemonset() -> dict[str, Any] | None:
            found = cluster.kubectl_json("get", "daemonsets", "-n", namespace)["items"]
            owned = [
                d
                for d in found
                if any(
                    o.get("name") == sample_name for o in d["metadata"].get("ownerReferences", [])
                )
            ]
            return owned[0] if owned else None

        eventually(daemonset, timeout=60, what="the sample's DaemonSet in the namespace")

        def reported() -> bool:
            status = cluster.kubectl_json("get", "gpudeviceplugin", sample_name).get("status")
            return bool(status) and "desiredNumberScheduled" in status

        eventually(reported, timeout=60, what="the sample's status")
        forbidden = [m for m in operator.messages() if "forbidden" in m.lower()]
        assert not forbidden, forbidden
        assert not operator.tracebacks(), operator.tail()
    finally:
        operators.kill_all()
        for configuration in configurations:
            cluster.kubectl("delete", configuration["kind"], configuration["metadata"]["name"],
                            "--ignore-not-found", check=False)  # fmt: skip
        cluster.kubectl("delete", "gpudeviceplugin", sample_name, "--ignore-not-found",
                        "--wait=false", check=False)  # fmt: skip
        cluster.kubectl("delete", "clusterrolebinding,clusterrole", cluster_role,
                        "--ignore-not-found", check=False)  # fmt: skip


def _pod(name: str, limits: dict[str, str]) -> dict[str, Any]:
    container: dict[str, Any] = {"name": "app", "image": "registry.k8s.io/pause:3.10"}
    if limits:
        container["resources"] = {"limits": limits}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"containers": [container]}}  # fmt: skip


def _created_dry_run(
    cluster: TestCluster, namespace: str, pod: dict[str, Any]
) -> dict[str, Any] | None:
    created: dict[str, Any] = json.loads(
        cluster.kubectl("create", "--dry-run=server", "-n", namespace, "-o", "json",
                        "-f", "-", input=json.dumps(pod)).stdout
    )  # fmt: skip
    limits = created["spec"]["containers"][0].get("resources", {}).get("limits", {})
    return created if "sgx.intel.com/enclave" in limits else None


def _list(items: list[dict[str, Any]]) -> str:
    return json.dumps({"apiVersion": "v1", "kind": "List", "items": items})


def _der(pem: bytes) -> bytes:
    return ssl.PEM_cert_to_DER_cert(pem.decode())
