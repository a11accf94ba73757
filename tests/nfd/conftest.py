"""Fixtures of the Node Feature Discovery suite: NFD's real nfd-master against a control plane of
this suite's own, whose fake nodes start without any Intel label.

nfd-master is built once from its Go module (tools/nfd.py, a few minutes the first time, then
cached); NFD's CRDs and RBAC are applied from the same module in the Go module cache, and
nfd-master runs with its own service account's token, as its pod would. The nodes'
``NodeFeature`` objects, which nfd-worker would write on real machines, are written by the tests.
"""

from __future__ import annotations

import os
import pathlib
import signal
import subprocess
import time
from collections.abc import Iterator

import pytest
from nfd_machines import MACHINES
from nfd_support import MASTER_NODE, NFD_NAMESPACE, Master, nfd

import operators
from clusters import TestCluster
from localcluster import cluster as localcluster
from localcluster import nodes


@pytest.fixture(scope="session")
def nfd_master_binary() -> tuple[pathlib.Path, float | None]:
    cached = nfd.TOOL.binary().exists()
    started = time.monotonic()
    try:
        binary = nfd.ensure()
    except (RuntimeError, subprocess.CalledProcessError) as error:
        pytest.fail(f"building nfd-master {nfd.version()}: {error}")
    return binary, None if cached else round(time.monotonic() - started, 1)


@pytest.fixture(scope="module")
def nfd_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestCluster]:
    """A control plane for this suite alone, its nodes without any Intel label, with NFD's CRDs
    and RBAC from NFD's module."""
    handle = localcluster.Cluster(tmp_path_factory.mktemp("nfd-cluster"))
    specs = [nodes.NodeSpec(machine.name, {}) for machine in MACHINES]
    handle.up(specs)
    try:
        cluster = TestCluster(handle, specs)
        cluster.kubectl("create", "namespace", NFD_NAMESPACE)
        cluster.install_crds(nfd.crds() / "nfd-api-crds.yaml")
        cluster.kubectl("apply", "-k", str(nfd.rbac()))
        yield cluster
    finally:
        if not os.environ.get("DP_KEEP_TEST_CLUSTER"):
            handle.down()


@pytest.fixture(scope="module")
def nfd_master(
    nfd_cluster: TestCluster,
    nfd_master_binary: tuple[pathlib.Path, float | None],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Master]:
    """nfd-master as its Deployment runs it: its service account's token (NFD's ClusterRole),
    its namespace, the node it is on; no leader election (one replica)."""
    binary, build_seconds = nfd_master_binary
    directory = tmp_path_factory.mktemp("nfd-master")
    kubeconfig = operators.token_kubeconfig(
        nfd_cluster, "nfd-master", NFD_NAMESPACE, directory / "nfd-master.kubeconfig"
    )
    log = directory / "nfd-master.log"
    environment = {
        key: value for key, value in os.environ.items() if key not in ("KUBECONFIG", "NODE_NAME")
    }
    environment.update(NODE_NAME=MASTER_NODE, KUBERNETES_NAMESPACE=NFD_NAMESPACE)
    with log.open("wb") as output:
        process = subprocess.Popen(
            [str(binary), f"-kubeconfig={kubeconfig.path}", "-v=2"],
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            env=environment,
        )
    try:
        yield Master(binary, log, build_seconds)
        assert process.poll() is None, f"nfd-master exited {process.returncode}; see {log}"
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=15)
