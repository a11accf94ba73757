"""Build the Go tools the tests use (helm, nfd-master, promtool, …) once, then reuse them.

A tool is either a released command of a Go module (``go install <package>@<version>`` from the
module proxy) or a small program of ours in ``tools/programs/<name>/`` (its own go.mod naming
the modules it needs; built with ``go build``). Binaries live outside the repository, in
``${XDG_CACHE_HOME:-~/.cache}/deviceplugin-operator/bin/<name>-<version>/<name>``, like the
control-plane binaries, so a fresh clone on the same machine never builds one twice; a program of
ours is keyed by a hash of its source instead of a version. Each build's log is written next to
its directory. Builds are atomic: a concurrent reader sees no binary or a whole one.

Each tool is defined beside its user (``tools/helm.py``'s ``TOOL``, …) and built with
``TOOL.ensure()``, from a test fixture or a make target; ``gotools.main(TOOL)`` is the command line
of such a module (build or reuse, print the binary's path).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence

PROGRAMS = pathlib.Path(__file__).resolve().parent / "programs"
"""Our own Go programs, one directory (with go.mod) each."""


def cache_root() -> pathlib.Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(pathlib.Path.home() / ".cache")
    return pathlib.Path(base) / "deviceplugin-operator"


def go_environment() -> dict[str, str]:
    """The environment every build runs with: modules from the proxy, static binaries."""
    env = dict(os.environ)
    env["GOFLAGS"] = " ".join(filter(None, [env.get("GOFLAGS", ""), "-mod=mod"]))
    env["CGO_ENABLED"] = "0"
    return env


def go_command() -> str:
    go = shutil.which("go")
    if go is None:
        raise RuntimeError("building the Go tools needs the go command (Go >= 1.24) on PATH")
    return go


def module_go_mod(module: str, version: str) -> str:
    """The go.mod of ``module@version`` (downloaded through the proxy, then cached by Go)."""
    downloaded = subprocess.run(
        [go_command(), "mod", "download", "-json", f"{module}@{version}"],
        env=go_environment(),
        capture_output=True,
        text=True,
        check=True,
    )
    return pathlib.Path(json.loads(downloaded.stdout)["GoMod"]).read_text()


@dataclasses.dataclass(frozen=True)
class Released:
    """A command released in a Go module: ``go install <package>@<version>``."""

    name: str
    package: str
    version: str
    ldflags: Callable[[], Sequence[str]] = lambda: ("-w", "-s")
    """Link flags, computed only when a build is needed (they may read the module's go.mod)."""
    tags: Sequence[str] = ()
    """Build tags, e.g. to leave out parts of a command the tests never use."""

    def binary(self) -> pathlib.Path:
        return cache_root() / "bin" / f"{self.name}-{self.version}" / self.name

    def ensure(self, *, echo: bool = True) -> pathlib.Path:
        """The binary, built first when it is not cached."""
        return ensure(self, echo=echo)


@dataclasses.dataclass(frozen=True)
class Program:
    """A Go program of ours in ``tools/programs/<name>/``, keyed by a hash of its source."""

    name: str

    @property
    def source(self) -> pathlib.Path:
        return PROGRAMS / self.name

    @property
    def version(self) -> str:
        digest = hashlib.sha256()
        for path in sorted(self.source.rglob("*")):
            if path.is_file():
                digest.update(str(path.relative_to(self.source)).encode())
                digest.update(path.read_bytes())
        return digest.hexdigest()[:12]

    def binary(self) -> pathlib.Path:
        return cache_root() / "bin" / f"{self.name}-{self.version}" / self.name

    def ensure(self, *, echo: bool = True) -> pathlib.Path:
        """The binary, built first when it is not cached."""
        return ensure(self, echo=echo)


Tool = Released | Program


def ensure(tool: Tool, *, echo: bool = True) -> pathlib.Path:
    """The tool's binary, built first when it is not cached."""
    target = tool.binary()
    if target.exists():
        return target
    go = go_command()
    env = go_environment()
    target.parent.mkdir(parents=True, exist_ok=True)
    log = target.parent.parent / f"{target.parent.name}.log"
    if echo:
        print(f"Building {tool.name} {tool.version} (log: {log})", file=sys.stderr)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(dir=target.parent) as scratch, log.open("w") as output:
        built = pathlib.Path(scratch) / tool.name
        if isinstance(tool, Released):
            env["GOBIN"] = scratch
            command = [
                go, "install", "-trimpath", "-ldflags", " ".join(tool.ldflags()),
                *(("-tags", ",".join(tool.tags)) if tool.tags else ()),
                f"{tool.package}@{tool.version}",
            ]  # fmt: skip
            cwd = None
        else:
            work = pathlib.Path(scratch) / "src"
            shutil.copytree(tool.source, work)
            tidy = subprocess.run(
                [go, "mod", "tidy"],
                cwd=work,
                env=env,
                stdout=output,
                stderr=subprocess.STDOUT,
                check=False,
            )
            if tidy.returncode != 0:
                raise RuntimeError(f"go mod tidy for {tool.name} failed; see {log}")
            command = [go, "build", "-trimpath", "-ldflags", "-w -s", "-o", str(built), "."]
            cwd = work
        completed = subprocess.run(
            command, cwd=cwd, env=env, stdout=output, stderr=subprocess.STDOUT, check=False
        )
        if completed.returncode != 0:
            raise RuntimeError(f"building {tool.name} {tool.version} failed; see {log}")
        os.replace(built, target)
    if echo:
        print(f"Built {tool.name} in {time.monotonic() - started:.0f}s", file=sys.stderr)
    return target


def main(tool: Tool) -> int:
    """A tool module's command line: build or reuse the tool, print its binary's path."""
    try:
        print(tool.ensure())
    except (RuntimeError, subprocess.CalledProcessError) as error:
        print(error, file=sys.stderr)
        return 1
    return 0
