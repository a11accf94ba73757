"""A resource's status, computed from what was observed: its DaemonSet and that DaemonSet's pods.

Besides the reference's fields (``controlledDaemonSet``, ``desiredNumberScheduled``,
``numberReady``, ``nodeNames``) the status carries ``observedGeneration`` and three conditions:

* ``Ready``: every node the DaemonSet selects runs a ready plugin pod.
* ``Progressing``: the DaemonSet is being created or rolled out.
* ``Degraded``: something needs a person: a foreign object holds the DaemonSet's name, the
  spec is one the validating webhook refuses (``InvalidSpec``: nothing is rendered from it),
  the resource cannot be rendered, a plugin image cannot be pulled, or a plugin keeps
  crashing.

Unlike the reference, ``nodeNames`` is sorted and lists only scheduled pods that are neither
terminating nor finished, and ``controlledDaemonSet`` has no ``resourceVersion`` (it changes with
every DaemonSet status write and would make every one of them a resource status write too).
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from deviceplugin_operator.api import meta, plugin

READY = "Ready"
PROGRESSING = "Progressing"
DEGRADED = "Degraded"

_PULL_FAILURES = frozenset({"ErrImagePull", "ImagePullBackOff", "InvalidImageName"})
_CRASHING = frozenset({"CrashLoopBackOff"})
_EXIT_FIELDS = ("exitCode", "reason")
_CONTAINER_FIELDS = ("name", "image", "ready", "restartCount")
_CRASH_RECOVERY = datetime.timedelta(minutes=10)
"""How long a plugin restarted after a failed run must run before it no longer counts as
crashing: kubelet resets a container's restart back-off after 10 minutes of running."""
_FINISHED_PHASES = frozenset({"Succeeded", "Failed"})
_MESSAGE_MAX = 32768


def observed_status(
    daemonset: Mapping[str, Any] | None,
    pods: Iterable[Mapping[str, Any]],
    *,
    generation: int,
    now: datetime.datetime,
    previous: Sequence[meta.Condition] = (),
    name_conflict: str | None = None,
    render_error: str | None = None,
    invalid_spec: str | None = None,
    overlap: str | None = None,
) -> plugin.DevicePluginStatus:
    """The status of a resource at ``generation``.

    ``daemonset`` is the resource's DaemonSet (None if there is none), ``pods`` may include pods
    of other DaemonSets (all DaemonSets of a kind share the ``app`` label): only those this
    DaemonSet controls count. ``previous`` are the conditions currently in the status, whose
    ``lastTransitionTime`` is kept while their status stays the same. ``name_conflict`` and
    ``render_error`` are messages for the caller's failures, None when there were none, as is
    ``invalid_spec`` (the validating webhook's denial of the stored spec);
    ``overlap`` says where another resource of the kind runs a plugin on the same nodes. ``now``
    must be timezone-aware; conditions carry it to the second, as metav1.Time does.
    """
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    now = now.replace(microsecond=0)
    owned = [] if daemonset is None else [pod for pod in pods if _controlled_by(pod, daemonset)]
    live = [pod for pod in owned if _is_live(pod)]
    node_names = sorted({_node_name(pod) for pod in live} - {""})

    ds_status: Mapping[str, Any] = {} if daemonset is None else daemonset.get("status") or {}
    desired = int(ds_status.get("desiredNumberScheduled", 0))
    ready = int(ds_status.get("numberReady", 0))

    fresh = [
        _ready(daemonset, ds_status, desired, ready),
        _progressing(
            daemonset,
            ds_status,
            desired,
            ready,
            blocked=bool(name_conflict or invalid_spec or render_error),
        ),
        _degraded(live, name_conflict, invalid_spec, render_error, overlap, now=now),
    ]
    by_type = {condition.type: condition for condition in previous}
    conditions = [
        _transitioned(condition, by_type.get(condition[0]), generation=generation, now=now)
        for condition in fresh
    ]
    return plugin.DevicePluginStatus(
        controlled_daemon_set=None if daemonset is None else _reference(daemonset),
        desired_number_scheduled=desired,
        number_ready=ready,
        node_names=node_names or None,
        observed_generation=generation,
        conditions=conditions,
    )


_Fresh = tuple[str, meta.ConditionStatus, str, str]


def _ready(
    daemonset: Mapping[str, Any] | None, ds_status: Mapping[str, Any], desired: int, ready: int
) -> _Fresh:
    if daemonset is None:
        return READY, "False", "DaemonSetMissing", "The DaemonSet does not exist"
    if not ds_status.get("observedGeneration"):
        return READY, "False", "DaemonSetPending", "The DaemonSet controller has not seen it yet"
    if desired == 0:
        return READY, "True", "NoNodesSelected", "No node matches the node selector"
    if ready >= desired:
        return READY, "True", "PodsReady", f"{ready} of {desired} plugin pods are ready"
    return READY, "False", "PodsNotReady", f"{ready} of {desired} plugin pods are ready"


def _progressing(
    daemonset: Mapping[str, Any] | None,
    ds_status: Mapping[str, Any],
    desired: int,
    ready: int,
    *,
    blocked: bool,
) -> _Fresh:
    if daemonset is None:
        if blocked:
            return PROGRESSING, "False", "Blocked", "The DaemonSet cannot be created, see Degraded"
        return PROGRESSING, "True", "Creating", "The DaemonSet is being created"
    generation = int(daemonset.get("metadata", {}).get("generation", 0))
    if int(ds_status.get("observedGeneration", 0)) < generation:
        return (
            PROGRESSING,
            "True",
            "RollingOut",
            "The DaemonSet controller has not seen the change yet",
        )
    updated = int(ds_status.get("updatedNumberScheduled", 0))
    if updated < desired:
        return PROGRESSING, "True", "RollingOut", f"{updated} of {desired} plugin pods are updated"
    if ready < desired:
        return PROGRESSING, "True", "PodsStarting", f"{ready} of {desired} plugin pods are ready"
    return PROGRESSING, "False", "RolloutComplete", "Every plugin pod runs the current template"


def _degraded(
    pods: Sequence[Mapping[str, Any]],
    name_conflict: str | None,
    invalid_spec: str | None,
    render_error: str | None,
    overlap: str | None,
    *,
    now: datetime.datetime,
) -> _Fresh:
    if name_conflict:
        return DEGRADED, "True", "NameConflict", name_conflict
    if invalid_spec:
        return DEGRADED, "True", "InvalidSpec", invalid_spec
    if render_error:
        return DEGRADED, "True", "RenderFailed", render_error
    if overlap:
        return DEGRADED, "True", "OverlappingNodeSelector", overlap
    for reason in ("ImagePullFailed", "PluginCrashing"):
        failures = [
            f"Pod {pod['metadata'].get('name')} on node {_node_name(pod)}: container {problem}"
            for pod in pods
            for found, problem in _container_problems(pod, now)
            if found == reason
        ]
        if failures:
            more = f" (and {len(failures) - 1} more)" if len(failures) > 1 else ""
            return DEGRADED, "True", reason, failures[0] + more
    return DEGRADED, "False", "AsExpected", "No problem observed"


def _container_problems(
    pod: Mapping[str, Any], now: datetime.datetime | None
) -> list[tuple[str, str]]:
    """(reason, what) for each container of ``pod`` that cannot pull its image or keeps exiting."""
    if (pod.get("metadata") or {}).get("deletionTimestamp"):
        return []  # containers of a pod being deleted exit on purpose
    status = pod.get("status") or {}
    found = []
    for init, statuses in ((True, "initContainerStatuses"), (False, "containerStatuses")):
        for container in status.get(statuses) or ():
            if (problem := _container_problem(container, init=init, now=now)) is not None:
                found.append(problem)
    return found


def _container_problem(
    container: Mapping[str, Any], *, init: bool, now: datetime.datetime | None
) -> tuple[str, str] | None:
    state = container.get("state") or {}
    waiting = state.get("waiting") or {}
    what = f"{container.get('name')} ({container.get('image')})"
    if waiting.get("reason") in _PULL_FAILURES:
        message = f": {waiting['message']}" if waiting.get("message") else ""
        return "ImagePullFailed", f"{what} is in {waiting['reason']}{message}"
    # A crash-looping container shows as waiting in CrashLoopBackOff, as terminated (kubelet
    # 1.36, for most of its back-off) or as running again (ready at once without a readiness
    # probe) after a failed run: one message for all three, so that the condition does not
    # flap, nor its status get written, at each restart. A run that outlasts kubelet's back-off
    # reset counts as recovered (the periodic resync re-reads it).
    last = (container.get("lastState") or {}).get("terminated") or {}
    terminated = state.get("terminated") or {}
    exited = terminated or last
    if waiting.get("reason") in _CRASHING:
        crashing = True
    elif terminated:
        # Plugin pods restart always: a plugin that ended, or an init container that failed,
        # is run again. An init container that exited 0 is done.
        crashing = not init or terminated.get("exitCode") != 0
    elif "running" in state and last.get("exitCode", 0) != 0:
        started = _timestamp((state.get("running") or {}).get("startedAt"))
        crashing = (
            now is None  # the time-free view of pod_inputs: a change of this is an input
            or started is None
            or now - started < _CRASH_RECOVERY
        )
    else:
        crashing = False
    if not crashing:
        return None
    code = exited.get("exitCode")
    why = f", {exited['reason']}" if exited.get("reason") else ""
    exit_text = f" (last exit code {code}{why})" if code is not None else ""
    return "PluginCrashing", f"{what} keeps exiting{exit_text}"


def _transitioned(
    fresh: _Fresh,
    before: meta.Condition | None,
    *,
    generation: int,
    now: datetime.datetime,
) -> meta.Condition:
    condition_type, status, reason, message = fresh
    unchanged = before is not None and before.status == status
    return meta.Condition(
        type=condition_type,
        status=status,
        observed_generation=generation,
        last_transition_time=before.last_transition_time if before and unchanged else now,
        reason=reason,
        message=message[:_MESSAGE_MAX],
    )


def pod_essentials(pod: dict[str, Any]) -> dict[str, Any]:
    """``pod`` reduced to what ``observed_status``, ``pod_inputs`` and a cache keyed and
    indexed by name, owner and node read of it: the rest of a pod (spec, conditions, labels,
    annotations) is most of its size, and the operator caches one per plugin node."""
    meta_ = pod.get("metadata") or {}
    status = pod.get("status") or {}
    essentials: dict[str, Any] = {
        "apiVersion": pod.get("apiVersion", "v1"),
        "kind": pod.get("kind", "Pod"),
        "metadata": {
            key: meta_[key]
            for key in (
                "name",
                "namespace",
                "uid",
                "resourceVersion",
                "ownerReferences",
                "deletionTimestamp",
            )
            if key in meta_
        },
        "spec": {"nodeName": node} if (node := _node_name(pod)) else {},
        "status": {"phase": status["phase"]} if "phase" in status else {},
    }
    for field in ("initContainerStatuses", "containerStatuses"):
        if field in status:
            essentials["status"][field] = [
                _container_essentials(container) for container in status[field] or ()
            ]
    return essentials


def _container_essentials(container: Mapping[str, Any]) -> dict[str, Any]:
    kept = {
        key: container[key]
        for key in ("name", "image", "ready", "restartCount")
        if key in container
    }
    state = container.get("state") or {}
    for kind, fields in (("waiting", ("reason", "message")), ("terminated", _EXIT_FIELDS)):
        if state.get(kind) is not None:
            kept["state"] = {kind: {key: state[kind][key] for key in fields if key in state[kind]}}
    if "running" in state:
        started = (state["running"] or {}).get("startedAt")
        kept["state"] = {"running": {"startedAt": started} if started else {}}
    last = (container.get("lastState") or {}).get("terminated")
    if last:
        kept["lastState"] = {"terminated": {key: last[key] for key in _EXIT_FIELDS if key in last}}
    return kept


def pod_inputs(pod: Mapping[str, Any]) -> tuple[Any, ...]:
    """What ``observed_status`` reads of ``pod``: two versions of a pod with equal inputs
    give the same status, so a change of anything else (conditions, IPs, timestamps, the
    readiness the DaemonSet's own status already counts) needs no reconcile."""
    meta_ = pod.get("metadata") or {}
    status = pod.get("status") or {}
    problems = tuple(_container_problems(pod, None))
    owners = tuple(
        (owner.get("controller"), owner.get("kind"), owner.get("uid"), owner.get("name"))
        for owner in meta_.get("ownerReferences", ())
    )
    return (
        meta_.get("name"),
        owners,
        _node_name(pod),
        bool(meta_.get("deletionTimestamp")),
        status.get("phase") in _FINISHED_PHASES,
        problems,
    )


def _controlled_by(pod: Mapping[str, Any], daemonset: Mapping[str, Any]) -> bool:
    ds_meta = daemonset.get("metadata", {})
    for owner in pod.get("metadata", {}).get("ownerReferences", ()):
        if owner.get("controller") and owner.get("kind") == "DaemonSet":
            if ds_meta.get("uid"):
                return bool(owner.get("uid") == ds_meta["uid"])
            return bool(owner.get("name") == ds_meta.get("name"))
    return False


def _is_live(pod: Mapping[str, Any]) -> bool:
    if pod.get("metadata", {}).get("deletionTimestamp"):
        return False
    return (pod.get("status") or {}).get("phase") not in _FINISHED_PHASES


def _node_name(pod: Mapping[str, Any]) -> str:
    return str((pod.get("spec") or {}).get("nodeName") or "")


def _reference(daemonset: Mapping[str, Any]) -> meta.ObjectReference:
    ds_meta = daemonset.get("metadata", {})
    return meta.ObjectReference(
        api_version="apps/v1",
        kind="DaemonSet",
        name=ds_meta.get("name"),
        namespace=ds_meta.get("namespace"),
        uid=ds_meta.get("uid"),
    )


def _timestamp(text: str | None) -> datetime.datetime | None:
    if not text:
        return None
    try:
        return datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
