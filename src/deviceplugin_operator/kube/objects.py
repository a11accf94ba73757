"""Raw Kubernetes objects as decoded JSON, and read accessors for their metadata.

Built-in objects on hot paths (DaemonSets, Pods, Leases) stay plain JSON dictionaries: the
client library's generated models cost more to build than the whole reconcile. ``JsonObject``
is the one name for that shape; code past ``kube/`` reads it only through these accessors or
parses it into a model.
"""

from __future__ import annotations

from typing import Any

JsonObject = dict[str, Any]
"""A decoded JSON object as the API server sends it (camelCase keys)."""


def metadata(obj: JsonObject) -> JsonObject:
    """The object's ``metadata`` (an empty dictionary when it has none)."""
    meta: JsonObject = obj.get("metadata") or {}
    return meta


def name(obj: JsonObject) -> str:
    return str(metadata(obj).get("name", ""))


def namespace(obj: JsonObject) -> str | None:
    """The namespace, or None for a cluster-scoped object."""
    value = metadata(obj).get("namespace")
    return str(value) if value else None


def uid(obj: JsonObject) -> str:
    return str(metadata(obj).get("uid", ""))


def resource_version(obj: JsonObject) -> str:
    return str(metadata(obj).get("resourceVersion", ""))


def labels(obj: JsonObject) -> dict[str, str]:
    found: dict[str, str] = metadata(obj).get("labels") or {}
    return found


def key(obj: JsonObject) -> str:
    """``namespace/name``, or ``name`` for a cluster-scoped object (client-go's key format)."""
    ns = namespace(obj)
    return f"{ns}/{name(obj)}" if ns else name(obj)


def controller_owner(obj: JsonObject) -> JsonObject | None:
    """The owner reference with ``controller: true``, if any."""
    for reference in metadata(obj).get("ownerReferences") or ():
        if reference.get("controller"):
            owner: JsonObject = reference
            return owner
    return None
