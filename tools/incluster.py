"""The operator as it ships, on a local control plane with a real kubelet node.

Shared by ``make demo-incluster`` (``tools/demo.py up-incluster``) and the end-to-end tests
(``tests/e2e``):

* ``IMAGE``: the operator image built from the Dockerfile by ``tools/image.py`` (cached on a
  hash of its inputs) and imported into the real node's containerd.
* ``write_overlay``: a kustomization over one of ``deployments/operator/...`` that changes
  nothing but the image (``images:`` newName/newTag, ``imagePullPolicy: Never``).
* ``cordon_fake_nodes``: the fake (kwok) nodes are cordoned, so the operator's pods land on the
  real node (kwok only pretends to run a pod; the Deployment's anti-affinity would spread the
  replicas onto them), while the plugin DaemonSets, which tolerate unschedulable nodes, still
  run on them.
* ``operator_pending``/``wait_operator``: the Deployment has its replicas available, all on the
  real node, running the built image, and one of them holds the Lease.
"""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys
import tarfile
import time
from collections.abc import Callable, Sequence
from typing import Any

import yaml

ROOT = pathlib.Path(__file__).resolve().parent.parent
TOOLS = ROOT / "tools"
OPERATOR_TREE = ROOT / "deployments" / "operator"
SAMPLES = OPERATOR_TREE / "samples"

REFERENCE_IMAGE = "docker.io/intel/intel-deviceplugin-operator-py"
"""The image name in the kustomize tree (``manager/manager.yaml``)."""
IMAGE = "localhost/intel-deviceplugin-operator-py:local"
"""What the demo and the end-to-end tests build and run."""

NAMESPACE = "inteldeviceplugins-system"
PREFIX = "intel-deviceplugins-"
DEPLOYMENT = PREFIX + "controller-manager"
LEASE = "d1c7b6d5.intel.com"
POD_SELECTOR = "control-plane=controller-manager,manager=intel-deviceplugin-operator"
FAKE_NODE_ANNOTATION = "kwok.x-k8s.io/node"

Kubectl = Callable[..., str]
"""``kubectl(*args, check=True) -> stdout`` against one cluster."""


def say(message: str) -> None:
    print(f"[incluster] {message}", file=sys.stderr, flush=True)


def _image_module() -> Any:
    if str(TOOLS) not in sys.path:
        sys.path.insert(0, str(TOOLS))
    import image  # noqa: PLC0415  (tools/ is not a package)

    return image


def build_image(image: str = IMAGE) -> tuple[str, pathlib.Path]:
    """(image id, docker-archive) of the operator image, built or saved only when stale.

    The id is the archive's configuration digest, which is what containerd reports as the
    container's ``imageID`` once imported (an engine's own id may differ: podman's is that of
    its OCI configuration)."""
    archive: pathlib.Path = _image_module().save(image)
    return archive_image_id(archive), archive


def archive_image_id(archive: pathlib.Path) -> str:
    """The configuration digest (hex) of the single image in a docker-archive."""
    with tarfile.open(archive) as tar:
        member = tar.extractfile("manifest.json")
        if member is None:
            raise RuntimeError(f"{archive} has no manifest.json")
        (entry,) = json.loads(member.read())
    return str(entry["Config"]).removeprefix("sha256:").removesuffix(".json")


def split_image(image: str) -> tuple[str, str]:
    """``name:tag`` -> (name, tag); a registry port is not a tag."""
    name, _, tag = image.rpartition(":")
    if not name or "/" in tag:
        return image, "latest"
    return name, tag


def write_overlay(tree: str | pathlib.Path, image: str, directory: pathlib.Path) -> pathlib.Path:
    """A kustomization in ``directory`` over ``deployments/operator/<tree>`` with only the
    operator image swapped for ``image`` (pulled never: it is imported into the node)."""
    base = pathlib.Path(tree)
    if not base.is_absolute():
        base = OPERATOR_TREE / base
    directory.mkdir(parents=True, exist_ok=True)
    name, tag = split_image(image)
    kustomization = {
        "resources": [os.path.relpath(base, directory)],
        "images": [{"name": REFERENCE_IMAGE, "newName": name, "newTag": tag}],
        "patches": [
            {
                "target": {"group": "apps", "version": "v1", "kind": "Deployment"},
                "patch": json.dumps(
                    [
                        {
                            "op": "replace",
                            "path": "/spec/template/spec/containers/0/imagePullPolicy",
                            "value": "Never",
                        }
                    ]
                ),
            }
        ],
    }
    (directory / "kustomization.yaml").write_text(
        "# Written by tools/incluster.py: the tree with only the operator image swapped.\n"
        + yaml.safe_dump(kustomization, sort_keys=False)
    )
    return directory


def fake_nodes(kubectl: Kubectl) -> list[dict[str, Any]]:
    nodes = json.loads(kubectl("get", "nodes", "-o", "json"))["items"]
    return [
        node
        for node in nodes
        if (node["metadata"].get("annotations") or {}).get(FAKE_NODE_ANNOTATION) == "fake"
    ]


def cordon_fake_nodes(kubectl: Kubectl) -> None:
    """Keep Deployment pods off the kwok nodes; DaemonSet pods tolerate the cordon."""
    names = [node["metadata"]["name"] for node in fake_nodes(kubectl)]
    if names:
        kubectl("cordon", *names)


def operator_pods(kubectl: Kubectl, namespace: str = NAMESPACE) -> list[dict[str, Any]]:
    listing = json.loads(
        kubectl("get", "pods", "-n", namespace, "-l", POD_SELECTOR, "-o", "json", check=False)
        or '{"items": []}'
    )
    return [pod for pod in listing["items"] if not pod["metadata"].get("deletionTimestamp")]


def _ready(pod: dict[str, Any]) -> bool:
    conditions = (pod.get("status") or {}).get("conditions") or []
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def lease_holder(kubectl: Kubectl, namespace: str = NAMESPACE) -> str:
    """The Lease's holderIdentity (``<pod>_<uuid>``), "" when free or absent."""
    found = kubectl("get", "lease", LEASE, "-n", namespace, "-o", "json", check=False)
    return str((json.loads(found)["spec"].get("holderIdentity") or "") if found else "")


def operator_pending(
    kubectl: Kubectl,
    real_node: str,
    *,
    image: str = IMAGE,
    replicas: int = 2,
    namespace: str = NAMESPACE,
    deployment: str = DEPLOYMENT,
    leader_election: bool = True,
) -> list[str]:
    """What still keeps the operator from being up as shipped; empty when it is."""
    found = kubectl("get", "deployment", deployment, "-n", namespace, "-o", "json", check=False)
    if not found:
        return [f"no Deployment {namespace}/{deployment}"]
    status = json.loads(found).get("status") or {}
    pending = []
    if status.get("availableReplicas") != replicas or status.get("replicas") != replicas:
        pending.append(
            f"Deployment has {status.get('availableReplicas', 0)} of {replicas} replicas "
            f"available ({status.get('replicas', 0)} in all)"
        )
    pods = operator_pods(kubectl, namespace)
    for pod in pods:
        name = pod["metadata"]["name"]
        node = pod["spec"].get("nodeName")
        if node != real_node:
            pending.append(f"pod {name} is on node {node!r}, not on the real node {real_node}")
        images = [c["image"] for c in pod["spec"]["containers"]]
        if images != [image]:
            pending.append(f"pod {name} runs {images}, not {image}")
        if not _ready(pod):
            pending.append(f"pod {name} is not Ready")
    if leader_election:
        holder = lease_holder(kubectl, namespace)
        names = {pod["metadata"]["name"] for pod in pods}
        if holder.partition("_")[0] not in names:
            pending.append(f"the Lease {LEASE} is held by {holder or 'nobody'}, not by a pod")
    return pending


def wait_until(
    pending: Callable[[], Sequence[str]], *, timeout: float, what: str, interval: float = 1.0
) -> None:
    """Poll ``pending`` until it returns nothing; ``TimeoutError`` with the last list."""
    deadline = time.monotonic() + timeout
    while True:
        left = pending()
        if not left:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not done after {timeout:.0f}s: {'; '.join(left)}")
        time.sleep(interval)


def kubectl_for(kubeconfig: pathlib.Path, timeout: float = 120) -> Kubectl:
    """A ``kubectl(*args, check=True, input=None)`` bound to ``kubeconfig``."""

    def kubectl(*args: str, check: bool = True, input: str | None = None) -> str:
        completed = subprocess.run(
            ["kubectl", f"--kubeconfig={kubeconfig}", *args],
            input=input,
            capture_output=True,
            text=True,
            check=False,
            timeout=timeout,
        )
        if check and completed.returncode != 0:
            raise RuntimeError(f"kubectl {' '.join(args)} failed: {completed.stderr.strip()}")
        return completed.stdout if completed.returncode == 0 else ""

    return kubectl
