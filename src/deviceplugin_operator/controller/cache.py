"""The in-memory copy of one watched resource, keyed ``namespace/name``, with secondary indexes.

An ``Informer`` writes it; reconcilers and event handlers only read it. Objects are stored as
the API server sent them (minus ``metadata.managedFields``) and handed out without copying:
readers must not change them.

An index maps each object to zero or more string values (for example the UID of its
controlling owner) so that "the DaemonSets owned by this resource" is a dictionary lookup,
not a scan. Each value of an index has a version that changes whenever the objects found
under it change in number or placement (an object added, removed, or moved to other values
of any index), not when an object is only updated in place: what a reader computed from
"the pods on this node" holds while that version stays.
"""

from __future__ import annotations

import builtins
import itertools
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
        self._versions: dict[tuple[str, str], int] = {}
        self._clock = itertools.count(1)
        self.placement_version = 0
        """Changes whenever any index value's version does: an object added, removed or
        moved; not on an update in place."""

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

    def index_version(self, index: str, value: str) -> int:
        """A number that changes whenever the objects under ``value`` of ``index`` are added,
        removed or moved (0 while it has none: another number never comes back)."""
        return self._versions.get((index, value), 0)

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
            self._index(name, func(obj), key)

    def upsert(self, obj: objects.JsonObject) -> objects.JsonObject | None:
        """Store ``obj``; returns the object it replaced, if any."""
        key = objects.key(obj)
        old = self._objects.get(key)
        self._objects[key] = obj
        if old is None:
            for name, func in self._indexers.items():
                self._index(name, func(obj), key)
            return None
        # Most updates (a pod's status, a DaemonSet's counts) move the object nowhere: its
        # indexes and their versions stay as they are. One that moves it in any index moves
        # the versions of all its values (a pod orphaned on its node changes that node's
        # version too).
        moves = [(name, list(func(old)), list(func(obj))) for name, func in self._indexers.items()]
        if any(before != after for _, before, after in moves):
            for name, before, after in moves:
                self._unindex(name, before, key)
                self._index(name, after, key)
        return old

    def remove(self, key: str) -> objects.JsonObject | None:
        """Drop the object with ``key``; returns it, if it was there."""
        old = self._objects.pop(key, None)
        if old is not None:
            for name, func in self._indexers.items():
                self._unindex(name, func(old), key)
        return old

    def _index(self, name: str, values: Iterable[str], key: str) -> None:
        index = self._indices[name]
        for value in values:
            index.setdefault(value, set()).add(key)
            self._versions[(name, value)] = self.placement_version = next(self._clock)

    def _unindex(self, name: str, values: Iterable[str], key: str) -> None:
        index = self._indices[name]
        for value in values:
            keys = index.get(value)
            if keys is not None:
                keys.discard(key)
                if not keys:
                    del index[value]
            self.placement_version = next(self._clock)
            if keys:
                self._versions[(name, value)] = self.placement_version
            else:
                # Empty again: back to 0 like a value never seen (both hold no object), so that
                # the versions of nodes and owners long gone are not kept forever.
                self._versions.pop((name, value), None)
