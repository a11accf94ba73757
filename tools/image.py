"""Build the operator image, and a docker-archive of it, with docker, podman or buildah.

    python tools/image.py build [--image REF] [--engine ENGINE] [--base REF]   # prints the id
    python tools/image.py save [--image REF] [--output PATH]    # prints the archive's path
    python tools/image.py podman ARGS...   # podman with this tool's private configuration

``make image`` runs ``build``; REF defaults to its ``IMAGE``,
``docker.io/intel/intel-deviceplugin-operator-py:devel``. The engine is ``--engine`` or
``$IMAGE_ENGINE`` if given, else the first that works of: docker (only if its daemon answers),
podman, buildah. None of them: a one-line error naming the packages (``tools/system-packages.sh``
installs them on Debian/Ubuntu).

Base image, always pinned: the Dockerfile's ``ARG PYTHON_IMAGE``, ``python:3.11-slim-bookworm``
by the digest of its manifest list (the engine checks the content against it when pulling; the
tool also checks the image's RepoDigests), when it is present or can be pulled (one attempt, at
most 30 s); otherwise a local base with the same Python from Debian packages, made once with
``mmdebstrap --variant=minbase`` (bookworm: python3, python3-venv, python3-pip,
python-is-python3, ca-certificates; no documentation, manuals or locales, like
debian:bookworm-slim; ``$DEBIAN_MIRROR`` replaces deb.debian.org) and imported as
``localhost/deviceplugin-operator-base:bookworm-python3.11``, passed by its image id (the sha256
of its configuration, which names its layers by digest). ``--base REF`` is pinned the same way:
by the digest it carries, else by its image id. The pinned reference is passed as ``--build-arg
PYTHON_IMAGE=...`` and recorded in the labels ``org.opencontainers.image.base.name`` and
``org.opencontainers.image.base.digest``. The runtime dependencies come from
``requirements/image.lock`` with hashes (``tools/lock.py``). A base once present is used without
asking a registry again; to retry the pull, remove the local base (``python tools/image.py
podman rmi <it>``).

Cache: the image carries the label ``deviceplugin-operator.inputs``, a SHA-256 of what the build
reads (``Dockerfile``, ``.dockerignore``, the two lock files of ``requirements/``,
``pyproject.toml``, ``README.md``, every file of ``src/`` but bytecode and ``*.egg-info``) and
of the base image's id. ``build`` rebuilds only when the label differs from the current hash
(about 1 s otherwise) and removes the image it replaced. ``save`` writes ``podman save --format
docker-archive`` (``docker save``, ``buildah push docker-archive:``) of the up-to-date image, by
default to ``${XDG_CACHE_HOME:-~/.cache}/deviceplugin-operator/images/<REF with / and : as
_>.tar``, and rewrites it only when the image id differs from the one in ``<archive>.json``. A
containerd node imports it with ``ctr -n k8s.io images import <archive>``.

podman and buildah never read or write the user's own configuration or storage: they run with
``CONTAINERS_CONF``/``CONTAINERS_STORAGE_CONF`` pointing at files of this tool, storage under
``${XDG_CACHE_HOME:-~/.cache}/deviceplugin-operator/podman/``, ``cgroup_manager="cgroupfs"``,
``events_logger="file"`` and ``default_ulimits`` nofile=16384 and nproc=32768 (a higher default
than the hard limit makes every ``podman run`` fail without CAP_SYS_RESOURCE). Builds use the host
network (no bridge, no iptables rules) and ``--isolation chroot``, and mount during RUN steps
only (nothing of it enters the image): the host's CA bundle (pip may be behind an intercepting
proxy) and, when ``PIP_INDEX_URL``, ``PIP_EXTRA_INDEX_URL``, ``PIP_TRUSTED_HOST`` or
``PIP_DEFAULT_TIMEOUT`` are set, an ``/etc/pip.conf`` made of them. Proxy variables
(``HTTP(S)_PROXY``, ``NO_PROXY``) are passed as build arguments by every engine.

From Python (stdlib only; ``tools/`` is not a package)::

    sys.path.insert(0, str(repo / "tools")); import image
    image.build(image.DEFAULT_IMAGE)            # -> image id (str), builds only when stale
    image.save(image.DEFAULT_IMAGE)             # -> pathlib.Path of the docker-archive
    image.save(image.DEFAULT_IMAGE, path)       # same, written to path
    image.podman_environment()                  # -> env for running podman by hand

Both raise ``image.ImageError`` with a one-line message on failure.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import fcntl
import hashlib
import json
import os
import pathlib
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence

ROOT = pathlib.Path(__file__).resolve().parents[1]
DEFAULT_IMAGE = "docker.io/intel/intel-deviceplugin-operator-py:devel"
DOCKERFILE_BASE_ARG = "PYTHON_IMAGE"
LOCAL_BASE = "localhost/deviceplugin-operator-base:bookworm-python3.11"
LABEL = "deviceplugin-operator.inputs"
ENGINES = ("docker", "podman", "buildah")
PULL_TIMEOUT = 30.0
DOCKER_TIMEOUT = 10.0
# Bumped when the way the image is built changes without any input file changing.
RECIPE = "2"

# What the Dockerfile's builder copies; .dockerignore keeps everything else out of the context.
CONTEXT_FILES = (
    "Dockerfile",
    ".dockerignore",
    "requirements/image.lock",
    "requirements/build.lock",
    "pyproject.toml",
    "README.md",
)
CONTEXT_TREES = ("src",)
SKIPPED_DIRECTORIES = ("__pycache__",)
SKIPPED_SUFFIXES = (".pyc", ".pyo", ".pyd", ".egg-info")

BASE_PACKAGES = ("python3", "python3-venv", "python3-pip", "python-is-python3", "ca-certificates")
BASE_SUITE = "bookworm"
# Like debian:bookworm-slim: no documentation but the copyright files, no manuals or locales;
# /usr merged by mmdebstrap's hook instead of the usrmerge package (which pulls in perl).
BASE_DPKG_OPTIONS = (
    "path-exclude=/usr/share/doc/*",
    "path-include=/usr/share/doc/*/copyright",
    "path-exclude=/usr/share/man/*",
    "path-exclude=/usr/share/info/*",
    "path-exclude=/usr/share/locale/*",
)
MERGED_USR_HOOKS = pathlib.Path("/usr/share/mmdebstrap/hooks/merged-usr")
BASE_CHANGES = (
    "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "ENV LANG=C.UTF-8",
    'CMD ["python3"]',
)
HOST_CA = pathlib.Path("/etc/ssl/certs/ca-certificates.crt")
# Passed to the build when set: predefined build arguments of docker, podman and buildah,
# visible to RUN steps and kept out of the image's history.
PROXY_VARIABLES = (
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "http_proxy",
    "https_proxy",
    "no_proxy",
)
# pip's settings from the environment, as /etc/pip.conf of the RUN steps (podman and buildah).
PIP_SETTINGS = {
    "PIP_INDEX_URL": "index-url",
    "PIP_EXTRA_INDEX_URL": "extra-index-url",
    "PIP_TRUSTED_HOST": "trusted-host",
    "PIP_DEFAULT_TIMEOUT": "timeout",
}
INSTALL_HINT = (
    "install docker, podman or buildah (Debian/Ubuntu: sudo tools/system-packages.sh, "
    "or apt-get install podman buildah mmdebstrap)"
)


class ImageError(RuntimeError):
    """A one-line reason why the image could not be built or saved."""


DIGEST = re.compile(r"@(sha256:[0-9a-f]{64})$")
BASE_NAME_LABEL = "org.opencontainers.image.base.name"
BASE_DIGEST_LABEL = "org.opencontainers.image.base.digest"


def dockerfile_base(root: pathlib.Path = ROOT) -> str:
    """The default of the Dockerfile's ``ARG PYTHON_IMAGE``: a reference with a digest."""
    text = (root / "Dockerfile").read_text()
    match = re.search(rf"^ARG {DOCKERFILE_BASE_ARG}=(\S+)\s*$", text, re.MULTILINE)
    if match is None:
        raise ImageError(f"the Dockerfile has no ARG {DOCKERFILE_BASE_ARG}=<image>@sha256:<digest>")
    if DIGEST.search(match[1]) is None:
        raise ImageError(
            f"the Dockerfile's {DOCKERFILE_BASE_ARG} {match[1]} is not pinned: add @sha256:<digest>"
        )
    return match[1]


UPSTREAM_BASE = dockerfile_base()
"""The public base, pinned: ``docker.io/library/python:3.11-slim-bookworm@sha256:...``."""


def _say(message: str) -> None:
    print(f"[image] {message}", file=sys.stderr, flush=True)


def cache_root() -> pathlib.Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(pathlib.Path.home() / ".cache")
    return pathlib.Path(base) / "deviceplugin-operator"


def default_archive(image: str = DEFAULT_IMAGE) -> pathlib.Path:
    """Where ``save`` writes the docker-archive of ``image`` when no path is given."""
    return cache_root() / "images" / (re.sub(r"[^A-Za-z0-9_.-]+", "_", image) + ".tar")


# --- the hash of the inputs ----------------------------------------------------------------


def context_files(root: pathlib.Path = ROOT) -> list[pathlib.Path]:
    """The files the build reads, sorted: the fixed ones, then every file of ``src/``."""
    files = [root / name for name in CONTEXT_FILES]
    for tree in CONTEXT_TREES:
        for directory, subdirectories, names in os.walk(root / tree):
            subdirectories[:] = sorted(
                name
                for name in subdirectories
                if name not in SKIPPED_DIRECTORIES and not name.endswith(SKIPPED_SUFFIXES)
            )
            files.extend(
                pathlib.Path(directory) / name
                for name in sorted(names)
                if not name.endswith(SKIPPED_SUFFIXES)
            )
    return files


def inputs_hash(base_id: str, root: pathlib.Path = ROOT) -> str:
    """SHA-256 over the build inputs (path, executable bit, content) and the base image id."""
    digest = hashlib.sha256(f"recipe {RECIPE}\nbase {base_id}\n".encode())
    for path in context_files(root):
        relative = path.relative_to(root).as_posix()
        try:
            content = path.read_bytes()
            executable = os.access(path, os.X_OK)
        except FileNotFoundError:
            digest.update(f"missing {relative}\n".encode())
            continue
        digest.update(f"file {relative} {int(executable)} {len(content)}\n".encode())
        digest.update(content)
    return digest.hexdigest()


# --- podman's private configuration --------------------------------------------------------


def _runtime_root() -> pathlib.Path:
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime:
        return pathlib.Path(runtime) / "deviceplugin-operator"
    return pathlib.Path(tempfile.gettempdir()) / f"deviceplugin-operator-{os.getuid()}"


def _toml_string(value: str | pathlib.Path) -> str:
    return json.dumps(str(value))


def podman_config(
    storage: pathlib.Path, runtime: pathlib.Path, *, rootless: bool, fuse_overlayfs: str | None
) -> tuple[str, str]:
    """(containers.conf, storage.conf): storage under ``storage``, run state under ``runtime``."""
    containers = "\n".join(
        [
            "# Written by tools/image.py: podman/buildah for the operator image only.",
            "[containers]",
            'default_ulimits = ["nofile=16384:16384", "nproc=32768:32768"]',
            "",
            "[engine]",
            'cgroup_manager = "cgroupfs"',
            'events_logger = "file"',
            f"events_logfile_path = {_toml_string(runtime / 'events.log')}",
            f"tmp_dir = {_toml_string(runtime / 'libpod')}",
            "",
            "[network]",
            f"network_config_dir = {_toml_string(storage / 'networks')}",
            "",
        ]
    )
    lines = [
        "# Written by tools/image.py: podman/buildah for the operator image only.",
        "[storage]",
        'driver = "overlay"',
        f"graphroot = {_toml_string(storage / 'storage')}",
        f"runroot = {_toml_string(runtime / 'run')}",
    ]
    if rootless and fuse_overlayfs:
        lines += [
            "",
            "[storage.options.overlay]",
            f"mount_program = {_toml_string(fuse_overlayfs)}",
        ]
    return containers, "\n".join([*lines, ""])


def _write_if_changed(path: pathlib.Path, text: str) -> None:
    if not path.exists() or path.read_text() != text:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def podman_environment(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """``base`` (default: os.environ) with CONTAINERS_CONF/CONTAINERS_STORAGE_CONF of this tool."""
    storage = cache_root() / "podman"
    runtime = _runtime_root() / "podman"
    containers, storage_conf = podman_config(
        storage,
        runtime,
        rootless=os.geteuid() != 0,
        fuse_overlayfs=shutil.which("fuse-overlayfs"),
    )
    _write_if_changed(storage / "containers.conf", containers)
    _write_if_changed(storage / "storage.conf", storage_conf)
    env = dict(os.environ if base is None else base)
    env["CONTAINERS_CONF"] = str(storage / "containers.conf")
    env["CONTAINERS_STORAGE_CONF"] = str(storage / "storage.conf")
    return env


# --- engines ---------------------------------------------------------------------------------


def _docker_answers(docker: str) -> bool:
    try:
        completed = subprocess.run(
            [docker, "info", "--format", "{{.ServerVersion}}"],
            capture_output=True,
            text=True,
            timeout=DOCKER_TIMEOUT,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return completed.returncode == 0 and "podman" not in completed.stdout.lower()


def select_engine(
    requested: str | None = None,
    *,
    which: Callable[[str], str | None] = shutil.which,
    docker_answers: Callable[[str], bool] = _docker_answers,
) -> tuple[str, str]:
    """(name, path) of the engine: ``requested``, else docker if it answers, podman, buildah."""
    if requested:
        if requested not in ENGINES:
            raise ImageError(f"unknown engine {requested!r}: one of {', '.join(ENGINES)}")
        path = which(requested)
        if path is None:
            raise ImageError(f"{requested} is not installed: {INSTALL_HINT}")
        return requested, path
    docker = which("docker")
    if docker is not None and docker_answers(docker):
        return "docker", docker
    for name in ("podman", "buildah"):
        path = which(name)
        if path is not None:
            return name, path
    found = " (docker is installed but its daemon does not answer)" if docker else ""
    raise ImageError(f"no container engine{found}: {INSTALL_HINT}")


@dataclasses.dataclass(frozen=True)
class ImageInfo:
    id: str
    labels: Mapping[str, str]
    size: int
    digests: tuple[str, ...] = ()
    """RepoDigests: ``name@sha256:...`` of the manifests the image was pulled by."""


@dataclasses.dataclass(frozen=True)
class Base:
    """The base image of a build, and how the Dockerfile's FROM gets it pinned."""

    ref: str
    """The reference it was found or pulled by."""
    id: str
    pinned: str
    """``--build-arg PYTHON_IMAGE``: ``ref`` when it carries a digest, else the image id."""

    @property
    def labels(self) -> dict[str, str]:
        match = DIGEST.search(self.pinned)
        name = DIGEST.sub("", self.ref)
        return {
            BASE_NAME_LABEL: name,
            BASE_DIGEST_LABEL: match[1] if match else f"sha256:{self.id}",
        }


@dataclasses.dataclass(frozen=True)
class Engine:
    """One container engine: how to inspect, pull, import, build, save and remove images."""

    name: str
    command: str
    env: Mapping[str, str]

    @classmethod
    def select(cls, requested: str | None = None) -> Engine:
        name, command = select_engine(requested or os.environ.get("IMAGE_ENGINE") or None)
        env = dict(os.environ) if name == "docker" else podman_environment()
        return cls(name, command, env)

    def run(
        self,
        *args: str,
        capture: bool = False,
        check: bool = True,
        timeout: float | None = None,
    ) -> subprocess.CompletedProcess[str]:
        command = [self.command, *args]
        try:
            completed = subprocess.run(
                command,
                env=dict(self.env),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE if capture else 2,
                stderr=subprocess.PIPE if capture else None,
                text=True,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired as error:
            raise ImageError(f"{self.name} {args[0]} took more than {timeout:.0f}s") from error
        if check and completed.returncode != 0:
            detail = (completed.stderr or "").strip().splitlines()
            reason = detail[-1] if detail else f"exit status {completed.returncode}, output above"
            raise ImageError(f"{self.name} {args[0]} failed: {reason}")
        return completed

    def inspect(self, ref: str) -> ImageInfo | None:
        """The local image ``ref``, or None when it is not there."""
        if self.name == "buildah":
            completed = self.run("inspect", "--type", "image", ref, capture=True, check=False)
            if completed.returncode != 0:
                return None
            data = json.loads(completed.stdout)
            labels = (data.get("OCIv1") or {}).get("config", {}).get("Labels") or {}
            return ImageInfo(data["FromImageID"], labels, 0)
        completed = self.run("image", "inspect", ref, capture=True, check=False)
        if completed.returncode != 0:
            return None
        (data,) = json.loads(completed.stdout)
        labels = (data.get("Config") or {}).get("Labels") or {}
        return ImageInfo(
            data["Id"].removeprefix("sha256:"),
            labels,
            int(data.get("Size") or 0),
            tuple(data.get("RepoDigests") or ()),
        )

    def pull(self, ref: str, timeout: float = PULL_TIMEOUT) -> str | None:
        """None when ``ref`` was pulled, else the reason it was not (one line)."""
        try:
            completed = self.run("pull", ref, capture=True, check=False, timeout=timeout)
        except ImageError as error:
            return str(error)
        if completed.returncode == 0:
            return None
        lines = completed.stderr.strip().splitlines()
        return lines[-1] if lines else f"exit status {completed.returncode}"

    def import_rootfs(self, tarball: pathlib.Path, ref: str) -> None:
        if self.name == "buildah":
            container = self.run("from", "scratch", capture=True).stdout.strip()
            try:
                self.run("add", container, str(tarball), "/")
                config: list[str] = []
                for change in BASE_CHANGES:
                    key, _, value = change.partition(" ")
                    config += ["--env", value] if key == "ENV" else ["--cmd", value]
                self.run("config", *config, container)
                self.run("commit", container, ref)
            finally:
                self.run("rm", container, check=False, capture=True)
            return
        changes = [item for change in BASE_CHANGES for item in ("--change", change)]
        self.run("import", *changes, str(tarball), ref, capture=True)

    def build_command(
        self,
        image: str,
        root: pathlib.Path,
        build_args: Mapping[str, str],
        labels: Mapping[str, str],
        pip_conf: pathlib.Path | None = None,
    ) -> list[str]:
        """The engine's arguments that build ``image`` from ``root``'s Dockerfile."""
        args = ["build", "--network", "host", "--file", str(root / "Dockerfile"), "--tag", image]
        if self.name != "docker":
            args += ["--isolation", "chroot", "--pull=never", "--layers=false"]
            if HOST_CA.is_file():
                args += ["--volume", f"{HOST_CA}:{HOST_CA}:ro"]
            if pip_conf is not None:
                args += ["--volume", f"{pip_conf}:/etc/pip.conf:ro"]
        for key, value in build_args.items():
            args += ["--build-arg", f"{key}={value}"]
        for key, value in labels.items():
            args += ["--label", f"{key}={value}"]
        return [*args, str(root)]

    def save(self, ref: str, path: pathlib.Path) -> None:
        if self.name == "docker":
            self.run("save", "--output", str(path), ref, capture=True)
        elif self.name == "podman":
            self.run("save", "--format", "docker-archive", "--output", str(path), ref, capture=True)
        else:
            self.run("push", ref, f"docker-archive:{path}:{ref}", capture=True)

    def remove(self, image_id: str) -> None:
        self.run("rmi", image_id, capture=True, check=False)


# --- build and save -----------------------------------------------------------------------

_lock_depth = 0


@contextlib.contextmanager
def _locked() -> Iterator[None]:
    """One build or save at a time per cache directory (reentrant within this process)."""
    global _lock_depth  # noqa: PLW0603
    if _lock_depth:
        _lock_depth += 1
        try:
            yield
        finally:
            _lock_depth -= 1
        return
    path = cache_root() / "image.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        _lock_depth = 1
        try:
            yield
        finally:
            _lock_depth = 0
            fcntl.flock(handle, fcntl.LOCK_UN)


def make_local_base(engine: Engine, ref: str = LOCAL_BASE) -> None:
    """A Debian bookworm base with python3 (3.11), imported as ``ref``."""
    mmdebstrap = shutil.which("mmdebstrap")
    if mmdebstrap is None:
        raise ImageError(
            f"{UPSTREAM_BASE} cannot be pulled and mmdebstrap is not installed to make a local "
            "base: sudo tools/system-packages.sh (or apt-get install mmdebstrap)"
        )
    mode = "root" if os.geteuid() == 0 else "unshare"
    mirror = os.environ.get("DEBIAN_MIRROR")
    directory = cache_root() / "podman"
    directory.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    _say(f"making the local base {ref} with mmdebstrap (once, ~30 s)")
    with tempfile.TemporaryDirectory(dir=directory, prefix="base-") as temporary:
        tarball = pathlib.Path(temporary) / "base.tar"
        command = [
            mmdebstrap,
            f"--mode={mode}",
            "--variant=minbase",
            "--quiet",
            f"--include={','.join(BASE_PACKAGES)}",
            *(f"--dpkgopt={option}" for option in BASE_DPKG_OPTIONS),
            *([f"--hook-dir={MERGED_USR_HOOKS}"] if MERGED_USR_HOOKS.is_dir() else []),
            BASE_SUITE,
            str(tarball),
            *([mirror] if mirror else []),
        ]
        completed = subprocess.run(
            command, stdin=subprocess.DEVNULL, capture_output=True, text=True, check=False
        )
        if completed.returncode != 0:
            lines = completed.stderr.strip().splitlines()
            raise ImageError(f"mmdebstrap failed: {lines[-1] if lines else completed.returncode}")
        engine.import_rootfs(tarball, ref)
    _say(f"made {ref} in {time.monotonic() - started:.0f}s")


def _pinned(ref: str, info: ImageInfo) -> Base:
    """``ref`` as the build's base: by its digest, checked against what the engine holds, or
    by its image id when ``ref`` has none."""
    match = DIGEST.search(ref)
    if match is None:
        return Base(ref, info.id, info.id)
    if info.digests and not any(digest.endswith(f"@{match[1]}") for digest in info.digests):
        raise ImageError(
            f"base image {ref} is present but its digests are {', '.join(info.digests)}: "
            f"remove it (python tools/image.py podman rmi {info.id[:12]}) and build again"
        )
    return Base(ref, info.id, ref)


def ensure_base(engine: Engine, requested: str | None = None) -> Base:
    """The base image: ``requested``, the Dockerfile's pinned python base or the local base."""
    if requested:
        info = engine.inspect(requested)
        if info is None:
            reason = engine.pull(requested)
            info = engine.inspect(requested)
            if info is None:
                raise ImageError(f"base image {requested} is not present and not pulled: {reason}")
        return _pinned(requested, info)
    for ref in (UPSTREAM_BASE, LOCAL_BASE):
        info = engine.inspect(ref)
        if info is not None:
            return _pinned(ref, info)
    _say(f"pulling {UPSTREAM_BASE} (one attempt, at most {PULL_TIMEOUT:.0f}s)")
    reason = engine.pull(UPSTREAM_BASE)
    if reason is None and (info := engine.inspect(UPSTREAM_BASE)) is not None:
        return _pinned(UPSTREAM_BASE, info)
    _say(f"cannot pull {UPSTREAM_BASE}: {reason}")
    make_local_base(engine)
    info = engine.inspect(LOCAL_BASE)
    if info is None:
        raise ImageError(f"the local base {LOCAL_BASE} was imported but is not there")
    return _pinned(LOCAL_BASE, info)


def build_arguments(base: str, env: Mapping[str, str]) -> dict[str, str]:
    """The ``--build-arg`` values: the base image and the proxy variables that are set."""
    arguments = {"PYTHON_IMAGE": base}
    arguments.update({name: env[name] for name in PROXY_VARIABLES if env.get(name)})
    return arguments


def pip_config(env: Mapping[str, str]) -> str | None:
    """An /etc/pip.conf with the PIP_* settings of ``env``, or None when none is set."""
    lines = [f"{key} = {env[name]}" for name, key in PIP_SETTINGS.items() if env.get(name)]
    return "\n".join(["[global]", *lines, ""]) if lines else None


@dataclasses.dataclass(frozen=True)
class Built:
    engine: Engine
    id: str
    inputs: str


def _build(image: str, engine: Engine, base: str | None, root: pathlib.Path, force: bool) -> Built:
    chosen = ensure_base(engine, base)
    digest = inputs_hash(chosen.id, root)
    current = engine.inspect(image)
    if not force and current is not None and current.labels.get(LABEL) == digest:
        _say(f"{image} is up to date (inputs {digest[:12]}, {engine.name})")
        return Built(engine, current.id, digest)
    _say(f"building {image} with {engine.name} on {chosen.pinned} (inputs {digest[:12]})")
    started = time.monotonic()
    pip_conf = None
    if (settings := pip_config(os.environ)) is not None and engine.name != "docker":
        pip_conf = cache_root() / "podman" / "pip.conf"
        _write_if_changed(pip_conf, settings)
    arguments = build_arguments(chosen.pinned, os.environ)
    labels = {LABEL: digest, **chosen.labels}
    engine.run(*engine.build_command(image, root, arguments, labels, pip_conf))
    built = engine.inspect(image)
    if built is None:
        raise ImageError(f"{engine.name} build finished but {image} is not there")
    if current is not None and current.id != built.id:
        engine.remove(current.id)
    size = f", {built.size / 1e6:.0f} MB" if built.size else ""
    _say(f"built {image} in {time.monotonic() - started:.0f}s ({built.id[:12]}{size})")
    return Built(engine, built.id, digest)


def build(
    image: str = DEFAULT_IMAGE,
    *,
    engine: str | None = None,
    base: str | None = None,
    root: pathlib.Path = ROOT,
    force: bool = False,
) -> str:
    """Build ``image`` unless it is up to date; its id."""
    with _locked():
        return _build(image, Engine.select(engine), base, root, force).id


def save(
    image: str = DEFAULT_IMAGE,
    path: pathlib.Path | str | None = None,
    *,
    engine: str | None = None,
    base: str | None = None,
    root: pathlib.Path = ROOT,
) -> pathlib.Path:
    """A docker-archive of the up-to-date ``image`` at ``path`` (default: ``default_archive``)."""
    target = pathlib.Path(path) if path is not None else default_archive(image)
    stamp = target.with_name(target.name + ".json")
    with _locked():
        built = _build(image, Engine.select(engine), base, root, force=False)
        expected = {"image": image, "id": built.id, "inputs": built.inputs}
        with contextlib.suppress(FileNotFoundError, ValueError):
            if target.is_file() and json.loads(stamp.read_text()) == expected:
                _say(f"{target} is up to date")
                return target
        target.parent.mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        partial = target.with_name(f".{target.name}.{os.getpid()}.partial")
        partial.unlink(missing_ok=True)
        try:
            built.engine.save(image, partial)
            stamp.unlink(missing_ok=True)
            partial.replace(target)
        finally:
            partial.unlink(missing_ok=True)
        stamp.write_text(json.dumps(expected) + "\n")
        size = target.stat().st_size / 1e6
        _say(f"saved {image} to {target} in {time.monotonic() - started:.0f}s ({size:.0f} MB)")
        return target


# --- command line --------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tools/image.py", description=__doc__.split("\n", 1)[0] if __doc__ else None
    )
    commands = parser.add_subparsers(dest="command", required=True)
    for name, text in (
        ("build", "build the image unless it is up to date; print its id"),
        ("save", "write a docker-archive of the up-to-date image; print its path"),
    ):
        command = commands.add_parser(name, help=text)
        command.add_argument("--image", default=DEFAULT_IMAGE, help="default: %(default)s")
        command.add_argument(
            "--engine", choices=ENGINES, help="default: $IMAGE_ENGINE or the first that works"
        )
        command.add_argument(
            "--base",
            help="base image instead of the Dockerfile's or the local one (pinned by its "
            "digest, else by its image id)",
        )
        command.add_argument(
            "--context", type=pathlib.Path, default=ROOT, help="default: %(default)s"
        )
        if name == "build":
            command.add_argument("--force", action="store_true", help="build even when up to date")
        else:
            command.add_argument(
                "--output", type=pathlib.Path, help=f"default: {default_archive()}"
            )
    podman = commands.add_parser("podman", help="run podman with this tool's configuration")
    podman.add_argument("args", nargs=argparse.REMAINDER)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "build":
            print(
                build(
                    args.image,
                    engine=args.engine,
                    base=args.base,
                    root=args.context.resolve(),
                    force=args.force,
                )
            )
        elif args.command == "save":
            print(
                save(
                    args.image,
                    args.output,
                    engine=args.engine,
                    base=args.base,
                    root=args.context.resolve(),
                )
            )
        else:
            podman = shutil.which("podman")
            if podman is None:
                raise ImageError(f"podman is not installed: {INSTALL_HINT}")
            return subprocess.run(
                [podman, *args.args], env=podman_environment(), check=False
            ).returncode
    except ImageError as error:
        print(f"tools/image.py: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
