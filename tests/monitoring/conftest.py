"""Fixtures of the monitoring tests: promtool (built once from the Prometheus Go module) and the
Prometheus Operator CRDs, read from its Go module at test time (never committed)."""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools"))

import gotools  # noqa: E402
import promtool as promtool_tool  # noqa: E402

PROMETHEUS_OPERATOR = "github.com/prometheus-operator/prometheus-operator"
PROMETHEUS_OPERATOR_VERSION = "v0.85.0"
"""The newest version of the main module the proxy serves (v0.95.2 exists only as its
pkg/apis/monitoring module, which carries no CRD YAML)."""
CRDS = ("monitoring.coreos.com_servicemonitors.yaml", "monitoring.coreos.com_prometheusrules.yaml")


@pytest.fixture(scope="session")
def promtool() -> pathlib.Path:
    return promtool_tool.ensure()


@pytest.fixture(scope="session")
def prometheus_operator_crds() -> list[pathlib.Path]:
    downloaded = subprocess.run(
        [
            gotools.go_command(),
            "mod",
            "download",
            "-json",
            f"{PROMETHEUS_OPERATOR}@{PROMETHEUS_OPERATOR_VERSION}",
        ],
        env=gotools.go_environment(),
        capture_output=True,
        text=True,
        check=True,
    )
    directory = pathlib.Path(
        json.loads(downloaded.stdout)["Dir"], "example/prometheus-operator-crd"
    )
    return [directory / name for name in CRDS]
