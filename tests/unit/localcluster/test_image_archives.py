"""One-layer docker-archives written without an image builder."""

from __future__ import annotations

import hashlib
import io
import json
import pathlib
import tarfile

from localcluster import images, realnode


def _member(archive: pathlib.Path, name: str) -> bytes:
    with tarfile.open(archive) as tar:
        member = tar.extractfile(name)
        assert member is not None
        return member.read()


def test_archive_has_the_docker_save_layout(tmp_path: pathlib.Path) -> None:
    program = tmp_path / "program"
    program.write_bytes(b"\x7fELF not really")
    archive = images.write_archive(
        tmp_path / "image.tar",
        "localhost/example/program:1",
        {"/bin/program": program},
        ["/bin/program", "serve"],
    )
    [entry] = json.loads(_member(archive, "manifest.json"))
    assert entry["RepoTags"] == ["localhost/example/program:1"]
    config_json = _member(archive, entry["Config"])
    assert entry["Config"] == hashlib.sha256(config_json).hexdigest() + ".json"
    config = json.loads(config_json)
    layer = _member(archive, entry["Layers"][0])
    assert config["rootfs"]["diff_ids"] == [f"sha256:{hashlib.sha256(layer).hexdigest()}"]
    assert config["config"]["Entrypoint"] == ["/bin/program", "serve"]
    assert config["os"] == "linux"
    assert config["architecture"] == images.architecture()

    with tarfile.open(fileobj=io.BytesIO(layer)) as inner:
        members = {member.name: member for member in inner.getmembers()}
    assert members["bin"].isdir()
    assert members["bin/program"].mode == 0o755
    assert members["bin/program"].uid == 0
    assert realnode.archive_references(archive) == ["localhost/example/program:1"]


def test_archives_are_reproducible(tmp_path: pathlib.Path) -> None:
    first = images.write_archive(tmp_path / "a.tar", "localhost/x:1", {"/x": b"x"}, ["/x"])
    second = images.write_archive(tmp_path / "b.tar", "localhost/x:1", {"/x": b"x"}, ["/x"])
    assert first.read_bytes() == second.read_bytes()
