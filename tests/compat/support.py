"""What the compatibility suite's fixtures and tests share: the reference's build and CRDs,
and the audit log read by user."""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
import pathlib
import shutil
import subprocess
import time
from collections.abc import Sequence
from typing import Any

import pytest
from bench import reference as bench_reference

from clusters import TestCluster
from reliability import audit
from reliability.audit import WRITE_VERBS, when

REFERENCE_USER = "compat-reference"
THIS_USER = "compat-this"


@dataclasses.dataclass(frozen=True)
class Reference:
    """The reference operator's binary and the CRDs of the same module version."""

    version: str
    binary: pathlib.Path
    crds: pathlib.Path
    build_seconds: float | None
    """Measured by this session when it had to build the binary; None when it was cached."""


def module_dir(version: str) -> pathlib.Path:
    """The reference's module in the Go module cache (downloaded by the build)."""
    go = shutil.which("go")
    if go is None:
        pytest.fail("The Go toolchain is not on PATH (the reference is built with `go`)")
    done = subprocess.run(
        [go, "mod", "download", "-json", f"{bench_reference.MODULE}@{version}"],
        capture_output=True,
        text=True,
        check=False,
        env=dict(os.environ, GOFLAGS="-mod=mod"),
        cwd=bench_reference.binary_dir(version),
    )
    if done.returncode != 0:
        pytest.fail(f"go mod download {bench_reference.MODULE}@{version}: {done.stderr}")
    return pathlib.Path(json.loads(done.stdout)["Dir"])


# The audit log ---------------------------------------------------------------------------------
def now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def audit_entries(
    cluster: TestCluster,
    users: Sequence[str],
    since: datetime.datetime,
    until: datetime.datetime | None = None,
) -> list[dict[str, Any]]:
    """Completed requests of ``users`` received in [since, until)."""
    time.sleep(1.0)  # the apiserver writes the audit log asynchronously
    found = audit.entries(cluster.cluster.audit_log, users, since)
    return [e for e in found if until is None or when(e["requestReceivedTimestamp"]) < until]


def writes(entries: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    return [entry for entry in entries if entry["verb"] in WRITE_VERBS]


def describe(entry: dict[str, Any]) -> str:
    code = (entry.get("responseStatus") or {}).get("code")
    return (
        f"{entry['user']['username']} {entry['verb']} {entry['requestURI']} -> {code}"
        f" at {entry['requestReceivedTimestamp']}"
    )
