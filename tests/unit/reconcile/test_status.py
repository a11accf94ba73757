"""observed_status: reference fields (spec §4.6) plus observedGeneration and conditions."""

from __future__ import annotations

import datetime
from typing import Any

import pytest

from deviceplugin_operator.api import meta, plugin
from deviceplugin_operator.reconcile import status

NOW = datetime.datetime(2026, 7, 1, 12, 0, 0, 123456, tzinfo=datetime.UTC)
EARLIER = datetime.datetime(2026, 6, 30, 8, 0, 0, tzinfo=datetime.UTC)
DS_UID = "ds-uid"


def daemonset(
    *,
    desired: int = 3,
    ready: int = 3,
    updated: int | None = None,
    generation: int = 2,
    observed: int | None = 2,
) -> dict[str, Any]:
    ds_status: dict[str, Any] = {
        "desiredNumberScheduled": desired,
        "numberReady": ready,
        "updatedNumberScheduled": desired if updated is None else updated,
        "currentNumberScheduled": desired,
        "numberMisscheduled": 0,
    }
    if observed is not None:
        ds_status["observedGeneration"] = observed
    return {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": {
            "name": "intel-gpu-plugin-x",
            "namespace": "kube-system",
            "uid": DS_UID,
            "generation": generation,
            "resourceVersion": "42",
        },
        "status": ds_status,
    }


def pod(
    name: str,
    node: str | None,
    *,
    owner_uid: str = DS_UID,
    phase: str = "Running",
    deleting: bool = False,
    waiting: str | None = None,
    init_waiting: str | None = None,
) -> dict[str, Any]:
    metadata: dict[str, Any] = {
        "name": name,
        "ownerReferences": [
            {
                "apiVersion": "apps/v1",
                "kind": "DaemonSet",
                "name": "n",
                "uid": owner_uid,
                "controller": True,
            }
        ],
    }
    if deleting:
        metadata["deletionTimestamp"] = "2026-07-01T11:59:00Z"
    pod_status: dict[str, Any] = {"phase": phase}
    if waiting:
        pod_status["containerStatuses"] = [
            {
                "name": "intel-gpu-plugin",
                "image": "intel/intel-gpu-plugin:0.99.0",
                "state": {"waiting": {"reason": waiting, "message": "manifest unknown"}},
            }
        ]
    if init_waiting:
        pod_status["initContainerStatuses"] = [
            {"name": "init", "image": "i", "state": {"waiting": {"reason": init_waiting}}}
        ]
    return {"metadata": metadata, "spec": {"nodeName": node} if node else {}, "status": pod_status}


def conditions(result: Any) -> dict[str, tuple[str, str]]:
    return {c.type: (c.status, c.reason) for c in result.conditions}


def test_reference_fields_and_node_names() -> None:
    pods = [
        pod("c", "node-c"),
        pod("a", "node-a"),
        pod("pending", None),
        pod("terminating", "node-t", deleting=True),
        pod("failed", "node-f", phase="Failed"),
        pod("other-ds", "node-o", owner_uid="someone-else"),
        pod("b", "node-b"),
    ]
    result = status.observed_status(daemonset(desired=4, ready=3), pods, generation=7, now=NOW)
    assert result.desired_number_scheduled == 4
    assert result.number_ready == 3
    assert result.node_names == ["node-a", "node-b", "node-c"]
    assert result.observed_generation == 7
    assert result.controlled_daemon_set == meta.ObjectReference(
        api_version="apps/v1",
        kind="DaemonSet",
        name="intel-gpu-plugin-x",
        namespace="kube-system",
        uid=DS_UID,
    )
    assert result.wire()["controlledDaemonSet"] == {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "name": "intel-gpu-plugin-x",
        "namespace": "kube-system",
        "uid": DS_UID,
    }
    assert all(c.observed_generation == 7 for c in result.conditions or ())
    assert [c.type for c in result.conditions or ()] == [
        "Ready",
        "Progressing",
        "Degraded",
        "DevicesAdvertised",
    ]


def test_pods_are_matched_by_name_when_the_daemonset_has_no_uid() -> None:
    ds = daemonset()
    del ds["metadata"]["uid"]
    owned = pod("a", "node-a")
    owned["metadata"]["ownerReferences"][0]["name"] = "intel-gpu-plugin-x"
    result = status.observed_status(ds, [owned, pod("b", "node-b")], generation=1, now=NOW)
    assert result.node_names == ["node-a"]


def test_all_ready() -> None:
    pods = [pod(n, f"node-{n}") for n in "abc"]
    result = status.observed_status(daemonset(), pods, generation=2, now=NOW)
    assert conditions(result) == {
        "Ready": ("True", "PodsReady"),
        "Progressing": ("False", "RolloutComplete"),
        "Degraded": ("False", "AsExpected"),
        "DevicesAdvertised": ("Unknown", "NoReadyPlugins"),
    }
    ready = result.conditions[0] if result.conditions else None
    assert ready is not None
    assert ready.message == "3 of 3 plugin pods are ready"
    assert ready.last_transition_time == NOW.replace(microsecond=0)


def test_no_nodes_selected_is_ready() -> None:
    result = status.observed_status(daemonset(desired=0, ready=0), [], generation=1, now=NOW)
    assert conditions(result)["Ready"] == ("True", "NoNodesSelected")
    assert result.node_names is None
    assert "nodeNames" not in result.wire()


@pytest.mark.parametrize(
    ("ds", "ready", "progressing"),
    [
        (daemonset(ready=1), ("False", "PodsNotReady"), ("True", "PodsStarting")),
        (daemonset(updated=1, ready=3), ("True", "PodsReady"), ("True", "RollingOut")),
        (daemonset(generation=3, observed=2), ("True", "PodsReady"), ("True", "RollingOut")),
        (
            daemonset(generation=1, observed=None),
            ("False", "DaemonSetPending"),
            ("True", "RollingOut"),
        ),
    ],
)
def test_rollout_states(
    ds: dict[str, Any], ready: tuple[str, str], progressing: tuple[str, str]
) -> None:
    result = conditions(status.observed_status(ds, [], generation=1, now=NOW))
    assert (result["Ready"], result["Progressing"]) == (ready, progressing)


def test_missing_daemonset() -> None:
    result = status.observed_status(None, [pod("a", "node-a")], generation=1, now=NOW)
    assert result.controlled_daemon_set is None
    assert (result.desired_number_scheduled, result.number_ready, result.node_names) == (0, 0, None)
    assert conditions(result) == {
        "Ready": ("False", "DaemonSetMissing"),
        "Progressing": ("True", "Creating"),
        "Degraded": ("False", "AsExpected"),
        "DevicesAdvertised": ("Unknown", "NoReadyPlugins"),
    }


def test_name_conflict() -> None:
    message = (
        "DaemonSet kube-system/intel-gpu-plugin-x exists and is not controlled by GpuDevicePlugin x"
    )
    result = status.observed_status(None, [], generation=1, now=NOW, name_conflict=message)
    assert conditions(result) == {
        "Ready": ("False", "DaemonSetMissing"),
        "Progressing": ("False", "Blocked"),
        "Degraded": ("True", "NameConflict"),
        "DevicesAdvertised": ("Unknown", "NoReadyPlugins"),
    }
    assert result.conditions is not None
    assert result.conditions[2].message == message


def test_render_error_keeps_reporting_the_running_daemonset() -> None:
    result = status.observed_status(
        daemonset(), [], generation=3, now=NOW, render_error="name too long"
    )
    assert conditions(result)["Degraded"] == ("True", "RenderFailed")
    assert conditions(result)["Ready"] == ("True", "PodsReady")


@pytest.mark.parametrize("reason", ["ErrImagePull", "ImagePullBackOff", "InvalidImageName"])
def test_image_pull_failures_degrade(reason: str) -> None:
    pods = [
        pod("a", "node-a", waiting=reason),
        pod("b", "node-b", waiting=reason),
        pod("c", "node-c"),
    ]
    result = status.observed_status(daemonset(ready=1), pods, generation=1, now=NOW)
    assert conditions(result)["Degraded"] == ("True", "ImagePullFailed")
    assert result.conditions is not None
    assert result.conditions[2].message == (
        "Pod a on node node-a: container intel-gpu-plugin (intel/intel-gpu-plugin:0.99.0)"
        f" is in {reason}: manifest unknown (and 1 more)"
    )


def test_init_container_pull_failure_and_crash_loop() -> None:
    result = status.observed_status(
        daemonset(ready=2),
        [pod("a", "node-a", init_waiting="ImagePullBackOff")],
        generation=1,
        now=NOW,
    )
    assert conditions(result)["Degraded"] == ("True", "ImagePullFailed")
    result = status.observed_status(
        daemonset(ready=2), [pod("a", "node-a", waiting="CrashLoopBackOff")], generation=1, now=NOW
    )
    assert conditions(result)["Degraded"] == ("True", "PluginCrashing")


def crash_pod(name: str, state: dict[str, Any], *, ready: bool = False, init: bool = False) -> Any:
    """A plugin pod whose container exited 1 before and is now in ``state``."""
    base = pod(name, f"node-{name}")
    container = {
        "name": "init" if init else "intel-gpu-plugin",
        "image": "intel/intel-gpu-plugin:0.99.0",
        "ready": ready,
        "restartCount": 4,
        "state": state,
        "lastState": {"terminated": {"exitCode": 1, "reason": "Error"}},
    }
    base["status"]["initContainerStatuses" if init else "containerStatuses"] = [container]
    return base


CRASH_LOOP_STATES = {
    "waiting in back-off": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 20s"}},
    "terminated (kubelet 1.36 during back-off)": {
        "terminated": {"exitCode": 1, "reason": "Error", "finishedAt": "2026-07-01T12:00:00Z"}
    },
    "running again": {"running": {"startedAt": "2026-07-01T12:00:10Z"}},
}


def test_a_crash_loop_is_one_message_in_each_of_its_states() -> None:
    """kubelet shows a crash-looping plugin as waiting, terminated or running-not-ready in
    turn: each is PluginCrashing with the same message, so its status is written once."""
    messages = set()
    for state in CRASH_LOOP_STATES.values():
        for init in (False, True):
            result = status.observed_status(
                daemonset(ready=1), [crash_pod("a", state, init=init)], generation=1, now=NOW
            )
            degraded = next(c for c in result.conditions if c.type == "Degraded")
            assert (degraded.status, degraded.reason) == ("True", "PluginCrashing"), state
            assert "on node node-a" in degraded.message
            assert "keeps exiting (last exit code 1, Error)" in degraded.message
            messages.add((init, degraded.message))
    assert len(messages) == 2  # one per container kind, not one per state
    trimmed = [status.pod_essentials(crash_pod("a", state)) for state in CRASH_LOOP_STATES.values()]
    assert len({status.pod_inputs(p) for p in trimmed}) == 1


def test_a_plugin_running_again_counts_as_crashing_until_it_outlasts_the_back_off() -> None:
    """Without a readiness probe a restarted plugin is ready at once (kubelet 1.36): it still
    counts as crashing until it has run for kubelet's 10-minute back-off reset."""
    started = NOW - datetime.timedelta(minutes=3)
    running = {"running": {"startedAt": started.strftime("%Y-%m-%dT%H:%M:%SZ")}}
    for ready in (False, True):
        result = status.observed_status(
            daemonset(ready=1), [crash_pod("a", running, ready=ready)], generation=1, now=NOW
        )
        assert conditions(result)["Degraded"] == ("True", "PluginCrashing")
    later = NOW + datetime.timedelta(minutes=8)
    result = status.observed_status(
        daemonset(ready=1), [crash_pod("a", running, ready=True)], generation=1, now=later
    )
    assert conditions(result)["Degraded"] == ("False", "AsExpected")


def test_an_init_container_done_or_a_pod_being_deleted_is_no_crash() -> None:
    done = crash_pod("b", {"terminated": {"exitCode": 0, "reason": "Completed"}}, init=True)
    deleting = crash_pod("c", {"terminated": {"exitCode": 137, "reason": "Error"}})
    deleting["metadata"]["deletionTimestamp"] = "2026-07-01T11:59:00Z"
    result = status.observed_status(daemonset(ready=1), [done, deleting], generation=1, now=NOW)
    assert conditions(result)["Degraded"] == ("False", "AsExpected")


def test_pull_failures_of_other_daemonsets_pods_do_not_count() -> None:
    pods = [pod("x", "node-x", owner_uid="other", waiting="ErrImagePull")]
    result = status.observed_status(daemonset(), pods, generation=1, now=NOW)
    assert conditions(result)["Degraded"] == ("False", "AsExpected")


def test_last_transition_time_kept_while_status_unchanged() -> None:
    first = status.observed_status(daemonset(ready=1), [], generation=1, now=EARLIER)
    assert first.conditions is not None
    later = status.observed_status(
        daemonset(ready=2), [], generation=2, now=NOW, previous=first.conditions
    )
    assert later.conditions is not None
    by_type = {c.type: c for c in later.conditions}
    # Ready stays False (message changes), Degraded stays False: times kept.
    assert by_type["Ready"].last_transition_time == EARLIER
    assert by_type["Ready"].message == "2 of 3 plugin pods are ready"
    assert by_type["Degraded"].last_transition_time == EARLIER
    assert by_type["Ready"].observed_generation == 2

    done = status.observed_status(daemonset(), [], generation=2, now=NOW, previous=later.conditions)
    assert done.conditions is not None
    by_type = {c.type: c for c in done.conditions}
    assert by_type["Ready"].status == "True"
    assert by_type["Ready"].last_transition_time == NOW.replace(microsecond=0)
    assert by_type["Degraded"].last_transition_time == EARLIER


def test_same_observation_gives_equal_status() -> None:
    pods = [pod("a", "node-a")]
    first = status.observed_status(daemonset(), pods, generation=1, now=EARLIER)
    assert first.conditions is not None
    again = status.observed_status(
        daemonset(), pods, generation=1, now=NOW, previous=first.conditions
    )
    assert again == first


def test_status_round_trips_through_the_wire() -> None:
    result = status.observed_status(daemonset(), [pod("a", "node-a")], generation=1, now=NOW)
    wire = result.wire()
    assert wire["conditions"][0]["lastTransitionTime"] == "2026-07-01T12:00:00Z"
    assert type(result).model_validate(wire) == result


def test_naive_time_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        status.observed_status(None, [], generation=1, now=datetime.datetime(2026, 1, 1))


def _rich(base: dict[str, Any]) -> dict[str, Any]:
    """``base`` with what a real pod carries and the status never reads."""
    rich = {**base, "metadata": {**base["metadata"]}, "spec": {**(base.get("spec") or {})}}
    rich["metadata"].update(
        labels={"app": "intel-gpu-plugin", "controller-revision-hash": "abc"},
        annotations={"a": "b" * 500},
        creationTimestamp="2026-07-01T00:00:00Z",
    )
    rich["spec"].update(containers=[{"name": "c", "image": "x", "args": ["-v", "4"] * 50}])
    rich["status"] = {
        **rich["status"],
        "conditions": [{"type": "Ready", "status": "True"}],
        "podIP": "10.0.0.1",
    }
    for field in ("containerStatuses", "initContainerStatuses"):
        for container in rich["status"].get(field, ()):
            container.update(ready=False, restartCount=3, imageID="sha256:" + "0" * 64)
    return rich


@pytest.mark.parametrize(
    "base",
    [
        pod("a", "node-a"),
        pod("b", None, phase="Pending"),
        pod("c", "node-c", deleting=True),
        pod("d", "node-d", phase="Failed"),
        pod("e", "node-e", waiting="CrashLoopBackOff"),
        pod("f", "node-f", init_waiting="ImagePullBackOff"),
        pod("g", "node-g", owner_uid="other"),
        *(crash_pod(f"h{i}", state) for i, state in enumerate(CRASH_LOOP_STATES.values())),
    ],
)
def test_pod_essentials_keep_everything_the_status_reads(base: dict[str, Any]) -> None:
    full = _rich(base)
    trimmed = status.pod_essentials(full)
    assert len(repr(trimmed)) < len(repr(full)) / 2
    assert status.pod_inputs(trimmed) == status.pod_inputs(full)
    for name in ("name", "namespace", "resourceVersion", "ownerReferences"):
        assert trimmed["metadata"].get(name) == full["metadata"].get(name)

    def observed(pods: list[dict[str, Any]]) -> Any:
        return status.observed_status(
            daemonset(desired=1, ready=0), pods, generation=2, now=NOW
        ).model_dump()

    assert observed([trimmed]) == observed([full])


def test_observe_builds_exactly_the_wire_form_of_the_api_model() -> None:
    """The reconciler writes ``observe``'s plain data: it must be what validating and dumping
    ``plugin.DevicePluginStatus`` gives, field for field (times included)."""
    stored = [
        # Kept (same status): the time is rewritten as the model writes it, in UTC with Z.
        {
            "type": "Ready",
            "status": "True",
            "lastTransitionTime": "2026-06-30T08:00:00+00:00",
            "reason": "PodsReady",
            "message": "m",
        },
        # Another offset is kept as an offset, as the model does.
        {
            "type": "Progressing",
            "status": "False",
            "lastTransitionTime": "2026-06-30T10:00:00+02:00",
            "reason": "RolloutComplete",
            "message": "m",
        },
        {
            "type": "Degraded",
            "status": "True",
            "lastTransitionTime": "2026-06-30T08:00:00Z",
            "reason": "Whatever",
            "message": "m",
        },
    ]
    node = {
        "metadata": {"name": "node-a"},
        "status": {
            "capacity": {"gpu.intel.com/i915": "2"},
            "allocatable": {"gpu.intel.com/i915": "1"},
        },
    }
    ready_pod = pod("a", "node-a")
    ready_pod["status"]["conditions"] = [
        {"type": "Ready", "status": "True", "lastTransitionTime": "2026-06-30T08:00:00Z"}
    ]
    observation = status.observe(
        daemonset(),
        [ready_pod, pod("b", "node-b", waiting="ImagePullBackOff")],
        generation=2,
        now=NOW,
        prior=status.prior_conditions(stored),
        nodes={"node-a": node},
        domain="gpu.intel.com",
    )
    wire = observation.status
    assert plugin.DevicePluginStatus.model_validate(wire).wire() == wire
    by_type = {c["type"]: c for c in wire["conditions"]}
    assert by_type["Ready"]["lastTransitionTime"] == "2026-06-30T08:00:00Z"
    assert by_type["Progressing"]["lastTransitionTime"] == "2026-06-30T10:00:00+02:00"
    assert by_type["Degraded"]["lastTransitionTime"] == "2026-06-30T08:00:00Z"
    assert by_type["DevicesAdvertised"]["lastTransitionTime"] == "2026-07-01T12:00:00Z"
    assert wire["devices"] == [
        {"resource": "gpu.intel.com/i915", "capacity": 2, "allocatable": 1, "nodes": 1}
    ]
    assert wire["controlledDaemonSet"] == {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "name": "intel-gpu-plugin-x",
        "namespace": "kube-system",
        "uid": DS_UID,
    }
    legacy = status.observed_status(
        daemonset(),
        [ready_pod, pod("b", "node-b", waiting="ImagePullBackOff")],
        generation=2,
        now=NOW,
        previous=[meta.Condition.model_validate(c) for c in stored],
        nodes={"node-a": node},
        domain="gpu.intel.com",
    )
    assert legacy.wire() == wire


def test_prior_conditions_drop_what_is_not_a_condition_and_keep_the_last_of_a_type() -> None:
    prior = status.prior_conditions(
        [
            {
                "type": "Ready",
                "status": "True",
                "lastTransitionTime": "2026-01-01T00:00:00Z",
                "reason": "A",
                "message": "",
            },
            {
                "type": "Ready",
                "status": "False",
                "lastTransitionTime": "2026-01-02T00:00:00Z",
                "reason": "B",
                "message": "",
            },
            {
                "type": "Degraded",
                "status": "Maybe",
                "lastTransitionTime": "2026-01-01T00:00:00Z",
                "reason": "C",
                "message": "",
            },
            "not a condition",
        ]
    )
    assert prior == {"Ready": status.Prior("False", "2026-01-02T00:00:00Z")}
    assert status.prior_conditions(None) == {}
    assert status.prior_conditions({"type": "Ready"}) == {}


def test_the_prior_of_an_observed_status_is_what_parsing_it_gives() -> None:
    """What the reconciler takes as the stored conditions after writing them, unvalidated."""
    stored = status.observe(
        daemonset(desired=3, ready=1),
        [pod("a", "node-a", waiting="CrashLoopBackOff"), pod("b", "node-b")],
        generation=2,
        now=EARLIER,
        name_conflict="x" * 40000,
    ).status["conditions"]
    later = status.observe(
        daemonset(),
        [pod("a", "node-a")],
        generation=3,
        now=NOW,
        prior=status.prior_conditions(stored),
    ).status["conditions"]
    for conditions in (stored, later):
        assert status.observed_prior(conditions) == status.prior_conditions(conditions)
    assert len(status.observed_prior(stored)) == 4
