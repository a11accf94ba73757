"""Fixtures of the OLM bundle tests: the bundle validator (our Go program around
github.com/operator-framework/api's validators, tools/bundle_validate.py; make test builds it
first) and the
kustomize rendering of the default install the bundle is compared with."""

from __future__ import annotations

import pathlib
import subprocess
import sys
from typing import Any

import pytest
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
if str(ROOT / "tools") not in sys.path:
    sys.path.insert(0, str(ROOT / "tools"))

import bundle_validate  # noqa: E402

BUNDLE = ROOT / "bundle"
OPERATOR = ROOT / "deployments" / "operator"


@pytest.fixture(scope="session")
def validator() -> pathlib.Path:
    return bundle_validate.ensure()


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


@pytest.fixture(scope="session")
def default_install() -> list[dict[str, Any]]:
    """``kubectl kustomize deployments/operator/default``: the install the bundle mirrors."""
    return kustomize(OPERATOR / "default")
