"""A resource's status, computed from what was observed: its DaemonSet and that DaemonSet's pods.

Besides the reference's fields (``controlledDaemonSet``, ``desiredNumberScheduled``,
``numberReady``, ``nodeNames``) the status carries ``observedGeneration`` and three conditions:

* ``Ready``: every node the DaemonSet selects runs a ready plugin pod.
* ``Progressing``: the DaemonSet is being created or rolled out.
* ``Degraded``: something needs a person: a foreign object holds the DaemonSet's name, the
  spec is one the validating webhook refuses (``InvalidSpec``: nothing is rendered from it),
  the resource cannot be rendered, a plugin image cannot be pulled, or a plugin keeps
  crashing.
* ``DevicesAdvertised``: every node with a ready plugin pod advertises at least one extended
  resource of the kind's domain (``gpu.intel.com/...``). A node without one counts once its
  pod has been ready for the grace period (the plugin needs a moment to register with the
  kubelet): ``False`` with ``NoDevices`` (no such node advertises one) or
  ``SomeNodesWithoutDevices``; ``Unknown`` while no plugin pod is ready or every node
  without devices is within its grace.

``devices`` sums, per extended resource of the domain, the ``status.capacity`` and
``status.allocatable`` of the nodes the plugin pods run on (``node_essentials`` is all the
operator keeps of a node), and ``deviceTotals`` is their short form for ``kubectl get``.

Unlike the reference, ``nodeNames`` is sorted and lists only scheduled pods that are neither
terminating nor finished, and ``controlledDaemonSet`` has no ``resourceVersion`` (it changes with
every DaemonSet status write and would make every one of them a resource status write too).
"""

from __future__ import annotations

import dataclasses
import datetime
import decimal
import functools
import re
import sys
from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import Any

import pydantic

from deviceplugin_operator.api import meta, plugin

READY = "Ready"
PROGRESSING = "Progressing"
DEGRADED = "Degraded"
DEVICES_ADVERTISED = "DevicesAdvertised"

DEVICES_GRACE = datetime.timedelta(minutes=5)
"""How long a plugin pod may be ready on a node that advertises none of its devices before
``DevicesAdvertised`` says so (``--devices-grace-period``)."""
_NODES_NAMED = 10
"""Nodes named in a ``DevicesAdvertised`` message; the count says how many there are."""
_TOTALS_NAMED = 4

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
    previous: Sequence[meta.Condition] = (),
    **options: Any,
) -> plugin.DevicePluginStatus:
    """``observe``'s status (its keyword ``options``) as the API model, the conditions it
    follows given as models (``previous``)."""
    prior = {
        condition.type: Prior(condition.status, _wire_time(condition.last_transition_time))
        for condition in previous
    }
    observation = observe(daemonset, pods, prior=prior, **options)
    return plugin.DevicePluginStatus.model_validate(observation.status)


@dataclasses.dataclass(frozen=True)
class Prior:
    """What the status of a resource reads of one of its stored conditions."""

    status: str
    last_transition_time: str
    """In its wire form (as ``meta.Condition`` writes it)."""


def prior_conditions(raw: Any) -> dict[str, Prior]:
    """The stored ``status.conditions`` ``raw`` that parse as conditions, by type (the last of
    a type wins); others are dropped, and rewritten by the next status."""
    found = {}
    for item in raw if isinstance(raw, list) else ():
        try:
            condition = meta.Condition.model_validate(item)
        except pydantic.ValidationError:
            continue
        found[condition.type] = Prior(condition.status, _wire_time(condition.last_transition_time))
    return found


def observed_prior(conditions: Sequence[Mapping[str, Any]]) -> dict[str, Prior]:
    """``prior_conditions`` of the ``conditions`` of an ``observe`` status, without the
    validation: they are valid as built, their times in wire form already (what a status
    write stored, read back by the next reconcile)."""
    return {c["type"]: Prior(c["status"], c["lastTransitionTime"]) for c in conditions}


@dataclasses.dataclass(frozen=True)
class Observation:
    """A resource's status in its wire form, and when to look at it again."""

    status: dict[str, Any]
    """camelCase keys, no None values: ``plugin.DevicePluginStatus.wire()`` of it."""
    recheck: float | None
    """Seconds until a node without devices leaves its grace period (``devices_recheck``)."""


def observe(
    daemonset: Mapping[str, Any] | None,
    pods: Iterable[Mapping[str, Any]],
    *,
    generation: int,
    now: datetime.datetime,
    prior: Mapping[str, Prior] | None = None,
    name_conflict: str | None = None,
    render_error: str | None = None,
    invalid_spec: str | None = None,
    overlap: str | None = None,
    nodes: Mapping[str, Mapping[str, Any]] | None = None,
    domain: str = "",
    devices_grace: datetime.timedelta = DEVICES_GRACE,
    nodes_unreadable: str | None = None,
) -> Observation:
    """The status of a resource at ``generation``, built as plain data: on the reconciler's
    path, validating and dumping the API model each time was a sixth of a reconcile, for
    values whose types and limits are set here (messages are cut to the condition's limit).

    ``daemonset`` is the resource's DaemonSet (None if there is none), ``pods`` may include pods
    of other DaemonSets (all DaemonSets of a kind share the ``app`` label): only those this
    DaemonSet controls count. ``prior`` are the conditions currently in the status by type
    (``prior_conditions``), whose ``lastTransitionTime`` is kept while their status stays the
    same. ``name_conflict`` and
    ``render_error`` are messages for the caller's failures, None when there were none, as is
    ``invalid_spec`` (the validating webhook's denial of the stored spec);
    ``overlap`` says where another resource of the kind runs a plugin on the same nodes. ``now``
    must be timezone-aware; conditions carry it to the second, as metav1.Time does.
    ``nodes`` are the (``node_essentials`` of the) nodes by name, at least those the pods run
    on (a node missing from it advertises nothing), ``domain`` the kind's resource domain and
    ``devices_grace`` how long a ready plugin may advertise nothing before it is reported.
    ``nodes_unreadable`` says why the nodes cannot be read (RBAC without them, such as the
    reference's): the devices are then left out and ``DevicesAdvertised`` is Unknown.
    """
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    now = now.replace(microsecond=0)
    live = _live_pods(daemonset, pods)
    node_names = sorted({_node_name(pod) for pod in live} - {""})
    if nodes_unreadable is None:
        found = _advertised(live, nodes or {}, domain, devices_grace, now)
    else:
        found = _Advertised(
            devices=None,
            condition=(DEVICES_ADVERTISED, "Unknown", "NodesNotReadable", nodes_unreadable),
            recheck=None,
        )

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
        found.condition,
    ]
    prior = prior or {}
    transition = _wire_time(now)
    wire: dict[str, Any] = {}
    if daemonset is not None:
        wire["controlledDaemonSet"] = _reference(daemonset)
    if node_names:
        wire["nodeNames"] = node_names
    wire["desiredNumberScheduled"] = desired
    wire["numberReady"] = ready
    wire["observedGeneration"] = generation
    wire["conditions"] = [
        _transitioned(condition, prior.get(condition[0]), generation=generation, now=transition)
        for condition in fresh
    ]
    if found.devices is not None:
        wire["devices"] = found.devices
        wire["deviceTotals"] = _totals(found.devices)
    return Observation(status=wire, recheck=found.recheck)


def devices_recheck(
    daemonset: Mapping[str, Any] | None,
    pods: Iterable[Mapping[str, Any]],
    *,
    nodes: Mapping[str, Mapping[str, Any]],
    domain: str,
    now: datetime.datetime,
    devices_grace: datetime.timedelta = DEVICES_GRACE,
) -> float | None:
    """Seconds until a node without devices leaves its grace period, so that
    ``DevicesAdvertised`` turns False then without any event; None when none is waiting."""
    live = _live_pods(daemonset, pods)
    return _advertised(live, nodes, domain, devices_grace, now.replace(microsecond=0)).recheck


@dataclasses.dataclass(frozen=True)
class _Advertised:
    devices: list[dict[str, Any]] | None
    """``plugin.AdvertisedDevice`` wire forms."""
    condition: _Fresh
    recheck: float | None


def _advertised(
    live: Sequence[Mapping[str, Any]],
    nodes: Mapping[str, Mapping[str, Any]],
    domain: str,
    grace: datetime.timedelta,
    now: datetime.datetime,
) -> _Advertised:
    sums: dict[str, list[int]] = {}  # resource → [capacity, allocatable, nodes]
    advertising: set[str] = set()
    for name in sorted({_node_name(pod) for pod in live} - {""}):
        capacity, allocatable = node_devices(nodes.get(name), domain)
        for resource, count in capacity:
            entry = sums.setdefault(resource, [0, 0, 0])
            entry[0] += count
            if count > 0:
                entry[2] += 1
                advertising.add(name)
        for resource, count in allocatable:
            sums.setdefault(resource, [0, 0, 0])[1] += count
    devices = [
        {"resource": resource, "capacity": c, "allocatable": a, "nodes": n}
        for resource, (c, a, n) in sorted(sums.items())
    ]

    ready_since: dict[str, datetime.datetime | None] = {}
    for pod in live:
        ready, since = _ready_since(pod)
        if not ready or not (node := _node_name(pod)):
            continue
        earlier = ready_since.get(node, since)
        ready_since[node] = None if since is None or earlier is None else min(since, earlier)
    lacking = sorted(node for node in ready_since if node not in advertising)
    waiting = {
        node: since + grace - now
        for node in lacking
        if (since := ready_since[node]) is not None and since + grace > now
    }
    due = [node for node in lacking if node not in waiting]
    what = f"{domain} resources"
    if not ready_since:
        condition: _Fresh = (
            DEVICES_ADVERTISED,
            "Unknown",
            "NoReadyPlugins",
            "No plugin pod is ready yet",
        )
    elif not lacking:
        condition = (
            DEVICES_ADVERTISED,
            "True",
            "AllNodesAdvertise",
            f"Each of the {len(ready_since)} nodes with a ready plugin pod advertises {what}",
        )
    elif not due:
        condition = (
            DEVICES_ADVERTISED,
            "Unknown",
            "WaitingForDevices",
            f"{_named(sorted(waiting))} with a plugin pod ready for less than "
            f"{_duration(grace)} advertise no {what} yet",
        )
    else:
        none = not advertising.intersection(ready_since)
        condition = (
            DEVICES_ADVERTISED,
            "False",
            "NoDevices" if none else "SomeNodesWithoutDevices",
            f"{len(due)} of {len(ready_since)} nodes with a ready plugin pod advertise no "
            f"{what}: {_named(due)}; check the plugin's log and the device, its driver "
            "and kernel module on these nodes",
        )
    recheck = None
    if waiting:
        # ``now`` is cut to the second: a second more and the grace is over for sure. Not
        # sooner than a tenth of the grace: the graces of a rollout's nodes end one after
        # another over as long as it took, and each end looked at alone was a status write
        # (80 resources on 1000 nodes: 292 writes, one every ~2 s per resource while its
        # nodes' graces ended).
        recheck = max(min(waiting.values()).total_seconds() + 1.0, grace.total_seconds() / 10)
    return _Advertised(devices=devices, condition=condition, recheck=recheck)


def _named(nodes: Sequence[str]) -> str:
    shown = ", ".join(nodes[:_NODES_NAMED])
    more = f" and {len(nodes) - _NODES_NAMED} more" if len(nodes) > _NODES_NAMED else ""
    return f"{len(nodes)} node{'s' if len(nodes) != 1 else ''} ({shown}{more})"


def _duration(span: datetime.timedelta) -> str:
    seconds = int(span.total_seconds())
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    text = "".join(
        f"{value}{unit}" for value, unit in ((hours, "h"), (minutes, "m"), (seconds, "s")) if value
    )
    return text or "0s"


def _totals(devices: Sequence[Mapping[str, Any]]) -> str:
    if not devices:
        return "none"
    parts = [f"{d['resource'].partition('/')[2]}={d['allocatable']}" for d in devices]
    if len(parts) > _TOTALS_NAMED:
        parts = [*parts[:_TOTALS_NAMED], f"+{len(parts) - _TOTALS_NAMED} more"]
    return ", ".join(parts)


def _ready_since(pod: Mapping[str, Any]) -> tuple[bool, datetime.datetime | None]:
    """Whether ``pod`` is ready, and since when (None: not known)."""
    status = pod.get("status") or {}
    for condition in status.get("conditions") or ():
        if condition.get("type") == "Ready":
            ready = condition.get("status") == "True"
            return ready, _timestamp(condition.get("lastTransitionTime")) if ready else None
    containers = status.get("containerStatuses") or ()
    ready = status.get("phase") == "Running" and bool(containers)
    return ready and all(c.get("ready") for c in containers), None


_QUANTITY = re.compile(r"([0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE]([+-]?[0-9]+))?([a-zA-Z]*)")
_MULTIPLIERS: dict[str, decimal.Decimal] = {
    "": decimal.Decimal(1),
    "m": decimal.Decimal("0.001"),
    **{suffix: decimal.Decimal(10) ** (3 * power) for power, suffix in enumerate("kMGTPE", 1)},
    **{
        f"{suffix}i": decimal.Decimal(2) ** (10 * power) for power, suffix in enumerate("KMGTPE", 1)
    },
}


def quantity_count(quantity: Any) -> int:
    """A resource quantity (``"4"``, ``"2k"``) as a whole count; 0 for what is not one (an
    extended resource is always a whole, non-negative number)."""
    return _count(quantity if isinstance(quantity, str) else str(quantity))


@functools.lru_cache(maxsize=1024)
def _count(quantity: str) -> int:
    # Cached: every status reads every figure of every plugin node (a third of a reconcile
    # went into parsing them), and nodes repeat a few quantities.
    found = _QUANTITY.fullmatch(quantity.strip())
    if found is None or found.group(3) not in _MULTIPLIERS:
        return 0
    number, exponent, suffix = found.groups()
    try:
        value = decimal.Decimal(number).scaleb(int(exponent or 0)) * _MULTIPLIERS[suffix]
    except (decimal.InvalidOperation, ValueError):
        return 0
    return int(value) if value < 2**63 else 2**63 - 1


NodeDevices = tuple[tuple[tuple[str, int], ...], tuple[tuple[str, int], ...]]
"""(capacity, allocatable) of a node in one domain: (resource, count) pairs, sorted."""


def node_devices(node: Mapping[str, Any] | None, domain: str) -> NodeDevices:
    """(capacity, allocatable) of ``node``: the resources of ``domain`` and their counts,
    sorted. What the status reads of a node for a kind: two versions of a node with the same
    figures (most node updates are heartbeats) need no reconcile."""
    status = (node or {}).get("status") or {}
    prefix = f"{domain}/"
    return (
        tuple(
            sorted(
                (name, quantity_count(value))
                for name, value in (status.get("capacity") or {}).items()
                if name.startswith(prefix)
            )
        ),
        tuple(
            sorted(
                (name, quantity_count(value))
                for name, value in (status.get("allocatable") or {}).items()
                if name.startswith(prefix)
            )
        ),
    )


def node_essentials(node: dict[str, Any], domains: Collection[str]) -> dict[str, Any]:
    """``node`` reduced to its name, resourceVersion and the ``status.capacity`` and
    ``status.allocatable`` entries in ``domains`` (``gpu.intel.com``, ...): a node object is
    tens of kilobytes (images, conditions, labels), and the operator caches every node."""
    meta_ = node.get("metadata") or {}
    status = node.get("status") or {}
    kept: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {key: meta_[key] for key in ("name", "resourceVersion") if key in meta_},
    }
    figures = {}
    for field in ("capacity", "allocatable"):
        # Every node repeats the same resource names and mostly the same quantities: one
        # shared copy of each instead of one per node (~0.6 KiB of a node's ~1.4 KiB).
        values = {
            sys.intern(name): sys.intern(value) if isinstance(value, str) else value
            for name, value in (status.get(field) or {}).items()
            if name.partition("/")[0] in domains
        }
        if values:
            figures[field] = values
    if figures:
        kept["status"] = figures
    return kept


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
    problems = [
        (pod, found, problem) for pod in pods for found, problem in _container_problems(pod, now)
    ]
    for reason in ("ImagePullFailed", "PluginCrashing"):
        failures = [
            f"Pod {pod['metadata'].get('name')} on node {_node_name(pod)}: container {problem}"
            for pod, found, problem in problems
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
    before: Prior | None,
    *,
    generation: int,
    now: str,
) -> dict[str, Any]:
    """The wire form of a ``meta.Condition``; ``now`` is in wire form too."""
    condition_type, status, reason, message = fresh
    unchanged = before is not None and before.status == status
    return {
        "type": condition_type,
        "status": status,
        "observedGeneration": generation,
        "lastTransitionTime": before.last_transition_time if before and unchanged else now,
        "reason": reason,
        "message": message[:_MESSAGE_MAX],
    }


@functools.cache
def _times() -> pydantic.TypeAdapter[datetime.datetime]:
    return pydantic.TypeAdapter(datetime.datetime)


def _wire_time(moment: datetime.datetime) -> str:
    """``moment`` as a condition's ``lastTransitionTime`` is written (pydantic's JSON form)."""
    return str(_times().dump_python(moment, mode="json"))


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
    ready = [
        {
            key: condition[key]
            for key in ("type", "status", "lastTransitionTime")
            if key in condition
        }
        for condition in status.get("conditions") or ()
        if condition.get("type") == "Ready"
    ]
    if ready:
        essentials["status"]["conditions"] = ready
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
    give the same status, so a change of anything else (other conditions, IPs, timestamps)
    needs no reconcile. Readiness is one: ``DevicesAdvertised`` judges the nodes of ready
    pods."""
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
        _ready_since(pod),
    )


def _live_pods(
    daemonset: Mapping[str, Any] | None, pods: Iterable[Mapping[str, Any]]
) -> list[Mapping[str, Any]]:
    if daemonset is None:
        return []
    return [pod for pod in pods if _controlled_by(pod, daemonset) and _is_live(pod)]


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


def _reference(daemonset: Mapping[str, Any]) -> dict[str, Any]:
    """The wire form of the ``meta.ObjectReference`` to ``daemonset``."""
    ds_meta = daemonset.get("metadata", {})
    reference = {"apiVersion": "apps/v1", "kind": "DaemonSet"}
    for key in ("name", "namespace", "uid"):
        if (value := ds_meta.get(key)) is not None:
            reference[key] = value
    return reference


def _timestamp(text: str | None) -> datetime.datetime | None:
    if not text:
        return None
    try:
        return datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
