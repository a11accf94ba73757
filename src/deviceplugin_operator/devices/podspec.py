"""Builders and editors for the JSON form of a core/v1 PodSpec, as used by the device hooks.

The hooks work on a freshly rendered copy of the pod template, so editing in place is safe;
these functions keep the hooks short and make "add if missing" mean the same everywhere.
"""

from __future__ import annotations

from typing import Any

PodSpec = dict[str, Any]
"""The JSON form of a core/v1 PodSpec."""

Manifest = dict[str, Any]
"""The JSON form of any other Kubernetes object or sub-object (container, volume, env var)."""


def main_container(pod: PodSpec) -> Manifest:
    """The plugin container: the first container of every base template."""
    container: Manifest = pod["containers"][0]
    return container


def mount(name: str, path: str, *, read_only: bool = False) -> Manifest:
    """A volumeMount."""
    result: Manifest = {"name": name, "mountPath": path}
    if read_only:
        result["readOnly"] = True
    return result


def host_path(name: str, path: str, path_type: str | None = None) -> Manifest:
    """A hostPath volume, with an optional hostPath type such as DirectoryOrCreate."""
    source: Manifest = {"path": path}
    if path_type is not None:
        source["type"] = path_type
    return {"name": name, "hostPath": source}


def config_map(name: str, config_map_name: str, default_mode: int) -> Manifest:
    """A ConfigMap volume. ``default_mode`` is explicit so the stored object matches ours."""
    return {"name": name, "configMap": {"name": config_map_name, "defaultMode": default_mode}}


def empty_dir(name: str) -> Manifest:
    """An emptyDir volume."""
    return {"name": name, "emptyDir": {}}


def node_name_env() -> Manifest:
    """The NODE_NAME variable every plugin and most init containers read."""
    return {"name": "NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}


def env(name: str, value: str) -> Manifest:
    """A plain environment variable."""
    return {"name": name, "value": value}


def add_volumes(pod: PodSpec, *volumes: Manifest) -> None:
    """Append each volume whose name the pod does not have yet."""
    existing = pod.setdefault("volumes", [])
    names = {volume["name"] for volume in existing}
    existing.extend(volume for volume in volumes if volume["name"] not in names)


def remove_volumes(pod: PodSpec, *names: str) -> None:
    """Drop the named volumes, if present."""
    pod["volumes"] = [volume for volume in pod.get("volumes", []) if volume["name"] not in names]


def volume(pod: PodSpec, name: str) -> Manifest:
    """The pod's volume of that name; KeyError if there is none."""
    for candidate in pod.get("volumes", []):
        if candidate["name"] == name:
            found: Manifest = candidate
            return found
    raise KeyError(name)


def volume_mount(container: Manifest, name: str) -> Manifest:
    """The container's mount of the named volume; KeyError if there is none."""
    for candidate in container.get("volumeMounts", []):
        if candidate["name"] == name:
            found: Manifest = candidate
            return found
    raise KeyError(name)
