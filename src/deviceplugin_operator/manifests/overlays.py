"""The per-device kustomize overlays ``device/<dev>/kustomization.yaml``, one per kind.

Each is the default install with ``--devices=<dev>`` appended to the manager's arguments (a
JSON patch ``add``, so the metrics, probe and leader election flags stay, unlike the
reference's overlays that replace the whole list) and with the other kinds' admission webhooks
removed (those that ``webhooks.configurations`` does not make for the device alone): the
operator serves the webhooks of its enabled kinds only, so a webhook left in place for a
disabled kind (``failurePolicy: Fail``) would refuse every resource of that kind.
Each removal is preceded by a JSON patch ``test`` of the webhook's name, so that a change in
the generated order fails the build instead of removing the wrong webhook. The ClusterRole's
rules are narrowed to the device's resources.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import yaml

from deviceplugin_operator import devices
from deviceplugin_operator.manifests import rbac, rendering, webhooks

DEPLOYMENT = "controller-manager"
"""The manager Deployment's name before the default's ``namePrefix``."""


def path(device: str) -> str:
    return f"device/{device}/kustomization.yaml"


def _target(group: str, kind: str, name: str) -> dict[str, str]:
    return {"group": group, "version": "v1", "kind": kind, "name": name}


def _json_patch(operations: list[dict[str, Any]]) -> str:
    return yaml.safe_dump(operations, sort_keys=False).rstrip("\n")


def kustomization(device: str) -> dict[str, Any]:
    """The overlay that runs only ``device``'s controller and webhooks."""
    patches: list[dict[str, Any]] = [
        {
            "target": _target("apps", "Deployment", DEPLOYMENT),
            "patch": _json_patch(
                [
                    {
                        "op": "add",
                        "path": "/spec/template/spec/containers/0/args/-",
                        "value": f"--devices={device}",
                    }
                ]
            ),
        }
    ]
    own = webhooks.configurations([devices.KINDS[device]])
    for configuration, alone in zip(
        webhooks.configurations(devices.KINDS.values()), own, strict=True
    ):
        operations: list[dict[str, Any]] = []
        hooks = configuration["webhooks"]
        keep = {hook["name"] for hook in alone["webhooks"]}
        # Highest index first, so that each index still means what it meant in the base.
        for index in reversed(range(len(hooks))):
            name = hooks[index]["name"]
            if name in keep:
                continue
            at = f"/webhooks/{index}"
            operations += [
                {"op": "test", "path": f"{at}/name", "value": name},
                {"op": "remove", "path": at},
            ]
        patches.append(
            {
                "target": _target(
                    "admissionregistration.k8s.io",
                    configuration["kind"],
                    configuration["metadata"]["name"],
                ),
                "patch": _json_patch(operations),
            }
        )
    patches.append(
        {
            "target": _target("rbac.authorization.k8s.io", "ClusterRole", rbac.NAME),
            "patch": _json_patch(
                [
                    {
                        "op": "replace",
                        "path": "/rules",
                        "value": rbac.cluster_rules([devices.KINDS[device]]),
                    }
                ]
            ),
        }
    )
    return {"resources": ["../../default"], "patches": patches}


def files() -> Mapping[str, str]:
    return {
        path(device): rendering.yaml_document(kustomization(device), start=False)
        for device in devices.KINDS
    }
