"""Shell blocks of the docs that a reader is meant to paste: found by their info string.

A fenced block whose info string is ``sh runnable`` is a recipe for the local control plane
(the operator run from source); ``sh runnable:<group>[,<group>...]`` belongs to the named
groups of a cluster with a real node and the operator image (``kustomize``, ``helm``). The
blocks of one file and group run in order, as one bash script, in the tests of ``tests/docs``.
"""

from __future__ import annotations

import dataclasses
import pathlib
import re
import textwrap

ROOT = pathlib.Path(__file__).resolve().parents[2]
RUNNABLE_IN = (ROOT / "README.md", ROOT / "docs" / "install.md")
"""The files whose runnable blocks are run."""

LOCAL = "local"
"""The group of a plain ``sh runnable`` block."""

_FENCE = re.compile(
    r"^(?P<indent> *)```(?P<info>[^\n`]*)\n(?P<body>.*?)^(?P=indent)```[ \t]*$",
    re.MULTILINE | re.DOTALL,
)


@dataclasses.dataclass(frozen=True)
class Block:
    path: pathlib.Path
    line: int
    info: str
    body: str

    @property
    def groups(self) -> frozenset[str]:
        """The groups a runnable block belongs to; empty when it is not runnable."""
        words = self.info.split()
        if not words or words[0] not in ("sh", "bash"):
            return frozenset()
        found: set[str] = set()
        for word in words[1:]:
            name, _, groups = word.partition(":")
            if name == "runnable":
                found.update(groups.split(",") if groups else [LOCAL])
        return frozenset(found)


def blocks(path: pathlib.Path) -> list[Block]:
    """Every fenced code block of a Markdown file (indented ones in lists too), dedented, with
    the line number of its opening fence."""
    text = path.read_text()
    return [
        Block(
            path,
            text.count("\n", 0, match.start()) + 1,
            match["info"].strip(),
            textwrap.dedent(match["body"]),
        )
        for match in _FENCE.finditer(text)
    ]


def runnable(path: pathlib.Path, group: str = LOCAL) -> list[Block]:
    return [block for block in blocks(path) if group in block.groups]


def groups(path: pathlib.Path) -> set[str]:
    return {group for block in blocks(path) for group in block.groups}


def script(found: list[Block]) -> str:
    """The blocks as one bash script that stops at the first failing command, each block
    announced with its place so that a failure names it."""
    parts = ["set -euo pipefail"]
    for block in found:
        where = f"{block.path.relative_to(ROOT)}:{block.line}"
        parts.append(f"echo '+++ block at {where}' >&2\n{block.body}")
    return "\n".join(parts) + "\n"
