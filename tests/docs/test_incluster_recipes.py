"""The install recipe of the README works as written: its blocks marked ``sh
runnable:kustomize`` (then ``sh runnable:helm``) run in order, as one bash script, on a local
control plane with a real kubelet node, with ``IMAGE`` set to the operator image built from the
Dockerfile (``tools/image.py``, cached) and imported into the node, as the reader's registry
would serve it; the kustomize one ends with docs/install.md's uninstall, after which nothing
may be left. After each recipe the cluster is emptied again.

The cluster is this module's own (like ``tests/e2e``'s, which lives for that suite's session):
it is stopped before the e2e suite starts its own, so two real nodes never run at once.
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
from blocks import ROOT, RUNNABLE_IN, groups, runnable, script

from e2e import support
from localcluster import cluster as localcluster
from localcluster import nodes

GROUPS = ("kustomize", "helm")
NODE_SPECS = [*nodes.intel_nodes(2), nodes.NodeSpec("plain-node", {})]


def _skip_reason() -> str | None:
    if os.geteuid() != 0:
        return "the real node needs root (network and mount namespaces, containerd, kubelet)"
    return None


@pytest.fixture(scope="module")
def incluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[support.E2eCluster]:
    if (reason := _skip_reason()) is not None:
        pytest.skip(reason)
    image_id, archive = support.incluster.build_image()
    directory = pathlib.Path(tempfile.mkdtemp(prefix="dp-docs-cluster-"))
    handle = localcluster.Cluster(directory, real_node=True)
    handle.up(NODE_SPECS)
    try:
        handle.load_image(archive)
        cluster = support.E2eCluster(
            handle,
            NODE_SPECS,
            real_node=str(handle.node_name),
            image_id=image_id,
            log_dir=tmp_path_factory.mktemp("docs-incluster-logs"),
        )
        support.incluster.cordon_fake_nodes(cluster.out)
        cluster.baseline = cluster.snapshot()
        yield cluster
    finally:
        handle.down()


@pytest.fixture(scope="module")
def helm_directory(helm: pathlib.Path) -> pathlib.Path:
    return helm.parent


def test_the_readme_has_both_install_recipes() -> None:
    assert groups(ROOT / "README.md") >= set(GROUPS)


@pytest.mark.timeout(900)
@pytest.mark.parametrize("group", GROUPS)
def test_install_recipe_works(
    group: str,
    incluster: support.E2eCluster,
    request: pytest.FixtureRequest,
) -> None:
    found = [block for path in RUNNABLE_IN for block in runnable(path, group)]
    assert found, f"no block marked runnable:{group}"
    # The recipe writes its overlay into the current directory: a scratch copy of the repository's
    # layout, never the repository itself; not under pytest's base temporary directory, which
    # another pytest session on the machine may remove.
    workdir = pathlib.Path(tempfile.mkdtemp(prefix="dp-docs-recipe-"))
    for name in ("deployments", "charts"):
        (workdir / name).symlink_to(ROOT / name)
    environment = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("DEVICEPLUGIN_", "POD_", "KUBECONFIG"))
    }
    environment["KUBECONFIG"] = str(incluster.kubeconfig)
    environment["IMAGE"] = support.incluster.IMAGE
    if group == "helm":
        helm_directory = request.getfixturevalue("helm_directory")
        environment["PATH"] = os.pathsep.join((str(helm_directory), environment["PATH"]))
    log = workdir / "blocks.log"
    try:
        with log.open("w") as sink:
            process = subprocess.Popen(
                ["bash", "-c", script(found)],
                cwd=workdir,
                env=environment,
                stdout=sink,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            try:
                returncode = process.wait(timeout=600)
            except subprocess.TimeoutExpired:
                returncode = None
            finally:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGTERM)
                process.wait()
        output = log.read_text()
        assert returncode == 0, f"the {group} recipe failed ({returncode}):\n{output[-4000:]}"
        if group == "kustomize":
            # It ends with docs/install.md's uninstall: nothing of the install may be left.
            incluster.wait_empty(timeout=180)
        else:
            incluster.assert_built_image()
    finally:
        print(f"operator logs: {incluster.save_logs(request.node.name)}")
        if group == "helm":
            subprocess.run(
                [
                    "helm",
                    "uninstall",
                    "intel-deviceplugin-operator",
                    "-n",
                    "inteldeviceplugins-system",
                ],
                env=environment,
                check=False,
                capture_output=True,
                timeout=120,
            )
        incluster.clean()
