"""Builds and caches the control-plane binaries from their Go modules.

etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kwok and, for the optional real
node, kubelet and kube-proxy are built with the ``go`` command from the ordinary module proxy
into
``${XDG_CACHE_HOME:-~/.cache}/deviceplugin-operator/bin/<component>-<version>/`` and reused
when present, so a fresh clone on the same machine never builds twice. k8s.io/kubernetes and
etcd's server module cannot be ``go install``-ed directly (their go.mod ``replace`` lines are
ignored in a dependency), so each is built inside a small wrapper module that repeats them.

The small static Go programs shipped with this package (``programs/*.go``: the real node's
``pause`` and the tests' ``testserver``) use only the standard library and are cached under a
hash of their source.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.resources
import json
import os
import pathlib
import re
import shutil
import subprocess
import sys
import time

from localcluster import errors

KUBERNETES_VERSION = "v1.36.3"
ETCD_VERSION = "v3.6.16"
KWOK_VERSION = "v0.8.0"

KUBERNETES_COMMANDS = (
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kubelet",
    "kube-proxy",
)
PROGRAMS = ("pause", "testserver")
"""Static Go programs of this package (``programs/<name>.go``)."""


def cache_root() -> pathlib.Path:
    """Root of everything this project caches outside the repository."""
    base = os.environ.get("XDG_CACHE_HOME") or str(pathlib.Path.home() / ".cache")
    return pathlib.Path(base) / "deviceplugin-operator"


@dataclasses.dataclass(frozen=True)
class Binaries:
    """Absolute paths of the built control-plane programs."""

    etcd: pathlib.Path
    kube_apiserver: pathlib.Path
    kube_controller_manager: pathlib.Path
    kube_scheduler: pathlib.Path
    kwok: pathlib.Path
    kwok_stages: pathlib.Path
    """YAML of the kwok Stages (node/fast, node heartbeat, pod/fast) that standalone kwok needs."""
    kubelet: pathlib.Path
    kube_proxy: pathlib.Path
    pause: pathlib.Path
    """The real node's sandbox program (sleeps until SIGTERM/SIGINT, reaps children)."""

    def kubernetes(self) -> dict[str, pathlib.Path]:
        """The Kubernetes commands by name."""
        return {
            "kube-apiserver": self.kube_apiserver,
            "kube-controller-manager": self.kube_controller_manager,
            "kube-scheduler": self.kube_scheduler,
            "kubelet": self.kubelet,
            "kube-proxy": self.kube_proxy,
        }

    def all(self) -> list[pathlib.Path]:
        return [
            self.etcd,
            *self.kubernetes().values(),
            self.kwok,
            self.kwok_stages,
            self.pause,
        ]


def expected_binaries() -> Binaries:
    """Where the binaries live once built; nothing is checked or built."""
    root = cache_root() / "bin"
    k8s = root / f"kubernetes-{KUBERNETES_VERSION}"
    kwok = root / f"kwok-{KWOK_VERSION}"
    return Binaries(
        etcd=root / f"etcd-{ETCD_VERSION}" / "etcd",
        kube_apiserver=k8s / "kube-apiserver",
        kube_controller_manager=k8s / "kube-controller-manager",
        kube_scheduler=k8s / "kube-scheduler",
        kwok=kwok / "kwok",
        kwok_stages=kwok / "stages.yaml",
        kubelet=k8s / "kubelet",
        kube_proxy=k8s / "kube-proxy",
        pause=program_path("pause"),
    )


def _program_source(name: str) -> bytes:
    return (importlib.resources.files("localcluster") / "programs" / f"{name}.go").read_bytes()


def program_path(name: str) -> pathlib.Path:
    """Where the static program ``name`` (one of ``PROGRAMS``) lives once built: keyed by a
    hash of its source, so an edited program is rebuilt."""
    digest = hashlib.sha256(_program_source(name)).hexdigest()[:12]
    return cache_root() / "bin" / f"programs-{digest}" / name


def _go() -> str:
    go = shutil.which("go")
    if go is None:
        raise errors.BuildError(
            "The Go toolchain was not found on PATH: install Go >= 1.26 "
            "(the control-plane binaries are built from their Go modules)"
        )
    return go


def ensure_program(name: str, *, echo: bool = True) -> pathlib.Path:
    """The built static program ``name`` (``pause``, ``testserver``), built first if missing
    (standard library only: a few seconds, nothing downloaded)."""
    target = program_path(name)
    if not target.exists():
        _Builder(go=_go(), echo=echo).build_program(name, target)
    return target


def ensure_binaries(*, echo: bool = True) -> Binaries:
    """Return the cached binaries, building whichever are missing first."""
    wanted = expected_binaries()
    missing = [path for path in wanted.all() if not path.exists()]
    if not missing:
        return wanted
    builder = _Builder(go=_go(), echo=echo)
    if not wanted.etcd.exists():
        builder.build_etcd(wanted.etcd)
    commands = [name for name, path in wanted.kubernetes().items() if not path.exists()]
    if commands:
        builder.build_kubernetes(wanted.kube_apiserver.parent, commands)
    if not wanted.kwok.exists() or not wanted.kwok_stages.exists():
        builder.build_kwok(wanted.kwok.parent)
    if not wanted.pause.exists():
        builder.build_program("pause", wanted.pause)
    return wanted


@dataclasses.dataclass
class _Builder:
    go: str
    echo: bool

    def _say(self, message: str) -> None:
        if self.echo:
            print(f"[localcluster] {message}", file=sys.stderr, flush=True)

    def _workdir(self, name: str) -> pathlib.Path:
        path = cache_root() / "build" / name
        path.mkdir(parents=True, exist_ok=True)
        return path

    def _run(self, argv: list[str], *, cwd: pathlib.Path, log: pathlib.Path, what: str) -> str:
        env = dict(os.environ, CGO_ENABLED="0", GOFLAGS="-mod=mod")
        with log.open("a") as sink:
            sink.write(f"\n$ {' '.join(argv)}\n")
            sink.flush()
            completed = subprocess.run(
                argv,
                cwd=cwd,
                env=env,
                stdout=subprocess.PIPE,
                stderr=sink,
                text=True,
                check=False,
            )
            sink.write(completed.stdout)
        if completed.returncode != 0:
            tail = log.read_text(errors="replace").strip().splitlines()[-5:]
            raise errors.BuildError(
                f"{what} failed (exit {completed.returncode}); see {log}:\n  " + "\n  ".join(tail)
            )
        return completed.stdout

    def _init_module(self, workdir: pathlib.Path, name: str, log: pathlib.Path) -> None:
        if not (workdir / "go.mod").exists():
            self._run([self.go, "mod", "init", name], cwd=workdir, log=log, what="go mod init")

    def build_etcd(self, target: pathlib.Path) -> None:
        workdir = self._workdir(f"etcd-{ETCD_VERSION}")
        log = workdir / "build.log"
        self._say(f"Building etcd {ETCD_VERSION} (first time only, about a minute); log: {log}")
        started = time.monotonic()
        self._init_module(workdir, "testbin.local/etcd", log)
        module = f"go.etcd.io/etcd/server/v3@{ETCD_VERSION}"
        self._run([self.go, "get", "-tool", module], cwd=workdir, log=log, what="Downloading etcd")
        target.parent.mkdir(parents=True, exist_ok=True)
        self._run(
            [
                self.go,
                "build",
                "-trimpath",
                "-ldflags",
                "-s -w",
                "-o",
                str(target) + ".tmp",
                "go.etcd.io/etcd/server/v3",
            ],
            cwd=workdir,
            log=log,
            what="Building etcd",
        )
        os.replace(str(target) + ".tmp", target)
        self._say(f"Built etcd in {time.monotonic() - started:.0f}s")

    def build_kubernetes(self, target_dir: pathlib.Path, commands: list[str]) -> None:
        """Build ``commands`` (a subset of ``KUBERNETES_COMMANDS``) into ``target_dir``."""
        workdir = self._workdir(f"kubernetes-{KUBERNETES_VERSION}")
        log = workdir / "build.log"
        self._say(
            f"Building {', '.join(commands)} {KUBERNETES_VERSION} (first time only: downloads "
            f"~1 GiB of Go modules and compiles for about 5 minutes on 2 cores); log: {log}"
        )
        started = time.monotonic()
        self._init_module(workdir, "testbin.local/kubernetes", log)
        info = json.loads(
            self._run(
                [self.go, "mod", "download", "-json", f"k8s.io/kubernetes@{KUBERNETES_VERSION}"],
                cwd=workdir,
                log=log,
                what="Downloading the k8s.io/kubernetes go.mod",
            )
        )
        staging = "v0." + KUBERNETES_VERSION.removeprefix("v1.")
        # k8s.io/kubernetes requires its staging modules at v0.0.0 and replaces them with local
        # paths, which Go ignores in a dependency: repeat each replace at the published version.
        for module in _staging_modules(pathlib.Path(info["GoMod"]).read_text()):
            self._run(
                [self.go, "mod", "edit", f"-replace={module}={module}@{staging}"],
                cwd=workdir,
                log=log,
                what="go mod edit",
            )
        self._say("Downloading Kubernetes modules")
        self._run(
            [
                self.go,
                "get",
                "-tool",
                *(
                    f"k8s.io/kubernetes/cmd/{cmd}@{KUBERNETES_VERSION}"
                    for cmd in KUBERNETES_COMMANDS
                ),
            ],
            cwd=workdir,
            log=log,
            what="Downloading Kubernetes modules",
        )
        minor = KUBERNETES_VERSION.split(".")[1]
        ldflags = ["-s", "-w"]
        for package in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version"):
            ldflags += [
                f"-X {package}.gitVersion={KUBERNETES_VERSION}",
                f"-X {package}.gitMajor=1",
                f"-X {package}.gitMinor={minor}",
                f"-X {package}.gitTreeState=clean",
            ]
        staging_dir = workdir / "out"
        staging_dir.mkdir(exist_ok=True)
        for command in commands:
            self._say(f"Compiling {command}")
            self._run(
                [
                    self.go,
                    "build",
                    "-trimpath",
                    "-ldflags",
                    " ".join(ldflags),
                    "-o",
                    str(staging_dir / command),
                    f"k8s.io/kubernetes/cmd/{command}",
                ],
                cwd=workdir,
                log=log,
                what=f"Building {command}",
            )
        target_dir.mkdir(parents=True, exist_ok=True)
        for command in commands:
            os.replace(staging_dir / command, target_dir / command)
        self._say(f"Built Kubernetes components in {time.monotonic() - started:.0f}s")

    def build_kwok(self, target_dir: pathlib.Path) -> None:
        workdir = self._workdir(f"kwok-{KWOK_VERSION}")
        log = workdir / "build.log"
        self._say(f"Building kwok {KWOK_VERSION} (first time only, about a minute); log: {log}")
        started = time.monotonic()
        self._init_module(workdir, "testbin.local/kwok", log)
        self._run(
            [self.go, "get", "-tool", f"sigs.k8s.io/kwok/cmd/kwok@{KWOK_VERSION}"],
            cwd=workdir,
            log=log,
            what="Downloading kwok",
        )
        target_dir.mkdir(parents=True, exist_ok=True)
        self._run(
            [
                self.go,
                "build",
                "-trimpath",
                "-ldflags",
                "-s -w",
                "-o",
                str(target_dir / "kwok.tmp"),
                "sigs.k8s.io/kwok/cmd/kwok",
            ],
            cwd=workdir,
            log=log,
            what="Building kwok",
        )
        info = json.loads(
            self._run(
                [self.go, "mod", "download", "-json", f"sigs.k8s.io/kwok@{KWOK_VERSION}"],
                cwd=workdir,
                log=log,
                what="Locating the kwok module",
            )
        )
        (target_dir / "stages.yaml").write_text(_kwok_stages(pathlib.Path(info["Dir"])))
        os.replace(target_dir / "kwok.tmp", target_dir / "kwok")
        self._say(f"Built kwok in {time.monotonic() - started:.0f}s")

    def build_program(self, name: str, target: pathlib.Path) -> None:
        """Build ``programs/<name>.go`` statically (CGO off) in a module of its own."""
        workdir = self._workdir(f"program-{name}")
        log = workdir / "build.log"
        self._say(f"Building the static program {name}; log: {log}")
        started = time.monotonic()
        (workdir / "go.mod").write_text(f"module localcluster.local/{name}\n\ngo 1.24\n")
        (workdir / "main.go").write_bytes(_program_source(name))
        target.parent.mkdir(parents=True, exist_ok=True)
        self._run(
            [
                self.go,
                "build",
                "-trimpath",
                "-ldflags",
                "-s -w",
                "-o",
                str(target) + ".tmp",
                ".",
            ],
            cwd=workdir,
            log=log,
            what=f"Building {name}",
        )
        os.replace(str(target) + ".tmp", target)
        self._say(f"Built {name} in {time.monotonic() - started:.1f}s")


def _staging_modules(gomod: str) -> list[str]:
    """Modules that k8s.io/kubernetes replaces with ``./staging/src/...`` paths."""
    pattern = re.compile(r"^\s*(?:replace\s+)?(\S+)\s+=>\s+\./staging/src/", re.MULTILINE)
    return sorted(set(pattern.findall(gomod)))


_STAGE_DIRS = ("node/fast", "node/heartbeat-with-lease", "pod/fast")


def _kwok_stages(module_dir: pathlib.Path) -> str:
    """Concatenate the Stage objects kwokctl would inject for a standalone kwok."""
    documents: list[str] = []
    for stage_dir in _STAGE_DIRS:
        directory = module_dir / "kustomize" / "stage" / stage_dir
        for path in sorted(directory.glob("*.yaml")):
            if path.name == "kustomization.yaml":
                continue
            documents.append(path.read_text().strip())
    if not documents:
        raise errors.BuildError(
            f"No kwok stage definitions found under {module_dir}/kustomize/stage"
        )
    return "\n---\n".join(documents) + "\n"
