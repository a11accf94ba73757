"""Fixtures shared by the unit tests: the repository's paths and its sample resources."""

from __future__ import annotations

import pathlib
from typing import Any

import pytest
import yaml

from deviceplugin_operator import devices

_REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def repo_root() -> pathlib.Path:
    return _REPO_ROOT


@pytest.fixture(scope="session")
def deployments() -> pathlib.Path:
    """deployments/operator of this repository."""
    return _REPO_ROOT / "deployments" / "operator"


@pytest.fixture(scope="session")
def sample_documents(deployments: pathlib.Path) -> list[dict[str, Any]]:
    """Every resource in deployments/operator/samples, in file order."""
    documents = []
    for path in sorted((deployments / "samples").glob("*.yaml")):
        if path.name != "kustomization.yaml":
            documents.extend(doc for doc in yaml.safe_load_all(path.read_text()) if doc)
    return documents


@pytest.fixture(scope="session")
def samples(sample_documents: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The device plugin samples keyed by device name, e.g. ``gpu``."""
    by_kind = {kind.kind: name for name, kind in devices.KINDS.items()}
    return {
        by_kind[doc["kind"]]: doc
        for doc in sample_documents
        if doc["apiVersion"] == "deviceplugin.intel.com/v1"
    }
