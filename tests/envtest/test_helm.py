"""The Helm chart: ``helm lint`` passes and ``helm template`` renders, object by object, what
``kubectl kustomize`` renders for the matching overlay (Helm's own labels aside).

helm is built from its Go module by tools/helm.py the first time (a few minutes) and reused
from the cache afterwards.
"""

from __future__ import annotations

import copy
import datetime
import json
import pathlib
import subprocess
from collections.abc import Iterator, Sequence
from typing import Any

import pytest
import yaml

import operators
from certificate_checks import assert_serves
from clusters import TestCluster
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


def run(command: Sequence[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, capture_output=True, text=True, check=False, timeout=120)


def helm_template(
    helm: pathlib.Path, *values: str, namespace: str = NAMESPACE, crds: bool = False
) -> str:
    """``helm template`` of the release with ``--set`` values: the YAML it prints."""
    completed = run(
        [
            str(helm),
            "template",
            RELEASE,
            str(CHART),
            f"--namespace={namespace}",
            *(["--include-crds"] if crds else []),
            *(f"--set={value}" for value in values),
        ]
    )
    assert completed.returncode == 0, completed.stderr
    return completed.stdout


def template(
    helm: pathlib.Path, *values: str, namespace: str = NAMESPACE
) -> dict[Key, dict[str, Any]]:
    return keyed(helm_template(helm, *values, namespace=namespace, crds=True))


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


CHART_ONLY = frozenset({"intel-deviceplugins-admission-check", "dp-admission-check"})
"""The account of the admission check (post-install hook, ``helm test``): a release object,
as its hooks need it after the install, but nothing the kustomize install has."""


def keyed(text: str) -> dict[Key, dict[str, Any]]:
    """The release's objects by (kind, namespace, name), without Helm's labels; hooks, tests
    and the admission check's account (see CHART_ONLY) left out."""
    result: dict[Key, dict[str, Any]] = {}
    for document in yaml.safe_load_all(text):
        if not document or "helm.sh/hook" in (document["metadata"].get("annotations") or {}):
            continue
        if document["metadata"]["name"] in CHART_ONLY:
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
        ("devices={gpu,tpu}", "at '/devices/1': value must be one of 'dlb', 'dsa'"),
        (
            "certificates.mode=vault",
            "at '/certificates/mode': value must be one of 'self-managed', 'cert-manager', "
            "'mounted'",
        ),
        ("replicas=two", "at '/replicas': got string, want integer"),
        ("image.digest=latest", "at '/image/digest'"),
        ("monitoring.serviceMonitor.interval=soon", "at '/monitoring/serviceMonitor/interval'"),
        ("nodeFeatureRule=yes", "at '/nodeFeatureRule': got string, want boolean"),
        ("replica=2", "additional properties 'replica' not allowed"),
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


# --- The hooks' install steps (``deviceplugin-operator lifecycle``) with the chart's RBAC ---


def rendered(helm: pathlib.Path, *values: str, namespace: str = NAMESPACE) -> list[dict[str, Any]]:
    """Every rendered document as Helm would send it (hooks and tests included)."""
    text = helm_template(helm, *values, namespace=namespace)
    return [document for document in yaml.safe_load_all(text) if document]


def hook_objects(
    helm: pathlib.Path, namespace: str, hook: str, *values: str
) -> list[dict[str, Any]]:
    """The ServiceAccount and RBAC a hook's Job runs with, as plain objects (no Job)."""
    found = [
        document
        for document in rendered(helm, *values, namespace=namespace)
        if hook in (document["metadata"].get("annotations") or {}).get("helm.sh/hook", "")
        and document["kind"]
        in {"ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"}
    ]
    for document in found:
        document["metadata"].pop("annotations")
    return found


def job_args(helm: pathlib.Path, name: str, *values: str, namespace: str = NAMESPACE) -> list[str]:
    (job,) = [
        d
        for d in rendered(helm, *values, namespace=namespace)
        if d["kind"] == "Job" and d["metadata"]["name"] == name
    ]
    (container,) = job["spec"]["template"]["spec"]["containers"]
    assert container["command"] == ["deviceplugin-operator"]
    return list(container["args"])


def lifecycle(kubeconfig: pathlib.Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run([str(operators.COMMAND), *args, f"--kubeconfig={kubeconfig}"])


@pytest.fixture
def hook_rbac(cluster: TestCluster, namespace: str) -> Iterator[list[dict[str, Any]]]:
    """Removes the cluster-scoped hook RBAC a test applied (the rest goes with its namespace)."""
    applied: list[dict[str, Any]] = []
    yield applied
    for document in applied:
        if document["kind"].startswith("Cluster"):
            cluster.kubectl("delete", document["kind"], document["metadata"]["name"], check=False)


def apply_objects(
    cluster: TestCluster, documents: list[dict[str, Any]], applied: list[dict[str, Any]]
) -> None:
    applied.extend(documents)
    text = "\n---\n".join(yaml.safe_dump(document) for document in documents)
    cluster.kubectl("apply", "--server-side", "-f", "-", input=text)


def test_pre_upgrade_hook_adds_a_new_field_with_only_its_named_crd_rights(
    helm: pathlib.Path,
    cluster: TestCluster,
    namespace: str,
    hook_rbac: list[dict[str, Any]],
    tmp_path: pathlib.Path,
) -> None:
    """An older CRD in the cluster (one spec field missing, as an older chart's crds/ would
    leave it): the hook's step, with exactly the hook's rendered RBAC, brings the field."""
    name = "gpudeviceplugins.deviceplugin.intel.com"
    current = yaml.safe_load(
        (CHART / "crds" / "deviceplugin.intel.com_gpudeviceplugins.yaml").read_text()
    )
    cluster.install_crds((CHART / "crds").resolve())
    old = copy.deepcopy(current)
    spec_schema = old["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    field = sorted(spec_schema["properties"])[-1]
    del spec_schema["properties"][field]
    cluster.kubectl(
        "apply",
        "--server-side",
        "--force-conflicts",
        "--field-manager=older-chart",
        "-f",
        "-",
        input=yaml.safe_dump(old),
    )

    def stored_fields() -> set[str]:
        crd = cluster.kubectl_json("get", "crd", name)
        return set(
            crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"][
                "properties"
            ]
        )

    try:
        assert field not in stored_fields()
        apply_objects(cluster, hook_objects(helm, namespace, "pre-upgrade"), hook_rbac)
        account = operators.token_kubeconfig(
            cluster, "intel-deviceplugins-crd-upgrade", namespace, tmp_path / "hook.kubeconfig"
        )
        args = job_args(helm, "intel-deviceplugins-crd-upgrade", namespace=namespace)
        assert args == ["lifecycle", "apply-crds", "--field-manager=helm"]
        completed = lifecycle(account.path, *args)
        assert completed.returncode == 0, completed.stdout + completed.stderr
        assert f"customresourcedefinition/{name} updated" in completed.stdout.splitlines()
        assert field in stored_fields()
        managers = {
            entry["manager"]
            for entry in cluster.kubectl_json("get", "crd", name, "--show-managed-fields")[
                "metadata"
            ]["managedFields"]
        }
        assert "helm" in managers

        again = lifecycle(account.path, *args)
        assert again.returncode == 0, again.stdout + again.stderr
        assert [line.rsplit(" ", 1)[1] for line in again.stdout.splitlines()] == ["unchanged"] * 10

        # The account may touch no other CRD.
        denied = cluster.kubectl(
            f"--kubeconfig={account.path}",
            "get",
            "crd",
            "nodefeaturerules.nfd.k8s-sigs.io",
            check=False,
        )
        assert "forbidden" in denied.stderr.lower()
    finally:
        cluster.install_crds((CHART / "crds").resolve())


def test_a_create_through_apply_is_allowed_by_name(
    cluster: TestCluster, namespace: str, tmp_path: pathlib.Path
) -> None:
    """What the CRD hook's ClusterRole relies on where crds/ was skipped: the API server checks
    an apply that creates against create *with the object's name*, so resourceNames bound it."""
    cluster.kubectl("create", "serviceaccount", "applier", "-n", namespace)
    cluster.kubectl(
        "create",
        "role",
        "applier",
        "-n",
        namespace,
        "--verb=get,patch,create",
        "--resource=configmaps",
        "--resource-name=allowed",
    )
    cluster.kubectl(
        "create",
        "rolebinding",
        "applier",
        "-n",
        namespace,
        "--role=applier",
        f"--serviceaccount={namespace}:applier",
    )
    account = operators.token_kubeconfig(cluster, "applier", namespace, tmp_path / "k")
    for name, allowed in (("allowed", True), ("other", False)):
        body = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": namespace},
        }
        completed = cluster.kubectl(
            f"--kubeconfig={account.path}",
            "apply",
            "--server-side",
            "-f",
            "-",
            input=json.dumps(body),
            check=False,
        )
        assert (completed.returncode == 0) is allowed, completed.stderr


def test_admission_check_fails_clearly_when_no_webhook_answers(
    helm: pathlib.Path, cluster: TestCluster
) -> None:
    """Without the operator's webhook configurations the dry run is admitted undefaulted: the
    check says so instead of passing."""
    cluster.install_crds((CHART / "crds").resolve())
    assert not [
        item
        for item in cluster.kubectl_json("get", "mutatingwebhookconfigurations")["items"]
        if item["metadata"]["name"] == "intel-deviceplugins-mutating-webhook-configuration"
    ]
    args = job_args(helm, "intel-deviceplugins-admission-check", "devices={gpu}")
    assert args == ["lifecycle", "check-admission", "--devices=gpu", "--timeout=4m"]
    completed = lifecycle(cluster.kubeconfig, *args[:-1], "--timeout=5s")
    assert completed.returncode == 1
    assert "admitted without the defaulting webhook" in completed.stdout
    assert not cluster.kubectl_json("get", "gpudeviceplugins")["items"], "a dry run stores nothing"


def test_post_delete_hook_removes_the_secret_and_lease(
    helm: pathlib.Path,
    cluster: TestCluster,
    namespace: str,
    hook_rbac: list[dict[str, Any]],
    tmp_path: pathlib.Path,
) -> None:
    secret = "intel-deviceplugins-webhook-server-cert"
    lease = "d1c7b6d5.intel.com"
    cluster.kubectl("create", "secret", "generic", secret, "-n", namespace)
    cluster.kubectl("create", "secret", "generic", "unrelated", "-n", namespace)
    cluster.kubectl(
        "apply",
        "-f",
        "-",
        input=json.dumps(
            {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {"name": lease, "namespace": namespace},
                "spec": {},
            }
        ),
    )
    apply_objects(cluster, hook_objects(helm, namespace, "post-delete"), hook_rbac)
    account = operators.token_kubeconfig(
        cluster, "intel-deviceplugins-cleanup", namespace, tmp_path / "cleanup.kubeconfig"
    )
    args = job_args(helm, "intel-deviceplugins-cleanup", namespace=namespace)
    completed = lifecycle(account.path, *args)
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert completed.stdout.splitlines() == [f"secret/{secret} deleted", f"lease/{lease} deleted"]
    left = cluster.kubectl_json("get", "secrets,leases", "-n", namespace)["items"]
    assert [item["metadata"]["name"] for item in left] == ["unrelated"]
    again = lifecycle(account.path, *args)
    assert again.returncode == 0, again.stdout + again.stderr
    assert again.stdout.splitlines() == [f"secret/{secret} not found", f"lease/{lease} not found"]

    # Mounted certificates are the user's: only the Lease is deleted then.
    mounted = job_args(helm, "intel-deviceplugins-cleanup", "certificates.mode=mounted")
    assert not [a for a in mounted if a.startswith("--secret")]


# --- Every value renders, with helm 4 and helm 3 ---

DIGEST = "sha256:" + "ab" * 32


def _deployment_pod(documents: list[dict[str, Any]]) -> dict[str, Any]:
    (deployment,) = [d for d in documents if d["kind"] == "Deployment"]
    pod: dict[str, Any] = deployment["spec"]["template"]
    return pod


def _pods(documents: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The pod specs of the operator, the hook Jobs and the test Pod."""
    specs = [d["spec"]["template"]["spec"] for d in documents if d["kind"] in {"Deployment", "Job"}]
    return specs + [d["spec"] for d in documents if d["kind"] == "Pod"]


def _names(documents: list[dict[str, Any]]) -> set[str]:
    return {d["metadata"]["name"] for d in documents}


def _hooked(documents: list[dict[str, Any]], hook: str) -> list[str]:
    return [
        d["metadata"]["name"]
        for d in documents
        if hook in (d["metadata"].get("annotations") or {}).get("helm.sh/hook", "").split(",")
    ]


TOGGLES: list[tuple[tuple[str, ...], Any]] = [
    (
        ("priorityClassName=system-cluster-critical",),
        lambda docs: all(p["priorityClassName"] == "system-cluster-critical" for p in _pods(docs)),
    ),
    (
        ("podLabels.team=accel", "podAnnotations.example\\.com/owner=ops"),
        lambda docs: (
            _deployment_pod(docs)["metadata"]["labels"]["team"] == "accel"
            and _deployment_pod(docs)["metadata"]["annotations"] == {"example.com/owner": "ops"}
            and "team"
            not in next(d for d in docs if d["kind"] == "Deployment")["spec"]["selector"][
                "matchLabels"
            ]
        ),
    ),
    (
        ("extraEnv[0].name=HTTPS_PROXY", "extraEnv[0].value=http://proxy:3128"),
        lambda docs: (
            {"name": "HTTPS_PROXY", "value": "http://proxy:3128"}
            in _deployment_pod(docs)["spec"]["containers"][0]["env"]
        ),
    ),
    (
        (f"image.digest={DIGEST}",),
        lambda docs: (
            {c["image"] for p in _pods(docs) for c in p["containers"]}
            == {f"docker.io/intel/intel-deviceplugin-operator-py@{DIGEST}"}
        ),
    ),
    (
        ("securityContext.readOnlyRootFilesystem=false", "podSecurityContext.fsGroup=2000"),
        lambda docs: all(
            p["securityContext"]["fsGroup"] == 2000
            and p["containers"][0]["securityContext"]["readOnlyRootFilesystem"] is False
            for p in _pods(docs)
        ),
    ),
    (
        ("upgradeCRDs=false",),
        lambda docs: not _hooked(docs, "pre-upgrade") and not _hooked(docs, "pre-install"),
    ),
    (
        ("admissionCheck.enabled=false",),
        lambda docs: not _hooked(docs, "post-install") and _hooked(docs, "test"),
    ),
    (("cleanupOnUninstall=false",), lambda docs: not _hooked(docs, "post-delete")),
    (
        ("leaderElect=false", "certificates.mode=mounted"),
        lambda docs: not _hooked(docs, "post-delete"),
    ),
    (("nodeFeatureRule=true",), lambda docs: True),
    (("monitoring.serviceMonitor.enabled=true",), lambda docs: True),
    (("monitoring.prometheusRule.enabled=true",), lambda docs: True),
    (("monitoring.dashboard.enabled=true",), lambda docs: True),
]


def test_default_hooks(helm: pathlib.Path) -> None:
    documents = rendered(helm)
    assert sorted(_hooked(documents, "pre-upgrade")) == sorted(_hooked(documents, "pre-install"))
    assert set(_hooked(documents, "pre-upgrade")) == {"intel-deviceplugins-crd-upgrade"}
    assert _hooked(documents, "post-install") == ["intel-deviceplugins-admission-check"]
    assert _hooked(documents, "test") == ["intel-deviceplugins-test-admission"]
    assert set(_hooked(documents, "post-delete")) == {"intel-deviceplugins-cleanup"}
    # Hook pods run as hardened as the operator.
    operator_pod = _deployment_pod(documents)["spec"]
    for pod in _pods(documents):
        assert pod["securityContext"] == operator_pod["securityContext"]
        assert (
            pod["containers"][0]["securityContext"]
            == operator_pod["containers"][0]["securityContext"]
        )


@pytest.mark.parametrize(("values", "check"), TOGGLES, ids=[",".join(v) for v, _ in TOGGLES])
def test_every_value_lints_and_renders(
    helm: pathlib.Path, values: tuple[str, ...], check: Any
) -> None:
    settings = [f"--set={value}" for value in values]
    linted = run([str(helm), "lint", "--strict", str(CHART), *settings])
    assert linted.returncode == 0, linted.stdout + linted.stderr
    documents = rendered(helm, *values)
    assert check(documents), values


def test_helm3_lints_and_renders_the_same(helm: pathlib.Path, helm3: pathlib.Path) -> None:
    """The chart works with Helm 3 too (apiVersion v2, JSON schema draft 7): same objects,
    same schema errors."""
    assert run([str(helm3), "version", "--short"]).stdout.startswith("v3.21.4")
    assert run([str(helm), "version", "--short"]).stdout.startswith("v4.3.2")
    linted = run([str(helm3), "lint", "--strict", str(CHART)])
    assert linted.returncode == 0, linted.stdout + linted.stderr
    assert template(helm3) == template(helm)
    assert rendered(helm3) == rendered(helm)
    for binary in (helm, helm3):
        bad = run([str(binary), "template", RELEASE, str(CHART), "--set=certificates.mode=vault"])
        assert bad.returncode != 0
        assert "at '/certificates/mode': value must be one of" in bad.stderr
