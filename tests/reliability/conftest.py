"""Fixtures of the reliability suite (docs/reliability.md).

Scenarios that only kill operators use the session's control plane; those that restart the
apiserver or compact etcd get a control plane of their own (``own_cluster``), so that no
other test ever sees the faults.
"""

from __future__ import annotations

import pathlib
from collections.abc import Iterator

import pytest

import operators
from clusters import NODE_SPECS, TestCluster
from localcluster import cluster as localcluster

ROOT = pathlib.Path(__file__).resolve().parents[2]
CRDS = ROOT / "deployments/operator/crd/bases"


@pytest.fixture(scope="module")
def own_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestCluster]:
    """A control plane for this module alone, with the CRDs installed."""
    handle = localcluster.Cluster(tmp_path_factory.mktemp("own-cluster"))
    handle.up(NODE_SPECS)
    try:
        test_cluster = TestCluster(handle, NODE_SPECS)
        test_cluster.install_crds(CRDS)
        yield test_cluster
    finally:
        handle.down()


@pytest.fixture(scope="module")
def crds(cluster: TestCluster) -> None:
    cluster.install_crds(CRDS)


@pytest.fixture(autouse=True, scope="module")
def no_operator_left() -> Iterator[None]:
    """Whatever a module's tests asserted, no operator process they or its fixtures started
    outlives the module (module scope: the webhook scenarios share one operator, restarted
    in place, between their tests)."""
    yield
    operators.kill_all()
