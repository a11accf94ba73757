"""The Helm chart: ``helm lint`` passes and ``helm template`` renders, object by object, what
``kubectl kustomize`` renders for the matching overlay (Helm's own labels aside).

helm is built from its Go module by tools/helm.py the first time (a few minutes) and reused
from the cache afterwards.
"""

from __future__ import annotations

import datetime
import pathlib
import subprocess
import sys
from collections.abc import Sequence
from typing import Any

import pytest
import yaml

from certificate_checks import assert_serves
from deviceplugin_operator import cli, devices, manager
from deviceplugin_operator.controller import certificates

ROOT = pathlib.Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "intel-deviceplugin-operator"
OPERATOR = ROOT / "deployments" / "operator"
NAMESPACE = "inteldeviceplugins-system"
RELEASE = "intel-deviceplugin-operator"
HELM_LABELS = frozenset(
    {
        "helm.sh/chart",
        "app.kubernetes.io/managed-by",
        "app.kubernetes.io/instance",
        "app.kubernetes.io/version",
    }
)
KUSTOMIZE_LABELS = frozenset({"app.kubernetes.io/name", "app.kubernetes.io/part-of"})
"""What default's ``labels:`` adds; static CRDs in the chart's crds/ cannot carry them."""

Key = tuple[str, str | None, str]


@pytest.fixture(scope="module")
def helm() -> pathlib.Path:
    completed = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "helm.py")],
        capture_output=True,
        text=True,
        check=False,
        timeout=1200,
    )
    assert completed.returncode == 0, completed.stderr
    return pathlib.Path(completed.stdout.strip())


def run(command: Sequence[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, capture_output=True, text=True, check=False, timeout=120)


def template(
    helm: pathlib.Path, *values: str, namespace: str = NAMESPACE
) -> dict[Key, dict[str, Any]]:
    completed = run(
        [
            str(helm),
            "template",
            RELEASE,
            str(CHART),
            f"--namespace={namespace}",
            "--include-crds",
            *(f"--set={value}" for value in values),
        ]
    )
    assert completed.returncode == 0, completed.stderr
    return keyed(completed.stdout)


def kustomize(overlay: str) -> dict[Key, dict[str, Any]]:
    completed = run(["kubectl", "kustomize", str(OPERATOR / overlay)])
    assert completed.returncode == 0, completed.stderr
    return keyed(completed.stdout)


def _strip(metadata: dict[str, Any], labels: frozenset[str]) -> None:
    found = metadata.get("labels")
    if found is None:
        return
    for key in labels & set(found):
        del found[key]
    if not found:
        del metadata["labels"]


def keyed(text: str) -> dict[Key, dict[str, Any]]:
    """Objects by (kind, namespace, name), without Helm's labels."""
    result: dict[Key, dict[str, Any]] = {}
    for document in yaml.safe_load_all(text):
        if not document:
            continue
        crd = document["kind"] == "CustomResourceDefinition"
        _strip(document["metadata"], HELM_LABELS | (KUSTOMIZE_LABELS if crd else frozenset()))
        pod = document.get("spec", {}).get("template", {}).get("metadata")
        if pod:
            _strip(pod, HELM_LABELS)
        metadata = document["metadata"]
        key = (document["kind"], metadata.get("namespace"), metadata["name"])
        assert key not in result, f"{key} rendered twice"
        result[key] = document
    return result


def assert_same(expected: dict[Key, dict[str, Any]], actual: dict[Key, dict[str, Any]]) -> None:
    assert sorted(actual) == sorted(expected)
    for key, document in expected.items():
        assert actual[key] == document, key


def without_namespace(objects: dict[Key, dict[str, Any]]) -> dict[Key, dict[str, Any]]:
    return {key: value for key, value in objects.items() if key[0] != "Namespace"}


def test_lint_passes(helm: pathlib.Path) -> None:
    completed = run([str(helm), "lint", "--strict", str(CHART)])
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert "0 chart(s) failed" in completed.stdout


def test_defaults_render_the_kustomize_default_install(helm: pathlib.Path) -> None:
    # Helm expects the release namespace to exist; namespace.create adds it.
    expected = kustomize("default")
    assert_same(without_namespace(expected), template(helm))
    assert_same(expected, template(helm, "namespace.create=true"))


@pytest.mark.parametrize("device", sorted(devices.KINDS))
def test_one_device_renders_its_kustomize_overlay(helm: pathlib.Path, device: str) -> None:
    expected = without_namespace(kustomize(f"device/{device}"))
    assert_same(expected, template(helm, f"devices={{{device}}}"))


def test_cert_manager_mode_renders_the_certmanager_overlay(helm: pathlib.Path) -> None:
    expected = without_namespace(kustomize("certmanager"))
    assert_same(expected, template(helm, "certificates.mode=cert-manager"))


def test_values_reach_the_deployment(helm: pathlib.Path) -> None:
    objects = template(
        helm,
        "devices={qat,gpu}",
        "pluginNamespace=plugins",
        "pluginImagePullSecret=regcred",
        "imageOverrides.INTEL_GPU_PLUGIN_SHA=intel/intel-gpu-plugin@sha256:" + "0" * 64,
        "leaderElect=false",
        "metrics.enabled=false",
        "replicas=3",
        "namePrefix=dp-",
        "tolerations[0].operator=Exists",
    )
    deployment = objects[("Deployment", NAMESPACE, "dp-controller-manager")]
    assert deployment["spec"]["replicas"] == 3
    pod = deployment["spec"]["template"]["spec"]
    assert pod["tolerations"] == [{"operator": "Exists"}]
    (container,) = pod["containers"]
    assert container["args"] == [
        "--health-probe-bind-address=:8081",
        "--metrics-bind-address=0",
        # Issue 14, point 6: with pluginNamespace the flag was dropped, and the plugin pods
        # ran as that namespace's default account with its token mounted.
        "--plugin-service-account=dp-plugin",
        "--devices=gpu,qat",
        "--webhook-secret=dp-webhook-server-cert",
        "--webhook-service=dp-webhook-service",
        "--webhook-configuration-prefix=dp-",
    ]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["DEVICEPLUGIN_NAMESPACE"] == "plugins"
    assert env["DEVICEPLUGIN_SECRET"] == "regcred"
    assert env["INTEL_GPU_PLUGIN_SHA"].endswith("0" * 64)

    # The plugin namespace gets the DaemonSet rules and the plugin account; the Secret and
    # nothing else stays in the release namespace. No leader election, no metrics objects.
    plugin_role = objects[("Role", "plugins", "dp-manager-role")]
    assert {r for rule in plugin_role["rules"] for r in rule["resources"]} == {
        "configmaps",
        "pods",
        "daemonsets",
    }
    own_role = objects[("Role", NAMESPACE, "dp-manager-role")]
    assert {r for rule in own_role["rules"] for r in rule["resources"]} == {"secrets"}
    assert ("RoleBinding", "plugins", "dp-manager-rolebinding") in objects
    plugin_account = objects[("ServiceAccount", "plugins", "dp-plugin")]
    assert plugin_account["automountServiceAccountToken"] is False
    kinds = {key[0] for key in objects}
    assert "PodDisruptionBudget" in kinds
    single = template(helm, "replicas=1")
    assert "PodDisruptionBudget" not in {key[0] for key in single}, "it would block every drain"
    assert not [key for key in objects if "leader-election" in key[2] or "metrics" in key[2]]
    for kind in ("MutatingWebhookConfiguration", "ValidatingWebhookConfiguration"):
        (configuration,) = [v for k, v in objects.items() if k[0] == kind]
        assert {hook["name"][1:4] for hook in configuration["webhooks"]} == {"gpu", "qat"}


def test_network_policy_and_events_role(helm: pathlib.Path) -> None:
    objects = template(helm)
    policy = objects[("NetworkPolicy", NAMESPACE, "intel-deviceplugins-controller-manager")]
    ingress = policy["spec"]["ingress"]
    assert [rule["ports"][0]["port"] for rule in ingress] == ["webhook-server", "https"]
    assert "from" not in ingress[0]
    narrowed = template(
        helm,
        "networkPolicy.webhookFrom[0].ipBlock.cidr=10.0.0.0/24",
        "metrics.enabled=false",
        "allowedImageRegistries={registry.example.com,docker.io/intel}",
    )
    policy = narrowed[("NetworkPolicy", NAMESPACE, "intel-deviceplugins-controller-manager")]
    assert policy["spec"]["ingress"] == [
        {
            "ports": [{"port": "webhook-server", "protocol": "TCP"}],
            "from": [{"ipBlock": {"cidr": "10.0.0.0/24"}}],
        }
    ]
    (deployment,) = [v for k, v in narrowed.items() if k[0] == "Deployment"]
    args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--allowed-image-registries=registry.example.com,docker.io/intel" in args
    assert "NetworkPolicy" not in {k[0] for k in template(helm, "networkPolicy.enabled=false")}
    # Events only in "default", where those of cluster-scoped resources live.
    role = objects[("Role", "default", "intel-deviceplugins-manager-events-role")]
    assert role["rules"] == [
        {"apiGroups": [""], "resources": ["events"], "verbs": ["create", "patch"]}
    ]
    cluster_role = objects[("ClusterRole", None, "intel-deviceplugins-manager-role")]
    assert not [rule for rule in cluster_role["rules"] if "events" in rule["resources"]]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("devices={gpu,tpu}", 'unknown device "tpu"'),
        ("certificates.mode=vault", "is not one of self-managed, cert-manager, mounted"),
    ],
)
def test_bad_values_fail_the_rendering(helm: pathlib.Path, value: str, message: str) -> None:
    completed = run([str(helm), "template", RELEASE, str(CHART), f"--set={value}"])
    assert completed.returncode != 0
    assert message in completed.stderr


def operator_options(objects: dict[Key, dict[str, Any]]) -> manager.Options:
    """The options the rendered manager pod runs with (fieldRefs resolved as the kubelet)."""
    ((key, deployment),) = [(k, v) for k, v in objects.items() if k[0] == "Deployment"]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    env = {
        variable["name"]: variable.get("value") or key[1]
        for variable in container["env"]
        if "value" in variable
        or variable["valueFrom"].get("fieldRef", {}).get("fieldPath") == "metadata.namespace"
    }
    return cli.build_options(cli._parser().parse_args(["run", *container["args"]]), env)


def called_service(objects: dict[Key, dict[str, Any]]) -> str:
    """``<service>.<namespace>.svc``: how the API server calls every rendered webhook."""
    (called,) = {
        f"{hook['clientConfig']['service']['name']}.{hook['clientConfig']['service']['namespace']}"
        for key, document in objects.items()
        if key[0].endswith("WebhookConfiguration")
        for hook in document["webhooks"]
    }
    return f"{called}.svc"


@pytest.mark.parametrize(
    ("install", "namespace"),
    [("chart", NAMESPACE), ("chart", "n" * 63), ("chart", "n" * 25), ("kustomize", NAMESPACE)],
)
def test_the_self_managed_certificate_names_the_rendered_webhook_service(
    helm: pathlib.Path, install: str, namespace: str
) -> None:
    objects = template(helm, namespace=namespace) if install == "chart" else kustomize("default")
    options = operator_options(objects)
    assert options.webhook_certs == "self-managed"
    assert options.operator_namespace == namespace
    hosts = manager.webhook_hosts(options)
    assert called_service(objects) in hosts
    now = datetime.datetime.now(datetime.UTC)
    assert_serves(certificates.issue(hosts, now), hosts, now)
