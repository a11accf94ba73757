"""Answers that the cluster tests do not stage: no pod, not ready, an init container that
crashes, a refused resource that overlaps nobody, a pod pinned to its node but unscheduled."""

from __future__ import annotations

from typing import Any

from deviceplugin_operator.inspection import diagnosis

LABEL = "intel.feature.node.kubernetes.io/gpu"


def node(name: str, **allocatable: str) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "labels": {LABEL: "true", "kubernetes.io/arch": "amd64"}},
        "status": {"allocatable": dict(allocatable), "capacity": dict(allocatable)},
    }


def resource(name: str, uid: str, image: str = "intel/intel-gpu-plugin:0.36.0") -> dict[str, Any]:
    return {
        "apiVersion": "deviceplugin.intel.com/v1",
        "kind": "GpuDevicePlugin",
        "metadata": {"name": name, "uid": uid},
        "spec": {"image": image, "nodeSelector": {LABEL: "true"}},
    }


def daemonset(owner_uid: str, uid: str) -> dict[str, Any]:
    return {
        "metadata": {
            "name": f"intel-gpu-plugin-{uid}",
            "namespace": "p",
            "uid": uid,
            "ownerReferences": [{"controller": True, "uid": owner_uid, "kind": "GpuDevicePlugin"}],
        },
        "spec": {"template": {"spec": {"nodeSelector": {LABEL: "true"}}}},
        "status": {"desiredNumberScheduled": 1, "numberReady": 0},
    }


def pod(ds_uid: str, node_name: str | None, status: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = (
        {"nodeName": node_name}
        if node_name
        else {
            "affinity": {
                "nodeAffinity": {
                    "requiredDuringSchedulingIgnoredDuringExecution": {
                        "nodeSelectorTerms": [
                            {
                                "matchFields": [
                                    {"key": "metadata.name", "operator": "In", "values": ["n1"]}
                                ]
                            }
                        ]
                    }
                }
            }
        }
    )
    return {
        "metadata": {
            "name": "plugin-x",
            "namespace": "p",
            "ownerReferences": [{"controller": True, "uid": ds_uid, "kind": "DaemonSet"}],
        },
        "spec": spec,
        "status": status,
    }


def answer(snapshot: diagnosis.Snapshot, name: str = "a") -> diagnosis.Finding:
    (found,) = diagnosis.diagnose(snapshot, node="n1", kind="gpu", name=name)
    (finding,) = found.findings
    return finding


def snapshot(
    *pods: dict[str, Any], extra: list[dict[str, Any]] | None = None
) -> diagnosis.Snapshot:
    return diagnosis.Snapshot(
        [node("n1")],
        {"gpu": [resource("a", "ua"), *(extra or [])]},
        [daemonset("ua", "da")],
        list(pods),
    )


def test_no_pod() -> None:
    finding = answer(snapshot())
    assert finding.answer is diagnosis.Answer.NO_POD
    assert "p/intel-gpu-plugin-da has no pod" in finding.message


def test_not_ready() -> None:
    status = {
        "phase": "Running",
        "conditions": [{"type": "Ready", "status": "False", "message": "probe failed"}],
        "containerStatuses": [{"name": "c", "ready": False, "state": {"running": {}}}],
    }
    finding = answer(snapshot(pod("da", "n1", status)))
    assert finding.answer is diagnosis.Answer.NOT_READY
    assert "probe failed" in finding.message


def test_crashing_init_container() -> None:
    status = {
        "phase": "Pending",
        "initContainerStatuses": [
            {
                "name": "init",
                "restartCount": 2,
                "state": {"terminated": {"exitCode": 3, "reason": "Error", "message": "no idxd"}},
            }
        ],
    }
    finding = answer(snapshot(pod("da", "n1", status)))
    assert finding.answer is diagnosis.Answer.CRASHING
    assert "container init" in finding.message
    assert "exit code 3" in finding.message
    assert "no idxd" in finding.message


def test_unscheduled_pod_is_found_by_its_node_affinity() -> None:
    status = {
        "phase": "Pending",
        "conditions": [
            {
                "type": "PodScheduled",
                "status": "False",
                "reason": "Unschedulable",
                "message": "0/1 nodes",
            }
        ],
    }
    finding = answer(snapshot(pod("da", None, status)))
    assert finding.answer is diagnosis.Answer.PENDING
    assert "0/1 nodes" in finding.message


def test_a_refused_resource_has_no_daemonset_and_overlaps_nobody() -> None:
    ready = {
        "phase": "Running",
        "conditions": [{"type": "Ready", "status": "True"}],
        "containerStatuses": [{"name": "c", "ready": True, "state": {"running": {}}}],
    }
    bad = resource("bad", "ub", image="evil/evil-gpu-plugin:0.36.0")
    snap = diagnosis.Snapshot(
        [node("n1", **{"gpu.intel.com/i915": "1"})],
        {"gpu": [resource("a", "ua"), bad]},
        [daemonset("ua", "da")],
        [pod("da", "n1", ready)],
    )
    assert answer(snap).answer is diagnosis.Answer.READY
    refused = answer(snap, "bad")
    assert refused.answer is diagnosis.Answer.NO_DAEMONSET
    assert refused.node is None
    assert "invalid resource: incorrect image name" in refused.message
