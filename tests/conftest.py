"""Session fixtures: one real local control plane for every test that asks for ``cluster``.

The control plane (etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kwok) is
started once per test session in a temporary directory with fake nodes of different label
sets (``clusters.NODE_SPECS``), and stopped at the end; a failing start fails the tests that
need it with the component's log path.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest

from clusters import NODE_SPECS, TestCluster
from localcluster import cluster as localcluster


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
