"""The hashed lock files of the image and of CI's virtualenv, made from pyproject.toml.

    python tools/lock.py write    # re-resolve with pip-tools (needs the package index)
    python tools/lock.py check    # offline: fail when a lock is stale or incomplete

``requirements/image.lock``: ``[project] dependencies`` and everything they need, pinned, with
the sha256 of every file of each release (``pip-compile --generate-hashes``).
``requirements/build.lock``: ``[build-system] requires`` (setuptools), so that building the
project's own wheel in the image downloads nothing unhashed. The Dockerfile installs both with
``pip install --require-hashes --no-deps --only-binary=:all:``, ``make venv`` installs the
first the same way; pip then refuses any file whose hash is not in the lock.

``write`` runs pip-tools ``PIP_TOOLS`` from a virtualenv of its own under
``${XDG_CACHE_HOME:-~/.cache}/deviceplugin-operator/pip-tools`` (made once). ``check`` needs no
network: every pin of pyproject.toml is in the lock at that version, every entry has hashes,
and, read from the installed metadata of the running interpreter's environment (``make venv``
installs the lock there), the lock is closed under the dependencies of its entries (for the
image's platform: CPython 3.11 on Linux) and holds nothing no dependency needs. Run it with
``.venv/bin/python``; ``tests/unit/test_lock.py`` runs it in ``make test``.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.metadata
import os
import pathlib
import re
import subprocess
import sys
import tempfile
import tomllib
from collections.abc import Sequence

ROOT = pathlib.Path(__file__).resolve().parents[1]
IMAGE_LOCK = pathlib.PurePosixPath("requirements/image.lock")
BUILD_LOCK = pathlib.PurePosixPath("requirements/build.lock")
PIP_TOOLS = "pip-tools==7.7.0"
COMPILE_OPTIONS = (
    "--quiet",
    "--generate-hashes",
    "--strip-extras",
    "--no-emit-index-url",
    "--no-emit-find-links",
    "--no-header",
)
HEADER = (
    "# Made by `python tools/lock.py write` (pip-compile --generate-hashes) from {source}.\n"
    "# Do not edit: tests/unit/test_lock.py fails when it no longer matches pyproject.toml.\n"
)


class LockError(RuntimeError):
    """What is wrong with a lock, and the command that fixes it."""


def normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


@dataclasses.dataclass(frozen=True)
class Entry:
    name: str
    version: str
    hashes: tuple[str, ...]


def parse_lock(text: str) -> dict[str, Entry]:
    """The entries of a pip-compile lock, by normalised name."""
    logical = re.sub(r"\\\n", " ", text)
    entries: dict[str, Entry] = {}
    for raw in logical.splitlines():
        line = raw.split("#", 1)[0].strip() if not raw.lstrip().startswith("--") else ""
        if not line:
            continue
        requirement, *options = line.split()
        name, separator, version = requirement.partition("==")
        if not separator:
            raise LockError(f"{requirement!r} is not pinned with ==")
        hashes = tuple(
            option.removeprefix("--hash=") for option in options if option.startswith("--hash=")
        )
        entries[normalized(name)] = Entry(normalized(name), version.split(";")[0], hashes)
    return entries


def pins(requirements: Sequence[str], where: str) -> dict[str, str]:
    """``name==version`` requirements by normalised name; a LockError for any other form."""
    result = {}
    for requirement in requirements:
        match = re.fullmatch(r"\s*([A-Za-z0-9_.-]+)\s*==\s*([^\s;,]+)\s*", requirement)
        if match is None:
            raise LockError(f"{where}: {requirement!r} must be pinned as name==version")
        result[normalized(match[1])] = match[2]
    return result


def pyproject(root: pathlib.Path = ROOT) -> tuple[dict[str, str], dict[str, str]]:
    """(runtime pins, build pins) of pyproject.toml."""
    data = tomllib.loads((root / "pyproject.toml").read_text())
    return (
        pins(data["project"]["dependencies"], "pyproject.toml [project] dependencies"),
        pins(data["build-system"]["requires"], "pyproject.toml [build-system] requires"),
    )


def _requirements_of(name: str) -> set[str]:
    """Names this installed distribution needs on CPython 3.11 / Linux, without extras."""
    from packaging.requirements import Requirement  # noqa: PLC0415 - a dev tool's dependency

    environment = {
        "python_version": "3.11",
        "python_full_version": "3.11.0",
        "sys_platform": "linux",
        "platform_system": "Linux",
        "os_name": "posix",
        "platform_python_implementation": "CPython",
        "implementation_name": "cpython",
        "extra": "",
    }
    needed = set()
    for text in importlib.metadata.distribution(name).requires or []:
        requirement = Requirement(text)
        if requirement.marker is None or requirement.marker.evaluate(environment):
            needed.add(normalized(requirement.name))
    return needed


def check(root: pathlib.Path = ROOT) -> list[str]:
    """What is wrong with the locks (empty when they are current and complete)."""
    runtime, build = pyproject(root)
    problems: list[str] = []
    fix = "run `python tools/lock.py write`"
    for path, wanted in ((IMAGE_LOCK, runtime), (BUILD_LOCK, build)):
        try:
            entries = parse_lock((root / path).read_text())
        except FileNotFoundError:
            problems.append(f"{path} is missing: {fix}")
            continue
        except LockError as error:
            problems.append(f"{path}: {error}: {fix}")
            continue
        for name, version in sorted(wanted.items()):
            entry = entries.get(name)
            if entry is None or entry.version != version:
                found = f"{entry.version}" if entry else "nothing"
                problems.append(
                    f"{path}: pyproject.toml pins {name}=={version}, lock has {found}: {fix}"
                )
        problems += [
            f"{path}: {entry.name} has no --hash: {fix}"
            for entry in entries.values()
            if not entry.hashes
        ]
        if path != IMAGE_LOCK:
            continue
        # Closure and reachability from the installed metadata of the locked versions.
        reached: set[str] = set()
        todo = [name for name in wanted if name in entries]
        while todo:
            name = todo.pop()
            if name in reached:
                continue
            reached.add(name)
            try:
                installed = importlib.metadata.version(name)
            except importlib.metadata.PackageNotFoundError:
                problems.append(f"{name} of {path} is not installed here: run `make venv`")
                continue
            if installed != entries[name].version:
                problems.append(
                    f"{name} is {installed} here but {entries[name].version} in {path}: "
                    "run `make venv`"
                )
                continue
            for needed in sorted(_requirements_of(name)):
                if needed not in entries:
                    problems.append(f"{path}: {name} needs {needed}, which is not locked: {fix}")
                else:
                    todo.append(needed)
        problems += [
            f"{path}: {name} is locked but nothing in pyproject.toml needs it: {fix}"
            for name in sorted(set(entries) - reached)
        ]
    return problems


def _pip_compile() -> pathlib.Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(pathlib.Path.home() / ".cache")
    venv = pathlib.Path(base) / "deviceplugin-operator" / "pip-tools"
    tool = venv / "bin" / "pip-compile"
    stamp = venv / "installed"
    if not tool.exists() or not stamp.exists() or stamp.read_text() != PIP_TOOLS:
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
        subprocess.run([venv / "bin" / "pip", "install", "--quiet", PIP_TOOLS], check=True)
        stamp.write_text(PIP_TOOLS)
    return tool


def write(root: pathlib.Path = ROOT) -> None:
    """Re-resolve both locks (downloads from the package index)."""
    tool = _pip_compile()
    runtime, build = pyproject(root)
    with tempfile.TemporaryDirectory() as temporary:
        for path, wanted, source, extra in (
            (IMAGE_LOCK, runtime, "pyproject.toml [project] dependencies", ()),
            (BUILD_LOCK, build, "pyproject.toml [build-system] requires", ("--allow-unsafe",)),
        ):
            inputs = pathlib.Path(temporary, path.name + ".in")
            inputs.write_text("".join(f"{name}=={version}\n" for name, version in wanted.items()))
            output = pathlib.Path(temporary, path.name)
            subprocess.run(
                [tool, *COMPILE_OPTIONS, *extra, "--output-file", output.name, inputs.name],
                check=True,
                cwd=temporary,
            )
            body = output.read_text().replace(f"-r {inputs.name}", "pyproject.toml")
            target = root / path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(HEADER.format(source=source) + body)
            print(f"wrote {path}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tools/lock.py", description=__doc__.split("\n")[0])
    parser.add_argument("command", choices=("write", "check"))
    args = parser.parse_args(argv)
    if args.command == "write":
        write()
    problems = check()
    for problem in problems:
        print(f"tools/lock.py: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
