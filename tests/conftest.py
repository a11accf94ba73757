"""Session fixtures: one real local control plane for every test marked ``cluster``.

The control plane (etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kwok) is
started once per test session in a temporary directory with fake nodes of different label
sets, and stopped at the end; a failing start fails the tests that need it with the
component's log path.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import subprocess
import uuid
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import pytest

from localcluster import cluster as localcluster
from localcluster import http, nodes

GPU_LABEL = nodes.FEATURE_PREFIX + "gpu"

# Two nodes with every Intel feature, one GPU-only node, one node with no Intel hardware.
NODE_SPECS: Sequence[nodes.NodeSpec] = [
    *nodes.intel_nodes(2),
    nodes.NodeSpec("gpu-only-node", {GPU_LABEL: "true"}),
    nodes.NodeSpec("plain-node", {}),
]


@dataclasses.dataclass
class TestCluster:
    """Handle on the session's control plane."""

    __test__ = False

    cluster: localcluster.Cluster
    node_specs: Sequence[nodes.NodeSpec]

    @property
    def kubeconfig(self) -> pathlib.Path:
        return self.cluster.kubeconfig

    @property
    def api(self) -> http.ApiClient:
        return self.cluster.api()

    def nodes_matching(self, selector: Mapping[str, str]) -> list[str]:
        """Names of the session's nodes whose labels (standard ones included) match."""
        matching = []
        for spec in self.node_specs:
            labels = nodes.manifest(spec)["metadata"]["labels"]
            if all(labels.get(key) == value for key, value in selector.items()):
                matching.append(spec.name)
        return sorted(matching)

    def kubectl(
        self, *args: str, input: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """Run kubectl against this cluster; output is text."""
        completed = subprocess.run(
            ["kubectl", f"--kubeconfig={self.kubeconfig}", *args],
            input=input,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if check and completed.returncode != 0:
            raise AssertionError(
                f"kubectl {' '.join(args)} failed ({completed.returncode}): {completed.stderr}"
            )
        return completed

    def kubectl_json(self, *args: str) -> Any:
        return json.loads(self.kubectl(*args, "-o", "json").stdout)


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
