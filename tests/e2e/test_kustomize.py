"""``kubectl apply -k`` of the install trees with only the image swapped, on the real node.

``default`` gets the full set of checks; each ``device/<dev>`` a lighter one (its operator
pods, its sample, a resource of another kind left alone, nothing left after ``delete -k``);
``certmanager`` and ``overlays/ocp`` run with the certificate their issuer would make.
"""

from __future__ import annotations

import json
import pathlib
import shutil
import ssl
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from deviceplugin_operator import devices
from e2e import support
from e2e.support import NAMESPACE, E2eCluster

pytestmark = pytest.mark.timeout(600)


def install(e2e: E2eCluster, tree: str, directory: pathlib.Path) -> pathlib.Path:
    path = support.overlay(tree, directory)
    e2e.out("apply", "-k", str(path))
    return path


def uninstall(e2e: E2eCluster, path: pathlib.Path, *also: pathlib.Path) -> None:
    """``kubectl delete -k`` (and ``delete -f`` of ``also``), then nothing may be left."""
    completed = e2e.run("delete", "-k", str(path), "--wait=false")
    assert completed.returncode == 0, completed.stderr
    for manifests in also:
        e2e.out("delete", "-f", str(manifests), "--wait=false")
    e2e.wait_empty(timeout=120)


def sgx_pod(name: str) -> dict[str, Any]:
    epc = {"sgx.intel.com/epc": "1Mi"}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "annotations": {"sgx.intel.com/quote-provider": "aesmd"}},
        "spec": {
            "containers": [
                {
                    "name": c,
                    "image": "example.invalid/x:1",
                    "resources": {"limits": dict(epc), "requests": dict(epc)},
                }
                for c in ("test", "aesmd")
            ]
        },
    }


# default: every check ------------------------------------------------------------------------


@pytest.fixture(scope="class")
def installed(e2e: E2eCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[pathlib.Path]:
    """deployments/operator/default applied once for the class; whatever its tests did, the
    cluster is empty again afterwards."""
    assert e2e.leftovers() == [], "a previous case left objects behind"
    path = install(e2e, "default", tmp_path_factory.mktemp("overlay"))
    try:
        yield path
    finally:
        print(f"operator logs: {e2e.save_logs('default')}")
        e2e.clean()


class TestDefault:
    """deployments/operator/default, from an empty cluster back to an empty one."""

    def test_operator_pods_run_the_built_image_on_the_real_node(
        self, e2e: E2eCluster, installed: pathlib.Path
    ) -> None:
        e2e.wait_operator()
        e2e.assert_built_image()
        holder = e2e.lease_holder()
        assert holder.partition("_")[0] in {p["metadata"]["name"] for p in e2e.operator_pods()}

    def test_bad_image_is_denied_through_the_webhook_service(
        self, e2e: E2eCluster, installed: pathlib.Path
    ) -> None:
        e2e.wait_operator()
        for configuration in support.CONFIGURATIONS.items():
            found = e2e.get(*configuration)
            for webhook in found["webhooks"]:
                assert webhook["clientConfig"]["service"]["name"] == support.SERVICE
                assert webhook["clientConfig"].get("caBundle"), webhook["name"]
        support.eventually(
            lambda: (
                e2e.apply_json(support.resource("NpuDevicePlugin", "e2e-probe", {})).returncode == 0
            ),
            timeout=60,
            what="the webhooks to admit a valid resource",
        )
        e2e.out("delete", "npudeviceplugin", "e2e-probe")
        support.assert_bad_image_denied(e2e, "gpu")

    def test_sgx_pods_are_mutated(self, e2e: E2eCluster, installed: pathlib.Path) -> None:
        namespace = f"e2e-sgx-{uuid.uuid4().hex[:6]}"
        e2e.out("create", "namespace", namespace)
        try:
            support.eventually(
                lambda: (
                    e2e.run(
                        "create", "-n", namespace, "-f", "-", input=json.dumps(sgx_pod("sgx"))
                    ).returncode
                    == 0
                ),
                timeout=60,
                what="the SGX pod to be admitted",
            )
            stored = e2e.get("pod", "sgx", "-n", namespace)
            test, aesmd = stored["spec"]["containers"]
            assert test["resources"]["limits"]["sgx.intel.com/enclave"] == "1"
            assert aesmd["resources"]["limits"]["sgx.intel.com/provision"] == "1"
            assert stored["metadata"]["annotations"]["sgx.intel.com/epc"] == "2Mi"
        finally:
            e2e.run("delete", "namespace", namespace, "--wait=true", timeout=120)

    def test_samples_converge_on_the_fake_nodes(
        self, e2e: E2eCluster, installed: pathlib.Path
    ) -> None:
        e2e.wait_operator()
        e2e.apply_until_admitted("-k", str(support.SAMPLES))
        e2e.wait_samples(support.all_samples())

    def test_leader_failover_keeps_reconciling(
        self, e2e: E2eCluster, installed: pathlib.Path
    ) -> None:
        e2e.wait_operator()
        e2e.wait_samples([support.sample("gpu")])
        leader = e2e.lease_holder().partition("_")[0]
        (follower,) = [
            p["metadata"]["name"] for p in e2e.operator_pods() if p["metadata"]["name"] != leader
        ]
        e2e.out("delete", "pod", leader, "-n", NAMESPACE, "--wait=false")
        support.eventually(
            lambda: e2e.lease_holder().partition("_")[0] == follower,
            timeout=60,
            what=f"the follower {follower} to take the Lease from {leader}",
        )
        # The new leader reconciles: a spec change reaches the DaemonSet.
        e2e.out(
            "patch",
            "gpudeviceplugin",
            "gpudeviceplugin-sample",
            "--type=merge",
            "-p",
            '{"spec": {"sharedDevNum": 7}}',
        )

        def rendered() -> bool:
            daemonset = (
                e2e.get(
                    "daemonset", support.daemonset("gpu", "gpudeviceplugin-sample"), "-n", NAMESPACE
                )
                or {}
            )
            containers = daemonset.get("spec", {}).get("template", {}).get("spec", {})
            args = (containers.get("containers") or [{}])[0].get("args") or []
            return "-shared-dev-num" in args and args[args.index("-shared-dev-num") + 1] == "7"

        support.eventually(rendered, timeout=60, what="the DaemonSet to follow sharedDevNum 7")
        # The Deployment replaces the deleted pod; both replicas up again, one leads.
        e2e.wait_operator()
        e2e.wait_samples([support.sample("gpu")])

    def test_delete_leaves_nothing(self, e2e: E2eCluster, installed: pathlib.Path) -> None:
        # The samples are still there: the CRDs' deletion takes them along, the namespace's
        # deletion the DaemonSets.
        uninstall(e2e, installed)


# device/<dev>: lighter ------------------------------------------------------------------------


@pytest.mark.parametrize("device", sorted(devices.KINDS))
def test_device_overlay(empty: E2eCluster, tmp_path: pathlib.Path, device: str) -> None:
    e2e = empty
    path = install(e2e, f"device/{device}", tmp_path)
    e2e.wait_operator()
    e2e.assert_built_image()
    args = e2e.operator_args()
    assert f"--devices={device}" in args

    own = support.sample(device)
    e2e.apply_until_admitted("-f", str(support.sample_file(device)))
    support.assert_bad_image_denied(e2e, device)

    # Another kind: its webhooks are not installed, so it is admitted as it is, and nothing
    # reconciles it.
    other = next(name for name in sorted(devices.KINDS) if name != device)
    e2e.out("apply", "-f", str(support.sample_file(other)))
    e2e.wait_samples([own])
    plural, name = support.sample(other)
    stored = e2e.get(plural, name)
    assert not stored.get("status"), stored.get("status")
    assert e2e.get("daemonset", support.daemonset(other, name), "-n", NAMESPACE) is None
    assert e2e.get("daemonset", support.daemonset(device, own[1]), "-n", NAMESPACE) is not None

    # The documented uninstall: resources first, then the tree.
    e2e.out("delete", "-f", str(support.sample_file(device)), "-f", str(support.sample_file(other)))
    uninstall(e2e, path)


# certmanager and overlays/ocp: the certificate comes from outside -----------------------------

CERT_MANAGER = "github.com/cert-manager/cert-manager"
CERT_MANAGER_VERSION = "v1.21.2"
INJECT_FROM = "cert-manager.io/inject-ca-from"
INJECT_OPENSHIFT = "service.beta.openshift.io/inject-cabundle"
SERVING_CERT = support.PREFIX + "serving-cert"


def cert_manager_crds() -> pathlib.Path:
    """cert-manager's own CRDs, from its Go module at a released version (module proxy)."""
    go = shutil.which("go")
    assert go is not None, "the certmanager case needs the go command for cert-manager's CRDs"
    completed = subprocess.run(
        [go, "mod", "download", "-json", f"{CERT_MANAGER}@{CERT_MANAGER_VERSION}"],
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
        cwd=tempfile.gettempdir(),
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    directory = pathlib.Path(json.loads(completed.stdout)["Dir"]) / "deploy" / "crds"
    assert sorted(p.name for p in directory.glob("cert-manager.io_*.yaml")), directory
    return directory


def served_certificates(e2e: E2eCluster) -> dict[str, bytes]:
    """The certificate each operator pod serves on its webhook port, by pod name, read by
    connecting to the pod's IP from inside the cluster's network namespace."""
    addresses = {p["metadata"]["name"]: p["status"]["podIP"] for p in e2e.operator_pods()}

    def fetch() -> dict[str, bytes]:
        return {
            name: ssl.get_server_certificate((address, 9443), timeout=5).encode()
            for name, address in addresses.items()
        }

    return e2e.in_cluster_network(fetch)


def same_certificate(first: bytes, second: bytes) -> bool:
    from cryptography import x509

    return x509.load_pem_x509_certificate(first) == x509.load_pem_x509_certificate(second)


def test_certmanager(empty: E2eCluster, tmp_path: pathlib.Path) -> None:
    """cert-manager's controller is not here: its CRDs are, and the test writes what its
    selfSigned Issuer and its cainjector would (the Secret, then the CA bundle)."""
    e2e = empty
    crds = cert_manager_crds()
    e2e.install_crds(crds)
    path = install(e2e, "certmanager", tmp_path)
    assert e2e.get("certificate", SERVING_CERT, "-n", NAMESPACE) is not None
    first = support.self_signed_serving_cert(support.service_names())
    e2e.out("apply", "-f", "-", input=json.dumps(support.tls_secret(first, with_ca=True)))
    assert support.inject_ca_bundle(e2e, first.ca_pem, INJECT_FROM) == 2
    e2e.wait_operator()
    e2e.assert_built_image()
    args = e2e.operator_args()
    assert "--webhook-certs=mounted" in args
    assert all(same_certificate(c, first.cert_pem) for c in served_certificates(e2e).values())
    e2e.apply_until_admitted("-f", str(support.sample_file("gpu")))
    support.assert_bad_image_denied(e2e, "gpu")
    e2e.wait_samples([support.sample("gpu")])

    # Rotation (rotationPolicy: Always): a new key and certificate in the Secret, the new CA
    # injected in place of the old one. The pods keep running and serve the new certificate.
    before = {
        p["metadata"]["name"]: (p["metadata"]["uid"], p["status"]["containerStatuses"][0])
        for p in e2e.operator_pods()
    }
    second = support.self_signed_serving_cert(support.service_names())
    e2e.out("apply", "-f", "-", input=json.dumps(support.tls_secret(second, with_ca=True)))
    assert support.inject_ca_bundle(e2e, second.ca_pem, INJECT_FROM) == 2
    # The kubelet refreshes a Secret volume on its next sync of the pod (up to a minute and a
    # half); a pod update (an annotation) makes that sync happen now. Nothing restarts.
    for name in before:
        e2e.out(
            "annotate",
            "pod",
            name,
            "-n",
            NAMESPACE,
            "--overwrite",
            f"e2e/rotation={uuid.uuid4().hex}",
        )
    support.eventually(
        lambda: all(
            same_certificate(c, second.cert_pem) for c in served_certificates(e2e).values()
        ),
        timeout=120,
        what="every operator pod to serve the rotated certificate",
    )
    # The apiserver trusts only the new CA now, and admission through the Service works.
    e2e.apply_until_admitted(
        "-f", "-", input=json.dumps(support.resource("NpuDevicePlugin", "e2e-after-rotation", {}))
    )
    support.assert_bad_image_denied(e2e, "gpu")
    after = {
        p["metadata"]["name"]: (p["metadata"]["uid"], p["status"]["containerStatuses"][0])
        for p in e2e.operator_pods()
    }
    assert sorted(after) == sorted(before)
    for name, (uid, status) in after.items():
        assert uid == before[name][0]
        assert status["restartCount"] == before[name][1]["restartCount"], status

    e2e.out("delete", "-f", str(support.sample_file("gpu")))
    e2e.out("delete", "npudeviceplugin", "e2e-after-rotation")
    uninstall(e2e, path, crds)


def test_openshift_overlay(empty: E2eCluster, tmp_path: pathlib.Path) -> None:
    """overlays/ocp with the OpenShift service CA emulated: the Secret it makes for the
    annotated webhook Service (tls.crt/tls.key, no ca.crt) and the CA it injects."""
    e2e = empty
    path = install(e2e, "overlays/ocp", tmp_path)
    service = e2e.get("service", support.SERVICE, "-n", NAMESPACE)
    annotations = service["metadata"]["annotations"]
    assert annotations["service.beta.openshift.io/serving-cert-secret-name"] == support.SECRET
    issued = support.ca_signed_serving_cert(support.service_names())
    e2e.out("apply", "-f", "-", input=json.dumps(support.tls_secret(issued, with_ca=False)))
    assert support.inject_ca_bundle(e2e, issued.ca_pem, INJECT_OPENSHIFT) == 2
    e2e.wait_operator()
    e2e.assert_built_image()
    container = e2e.operator_pods()[0]["spec"]["containers"][0]
    assert "runAsUser" not in container["securityContext"]
    assert all(same_certificate(c, issued.cert_pem) for c in served_certificates(e2e).values())
    e2e.apply_until_admitted("-f", str(support.sample_file("gpu")))
    support.assert_bad_image_denied(e2e, "gpu")
    e2e.wait_samples([support.sample("gpu")])
    e2e.out("delete", "-f", str(support.sample_file("gpu")))
    uninstall(e2e, path)
