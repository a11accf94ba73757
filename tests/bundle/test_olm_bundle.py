"""The OLM bundle (bundle/, ``make bundle``): current, valid for operator-sdk's validators, and
the same install as ``kubectl apply -k deployments/operator/default``.

Validation runs tools/programs/bundle-validate, which calls the validators ``operator-sdk bundle
validate`` calls (github.com/operator-framework/api; operator-sdk's own module is not served
by the Go module proxy): the default ones and the ``suite=operatorframework`` optional ones. A
broken copy of the bundle must fail it, so a validator that passes everything cannot hide.
"""

from __future__ import annotations

import json
import pathlib
import shutil
import subprocess
from collections.abc import Callable, Iterable
from typing import Any

import pytest
import yaml
from bundle_paths import BUNDLE, OPERATOR, ROOT, kustomize

from deviceplugin_operator.manifests import crd, olm

CSV = BUNDLE / olm.CSV_FILE
K8S_VERSION = "1.33"


def load_csv(path: pathlib.Path = CSV) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(path.read_text())
    return loaded


def validate(validator: pathlib.Path, bundle: pathlib.Path, *options: str) -> tuple[int, str]:
    completed = subprocess.run(
        [str(validator), *options, str(bundle)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    return completed.returncode, completed.stdout + completed.stderr


def test_bundle_is_current() -> None:
    assert olm.differences(ROOT, OPERATOR) == "", "bundle/ is stale: run make bundle"


@pytest.mark.parametrize(
    "options",
    [
        (),
        (
            "--select-optional",
            "suite=operatorframework",
            "--optional-values",
            f"k8s-version={K8S_VERSION}",
        ),
        ("--select-optional", "name=community"),
    ],
    ids=["default", "operatorframework", "community"],
)
def test_bundle_passes_the_validators(validator: pathlib.Path, options: tuple[str, ...]) -> None:
    status, output = validate(validator, BUNDLE, *options)
    assert status == 0, output
    # Zero warnings too: a new one is a decision to make, not noise to scroll past.
    assert "0 error(s), 0 warning(s)" in output, output


def _drop_owned_crd_file(bundle: pathlib.Path) -> None:
    (bundle / olm.MANIFESTS / "gpudeviceplugins.deviceplugin.intel.com.yaml").unlink()


def _drop_owned_entry(bundle: pathlib.Path) -> None:
    path = bundle / olm.CSV_FILE
    csv = load_csv(path)
    owned = csv["spec"]["customresourcedefinitions"]["owned"]
    csv["spec"]["customresourcedefinitions"]["owned"] = [
        entry for entry in owned if entry["kind"] != "QatDevicePlugin"
    ]
    path.write_text(yaml.safe_dump(csv))


def _drop_package_label(bundle: pathlib.Path) -> None:
    path = bundle / olm.ANNOTATIONS_FILE
    annotations = yaml.safe_load(path.read_text())
    del annotations["annotations"]["operators.operatorframework.io.bundle.package.v1"]
    path.write_text(yaml.safe_dump(annotations))


def _bad_version(bundle: pathlib.Path) -> None:
    path = bundle / olm.CSV_FILE
    csv = load_csv(path)
    csv["spec"]["version"] = "one"
    path.write_text(yaml.safe_dump(csv))


def _unsupported_kind(bundle: pathlib.Path) -> None:
    daemonset = {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": {"name": "stray"},
        "spec": {},
    }
    (bundle / olm.MANIFESTS / "stray.yaml").write_text(yaml.safe_dump(daemonset))


@pytest.mark.parametrize(
    ("breakage", "expected"),
    [
        (_drop_owned_crd_file, 'CRD "deviceplugin.intel.com/v1, Kind=GpuDevicePlugin" not found'),
        (_drop_owned_entry, "Kind=QatDevicePlugin\" is present in bundle"),
        (_drop_package_label, 'missing annotation "operators.operatorframework.io.bundle.package'),
        (_bad_version, "version"),
        (_unsupported_kind, 'DaemonSet "stray": kind not supported'),
    ],
    ids=["owned-crd-missing", "crd-not-owned", "no-package", "bad-version", "unsupported-kind"],
)  # fmt: skip
def test_a_broken_bundle_fails(
    validator: pathlib.Path,
    tmp_path: pathlib.Path,
    breakage: Callable[[pathlib.Path], None],
    expected: str,
) -> None:
    broken = tmp_path / "bundle"
    shutil.copytree(BUNDLE, broken)
    breakage(broken)
    status, output = validate(validator, broken)
    assert status == 1, output
    assert "ERROR" in output, output
    assert expected in output, output


def _only(objects: Iterable[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    found = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind} {name}: {len(found)} found"
    return found[0]


def test_the_deployment_is_the_default_installs(default_install: list[dict[str, Any]]) -> None:
    """The CSV's Deployment is kustomize's, with one difference: OLM's certificate is mounted."""
    expected = _only(default_install, "Deployment", olm.DEPLOYMENT_NAME)
    [installed] = load_csv()["spec"]["install"]["spec"]["deployments"]
    assert installed["name"] == expected["metadata"]["name"]
    assert installed["label"] == expected["metadata"]["labels"]

    spec = json.loads(json.dumps(installed["spec"]))
    manager = next(c for c in spec["template"]["spec"]["containers"] if c["name"] == "manager")
    assert manager["args"][-1] == "--webhook-certs=mounted"
    manager["args"].pop()
    assert spec == expected["spec"]


def _rules_bound(install: list[dict[str, Any]], account: str) -> tuple[list[Any], list[Any]]:
    """(cluster-wide rules, rules in the operator's namespace) granted to ``account``."""
    namespace = next(o for o in install if o["kind"] == "Namespace")["metadata"]["name"]
    cluster: list[Any] = []
    namespaced: list[Any] = []
    for binding in install:
        if binding["kind"] not in ("ClusterRoleBinding", "RoleBinding"):
            continue
        if not any(s.get("name") == account for s in binding.get("subjects", [])):
            continue
        ref = binding["roleRef"]
        role_namespace = binding["metadata"].get("namespace")
        role = next(
            o
            for o in install
            if o["kind"] == ref["kind"]
            and o["metadata"]["name"] == ref["name"]
            and o["metadata"].get("namespace") in (None, role_namespace)
        )
        if binding["kind"] == "ClusterRoleBinding" or role_namespace != namespace:
            cluster.extend(role["rules"])  # default's Events Role: cluster-wide under OLM
        else:
            namespaced.extend(role["rules"])
    return cluster, namespaced


def _canonical(rules: Iterable[Any]) -> list[str]:
    return sorted(json.dumps(rule, sort_keys=True) for rule in rules)


def test_permissions_are_the_default_installs(default_install: list[dict[str, Any]]) -> None:
    cluster, namespaced = _rules_bound(default_install, olm.SERVICE_ACCOUNT)
    strategy = load_csv()["spec"]["install"]["spec"]
    [cluster_permissions] = strategy["clusterPermissions"]
    [permissions] = strategy["permissions"]
    assert cluster_permissions["serviceAccountName"] == olm.SERVICE_ACCOUNT
    assert permissions["serviceAccountName"] == olm.SERVICE_ACCOUNT
    assert _canonical(cluster_permissions["rules"]) == _canonical(cluster)
    assert _canonical(permissions["rules"]) == _canonical(namespaced)


def test_webhook_definitions_are_the_default_installs(
    default_install: list[dict[str, Any]],
) -> None:
    hooks = {
        (configuration["kind"], hook["name"]): hook
        for configuration in default_install
        if configuration["kind"].endswith("WebhookConfiguration")
        for hook in configuration["webhooks"]
    }
    definitions = {
        (
            definition["type"].replace("AdmissionWebhook", "WebhookConfiguration"),
            definition["generateName"],
        ): definition
        for definition in load_csv()["spec"]["webhookdefinitions"]
    }
    assert sorted(definitions) == sorted(hooks)
    for key, hook in hooks.items():
        definition = definitions[key]
        assert definition["deploymentName"] == olm.DEPLOYMENT_NAME
        assert definition["webhookPath"] == hook["clientConfig"]["service"]["path"]
        assert definition["targetPort"] == olm.WEBHOOK_PORT
        for field in ("rules", "sideEffects", "admissionReviewVersions", "timeoutSeconds"):
            assert definition.get(field) == hook.get(field), (key, field)
        assert definition.get("reinvocationPolicy") == hook.get("reinvocationPolicy"), key
        # OLM has no matchConditions: a Pod mutator would see every Pod, so it must not block.
        policy = "Ignore" if "matchConditions" in hook else hook["failurePolicy"]
        assert definition["failurePolicy"] == policy, key


def test_the_container_port_is_the_webhook_target() -> None:
    [installed] = load_csv()["spec"]["install"]["spec"]["deployments"]
    ports = {
        port["containerPort"]
        for container in installed["spec"]["template"]["spec"]["containers"]
        for port in container.get("ports", [])
    }
    assert olm.WEBHOOK_PORT in ports


def test_alm_examples_are_the_samples() -> None:
    examples = json.loads(load_csv()["metadata"]["annotations"]["alm-examples"])
    samples = kustomize(OPERATOR / "samples")  # kustomize sorts; the CSV keeps the listed order
    assert len(examples) == len(samples)
    assert _canonical(examples) == _canonical(samples)


def test_owned_crds_are_the_crds_with_descriptors() -> None:
    listed = load_csv()["spec"]["customresourcedefinitions"]["owned"]
    owned = {entry["name"]: entry for entry in listed}
    definitions = {definition.resource.crd_name: definition for definition in crd.definitions()}
    assert sorted(owned) == sorted(definitions)
    for name, definition in definitions.items():
        shipped = yaml.safe_load((BUNDLE / olm.MANIFESTS / f"{name}.yaml").read_text())
        assert shipped == crd.custom_resource_definition(definition)
        checked_in = OPERATOR / definition.file_name
        assert shipped == yaml.safe_load(checked_in.read_text())
        entry = owned[name]
        assert (entry["kind"], entry["version"]) == (
            definition.resource.kind,
            definition.resource.version,
        )
        spec_paths = {d["path"] for d in entry["specDescriptors"]}
        assert spec_paths == set(crd.structural_schema(definition.spec).get("properties", {}))
        status_paths = {d["path"] for d in entry["statusDescriptors"]}
        assert status_paths == set(crd.structural_schema(definition.status).get("properties", {}))
        assert all(d["description"] for d in entry["specDescriptors"]), name


def test_install_modes_are_all_namespaces_only() -> None:
    modes = {m["type"]: m["supported"] for m in load_csv()["spec"]["installModes"]}
    assert modes == {
        "AllNamespaces": True,
        "OwnNamespace": False,
        "SingleNamespace": False,
        "MultiNamespace": False,
    }


def test_the_dockerfile_labels_are_the_annotations() -> None:
    annotations = yaml.safe_load((BUNDLE / olm.ANNOTATIONS_FILE).read_text())["annotations"]
    labels = dict(
        line.removeprefix("LABEL ").split("=", 1)
        for line in (BUNDLE / olm.DOCKERFILE).read_text().splitlines()
        if line.startswith("LABEL ")
    )
    assert labels == annotations


def test_a_missing_input_is_named(tmp_path: pathlib.Path) -> None:
    operator = tmp_path / "operator"
    shutil.copytree(OPERATOR, operator)
    (operator / "manager" / "manager.yaml").write_text("kind: Namespace\nmetadata: {name: x}\n")
    with pytest.raises(olm.BundleError, match=r"manager\.yaml: no Deployment named"):
        olm.files(operator)
