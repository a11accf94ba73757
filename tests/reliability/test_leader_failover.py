"""Scenario 3, leader failover: two replicas (``--leader-elect``, lease 3 s, renew deadline
2 s, retry 0.5 s) under continuous churn of all eight kinds; the leader is killed with
SIGKILL again and again (and restarted as a follower). Measured: kill → the other replica
holds the Lease. Proved from the apiserver's audit log: every write of a replica (DaemonSets,
statuses, Events) was received while that replica's user held the Lease, i.e. the last
successful Lease write before it was its own, so no two replicas ever wrote in overlapping
lease terms. Each replica has its own client certificate (user) so the audit log tells them
apart. At the end the cluster must have converged with nothing lost.
"""

from __future__ import annotations

import datetime
import pathlib
import random
import time
from typing import Any

import pytest

from clusters import TestCluster
from deviceplugin_operator.controller import election
from operators import Operator, start_operator
from polling import eventually
from reliability import audit, fleet
from reliability.audit import overlapping_writes

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

TIMING = (
    "--leader-elect-lease-duration=3s",
    "--leader-elect-renew-deadline=2s",
    "--leader-elect-retry-period=500ms",
)
USERS = ("replica-a", "replica-b")


def holder(cluster: TestCluster, namespace: str) -> str:
    lease = cluster.api.get(
        f"/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases/{election.LEASE_NAME}"
    )
    return str(((lease or {}).get("spec") or {}).get("holderIdentity") or "")


def test_killed_leaders_are_replaced_and_never_two_write(
    cluster: TestCluster, crds: None, namespace: str, tmp_path: pathlib.Path
) -> None:
    kubeconfigs = {user: cluster.cluster.user_kubeconfig(user) for user in USERS}
    run = fleet.run_id()
    rng = random.Random(run)
    since = datetime.datetime.now(datetime.UTC)

    def start(user: str) -> Operator:
        return start_operator(
            kubeconfigs[user], namespace, tmp_path / f"{user}.log", leader_elect=TIMING
        )

    running = {user: start(user) for user in USERS}

    def leading_user() -> str | None:
        current = holder(cluster, namespace)
        for user, process in running.items():
            if current and process.identity() == current and process.alive:
                return user
        return None

    churn = fleet.Churn(cluster.api, run, seed=rng.randint(0, 2**31))
    churn.start(pause=0.05)
    kills = fleet.iterations(6)
    takeovers: list[float] = []
    try:
        for _ in range(kills):
            leader = eventually(leading_user, timeout=30, what="a leader")
            time.sleep(rng.uniform(1.0, 3.0))  # the leader works under churn
            killed_at = time.monotonic()
            running[leader].kill()
            (other,) = (user for user in USERS if user != leader)
            eventually(
                lambda other=other: leading_user() == other,
                timeout=30,
                interval=0.05,
                what="the takeover",
            )
            takeovers.append(time.monotonic() - killed_at)
            running[leader] = start(leader)  # back as a follower
        churn.pause()
        done = fleet.wait_converged(
            cluster.api, namespace, run, expected=churn.expected(), timeout=60
        )
        assert not done.problems, done.problems
    finally:
        churn.stop()
        for process in running.values():
            process.terminate()
        # Cluster-scoped: later modules' operators must not find them.
        for kind, name in churn.pool():
            cluster.api.request("DELETE", fleet.plural_path(kind, name))
    churn.assert_no_unexpected_failures()

    time.sleep(1.0)  # the audit log is written asynchronously
    entries = audit.entries(cluster.cluster.audit_log, USERS, since)
    checked, wrong = overlapping_writes(entries, namespace)
    assert checked > 0, "no write of either replica in the audit log"
    assert not wrong, wrong[:10]
    by_user = {user: sum(1 for e in entries if e["user"]["username"] == user) for user in USERS}
    for user in USERS:
        assert not fleet.tracebacks(tmp_path / f"{user}.log")
    fleet.report(
        "leader_failover",
        {
            "injected": "SIGKILL of the leading replica of two, under churn of 8 kinds",
            "kills": kills,
            "lease": "3 s duration, 2 s renew deadline, 0.5 s retry",
            "takeover": fleet.summary(takeovers),
            "audited_requests_per_replica": by_user,
            "writes_checked_against_lease_terms": checked,
            "writes_outside_own_term": len(wrong),
            "convergence_after_last_takeover_s": round(done.seconds, 3),
            "resources_checked": done.checked,
            "resource_operations": churn.operations,
            "churn": churn.figures(),
            "lost": 0,
        },
    )


def test_the_audit_check_catches_a_write_in_another_replicas_term() -> None:
    def entry(user: str, verb: str, resource: str, at: str, name: str = "x") -> dict[str, Any]:
        return {
            "user": {"username": user},
            "verb": verb,
            "requestURI": f"/{resource}/{name}",
            "objectRef": {"resource": resource, "name": name, "namespace": "ns"},
            "responseStatus": {"code": 200},
            "requestReceivedTimestamp": at,
            "stageTimestamp": at,
        }

    lease = election.LEASE_NAME
    entries = [
        entry("replica-a", "update", "leases", "2026-01-01T00:00:01Z", lease),
        entry("replica-a", "create", "daemonsets", "2026-01-01T00:00:02Z"),
        entry("replica-b", "update", "leases", "2026-01-01T00:00:05Z", lease),
        entry("replica-b", "patch", "daemonsets", "2026-01-01T00:00:06Z"),
    ]
    assert overlapping_writes(entries, "ns") == (2, [])
    late = entry("replica-a", "update", "daemonsets", "2026-01-01T00:00:07Z")
    checked, wrong = overlapping_writes([*entries, late], "ns")
    assert checked == 3
    assert len(wrong) == 1
    assert "replica-a update" in wrong[0]
    assert "replica-b held the Lease" in wrong[0]
