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
import queue
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator

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


class DegradedWatch:
    """The resource's ``Degraded`` condition as each update arrives (``kubectl get --watch``):
    a polling loop can miss a condition that lasts less than a second."""

    def __init__(self, e2e: E2eCluster, plural: str, name: str):
        self.process = subprocess.Popen(
            [
                "kubectl",
                f"--kubeconfig={e2e.kubeconfig}",
                "get",
                plural,
                name,
                "--watch",
                "-o",
                "json",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        self.conditions: queue.Queue[tuple[str, str, str]] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        self.seen: list[tuple[float, str, str, str]] = []

    def _read(self) -> None:
        """Split the stream of JSON objects; queue each one's Degraded condition."""
        assert self.process.stdout is not None
        decoder = json.JSONDecoder()
        buffer = ""
        while chunk := self.process.stdout.readline():
            buffer += chunk
            while buffer.strip():
                try:
                    found, end = decoder.raw_decode(buffer.lstrip())
                except ValueError:
                    break
                buffer = buffer.lstrip()[end:]
                for condition in (found.get("status") or {}).get("conditions") or ():
                    if condition["type"] == "Degraded":
                        self.conditions.put(
                            (condition["status"], condition["reason"], condition["message"])
                        )

    def next(self, deadline: float) -> tuple[str, str, str] | None:
        """The next (status, reason, message), None at the deadline."""
        try:
            found = self.conditions.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            return None
        self.seen.append((time.monotonic(), *found))
        return found

    def until(self, reason: str, timeout: float) -> str:
        """Wait for ``Degraded=True`` with ``reason``; its message."""
        deadline = time.monotonic() + timeout
        while (found := self.next(deadline)) is not None:
            if found[:2] == ("True", reason):
                return found[2]
        raise AssertionError(
            f"no Degraded/{reason} within {timeout:.0f}s; seen: {[s[1:3] for s in self.seen]}"
        )

    def changes_within(self, seconds: float) -> list[tuple[str, str]]:
        """Every (status, reason) reported in the next ``seconds``."""
        deadline = time.monotonic() + seconds
        changes = []
        while (found := self.next(deadline)) is not None:
            changes.append(found[:2])
        return changes

    def close(self) -> None:
        self.process.kill()
        self.process.wait()


@contextlib.contextmanager
def degraded(e2e: E2eCluster, plural: str, name: str) -> Iterator[DegradedWatch]:
    watch = DegradedWatch(e2e, plural, name)
    try:
        yield watch
    finally:
        watch.close()


def test_an_image_that_cannot_be_pulled_is_reported(operator: E2eCluster) -> None:
    e2e = operator
    image = "intel/intel-gpu-plugin:0.36.0"
    body = support.resource(
        "GpuDevicePlugin",
        "e2e-unpullable",
        {"image": image, "nodeSelector": on_real_node(e2e, "gpu")},
    )
    e2e.apply_until_admitted("-f", "-", input=json.dumps(body))
    with degraded(e2e, "gpudeviceplugins", "e2e-unpullable") as watch:
        message = watch.until("ImagePullFailed", timeout=120)
    assert f"on node {e2e.real_node}" in message, message
    assert image in message, message
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


@pytest.fixture(scope="module")
def crashing(operator: E2eCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A QatDevicePlugin on the real node whose plugin exits 1 at once; its name."""
    e2e = operator
    e2e.cluster.load_image(crashing_image(tmp_path_factory.mktemp("crashing")))
    body = support.resource(
        "QatDevicePlugin",
        "e2e-crashing",
        {"image": CRASHING_IMAGE, "nodeSelector": on_real_node(e2e, "qat")},
    )
    e2e.apply_until_admitted("-f", "-", input=json.dumps(body))
    yield "e2e-crashing"
    e2e.out("delete", "qatdeviceplugin", "e2e-crashing")


def test_a_plugin_that_exits_is_reported_as_crashing(operator: E2eCluster, crashing: str) -> None:
    e2e = operator
    with degraded(e2e, "qatdeviceplugins", crashing) as watch:
        message = watch.until("PluginCrashing", timeout=180)
    assert f"on node {e2e.real_node}" in message, message
    assert CRASHING_IMAGE in message, message


def test_a_crashing_plugin_stays_reported_between_restarts(
    operator: E2eCluster, crashing: str
) -> None:
    """Once reported, the condition holds while the plugin keeps crashing: kubelet 1.36 shows
    the container as terminated for most of its back-off and as running after each restart,
    not only as waiting in CrashLoopBackOff (a 45 s window spans two or three restarts)."""
    e2e = operator
    with degraded(e2e, "qatdeviceplugins", crashing) as watch:
        watch.until("PluginCrashing", timeout=180)
        changes = watch.changes_within(45)
    assert all(change == ("True", "PluginCrashing") for change in changes), changes
