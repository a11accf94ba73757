"""Plugin pods on the real node: what the kubelet really reports reaches the resource's status.

The real node gets an Intel feature label, and a resource selects it alone (its
``kubernetes.io/hostname`` too, so the kwok nodes with the same label stay out):

* the normal plugin image cannot be pulled (no registry here): the kubelet tries and fails,
  and the resource reports ``Degraded``/``ImagePullFailed`` naming the node and the image;
* a plugin image whose program exits 1 at once (a few lines of Go, built static and imported
  as a one-layer image): ``Degraded``/``PluginCrashing``.
"""

from __future__ import annotations

import contextlib
import json
import os
import pathlib
import shutil
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest

from e2e import support
from e2e.support import NAMESPACE, E2eCluster
from localcluster import images
from localcluster import nodes as localnodes

pytestmark = pytest.mark.timeout(600)

CRASHING = """\
// A plugin that exits 1 at once: the kubelet restarts it until CrashLoopBackOff.
package main

import (
	"fmt"
	"os"
)

func main() {
	fmt.Fprintln(os.Stderr, "e2e: this plugin exits 1 at once")
	os.Exit(1)
}
"""
CRASHING_IMAGE = "localhost/e2e/intel-qat-plugin:0.36.0"
"""A name and tag the QAT webhook accepts (``<any path>/intel-qat-plugin``, >= 0.36.0) and the
operator keeps as it is (not below the minimum version)."""

# QAT's DaemonSet mounts /dev/vfio, /sys/kernel/debug, /sys/bus/pci and the kubelet's
# device-plugins directory. containerd creates a missing hostPath directory, and /dev is the
# host's: /dev/vfio is removed again afterwards when this module made it.
QAT_HOST_DIRECTORY = pathlib.Path("/dev/vfio")


@pytest.fixture(scope="module")
def operator(e2e: E2eCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[E2eCluster]:
    assert e2e.leftovers() == [], "a previous case left objects behind"
    path = support.overlay("default", tmp_path_factory.mktemp("overlay"))
    made_vfio = not QAT_HOST_DIRECTORY.exists()
    e2e.out("apply", "-k", str(path))
    try:
        e2e.wait_operator()
        yield e2e
        completed = e2e.run("delete", "-k", str(path), "--wait=false")
        assert completed.returncode == 0, completed.stderr
        e2e.wait_empty(timeout=120)
    finally:
        print(f"operator logs: {e2e.save_logs('plugin-pods')}")
        e2e.clean()
        for feature in ("gpu", "qat"):
            e2e.run("label", "node", e2e.real_node, f"{localnodes.FEATURE_PREFIX}{feature}-")
        if made_vfio:
            with contextlib.suppress(OSError):
                QAT_HOST_DIRECTORY.rmdir()


def on_real_node(e2e: E2eCluster, feature: str) -> dict[str, str]:
    label = f"{localnodes.FEATURE_PREFIX}{feature}"
    e2e.out("label", "node", e2e.real_node, f"{label}=true", "--overwrite")
    hostname = e2e.get("node", e2e.real_node)["metadata"]["labels"]["kubernetes.io/hostname"]
    return {label: "true", "kubernetes.io/hostname": hostname}


def degraded(e2e: E2eCluster, plural: str, name: str) -> dict[str, Any] | None:
    found = e2e.get(plural, name) or {}
    for condition in (found.get("status") or {}).get("conditions") or ():
        if condition["type"] == "Degraded" and condition["status"] == "True":
            return dict(condition)
    return None


def test_an_image_that_cannot_be_pulled_is_reported(operator: E2eCluster) -> None:
    e2e = operator
    image = "intel/intel-gpu-plugin:0.36.0"
    body = support.resource(
        "GpuDevicePlugin",
        "e2e-unpullable",
        {"image": image, "nodeSelector": on_real_node(e2e, "gpu")},
    )
    e2e.apply_until_admitted("-f", "-", input=json.dumps(body))
    condition = support.eventually(
        lambda: (
            (c := degraded(e2e, "gpudeviceplugins", "e2e-unpullable"))
            and c["reason"] == "ImagePullFailed"
            and c
        ),
        timeout=120,
        what="Degraded/ImagePullFailed",
    )
    assert f"on node {e2e.real_node}" in condition["message"], condition
    assert image in condition["message"], condition
    status = e2e.get("gpudeviceplugins", "e2e-unpullable")["status"]
    assert status["desiredNumberScheduled"] == 1
    assert status["numberReady"] == 0
    e2e.out("delete", "gpudeviceplugin", "e2e-unpullable")
    support.eventually(
        lambda: (
            e2e.get("daemonset", support.daemonset("gpu", "e2e-unpullable"), "-n", NAMESPACE)
            is None
        ),
        timeout=60,
        what="the DaemonSet to go with its resource",
    )


def crashing_image(directory: pathlib.Path) -> pathlib.Path:
    go = shutil.which("go")
    assert go is not None, "the crashing plugin is built with the go command"
    source = directory / "main.go"
    source.write_text(CRASHING)
    binary = directory / "crashing"
    env = dict(os.environ, CGO_ENABLED="0", GOFLAGS="-trimpath", GO111MODULE="off")
    completed = subprocess.run(
        [go, "build", "-ldflags=-s -w", "-o", str(binary), str(source)],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
        env=env,
        cwd=directory,
    )
    assert completed.returncode == 0, completed.stderr
    return images.write_archive(
        directory / "crashing.tar", CRASHING_IMAGE, {"/crashing": binary}, ["/crashing"]
    )


def test_a_plugin_that_exits_is_reported_as_crashing(
    operator: E2eCluster, tmp_path: pathlib.Path
) -> None:
    e2e = operator
    e2e.cluster.load_image(crashing_image(tmp_path))
    body = support.resource(
        "QatDevicePlugin",
        "e2e-crashing",
        {"image": CRASHING_IMAGE, "nodeSelector": on_real_node(e2e, "qat")},
    )
    e2e.apply_until_admitted("-f", "-", input=json.dumps(body))
    condition = support.eventually(
        lambda: (
            (c := degraded(e2e, "qatdeviceplugins", "e2e-crashing"))
            and c["reason"] == "PluginCrashing"
            and c
        ),
        timeout=180,
        what="Degraded/PluginCrashing",
    )
    assert f"on node {e2e.real_node}" in condition["message"], condition
    assert CRASHING_IMAGE in condition["message"], condition
    e2e.out("delete", "qatdeviceplugin", "e2e-crashing")
