"""The overlay the end-to-end suite and ``make demo-incluster`` install changes nothing in a
tree but the operator image (no cluster needed)."""

from __future__ import annotations

import pathlib
import subprocess

import pytest
import yaml

from deviceplugin_operator import devices
from e2e import support

TREES = [
    "default",
    *(f"device/{name}" for name in sorted(devices.KINDS)),
    "certmanager",
    "overlays/ocp",
]


def rendered(path: pathlib.Path) -> list[dict[str, object]]:
    completed = subprocess.run(
        ["kubectl", "kustomize", str(path)], capture_output=True, text=True, check=False, timeout=60
    )
    assert completed.returncode == 0, completed.stderr
    return [document for document in yaml.safe_load_all(completed.stdout) if document]


@pytest.mark.parametrize("tree", TREES)
def test_only_the_image_is_swapped(tree: str, tmp_path: pathlib.Path) -> None:
    original = rendered(support.OPERATOR / tree)
    swapped = rendered(support.overlay(tree, tmp_path))
    assert len(swapped) == len(original)
    changed = []
    for before, after in zip(original, swapped, strict=True):
        if before == after:
            continue
        assert before["kind"] == after["kind"] == "Deployment"
        (container,) = after["spec"]["template"]["spec"]["containers"]
        assert container["image"] == support.incluster.IMAGE
        assert container["imagePullPolicy"] == "Never"
        container["image"] = "docker.io/intel/intel-deviceplugin-operator-py:devel"
        container["imagePullPolicy"] = "IfNotPresent"
        assert after == before
        changed.append(after["metadata"]["name"])
    assert changed == ["intel-deviceplugins-controller-manager"]


@pytest.mark.parametrize(
    ("image", "expected"),
    [
        ("localhost/a/b:local", ("localhost/a/b", "local")),
        ("registry:5000/a/b", ("registry:5000/a/b", "latest")),
        ("registry:5000/a/b:1.2", ("registry:5000/a/b", "1.2")),
    ],
)
def test_split_image(image: str, expected: tuple[str, str]) -> None:
    assert support.incluster.split_image(image) == expected
