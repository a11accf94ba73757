"""Placement as the DaemonSet controller judges it: labels, taints, tolerations."""

from __future__ import annotations

import pytest

from deviceplugin_operator.inspection import scheduling

TAINT = {"key": "dedicated", "value": "ai", "effect": "NoSchedule"}


@pytest.mark.parametrize(
    ("toleration", "tolerated"),
    [
        ({"key": "dedicated", "operator": "Equal", "value": "ai"}, True),
        ({"key": "dedicated", "value": "ai", "effect": "NoSchedule"}, True),
        ({"key": "dedicated", "operator": "Exists"}, True),
        ({"operator": "Exists"}, True),
        ({"key": "dedicated", "value": "other"}, False),
        ({"key": "dedicated", "operator": "Exists", "effect": "NoExecute"}, False),
        ({"value": "ai"}, False),
    ],
)
def test_tolerates(toleration: dict[str, str], tolerated: bool) -> None:
    assert scheduling.tolerates(toleration, TAINT) is tolerated


def test_untolerated_taints_count_the_daemonset_controllers_tolerations() -> None:
    taints = [
        TAINT,
        {"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"},
        {"key": "soft", "effect": "PreferNoSchedule"},
    ]
    assert scheduling.untolerated_taints(taints, []) == ["dedicated=ai:NoSchedule"]
    assert scheduling.untolerated_taints(taints, [{"key": "dedicated", "value": "ai"}]) == []


def test_selector_mismatches_name_missing_and_different_labels() -> None:
    found = scheduling.selector_mismatches({"a": "true", "b": "1", "c": "x"}, {"b": "2", "c": "x"})
    assert [str(m) for m in found] == [
        "label a=true is missing",
        "label b is '2', the nodeSelector wants '1'",
    ]


def test_affinity_nodes_of_an_unscheduled_daemonset_pod() -> None:
    term = {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n1"]}]}
    pod = {
        "spec": {
            "affinity": {
                "nodeAffinity": {
                    "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [term]}
                }
            }
        }
    }
    assert scheduling.affinity_nodes(pod) == ["n1"]
    assert scheduling.affinity_nodes({"spec": {}}) == []
