"""Helpers of the end-to-end suite: the cluster handle, installs, waits and what is left over.

The operator runs as it ships (image built from the Dockerfile, 2 pods on the real kubelet node
of a local control plane), installed with ``kubectl apply -k`` of an overlay that swaps only
the image (``tools/incluster.py``) or with Helm.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import pathlib
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, TypeVar

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from clusters import TestCluster
from deviceplugin_operator import devices
from localcluster import realnode

ROOT = pathlib.Path(__file__).resolve().parents[2]
TOOLS = ROOT / "tools"
if str(TOOLS) not in sys.path:
    sys.path.insert(0, str(TOOLS))

import demo  # noqa: E402
import incluster  # noqa: E402

OPERATOR = ROOT / "deployments" / "operator"
SAMPLES = OPERATOR / "samples"
NAMESPACE = incluster.NAMESPACE
PREFIX = incluster.PREFIX
SERVICE = PREFIX + "webhook-service"
SECRET = PREFIX + "webhook-server-cert"
CONFIGURATIONS = {
    "mutatingwebhookconfiguration": PREFIX + "mutating-webhook-configuration",
    "validatingwebhookconfiguration": PREFIX + "validating-webhook-configuration",
}
KIND_BY_DEVICE = dict(devices.KINDS)

# What an install could leave behind, by kind; compared with the cluster before the case.
# Events are left out on purpose: those of cluster-scoped resources are written to "default"
# and expire with the apiserver's --event-ttl (1 h), as with any controller.
TRACKED = (
    "namespaces",
    "customresourcedefinitions",
    "mutatingwebhookconfigurations",
    "validatingwebhookconfigurations",
    "clusterroles",
    "clusterrolebindings",
    "roles",
    "rolebindings",
    "serviceaccounts",
    "secrets",
    "configmaps",
    "services",
    "endpointslices",
    "deployments",
    "replicasets",
    "daemonsets",
    "pods",
    "leases",
    "poddisruptionbudgets",
)

T = TypeVar("T")
Key = tuple[str, str, str]
"""(kind, namespace or "", name)."""


@dataclasses.dataclass
class E2eCluster(TestCluster):
    """The session's control plane with one real node, and the operator image in it."""

    real_node: str = ""
    image_id: str = ""
    baseline: frozenset[Key] = frozenset()
    log_dir: pathlib.Path = pathlib.Path()
    """Where each case's operator logs and events are written (``save_logs``)."""
    requeued_crds: list[str] = dataclasses.field(default_factory=list)
    """CRDs whose deletion the apiserver's finalizer dropped (``requeue_stuck_crds``)."""

    # kubectl ------------------------------------------------------------------------------
    def run(self, *args: str, input: str | None = None, timeout: float = 120) -> Any:
        """kubectl, never raising: the CompletedProcess."""
        return subprocess.run(
            ["kubectl", f"--kubeconfig={self.kubeconfig}", *args],
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def out(self, *args: str, check: bool = True, input: str | None = None) -> str:
        """kubectl's stdout ("" when it failed and ``check`` is off); the ``incluster.Kubectl``."""
        completed = self.run(*args, input=input)
        if completed.returncode != 0:
            if check:
                raise AssertionError(f"kubectl {' '.join(args)} failed: {completed.stderr}")
            return ""
        return str(completed.stdout)

    def get(self, *args: str) -> Any:
        """``kubectl get ... -o json`` decoded, or None when it is not there."""
        found = self.out("get", *args, "-o", "json", check=False)
        return json.loads(found) if found else None

    def apply_json(self, body: Mapping[str, Any], *extra: str) -> Any:
        return self.run("apply", *extra, "-f", "-", input=json.dumps(body))

    # What exists --------------------------------------------------------------------------
    def snapshot(self) -> frozenset[Key]:
        listing = json.loads(self.out("get", ",".join(TRACKED), "-A", "-o", "json"))
        return frozenset(
            (
                item["kind"],
                item["metadata"].get("namespace", ""),
                item["metadata"]["name"],
            )
            for item in listing["items"]
            # The nodes' heartbeats, not anything an install makes.
            if item["metadata"].get("namespace") != "kube-node-lease"
        )

    def leftovers(self) -> list[Key]:
        """Objects of the tracked kinds that were not there when the session began."""
        return sorted(self.snapshot() - self.baseline)

    def wait_empty(self, timeout: float = 90) -> None:
        """Until nothing is left over (namespace deletion and garbage collection take a while);
        fails naming what is still there."""
        deadline = time.monotonic() + timeout
        while left := self.leftovers():
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"left behind after {timeout:.0f}s: {left}" + self.terminating()
                )
            self.requeue_stuck_crds()
            time.sleep(1)

    def requeue_stuck_crds(self) -> None:
        """Work around kube-apiserver's CRD finalizer losing a deletion for minutes.

        Deleting a CRD rebuilds its storage; the finalizer's first list of the instances then
        gets ``storage is (re)initializing`` (the watch cache of the rebuilt storage is not
        ready yet), it records ``InstanceDeletionFailed`` and retries at once from its
        informer's older copy, whose status update conflicts and is dropped as "we'll get
        called again" - but the update event that follows only changes the Terminating
        condition, which its event handler ignores. The CRD then waits for the informer's
        resync (minutes; seen in other projects' e2e suites too:
        operator-framework/operator-controller#1437). An annotation is a change the handler
        does not ignore, so the finalizer runs again at once."""
        for crd in (self.get("customresourcedefinitions") or {"items": []})["items"]:
            meta = crd["metadata"]
            if not meta.get("deletionTimestamp"):
                continue
            for condition in (crd.get("status") or {}).get("conditions") or ():
                if (
                    condition["type"] == "Terminating"
                    and condition.get("reason") == "InstanceDeletionFailed"
                    and "storage is (re)initializing" in condition.get("message", "")
                ):
                    self.run(
                        "annotate",
                        "crd",
                        meta["name"],
                        "--overwrite",
                        f"e2e.deviceplugin.intel.com/requeue={time.monotonic_ns()}",
                    )
                    self.requeued_crds.append(meta["name"])

    def terminating(self) -> str:
        """What is stuck in deletion, with its finalizers and conditions (for failures)."""
        lines = []
        for kind in ("customresourcedefinitions", "namespaces"):
            for item in (self.get(kind) or {"items": []})["items"]:
                meta = item["metadata"]
                if meta.get("deletionTimestamp"):
                    conditions = [
                        f"{c['type']}={c['status']} {c.get('reason', '')}: {c.get('message', '')}"
                        for c in (item.get("status") or {}).get("conditions") or ()
                    ]
                    lines.append(
                        f"{kind}/{meta['name']} deleted at {meta['deletionTimestamp']}, "
                        f"finalizers {meta.get('finalizers')}, conditions {conditions}"
                    )
        return "\n" + "\n".join(lines)

    def save_logs(self, case: str) -> pathlib.Path:
        """The operator pods' logs (every namespace, previous containers too) and the events
        of the cluster, into one file per case; its path."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        target = self.log_dir / (case.replace("/", "_").replace("[", "-").strip("]") + ".log")
        pods = (self.get("pods", "-A", "-l", incluster.POD_SELECTOR) or {"items": []})["items"]
        with target.open("w") as sink:
            for pod in pods:
                meta = pod["metadata"]
                for previous in ("--previous=false", "--previous=true"):
                    logs = self.run(
                        "logs", "-n", meta["namespace"], meta["name"], previous, "--timestamps"
                    )
                    sink.write(f"===== {meta['namespace']}/{meta['name']} {previous}\n")
                    sink.write(logs.stdout or logs.stderr)
            sink.write("===== events\n")
            sink.write(self.run("get", "events", "-A", "--sort-by=.lastTimestamp").stdout)
        return target

    def clean(self) -> None:
        """Delete whatever a failed case left behind, so the next one starts from empty."""
        left = self.leftovers()
        if not left:
            return
        self.run("delete", "mutatingwebhookconfiguration,validatingwebhookconfiguration", "--all")
        kinds = {kind for kind, _, _ in left}
        for kind, namespace, name in left:
            if kind in ("Namespace", "CustomResourceDefinition") or (
                namespace and "Namespace" in kinds and (kind, "", namespace) in set(left)
            ):
                continue
            self.run(
                "delete", kind, name, *(["-n", namespace] if namespace else []), "--wait=false"
            )
        for kind, _, name in left:
            if kind == "CustomResourceDefinition":
                self.run("delete", "crd", name, "--wait=false")
        for kind, _, name in left:
            if kind == "Namespace":
                self.run("delete", "namespace", name, "--wait=false")
        self.wait_empty(timeout=120)

    # The operator -------------------------------------------------------------------------
    def operator_pending(self, **options: Any) -> list[str]:
        return incluster.operator_pending(self.out, self.real_node, **options)

    def wait_operator(self, timeout: float = 150, **options: Any) -> None:
        wait(lambda: self.operator_pending(**options), timeout=timeout, what="the operator")

    def operator_pods(self, namespace: str = NAMESPACE) -> list[dict[str, Any]]:
        return incluster.operator_pods(self.out, namespace)

    def assert_built_image(self, namespace: str = NAMESPACE) -> None:
        """Every operator pod runs the image built from this tree (by id, not only by name)."""
        pods = self.operator_pods(namespace)
        assert pods
        for pod in pods:
            for status in pod["status"]["containerStatuses"]:
                assert status["image"].endswith(incluster.IMAGE.split("/", 1)[1]), status
                assert status["imageID"].endswith(self.image_id), (status, self.image_id)

    def in_cluster_network(self, function: Callable[[], T]) -> T:
        """Call ``function`` in a thread inside the cluster's network namespace, where pod IPs
        are reachable."""
        owner = self.cluster.owner_pid
        assert owner is not None, "the cluster has no real node"
        return realnode.in_network_namespace(owner, function)

    def lease_holder(self, namespace: str = NAMESPACE) -> str:
        return incluster.lease_holder(self.out, namespace)

    def operator_args(self, namespace: str = NAMESPACE) -> list[str]:
        """The manager container's arguments in the Deployment."""
        deployment = self.get("deployment", incluster.DEPLOYMENT, "-n", namespace)
        return list(deployment["spec"]["template"]["spec"]["containers"][0]["args"])

    # Resources ----------------------------------------------------------------------------
    def apply_until_admitted(
        self, *args: str, input: str | None = None, timeout: float = 60
    ) -> None:
        """``kubectl apply ARGS`` retried while the webhooks are not reachable yet (their
        Service's endpoints follow the pods' readiness)."""
        deadline = time.monotonic() + timeout
        while True:
            completed = self.run("apply", *args, input=input)
            if completed.returncode == 0:
                return
            if time.monotonic() > deadline:
                pods = [
                    (p["metadata"]["name"], p["status"].get("podIP"), p["status"].get("phase"))
                    for p in self.operator_pods()
                ]
                raise AssertionError(
                    f"kubectl apply {' '.join(args)}: {completed.stderr} (operator pods {pods})"
                )
            time.sleep(1)

    def fake_node_names(self) -> set[str]:
        return {node["metadata"]["name"] for node in incluster.fake_nodes(self.out)}

    def samples_pending(self, samples: Sequence[tuple[str, str]]) -> list[str]:
        """Samples not yet READY == DESIRED > 0, or with a plugin pod off the kwok nodes."""
        pending = demo.pending_samples(self.kubeconfig, list(samples))
        fake = self.fake_node_names()
        for plural, name in samples:
            found = self.get(plural, name) or {}
            nodes = set((found.get("status") or {}).get("nodeNames") or ())
            if not nodes <= fake:
                pending.append(f"{plural}/{name} runs on {sorted(nodes - fake)}")
        return pending

    def wait_samples(self, samples: Sequence[tuple[str, str]], timeout: float = 90) -> None:
        wait(lambda: self.samples_pending(samples), timeout=timeout, what="the samples")


def wait(pending: Callable[[], Sequence[str]], *, timeout: float, what: str) -> None:
    """Poll ``pending`` until it is empty; fail with its last answer."""
    try:
        incluster.wait_until(pending, timeout=timeout, what=what, interval=0.5)
    except TimeoutError as error:
        raise AssertionError(str(error)) from None


def eventually(probe: Callable[[], Any], *, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        found = probe()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}: {found!r}")
        time.sleep(0.5)


def overlay(tree: str, directory: pathlib.Path) -> pathlib.Path:
    return incluster.write_overlay(tree, incluster.IMAGE, directory / tree.replace("/", "-"))


def sample_file(device: str) -> pathlib.Path:
    return SAMPLES / f"deviceplugin_v1_{device}deviceplugin.yaml"


def sample(device: str) -> tuple[str, str]:
    """(plural, name) of a device's sample."""
    body = yaml.safe_load(sample_file(device).read_text())
    return KIND_BY_DEVICE[device].plural, body["metadata"]["name"]


def daemonset(device: str, name: str) -> str:
    """The name of the plugin DaemonSet of a resource: ``intel-<dev>-plugin-<resource>``."""
    return f"intel-{device}-plugin-{name}"


def all_samples() -> list[tuple[str, str]]:
    rendered = subprocess.run(
        ["kubectl", "kustomize", str(SAMPLES)], capture_output=True, text=True, check=True
    ).stdout
    return demo.applied_samples(rendered)


def resource(kind: str, name: str, spec: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "deviceplugin.intel.com/v1",
        "kind": kind,
        "metadata": {"name": name},
        "spec": dict(spec),
    }


def denial(webhook: str, message: str) -> str:
    return f'admission webhook "{webhook}" denied the request: {message}'


TOO_LOW = 'invalid resource: version "0.35.0" is too low. Should be at least "0.36.0"'
"""The reference's message for an image below the minimum version."""


def assert_bad_image_denied(e2e: E2eCluster, device: str) -> None:
    """A resource with an image below 0.36.0 is refused by the validating webhook, which the
    apiserver reaches through the webhook Service."""
    kind = KIND_BY_DEVICE[device]
    body = resource(kind.kind, f"e2e-bad-{device}", {"image": f"intel/{kind.image}:0.35.0"})
    completed = e2e.apply_json(body)
    assert completed.returncode != 0, f"{kind.kind} with a 0.35.0 image was admitted"
    assert denial(f"v{kind.kind.lower()}.kb.io", TOO_LOW) in completed.stderr, completed.stderr
    assert e2e.get(kind.plural, f"e2e-bad-{device}") is None


# Certificates as cert-manager or the OpenShift service CA would make them ---------------------


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _certificate(
    subject: x509.Name,
    key: ec.EllipticCurvePrivateKey,
    issuer: x509.Name,
    signer: ec.EllipticCurvePrivateKey,
    *,
    ca: bool,
    dns_names: Iterable[str] = (),
) -> bytes:
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=90))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    names = list(dns_names)
    if names:
        # No common name (the service names are longer than its 64 characters): the names
        # are in the SAN extension, critical as RFC 5280 asks for an empty subject.
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=not subject
        ).add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
    return builder.sign(signer, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


@dataclasses.dataclass(frozen=True)
class ServingCert:
    ca_pem: bytes
    cert_pem: bytes
    key_pem: bytes

    @property
    def fingerprint(self) -> bytes:
        return x509.load_pem_x509_certificate(self.cert_pem).fingerprint(hashes.SHA256())


def self_signed_serving_cert(dns_names: Sequence[str]) -> ServingCert:
    """What cert-manager's selfSigned Issuer writes: the leaf is its own CA (ca.crt == tls.crt)."""
    key = ec.generate_private_key(ec.SECP256R1())
    empty = x509.Name([])
    pem = _certificate(empty, key, empty, key, ca=False, dns_names=dns_names)
    return ServingCert(pem, pem, _key_pem(key))


def ca_signed_serving_cert(dns_names: Sequence[str]) -> ServingCert:
    """What a CA (the OpenShift service CA) issues: a CA and a leaf signed by it."""
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "e2e-service-ca")])
    ca_pem = _certificate(ca_name, ca_key, ca_name, ca_key, ca=True)
    key = ec.generate_private_key(ec.SECP256R1())
    cert_pem = _certificate(x509.Name([]), key, ca_name, ca_key, ca=False, dns_names=dns_names)
    return ServingCert(ca_pem, cert_pem, _key_pem(key))


def service_names(namespace: str = NAMESPACE, service: str = SERVICE) -> list[str]:
    return [f"{service}.{namespace}.svc", f"{service}.{namespace}.svc.cluster.local"]


def tls_secret(cert: ServingCert, *, with_ca: bool, name: str = SECRET) -> dict[str, Any]:
    import base64

    data = {"tls.crt": cert.cert_pem, "tls.key": cert.key_pem}
    if with_ca:
        data["ca.crt"] = cert.ca_pem
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "type": "kubernetes.io/tls",
        "data": {key: base64.b64encode(value).decode() for key, value in data.items()},
    }


def inject_ca_bundle(e2e: E2eCluster, ca_pem: bytes, annotation: str) -> int:
    """What cert-manager's cainjector or the service CA operator do: the CA into every webhook
    of each configuration carrying ``annotation``; how many configurations were patched."""
    import base64

    bundle = base64.b64encode(ca_pem).decode()
    patched = 0
    for kind, name in CONFIGURATIONS.items():
        found = e2e.get(kind, name)
        if found is None or annotation not in (found["metadata"].get("annotations") or {}):
            continue
        patch = [
            {
                "op": "replace" if "caBundle" in w["clientConfig"] else "add",
                "path": f"/webhooks/{i}/clientConfig/caBundle",
                "value": bundle,
            }
            for i, w in enumerate(found["webhooks"])
        ]
        e2e.out("patch", kind, name, "--type=json", "-p", json.dumps(patch))
        patched += 1
    return patched
