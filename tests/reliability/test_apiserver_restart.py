"""Scenario 2, apiserver restart and etcd compaction, on a control plane of this module's own.

* The apiserver is restarted (down 2 s) under resource churn, three times: the operator's
  watches break, it reconnects, and the cluster converges.
* The operator is frozen (SIGSTOP) while resources change, etcd is compacted and the
  apiserver restarted, so that every watch it resumes from its last resourceVersion is
  answered 410 Gone: it must re-list, miss none of the changes made while it was frozen, and
  converge; the log must show the expiries and no error loop.
"""

from __future__ import annotations

import pathlib
import random
import signal
import time

import pytest

from clusters import TestCluster
from operators import start_operator
from reliability import fleet

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

RESTARTS = 3
# Each of the operator's ~18 informers logs one warning per failed reconnect, backing off from
# 0.8 s: about 5 each in a 14 s outage. An error loop would log thousands, and would go on
# after convergence, which is checked too (a quiet window with nothing logged).
MAX_WARNINGS_PER_OUTAGE = 150
QUIET_WINDOW = 3.0


QUIET_WITHIN = 30.0


def assert_quiet(log: pathlib.Path) -> None:
    """Logging at warning level stops once the cluster converged: a window of ``QUIET_WINDOW``
    seconds with nothing new comes within ``QUIET_WITHIN``. An informer of a kind the churn does
    not touch may still log its last back-off reconnect just after the resources converged
    (seen once: 89 then 90); an error loop never falls quiet."""
    deadline = time.monotonic() + QUIET_WITHIN
    while True:
        before = warnings_in(log)
        time.sleep(QUIET_WINDOW)
        if warnings_in(log) == before:
            return
        assert time.monotonic() < deadline, f"warnings go on after convergence; see {log}"


def warnings_in(log: pathlib.Path) -> int:
    return sum(
        1 for record in fleet.log_records(log) if record.get("level") in ("warning", "error")
    )


def test_apiserver_restarts_and_compaction_lose_nothing(
    own_cluster: TestCluster, tmp_path: pathlib.Path
) -> None:
    handle = own_cluster.cluster
    api = own_cluster.api
    namespace = f"rel-{fleet.run_id()}"
    api.create("/api/v1/namespaces", {"metadata": {"name": namespace}})
    log = tmp_path / "operator.log"
    run = fleet.run_id()
    rng = random.Random(run)
    churn = fleet.Churn(api, run, seed=rng.randint(0, 2**31), outages=True)
    for _ in range(40):  # every name of the pool exists or not, at random
        churn.step(rng)
    operator = start_operator(own_cluster.kubeconfig, namespace, log)
    done = fleet.wait_converged(api, namespace, run, expected=churn.expected(), timeout=90)
    assert not done.problems, done.problems
    checked = [done.checked]

    outages: list[float] = []
    restart_convergence: list[float] = []
    churn.start(pause=0.05)
    try:
        for _ in range(RESTARTS):
            time.sleep(rng.uniform(0.5, 2.0))
            outages.append(handle.restart_apiserver(down_for=2.0))
            time.sleep(1.0)  # churn goes on against the restarted apiserver
            churn.pause()
            done = fleet.wait_converged(api, namespace, run, expected=churn.expected(), timeout=60)
            assert not done.problems, f"after an apiserver restart: {done.problems}; see {log}"
            restart_convergence.append(done.seconds)
            checked.append(done.checked)
            assert_quiet(log)
            churn.resume()
        assert operator.popen.poll() is None, f"the operator exited; see {log}"
        warnings_after_restarts = warnings_in(log)
        assert warnings_after_restarts <= RESTARTS * MAX_WARNINGS_PER_OUTAGE

        # Frozen through changes, a compaction and a restart: every watch resumes at a
        # compacted resourceVersion.
        churn.pause()
        operator.popen.send_signal(signal.SIGSTOP)
        operations_before = churn.operations
        churn.resume()
        time.sleep(3.0)
        churn.pause()
        missed = churn.operations - operations_before
        compacted_at = handle.compact_etcd()
        outages.append(handle.restart_apiserver(down_for=0.5))
        for _ in range(10):
            churn.step(rng)
        handle.compact_etcd()
        resumed = time.monotonic()
        operator.popen.send_signal(signal.SIGCONT)
        done = fleet.wait_converged(api, namespace, run, expected=churn.expected(), timeout=60)
        assert not done.problems, f"after compaction: {done.problems}; see {log}"
        checked.append(done.checked)
        compaction_convergence = time.monotonic() - resumed
        assert_quiet(log)
    finally:
        churn.stop()
        operator.popen.send_signal(signal.SIGCONT)

    churn.assert_no_unexpected_failures()
    records = fleet.log_records(log)
    expired = [r for r in records if r.get("msg") == "Watch expired"]
    assert expired, f"no watch was answered 410 Gone; see {log}"
    warnings = warnings_in(log) - warnings_after_restarts
    assert warnings <= MAX_WARNINGS_PER_OUTAGE, f"{warnings} warnings; see {log}"
    assert operator.popen.poll() is None, f"the operator exited; see {log}"
    assert not fleet.tracebacks(log), fleet.tracebacks(log)[:5]
    operator.terminate()
    fleet.report(
        "apiserver_restart",
        {
            "injected": (
                f"{RESTARTS} kube-apiserver restarts (down 2 s) under churn; then the operator "
                "frozen through changes, an etcd compaction, an apiserver restart and a "
                "second compaction"
            ),
            "apiserver_outage": fleet.summary(outages),
            "convergence_after_restart": fleet.summary(restart_convergence),
            "changes_while_frozen": missed + 10,
            "compacted_at_revision": compacted_at,
            "watches_expired_410": len(expired),
            "convergence_after_compaction_s": round(compaction_convergence, 3),
            "warnings_logged": warnings_in(log),
            "resource_operations": churn.operations,
            "resources_checked_per_check": checked,
            "churn": churn.figures(),
            "lost": 0,
        },
    )
