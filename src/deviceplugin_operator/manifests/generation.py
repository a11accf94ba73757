"""The generators behind ``python -m deviceplugin_operator.manifests`` and how they are applied.

Each generator returns file contents keyed by path under ``deployments/operator`` and names the
directories it owns entirely, so that a file left over from a removed kind counts as stale.
A new generator joins by adding an entry to ``GENERATORS``.
"""

from __future__ import annotations

import dataclasses
import difflib
import pathlib
from collections.abc import Callable, Mapping

from deviceplugin_operator.manifests import crd, monitoring, networkpolicy, overlays, rbac, webhooks


@dataclasses.dataclass(frozen=True)
class Generator:
    """One source of generated files."""

    name: str
    files: Callable[[], Mapping[str, str]]
    """Returns the generated files, keyed by POSIX path relative to deployments/operator."""

    owned_dirs: tuple[str, ...] = ()
    """Directories whose every ``*.yaml`` file this generator writes; others there are stale."""


GENERATORS: tuple[Generator, ...] = (
    Generator(name="crd", files=crd.files, owned_dirs=(crd.BASES,)),
    Generator(name="webhooks", files=webhooks.files),
    Generator(name="rbac", files=rbac.files),
    Generator(name="device overlays", files=overlays.files),
    Generator(name="network policy", files=networkpolicy.files),
    Generator(name="monitoring", files=monitoring.files),
)


def generated() -> dict[str, str]:
    """Every generated file of every generator."""
    result: dict[str, str] = {}
    for generator in GENERATORS:
        for path, content in generator.files().items():
            if path in result:
                raise ValueError(f"{path} is generated twice")
            result[path] = content
    return result


def _stale(root: pathlib.Path, expected: Mapping[str, str]) -> list[str]:
    leftovers = []
    for generator in GENERATORS:
        for directory in generator.owned_dirs:
            for path in sorted((root / directory).glob("*.yaml")):
                relative = path.relative_to(root).as_posix()
                if relative not in expected:
                    leftovers.append(relative)
    return leftovers


def write(root: pathlib.Path) -> list[str]:
    """Write every generated file under ``root``, delete stale ones; return what changed."""
    expected = generated()
    changed = []
    for relative, content in expected.items():
        path = root / relative
        if not path.exists() or path.read_text(encoding="utf-8") != content:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(content, encoding="utf-8")
            changed.append(relative)
    for relative in _stale(root, expected):
        (root / relative).unlink()
        changed.append(relative)
    return changed


def differences(root: pathlib.Path) -> str:
    """A unified diff from the files under ``root`` to the generated ones; empty if current."""
    expected = generated()
    chunks: list[str] = []
    for relative, content in expected.items():
        path = root / relative
        current = path.read_text(encoding="utf-8") if path.exists() else ""
        if current != content:
            chunks.extend(
                difflib.unified_diff(
                    current.splitlines(keepends=True),
                    content.splitlines(keepends=True),
                    fromfile=f"a/{relative}" if path.exists() else "/dev/null",
                    tofile=f"b/{relative}",
                )
            )
    for relative in _stale(root, expected):
        current = (root / relative).read_text(encoding="utf-8")
        chunks.extend(
            difflib.unified_diff(
                current.splitlines(keepends=True), [], fromfile=f"a/{relative}", tofile="/dev/null"
            )
        )
    return "".join(chunks)
