"""Fixtures of the OLM bundle tests: the bundle validator (our Go program around
github.com/operator-framework/api's validators, tools/bundle_validate.py; make test builds it
first) and the kustomize rendering of the default install the bundle is compared with."""

from __future__ import annotations

import pathlib
import sys
from typing import Any

import pytest
from bundle_paths import OPERATOR, ROOT, kustomize

if str(ROOT / "tools") not in sys.path:
    sys.path.insert(0, str(ROOT / "tools"))

import bundle_validate


@pytest.fixture(scope="session")
def validator() -> pathlib.Path:
    return bundle_validate.ensure()


@pytest.fixture(scope="session")
def default_install() -> list[dict[str, Any]]:
    """``kubectl kustomize deployments/operator/default``: the install the bundle mirrors."""
    return kustomize(OPERATOR / "default")
