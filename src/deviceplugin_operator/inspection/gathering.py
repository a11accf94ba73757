"""Reads what ``diagnose`` and ``support-bundle`` look at, with list and get requests only.

The plugin DaemonSets and pods are found in every namespace by their ``app`` labels, so the
tools need not know the operator's ``--deviceplugin-namespace``; a kind whose CRD is not
installed simply has no resources.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from deviceplugin_operator import devices
from deviceplugin_operator.inspection import diagnosis
from deviceplugin_operator.kube import client, errors, objects, resources


class NotFoundError(LookupError):
    """A node or resource named on the command line does not exist."""


def plugin_selector(kinds: Iterable[devices.DeviceKind[Any]]) -> str:
    """``app in (intel-gpu-plugin, ...)``: the plugin DaemonSets' and pods' label."""
    return f"app in ({','.join(sorted(kind.base_name for kind in kinds))})"


async def resources_of(
    kube: client.KubeClient, kind: devices.DeviceKind[Any]
) -> list[objects.JsonObject]:
    """The resources of ``kind``; none when its CRD is not installed."""
    resource = resources.Resource.of(
        kind.resource.api_version, kind.kind, kind.plural, namespaced=False
    )
    try:
        return (await kube.list(resource)).items
    except errors.NotFound:
        return []


async def snapshot(
    kube: client.KubeClient,
    *,
    node: str | None = None,
    kind: str | None = None,
    name: str | None = None,
) -> diagnosis.Snapshot:
    """What the cluster holds for ``diagnose`` (narrowed to ``node`` and ``kind``)."""
    kinds = [devices.KINDS[kind]] if kind is not None else list(devices.KINDS.values())
    found = {k.name: await resources_of(kube, k) for k in kinds}
    if (
        kind is not None
        and name is not None
        and not any(objects.name(r) == name for r in found[kind])
    ):
        raise NotFoundError(f"{devices.KINDS[kind].kind} {name!r} not found")
    if node is not None:
        try:
            nodes = [await kube.get(resources.NODES, node)]
        except errors.NotFound:
            raise NotFoundError(f"node {node!r} not found") from None
    else:
        nodes = (await kube.list(resources.NODES)).items
    selector = plugin_selector(kinds)
    daemonsets = (await kube.list(resources.DAEMON_SETS, label_selector=selector)).items
    pods = (await kube.list(resources.PODS, label_selector=selector)).items
    return diagnosis.Snapshot(nodes, found, daemonsets, pods)
