"""Shell blocks of the docs that a reader is meant to paste: found by their info string.

A fenced block whose info string is ``sh runnable`` is a recipe that ``test_runnable`` runs,
in order with the other runnable blocks of its file, as one bash script.
"""

from __future__ import annotations

import dataclasses
import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parents[2]
RUNNABLE_IN = (ROOT / "README.md", ROOT / "docs" / "install.md")
"""The files whose runnable blocks are run (``docs`` may mark blocks elsewhere too)."""

_FENCE = re.compile(r"^```(?P<info>[^\n`]*)\n(?P<body>.*?)^```\s*$", re.MULTILINE | re.DOTALL)


@dataclasses.dataclass(frozen=True)
class Block:
    path: pathlib.Path
    line: int
    info: str
    body: str

    @property
    def runnable(self) -> bool:
        words = self.info.split()
        return bool(words) and words[0] in ("sh", "bash") and "runnable" in words[1:]


def blocks(path: pathlib.Path) -> list[Block]:
    """Every fenced code block of a Markdown file, with its first line number."""
    text = path.read_text()
    return [
        Block(path, text.count("\n", 0, match.start()) + 1, match["info"].strip(), match["body"])
        for match in _FENCE.finditer(text)
    ]


def runnable(path: pathlib.Path) -> list[Block]:
    return [block for block in blocks(path) if block.runnable]


def script(found: list[Block]) -> str:
    """The blocks as one bash script that stops at the first failing command, each block
    announced with its place so that a failure names it."""
    parts = ["set -euo pipefail"]
    for block in found:
        where = f"{block.path.relative_to(ROOT)}:{block.line}"
        parts.append(f"echo '+++ block at {where}' >&2\n{block.body}")
    return "\n".join(parts) + "\n"
