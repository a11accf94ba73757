"""This operator's image dropped into the reference's install: only the reference's RBAC
(``deployments/operator/rbac`` of its module, kustomized with its ``default`` namespace and
name prefix, bound to the namespace's ``default`` ServiceAccount), the arguments of its
``default`` Deployment and a cert-manager Secret mounted at the webhook certificate directory.

Run out-of-cluster as that ServiceAccount (its token in a kubeconfig), the operator must pick
the mounted certificate by itself (no ``--webhook-certs``), serve the webhooks with it,
reconcile a resource into a DaemonSet and write its status; the only requests the reference's
RBAC refuses are the ones it is built to do without, each named below.
"""

from __future__ import annotations

import datetime
import json
import pathlib
import re
import shutil
import ssl
import urllib.request
from typing import Any

import pytest
import yaml

import operators
from clusters import TestCluster
from compat.support import Reference, audit_entries, module_dir, now
from compat.test_flags import rendered_default
from deviceplugin_operator.controller import certificates
from localcluster import processes
from polling import eventually

pytestmark = [pytest.mark.cluster]

NAMESPACE = "inteldeviceplugins-system"
PREFIX = "intel-deviceplugins-"
ACCOUNT = "default"
USER = f"system:serviceaccount:{NAMESPACE}:{ACCOUNT}"
SAMPLE = "gpudeviceplugin-sample"
DAEMONSET = f"intel-gpu-plugin-{SAMPLE}"
TOLERATED_REFUSALS = {
    # Before anything starts, the operator checks that its namespaces exist; a refusal leaves
    # the question open (a pod's own namespace exists) and is not logged.
    ("get", "namespaces", NAMESPACE),
    # Events of cluster-scoped resources live in "default"; the reference grants Events only
    # in its own namespace (leader-election-role). Dropped, one warning in the log.
    ("create", "events", "default"),
    # Nodes feed only the devices in the statuses, which the reference's CRDs drop anyway;
    # its RBAC does not grant them. One warning in the log, the statuses go without devices.
    ("list", "nodes", None),
}


def secret_volume(directory: pathlib.Path, files: dict[str, bytes]) -> pathlib.Path:
    """``files`` laid out as the kubelet mounts a Secret (``name -> ..data/name``)."""
    stamped = directory / "..2026_01_01_00_00_00.1"
    stamped.mkdir(parents=True)
    for name, data in files.items():
        (stamped / name).write_bytes(data)
    (directory / "..data").symlink_to(stamped.name)
    for name in files:
        (directory / name).symlink_to(f"..data/{name}")
    return directory


def install_reference_rbac(
    cluster: TestCluster, reference: Reference, tmp_path: pathlib.Path
) -> list[dict[str, Any]]:
    """The reference's RBAC with its ``default`` overlay's namespace and prefix, applied."""
    rbac = module_dir(reference.version) / "deployments" / "operator" / "rbac"
    tree = tmp_path / "reference-rbac"
    shutil.copytree(rbac, tree / "rbac")
    (tree / "rbac").chmod(0o755)
    (tree / "kustomization.yaml").write_text(
        yaml.safe_dump({"namespace": NAMESPACE, "namePrefix": PREFIX, "resources": ["rbac"]})
    )
    rendered = cluster.kubectl("kustomize", str(tree)).stdout
    objects = [doc for doc in yaml.safe_load_all(rendered) if doc]
    for obj in objects:
        for subject in obj.get("subjects", []):
            assert (subject["kind"], subject["name"], subject["namespace"]) == (
                "ServiceAccount",
                ACCOUNT,
                NAMESPACE,
            ), obj["metadata"]["name"]
    cluster.kubectl("apply", "-f", "-", input=rendered)
    return objects


def served_certificate(port: int) -> bytes:
    pem = ssl.get_server_certificate(("127.0.0.1", port))
    return ssl.PEM_cert_to_DER_cert(pem)


def review(port: int, ca: pathlib.Path, obj: dict[str, Any]) -> dict[str, Any]:
    """A validation AdmissionReview of ``obj`` sent the way the API server sends it, trusting
    only the mounted CA and checking the host name."""
    body = {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "compat-1",
            "kind": {"group": "deviceplugin.intel.com", "version": "v1", "kind": obj["kind"]},
            "resource": {
                "group": "deviceplugin.intel.com",
                "version": "v1",
                "resource": "gpudeviceplugins",
            },
            "name": obj["metadata"]["name"],
            "operation": "CREATE",
            "userInfo": {"username": "admin"},
            "object": obj,
        },
    }
    request = urllib.request.Request(
        f"https://127.0.0.1:{port}/validate-deviceplugin-intel-com-v1-gpudeviceplugin",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    context = ssl.create_default_context(cafile=str(ca))
    with urllib.request.urlopen(request, context=context, timeout=10) as reply:
        result: dict[str, Any] = json.loads(reply.read())["response"]
    return result


def test_the_reference_install_runs_this_operator(
    compat_cluster: TestCluster, reference: Reference, tmp_path: pathlib.Path
) -> None:
    cluster = compat_cluster
    cluster.kubectl("create", "namespace", NAMESPACE)
    objects = install_reference_rbac(cluster, reference, tmp_path)
    assert {obj["metadata"]["name"] for obj in objects} >= {
        f"{PREFIX}manager-role",
        f"{PREFIX}leader-election-role",
        f"{PREFIX}metrics-auth-role",
    }
    eventually(
        lambda: (
            cluster.kubectl(
                "get", "serviceaccount", ACCOUNT, "-n", NAMESPACE, check=False
            ).returncode
            == 0
        ),
        what="the namespace's default ServiceAccount",
    )
    kubeconfig = operators.token_kubeconfig(cluster, ACCOUNT, NAMESPACE, tmp_path / "kubeconfig")
    assert kubeconfig.user == USER

    # What cert-manager's Certificate of the reference's default install puts in its Secret.
    service = f"{PREFIX}webhook-service"
    issued = certificates.issue(
        ["127.0.0.1", f"{service}.{NAMESPACE}.svc", f"{service}.{NAMESPACE}.svc.cluster.local"],
        datetime.datetime.now(datetime.UTC),
    )
    certs = secret_volume(
        tmp_path / "serving-certs",
        {"ca.crt": issued.ca_cert, "tls.crt": issued.cert, "tls.key": issued.key},
    )
    ca = tmp_path / "ca.crt"
    ca.write_bytes(issued.ca_cert)

    # The reference's Deployment: its arguments and environment, the image swapped. Out of a
    # pod: the token kubeconfig, loopback ports (appended: the last of a flag wins, as in Go)
    # and the certificate directory where the Secret is mounted in the pod.
    container = rendered_default(reference)
    env = {variable["name"]: NAMESPACE for variable in container["env"]}
    assert env == {"DEVICEPLUGIN_NAMESPACE": NAMESPACE}
    webhook_port = processes.free_port()
    started = now()
    operator = operators.start_operator(
        kubeconfig.path,
        None,
        tmp_path / "operator.log",
        f"--webhook-cert-dir={certs}",
        "--webhook-host=127.0.0.1",
        before=container["args"],
        webhook_port=webhook_port,
        env=env,
        verbosity=None,
    )
    assert "--webhook-certs" not in " ".join(operator.argv)
    try:
        operator.wait_ready(timeout=60)

        # The mounted certificate, chosen by itself and served.
        (chosen,) = [r for r in operator.records() if r["msg"] == "Webhook certificate: mounted"]
        assert chosen["why"].startswith(f"tls.crt and tls.key found in {certs}")
        der = ssl.PEM_cert_to_DER_cert(issued.cert.decode())
        assert served_certificate(webhook_port) == der
        sample_path = (
            module_dir(reference.version)
            / "deployments/operator/samples/deviceplugin_v1_gpudeviceplugin.yaml"
        )
        sample = yaml.safe_load(sample_path.read_text())
        assert review(webhook_port, ca, sample)["allowed"] is True
        bad = {**sample, "spec": {**sample["spec"], "image": "intel/intel-gpu-plugin:0.1.0"}}
        assert review(webhook_port, ca, bad)["allowed"] is False

        # A resource becomes a DaemonSet, and its status follows.
        cluster.kubectl("apply", "-f", str(sample_path))

        def status() -> dict[str, Any] | None:
            found = cluster.kubectl_json("get", "gpudeviceplugin", SAMPLE).get("status") or {}
            desired = found.get("desiredNumberScheduled")
            return found if desired and found.get("numberReady") == desired else None

        written = eventually(status, timeout=60, interval=0.5, what="the sample's status")
        assert written["controlledDaemonSet"]["name"] == DAEMONSET
        daemonset = cluster.kubectl_json("get", "daemonset", DAEMONSET, "-n", NAMESPACE)
        assert daemonset["spec"]["template"]["spec"]["containers"][0]["image"] == (
            "intel/intel-gpu-plugin:0.36.0"
        )
        lease = cluster.kubectl_json("get", "lease", "d1c7b6d5.intel.com", "-n", NAMESPACE)
        assert lease["spec"]["holderIdentity"] == operator.identity()
        assert operator.alive
    finally:
        operator.terminate()

    # What the reference's RBAC refused, from the audit log: only what the operator does
    # without. In its log: one warning about Events, no other refusal.
    refused = {
        (
            entry["verb"],
            entry["objectRef"].get("resource"),
            entry["objectRef"].get("namespace"),
        )
        for entry in audit_entries(cluster, [USER], started)
        if (entry.get("responseStatus") or {}).get("code") == 403
    }
    assert refused <= TOLERATED_REFUSALS, refused - TOLERATED_REFUSALS
    # The text of each record without its timestamp and numbers, 403 as a word of its own: a
    # time such as "21:24:03,403" or a field such as "port": 35403 is no refusal.
    said = [
        json.dumps({k: v for k, v in record.items() if k != "ts" and isinstance(v, str)})
        for record in operator.records()
    ]
    mentions = [
        line for line in said if re.search(r"\b403\b", line) or "orbidden" in line or "RBAC" in line
    ]
    events_warning = [line for line in mentions if "Events cannot be recorded" in line]
    assert len(events_warning) == (1 if ("create", "events", "default") in refused else 0)
    nodes_warning = [line for line in mentions if "nodes advertise are not known" in line]
    assert len(nodes_warning) == (1 if ("list", "nodes", None) in refused else 0)
    assert sorted(mentions) == sorted(events_warning + nodes_warning), mentions
    assert not operator.problems(), operator.problems()
