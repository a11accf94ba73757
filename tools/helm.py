"""Build helm from its Go module once, then reuse it; print the binary's path.

    python tools/helm.py          # helm 4: ~/.cache/deviceplugin-operator/bin/helm-v4.3.2/helm
    python tools/helm.py --v3     # helm 3, which the chart must keep working with

helm is built with the ``go`` command from the module proxy (``helm.sh/helm/v4/cmd/helm`` at a
released tag, approved by the proxy) into
``${XDG_CACHE_HOME:-~/.cache}/deviceplugin-operator/bin/helm-<version>/``, outside the
repository like the control-plane binaries, so a fresh clone on the same machine never builds it
twice. The link flags are those of helm's Makefile. Helm 4 reads the Kubernetes version it
assumes without a cluster (which ``helm template`` checks a chart's ``kubeVersion`` against)
from the client-go recorded in the binary's build information, so only its own version is set;
helm 3 takes that Kubernetes version as link flags too, from the client-go of its go.mod. The
first build takes a few minutes; its log is written next to the binary.
"""

from __future__ import annotations

import re
import sys

import gotools

HELM_VERSION = "v4.3.2"
MODULE = "helm.sh/helm/v4"
HELM3_VERSION = "v3.21.4"
"""The last helm 3 the module proxy approves: the chart is linted and rendered with it too."""
MODULE3 = "helm.sh/helm/v3"


def _version_flags(module: str, version: str) -> list[str]:
    return [
        "-w -s",
        f"-X {module}/internal/version.version={version}",
        f"-X {module}/internal/version.gitTreeState=clean",
    ]


def _ldflags() -> list[str]:
    """helm 4's Makefile link flags: its version (internal/version)."""
    return _version_flags(MODULE, HELM_VERSION)


def _ldflags3() -> list[str]:
    """helm 3's Makefile link flags: its version and the Kubernetes version of its client-go."""
    go_mod = gotools.module_go_mod(MODULE3, HELM3_VERSION)
    found = re.search(r"^\s*k8s\.io/client-go v0\.(\d+)\.", go_mod, re.MULTILINE)
    if found is None:
        raise RuntimeError(f"no k8s.io/client-go requirement in {MODULE3}@{HELM3_VERSION}'s go.mod")
    major, minor = 1, int(found.group(1))  # client-go v0.35 belongs to Kubernetes 1.35
    return [
        *_version_flags(MODULE3, HELM3_VERSION),
        *(
            f"-X {MODULE3}/pkg/{package}.k8sVersion{part}={value}"
            for package in ("lint/rules", "chartutil")
            for part, value in (("Major", major), ("Minor", minor))
        ),
    ]


TOOL = gotools.Released("helm", f"{MODULE}/cmd/helm", HELM_VERSION, _ldflags)
TOOL3 = gotools.Released("helm", f"{MODULE3}/cmd/helm", HELM3_VERSION, _ldflags3)


ensure = TOOL.ensure
ensure3 = TOOL3.ensure


def main(argv: list[str] | None = None) -> int:
    arguments = sys.argv[1:] if argv is None else argv
    if arguments not in ([], ["--v3"]):
        print("usage: python tools/helm.py [--v3]", file=sys.stderr)
        return 2
    return gotools.main(TOOL3 if arguments else TOOL)


if __name__ == "__main__":
    sys.exit(main())
