"""The in-memory copy of one watched resource, keyed ``namespace/name``, with secondary indexes.

An ``Informer`` writes it; reconcilers and event handlers only read it. Objects are stored as
the API server sent them (minus ``metadata.managedFields``) and handed out without copying:
readers must not change them.

An index maps each object to zero or more string values (for example the UID of its
controlling owner) so that "the DaemonSets owned by this resource" is a dictionary lookup,
not a scan.
"""

from __future__ import annotations

import builtins
from collections.abc import Callable, Iterable, Mapping

from deviceplugin_operator.kube import objects

IndexFunc = Callable[[objects.JsonObject], Iterable[str]]
"""The values under which an object is found in one index."""

CONTROLLER_UID = "controller-uid"
"""Conventional name of the ``by_controller_uid`` index."""


def by_controller_uid(obj: objects.JsonObject) -> list[str]:
    """The UID of the object's controlling owner (none when it has no controller)."""
    owner = objects.controller_owner(obj)
    return [str(owner["uid"])] if owner and owner.get("uid") else []


def by_namespace(obj: objects.JsonObject) -> list[str]:
    namespace = objects.namespace(obj)
    return [namespace] if namespace else []


class Store:
    """Objects by key, plus the indexes named in ``indexers``."""

    def __init__(self, indexers: Mapping[str, IndexFunc] | None = None) -> None:
        self._objects: dict[str, objects.JsonObject] = {}
        self._indexers: dict[str, IndexFunc] = dict(indexers or {})
        self._indices: dict[str, dict[str, set[str]]] = {name: {} for name in self._indexers}

    # Reading -------------------------------------------------------------------------------
    def get(self, key: str) -> objects.JsonObject | None:
        """The object with key ``namespace/name`` (``name`` for cluster-scoped objects)."""
        return self._objects.get(key)

    def list(self) -> builtins.list[objects.JsonObject]:
        return builtins.list(self._objects.values())

    def keys(self) -> builtins.list[str]:
        return builtins.list(self._objects)

    def by_index(self, index: str, value: str) -> builtins.list[objects.JsonObject]:
        """Objects whose index function returned ``value``, in key order."""
        return [self._objects[key] for key in self.index_keys(index, value)]

    def index_keys(self, index: str, value: str) -> builtins.list[str]:
        if index not in self._indices:
            raise KeyError(f"no index named {index!r}")
        return sorted(self._indices[index].get(value, ()))

    def __len__(self) -> int:
        return len(self._objects)

    def __contains__(self, key: object) -> bool:
        return key in self._objects

    # Writing (the Informer's side) ---------------------------------------------------------
    def add_indexer(self, name: str, func: IndexFunc) -> None:
        """Add an index, built at once over the objects already stored."""
        if name in self._indexers:
            raise ValueError(f"index {name!r} exists already")
        self._indexers[name] = func
        self._indices[name] = {}
        for key, obj in self._objects.items():
            self._index(name, func, key, obj)

    def upsert(self, obj: objects.JsonObject) -> objects.JsonObject | None:
        """Store ``obj``; returns the object it replaced, if any."""
        key = objects.key(obj)
        old = self._objects.get(key)
        if old is not None:
            self._unindex(key, old)
        self._objects[key] = obj
        for name, func in self._indexers.items():
            self._index(name, func, key, obj)
        return old

    def remove(self, key: str) -> objects.JsonObject | None:
        """Drop the object with ``key``; returns it, if it was there."""
        old = self._objects.pop(key, None)
        if old is not None:
            self._unindex(key, old)
        return old

    def _index(self, name: str, func: IndexFunc, key: str, obj: objects.JsonObject) -> None:
        index = self._indices[name]
        for value in func(obj):
            index.setdefault(value, set()).add(key)

    def _unindex(self, key: str, obj: objects.JsonObject) -> None:
        for name, func in self._indexers.items():
            index = self._indices[name]
            for value in func(obj):
                keys = index.get(value)
                if keys is not None:
                    keys.discard(key)
                    if not keys:
                        del index[value]
