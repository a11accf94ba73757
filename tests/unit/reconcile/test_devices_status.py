"""observed_status's devices: what the plugins' nodes advertise, and DevicesAdvertised."""

from __future__ import annotations

import datetime
from typing import Any

import pytest

from deviceplugin_operator import devices
from deviceplugin_operator.reconcile import status

NOW = datetime.datetime(2026, 7, 1, 12, 0, 0, tzinfo=datetime.UTC)
GRACE = datetime.timedelta(minutes=5)
LONG_AGO = NOW - datetime.timedelta(hours=1)
DS_UID = "ds-uid"
DS = {
    "metadata": {"name": "intel-gpu-plugin-x", "namespace": "p", "uid": DS_UID, "generation": 1},
    "status": {"desiredNumberScheduled": 3, "numberReady": 3, "observedGeneration": 1},
}


def pod(node: str, *, ready_since: datetime.datetime | None = LONG_AGO) -> dict[str, Any]:
    if ready_since is None:
        conditions = [{"type": "Ready", "status": "False"}]
    else:
        since = ready_since.isoformat().replace("+00:00", "Z")
        conditions = [{"type": "Ready", "status": "True", "lastTransitionTime": since}]
    return {
        "metadata": {
            "name": f"plugin-{node}",
            "ownerReferences": [{"kind": "DaemonSet", "uid": DS_UID, "controller": True}],
        },
        "spec": {"nodeName": node},
        "status": {"phase": "Running", "conditions": conditions},
    }


def node(name: str, **figures: str) -> dict[str, Any]:
    """A node whose capacity and allocatable are ``figures`` (``gpu__i915`` is
    ``gpu.intel.com/i915``)."""
    named = {
        f"{key.split('__')[0]}.intel.com/{key.split('__')[1]}" if "__" in key else key: value
        for key, value in figures.items()
    }
    return {
        "metadata": {"name": name, "resourceVersion": "1"},
        "status": {"capacity": dict(named), "allocatable": dict(named)},
    }


def by_name(nodes: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {n["metadata"]["name"]: n for n in nodes}


def observe(
    pods: list[dict[str, Any]], nodes: list[dict[str, Any]], domain: str = "gpu.intel.com"
) -> Any:
    return status.observed_status(
        DS, pods, generation=1, now=NOW, nodes=by_name(nodes), domain=domain, devices_grace=GRACE
    )


def devices_condition(result: Any) -> tuple[str, str, str]:
    (found,) = [c for c in result.conditions if c.type == status.DEVICES_ADVERTISED]
    return found.status, found.reason, found.message


def test_devices_are_summed_over_the_plugins_nodes_only() -> None:
    nodes = [
        node("a", gpu__i915="2", gpu__millicores="2000", cpu="32"),
        node("b", gpu__i915="1", gpu__millicores="1000"),
        node("c", gpu__i915="8"),  # no plugin pod here
    ]
    nodes[1]["status"]["allocatable"]["gpu.intel.com/i915"] = "0"
    result = observe([pod("a"), pod("b")], nodes)
    assert [d.wire() for d in result.devices or ()] == [
        {"resource": "gpu.intel.com/i915", "capacity": 3, "allocatable": 2, "nodes": 2},
        {"resource": "gpu.intel.com/millicores", "capacity": 3000, "allocatable": 3000, "nodes": 2},
    ]
    assert result.device_totals == "i915=2, millicores=3000"
    assert devices_condition(result)[:2] == ("True", "AllNodesAdvertise")


def test_other_domains_do_not_count_and_zero_is_no_device() -> None:
    result = observe([pod("a")], [node("a", qat__generic="4", gpu__i915="0")])
    assert [d.wire() for d in result.devices or ()] == [
        {"resource": "gpu.intel.com/i915", "capacity": 0, "allocatable": 0, "nodes": 0}
    ]
    assert result.device_totals == "i915=0"
    condition, reason, message = devices_condition(result)
    assert (condition, reason) == ("False", "NoDevices")
    assert "1 of 1 nodes with a ready plugin pod advertise no gpu.intel.com resources" in message
    assert "1 node (a)" in message


def test_fpga_dynamic_resource_names() -> None:
    af = "fpga.intel.com/af-695.d84.aVKNtusxV3qMNmj5-qCB9thCTcSko8QT-J5DNoP5BAs"
    region = "fpga.intel.com/region-ce48969398f05f33946d560708be108a"
    nodes = [
        {"metadata": {"name": "a"}, "status": {"capacity": {af: "2"}, "allocatable": {af: "2"}}},
        {"metadata": {"name": "b"}, "status": {"capacity": {region: "1"}}},
    ]
    result = observe([pod("a"), pod("b")], nodes, domain=devices.KINDS["fpga"].resource_domain)
    assert [(d.resource, d.capacity, d.allocatable, d.nodes) for d in result.devices or ()] == [
        (af, 2, 2, 1),
        (region, 1, 0, 1),
    ]
    assert devices_condition(result)[0] == "True"


def test_some_nodes_without_devices_are_named_up_to_ten_with_the_count() -> None:
    names = [f"n{i:02}" for i in range(13)]
    nodes = [node("has", gpu__i915="1"), *(node(n) for n in names)]
    result = observe([pod("has"), *(pod(n) for n in names)], nodes)
    condition, reason, message = devices_condition(result)
    assert (condition, reason) == ("False", "SomeNodesWithoutDevices")
    assert message.startswith("13 of 14 nodes with a ready plugin pod advertise no")
    assert "13 nodes (" + ", ".join(names[:10]) + " and 3 more)" in message
    assert "n10" not in message


def test_grace_period_keeps_it_unknown_and_says_when_to_look_again() -> None:
    fresh = NOW - datetime.timedelta(minutes=2)
    nodes = [node("a", gpu__i915="1"), node("b")]
    pods = [pod("a"), pod("b", ready_since=fresh)]
    condition, reason, message = devices_condition(observe(pods, nodes))
    assert (condition, reason) == ("Unknown", "WaitingForDevices")
    assert "1 node (b) with a plugin pod ready for less than 5m" in message
    recheck = status.devices_recheck(
        DS, pods, nodes=by_name(nodes), domain="gpu.intel.com", now=NOW, devices_grace=GRACE
    )
    assert recheck == 3 * 60 + 1
    # Once the grace is over: False, and nothing is left to wait for.
    over = [pod("a"), pod("b", ready_since=NOW - GRACE)]
    assert devices_condition(observe(over, nodes))[1] == "SomeNodesWithoutDevices"
    assert (
        status.devices_recheck(
            DS, over, nodes=by_name(nodes), domain="gpu.intel.com", now=NOW, devices_grace=GRACE
        )
        is None
    )


def test_graces_ending_one_after_another_are_looked_at_in_tenths_of_the_grace() -> None:
    nodes = [node("a", gpu__i915="1"), node("b"), node("c")]
    almost = NOW - GRACE + datetime.timedelta(seconds=2)
    pods = [pod("a"), pod("b", ready_since=almost), pod("c", ready_since=almost)]
    recheck = status.devices_recheck(
        DS, pods, nodes=by_name(nodes), domain="gpu.intel.com", now=NOW, devices_grace=GRACE
    )
    # b's and c's graces end in 2 s; anything ending within the next tenth is taken with them
    assert recheck == GRACE.total_seconds() / 10


def test_a_node_that_loses_its_devices_is_reported_at_once_and_one_that_gains_them() -> None:
    before = observe([pod("a")], [node("a", gpu__i915="1")])
    assert devices_condition(before)[0] == "True"
    lost = status.observed_status(
        DS,
        [pod("a")],
        generation=1,
        now=NOW + datetime.timedelta(seconds=5),
        previous=before.conditions or (),
        nodes={"a": node("a")},
        domain="gpu.intel.com",
        devices_grace=GRACE,
    )
    assert devices_condition(lost)[:2] == ("False", "NoDevices")
    assert (lost.device_totals, lost.devices) == ("none", [])
    (transition,) = [c for c in lost.conditions or () if c.type == status.DEVICES_ADVERTISED]
    assert transition.last_transition_time == NOW + datetime.timedelta(seconds=5)
    gained = observe([pod("a")], [node("a", gpu__i915="4")])
    assert devices_condition(gained)[0] == "True"
    assert gained.device_totals == "i915=4"


@pytest.mark.parametrize("pods", [[], [pod("a", ready_since=None)]], ids=["no-pods", "not-ready"])
def test_nothing_to_judge_without_a_ready_plugin(pods: list[dict[str, Any]]) -> None:
    assert devices_condition(observe(pods, [node("a")]))[:2] == ("Unknown", "NoReadyPlugins")


def test_a_node_missing_from_the_cache_advertises_nothing() -> None:
    assert devices_condition(observe([pod("gone")], []))[1] == "NoDevices"


def test_totals_are_short() -> None:
    result = observe([pod("a")], [node("a", **{f"gpu__r{i}": str(i) for i in range(6)})])
    assert result.device_totals == "r0=0, r1=1, r2=2, r3=3, +2 more"


@pytest.mark.parametrize(
    ("quantity", "count"),
    [("4", 4), ("2k", 2000), ("1Ki", 1024), ("1e3", 1000), ("-1", 0), ("x", 0), ("500m", 0)],
)
def test_quantities(quantity: str, count: int) -> None:
    assert status.quantity_count(quantity) == count


def test_node_essentials_keep_only_the_domains_figures() -> None:
    full: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": "a", "resourceVersion": "7", "labels": {"x": "y"}, "uid": "u"},
        "spec": {"podCIDR": "10.0.0.0/24"},
        "status": {
            "capacity": {"cpu": "32", "gpu.intel.com/i915": "2", "qat.intel.com/generic": "4"},
            "allocatable": {"cpu": "31", "gpu.intel.com/i915": "2"},
            "conditions": [{"type": "Ready", "status": "True"}],
            "images": [{"names": ["x"], "sizeBytes": 1}],
        },
    }
    kept = status.node_essentials(full, frozenset({"gpu.intel.com"}))
    assert kept == {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": "a", "resourceVersion": "7"},
        "status": {
            "capacity": {"gpu.intel.com/i915": "2"},
            "allocatable": {"gpu.intel.com/i915": "2"},
        },
    }
    assert "status" not in status.node_essentials(full, frozenset({"dlb.intel.com"}))
    # A heartbeat (conditions, images) leaves the figures as they were.
    beat = {**full, "status": {**full["status"], "conditions": [], "images": []}}
    beat_kept = status.node_essentials(beat, frozenset({"gpu.intel.com"}))
    assert status.node_devices(beat_kept, "gpu.intel.com") == status.node_devices(
        kept, "gpu.intel.com"
    )


def test_pod_readiness_is_kept_and_an_input() -> None:
    essentials = status.pod_essentials(pod("a"))
    assert essentials["status"]["conditions"][0]["status"] == "True"
    assert status.pod_inputs(pod("a")) != status.pod_inputs(pod("a", ready_since=None))


def test_nodes_the_operator_may_not_read_leave_the_devices_out() -> None:
    result = status.observed_status(
        DS,
        [pod("a")],
        generation=1,
        now=NOW,
        nodes={"a": node("a", gpu__i915="1")},
        domain="gpu.intel.com",
        nodes_unreadable="RBAC denied: list nodes",
    )
    assert devices_condition(result) == ("Unknown", "NodesNotReadable", "RBAC denied: list nodes")
    assert "devices" not in result.wire()
    assert "deviceTotals" not in result.wire()
