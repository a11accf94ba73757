"""The Dockerfile agrees with the manager Deployment: entrypoint, user, ports, writable paths.

The Dockerfile is parsed (stages, and the instructions of the final one), so these run without
a container engine; tests/unit/test_image_tool.py builds and runs the image when one is there.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
import re
import tomllib
from typing import Any

import pytest
import yaml

from deviceplugin_operator import cli

ROOT = pathlib.Path(__file__).resolve().parents[2]


@dataclasses.dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = dataclasses.field(default_factory=list)

    def values(self, instruction: str) -> list[str]:
        return [value for name, value in self.instructions if name == instruction]


def parse(text: str) -> tuple[dict[str, str], list[Stage]]:
    """(global ARG defaults, stages) of a Dockerfile."""
    logical = re.sub(r"\\\n", " ", text)
    arguments: dict[str, str] = {}
    stages: list[Stage] = []
    for raw in logical.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        instruction, _, value = line.partition(" ")
        instruction, value = instruction.upper(), value.strip()
        if instruction == "FROM":
            parts = re.split(r"\s+(?i:as)\s+", value)
            stages.append(Stage(base=parts[0], name=parts[1] if len(parts) > 1 else None))
        elif instruction == "ARG" and not stages:
            key, _, default = value.partition("=")
            arguments[key] = default
        else:
            stages[-1].instructions.append((instruction, value))
    return arguments, stages


@pytest.fixture(scope="module")
def dockerfile() -> tuple[dict[str, str], list[Stage]]:
    return parse((ROOT / "Dockerfile").read_text())


@pytest.fixture(scope="module")
def final(dockerfile: tuple[dict[str, str], list[Stage]]) -> Stage:
    return dockerfile[1][-1]


@pytest.fixture(scope="module")
def manager() -> dict[str, Any]:
    documents = yaml.safe_load_all((ROOT / "deployments/operator/manager/manager.yaml").read_text())
    (deployment,) = [doc for doc in documents if doc["kind"] == "Deployment"]
    result: dict[str, Any] = deployment["spec"]["template"]["spec"]
    return result


DIGEST = re.compile(r"@sha256:[0-9a-f]{64}$")


def test_two_stages_on_python_3_11_slim(dockerfile: tuple[dict[str, str], list[Stage]]) -> None:
    arguments, stages = dockerfile
    assert [stage.name for stage in stages] == ["builder", None]
    name = DIGEST.sub("", arguments["PYTHON_IMAGE"])
    assert name == "docker.io/library/python:3.11-slim-bookworm"
    assert {stage.base for stage in stages} == {"${PYTHON_IMAGE}"}
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["requires-python"] == ">=3.11"


def test_every_from_is_pinned_by_digest(dockerfile: tuple[dict[str, str], list[Stage]]) -> None:
    """Issue 14, point 9: a base named by a tag alone can change under the same build."""
    arguments, stages = dockerfile
    names = {stage.name for stage in stages if stage.name}
    for stage in stages:
        base = stage.base
        if base in names:
            continue  # an earlier stage of this build
        variable = re.fullmatch(r"\$\{?(\w+)\}?", base)
        resolved = arguments.get(variable[1], "") if variable else base
        assert DIGEST.search(resolved), f"FROM {base} ({resolved}) has no @sha256:<digest>"
    text = (ROOT / "Dockerfile").read_text()
    assert "docker-library/repo-info" in text, "the digest's source is named next to it"


def test_dependencies_come_from_the_hashed_lock_only(
    dockerfile: tuple[dict[str, str], list[Stage]],
) -> None:
    """Issue 14, point 9: pip installs nothing whose hash is not in requirements/*.lock, and
    the project itself is built offline with the locked setuptools."""
    builder = dockerfile[1][0]
    lock_install, project_install = builder.values("RUN")
    assert "pip install --require-hashes --no-deps --only-binary=:all:" in lock_install
    assert "-r requirements/image.lock -r requirements/build.lock" in lock_install
    assert "pip install --no-deps --no-index --no-build-isolation ." in project_install
    assert "pip check" in project_install, "an incomplete lock fails the build"
    copies = builder.values("COPY")
    assert copies[0] == "requirements/image.lock requirements/build.lock ./requirements/"


def test_final_stage_holds_only_the_virtualenv(final: Stage) -> None:
    assert final.values("RUN") == [], "no package manager or build tool runs in the final stage"
    assert final.values("COPY")[0] == "--from=builder /opt/venv /opt/venv"
    assert [copy.split()[1] for copy in final.values("COPY")[1:]] == [
        "/opt/venv/bin/intel_deviceplugin_operator"
    ], "besides the virtualenv only the reference's command, a script of the virtualenv"
    (env,) = final.values("ENV")
    assert "PATH=/opt/venv/bin:$PATH" in env
    assert "PYTHONDONTWRITEBYTECODE=1" in env, "the root filesystem is read-only"


def test_builder_compiles_ahead_and_drops_pip(
    dockerfile: tuple[dict[str, str], list[Stage]],
) -> None:
    lock_install, project_install = dockerfile[1][0].values("RUN")
    assert "--only-binary=:all:" in lock_install, "no compiler in the image, no source builds"
    assert "compileall" in project_install
    assert "uninstall --yes pip setuptools" in project_install


def test_entrypoint_is_the_console_script_run_command(final: Stage) -> None:
    (entrypoint,) = final.values("ENTRYPOINT")
    command = json.loads(entrypoint)
    assert command == ["deviceplugin-operator", "run"]
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts[command[0]] == "deviceplugin_operator.cli:main"
    assert cli._parser().parse_args(command[1:]).command == "run"


def test_the_reference_command_path_runs_the_operator(final: Stage) -> None:
    """Intel's image has the operator at /usr/local/bin/intel_deviceplugin_operator (its
    ENTRYPOINT): manifests naming that command run this operator with the same flags."""
    (copied,) = [copy for copy in final.values("COPY") if "intel_deviceplugin_operator" in copy]
    source, target = copied.split()[1:]
    assert target == "/usr/local/bin/intel_deviceplugin_operator"
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert source == f"/opt/venv/bin/{pathlib.PurePath(target).name}"
    assert scripts[pathlib.PurePath(target).name] == "deviceplugin_operator.cli:reference_main"


def test_user_is_the_deployments_non_root_user(final: Stage, manager: dict[str, Any]) -> None:
    (user,) = final.values("USER")
    uid, gid = (int(part) for part in user.split(":"))
    security = manager["containers"][0]["securityContext"]
    assert (uid, gid) == (security["runAsUser"], security["runAsGroup"]) == (65532, 65532)
    assert security["runAsNonRoot"] is True
    assert manager["securityContext"]["runAsNonRoot"] is True


def test_exposed_ports_are_the_containers_ports(final: Stage, manager: dict[str, Any]) -> None:
    exposed = {int(port) for value in final.values("EXPOSE") for port in value.split()}
    container = manager["containers"][0]
    declared = {port["containerPort"] for port in container["ports"]}
    assert exposed == declared == {9443, 8443, 8081}
    args = dict(arg.split("=", 1) for arg in container["args"] if "=" in arg)
    assert args["--health-probe-bind-address"] == ":8081"
    assert args["--metrics-bind-address"] == ":8443"
    assert cli._parser().parse_args(["run"]).webhook_port == 9443


def test_only_tmp_is_written_and_it_is_mounted(manager: dict[str, Any]) -> None:
    container = manager["containers"][0]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert {m["mountPath"] for m in container["volumeMounts"]} == {"/tmp"}
    (tmp,) = manager["volumes"]
    assert "emptyDir" in tmp, "nothing at the webhook certificate directory: auto is self-managed"
    defaults = cli._parser().parse_args(["run"])
    assert defaults.webhook_cert_dir.startswith("/tmp/")


def test_build_context_has_what_the_builder_copies() -> None:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    patterns = [line for line in lines if line and not line.startswith("#")]
    assert patterns[:6] == [
        "*",
        "!pyproject.toml",
        "!README.md",
        "!src/",
        "!requirements/image.lock",
        "!requirements/build.lock",
    ]
    assert "**/*.egg-info" in patterns, "the editable install's metadata is no build input"
    for path in ("pyproject.toml", "README.md", "src/deviceplugin_operator/cli.py"):
        assert (ROOT / path).exists()
