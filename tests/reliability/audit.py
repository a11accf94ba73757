"""The API server's audit log (``Cluster.audit_log``, Metadata level) read by user: which
replica wrote what, and whether it held the Lease when it did (scenarios 3 and 4, and the
compatibility suite)."""

from __future__ import annotations

import datetime
import json
import pathlib
from collections.abc import Collection
from typing import Any

from deviceplugin_operator.controller import election

WRITE_VERBS = frozenset({"create", "update", "patch", "delete", "deletecollection"})


def when(stamp: str) -> datetime.datetime:
    return datetime.datetime.fromisoformat(stamp.replace("Z", "+00:00"))


def entries(
    path: pathlib.Path, users: Collection[str], since: datetime.datetime
) -> list[dict[str, Any]]:
    """Completed requests of ``users`` received at ``since`` or later (the apiserver writes
    the log asynchronously: read it a moment after the last request of interest)."""
    marks = tuple(f'"{user}"' for user in users)
    found = []
    with path.open(errors="replace") as lines:
        for line in lines:
            if not any(mark in line for mark in marks):
                continue
            entry = json.loads(line)
            if entry.get("stage") != "ResponseComplete":
                continue
            if entry["user"]["username"] not in users:
                continue
            if when(entry["requestReceivedTimestamp"]) < since:
                continue
            found.append(entry)
    return found


def succeeded(entry: dict[str, Any]) -> bool:
    return bool((entry.get("responseStatus") or {}).get("code", 0) < 300)


def is_lease(entry: dict[str, Any], lease_namespace: str) -> bool:
    ref = entry.get("objectRef") or {}
    return (
        ref.get("resource") == "leases"
        and ref.get("name") == election.LEASE_NAME
        and ref.get("namespace") == lease_namespace
    )


def writes(entries: list[dict[str, Any]], user: str | None = None) -> list[dict[str, Any]]:
    """The successful writes among ``entries`` (of ``user`` only, if given), Leases included."""
    return [
        e
        for e in entries
        if e["verb"] in WRITE_VERBS
        and succeeded(e)
        and (user is None or e["user"]["username"] == user)
    ]


def overlapping_writes(
    entries: list[dict[str, Any]], lease_namespace: str
) -> tuple[int, list[str]]:
    """(writes checked, writes made while another user held the Lease): every successful
    write other than the Lease's must have been received while the last successful Lease
    write before it was its own user's."""
    terms = sorted(
        (when(e["stageTimestamp"]), e["user"]["username"])
        for e in entries
        if is_lease(e, lease_namespace) and e["verb"] in ("create", "update") and succeeded(e)
    )
    checked = [e for e in writes(entries) if not is_lease(e, lease_namespace)]
    wrong = []
    for write in checked:
        received = when(write["requestReceivedTimestamp"])
        before = [user for stamp, user in terms if stamp <= received]
        holder = before[-1] if before else None
        if holder != write["user"]["username"]:
            wrong.append(
                f"{write['user']['username']} {write['verb']} {write['requestURI']} at "
                f"{write['requestReceivedTimestamp']} while {holder} held the Lease"
            )
    return len(checked), wrong
