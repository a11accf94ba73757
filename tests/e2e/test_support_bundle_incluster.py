"""``support-bundle`` against the operator as it ships: the logs come from its real pods.

The kustomize ``default`` install runs the built image on the real kubelet node, so the
bundle's ``operator/logs`` are what ``pods/log`` serves from containerd; the admin kubeconfig's
client key must not be in the archive.
"""

from __future__ import annotations

import base64
import json
import pathlib

import pytest
import yaml

import support_bundles
from e2e import support
from e2e.support import NAMESPACE, E2eCluster

# The first case of a session builds the image and starts the real node.
pytestmark = pytest.mark.timeout(1500)


def test_bundle_holds_the_operators_logs_and_flags(
    empty: E2eCluster, tmp_path: pathlib.Path
) -> None:
    e2e = empty
    path = support.overlay("default", tmp_path / "overlay")
    e2e.out("apply", "-k", str(path))
    e2e.wait_operator()
    e2e.apply_until_admitted("-f", str(support.sample_file("gpu")))
    e2e.wait_samples([support.sample("gpu")])

    output = tmp_path / "bundle.tar.gz"
    files = support_bundles.make(output, e2e.kubeconfig).files
    pods = {p["metadata"]["name"] for p in e2e.operator_pods()}
    logs = {name: text for name, text in files.items() if name.startswith("operator/logs/")}
    assert {name.split("/")[-1].split(".")[0] for name in logs} == pods, files.get("errors.txt")
    assert all("Starting operator" in text for text in logs.values())

    version = json.loads(files["version.json"])
    (operator,) = version["operators"]
    assert operator["deployment"] == f"{NAMESPACE}/intel-deviceplugins-controller-manager"
    args = operator["containers"][0]["args"]
    assert "--leader-elect" in args
    assert "--plugin-service-account=intel-deviceplugins-plugin" in args

    config = yaml.safe_load(e2e.kubeconfig.read_text())
    key = config["users"][0]["user"].get("client-key-data")
    everything = "\n".join(files.values())
    if key:
        assert key not in everything
        assert base64.b64decode(key).decode() not in everything
