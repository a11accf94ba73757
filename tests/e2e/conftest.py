"""End-to-end fixtures: one local control plane with a real kubelet node per test session.

Separate from the ``cluster`` fixture of the rest of the suite: etcd, kube-apiserver,
kube-controller-manager, kube-scheduler and kwok run with one real node (kubelet, containerd,
kube-proxy, a CNI bridge) inside a network namespace of their own, and the operator image
built from the Dockerfile (``tools/image.py``, cached on a hash of its inputs) is imported into
the node's containerd. Each case starts from that empty cluster (nothing but what was there
when the session began) and must leave it so.

Prerequisites: root and ``unshare`` (a developer machine without them skips the suite with the
reason); everything else missing (podman or buildah, containerd, runc, the CNI plugins, Go)
fails loudly, as CI installs it.
"""

from __future__ import annotations

import os
import pathlib
import shutil
import tempfile
from collections.abc import Iterator

import pytest

from e2e import support
from localcluster import cluster as localcluster
from localcluster import nodes

# Two kwok nodes with every Intel feature label, one without any: the samples' DaemonSets run
# on the first two. The real node carries no Intel label unless a case adds one.
NODE_SPECS = [*nodes.intel_nodes(2), nodes.NodeSpec("plain-node", {})]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "e2e: the operator as it ships, on a local cluster with a real kubelet node"
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "/e2e/" in str(item.path):
            item.add_marker(pytest.mark.e2e)


def skip_reason() -> str | None:
    """Why the real node cannot run here, when it is a developer machine's limitation."""
    if os.geteuid() != 0:
        return "the real node needs root (network and mount namespaces, containerd, kubelet)"
    if shutil.which("unshare") is None or shutil.which("nsenter") is None:
        return "the real node needs unshare and nsenter (util-linux)"
    return None


@pytest.fixture(scope="session")
def e2e(tmp_path_factory: pytest.TempPathFactory) -> Iterator[support.E2eCluster]:
    if (reason := skip_reason()) is not None:
        pytest.skip(reason)
    image_id, archive = support.incluster.build_image()
    # Not under pytest's base temporary directory: another pytest session on the machine
    # removes old ones, and with DP_KEEP_TEST_CLUSTER the cluster outlives this session.
    directory = pathlib.Path(tempfile.mkdtemp(prefix="dp-e2e-cluster-"))
    handle = localcluster.Cluster(directory, real_node=True)
    handle.up(NODE_SPECS)
    test_cluster = None
    try:
        handle.load_image(archive)
        test_cluster = support.E2eCluster(
            handle,
            NODE_SPECS,
            real_node=str(handle.node_name),
            image_id=image_id,
            log_dir=tmp_path_factory.mktemp("e2e-logs"),
        )
        support.incluster.cordon_fake_nodes(test_cluster.out)
        test_cluster.baseline = test_cluster.snapshot()
        yield test_cluster
    finally:
        if test_cluster is not None and test_cluster.requeued_crds:
            print(f"\nCRD deletions requeued by an annotation: {test_cluster.requeued_crds}")
        if os.environ.get("DP_KEEP_TEST_CLUSTER"):
            print(f"\nKept the e2e cluster: export KUBECONFIG={handle.kubeconfig}")
        else:
            handle.down()


@pytest.fixture
def empty(e2e: support.E2eCluster, request: pytest.FixtureRequest) -> Iterator[support.E2eCluster]:
    """The cluster as the session began; cleaned up again whatever the case asserted (the
    operator's logs are saved first, see ``E2eCluster.save_logs``)."""
    assert e2e.leftovers() == [], "a previous case left objects behind"
    try:
        yield e2e
    finally:
        print(f"operator logs: {e2e.save_logs(request.node.name)}")
        e2e.clean()
