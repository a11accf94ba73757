"""JSON documents from the API server decoded by pydantic-core's parser (Rust), with the
standard library's values and errors.

Decoding watch events is the largest single cost of following a cluster's Pods: a profile of
100 nodes x 80 resources put ``json.loads`` at 13 % of the operator's busy time. On watch
events recorded from a local control plane (Pods of ~7 KB, DaemonSets of ~6 KB, GPU resources
of ~3 KB) ``pydantic_core.from_json`` takes 0.5-0.7 of ``json.loads``'s time. It refuses a few
documents the standard library takes (a byte-order mark, a lone surrogate escape, nesting deeper
than its limit) and, for malformed ones, raises a plain ``ValueError``; every such document goes
to ``json.loads``, so what is accepted, the values, and the exceptions for what is refused stay
those of ``json``. (orjson is faster still, but a new compiled dependency, and it reads integers
beyond 64 bits as floats.)
"""

from __future__ import annotations

import json
from typing import Any

import pydantic_core


def loads(data: bytes | str) -> Any:
    """``json.loads(data)``: the same value for every document, the same exception otherwise."""
    try:
        return pydantic_core.from_json(data, cache_strings="keys")
    except ValueError:
        return json.loads(data)
