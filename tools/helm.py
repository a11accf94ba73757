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

import json
import os
import pathlib
import re
import shutil
import subprocess
import sys
import tempfile
import time

HELM_VERSION = "v3.22.0"
MODULE = "helm.sh/helm/v3"


def cache_root() -> pathlib.Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(pathlib.Path.home() / ".cache")
    return pathlib.Path(base) / "deviceplugin-operator"


def binary(version: str = HELM_VERSION) -> pathlib.Path:
    """Where the helm binary of ``version`` lives once built."""
    return cache_root() / "bin" / f"helm-{version}" / "helm"


def _go_environment() -> dict[str, str]:
    env = dict(os.environ)
    env["GOFLAGS"] = " ".join(filter(None, [env.get("GOFLAGS", ""), "-mod=mod"]))
    env["CGO_ENABLED"] = "0"
    return env


def _kubernetes_version(go: str, version: str, env: dict[str, str]) -> tuple[int, int]:
    """(major, minor) of the Kubernetes that helm's client-go belongs to (v0.37 → 1.37)."""
    downloaded = subprocess.run(
        [go, "mod", "download", "-json", f"{MODULE}@{version}"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    go_mod = pathlib.Path(json.loads(downloaded.stdout)["GoMod"]).read_text()
    found = re.search(r"^\s*k8s\.io/client-go v0\.(\d+)\.", go_mod, re.MULTILINE)
    if found is None:
        raise RuntimeError(f"no k8s.io/client-go requirement in {MODULE}@{version}'s go.mod")
    return 1, int(found.group(1))


def ensure(version: str = HELM_VERSION, *, echo: bool = True) -> pathlib.Path:
    """The helm binary of ``version``, built first when it is not cached."""
    target = binary(version)
    if target.exists():
        return target
    go = shutil.which("go")
    if go is None:
        raise RuntimeError("building helm needs the go command (Go >= 1.24) on PATH")
    env = _go_environment()
    major, minor = _kubernetes_version(go, version, env)
    ldflags = " ".join(
        [
            "-w -s",
            f"-X helm.sh/helm/v3/internal/version.version={version}",
            "-X helm.sh/helm/v3/internal/version.gitTreeState=clean",
            *(
                f"-X helm.sh/helm/v3/pkg/{package}.k8sVersion{part}={value}"
                for package in ("lint/rules", "chartutil")
                for part, value in (("Major", major), ("Minor", minor))
            ),
        ]
    )
    target.parent.mkdir(parents=True, exist_ok=True)
    log = target.parent.parent / f"helm-{version}.log"
    if echo:
        print(f"Building helm {version} from {MODULE} (a few minutes; log: {log})", file=sys.stderr)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(dir=target.parent) as scratch, log.open("w") as output:
        env["GOBIN"] = scratch
        completed = subprocess.run(
            [go, "install", "-trimpath", "-ldflags", ldflags, f"{MODULE}/cmd/helm@{version}"],
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
            check=False,
        )
        if completed.returncode != 0:
            raise RuntimeError(f"building helm {version} failed; see {log}")
        # Atomic: a concurrent reader sees no binary or a whole one.
        os.replace(pathlib.Path(scratch) / "helm", target)
    if echo:
        print(f"Built helm {version} in {time.monotonic() - started:.0f}s", file=sys.stderr)
    return target


def main() -> int:
    try:
        print(ensure())
    except (RuntimeError, subprocess.CalledProcessError) as error:
        print(error, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
