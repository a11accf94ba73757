"""Whether a DaemonSet's pod can land on a node, as the DaemonSet controller decides it.

The controller creates a pod for a node when the pod template's ``nodeSelector`` (and required
node affinity) matches the node's labels and every ``NoSchedule``/``NoExecute`` taint of the
node is tolerated, counting the tolerations it adds to every DaemonSet pod itself. These pure
functions give the reason when it does not, so ``diagnose`` can name the label or the taint.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

DAEMONSET_TOLERATIONS: Sequence[Mapping[str, str]] = (
    {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute"},
    {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute"},
    {"key": "node.kubernetes.io/disk-pressure", "operator": "Exists", "effect": "NoSchedule"},
    {"key": "node.kubernetes.io/memory-pressure", "operator": "Exists", "effect": "NoSchedule"},
    {"key": "node.kubernetes.io/pid-pressure", "operator": "Exists", "effect": "NoSchedule"},
    {"key": "node.kubernetes.io/unschedulable", "operator": "Exists", "effect": "NoSchedule"},
)
"""What the DaemonSet controller adds to every DaemonSet pod
(``util.AddOrUpdateDaemonPodTolerations``; network-unavailable only for host-network pods)."""

_BLOCKING_EFFECTS = frozenset({"NoSchedule", "NoExecute"})


@dataclasses.dataclass(frozen=True)
class Mismatch:
    """A label the pod's nodeSelector wants that the node has not (or has another value of)."""

    key: str
    wanted: str
    found: str | None

    def __str__(self) -> str:
        if self.found is None:
            return f"label {self.key}={self.wanted} is missing"
        return f"label {self.key} is {self.found!r}, the nodeSelector wants {self.wanted!r}"


def selector_mismatches(selector: Mapping[str, str], labels: Mapping[str, str]) -> list[Mismatch]:
    """The entries of ``selector`` that ``labels`` do not satisfy."""
    return [
        Mismatch(key, wanted, labels.get(key))
        for key, wanted in sorted(selector.items())
        if labels.get(key) != wanted
    ]


def tolerates(toleration: Mapping[str, Any], taint: Mapping[str, Any]) -> bool:
    """core/v1 ``Toleration.ToleratesTaint``."""
    effect = toleration.get("effect") or ""
    if effect and effect != taint.get("effect"):
        return False
    key = toleration.get("key") or ""
    operator = toleration.get("operator") or "Equal"
    if key and key != taint.get("key"):
        return False
    if operator == "Exists":
        return True
    if not key:
        return False  # an empty key with Equal matches nothing (only Exists matches all)
    return str(toleration.get("value") or "") == str(taint.get("value") or "")


def untolerated_taints(
    taints: Sequence[Mapping[str, Any]], tolerations: Sequence[Mapping[str, Any]]
) -> list[str]:
    """The node's blocking taints (``key=value:Effect``) that no toleration covers."""
    every = [*tolerations, *DAEMONSET_TOLERATIONS]
    return [
        taint_text(taint)
        for taint in taints
        if taint.get("effect") in _BLOCKING_EFFECTS
        and not any(tolerates(toleration, taint) for toleration in every)
    ]


def taint_text(taint: Mapping[str, Any]) -> str:
    value = taint.get("value")
    return f"{taint.get('key')}{'=' + str(value) if value else ''}:{taint.get('effect')}"


def affinity_nodes(pod: Mapping[str, Any]) -> list[str]:
    """The node names a DaemonSet pod is pinned to by its required node affinity
    (``matchFields metadata.name``): how an unscheduled DaemonSet pod names its node."""
    affinity = ((pod.get("spec") or {}).get("affinity") or {}).get("nodeAffinity") or {}
    required = affinity.get("requiredDuringSchedulingIgnoredDuringExecution") or {}
    names: list[str] = []
    for term in required.get("nodeSelectorTerms") or ():
        for field in term.get("matchFields") or ():
            if field.get("key") == "metadata.name" and field.get("operator") == "In":
                names.extend(str(value) for value in field.get("values") or ())
    return names
