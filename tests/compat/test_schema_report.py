"""The reference's CRDs prune status.conditions and observedGeneration: said once, not fought.

On the reference's CRDs, ``status.observedGeneration`` and ``status.conditions`` are not in
the schema: the API server prunes them from every status patch (observed by
``test_reference_compat``: only ``controlledDaemonSet``, ``desiredNumberScheduled``,
``nodeNames``, ``numberReady`` survive). Before, the operator neither said so nor stopped
trying: each resource got a status patch that changed nothing on its first reconcile and
after each real status change.

What the operator does (``controller/reconciler.py``, ``_write_status``): when the
object a status patch returns lacks a field the patch set (``observedGeneration`` or
``conditions``), remember per kind that the schema prunes it; say so once per kind, as a
WARNING log record with ``kind`` and ``crd`` (``<plural>.deviceplugin.intel.com``) and a
message naming the missing fields and the fix (``kubectl apply --server-side -f
deployments/operator/crd/bases``), and one Warning Event ``OutdatedCRD`` on that resource with
the same message; from then on leave those fields out of the wanted status, so that an
unchanged status is never patched again. The reference's four fields keep being written.
"""

from __future__ import annotations

import datetime
import time

import pytest

from compat import test_reference_compat as scenario
from compat.support import THIS_USER, audit_entries, now, writes
from compat.test_reference_compat import Compat, make_with_reference, wait_settled
from polling import eventually
from reliability import fleet

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

compat = scenario.compat  # the scenario's module fixture, for this module's own cluster

KINDS = ("dlb", "dsa", "fpga", "gpu", "iaa", "npu", "qat", "sgx")
REASON = "OutdatedCRD"
WORKERS = 4
"""Workers per kind: patches already in flight when the first answer shows the pruning."""
QUIET_WINDOW = datetime.timedelta(seconds=20)
QUIET_ATTEMPTS = 4


def test_a_schema_without_conditions_is_reported_once_and_not_fought(compat: Compat) -> None:
    cluster = compat.cluster
    make_with_reference(compat)
    since = now()
    process = compat.start_this("schema")
    try:
        wait_settled(cluster)
        # Nothing left to write once the rolled pods are ready: a quiet 20 s window must come.
        # On a loaded machine the last rolled pod can turn ready after wait_settled, so a few
        # windows are allowed; a fight (a patch the schema prunes, written again and again)
        # never leaves one quiet.
        for _ in range(QUIET_ATTEMPTS):
            second = now()
            time.sleep(QUIET_WINDOW.total_seconds())
            later = audit_entries(cluster, [THIS_USER], second, second + QUIET_WINDOW)
            if not writes(later):
                break
        entries = audit_entries(cluster, [THIS_USER], since)
    finally:
        process.terminate()

    records = [
        r
        for r in fleet.log_records(process.log)
        if r.get("level") == "warning" and "deployments/operator/crd/bases" in str(r.get("msg"))
    ]
    reported = sorted(str(r.get("kind")) for r in records)
    assert reported == sorted(f"{dev.capitalize()}DevicePlugin" for dev in KINDS), records
    for record in records:
        assert "conditions" in record["msg"], record
        assert "observedGeneration" in record["msg"], record

    events = eventually(
        lambda: [
            e
            for e in (cluster.api.get("/api/v1/namespaces/default/events") or {}).get("items", [])
            if e.get("reason") == REASON
        ],
        timeout=10,
        what="the OutdatedCRD Events",
    )
    assert len(events) == len(KINDS), [e["involvedObject"] for e in events]
    assert sorted(e["involvedObject"]["kind"] for e in events) == sorted(
        f"{dev.capitalize()}DevicePlugin" for dev in KINDS
    )
    assert all(e["type"] == "Warning" and e.get("count", 1) == 1 for e in events)

    # Statuses were right (the reference wrote them): only the patches that found out. The
    # kinds whose DaemonSets this operator rolls on adoption (scenario.ADOPTION_ROLLS) have
    # statuses that really change while their pods are replaced, so the bound is for the rest.
    rolling = {name.split("-")[1] for name in scenario.ADOPTION_ROLLS}
    status_patches = [
        e for e in writes(entries) if (e.get("objectRef") or {}).get("subresource") == "status"
    ]
    per_kind: dict[str, int] = {}
    for entry in status_patches:
        resource = entry["objectRef"]["resource"]
        per_kind[resource] = per_kind.get(resource, 0) + 1
    steady_kinds = [f"{dev}deviceplugins" for dev in KINDS if dev not in rolling]
    assert len(steady_kinds) >= 4, rolling
    assert all(per_kind.get(plural, 0) <= WORKERS for plural in steady_kinds), per_kind
    assert not writes(later), [e["requestURI"] for e in writes(later)]
