"""``deviceplugin-operator render`` against what a running operator creates for the same file.

A real operator process (``tests/operators.py``) with non-default settings (plugin namespace,
``--plugin-service-account``, ``DEVICEPLUGIN_SECRET``, an ``<IMAGE>_SHA`` pin) and its
webhooks registered reconciles every sample of ``deployments/operator/samples``; ``render`` is
given the very same argument list and environment. Every rendered DaemonSet must equal the
live one in every field once both went through the API server's defaulting (a server-side
dry-run of the rendered object) and the fields only the server sets are dropped.
"""

from __future__ import annotations

import copy
import json
import os
import pathlib
import subprocess
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from clusters import TestCluster
from deviceplugin_operator import devices
from deviceplugin_operator.inspection import rendering
from deviceplugin_operator.manifests import webhooks
from localcluster import processes
from operators import COMMAND, Operator, kill_all, start_operator
from polling import eventually

pytestmark = [pytest.mark.cluster]

ROOT = pathlib.Path(__file__).resolve().parents[2]
SAMPLES = ROOT / "deployments" / "operator" / "samples"
PREFIX = "render-test-"
SUFFIX = uuid.uuid4().hex[:6]
PIN = "docker.io/intel/intel-gpu-plugin@sha256:" + "0123456789abcdef" * 4
ENV = {"DEVICEPLUGIN_SECRET": "render-pull-secret", "INTEL_GPU_PLUGIN_SHA": PIN}
SERVER_SET = ("uid", "resourceVersion", "creationTimestamp", "generation", "managedFields")


def samples() -> list[dict[str, Any]]:
    """Every sample resource, renamed for this module (others may have left the originals)."""
    found = []
    for path in sorted(SAMPLES.glob("deviceplugin_v1_*deviceplugin.yaml")):
        body = yaml.safe_load(path.read_text())
        body["metadata"]["name"] += f"-{SUFFIX}"
        found.append(body)
    assert len(found) == len(devices.KINDS)
    return found


class Setup:
    def __init__(self, operator: Operator, namespace: str, file: pathlib.Path):
        self.operator = operator
        self.namespace = namespace
        self.file = file

    @property
    def run_flags(self) -> list[str]:
        """The operator's own arguments that shape DaemonSets, as it was started with them."""
        shaping = ("--deviceplugin-namespace=", "--plugin-service-account=", "--devices=")
        flags = [arg for arg in self.operator.argv if arg.startswith(shaping)]
        assert len(flags) == 2, self.operator.argv
        return flags


def render(*args: str, env: dict[str, str] | None = None, stdin: str | None = None) -> Any:
    return subprocess.run(
        [str(COMMAND), "render", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        env={**_clean_env(), **(env or {})},
        check=False,
    )


def _clean_env() -> dict[str, str]:
    return {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DEVICEPLUGIN_", "POD_", "KUBECONFIG")) and not k.endswith("_SHA")
    }


@pytest.fixture(scope="module")
def setup(cluster: TestCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    cluster.install_crds(ROOT / "deployments/operator/crd/bases")
    directory = tmp_path_factory.mktemp("render")
    namespace = f"render-{SUFFIX}"
    cluster.kubectl("create", "namespace", namespace)
    port = processes.free_port()

    def url(path: str) -> dict[str, Any]:
        return {"url": f"https://127.0.0.1:{port}{path}"}

    for configuration in webhooks.configurations(devices.KINDS.values(), url, prefix=PREFIX):
        cluster.kubectl("apply", "-f", "-", input=json.dumps(configuration))
    operator = start_operator(
        cluster.kubeconfig,
        namespace,
        directory / "operator.log",
        "--plugin-service-account=render-plugins",
        webhook_prefix=PREFIX,
        webhook_port=port,
        webhook_secret="render-test-cert",
        env=ENV,
    )
    file = directory / "samples.yaml"
    file.write_text(yaml.safe_dump_all(samples()))
    try:
        operator.wait_ready()
        eventually(
            lambda: cluster.kubectl("apply", "-f", str(file), check=False).returncode == 0,
            timeout=60,
            what="the webhooks to admit the samples",
        )
        yield Setup(operator, namespace, file)
    finally:
        cluster.kubectl("delete", "-f", str(file), "--ignore-not-found", "--wait=false")
        # TYPE/NAME: "delete TYPE NAME TYPE NAME" takes the second TYPE for a name and fails,
        # leaving webhooks that point at a stopped operator for the modules after this one.
        cluster.kubectl(
            "delete",
            f"mutatingwebhookconfiguration/{PREFIX}{webhooks.MUTATING_NAME}",
            f"validatingwebhookconfiguration/{PREFIX}{webhooks.VALIDATING_NAME}",
            "--ignore-not-found",
        )
        problems = operator.problems()
        kill_all()
        cluster.kubectl("delete", "namespace", namespace, "--wait=false", check=False)
        assert not problems, problems


def live_daemonsets(cluster: TestCluster, namespace: str) -> dict[str, dict[str, Any]]:
    def all_there() -> dict[str, dict[str, Any]] | None:
        items = cluster.kubectl_json("get", "daemonsets", "-n", namespace)["items"]
        # Only this module's: the operator also reconciles resources other modules left.
        found = {
            item["metadata"]["name"]: item
            for item in items
            if item["metadata"]["name"].endswith(f"-{SUFFIX}")
        }
        return found if len(found) == len(devices.KINDS) else None

    return eventually(all_there, timeout=60, what="a DaemonSet per sample")


def defaulted(cluster: TestCluster, daemonset: dict[str, Any], scratch: str) -> dict[str, Any]:
    """``daemonset`` as the API server would store it: a server-side dry-run create in another
    namespace (the real one holds it already)."""
    body = copy.deepcopy(daemonset)
    namespace = body["metadata"]["namespace"]
    body["metadata"]["namespace"] = scratch
    stored: dict[str, Any] = json.loads(
        cluster.kubectl(
            "create", "--dry-run=server", "-o", "json", "-f", "-", input=json.dumps(body)
        ).stdout
    )
    stored["metadata"]["namespace"] = namespace
    return stored


def comparable(daemonset: dict[str, Any]) -> dict[str, Any]:
    """Without what only the server sets (identity, versions, status)."""
    body = copy.deepcopy(daemonset)
    body.pop("status", None)
    for field in SERVER_SET:
        body["metadata"].pop(field, None)
    annotations = body["metadata"].get("annotations") or {}
    annotations.pop("deprecated.daemonset.template.generation", None)
    if not annotations:
        body["metadata"].pop("annotations", None)
    return body


def rendered(completed: Any) -> dict[str, dict[str, Any]]:
    assert completed.returncode == 0, completed.stderr
    return {d["metadata"]["name"]: d for d in yaml.safe_load_all(completed.stdout) if d}


def test_render_equals_what_the_operator_creates_for_every_sample(
    cluster: TestCluster, setup: Setup
) -> None:
    live = live_daemonsets(cluster, setup.namespace)
    # The live resources (with their UIDs), as kubectl prints them: a List.
    plurals = ",".join(kind.plural for kind in devices.KINDS.values())
    names = [body["metadata"]["name"] for body in samples()]
    listed = yaml.safe_load(cluster.kubectl("get", plurals, "-o", "yaml").stdout)
    listed["items"] = [i for i in listed["items"] if i["metadata"]["name"] in names]
    stored = yaml.safe_dump(listed)
    from_cluster = rendered(render(*setup.run_flags, "-f", "-", stdin=stored, env=ENV))
    from_file = rendered(render(*setup.run_flags, "-f", str(setup.file), env=ENV))
    assert sorted(from_file) == sorted(live)

    scratch = f"render-dry-{SUFFIX}"
    cluster.kubectl("create", "namespace", scratch)
    try:
        for name, daemonset in sorted(live.items()):
            want = comparable(daemonset)
            got = comparable(defaulted(cluster, from_cluster[name], scratch))
            assert got == want, f"{name}: rendered != live"
            # Rendered from the file, only the owner's UID is unknown.
            owner = from_file[name]["metadata"]["ownerReferences"][0]
            assert owner["uid"] == rendering.UNKNOWN_UID
            owner["uid"] = daemonset["metadata"]["ownerReferences"][0]["uid"]
            assert from_file[name] == from_cluster[name]
    finally:
        cluster.kubectl("delete", "namespace", scratch, "--wait=false", check=False)

    # The settings are the operator's: they show in what was compared.
    gpu = next(d for n, d in live.items() if n.startswith("intel-gpu-plugin-"))
    pod = gpu["spec"]["template"]["spec"]
    assert pod["containers"][0]["image"] == PIN
    assert pod["serviceAccountName"] == "render-plugins"
    assert pod["imagePullSecrets"] == [{"name": "render-pull-secret"}]


def test_other_flags_render_something_else(cluster: TestCluster, setup: Setup) -> None:
    """The comparison above can fail: without the operator's flags and environment the
    DaemonSets differ."""
    ours = rendered(render(*setup.run_flags, "-f", str(setup.file), env=ENV))
    plain = rendered(render("-f", str(setup.file)))
    assert sorted(ours) == sorted(plain)
    for name in ours:
        assert ours[name] != plain[name]
        assert plain[name]["metadata"]["namespace"] == "kube-system"


def test_devices_flag_leaves_other_kinds_out(setup: Setup) -> None:
    completed = render("--devices=gpu,qat", "-f", str(setup.file))
    names = sorted(rendered(completed))
    assert [n.split("-")[1] for n in names] == ["gpu", "qat"]
    assert completed.stderr.count("is not in --devices") == len(devices.KINDS) - 2


INVALID = [
    ("GpuDevicePlugin", {"image": "intel/intel-gpu-plugin:0.20.0"}),
    ("GpuDevicePlugin", {"sharedDevNum": 1, "preferredAllocationPolicy": "packed"}),
    ("QatDevicePlugin", {"provisioningConfig": "x"}),
    ("DsaDevicePlugin", {"image": "evil/evil-dsa-plugin:0.36.0"}),
]


@pytest.mark.parametrize(("kind", "spec"), INVALID)
def test_invalid_resources_get_the_webhooks_message(
    cluster: TestCluster, setup: Setup, kind: str, spec: dict[str, Any]
) -> None:
    body = {
        "apiVersion": "deviceplugin.intel.com/v1",
        "kind": kind,
        "metadata": {"name": f"render-bad-{uuid.uuid4().hex[:6]}"},
        "spec": spec,
    }
    text = json.dumps(body)
    denied = cluster.kubectl("create", "-f", "-", input=text, check=False)
    assert denied.returncode != 0
    completed = render(*setup.run_flags, "-f", "-", stdin=text, env=ENV)
    assert completed.returncode == 1
    assert completed.stdout == ""
    (line,) = completed.stderr.strip().splitlines()
    message = line.split("): ", 1)[1]
    assert message.startswith("invalid resource: ")
    assert f"denied the request: {message}" in denied.stderr, (denied.stderr, message)


def test_unreadable_input_is_a_usage_error(tmp_path: pathlib.Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("kind: [unclosed\n")
    completed = render("-f", str(broken))
    assert completed.returncode == 2
    assert str(broken) in completed.stderr
    assert "not valid YAML" in completed.stderr
    missing = render("-f", str(tmp_path / "missing.yaml"))
    assert missing.returncode == 2
    assert "missing.yaml" in missing.stderr
