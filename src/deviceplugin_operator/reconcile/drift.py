"""Whether a live DaemonSet matches its desired rendering, and the object to write when not.

The apiserver fills defaults into everything it stores (``terminationMessagePolicy``,
``hostPath.type``, ``defaultMode`` …), so equality with the rendering is never true. The
comparison is therefore *semantic containment*: every field the operator renders must have
the rendered value in the live object; fields it does not render are left alone. Lists are
compared element by element and must have the same length; an empty rendered list also
matches an absent one (Go's ``omitempty`` drops them). A few maps are rendered whole
(``EXACT_MAPS``): there an extra key in the live object is drift too.

The object to write keeps the live object (its resourceVersion, status, unrendered fields)
and overlays the rendering: maps merge key by key, lists and scalars are replaced.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

Path = tuple[str, ...]

EXACT_MAPS: frozenset[Path] = frozenset(
    {
        ("spec", "template", "spec", "nodeSelector"),
        ("spec", "selector", "matchLabels"),
    }
)
"""Maps whose every key is rendered, so that a key added by hand is reverted."""

RENDERED_LISTS: tuple[Path, ...] = (
    ("spec", "template", "spec", "initContainers"),
    ("spec", "template", "spec", "tolerations"),
)
"""Lists that are always part of the rendering, empty when the spec has none."""


def with_rendered_lists(desired: dict[str, Any]) -> dict[str, Any]:
    """``desired`` with every ``RENDERED_LISTS`` entry present (empty when it was absent).

    Only the maps on those paths are copied: the result shares every other value with
    ``desired``, which is left unchanged.
    """
    result = dict(desired)
    for path in RENDERED_LISTS:
        node = result
        for key in path[:-1]:
            node[key] = node = dict(node.get(key) or {})
        node.setdefault(path[-1], [])
    return result


def matches(desired: Any, live: Any, path: Path = ()) -> bool:
    """Whether ``live`` carries every rendered value of ``desired``."""
    if isinstance(desired, dict):
        if live is None:
            return not desired and path not in EXACT_MAPS
        if not isinstance(live, dict):
            return False
        if path in EXACT_MAPS and set(live) != set(desired):
            return False
        return all(matches(value, live.get(key), (*path, key)) for key, value in desired.items())
    if isinstance(desired, list):
        live_list: Sequence[Any] = [] if live is None else live
        if not isinstance(live_list, list) or len(live_list) != len(desired):
            return False
        return all(matches(d, lv, path) for d, lv in zip(desired, live_list, strict=True))
    return bool(desired == live)


def overlay(live: dict[str, Any], desired: dict[str, Any], path: Path = ()) -> dict[str, Any]:
    """The object to write: ``live`` with the rendered fields of ``desired`` laid over it.

    Neither argument is changed; the result is a new object.
    """
    # Both are decoded JSON: a JSON round trip copies them 3-4x faster than copy.deepcopy.
    result: dict[str, Any] = json.loads(json.dumps(live))
    _lay_over(result, json.loads(json.dumps(desired)), path)
    return result


def _lay_over(target: dict[str, Any], desired: dict[str, Any], path: Path) -> None:
    # ``target`` is already a copy: nested maps are changed in place, never copied again.
    for key, value in desired.items():
        child = (*path, key)
        current = target.get(key)
        if isinstance(value, dict) and isinstance(current, dict) and child not in EXACT_MAPS:
            _lay_over(current, value, child)
        else:
            target[key] = value
