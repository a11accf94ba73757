"""What the NFD suite's fixtures and tests share: tools/nfd.py (the nfd-master build and NFD's
module files), the namespace NFD runs in and the handle on the running nfd-master."""

from __future__ import annotations

import dataclasses
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]

# tools/ is on the path only for this import: left there, its docs.py would shadow the tests'
# docs package (tests/docs) for every later import of ``docs.*``.
sys.path.insert(0, str(ROOT / "tools"))
try:
    import nfd
finally:
    sys.path.remove(str(ROOT / "tools"))

NFD_NAMESPACE = "node-feature-discovery"
MASTER_NODE = "plain-server"
"""The node nfd-master says it runs on (it annotates it with its version, as in a pod)."""


@dataclasses.dataclass(frozen=True)
class Master:
    """The running nfd-master and what it cost to get it."""

    binary: pathlib.Path
    log: pathlib.Path
    build_seconds: float | None
    """Measured when this session built it; None when it came from the cache."""


__all__ = ["MASTER_NODE", "NFD_NAMESPACE", "Master", "nfd"]
