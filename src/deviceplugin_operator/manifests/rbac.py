"""The operator's own RBAC, generated from the device registry: ``rbac/role.yaml``.

Least privilege, each rule for a request the operator makes:

* ClusterRole ``manager-role``: the enabled kinds' resources are read (get/list/watch; the
  operator never writes a spec) and their ``/status`` patched; ``/finalizers`` update only
  because the DaemonSets' owner reference sets ``blockOwnerDeletion``, which the
  OwnerReferencesPermissionEnforcement admission plugin (on in OpenShift) checks against it;
  with FPGA its mappings (AcceleratorFunctions, FpgaRegions) read in every namespace, for the
  FPGA Pod mutator; nodes listed and watched (never read one by one, never written) for the
  devices their plugins advertise; and only the operator's own two webhook configurations,
  by name, read and patched for the self-managed CA bundle.
* Role ``manager-events-role`` in ``default``: Events created and patched. Every Event the
  operator records is about one of its cluster-scoped resources, and the API server accepts
  those only in ``default`` (client-go's recorder puts them there), so no other namespace
  needs the grant. The Role carries the annotation ``EVENTS_NAMESPACE_ANNOTATION`` whose value
  kustomize's ``replacements`` copy into its and its binding's namespace, after the
  ``namespace:`` of an install has moved everything else.
* Role ``manager-role`` in the operator namespace, which is the plugin namespace of the
  shipped Deployment (``DEVICEPLUGIN_NAMESPACE`` from the pod's namespace): the plugin
  DaemonSets, their Pods, provisioning ConfigMaps (get), and the webhook certificate Secret by
  name (``create`` cannot be limited to a name). With another ``--deviceplugin-namespace``
  the same Role must be bound there.

Leader election (``rbac/leader_election_role.yaml``) and the secure-metrics reviews
(``rbac/metrics_auth_role.yaml``) keep the reference's hand-written files, so that patches
aimed at them keep applying. Names below are the rendered (prefixed) ones: kustomize does not
rewrite ``resourceNames``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from deviceplugin_operator import devices
from deviceplugin_operator.api import plugin
from deviceplugin_operator.manifests import rendering, webhooks

ROLE = "rbac/role.yaml"

NAME = "manager-role"
"""Name of the ClusterRole and of the Role before kustomize's ``intel-deviceplugins-``."""

NAME_PREFIX = "intel-deviceplugins-"
"""The ``namePrefix`` of deployments/operator/default."""

NAMESPACE = "system"
"""The placeholder namespace that kustomize replaces with the operator's."""

WEBHOOK_SECRET = NAME_PREFIX + "webhook-server-cert"
"""The Secret of the self-managed webhook certificate (``--webhook-secret``'s default)."""

WEBHOOK_CONFIGURATIONS: Mapping[str, str] = {
    "mutatingwebhookconfigurations": NAME_PREFIX + webhooks.MUTATING_NAME,
    "validatingwebhookconfigurations": NAME_PREFIX + webhooks.VALIDATING_NAME,
}
"""The operator's own webhook configurations, whose ``caBundle`` it writes, by resource."""

EVENTS_ROLE = "manager-events-role"
EVENTS_NAMESPACE = "default"
"""Where the API server keeps the Events of cluster-scoped objects."""

EVENTS_NAMESPACE_ANNOTATION = "deviceplugin.intel.com/events-namespace"

READ = ("get", "list", "watch")
WRITE_NAMED = ("get", "patch", "update")
NODES = ("list", "watch")
"""Nodes: the informer's LIST and WATCH, nothing else."""


def rule(
    group: str,
    resources: Iterable[str],
    verbs: Iterable[str],
    names: Sequence[str] = (),
) -> dict[str, Any]:
    """One PolicyRule, lists sorted and keys ordered as controller-gen writes them."""
    result: dict[str, Any] = {"apiGroups": [group]}
    if names:
        result["resourceNames"] = sorted(names)
    result["resources"] = sorted(resources)
    result["verbs"] = sorted(verbs)
    return result


def cluster_rules(
    kinds: Iterable[devices.DeviceKind[Any]] | None = None,
) -> list[dict[str, Any]]:
    """Rules of the ClusterRole for ``kinds`` (default: all): their resources, the webhook
    configurations, and what their Pod mutators read in every namespace (with FPGA:
    AcceleratorFunctions and FpgaRegions, read-only)."""
    chosen = list(devices.KINDS.values() if kinds is None else kinds)
    group = plugin.GROUP
    plurals = [kind.plural for kind in chosen]
    read: dict[str, set[str]] = {}
    for kind in chosen:
        for resource in kind.pod_mutator.reads if kind.pod_mutator else ():
            read.setdefault(resource.group, set()).add(resource.plural)
    return [
        *(
            rule("admissionregistration.k8s.io", [resource], [*READ, "patch", "update"], [name])
            for resource, name in sorted(WEBHOOK_CONFIGURATIONS.items())
        ),
        rule(group, plurals, READ),
        rule(group, [f"{plural}/finalizers" for plural in plurals], ["update"]),
        rule(group, [f"{plural}/status" for plural in plurals], WRITE_NAMED),
        *(rule(api_group, read[api_group], READ) for api_group in sorted(read)),
        rule("", ["nodes"], NODES),
    ]


def namespaced_rules() -> list[dict[str, Any]]:
    """Rules of the Role in the operator (= plugin) namespace."""
    return [
        rule("", ["configmaps"], ["get"]),
        rule("", ["pods"], READ),
        rule("", ["secrets"], ["create"]),
        rule("", ["secrets"], WRITE_NAMED, [WEBHOOK_SECRET]),
        rule("apps", ["daemonsets"], [*READ, "create", "delete", "patch", "update"]),
    ]


def events_rules() -> list[dict[str, Any]]:
    """Rules of the Role in ``EVENTS_NAMESPACE``."""
    return [rule("", ["events"], ["create", "patch"])]


def cluster_role() -> dict[str, Any]:
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": {"name": NAME},
        "rules": cluster_rules(),
    }


def role() -> dict[str, Any]:
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": {"name": NAME, "namespace": NAMESPACE},
        "rules": namespaced_rules(),
    }


def events_role() -> dict[str, Any]:
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": {
            "annotations": {EVENTS_NAMESPACE_ANNOTATION: EVENTS_NAMESPACE},
            "name": EVENTS_ROLE,
            "namespace": EVENTS_NAMESPACE,
        },
        "rules": events_rules(),
    }


def files() -> Mapping[str, str]:
    """``rbac/role.yaml``: the ClusterRole, the Role in the operator's namespace, the Role for
    Events."""
    documents = [
        rendering.yaml_document(cluster_role()),
        rendering.yaml_document(role()),
        rendering.yaml_document(events_role()),
    ]
    header = rendering.HEADER
    return {ROLE: header + "".join(doc.removeprefix(header) for doc in documents)}
