"""Scenario 1, crash anywhere: the operator is killed with SIGKILL at random moments while
resources of all eight kinds are created, updated and deleted; after each restart the
cluster must converge to exactly one correct DaemonSet per resource, with correct statuses,
no duplicates and no orphans (``fleet.converged``).

Kills land 0-2 s after the operator's first log line (start-up, informer lists, reconciles
and status writes of the 16 resources all fall in that window). Every tenth kill the churn
pauses and a restarted operator must converge (time recorded); after the last kill, a final
restart must converge too.
"""

from __future__ import annotations

import pathlib
import random
import time

import pytest

from clusters import TestCluster
from operators import start_operator
from reliability import fleet

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

CHECK_EVERY = 10


def test_kill_9_at_random_points_loses_nothing(
    cluster: TestCluster, crds: None, namespace: str, tmp_path: pathlib.Path
) -> None:
    log = tmp_path / "operator.log"
    run = fleet.run_id()
    rng = random.Random(run)
    churn = fleet.Churn(cluster.api, run, seed=rng.randint(0, 2**31))
    kills = fleet.iterations(50)
    lifetimes: list[float] = []
    convergence: list[float] = []
    checked: list[int] = []
    churn.start()
    try:
        for iteration in range(1, kills + 1):
            operator = start_operator(cluster.kubeconfig, namespace, log)
            operator.wait_logging()  # from here on every kill lands in the operator's work
            lifetime = rng.uniform(0.0, 2.0)
            time.sleep(lifetime)
            assert operator.popen.poll() is None, f"the operator exited by itself; see {log}"
            operator.kill()
            lifetimes.append(lifetime)
            if iteration % CHECK_EVERY == 0 or iteration == kills:
                churn.pause()
                operator = start_operator(cluster.kubeconfig, namespace, log)
                done = fleet.wait_converged(
                    cluster.api, namespace, run, expected=churn.expected(), timeout=90
                )
                assert not done.problems, f"after kill {iteration}: {done.problems}; see {log}"
                convergence.append(done.seconds)
                checked.append(done.checked)
                operator.kill()
                churn.resume()
    finally:
        churn.stop()
    # Nothing left over: the final state again, then everything deleted and collected.
    operator = start_operator(cluster.kubeconfig, namespace, log)
    try:
        final = fleet.wait_converged(
            cluster.api, namespace, run, expected=churn.expected(), timeout=90
        )
        assert not final.problems, final.problems
        for kind, name in churn.pool():
            status, answer = cluster.api.request("DELETE", fleet.plural_path(kind, name))
            assert status in (200, 202, 404), (status, answer)
        cleared = fleet.wait_converged(
            cluster.api, namespace, run, expected=set(), allow_none=True, timeout=90
        )
        assert not cleared.problems, cleared.problems
    finally:
        operator.terminate()
    churn.assert_no_unexpected_failures()
    assert not fleet.tracebacks(log), fleet.tracebacks(log)[:5]
    fleet.report(
        "crash",
        {
            "injected": "SIGKILL of the operator during create/update/delete churn of 8 kinds",
            "kills": kills,
            "resource_operations": churn.operations,
            "churn": churn.figures(),
            "resources_checked_per_check": [*checked, final.checked],
            "operator_lifetime_before_kill": fleet.summary(lifetimes),
            "convergence_after_restart": fleet.summary([*convergence, final.seconds]),
            "all_deleted_and_collected_s": round(cleared.seconds, 3),
            "lost": 0,
        },
    )
