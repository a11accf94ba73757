"""The kustomize install tree: every overlay renders, ``default`` and ``device/gpu`` install on
the real control plane, the operator's account has exactly the access it needs, and the
operator itself, run as that account with the Deployment's arguments and environment, serves
its webhooks and reconciles every sample.

The Deployment's pods land on kwok nodes, which report them Running without running anything,
so the operator is run on the host instead, as ``deviceplugin-operator run`` (the image's
entrypoint) with a token of its ServiceAccount; the webhook configurations are pointed at it.
Everything but the CRDs (shared with the other modules) is deleted at the end of each install.
"""

from __future__ import annotations

import contextlib
import json
import pathlib
import ssl
import subprocess
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator, Mapping
from typing import Any

import pytest
import yaml

from clusters import TestCluster
from deviceplugin_operator import devices
from deviceplugin_operator.controller import election
from deviceplugin_operator.manifests import rbac
from localcluster import processes
from operators import start_operator, token_kubeconfig
from polling import eventually

ROOT = pathlib.Path(__file__).resolve().parents[2]
OPERATOR = ROOT / "deployments" / "operator"
NAMESPACE = "inteldeviceplugins-system"
PREFIX = "intel-deviceplugins-"
DEPLOYMENT = PREFIX + "controller-manager"
OPERATOR_ACCOUNT = f"system:serviceaccount:{NAMESPACE}:{PREFIX}controller-manager"
PLUGIN_ACCOUNT = f"system:serviceaccount:{NAMESPACE}:{PREFIX}plugin"
BASE_ARGS = [
    "--leader-elect",
    "--health-probe-bind-address=:8081",
    "--metrics-bind-address=:8443",
    "--metrics-secure",
    "--plugin-service-account=intel-deviceplugins-plugin",
]
CONFIGURATIONS = {
    "mutatingwebhookconfiguration": PREFIX + "mutating-webhook-configuration",
    "validatingwebhookconfiguration": PREFIX + "validating-webhook-configuration",
}
OVERLAYS = [
    ".",
    "default",
    *(f"device/{name}" for name in sorted(devices.KINDS)),
    "certmanager",
    "overlays/ocp",
]
Objects = list[dict[str, Any]]


def kustomize(overlay: str) -> Objects:
    completed = subprocess.run(
        ["kubectl", "kustomize", str(OPERATOR / overlay)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert completed.returncode == 0, completed.stderr
    return [doc for doc in yaml.safe_load_all(completed.stdout) if doc]


def only(objects: Objects, kind: str, name: str | None = None) -> dict[str, Any]:
    found = [o for o in objects if o["kind"] == kind and name in (None, o["metadata"]["name"])]
    assert len(found) == 1, f"{len(found)} {kind} {name or ''}"
    return found[0]


def manager_container(objects: Objects) -> dict[str, Any]:
    deployment = only(objects, "Deployment", DEPLOYMENT)
    containers = deployment["spec"]["template"]["spec"]["containers"]
    assert [c["name"] for c in containers] == ["manager"]
    container: dict[str, Any] = containers[0]
    return container


# Rendering (no cluster) ---------------------------------------------------------------------


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_renders_the_hardened_manager(overlay: str) -> None:
    objects = kustomize(overlay)
    # Only the Events Role and its binding are elsewhere: in "default", where the API server
    # keeps the Events of cluster-scoped resources.
    namespaces = {o["metadata"]["name"]: o["metadata"].get("namespace", NAMESPACE) for o in objects}
    assert {name for name, namespace in namespaces.items() if namespace != NAMESPACE} == {
        PREFIX + "manager-events-role",
        PREFIX + "manager-events-rolebinding",
    }
    assert namespaces[PREFIX + "manager-events-role"] == "default"
    names = [(o["kind"], o["metadata"]["name"]) for o in objects]
    assert len(names) == len(set(names))
    assert sum(o["kind"] == "CustomResourceDefinition" for o in objects) == 10

    deployment = only(objects, "Deployment", DEPLOYMENT)
    pod = deployment["spec"]["template"]["spec"]
    assert deployment["spec"]["replicas"] == 2
    assert pod["serviceAccountName"] == PREFIX + "controller-manager"
    assert pod["nodeSelector"] == {"kubernetes.io/arch": "amd64"}
    assert pod["terminationGracePeriodSeconds"] == 30
    container = manager_container(objects)
    assert container["args"][: len(BASE_ARGS)] == BASE_ARGS
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert security["seccompProfile"] == {"type": "RuntimeDefault"}
    assert security["runAsNonRoot"] is True
    if overlay != "overlays/ocp":  # OpenShift assigns the user from the namespace's range
        assert (security["runAsUser"], security["runAsGroup"]) == (65532, 65532)
    env = {e["name"]: e for e in container["env"]}
    for variable in ("DEVICEPLUGIN_NAMESPACE", "POD_NAMESPACE"):
        assert env[variable]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}
    assert {p["name"]: p["containerPort"] for p in container["ports"]} == {
        "webhook-server": 9443,
        "https": 8443,
        "health": 8081,
    }
    budget = only(objects, "PodDisruptionBudget")
    assert budget["spec"]["minAvailable"] == 1

    selector = deployment["spec"]["selector"]["matchLabels"]
    for service in (o for o in objects if o["kind"] == "Service"):
        assert service["spec"]["selector"] == selector
    webhook = only(objects, "Service", PREFIX + "webhook-service")
    assert webhook["spec"]["ports"] == [
        {"name": "https", "port": 443, "protocol": "TCP", "targetPort": "webhook-server"}
    ]
    for configuration in (o for o in objects if "webhooks" in o):
        for hook in configuration["webhooks"]:
            service = hook["clientConfig"]["service"]
            assert (service["name"], service["namespace"]) == (
                PREFIX + "webhook-service",
                NAMESPACE,
            )


@pytest.mark.parametrize("device", sorted(devices.KINDS))
def test_device_overlay_runs_one_kind_with_every_other_flag_kept(device: str) -> None:
    objects = kustomize(f"device/{device}")
    kind = devices.KINDS[device]
    assert manager_container(objects)["args"] == [*BASE_ARGS, f"--devices={device}"]
    for configuration in (o for o in objects if "webhooks" in o):
        for hook in configuration["webhooks"]:
            path = hook["clientConfig"]["service"]["path"]
            resources = [r for rule in hook["rules"] for r in rule["resources"]]
            assert kind.singular in path or resources == ["pods"], hook["name"]
            assert hook["name"].startswith((f"m{kind.singular}.", f"v{kind.singular}.", device))
    role = only(objects, "ClusterRole", PREFIX + rbac.NAME)
    plugin_resources = {
        resource
        for rule in role["rules"]
        if rule["apiGroups"] == [kind.resource.group]
        for resource in rule["resources"]
    }
    assert plugin_resources == {kind.plural, f"{kind.plural}/status", f"{kind.plural}/finalizers"}


def test_default_install_needs_no_cert_manager() -> None:
    objects = kustomize("default")
    assert not [o for o in objects if o["apiVersion"].startswith("cert-manager.io/")]
    for configuration in (o for o in objects if "webhooks" in o):
        assert not configuration["metadata"].get("annotations")
    assert "--webhook-certs=mounted" not in manager_container(objects)["args"]


@pytest.mark.parametrize(
    ("overlay", "annotation"),
    [
        ("certmanager", "cert-manager.io/inject-ca-from"),
        ("overlays/ocp", "service.beta.openshift.io/inject-cabundle"),
    ],
)
def test_certificate_overlays_mount_the_secret(overlay: str, annotation: str) -> None:
    objects = kustomize(overlay)
    container = manager_container(objects)
    assert container["args"][-1] == "--webhook-certs=mounted"
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert mounts == {"tmp": "/tmp", "cert": "/tmp/k8s-webhook-server/serving-certs"}
    pod = only(objects, "Deployment")["spec"]["template"]["spec"]
    (cert,) = [v for v in pod["volumes"] if v["name"] == "cert"]
    assert cert["secret"]["secretName"] == rbac.WEBHOOK_SECRET
    for configuration in (o for o in objects if "webhooks" in o):
        assert annotation in configuration["metadata"]["annotations"]


# Installing on the control plane ------------------------------------------------------------


def delete_installed(cluster: TestCluster, objects: Objects) -> None:
    """Delete what an overlay installs except the CRDs (other modules use them)."""
    kept = [o for o in objects if o["kind"] != "CustomResourceDefinition"]
    cluster.kubectl(
        "delete", "--ignore-not-found", "--wait=false", "-f", "-", input=yaml.safe_dump_all(kept)
    )

    def gone() -> bool:
        result = cluster.kubectl("get", "namespace", NAMESPACE, check=False)
        return result.returncode != 0 and "NotFound" in result.stderr

    eventually(gone, timeout=90, interval=0.5, what=f"namespace {NAMESPACE} to be deleted")


@contextlib.contextmanager
def installed(cluster: TestCluster, overlay: str) -> Iterator[Objects]:
    objects = kustomize(overlay)
    delete_installed(cluster, objects)  # a run that was killed may have left it
    try:
        cluster.kubectl("apply", "-k", str(OPERATOR / overlay))
        yield objects
    finally:
        cluster.kubectl("delete", "-k", str(OPERATOR / "samples"), "--ignore-not-found")
        delete_installed(cluster, objects)


def can_i(cluster: TestCluster, account: str, *query: str) -> bool:
    completed = cluster.kubectl("auth", "can-i", *query, f"--as={account}", check=False)
    answer = completed.stdout.strip()
    assert answer in ("yes", "no"), completed.stderr
    return answer == "yes"


def wait_available(cluster: TestCluster, replicas: int) -> dict[str, Any]:
    def available() -> dict[str, Any] | None:
        deployment: dict[str, Any] = cluster.kubectl_json(
            "get", "deployment", "-n", NAMESPACE, DEPLOYMENT
        )
        return deployment if deployment["status"].get("availableReplicas") == replicas else None

    return eventually(available, timeout=60, interval=0.5, what="the operator Deployment")


def without_webhooks(cluster: TestCluster) -> None:
    """Nothing serves the webhook Service on kwok nodes: remove the configurations."""
    for kind, name in CONFIGURATIONS.items():
        cluster.kubectl("delete", kind, name, "--ignore-not-found")


@pytest.fixture(scope="class")
def install(cluster: TestCluster) -> Iterator[Objects]:
    """The default overlay, installed for the tests of one class."""
    with installed(cluster, "default") as objects:
        yield objects


class TestDefaultInstall:
    """``kubectl apply -k deployments/operator/default`` on the control plane."""

    pytestmark = pytest.mark.cluster

    def test_manager_deployment_becomes_available_spread_over_hosts(
        self, cluster: TestCluster, install: Objects
    ) -> None:
        wait_available(cluster, 2)
        pods = cluster.kubectl_json(
            "get", "pods", "-n", NAMESPACE, "-l", "control-plane=controller-manager"
        )["items"]
        assert len({pod["spec"]["nodeName"] for pod in pods}) == 2
        budget = cluster.kubectl_json("get", "pdb", "-n", NAMESPACE, DEPLOYMENT)
        assert budget["spec"]["minAvailable"] == 1

    @pytest.mark.parametrize(
        ("query", "allowed"),
        [
            (["list", "secrets", "--all-namespaces"], False),
            (["get", "secrets/another", "-n", NAMESPACE], False),
            (["get", f"secrets/{rbac.WEBHOOK_SECRET}", "-n", NAMESPACE], True),
            (["update", f"secrets/{rbac.WEBHOOK_SECRET}", "-n", NAMESPACE], True),
            (["create", "pods", "-n", NAMESPACE], False),
            (["create", "daemonsets.apps", "-n", "default"], False),
            (["create", "daemonsets.apps", "-n", "kube-system"], False),
            (["create", "daemonsets.apps", "-n", NAMESPACE], True),
            (["delete", "daemonsets.apps", "-n", NAMESPACE], True),
            (["list", "pods", "-n", NAMESPACE], True),
            (["list", "pods", "--all-namespaces"], False),
            (["get", "configmaps", "-n", NAMESPACE], True),
            (["list", "configmaps", "-n", NAMESPACE], False),
            (["watch", "gpudeviceplugins.deviceplugin.intel.com"], True),
            (["patch", "gpudeviceplugins.deviceplugin.intel.com", "--subresource=status"], True),
            (["update", "gpudeviceplugins.deviceplugin.intel.com"], False),
            (["delete", "gpudeviceplugins.deviceplugin.intel.com"], False),
            (["create", "gpudeviceplugins.deviceplugin.intel.com"], False),
            (["list", "acceleratorfunctions.fpga.intel.com", "--all-namespaces"], True),
            (["update", f"leases/{election.LEASE_NAME}", "-n", NAMESPACE], True),
            (["update", "leases/another", "-n", NAMESPACE], False),
            (["update", f"leases/{election.LEASE_NAME}", "-n", "kube-system"], False),
            (
                [
                    "patch",
                    f"mutatingwebhookconfigurations/{CONFIGURATIONS['mutatingwebhookconfiguration']}",
                ],
                True,
            ),
            (["patch", "mutatingwebhookconfigurations/another"], False),
            (["create", "events", "-n", "default"], True),
            (["create", "events", "-n", "kube-system"], False),
            (["create", "events", "-n", NAMESPACE], False),
            (["create", "tokenreviews.authentication.k8s.io"], True),
            (["create", "subjectaccessreviews.authorization.k8s.io"], True),
            (["create", "clusterrolebindings.rbac.authorization.k8s.io"], False),
        ],
        ids=lambda value: " ".join(value) if isinstance(value, list) else str(value),
    )
    def test_operator_account_has_least_privilege(
        self, cluster: TestCluster, install: Objects, query: list[str], allowed: bool
    ) -> None:
        assert can_i(cluster, OPERATOR_ACCOUNT, *query) is allowed

    def test_plugin_account_can_do_nothing(self, cluster: TestCluster, install: Objects) -> None:
        account = cluster.kubectl_json("get", "serviceaccount", "-n", NAMESPACE, PREFIX + "plugin")
        assert account["automountServiceAccountToken"] is False
        listing = cluster.kubectl("auth", "can-i", "--list", f"--as={PLUGIN_ACCOUNT}").stdout
        granted = {
            line.split()[0]
            for line in listing.splitlines()[1:]
            if line.strip() and not line.startswith(" ")
        }
        # Only what every authenticated user may do (system:basic-user): review itself.
        assert granted <= {
            "selfsubjectreviews.authentication.k8s.io",
            "selfsubjectaccessreviews.authorization.k8s.io",
            "selfsubjectrulesreviews.authorization.k8s.io",
        }
        for query in (["get", "pods"], ["list", "daemonsets.apps"], ["get", "secrets"]):
            assert not can_i(cluster, PLUGIN_ACCOUNT, *query, "-n", NAMESPACE)

    def test_operator_runs_as_its_account_and_reconciles_every_sample(
        self, cluster: TestCluster, install: Objects, tmp_path: pathlib.Path
    ) -> None:
        container = manager_container(install)
        webhook_port = processes.free_port()
        point_webhooks_at(cluster, webhook_port)
        account = token_kubeconfig(
            cluster,
            PREFIX + "controller-manager",
            NAMESPACE,
            tmp_path / "controller-manager.kubeconfig",
        )
        # The Deployment's arguments and environment, then what differs on the host (the last
        # flag wins): the kubeconfig, loopback ports, the certificate's host and directory.
        log = tmp_path / "operator.log"
        with start_operator(
            account.path,
            None,
            log,
            "--webhook-host=127.0.0.1",
            "--webhook-cert-hosts=127.0.0.1",
            f"--webhook-cert-dir={tmp_path / 'certs'}",
            before=container["args"],
            webhook_port=webhook_port,
            env=environment(container),
            verbosity=None,
            log_format=None,
        ) as operator:
            eventually(operator.ready, timeout=60, what=f"the operator to be ready (log: {log})")
            cluster.kubectl("apply", "-k", str(OPERATOR / "samples"))
            wait_all_samples_ready(cluster)

            lease = cluster.kubectl_json("get", "lease", "-n", NAMESPACE, election.LEASE_NAME)
            assert lease["spec"]["holderIdentity"]
            secret = cluster.kubectl_json("get", "secret", "-n", NAMESPACE, rbac.WEBHOOK_SECRET)
            for kind, name in CONFIGURATIONS.items():
                hooks = cluster.kubectl_json("get", kind, name)["webhooks"]
                assert {h["clientConfig"]["caBundle"] for h in hooks} == {secret["data"]["ca.crt"]}
            daemonsets = cluster.kubectl_json("get", "daemonsets", "-n", NAMESPACE)["items"]
            assert len(daemonsets) >= len(devices.KINDS)
            assert_metrics_readable_with_the_reader_role(cluster, operator.metrics_port)

            assert operator.terminate(timeout=30) == 0
        text = log.read_text()
        assert "forbidden" not in text.lower(), text
        released = cluster.kubectl_json("get", "lease", "-n", NAMESPACE, election.LEASE_NAME)
        assert not released["spec"].get("holderIdentity")


class TestGpuOverlay:
    """``kubectl apply -k deployments/operator/device/gpu`` into a fresh state."""

    pytestmark = pytest.mark.cluster

    def test_installs_with_gpu_only_and_samples_apply(self, cluster: TestCluster) -> None:
        with installed(cluster, "device/gpu") as objects:
            deployment = cluster.kubectl_json("get", "deployment", "-n", NAMESPACE, DEPLOYMENT)
            container = deployment["spec"]["template"]["spec"]["containers"][0]
            assert container["args"] == [*BASE_ARGS, "--devices=gpu"]
            for kind, name in CONFIGURATIONS.items():
                hooks = cluster.kubectl_json("get", kind, name)["webhooks"]
                assert {h["name"][1:] for h in hooks} == {"gpudeviceplugin.kb.io"}
            assert can_i(
                cluster, OPERATOR_ACCOUNT, "watch", "gpudeviceplugins.deviceplugin.intel.com"
            )
            assert not can_i(
                cluster, OPERATOR_ACCOUNT, "watch", "qatdeviceplugins.deviceplugin.intel.com"
            )
            assert len([o for o in objects if o["kind"] == "CustomResourceDefinition"]) == 10
            without_webhooks(cluster)
            cluster.kubectl("apply", "-k", str(OPERATOR / "samples"))


# Helpers for the operator run on the host ---------------------------------------------------


def point_webhooks_at(cluster: TestCluster, port: int) -> None:
    """Replace every webhook's Service reference by https://127.0.0.1:<port><same path>."""
    for kind, name in CONFIGURATIONS.items():
        hooks = cluster.kubectl_json("get", kind, name)["webhooks"]
        patch = [
            {
                "op": "replace",
                "path": f"/webhooks/{index}/clientConfig",
                "value": {
                    "url": f"https://127.0.0.1:{port}{hook['clientConfig']['service']['path']}"
                },
            }
            for index, hook in enumerate(hooks)
        ]
        cluster.kubectl("patch", kind, name, "--type=json", f"--patch={json.dumps(patch)}")


def environment(container: Mapping[str, Any]) -> dict[str, str]:
    """The container's env with its fieldRefs resolved as the kubelet would."""
    env = {}
    for variable in container["env"]:
        if "value" in variable:
            env[variable["name"]] = variable["value"]
            continue
        field = variable["valueFrom"]["fieldRef"]["fieldPath"]
        assert field == "metadata.namespace", variable
        env[variable["name"]] = NAMESPACE
    return env


def http_status(url: str, token: str | None = None) -> int | None:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    request = urllib.request.Request(url)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=5, context=context) as response:
            status: int = response.status
            return status
    except urllib.error.HTTPError as error:
        return error.code
    except OSError:
        return None


def wait_all_samples_ready(cluster: TestCluster) -> None:
    plurals = ",".join(kind.plural for kind in devices.KINDS.values())

    def not_ready() -> list[str]:
        items = cluster.kubectl_json("get", plurals)["items"]
        statuses = {
            i["kind"]: i.get("status") or {}
            for i in items
            if i["metadata"]["name"].endswith("deviceplugin-sample")
        }
        return [
            kind.kind
            for kind in devices.KINDS.values()
            if not statuses.get(kind.kind, {}).get("desiredNumberScheduled")
            or statuses[kind.kind].get("numberReady")
            != statuses[kind.kind]["desiredNumberScheduled"]
        ]

    eventually(lambda: not not_ready(), timeout=60, interval=0.5, what="every sample Ready")


def assert_metrics_readable_with_the_reader_role(cluster: TestCluster, port: int) -> None:
    """A scraper bound to the shipped metrics-reader role gets /metrics; no token gets 401."""
    binding = f"{PREFIX}test-scraper-{uuid.uuid4().hex[:6]}"
    cluster.kubectl("create", "serviceaccount", "test-scraper", "-n", NAMESPACE)
    cluster.kubectl(
        "create",
        "clusterrolebinding",
        binding,
        f"--clusterrole={PREFIX}metrics-reader",
        f"--serviceaccount={NAMESPACE}:test-scraper",
    )
    try:
        token = cluster.kubectl("create", "token", "test-scraper", "-n", NAMESPACE).stdout.strip()
        url = f"https://127.0.0.1:{port}/metrics"
        assert http_status(url) == 401
        eventually(lambda: http_status(url, token) == 200, timeout=15, what="an authorised scrape")
    finally:
        cluster.kubectl("delete", "clusterrolebinding", binding, "--ignore-not-found")
