"""Build helm from its Go module once, then reuse it; print the binary's path.

    python tools/helm.py          # e.g. ~/.cache/deviceplugin-operator/bin/helm-v3.22.0/helm

helm is built with the ``go`` command from the module proxy (``helm.sh/helm/v3/cmd/helm`` at a
released tag) into ``${XDG_CACHE_HOME:-~/.cache}/deviceplugin-operator/bin/helm-<version>/``,
outside the repository like the control-plane binaries, so a fresh clone on the same machine
never builds it twice. The link flags are those of helm's Makefile: its version, and the
Kubernetes version it assumes without a cluster (from the client-go it is built with), which
``helm template`` checks a chart's ``kubeVersion`` against. The first build takes a few minutes;
its log is written next to the binary.
"""

from __future__ import annotations

import pathlib
import re
import subprocess
import sys

import gotools

HELM_VERSION = "v3.22.0"
MODULE = "helm.sh/helm/v3"


def _ldflags() -> list[str]:
    """helm's Makefile link flags: its version and the Kubernetes version of its client-go."""
    go_mod = gotools.module_go_mod(MODULE, HELM_VERSION)
    found = re.search(r"^\s*k8s\.io/client-go v0\.(\d+)\.", go_mod, re.MULTILINE)
    if found is None:
        raise RuntimeError(f"no k8s.io/client-go requirement in {MODULE}@{HELM_VERSION}'s go.mod")
    major, minor = 1, int(found.group(1))  # client-go v0.37 belongs to Kubernetes 1.37
    return [
        "-w -s",
        f"-X {MODULE}/internal/version.version={HELM_VERSION}",
        f"-X {MODULE}/internal/version.gitTreeState=clean",
        *(
            f"-X {MODULE}/pkg/{package}.k8sVersion{part}={value}"
            for package in ("lint/rules", "chartutil")
            for part, value in (("Major", major), ("Minor", minor))
        ),
    ]


TOOL = gotools.Released("helm", f"{MODULE}/cmd/helm", HELM_VERSION, _ldflags)


def binary() -> pathlib.Path:
    """Where the helm binary lives once built."""
    return TOOL.binary()


def ensure(*, echo: bool = True) -> pathlib.Path:
    """The helm binary, built first when it is not cached (a few minutes)."""
    return gotools.ensure(TOOL, echo=echo)


def main() -> int:
    try:
        print(ensure())
    except (RuntimeError, subprocess.CalledProcessError) as error:
        print(error, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
