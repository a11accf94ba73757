"""``support-bundle`` run as a user runs it, and its archive read back: what the envtest and the
e2e bundle tests share (tests/envtest/test_support_bundle.py,
tests/e2e/test_support_bundle_incluster.py)."""

from __future__ import annotations

import dataclasses
import pathlib
import subprocess
import tarfile

from operators import COMMAND


@dataclasses.dataclass(frozen=True)
class Bundle:
    stdout: str
    roots: set[str]
    """The archive's top directories (one, ``bundle``, is expected)."""
    files: dict[str, str]
    """Each file's text by its path below the top directory."""


def make(output: pathlib.Path, kubeconfig: pathlib.Path | str) -> Bundle:
    """Write a bundle to ``output`` with ``kubeconfig``'s rights; the command must succeed."""
    completed = subprocess.run(
        [str(COMMAND), "support-bundle", "-o", str(output), f"--kubeconfig={kubeconfig}"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    roots: set[str] = set()
    files: dict[str, str] = {}
    with tarfile.open(output) as archive:
        for member in archive.getmembers():
            extracted = archive.extractfile(member)
            assert extracted is not None
            root, _, name = member.name.partition("/")
            roots.add(root)
            files[name] = extracted.read().decode()
    return Bundle(completed.stdout, roots, files)
