"""One-layer container images for static programs, written as docker-archive tarballs.

``ctr -n k8s.io images import`` (and ``podman load``) accept the ``docker save`` layout: a tar
with ``manifest.json``, the image configuration ``<digest>.json`` and ``<digest>/layer.tar``.
That is all a static Go program needs (the real node's ``pause``, the tests' ``testserver``),
so no image builder is involved.
"""

from __future__ import annotations

import hashlib
import io
import json
import pathlib
import platform
import tarfile
from collections.abc import Mapping, Sequence

_ARCHITECTURES = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}
_EPOCH = "1970-01-01T00:00:00Z"


def architecture() -> str:
    """The OCI architecture of this machine (what ``go build`` targets by default)."""
    machine = platform.machine().lower()
    return _ARCHITECTURES.get(machine, machine)


def _add(archive: tarfile.TarFile, name: str, data: bytes, mode: int) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = mode
    info.mtime = 0
    archive.addfile(info, io.BytesIO(data))


def _add_directory(archive: tarfile.TarFile, name: str) -> None:
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE
    info.mode = 0o755
    info.mtime = 0
    archive.addfile(info)


def layer(files: Mapping[str, bytes | pathlib.Path]) -> bytes:
    """An uncompressed layer tar holding ``files`` (path in the image -> content or a file to
    copy), every file executable, parent directories included; deterministic."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as archive:
        directories: set[str] = set()
        for path in sorted(files):
            parts = path.strip("/").split("/")
            for depth in range(1, len(parts)):
                directory = "/".join(parts[:depth])
                if directory not in directories:
                    directories.add(directory)
                    _add_directory(archive, directory + "/")
            content = files[path]
            data = content.read_bytes() if isinstance(content, pathlib.Path) else content
            _add(archive, "/".join(parts), data, 0o755)
    return buffer.getvalue()


def write_archive(
    target: pathlib.Path,
    reference: str,
    files: Mapping[str, bytes | pathlib.Path],
    entrypoint: Sequence[str],
    *,
    user: str = "65532:65532",
    env: Sequence[str] = ("PATH=/",),
) -> pathlib.Path:
    """Write a docker-archive of a one-layer image named ``reference`` (e.g.
    ``localhost/localcluster/pause:1``) whose entrypoint is ``entrypoint``; returns ``target``."""
    layer_tar = layer(files)
    layer_digest = hashlib.sha256(layer_tar).hexdigest()
    config = {
        "architecture": architecture(),
        "os": "linux",
        "created": _EPOCH,
        "config": {
            "Entrypoint": list(entrypoint),
            "Env": list(env),
            "User": user,
            "WorkingDir": "/",
        },
        "rootfs": {"type": "layers", "diff_ids": [f"sha256:{layer_digest}"]},
        "history": [{"created": _EPOCH, "created_by": "localcluster.images.write_archive"}],
    }
    config_json = json.dumps(config, sort_keys=True).encode()
    config_name = hashlib.sha256(config_json).hexdigest() + ".json"
    manifest = [
        {
            "Config": config_name,
            "RepoTags": [reference],
            "Layers": [f"{layer_digest}/layer.tar"],
        }
    ]
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".tmp")
    with tarfile.open(partial, mode="w", format=tarfile.PAX_FORMAT) as archive:
        _add_directory(archive, f"{layer_digest}/")
        _add(archive, f"{layer_digest}/layer.tar", layer_tar, 0o644)
        _add(archive, config_name, config_json, 0o644)
        _add(archive, "manifest.json", json.dumps(manifest).encode(), 0o644)
    partial.replace(target)
    return target
