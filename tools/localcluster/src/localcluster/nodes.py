"""Fake nodes for kwok, labelled like Intel hardware found by Node Feature Discovery.

A node is a name plus labels; ``intel_nodes(n)`` gives ``n`` nodes with every Intel feature
label, and ``parse_spec`` reads ``name:key=value,key=value`` so that nodes can be given
different label sets, e.g.
``make cluster NODE_SPECS="gpu-only:intel.feature.node.kubernetes.io/gpu=true"``.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterable, Mapping, Sequence

from localcluster import errors, http

FEATURE_PREFIX = "intel.feature.node.kubernetes.io/"
INTEL_FEATURES = ("gpu", "qat", "sgx", "dsa", "iaa", "dlb", "npu", "fpga-arria10")
INTEL_LABELS: Mapping[str, str] = {f"{FEATURE_PREFIX}{name}": "true" for name in INTEL_FEATURES}


@dataclasses.dataclass(frozen=True)
class NodeSpec:
    """A fake node to create: its name, its labels besides the standard ones, and the extended
    resources it advertises besides cpu, memory and pods (kwok keeps a node's status)."""

    name: str
    labels: Mapping[str, str] = dataclasses.field(default_factory=dict)
    resources: Mapping[str, str] = dataclasses.field(default_factory=dict)


def intel_nodes(count: int, prefix: str = "intel-node") -> list[NodeSpec]:
    """``count`` nodes that carry every Intel feature label."""
    return [NodeSpec(f"{prefix}-{index}", dict(INTEL_LABELS)) for index in range(count)]


def parse_spec(text: str) -> NodeSpec:
    """``name`` or ``name:key=value,key=value`` (a bare key means ``key=true``)."""
    name, _, rest = text.partition(":")
    if not name:
        raise errors.ClusterError(f"Node spec {text!r} has no name: use name:key=value,...")
    return NodeSpec(name, parse_labels(rest))


def parse_labels(text: str) -> dict[str, str]:
    """``key=value,key=value`` (a bare key means ``key=true``; empty gives no labels)."""
    labels: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, sep, value = item.partition("=")
        labels[key] = value if sep else "true"
    return labels


def manifest(spec: NodeSpec) -> http.JsonObject:
    labels = {
        "kubernetes.io/arch": "amd64",
        "kubernetes.io/os": "linux",
        "kubernetes.io/hostname": spec.name,
        "type": "kwok",
        **spec.labels,
    }
    capacity = {"cpu": "32", "memory": "256Gi", "pods": "110", **spec.resources}
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": spec.name,
            "labels": labels,
            "annotations": {"node.alpha.kubernetes.io/ttl": "0", "kwok.x-k8s.io/node": "fake"},
        },
        "status": {
            "allocatable": capacity,
            "capacity": capacity,
            "nodeInfo": {"architecture": "amd64", "operatingSystem": "linux"},
        },
    }


def ensure(api: http.ApiClient, specs: Iterable[NodeSpec]) -> None:
    """Create the nodes that do not exist yet (existing ones are left as they are)."""
    for spec in specs:
        api.create("/api/v1/nodes", manifest(spec))


def _ready(node: http.JsonObject) -> bool:
    conditions = node.get("status", {}).get("conditions", [])
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def is_ready(api: http.ApiClient, name: str) -> bool:
    """Whether the node ``name`` exists and reports Ready."""
    node = api.get(f"/api/v1/nodes/{name}")
    return node is not None and _ready(node)


def wait_ready(api: http.ApiClient, names: Sequence[str], *, timeout: float) -> None:
    """Poll until every named node reports Ready."""
    deadline = time.monotonic() + timeout
    wanted = set(names)
    while True:
        listing = api.get("/api/v1/nodes") or {}
        ready = {item["metadata"]["name"] for item in listing.get("items", []) if _ready(item)}
        missing = wanted - ready
        if not missing:
            return
        if time.monotonic() > deadline:
            raise errors.StartError(
                f"kwok did not make {len(missing)} node(s) Ready within {timeout:.0f}s "
                f"(e.g. {sorted(missing)[:3]}); see the kwok log"
            )
        time.sleep(0.2)
