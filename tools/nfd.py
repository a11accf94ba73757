"""Node Feature Discovery for the tests: nfd-master built once from its Go module, and NFD's own
deployment files (CRDs, RBAC) read from the same module in the Go module cache.

    python tools/nfd.py   # ~/.cache/deviceplugin-operator/bin/nfd-master-<hash>/nfd-master

nfd-master cannot be ``go install``-ed (its go.mod replaces its API submodule with a local
path), so it is built from the small program ``tools/programs/nfd-master/``, whose go.mod pins
the release; ``VERSION`` is read from there, so the binary and the CRDs are always of one
release. Nothing of NFD is copied into this repository.
"""

from __future__ import annotations

import json
import pathlib
import re
import subprocess
import sys

import gotools

MODULE = "sigs.k8s.io/node-feature-discovery"
TOOL = gotools.Program("nfd-master")


def version() -> str:
    """The NFD release the program requires (e.g. ``v0.17.3``)."""
    go_mod = (TOOL.source / "go.mod").read_text()
    found = re.search(rf"^\s*{re.escape(MODULE)} (v\S+)", go_mod, re.MULTILINE)
    if found is None:
        raise RuntimeError(f"{TOOL.source / 'go.mod'} requires no {MODULE}")
    return found.group(1)


def module_dir() -> pathlib.Path:
    """NFD's module source in the Go module cache (downloaded through the proxy if absent)."""
    downloaded = subprocess.run(
        [gotools.go_command(), "mod", "download", "-json", f"{MODULE}@{version()}"],
        env=gotools.go_environment(),
        capture_output=True,
        text=True,
        check=False,
    )
    info = json.loads(downloaded.stdout or "{}")
    if downloaded.returncode != 0 or "Dir" not in info:
        raise RuntimeError(
            f"go mod download {MODULE}@{version()} failed: {info.get('Error') or downloaded.stderr}"
        )
    return pathlib.Path(info["Dir"])


def crds() -> pathlib.Path:
    """The kustomize directory of NFD's CRDs: NodeFeature, NodeFeatureRule, NodeFeatureGroup."""
    return module_dir() / "deployment" / "base" / "nfd-crds"


def rbac() -> pathlib.Path:
    """The kustomize directory of NFD's service accounts and RBAC (namespace
    node-feature-discovery)."""
    return module_dir() / "deployment" / "base" / "rbac"


ensure = TOOL.ensure


if __name__ == "__main__":
    sys.exit(gotools.main(TOOL))
