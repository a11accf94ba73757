"""tools/image.py: the input hash, the engine choice, podman's private configuration, the
cache logic (with a fake engine), and one real build with whatever engine is installed."""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import subprocess
import time
import tomllib
from typing import Any

import pytest

import tool_modules

ROOT = pathlib.Path(__file__).resolve().parents[2]


image = tool_modules.load("image.py", "image_tool")


@pytest.fixture
def cache(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> pathlib.Path:
    """XDG_CACHE_HOME in tmp_path: the tool's files go there."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "run"))
    return tmp_path / "cache" / "deviceplugin-operator"


@pytest.fixture
def tree(tmp_path: pathlib.Path) -> pathlib.Path:
    """A small build context with everything the hash reads and some things it must not."""
    root = tmp_path / "repo"
    for name, text in {
        "Dockerfile": "FROM x\n",
        ".dockerignore": "*\n",
        "pyproject.toml": "[project]\n",
        "README.md": "# r\n",
        "src/pkg/__init__.py": "",
        "src/pkg/a.py": "A = 1\n",
        "tests/test_a.py": "",
        "docs/a.md": "",
    }.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


# --- the hash -------------------------------------------------------------------------------


def test_hash_changes_with_a_source_file(tree: pathlib.Path) -> None:
    before = image.inputs_hash("base", tree)
    (tree / "src/pkg/a.py").write_text("A = 2\n")
    assert image.inputs_hash("base", tree) != before


@pytest.mark.parametrize(
    "change",
    [
        "src/pkg/b.py",  # a new module
        "Dockerfile",
        ".dockerignore",
        "pyproject.toml",
        "README.md",
    ],
)
def test_hash_changes_with_every_input(tree: pathlib.Path, change: str) -> None:
    before = image.inputs_hash("base", tree)
    path = tree / change
    path.write_text((path.read_text() if path.exists() else "") + "# changed\n")
    assert image.inputs_hash("base", tree) != before


def test_hash_changes_with_the_base_image_and_a_mode(tree: pathlib.Path) -> None:
    before = image.inputs_hash("base", tree)
    assert image.inputs_hash("other-base", tree) != before
    (tree / "src/pkg/a.py").chmod(0o755)
    assert image.inputs_hash("base", tree) != before


def test_hash_ignores_what_the_build_does_not_read(tree: pathlib.Path) -> None:
    before = image.inputs_hash("base", tree)
    for name in (
        "tests/test_a.py",
        "docs/a.md",
        "tools/x.py",
        "src/pkg/__pycache__/a.cpython-311.pyc",
        "src/pkg/a.pyc",
        "src/intel_deviceplugin_operator.egg-info/PKG-INFO",
    ):
        path = tree / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("changed\n")
    assert image.inputs_hash("base", tree) == before


def test_hash_is_the_same_for_the_same_content_elsewhere(
    tree: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(tree, copy)
    assert image.inputs_hash("base", copy) == image.inputs_hash("base", tree)


def test_context_files_of_this_repository() -> None:
    files = {path.relative_to(ROOT).as_posix() for path in image.context_files(ROOT)}
    assert {
        "Dockerfile",
        "pyproject.toml",
        "README.md",
        "src/deviceplugin_operator/cli.py",
    } <= files
    assert not [name for name in files if "__pycache__" in name or ".egg-info" in name]
    assert {"requirements/image.lock", "requirements/build.lock"} <= files
    assert not [
        name for name in files if not name.startswith(("src/", "requirements/")) and "/" in name
    ]


def test_dockerignore_lets_in_exactly_what_is_hashed() -> None:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    patterns = [line for line in lines if line and not line.startswith("#")]
    allowed = {pattern[1:].rstrip("/") for pattern in patterns if pattern.startswith("!")}
    assert patterns[0] == "*"
    assert allowed | {"Dockerfile", ".dockerignore"} == {
        *image.CONTEXT_FILES,
        *image.CONTEXT_TREES,
    }
    assert {"**/__pycache__", "**/*.py[cod]", "**/*.egg-info"} <= set(patterns)


# --- the engine -----------------------------------------------------------------------------


def _which(*present: str) -> Any:
    return lambda name: f"/usr/bin/{name}" if name in present else None


def test_docker_first_when_its_daemon_answers() -> None:
    chosen = image.select_engine(
        which=_which("docker", "podman", "buildah"), docker_answers=lambda _: True
    )
    assert chosen == ("docker", "/usr/bin/docker")


def test_podman_when_docker_is_missing_or_does_not_answer() -> None:
    asked: list[str] = []

    def answers(path: str) -> bool:
        asked.append(path)
        return False

    assert image.select_engine(which=_which("docker", "podman", "buildah"), docker_answers=answers)[
        0
    ] == ("podman")
    assert asked == ["/usr/bin/docker"]
    assert image.select_engine(which=_which("podman", "buildah"), docker_answers=answers)[0] == (
        "podman"
    )
    assert asked == ["/usr/bin/docker"], "no docker, nothing to ask"


def test_buildah_last() -> None:
    assert image.select_engine(which=_which("buildah"), docker_answers=lambda _: False) == (
        "buildah",
        "/usr/bin/buildah",
    )


def test_no_engine_is_a_one_line_error_naming_the_packages() -> None:
    with pytest.raises(image.ImageError) as raised:
        image.select_engine(which=_which(), docker_answers=lambda _: True)
    message = str(raised.value)
    assert "\n" not in message
    assert "tools/system-packages.sh" in message
    assert "podman" in message
    with pytest.raises(image.ImageError, match="daemon does not answer"):
        image.select_engine(which=_which("docker"), docker_answers=lambda _: False)


def test_requested_engine_wins_and_must_exist() -> None:
    everything = _which("docker", "podman", "buildah")
    assert image.select_engine("buildah", which=everything, docker_answers=lambda _: True) == (
        "buildah",
        "/usr/bin/buildah",
    )
    with pytest.raises(image.ImageError, match="podman is not installed"):
        image.select_engine("podman", which=_which("docker"), docker_answers=lambda _: True)
    with pytest.raises(image.ImageError, match="unknown engine"):
        image.select_engine("kaniko", which=everything, docker_answers=lambda _: True)


# --- podman's configuration -----------------------------------------------------------------


def test_podman_config_is_private_and_works_on_these_hosts(tmp_path: pathlib.Path) -> None:
    storage, runtime = tmp_path / "storage", tmp_path / "run"
    containers_text, storage_text = image.podman_config(
        storage, runtime, rootless=False, fuse_overlayfs="/usr/bin/fuse-overlayfs"
    )
    containers, storage_conf = tomllib.loads(containers_text), tomllib.loads(storage_text)
    assert containers["containers"]["default_ulimits"] == [
        "nofile=16384:16384",
        "nproc=32768:32768",
    ]
    assert containers["engine"]["cgroup_manager"] == "cgroupfs"
    assert containers["engine"]["events_logger"] == "file"
    for key in ("tmp_dir", "events_logfile_path"):
        assert pathlib.Path(containers["engine"][key]).is_relative_to(runtime)
    assert pathlib.Path(containers["network"]["network_config_dir"]).is_relative_to(storage)
    assert storage_conf["storage"]["driver"] == "overlay"
    assert pathlib.Path(storage_conf["storage"]["graphroot"]).is_relative_to(storage)
    assert pathlib.Path(storage_conf["storage"]["runroot"]).is_relative_to(runtime)
    assert "options" not in storage_conf["storage"], "root uses the kernel's overlay"
    _, rootless = image.podman_config(
        storage, runtime, rootless=True, fuse_overlayfs="/usr/bin/fuse-overlayfs"
    )
    overlay = tomllib.loads(rootless)["storage"]["options"]["overlay"]
    assert overlay["mount_program"] == "/usr/bin/fuse-overlayfs"


def test_podman_environment_points_at_files_under_the_cache(cache: pathlib.Path) -> None:
    env = image.podman_environment({"PATH": "/usr/bin"})
    assert env["PATH"] == "/usr/bin"
    conf = pathlib.Path(env["CONTAINERS_CONF"])
    storage_conf = pathlib.Path(env["CONTAINERS_STORAGE_CONF"])
    assert conf == cache / "podman" / "containers.conf"
    assert storage_conf == cache / "podman" / "storage.conf"
    graphroot = tomllib.loads(storage_conf.read_text())["storage"]["graphroot"]
    assert pathlib.Path(graphroot).is_relative_to(cache / "podman")
    assert "CONTAINERS_CONF" not in os.environ or os.environ["CONTAINERS_CONF"] != str(conf)
    written = conf.stat().st_mtime_ns
    image.podman_environment({})
    assert conf.stat().st_mtime_ns == written, "unchanged configuration is not rewritten"


def test_default_archive_is_under_the_cache(cache: pathlib.Path) -> None:
    path = image.default_archive("docker.io/intel/intel-deviceplugin-operator-py:devel")
    assert path == cache / "images" / "docker.io_intel_intel-deviceplugin-operator-py_devel.tar"


# --- the build command ----------------------------------------------------------------------


def test_podman_build_command(tmp_path: pathlib.Path) -> None:
    engine = image.Engine("podman", "/usr/bin/podman", {})
    pip_conf = tmp_path / "pip.conf"
    command = engine.build_command(
        "registry/op:tag", tmp_path, {"PYTHON_IMAGE": "localhost/base:1"}, {"k": "v"}, pip_conf
    )
    joined = " ".join(command)
    assert command[0] == "build"
    assert command[-1] == str(tmp_path)
    for part in (
        "--network host",
        "--isolation chroot",
        "--pull=never",
        "--tag registry/op:tag",
        "--build-arg PYTHON_IMAGE=localhost/base:1",
        "--label k=v",
        f"--volume {pip_conf}:/etc/pip.conf:ro",
    ):
        assert part in joined
    if image.HOST_CA.is_file():
        assert f"--volume {image.HOST_CA}:{image.HOST_CA}:ro" in joined


def test_docker_build_command_has_no_podman_options(tmp_path: pathlib.Path) -> None:
    engine = image.Engine("docker", "/usr/bin/docker", {})
    command = engine.build_command("op:tag", tmp_path, {"PYTHON_IMAGE": "python:3.11-slim"}, {})
    assert "--isolation" not in command
    assert "--volume" not in command
    assert " ".join(command).startswith("build --network host")


def test_build_arguments_and_pip_config() -> None:
    env = {
        "HTTPS_PROXY": "http://proxy:3128",
        "NO_PROXY": "",
        "PIP_INDEX_URL": "https://mirror/simple",
        "PIP_DEFAULT_TIMEOUT": "180",
        "PIP_FIND_LINKS": "/opt/wheels",
    }
    assert image.build_arguments("base:1", env) == {
        "PYTHON_IMAGE": "base:1",
        "HTTPS_PROXY": "http://proxy:3128",
    }
    config = image.pip_config(env)
    assert config is not None
    assert config.splitlines() == ["[global]", "index-url = https://mirror/simple", "timeout = 180"]
    assert image.pip_config({"PATH": "/bin"}) is None


# --- cache logic with a fake engine ---------------------------------------------------------


class FakeEngine:
    """Images in a dict; records what ran."""

    name = "podman"

    def __init__(self, images: dict[str, Any] | None = None, pullable: bool = False) -> None:
        self.images: dict[str, Any] = dict(images or {})
        self.pullable = pullable
        self.calls: list[str] = []
        self.counter = 0

    def inspect(self, ref: str) -> Any:
        return self.images.get(ref)

    def pull(self, ref: str, timeout: float = 0) -> str | None:
        self.calls.append(f"pull {ref}")
        if self.pullable:
            self.images[ref] = image.ImageInfo("upstream-id", {}, 1)
            return None
        return "no such host"

    def build_command(
        self, tag: str, root: Any, args: Any, labels: Any, pip: Any = None
    ) -> list[str]:
        return ["build", tag, json.dumps(labels)]

    def run(self, *args: str, **_: Any) -> None:
        self.calls.append(args[0])
        _, tag, labels = args
        self.counter += 1
        self.images[tag] = image.ImageInfo(f"id-{self.counter}", json.loads(labels), 1)

    def save(self, ref: str, path: pathlib.Path) -> None:
        self.calls.append(f"save {ref}")
        path.write_text(self.images[ref].id)

    def remove(self, image_id: str) -> None:
        self.calls.append(f"remove {image_id}")


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch, cache: pathlib.Path) -> FakeEngine:
    engine = FakeEngine({image.LOCAL_BASE: image.ImageInfo("local-base", {}, 1)})
    monkeypatch.setattr(image.Engine, "select", classmethod(lambda cls, requested=None: engine))
    return engine


def test_build_only_when_the_inputs_changed(fake: FakeEngine, tree: pathlib.Path) -> None:
    first = image.build("op:dev", root=tree)
    assert fake.calls == ["build"]
    assert image.build("op:dev", root=tree) == first
    assert fake.calls == ["build"], "up to date: nothing ran"
    (tree / "src/pkg/a.py").write_text("A = 3\n")
    second = image.build("op:dev", root=tree)
    assert second != first
    assert fake.calls == ["build", "build", f"remove {first}"], "the replaced image is removed"
    label = fake.images["op:dev"].labels[image.LABEL]
    assert label == image.inputs_hash("local-base", tree)


def test_save_rewrites_the_archive_only_for_a_new_image(
    fake: FakeEngine, tree: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    target = tmp_path / "out" / "op.tar"
    assert image.save("op:dev", target, root=tree) == target
    assert target.read_text() == "id-1"
    stamp = json.loads(target.with_name("op.tar.json").read_text())
    assert stamp["id"] == "id-1"
    assert stamp["image"] == "op:dev"
    image.save("op:dev", target, root=tree)
    assert fake.calls == ["build", "save op:dev"]
    (tree / "README.md").write_text("# new\n")
    image.save("op:dev", target, root=tree)
    assert target.read_text() == "id-2"
    assert fake.calls[-1] == "save op:dev"
    assert not list(target.parent.glob(".*partial"))


def test_save_defaults_to_the_cache(fake: FakeEngine, tree: pathlib.Path) -> None:
    assert image.save("op:dev", root=tree) == image.default_archive("op:dev")


def test_base_order_present_upstream_then_local_then_pull_then_mmdebstrap(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    upstream = image.ImageInfo("up", {}, 1)
    local = image.ImageInfo("loc", {}, 1)
    both = FakeEngine({image.UPSTREAM_BASE: upstream, image.LOCAL_BASE: local})
    assert image.ensure_base(both) == image.Base(image.UPSTREAM_BASE, "up", image.UPSTREAM_BASE)
    only_local = FakeEngine({image.LOCAL_BASE: local})
    assert image.ensure_base(only_local) == image.Base(image.LOCAL_BASE, "loc", "loc")
    assert only_local.calls == [], "a present base needs no registry"
    pullable = FakeEngine(pullable=True)
    assert image.ensure_base(pullable).id == "upstream-id"
    assert pullable.calls == [f"pull {image.UPSTREAM_BASE}"]

    made: list[str] = []

    def make(engine: FakeEngine, ref: str = image.LOCAL_BASE) -> None:
        made.append(ref)
        engine.images[ref] = local

    monkeypatch.setattr(image, "make_local_base", make)
    offline = FakeEngine()
    assert image.ensure_base(offline) == image.Base(image.LOCAL_BASE, "loc", "loc")
    assert offline.calls == [f"pull {image.UPSTREAM_BASE}"], "one pull attempt"
    assert made == [image.LOCAL_BASE]


def test_the_upstream_base_is_the_dockerfiles_pinned_one() -> None:
    """Issue 14, point 9: what is pulled is the digest the Dockerfile names, never a tag."""
    assert image.dockerfile_base(ROOT) == image.UPSTREAM_BASE
    assert image.DIGEST.search(image.UPSTREAM_BASE)
    assert image.UPSTREAM_BASE.startswith("docker.io/library/python:3.11-slim-bookworm@sha256:")


def test_an_unpinned_dockerfile_base_is_a_clear_error(tree: pathlib.Path) -> None:
    (tree / "Dockerfile").write_text("ARG PYTHON_IMAGE=python:3.11-slim\nFROM ${PYTHON_IMAGE}\n")
    with pytest.raises(image.ImageError, match=r"is not pinned: add @sha256:<digest>"):
        image.dockerfile_base(tree)


def test_every_base_is_passed_pinned_and_recorded_in_labels() -> None:
    """The build argument carries a digest or is an image id (a content hash), whichever base
    is used, and the labels name it."""
    digest = image.DIGEST.search(image.UPSTREAM_BASE)
    assert digest is not None
    upstream = image.ensure_base(FakeEngine({image.UPSTREAM_BASE: image.ImageInfo("u", {}, 1)}))
    assert upstream.pinned == image.UPSTREAM_BASE
    assert upstream.labels == {
        image.BASE_NAME_LABEL: "docker.io/library/python:3.11-slim-bookworm",
        image.BASE_DIGEST_LABEL: digest[1],
    }
    local_id = "a" * 64
    local = image.ensure_base(FakeEngine({image.LOCAL_BASE: image.ImageInfo(local_id, {}, 1)}))
    assert local.pinned == local_id
    assert local.labels == {
        image.BASE_NAME_LABEL: image.LOCAL_BASE,
        image.BASE_DIGEST_LABEL: f"sha256:{local_id}",
    }
    tagged = image.ensure_base(
        FakeEngine({"registry/python:3.11": image.ImageInfo(local_id, {}, 1)}),
        "registry/python:3.11",
    )
    assert tagged.pinned == local_id, "a requested tag is pinned by the image it names now"


def test_a_base_whose_digests_differ_from_its_pin_is_refused() -> None:
    other = "docker.io/library/python@sha256:" + "0" * 64
    engine = FakeEngine({image.UPSTREAM_BASE: image.ImageInfo("u", {}, 1, (other,))})
    with pytest.raises(image.ImageError, match="present but its digests are"):
        image.ensure_base(engine)
    digest = image.UPSTREAM_BASE.rsplit("@", 1)[1]
    good = f"docker.io/library/python@{digest}"
    engine = FakeEngine({image.UPSTREAM_BASE: image.ImageInfo("u", {}, 1, (good,))})
    assert image.ensure_base(engine).pinned == image.UPSTREAM_BASE


def test_requested_base_is_pulled_or_a_clear_error() -> None:
    with pytest.raises(image.ImageError, match="not present and not pulled: no such host"):
        image.ensure_base(FakeEngine(), "registry/python:3.11")


def test_the_build_gets_the_pinned_base_and_its_labels(
    fake: FakeEngine, tree: pathlib.Path
) -> None:
    image.build("op:dev", root=tree)
    labels = fake.images["op:dev"].labels
    assert labels[image.BASE_NAME_LABEL] == image.LOCAL_BASE
    assert labels[image.BASE_DIGEST_LABEL] == "sha256:local-base"


def test_cli_error_is_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    assert image.main(["build", "--image", "op:dev"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("tools/image.py: no container engine")
    assert "\n" not in err


# --- the real thing -------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_real_build_runs_read_only_as_65532_and_is_cached(tmp_path: pathlib.Path) -> None:
    """Builds the image with the installed engine (the first time: ~1 min with a local base),
    runs ``--help`` like the Deployment would (read-only root, user 65532), builds again.

    The build context is a snapshot of this repository's (same content, same hash, so the
    cached image of ``make image`` is reused) that nothing edits while the test runs."""
    try:
        engine = image.Engine.select()
    except image.ImageError as error:
        pytest.skip(f"no container engine installed: {error}")
    context = tmp_path / "context"
    for path in image.context_files(ROOT):
        copy = context / path.relative_to(ROOT)
        copy.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, copy)
    image_id = image.build(image.DEFAULT_IMAGE, root=context)
    started = time.monotonic()
    assert image.build(image.DEFAULT_IMAGE, root=context) == image_id
    assert time.monotonic() - started < 10, "an unchanged image is not rebuilt"
    built = engine.inspect(image.DEFAULT_IMAGE)
    assert built is not None
    assert built.labels[image.BASE_DIGEST_LABEL].startswith("sha256:"), "the base is recorded"
    assert built.labels[image.BASE_NAME_LABEL] in (
        image.LOCAL_BASE,
        image.DIGEST.sub("", image.UPSTREAM_BASE),
    )
    if engine.name == "buildah":
        return  # buildah cannot run the image; the build itself is what was tested
    runner = [engine.command, "run", "--rm", "--network", "host", "--read-only"]
    completed = subprocess.run(
        [*runner, "--user", "65532", image.DEFAULT_IMAGE, "--help"],
        env=dict(engine.env),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.startswith("usage: deviceplugin-operator run")
