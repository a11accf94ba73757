"""The test handle on the session's local control plane (``TestCluster``) and its nodes.

The control plane (etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kwok) is
started once per test session in a temporary directory with fake nodes of different label
sets, and stopped at the end; a failing start fails the tests that need it with the
component's log path.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
import subprocess
from collections.abc import Mapping, Sequence
from typing import Any

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

    def install_crds(self, directory: pathlib.Path) -> None:
        """Apply the CRDs in ``directory`` and wait until every one is Established."""
        self.kubectl("apply", "--server-side", "-f", str(directory))
        self.cluster.wait_crds_established()

    def kubectl_json(self, *args: str) -> Any:
        return json.loads(self.kubectl(*args, "-o", "json").stdout)
