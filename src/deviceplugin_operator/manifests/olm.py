"""The OLM bundle (``bundle/``) generated from the models and the manifests under
deployments/operator: ``make bundle`` writes it, ``make verify`` fails when it is stale.

What goes where, and why:

* ``manifests/<package>.clusterserviceversion.yaml``: the owned CRDs with spec and status
  descriptors taken from the structural schemas (``crd``); the install strategy with the
  Deployment of ``manager/manager.yaml`` as kustomize's ``default`` renders it (name prefix,
  labels) plus ``--webhook-certs=mounted``: OLM mounts its own serving certificate at
  ``/tmp/k8s-webhook-server/serving-certs/tls.{crt,key}`` (``--webhook-cert-dir``'s default),
  and names the webhook configurations itself, so the operator must neither mint a
  certificate nor patch configurations by name; ``clusterPermissions`` / ``permissions`` from
  the generated ClusterRole and Roles (plus the leader election and metrics review roles);
  the webhook definitions from the generated webhook configurations; install modes
  (AllNamespaces only: the operator watches every namespace); ``alm-examples`` from
  ``samples/``; icon, keywords, links, maintainers, ``minKubeVersion``.
* ``manifests/``: the CRDs as ``crd/bases`` has them, and the objects OLM does not derive from
  the CSV: the plugins' ServiceAccount, the metrics Service, the metrics reader ClusterRole, the
  PodDisruptionBudget and the NetworkPolicy (all kinds a registry+v1 bundle may carry).
* ``metadata/annotations.yaml`` and ``bundle.Dockerfile``: the same bundle labels.

Two things OLM cannot express, adapted here and said in docs/install.md: the Events Role
lives in ``default`` (OLM grants Roles only in the install namespace), so its rule joins the
cluster permissions; and OLM's webhook definitions have no ``matchConditions``, so the Pod
mutators, which would then see every Pod created in the cluster, get ``failurePolicy: Ignore``
(the reference's policy) rather than make every Pod wait on the operator.
"""

from __future__ import annotations

import argparse
import base64
import copy
import difflib
import importlib.metadata
import json
import pathlib
import re
import sys
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import yaml

from deviceplugin_operator import devices
from deviceplugin_operator.manifests import crd, rbac, rendering, webhooks

PACKAGE = "intel-deviceplugin-operator"
VERSION = importlib.metadata.version(PACKAGE)
"""The operator's version (pyproject.toml); the CSV is ``<PACKAGE>.v<VERSION>``."""
CHANNEL = "stable"
MIN_KUBE_VERSION = "1.28.0"
"""docs/install.md's prerequisite."""

MANIFESTS = "manifests"
METADATA = "metadata"
CSV_FILE = f"{MANIFESTS}/{PACKAGE}.clusterserviceversion.yaml"
ANNOTATIONS_FILE = f"{METADATA}/annotations.yaml"
DOCKERFILE = "bundle.Dockerfile"
"""In ``bundle/``, which is its build context: ``docker build -f bundle/bundle.Dockerfile -t
<bundle image> bundle``."""

DEPLOYMENT_NAME = rbac.NAME_PREFIX + "controller-manager"
SERVICE_ACCOUNT = rbac.NAME_PREFIX + "controller-manager"
MOUNTED_CERTIFICATES = "--webhook-certs=mounted"
WEBHOOK_PORT = 9443
KUSTOMIZE_LABELS: Mapping[str, str] = {
    "app.kubernetes.io/name": "intel-deviceplugin-operator",
    "app.kubernetes.io/part-of": "intel-device-plugins",
}
"""The ``labels`` of deployments/operator/default (with ``includeTemplates``)."""

ICON_SVG = """\
<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 64 64">
<rect x="14" y="14" width="36" height="36" rx="4" fill="#0068b5"/>
<rect x="22" y="22" width="20" height="20" rx="2" fill="#fff"/>
<path d="M20 6v8M28 6v8M36 6v8M44 6v8M20 50v8M28 50v8M36 50v8M44 50v8M6 20h8M6 28h8M6 36h8
M6 44h8M50 20h8M50 28h8M50 36h8M50 44h8" stroke="#0068b5" stroke-width="3"/>
</svg>
"""
"""A chip: ours, drawn for this bundle."""

DESCRIPTION = """\
Installs and manages the [Intel device plugins for Kubernetes]\
(https://github.com/intel/intel-device-plugins-for-kubernetes) (GPU, QAT, SGX, FPGA, DSA, IAA,
DLB, NPU). Create a resource such as a `GpuDevicePlugin` and the operator runs the plugin as a
DaemonSet on the selected nodes, keeps it in the desired state and reports DESIRED/READY,
conditions and Events back on the resource.

It is a drop-in replacement for Intel's Go operator: same API group `deviceplugin.intel.com/v1`,
same kinds and fields, same DaemonSets; an existing installation is adopted in place.

**Prerequisites.** Node Feature Discovery with Intel's NodeFeatureRules, which put the
`intel.feature.node.kubernetes.io/*` labels the samples select nodes by. The plugins run
privileged in the operator's namespace: install into a namespace labelled
`pod-security.kubernetes.io/enforce: privileged`.
"""

KEYWORDS = (
    "intel", "device plugin", "gpu", "qat", "sgx", "fpga", "dsa", "iaa", "dlb", "npu",
    "accelerator", "hardware",
)  # fmt: skip
LINKS = (
    ("Intel Device Plugins for Kubernetes", "https://github.com/intel/intel-device-plugins-for-kubernetes"),
    ("Device plugins", "https://kubernetes.io/docs/concepts/extend-kubernetes/compute-storage-net/device-plugins/"),
)  # fmt: skip
MAINTAINERS = (
    {"name": "intel-deviceplugin-operator maintainers", "email": "maintainers@example.com"},
)
"""Placeholder: set before publishing to OperatorHub."""
PROVIDER = "intel-deviceplugin-operator project"

_X_DESCRIPTOR = "urn:alm:descriptor:"
_SPEC_UI: Mapping[str, str] = {
    "boolean": _X_DESCRIPTOR + "com.tectonic.ui:booleanSwitch",
    "integer": _X_DESCRIPTOR + "com.tectonic.ui:number",
    "string": _X_DESCRIPTOR + "com.tectonic.ui:text",
}
_STATUS_UI: Mapping[str, str] = {
    "conditions": _X_DESCRIPTOR + "io.kubernetes.conditions",
    "controlledDaemonSet": _X_DESCRIPTOR + "io.kubernetes:apps:v1:DaemonSet",
}


class BundleError(ValueError):
    """An input under deployments/operator is not what the bundle can be built from."""


def _load(path: pathlib.Path) -> list[dict[str, Any]]:
    try:
        documents = [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d]
    except (OSError, yaml.YAMLError) as error:
        raise BundleError(f"{path}: {error}") from error
    return documents


def _one(objects: Iterable[Mapping[str, Any]], kind: str, name: str, where: str) -> dict[str, Any]:
    for item in objects:
        if item.get("kind") == kind and item.get("metadata", {}).get("name") == name:
            return copy.deepcopy(dict(item))
    raise BundleError(f"{where}: no {kind} named {name!r}; the bundle is built from it")


def _humanize(name: str) -> str:
    words = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", " ", name).split()
    return " ".join(word[:1].upper() + word[1:] for word in words)


def _first_sentence(text: str) -> str:
    paragraph = " ".join(text.split("\n\n", 1)[0].split())
    found = re.match(r"(.+?\.)(\s|$)", paragraph)
    return found.group(1) if found else paragraph


def descriptors(schema: Mapping[str, Any], ui: Mapping[str, str], *, by_name: bool) -> list[Any]:
    """One descriptor per top-level property of a structural schema, in name order."""
    result = []
    for name, prop in sorted(schema.get("properties", {}).items()):
        descriptor: dict[str, Any] = {
            "description": _first_sentence(prop.get("description", "")),
            "displayName": _humanize(name),
            "path": name,
        }
        x_descriptor = ui.get(name) if by_name else ui.get(prop.get("type", ""))
        if x_descriptor is not None:
            descriptor["x-descriptors"] = [x_descriptor]
        result.append(descriptor)
    return result


def _display_name(definition: crd.Definition) -> str:
    for kind in devices.KINDS.values():
        if kind.resource == definition.resource:
            return f"Intel {kind.title} Device Plugin"
    return _humanize(definition.resource.kind).replace("Fpga", "FPGA")


def owned_crds() -> list[dict[str, Any]]:
    owned = []
    for definition in crd.definitions():
        resource = definition.resource
        entry: dict[str, Any] = {
            "description": _first_sentence(definition.description),
            "displayName": _display_name(definition),
            "kind": resource.kind,
            "name": resource.crd_name,
            "specDescriptors": descriptors(
                crd.structural_schema(definition.spec), _SPEC_UI, by_name=False
            ),
            "statusDescriptors": descriptors(
                crd.structural_schema(definition.status), _STATUS_UI, by_name=True
            ),
            "version": resource.version,
        }
        if definition.status_subresource:  # the device plugin kinds: each owns a DaemonSet
            entry["resources"] = [{"kind": "DaemonSet", "name": "", "version": "v1"}]
        owned.append(entry)
    return sorted(owned, key=lambda entry: str(entry["name"]))


def deployment(operator: pathlib.Path) -> dict[str, Any]:
    """The operator's Deployment as ``kubectl kustomize default`` renders it, with
    ``--webhook-certs=mounted`` added: OLM's certificate is mounted."""
    source = operator / "manager" / "manager.yaml"
    rendered = _one(_load(source), "Deployment", "controller-manager", str(source))
    rendered["metadata"]["name"] = DEPLOYMENT_NAME
    rendered["metadata"].pop("namespace", None)
    rendered["metadata"]["labels"] = {**rendered["metadata"].get("labels", {}), **KUSTOMIZE_LABELS}
    template = rendered["spec"]["template"]
    template["metadata"]["labels"] = {**template["metadata"].get("labels", {}), **KUSTOMIZE_LABELS}
    pod = template["spec"]
    pod["serviceAccountName"] = rbac.NAME_PREFIX + pod["serviceAccountName"]
    manager = next((c for c in pod["containers"] if c.get("name") == "manager"), None)
    if manager is None:
        raise BundleError(f"{source}: the Deployment has no container named 'manager'")
    if any(str(arg).startswith("--webhook-certs=") for arg in manager.get("args", [])):
        raise BundleError(f"{source}: --webhook-certs is set; the bundle sets it to mounted")
    manager["args"] = [*manager.get("args", []), MOUNTED_CERTIFICATES]
    return rendered


def _rules(role: Mapping[str, Any]) -> list[Any]:
    return copy.deepcopy(list(role.get("rules", [])))


def permissions(operator: pathlib.Path) -> tuple[list[Any], list[Any]]:
    """(clusterPermissions, permissions) of the operator's ServiceAccount."""
    generated = operator / rbac.ROLE
    roles = _load(generated)
    cluster_role = _one(roles, "ClusterRole", rbac.NAME, str(generated))
    namespaced_role = _one(roles, "Role", rbac.NAME, str(generated))
    events_role = _one(roles, "Role", rbac.EVENTS_ROLE, str(generated))
    election = operator / "rbac" / "leader_election_role.yaml"
    metrics_auth = operator / "rbac" / "metrics_auth_role.yaml"
    cluster_rules = (
        _rules(cluster_role)
        + _rules(_one(_load(metrics_auth), "ClusterRole", "metrics-auth-role", str(metrics_auth)))
        + _rules(events_role)
    )
    namespaced_rules = _rules(namespaced_role) + _rules(
        _one(_load(election), "Role", "leader-election-role", str(election))
    )
    return (
        [{"rules": cluster_rules, "serviceAccountName": SERVICE_ACCOUNT}],
        [{"rules": namespaced_rules, "serviceAccountName": SERVICE_ACCOUNT}],
    )


def webhook_definitions(operator: pathlib.Path) -> list[dict[str, Any]]:
    """OLM's form of the generated webhook configurations, in name order."""
    source = operator / webhooks.MANIFEST
    result = []
    for configuration in _load(source):
        kind = configuration["kind"]
        webhook_type = {
            "MutatingWebhookConfiguration": "MutatingAdmissionWebhook",
            "ValidatingWebhookConfiguration": "ValidatingAdmissionWebhook",
        }.get(kind)
        if webhook_type is None:
            raise BundleError(f"{source}: unexpected {kind}")
        for hook in configuration.get("webhooks", []):
            service = hook.get("clientConfig", {}).get("service")
            if service is None or "path" not in service:
                raise BundleError(f"{source}: webhook {hook.get('name')} has no Service path")
            definition: dict[str, Any] = {
                "admissionReviewVersions": hook["admissionReviewVersions"],
                "containerPort": 443,
                "deploymentName": DEPLOYMENT_NAME,
                "failurePolicy": "Ignore" if "matchConditions" in hook else hook["failurePolicy"],
                "generateName": hook["name"],
                "rules": hook["rules"],
                "sideEffects": hook["sideEffects"],
                "targetPort": WEBHOOK_PORT,
                "type": webhook_type,
                "webhookPath": service["path"],
            }
            for optional in (
                "matchPolicy",
                "objectSelector",
                "reinvocationPolicy",
                "timeoutSeconds",
            ):
                if optional in hook:
                    definition[optional] = hook[optional]
            result.append(definition)
    return sorted(result, key=lambda definition: (definition["type"], definition["generateName"]))


def samples(operator: pathlib.Path) -> list[dict[str, Any]]:
    """Every sample object, in the order of samples/kustomization.yaml."""
    directory = operator / "samples"
    kustomization = _load(directory / "kustomization.yaml")
    listed = kustomization[0].get("resources", []) if kustomization else []
    if not listed:
        raise BundleError(f"{directory / 'kustomization.yaml'}: lists no resources")
    return [item for name in listed for item in _load(directory / name)]


def _extra_objects(operator: pathlib.Path) -> dict[str, dict[str, Any]]:
    """Bundle objects beside the CSV and CRDs, keyed by file name under manifests/."""
    picked = (
        ("rbac/service_account.yaml", "ServiceAccount", "plugin"),
        ("default/metrics_service.yaml", "Service", "controller-manager-metrics-service"),
        ("rbac/metrics_reader_role.yaml", "ClusterRole", "metrics-reader"),
        ("manager/pdb.yaml", "PodDisruptionBudget", "controller-manager"),
        ("default/network_policy.yaml", "NetworkPolicy", "controller-manager"),
    )
    result = {}
    for relative, kind, name in picked:
        item = _one(_load(operator / relative), kind, name, str(operator / relative))
        item["metadata"]["name"] = rbac.NAME_PREFIX + name
        item["metadata"].pop("namespace", None)
        item["metadata"]["labels"] = {**item["metadata"].get("labels", {}), **KUSTOMIZE_LABELS}
        result[f"{rbac.NAME_PREFIX}{name}_{kind.lower()}.yaml"] = item
    return result


def cluster_service_version(operator: pathlib.Path) -> dict[str, Any]:
    manager = deployment(operator)
    container = next(c for c in manager["spec"]["template"]["spec"]["containers"])
    cluster_permissions, namespaced_permissions = permissions(operator)
    icon = base64.b64encode(ICON_SVG.encode()).decode()
    return {
        "apiVersion": "operators.coreos.com/v1alpha1",
        "kind": "ClusterServiceVersion",
        "metadata": {
            "annotations": {
                "alm-examples": json.dumps(samples(operator), indent=2),
                "capabilities": "Seamless Upgrades",
                # OperatorHub's standard set lacks the "Drivers and plugins" of Intel's bundle.
                "categories": "AI/Machine Learning, Security",
                "containerImage": container["image"],
                "description": "Installs and manages the Intel device plugins for Kubernetes.",
                "operators.operatorframework.io/suggested-namespace": "inteldeviceplugins-system",
                "repository": "https://github.com/intel/intel-device-plugins-for-kubernetes",
                "support": PROVIDER,
            },
            # The Deployment's nodeSelector: amd64 nodes (the image is built for amd64).
            "labels": {
                "operatorframework.io/arch.amd64": "supported",
                "operatorframework.io/os.linux": "supported",
            },
            "name": f"{PACKAGE}.v{VERSION}",
        },
        "spec": {
            "customresourcedefinitions": {"owned": owned_crds()},
            "description": DESCRIPTION,
            "displayName": "Intel Device Plugins Operator (Python)",
            "icon": [{"base64data": icon, "mediatype": "image/svg+xml"}],
            "install": {
                "spec": {
                    "clusterPermissions": cluster_permissions,
                    "deployments": [
                        {
                            "label": manager["metadata"]["labels"],
                            "name": manager["metadata"]["name"],
                            "spec": manager["spec"],
                        }
                    ],
                    "permissions": namespaced_permissions,
                },
                "strategy": "deployment",
            },
            "installModes": [
                {"supported": mode == "AllNamespaces", "type": mode}
                for mode in ("OwnNamespace", "SingleNamespace", "MultiNamespace", "AllNamespaces")
            ],
            "keywords": list(KEYWORDS),
            "links": [{"name": name, "url": url} for name, url in LINKS],
            "maintainers": [dict(m) for m in MAINTAINERS],
            "maturity": "alpha",
            "minKubeVersion": MIN_KUBE_VERSION,
            "provider": {"name": PROVIDER},
            "version": VERSION,
            "webhookdefinitions": webhook_definitions(operator),
        },
    }


def bundle_labels() -> dict[str, str]:
    prefix = "operators.operatorframework.io.bundle"
    return {
        f"{prefix}.channel.default.v1": CHANNEL,
        f"{prefix}.channels.v1": CHANNEL,
        f"{prefix}.manifests.v1": f"{MANIFESTS}/",
        f"{prefix}.mediatype.v1": "registry+v1",
        f"{prefix}.metadata.v1": f"{METADATA}/",
        f"{prefix}.package.v1": PACKAGE,
    }


HEADER = "# Generated by make bundle from src/deviceplugin_operator; do not edit.\n"


def _document(content: Any) -> str:
    return HEADER + rendering.yaml_document(content, start=False).removeprefix(rendering.HEADER)


def _dockerfile() -> str:
    labels = "".join(f"LABEL {key}={value}\n" for key, value in bundle_labels().items())
    return (
        HEADER
        + "# The OLM bundle image: docker build -f bundle/bundle.Dockerfile -t <image> bundle\n"
        + "FROM scratch\n\n"
        + labels
        + "\nCOPY manifests /manifests/\nCOPY metadata /metadata/\n"
    )


def files(operator: pathlib.Path) -> dict[str, str]:
    """The bundle's files keyed by POSIX path under ``bundle/``."""
    generated = {
        DOCKERFILE: _dockerfile(),
        CSV_FILE: _document(cluster_service_version(operator)),
        ANNOTATIONS_FILE: _document({"annotations": bundle_labels()}),
    }
    for definition in crd.definitions():
        resource = definition.resource
        generated[f"{MANIFESTS}/{resource.crd_name}.yaml"] = _document(
            crd.custom_resource_definition(definition)
        )
    for name, item in _extra_objects(operator).items():
        generated[f"{MANIFESTS}/{name}"] = _document(item)
    return generated


def _expected(root: pathlib.Path, operator: pathlib.Path) -> dict[pathlib.Path, str]:
    bundle = root / "bundle"
    return {bundle / path: content for path, content in files(operator).items()}


def _stale(root: pathlib.Path, expected: Mapping[pathlib.Path, str]) -> list[pathlib.Path]:
    owned = [root / "bundle", root / "bundle" / MANIFESTS, root / "bundle" / METADATA]
    return [
        path
        for directory in owned
        for path in sorted(directory.glob("*"))
        if path.is_file() and path not in expected
    ]


def write(root: pathlib.Path, operator: pathlib.Path) -> list[pathlib.Path]:
    """Write ``bundle/`` under ``root``; return what changed."""
    expected = _expected(root, operator)
    changed = []
    for path, content in expected.items():
        if not path.exists() or path.read_text(encoding="utf-8") != content:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(content, encoding="utf-8")
            changed.append(path)
    for path in _stale(root, expected):
        path.unlink()
        changed.append(path)
    return changed


def differences(root: pathlib.Path, operator: pathlib.Path) -> str:
    """A unified diff from the checked-in bundle to the generated one; empty if current."""
    expected = _expected(root, operator)
    chunks: list[str] = []
    for path, content in expected.items():
        current = path.read_text(encoding="utf-8") if path.exists() else ""
        if current != content:
            name = path.relative_to(root).as_posix()
            chunks.extend(
                difflib.unified_diff(
                    current.splitlines(keepends=True),
                    content.splitlines(keepends=True),
                    fromfile=f"a/{name}" if path.exists() else "/dev/null",
                    tofile=f"b/{name}",
                )
            )
    for path in _stale(root, expected):
        chunks.append(f"stale file: {path.relative_to(root).as_posix()}\n")
    return "".join(chunks)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m deviceplugin_operator.manifests.olm write|check [ROOT]`` (make bundle/verify)."""
    parser = argparse.ArgumentParser(prog="python -m deviceplugin_operator.manifests.olm")
    parser.add_argument("action", choices=["write", "check"])
    parser.add_argument(
        "root", nargs="?", type=pathlib.Path, default=pathlib.Path("."), help="repository root"
    )
    args = parser.parse_args(argv)
    operator = args.root / "deployments" / "operator"
    try:
        if args.action == "write":
            for path in write(args.root, operator):
                print(f"wrote {path}")
            return 0
        diff = differences(args.root, operator)
    except BundleError as error:
        print(f"cannot build the OLM bundle: {error}", file=sys.stderr)
        return 2
    if diff:
        sys.stdout.write(diff)
        print("The OLM bundle under bundle/ is stale: run make bundle")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
