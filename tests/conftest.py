"""Session fixtures: one real local control plane for every test that asks for ``cluster``.

The control plane (etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kwok) is
started once per test session in a temporary directory with fake nodes of different label
sets (``clusters.NODE_SPECS``), and stopped at the end; a failing start fails the tests that
need it with the component's log path. ``helm`` and ``helm3`` are the helm binaries the chart
tests run, built once by tools/helm.py.
"""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys
import uuid
from collections.abc import Iterator

import pytest

from clusters import NODE_SPECS, TestCluster
from localcluster import cluster as localcluster

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _built_helm(*arguments: str) -> pathlib.Path:
    """tools/helm.py in a subprocess (the first build takes minutes; its error fails the test)."""
    completed = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "helm.py"), *arguments],
        capture_output=True,
        text=True,
        check=False,
        timeout=1800,
    )
    assert completed.returncode == 0, completed.stderr
    return pathlib.Path(completed.stdout.strip())


@pytest.fixture(scope="session")
def helm() -> pathlib.Path:
    """helm 4, built first when it is not cached."""
    return _built_helm()


@pytest.fixture(scope="session")
def helm3() -> pathlib.Path:
    """helm 3, which the chart must keep working with."""
    return _built_helm("--v3")


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestCluster]:
    directory = tmp_path_factory.mktemp("cluster")
    handle = localcluster.Cluster(directory)
    handle.up(NODE_SPECS)
    try:
        yield TestCluster(handle, NODE_SPECS)
    finally:
        if not os.environ.get("DP_KEEP_TEST_CLUSTER"):
            handle.down()


@pytest.fixture
def namespace(cluster: TestCluster) -> Iterator[str]:
    """A fresh namespace for one test, deleted (without waiting) afterwards."""
    name = f"t-{uuid.uuid4().hex[:10]}"
    cluster.api.create("/api/v1/namespaces", {"metadata": {"name": name, "labels": {"test": name}}})
    try:
        yield name
    finally:
        cluster.api.request("DELETE", f"/api/v1/namespaces/{name}")
