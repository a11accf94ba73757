"""``deviceplugin-operator run`` against the real control plane when it cannot start: the process
exits (1 for what the cluster or host refuses, 2 for a bad flag) and its last line names the
cause and the fix, without a traceback.

The operator runs as the real command in a child process (``operators.start_operator``); a
ServiceAccount without any binding gets its kubeconfig from ``operators.token_kubeconfig``.
"""

from __future__ import annotations

import json
import pathlib
import uuid
from collections.abc import Iterator

import pytest

from clusters import TestCluster
from localcluster import processes
from operators import Operator, start_operator, token_kubeconfig

pytestmark = pytest.mark.cluster

ROOT = pathlib.Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def crds(cluster: TestCluster) -> None:
    cluster.install_crds(ROOT / "deployments/operator/crd/bases")


@pytest.fixture
def exits() -> Iterator[list[Operator]]:
    """Operators started by a test, killed if one is still running at its end."""
    started: list[Operator] = []
    yield started
    for operator in started:
        operator.kill()


def failure(
    started: list[Operator],
    kubeconfig: pathlib.Path,
    namespace: str,
    log: pathlib.Path,
    *extra: str,
) -> tuple[int, str, str]:
    """(exit status, last line, whole output) of an operator that must not start."""
    operator = start_operator(
        kubeconfig, namespace, log, *extra, devices=["gpu"], log_format="text"
    )
    started.append(operator)
    status = operator.popen.wait(timeout=60)
    text = operator.text()
    return status, text.splitlines()[-1], text


def assert_one_line(text: str) -> None:
    assert "Traceback" not in text, text
    assert "List failed" not in text, "retried instead of stopping"


def test_a_missing_namespace(
    cluster: TestCluster, crds: None, tmp_path: pathlib.Path, exits: list[Operator]
) -> None:
    missing = f"missing-{uuid.uuid4().hex[:8]}"
    status, last, text = failure(exits, cluster.kubeconfig, missing, tmp_path / "log")
    assert status == 1
    assert f"ERROR deviceplugin_operator.cli Namespace {missing} not found: it holds " in last
    assert f"create it (kubectl create namespace {missing})" in last
    assert_one_line(text)


def test_rbac_denied(
    cluster: TestCluster,
    crds: None,
    namespace: str,
    tmp_path: pathlib.Path,
    exits: list[Operator],
) -> None:
    cluster.kubectl("create", "serviceaccount", "unbound", "-n", namespace)
    unbound = token_kubeconfig(cluster, "unbound", namespace, tmp_path / "unbound.kubeconfig")
    status, last, text = failure(exits, unbound.path, namespace, tmp_path / "log")
    user = f"system:serviceaccount:{namespace}:unbound"
    assert status == 1
    assert last.endswith(
        f"RBAC denied: {user} cannot list daemonsets.apps in namespace {namespace}; bind the "
        "Role intel-deviceplugins-manager-role (deployments/operator/rbac/role.yaml) in "
        f"{namespace} to {user}"
    )
    assert_one_line(text)


def test_an_unreachable_api_server(
    cluster: TestCluster, namespace: str, tmp_path: pathlib.Path, exits: list[Operator]
) -> None:
    kubeconfig = token_kubeconfig(
        cluster, "unused", namespace, tmp_path / "closed.kubeconfig", token="unused"
    ).path
    config = json.loads(kubeconfig.read_text())
    closed = f"https://127.0.0.1:{processes.free_port()}"
    config["clusters"][0]["cluster"]["server"] = closed
    kubeconfig.write_text(json.dumps(config))
    status, last, text = failure(exits, kubeconfig, namespace, tmp_path / "log")
    assert status == 1
    assert f"Cannot reach the Kubernetes API server {closed} (kubeconfig: {kubeconfig}): " in last
    assert "Connect call failed" in last
    assert last.endswith("and that the API server runs")
    assert_one_line(text)


def test_a_bad_flag(
    cluster: TestCluster, namespace: str, tmp_path: pathlib.Path, exits: list[Operator]
) -> None:
    status, last, text = failure(
        exits, cluster.kubeconfig, namespace, tmp_path / "log", "--webhook-port=70000"
    )
    assert status == 2
    assert last == (
        "deviceplugin-operator run: argument --webhook-port: invalid port '70000' (0 to 65535) "
        "(see --help)"
    )
    assert text.count("\n") == 1


def test_an_unusable_mounted_certificate(
    cluster: TestCluster,
    crds: None,
    namespace: str,
    tmp_path: pathlib.Path,
    exits: list[Operator],
) -> None:
    certs = tmp_path / "certs"
    certs.mkdir()
    (certs / "tls.crt").write_text("not a certificate\n")
    (certs / "tls.key").write_text("not a key\n")
    status, last, text = failure(
        exits,
        cluster.kubeconfig,
        namespace,
        tmp_path / "log",
        f"--webhook-port={processes.free_port()}",
        "--webhook-host=127.0.0.1",
        "--webhook-certs=mounted",
        f"--webhook-cert-dir={certs}",
    )
    assert status == 1
    assert last.endswith(
        f"Unusable webhook certificate (--webhook-certs=mounted) in {certs}: tls.crt holds no "
        "PEM certificate; mount the Secret with the serving certificate and its key there "
        "(--webhook-cert-dir), or let the operator manage its own (--webhook-certs=self-managed)"
    )
    assert_one_line(text)
