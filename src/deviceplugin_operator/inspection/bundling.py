"""``support-bundle``: what an issue report needs, in one ``.tar.gz``, without secrets.

Read with list, get and ``pods/log`` requests only (nothing is written to the cluster):

``version.json``            this tool's version; each operator Deployment's image, command,
                            flags and environment (values redacted, see ``redaction``)
``resources/<plural>.json`` the device plugin resources, spec and status
``daemonsets.json``         the plugin DaemonSets
``pods.json``               the plugin pods: node, owner and status (no spec)
``events.json``             Events of the resources, and in the plugin and operator namespaces
``nodes.json``              per node: Intel and NFD feature labels, taints, Ready, and the
                            capacity/allocatable of the Intel resource domains
``diagnose.json``           what ``diagnose -o json`` says
``operator/deployments.json``, ``operator/pods.json``, ``operator/logs/<pod>.<container>.log``
                            the operator's Deployments, pods and recent logs (previous run too
                            after a restart)
``errors.txt``              what could not be read, and why (RBAC, a pod without logs ...)

Secrets are never requested; everything else goes through ``redaction.Redactor``.
"""

from __future__ import annotations

import dataclasses
import datetime
import importlib.metadata
import io
import json
import pathlib
import tarfile
from collections.abc import Iterable, Mapping
from typing import Any

from deviceplugin_operator import devices
from deviceplugin_operator.inspection import diagnosis, gathering, redaction, reporting
from deviceplugin_operator.inspection.commands import OPERATOR_SELECTOR
from deviceplugin_operator.kube import client, errors, objects, resources

DEPLOYMENTS = resources.Resource("apps", "v1", "deployments", "Deployment")

_KEPT_LABEL_PARTS = ("intel", "feature.node.kubernetes.io")
_KEPT_LABELS = frozenset({"kubernetes.io/arch", "kubernetes.io/os", "kubernetes.io/hostname"})


@dataclasses.dataclass
class Bundle:
    """The files of a bundle (path → bytes) and what could not be collected."""

    files: dict[str, bytes] = dataclasses.field(default_factory=dict)
    errors: list[str] = dataclasses.field(default_factory=list)

    def add_json(self, path: str, value: Any) -> None:
        self.files[path] = (json.dumps(value, indent=2, sort_keys=True) + "\n").encode()

    def write(self, path: pathlib.Path, *, root: str) -> None:
        if self.errors:
            self.files["errors.txt"] = ("\n".join(self.errors) + "\n").encode()
        with tarfile.open(path, "w:gz") as archive:
            for name, data in sorted(self.files.items()):
                info = tarfile.TarInfo(f"{root}/{name}")
                info.size = len(data)
                info.mode = 0o644
                info.mtime = int(datetime.datetime.now(datetime.UTC).timestamp())
                archive.addfile(info, io.BytesIO(data))


def tool_version() -> str:
    try:
        return importlib.metadata.version("intel-deviceplugin-operator")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


async def collect(
    kube: client.KubeClient,
    logs: client.HttpKubeClient | None,
    redactor: redaction.Redactor,
    *,
    operator_selector: str = OPERATOR_SELECTOR,
    tail_lines: int = 2000,
) -> Bundle:
    """Everything the bundle holds, already scrubbed."""
    bundle = Bundle()
    clean = redactor.obj

    async def listed(
        what: str, resource: resources.Resource, **options: Any
    ) -> list[objects.JsonObject]:
        try:
            return (await kube.list(resource, **options)).items
        except errors.NotFound:
            return []
        except errors.KubeError as error:
            bundle.errors.append(f"{what}: {error}")
            return []

    kinds = list(devices.KINDS.values())
    found: dict[str, list[objects.JsonObject]] = {}
    for kind in kinds:
        found[kind.name] = await listed(
            kind.plural,
            resources.Resource.of(
                kind.resource.api_version, kind.kind, kind.plural, namespaced=False
            ),
        )
        bundle.add_json(f"resources/{kind.plural}.json", clean(found[kind.name]))
    selector = gathering.plugin_selector(kinds)
    daemonsets = await listed("daemonsets", resources.DAEMON_SETS, label_selector=selector)
    pods = await listed("pods", resources.PODS, label_selector=selector)
    nodes = await listed("nodes", resources.NODES)
    bundle.add_json("daemonsets.json", clean(daemonsets))
    bundle.add_json("pods.json", [clean(_pod_status(pod)) for pod in pods])
    bundle.add_json("nodes.json", [clean(_node_summary(node)) for node in nodes])
    snapshot = diagnosis.Snapshot(nodes, found, daemonsets, pods)
    bundle.files["diagnose.json"] = (
        redactor.text(reporting.as_json(diagnosis.diagnose(snapshot))) + "\n"
    ).encode()

    deployments = await listed("deployments", DEPLOYMENTS, label_selector=operator_selector)
    bundle.add_json("operator/deployments.json", clean(deployments))
    bundle.add_json(
        "version.json",
        clean({"tool": tool_version(), "operators": [_operator(d) for d in deployments]}),
    )
    operator_pods: list[objects.JsonObject] = []
    for deployment in deployments:
        labels = ((deployment.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
        operator_pods += await listed(
            f"pods of Deployment {objects.key(deployment)}",
            resources.PODS,
            namespace=objects.namespace(deployment),
            label_selector=",".join(f"{k}={v}" for k, v in sorted(labels.items())),
        )
    bundle.add_json("operator/pods.json", [clean(_pod_status(pod)) for pod in operator_pods])
    if logs is not None:
        await _logs(bundle, logs, redactor, operator_pods, tail_lines)

    namespaces = sorted({objects.namespace(o) or "" for o in (*daemonsets, *deployments)} - {""})
    events: list[objects.JsonObject] = []
    for namespace in namespaces:
        events += await listed(f"events in {namespace}", resources.EVENTS, namespace=namespace)
    for kind in kinds:
        events += await listed(
            f"events of {kind.kind}",
            resources.EVENTS,
            field_selector=f"involvedObject.kind={kind.kind}",
        )
    unique = {objects.uid(e) or id(e): e for e in events}
    bundle.add_json("events.json", clean(sorted(unique.values(), key=_event_time)))
    return bundle


async def _logs(
    bundle: Bundle,
    logs: client.HttpKubeClient,
    redactor: redaction.Redactor,
    pods: Iterable[objects.JsonObject],
    tail_lines: int,
) -> None:
    for pod in pods:
        namespace = objects.namespace(pod) or ""
        for container in (pod.get("status") or {}).get("containerStatuses") or ():
            runs = [False] + ([True] if container.get("restartCount") else [])
            for previous in runs:
                name = f"{objects.name(pod)}.{container.get('name')}"
                path = f"operator/logs/{name}{'.previous' if previous else ''}.log"
                try:
                    text = await logs.logs(
                        objects.name(pod),
                        namespace,
                        container=str(container.get("name")),
                        tail_lines=tail_lines,
                        limit_bytes=8 * 2**20,
                        previous=previous,
                    )
                except errors.KubeError as error:
                    bundle.errors.append(f"log of {namespace}/{name}: {error}")
                    continue
                bundle.files[path] = redactor.text(text).encode()


def _operator(deployment: objects.JsonObject) -> dict[str, Any]:
    pod = ((deployment.get("spec") or {}).get("template") or {}).get("spec") or {}
    return {
        "deployment": objects.key(deployment),
        "containers": [
            {
                "name": c.get("name"),
                "image": c.get("image"),
                "command": c.get("command"),
                "args": c.get("args"),
                "env": c.get("env"),
            }
            for c in pod.get("containers") or ()
        ],
        "replicas": (deployment.get("status") or {}).get("replicas"),
        "readyReplicas": (deployment.get("status") or {}).get("readyReplicas"),
    }


def _pod_status(pod: objects.JsonObject) -> dict[str, Any]:
    """A pod without its spec (env, volumes ...): where it runs, who owns it, its status."""
    meta = objects.metadata(pod)
    return {
        "metadata": {
            key: meta[key]
            for key in (
                "name",
                "namespace",
                "uid",
                "labels",
                "annotations",
                "ownerReferences",
                "creationTimestamp",
                "deletionTimestamp",
            )
            if key in meta
        },
        "nodeName": (pod.get("spec") or {}).get("nodeName"),
        "images": [c.get("image") for c in (pod.get("spec") or {}).get("containers") or ()],
        "status": pod.get("status"),
    }


def _node_summary(node: objects.JsonObject) -> dict[str, Any]:
    status = node.get("status") or {}
    domains = tuple(kind.resource_domain + "/" for kind in devices.KINDS.values())

    def intel(quantities: Mapping[str, Any] | None) -> dict[str, Any]:
        return {k: v for k, v in (quantities or {}).items() if k.startswith(domains)}

    labels = objects.labels(node)
    return {
        "name": objects.name(node),
        "labels": {
            k: v
            for k, v in labels.items()
            if k in _KEPT_LABELS or any(part in k for part in _KEPT_LABEL_PARTS)
        },
        "taints": (node.get("spec") or {}).get("taints") or [],
        "unschedulable": bool((node.get("spec") or {}).get("unschedulable")),
        "ready": next(
            (c.get("status") for c in status.get("conditions") or () if c.get("type") == "Ready"),
            "Unknown",
        ),
        "capacity": intel(status.get("capacity")),
        "allocatable": intel(status.get("allocatable")),
        "nodeInfo": {
            k: v
            for k, v in (status.get("nodeInfo") or {}).items()
            if k in ("kernelVersion", "osImage", "kubeletVersion", "containerRuntimeVersion")
        },
    }


def _event_time(event: objects.JsonObject) -> str:
    return str(
        event.get("lastTimestamp")
        or event.get("eventTime")
        or objects.metadata(event).get("creationTimestamp")
        or ""
    )
