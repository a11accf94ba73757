"""The generated device overlays: one per kind, each keeping only that kind's webhooks."""

from __future__ import annotations

import copy
import pathlib
from typing import Any

import pytest
import yaml

from deviceplugin_operator import devices
from deviceplugin_operator.manifests import overlays, rbac, webhooks

DEVICES = sorted(devices.KINDS)


def apply_json_patch(document: dict[str, Any], operations: list[dict[str, Any]]) -> dict[str, Any]:
    """The subset of RFC 6902 the overlays use: test, remove, add (append), replace."""
    result = copy.deepcopy(document)
    for operation in operations:
        *parents, last = operation["path"].strip("/").split("/")
        target: Any = result
        for part in parents:
            target = target[int(part)] if isinstance(target, list) else target[part]
        key: Any = int(last) if isinstance(target, list) and last != "-" else last
        match operation["op"]:
            case "test":
                assert target[key] == operation["value"], operation
            case "remove":
                del target[key]
            case "add" if key == "-":
                target.append(operation["value"])
            case "replace":
                target[key] = operation["value"]
            case _:
                raise AssertionError(f"unexpected operation {operation}")
    return result


def test_every_kind_has_an_overlay(deployments: pathlib.Path) -> None:
    assert set(overlays.files()) == {f"device/{name}/kustomization.yaml" for name in DEVICES}
    assert sorted(p.name for p in (deployments / "device").iterdir()) == DEVICES


@pytest.mark.parametrize("device", DEVICES)
def test_overlay_keeps_exactly_the_devices_webhooks(device: str) -> None:
    kustomization = overlays.kustomization(device)
    assert kustomization["resources"] == ["../../default"]
    patches = {
        patch["target"]["kind"]: yaml.safe_load(patch["patch"])
        for patch in kustomization["patches"]
    }
    assert patches["Deployment"] == [
        {
            "op": "add",
            "path": "/spec/template/spec/containers/0/args/-",
            "value": f"--devices={device}",
        }
    ]
    for everything, alone in zip(
        webhooks.configurations(devices.KINDS.values()),
        webhooks.configurations([devices.KINDS[device]]),
        strict=True,
    ):
        patched = apply_json_patch(everything, patches[everything["kind"]])
        assert patched["webhooks"] == alone["webhooks"]
        assert patched["webhooks"], "every kind has a defaulting and a validating webhook"

    role = apply_json_patch(rbac.cluster_role(), patches["ClusterRole"])
    assert role["rules"] == rbac.cluster_rules([devices.KINDS[device]])


def test_a_reordered_base_fails_the_test_operations() -> None:
    kustomization = overlays.kustomization("gpu")
    (mutating_patch,) = [
        yaml.safe_load(p["patch"])
        for p in kustomization["patches"]
        if p["target"]["kind"] == "MutatingWebhookConfiguration"
    ]
    mutating, _ = webhooks.configurations(devices.KINDS.values())
    mutating["webhooks"].reverse()
    with pytest.raises(AssertionError):
        apply_json_patch(mutating, mutating_patch)
