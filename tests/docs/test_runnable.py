"""The shell blocks of README.md and docs/install.md marked ``sh runnable`` work: each file's
blocks run in order, as one bash script, against a fresh local control plane with fake Intel
nodes (kubectl, make and the virtualenv as a reader has them after ``make venv``). The blocks
that need the operator image on a real node: ``test_incluster_recipes``.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import signal
import subprocess
import tempfile
from collections.abc import Iterator

import pytest
from blocks import LOCAL, ROOT, RUNNABLE_IN, runnable, script

from localcluster import cluster as localcluster
from localcluster import nodes

pytestmark = pytest.mark.cluster


@pytest.fixture(scope="module")
def fresh_cluster() -> Iterator[localcluster.Cluster]:
    """A cluster of its own: the recipes create the operator's namespace and the CRDs."""
    handle = localcluster.Cluster(pathlib.Path(tempfile.mkdtemp(prefix="dp-docs-cluster-")))
    handle.up([*nodes.intel_nodes(2), nodes.NodeSpec("plain-node", {})])
    try:
        yield handle
    finally:
        handle.down()


def test_the_readme_has_runnable_blocks() -> None:
    assert runnable(ROOT / "README.md"), "README.md lost its runnable recipe"


@pytest.mark.parametrize(
    "path", [path for path in RUNNABLE_IN if runnable(path, LOCAL)], ids=lambda p: p.name
)
def test_runnable_blocks_work(path: pathlib.Path, fresh_cluster: localcluster.Cluster) -> None:
    found = runnable(path, LOCAL)
    environment = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("DEVICEPLUGIN_", "POD_", "KUBECONFIG"))
    }
    environment["KUBECONFIG"] = str(fresh_cluster.kubeconfig)
    environment["PATH"] = f"{ROOT / '.venv' / 'bin'}{os.pathsep}{environment['PATH']}"
    log = pathlib.Path(tempfile.mkdtemp(prefix="dp-docs-recipe-")) / "blocks.log"
    with log.open("w") as sink:
        # A session of its own: what a block leaves running in the background is stopped with it.
        process = subprocess.Popen(
            ["bash", "-c", script(found)],
            cwd=ROOT,
            env=environment,
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            returncode = process.wait(timeout=240)
        except subprocess.TimeoutExpired:
            returncode = None
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            process.wait()
    output = log.read_text()
    assert returncode == 0, (
        f"{path.name}'s runnable blocks failed ({returncode}):\n{output[-4000:]}"
    )
