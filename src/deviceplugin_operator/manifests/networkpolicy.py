"""The NetworkPolicy of the default install: ``default/network_policy.yaml``.

It selects the operator's pods and lets in only the two ports that others must reach:

* the webhook port (``webhook-server``) from anywhere. The API server calls it, and the API
  server is in general no pod a selector could name: it runs on the host network of control
  plane nodes, outside the cluster (managed offerings), or behind konnectivity, depending on
  the distribution. Narrow this rule to the control plane's addresses (``ipBlock``) where they
  are known; SECURITY.md says what stays open otherwise.
* the metrics port (``https``) from pods in namespaces labelled ``metrics: enabled`` (the
  kubebuilder convention), e.g. ``kubectl label namespace monitoring metrics=enabled``.

Nothing else: other pods cannot reach the health port, and traffic from a pod's own node
(the kubelet's probes) is always allowed by NetworkPolicy. Egress is not restricted: the
operator's only peer is the API server, whose address a policy cannot portably name.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from deviceplugin_operator.manifests import rendering

PATH = "default/network_policy.yaml"
NAME = "controller-manager"
"""Before the default's ``namePrefix``."""

POD_LABELS: Mapping[str, str] = {
    "control-plane": "controller-manager",
    "manager": "intel-deviceplugin-operator",
}
"""The operator pods' labels (manager/manager.yaml)."""

WEBHOOK_PORT = "webhook-server"
METRICS_PORT = "https"
"""Container port names of the manager Deployment: a changed port number keeps the policy."""

METRICS_NAMESPACE_LABELS: Mapping[str, str] = {"metrics": "enabled"}


def network_policy() -> dict[str, Any]:
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"labels": dict(POD_LABELS), "name": NAME, "namespace": "system"},
        "spec": {
            "podSelector": {"matchLabels": dict(POD_LABELS)},
            "policyTypes": ["Ingress"],
            "ingress": [
                {"ports": [{"port": WEBHOOK_PORT, "protocol": "TCP"}]},
                {
                    "from": [
                        {"namespaceSelector": {"matchLabels": dict(METRICS_NAMESPACE_LABELS)}}
                    ],
                    "ports": [{"port": METRICS_PORT, "protocol": "TCP"}],
                },
            ],
        },
    }


def files() -> Mapping[str, str]:
    return {PATH: rendering.yaml_document(network_policy(), start=False)}
