"""Paths and the kustomize rendering the OLM bundle tests share (a module of its own: a name
imported from ``conftest`` is whichever conftest was imported last when several test
directories run together)."""

from __future__ import annotations

import pathlib
import subprocess
from typing import Any

import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
BUNDLE = ROOT / "bundle"
OPERATOR = ROOT / "deployments" / "operator"


def kustomize(directory: pathlib.Path) -> list[dict[str, Any]]:
    completed = subprocess.run(
        ["kubectl", "kustomize", str(directory)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    return [d for d in yaml.safe_load_all(completed.stdout) if d]
