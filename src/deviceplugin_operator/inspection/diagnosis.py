"""``diagnose``: for each resource and node, why there is (no) plugin and (no) device there.

A pure function of what was read from the cluster (``Snapshot``): the resources, the plugin
DaemonSets and pods, the nodes. For a node and a resource of a kind, the first answer that
holds, in this order, is the answer:

``NotSelected``        the nodeSelector wants a label the node has not (named); not a problem
``TaintNotTolerated``  a NoSchedule/NoExecute taint no toleration covers (named)
``Overlap``            another resource of the kind selects the node too (two plugins)
``NoPod``              selected, but the DaemonSet has no pod there
``Pending``            the pod is not scheduled or a container is waiting (the reason)
``ImagePullFailed``    a container's image cannot be pulled (the kubelet's message)
``Crashing``           a container keeps exiting (its last exit and termination message)
``NotReady``           running but not ready
``NoDevices``          the plugin is ready but the node advertises nothing of the kind's domain
``Ready``              ready, and the node advertises these devices: all fine

A resource without a DaemonSet gets one answer for all nodes, ``NoDaemonSet``, with what its
status (or the webhook's checks) says. The node's devices are read from its
``status.capacity``/``allocatable`` directly, not from the resource's status.
"""

from __future__ import annotations

import dataclasses
import decimal
import enum
from collections.abc import Mapping, Sequence
from typing import Any

from deviceplugin_operator import devices, settings
from deviceplugin_operator.inspection import rendering, scheduling
from deviceplugin_operator.kube import objects
from deviceplugin_operator.reconcile import daemonset, validation

_PULL_FAILURES = frozenset(
    {"ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull"}
)


class Answer(enum.StrEnum):
    NOT_SELECTED = "NotSelected"
    TAINT_NOT_TOLERATED = "TaintNotTolerated"
    OVERLAP = "Overlap"
    NO_POD = "NoPod"
    PENDING = "Pending"
    IMAGE_PULL_FAILED = "ImagePullFailed"
    CRASHING = "Crashing"
    NOT_READY = "NotReady"
    NO_DEVICES = "NoDevices"
    READY = "Ready"
    NO_DAEMONSET = "NoDaemonSet"

    @property
    def problem(self) -> bool:
        return self not in (Answer.NOT_SELECTED, Answer.READY)


@dataclasses.dataclass(frozen=True)
class Snapshot:
    """What ``diagnose`` reads, as the API server returned it."""

    nodes: Sequence[objects.JsonObject]
    resources: Mapping[str, Sequence[objects.JsonObject]]
    """The resources of each device kind, by kind name (``gpu``)."""
    daemonsets: Sequence[objects.JsonObject]
    """The plugin DaemonSets (label ``app: intel-<dev>-plugin``), any namespace."""
    pods: Sequence[objects.JsonObject]
    """Their pods."""


@dataclasses.dataclass(frozen=True)
class Finding:
    """The answer for one node (or for every node: ``node`` None)."""

    node: str | None
    answer: Answer
    message: str
    pod: str | None = None
    devices: Mapping[str, Mapping[str, str]] = dataclasses.field(default_factory=dict)
    """Extended resources of the kind's domain on the node: name → capacity, allocatable."""

    def json(self) -> dict[str, Any]:
        found: dict[str, Any] = {
            "node": self.node,
            "answer": str(self.answer),
            "problem": self.answer.problem,
            "message": self.message,
        }
        if self.pod:
            found["pod"] = self.pod
        if self.devices:
            found["devices"] = {name: dict(values) for name, values in self.devices.items()}
        return found


@dataclasses.dataclass(frozen=True)
class ResourceDiagnosis:
    kind: str
    """The resource kind, e.g. ``GpuDevicePlugin``."""
    name: str
    daemonset: str | None
    """``namespace/name`` of its DaemonSet, if it has one."""
    desired: int
    ready: int
    findings: Sequence[Finding]

    @property
    def problems(self) -> int:
        return sum(1 for finding in self.findings if finding.answer.problem)

    def json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "name": self.name,
            "daemonSet": self.daemonset,
            "desired": self.desired,
            "ready": self.ready,
            "problems": self.problems,
            "nodes": [finding.json() for finding in self.findings],
        }


@dataclasses.dataclass(frozen=True)
class _Plan:
    """Where a resource's pods go: its DaemonSet (if any) and the pod template's placement."""

    resource: objects.JsonObject
    daemonset: objects.JsonObject | None
    selector: Mapping[str, str]
    tolerations: Sequence[Mapping[str, Any]]
    refusal: str | None = None
    """Why no DaemonSet can be rendered from the resource, if so."""

    def selects(self, node: objects.JsonObject) -> bool:
        return not scheduling.selector_mismatches(self.selector, objects.labels(node)) and not (
            scheduling.untolerated_taints(_taints(node), self.tolerations)
        )


def diagnose(
    snapshot: Snapshot,
    *,
    node: str | None = None,
    kind: str | None = None,
    name: str | None = None,
) -> list[ResourceDiagnosis]:
    """The answers for every resource (of ``kind``, named ``name``) and node (``node``)."""
    nodes = [n for n in snapshot.nodes if node is None or objects.name(n) == node]
    found: list[ResourceDiagnosis] = []
    for kind_name, resources in sorted(snapshot.resources.items()):
        if kind is not None and kind_name != kind:
            continue
        device = devices.KINDS[kind_name]
        plans = {
            objects.name(resource): _plan(device, resource, snapshot.daemonsets)
            for resource in resources
        }
        for resource_name, plan in sorted(plans.items()):
            if name is not None and resource_name != name:
                continue
            others = {other: p for other, p in plans.items() if other != resource_name}
            found.append(_diagnose_resource(device, plan, others, nodes, snapshot.pods))
    return found


def _plan(
    kind: devices.DeviceKind[Any],
    resource: objects.JsonObject,
    daemonsets: Sequence[objects.JsonObject],
) -> _Plan:
    uid = objects.uid(resource)
    owned = sorted(
        (ds for ds in daemonsets if (objects.controller_owner(ds) or {}).get("uid") == uid),
        key=lambda ds: objects.name(ds) != daemonset.daemonset_name(kind, objects.name(resource)),
    )
    live = owned[0] if owned else None
    refusal = None
    template: objects.JsonObject | None = None
    if live is not None:
        template = live
    else:
        try:
            template = rendering.render_resource(kind, resource, settings.Settings())
        except validation.Invalid as invalid:
            refusal = invalid.message
        except daemonset.RenderError as error:
            refusal = str(error)
    pod = ((template or {}).get("spec") or {}).get("template", {}).get("spec") or {}
    return _Plan(
        resource,
        live,
        dict(pod.get("nodeSelector") or {}),
        list(pod.get("tolerations") or ()),
        refusal,
    )


def _diagnose_resource(
    kind: devices.DeviceKind[Any],
    plan: _Plan,
    others: Mapping[str, _Plan],
    nodes: Sequence[objects.JsonObject],
    pods: Sequence[objects.JsonObject],
) -> ResourceDiagnosis:
    resource_name = objects.name(plan.resource)
    ds = plan.daemonset
    if ds is None:
        return ResourceDiagnosis(
            kind.kind,
            resource_name,
            None,
            0,
            0,
            [Finding(None, Answer.NO_DAEMONSET, _no_daemonset(kind, plan))],
        )
    ds_status = ds.get("status") or {}
    ds_uid = objects.uid(ds)
    owned = [p for p in pods if (objects.controller_owner(p) or {}).get("uid") == ds_uid]
    findings = [_diagnose_node(kind, plan, others, n, owned) for n in nodes]
    return ResourceDiagnosis(
        kind.kind,
        resource_name,
        objects.key(ds),
        int(ds_status.get("desiredNumberScheduled") or 0),
        int(ds_status.get("numberReady") or 0),
        findings,
    )


def _no_daemonset(kind: devices.DeviceKind[Any], plan: _Plan) -> str:
    if plan.refusal is not None:
        return f"no DaemonSet: the spec is refused: {plan.refusal}"
    status = plan.resource.get("status") or {}
    for condition in status.get("conditions") or ():
        if condition.get("type") == "Degraded" and condition.get("status") == "True":
            return f"no DaemonSet: {condition.get('reason')}: {condition.get('message')}"
    return (
        f"no DaemonSet: is the operator running, with {kind.name} in its --devices? "
        "(kubectl get deployments -A -l control-plane=controller-manager)"
    )


def _diagnose_node(
    kind: devices.DeviceKind[Any],
    plan: _Plan,
    others: Mapping[str, _Plan],
    node: objects.JsonObject,
    pods: Sequence[objects.JsonObject],
) -> Finding:
    node_name = objects.name(node)
    mismatches = scheduling.selector_mismatches(plan.selector, objects.labels(node))
    if mismatches:
        message = "not selected: " + "; ".join(str(m) for m in mismatches)
        return Finding(node_name, Answer.NOT_SELECTED, message)
    pod = _pod_on(node_name, pods)
    untolerated = scheduling.untolerated_taints(_taints(node), plan.tolerations)
    if untolerated and pod is None:
        message = (
            f"taint {', '.join(untolerated)} is not tolerated: add a matching toleration to "
            "spec.tolerations, or remove the taint"
        )
        return Finding(node_name, Answer.TAINT_NOT_TOLERATED, message)
    # Only resources with a DaemonSet run plugins; a refused one competes with nobody.
    overlapping = sorted(
        other for other, p in others.items() if p.daemonset is not None and p.selects(node)
    )
    if overlapping:
        message = (
            f"{kind.kind} {', '.join(overlapping)} selects this node too: two plugins compete "
            "for the same devices; make the nodeSelectors disjoint"
        )
        return Finding(node_name, Answer.OVERLAP, message, _pod_name(pod))
    if pod is None:
        message = (
            f"selected, but DaemonSet {objects.key(plan.daemonset or {})} has no pod on this "
            "node (kubectl describe daemonset)"
        )
        return Finding(node_name, Answer.NO_POD, message)
    answer, message = _pod_state(pod)
    if answer is not Answer.READY:
        return Finding(node_name, answer, message, _pod_name(pod))
    advertised = node_devices(kind, node)
    if not any(_positive(values.get("allocatable", "0")) for values in advertised.values()):
        zeros = ", ".join(f"{r}: {v.get('allocatable', '0')}" for r, v in advertised.items())
        message = (
            f"plugin ready, but the node advertises "
            f"{zeros or 'no ' + kind.resource_domain + '/* resource'}: no usable device "
            "(driver, kernel module, BIOS?); see kubectl logs -n "
            f"{objects.namespace(pod)} {objects.name(pod)}"
        )
        return Finding(node_name, Answer.NO_DEVICES, message, _pod_name(pod), advertised)
    shown = ", ".join(f"{r}: {v.get('allocatable', '0')}" for r, v in advertised.items())
    return Finding(
        node_name, Answer.READY, f"ready, advertises {shown}", _pod_name(pod), advertised
    )


def node_devices(
    kind: devices.DeviceKind[Any], node: objects.JsonObject
) -> dict[str, dict[str, str]]:
    """The node's extended resources of the kind's domain: name → capacity, allocatable."""
    status = node.get("status") or {}
    prefix = kind.resource_domain + "/"
    found: dict[str, dict[str, str]] = {}
    for field in ("capacity", "allocatable"):
        for resource, quantity in (status.get(field) or {}).items():
            if resource.startswith(prefix):
                found.setdefault(resource, {})[field] = str(quantity)
    return dict(sorted(found.items()))


def _positive(quantity: str) -> bool:
    digits = quantity.rstrip("kKMGTPEimun")
    try:
        return decimal.Decimal(digits) > 0
    except decimal.InvalidOperation:
        return False


def _taints(node: objects.JsonObject) -> list[Mapping[str, Any]]:
    return list((node.get("spec") or {}).get("taints") or ())


def _pod_on(node: str, pods: Sequence[objects.JsonObject]) -> objects.JsonObject | None:
    here = [
        pod
        for pod in pods
        if (pod.get("spec") or {}).get("nodeName") == node
        or (not (pod.get("spec") or {}).get("nodeName") and node in scheduling.affinity_nodes(pod))
    ]
    # A pod being replaced: the one not terminating, else the newest.
    here.sort(
        key=lambda pod: (
            not objects.metadata(pod).get("deletionTimestamp"),
            str(objects.metadata(pod).get("creationTimestamp") or ""),
        )
    )
    return here[-1] if here else None


def _pod_name(pod: objects.JsonObject | None) -> str | None:
    return None if pod is None else objects.key(pod)


def _pod_state(pod: objects.JsonObject) -> tuple[Answer, str]:
    status = pod.get("status") or {}
    conditions = {c.get("type"): c for c in status.get("conditions") or ()}
    scheduled = conditions.get("PodScheduled")
    if scheduled is not None and scheduled.get("status") == "False":
        return Answer.PENDING, (
            f"pod {objects.name(pod)} is not scheduled: {scheduled.get('reason')}: "
            f"{scheduled.get('message') or 'no message'}"
        )
    containers = [
        *(status.get("initContainerStatuses") or ()),
        *(status.get("containerStatuses") or ()),
    ]
    for container in containers:
        waiting = (container.get("state") or {}).get("waiting") or {}
        if waiting.get("reason") in _PULL_FAILURES:
            return Answer.IMAGE_PULL_FAILED, (
                f"container {container.get('name')} cannot pull {container.get('image')}: "
                f"{waiting.get('reason')}: {waiting.get('message') or 'no message'}"
            )
    for container in containers:
        crash = _crash(container)
        if crash is not None:
            return Answer.CRASHING, crash
    if status.get("phase") == "Failed":
        return Answer.CRASHING, (
            f"pod {objects.name(pod)} failed: {status.get('reason')}: {status.get('message')}"
        )
    for container in containers:
        waiting = (container.get("state") or {}).get("waiting")
        if waiting:
            return Answer.PENDING, (
                f"container {container.get('name')} is waiting: {waiting.get('reason')}"
                + (f": {waiting['message']}" if waiting.get("message") else "")
            )
    if status.get("phase") == "Pending" or not containers:
        return Answer.PENDING, f"pod {objects.name(pod)} is {status.get('phase') or 'Pending'}"
    ready = conditions.get("Ready")
    if ready is None or ready.get("status") != "True":
        why = (ready or {}).get("message") or "its readiness probe has not passed"
        return Answer.NOT_READY, f"pod {objects.name(pod)} runs but is not ready: {why}"
    return Answer.READY, ""


def _crash(container: Mapping[str, Any]) -> str | None:
    state = container.get("state") or {}
    last = (container.get("lastState") or {}).get("terminated")
    terminated = state.get("terminated")
    waiting = state.get("waiting") or {}
    failed = terminated if terminated and terminated.get("exitCode") else None
    looping = waiting.get("reason") == "CrashLoopBackOff"
    restarted = last and last.get("exitCode") and not container.get("ready")
    if not (failed or looping or restarted):
        return None
    exit_ = failed or last or {}
    message = (
        f"container {container.get('name')} keeps crashing "
        f"({container.get('restartCount', 0)} restarts)"
    )
    if exit_:
        message += f": last exit code {exit_.get('exitCode')} ({exit_.get('reason') or 'Error'})"
        if exit_.get("message"):
            message += f", last message: {str(exit_['message']).strip()}"
    if waiting.get("message"):
        message += f"; {waiting['message']}"
    return message
