"""Fixtures of the compatibility suite: Intel's operator and this one on one control plane.

The reference is Intel's real ``cmd/operator`` at ``bench.reference.version()`` (v0.36.0),
built once from its Go module and cached (``bench/reference.py``); its CRDs are taken from the
same module in the Go module cache. The control plane is this suite's own (the reference's
CRDs replace ours there, which no other test should see), with an audit log that tells the
two operators apart by user: each gets a client certificate of its own.
"""

from __future__ import annotations

import os
import pathlib
import sys
import time
from collections.abc import Iterator

import pytest

# The bench package (bench/reference.py builds the reference) lives at the repository root.
_ROOT = str(pathlib.Path(__file__).resolve().parents[2])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from bench import reference as bench_reference  # noqa: E402

import operators  # noqa: E402
from clusters import NODE_SPECS, TestCluster  # noqa: E402
from compat.support import Reference, module_dir  # noqa: E402
from localcluster import cluster as localcluster  # noqa: E402


@pytest.fixture(scope="session")
def reference() -> Reference:
    version = bench_reference.version()
    cached = bench_reference.binary_path(version).exists()
    started = time.monotonic()
    try:
        binary = bench_reference.ensure_built(version)
    except bench_reference.BuildError as error:
        pytest.fail(str(error))
    seconds = None if cached else round(time.monotonic() - started, 1)
    crds = module_dir(version) / "deployments" / "operator" / "crd" / "bases"
    assert (crds / "deviceplugin.intel.com_gpudeviceplugins.yaml").exists(), crds
    return Reference(version, binary, crds, seconds)


@pytest.fixture(scope="module")
def compat_cluster(
    tmp_path_factory: pytest.TempPathFactory, reference: Reference
) -> Iterator[TestCluster]:
    """A control plane for this module alone, with the reference's CRDs installed."""
    handle = localcluster.Cluster(tmp_path_factory.mktemp("compat-cluster"))
    handle.up(NODE_SPECS)
    try:
        test_cluster = TestCluster(handle, NODE_SPECS)
        test_cluster.install_crds(reference.crds)
        yield test_cluster
    finally:
        if not os.environ.get("DP_KEEP_TEST_CLUSTER"):
            handle.down()


@pytest.fixture(autouse=True)
def no_operator_left() -> Iterator[None]:
    """Whatever a test asserted, no operator process of ours it started outlives it (the
    reference's processes are stopped by the tests' own ``finally``)."""
    yield
    operators.kill_all()
