"""Failures of the start itself (certificates, addresses, API errors without a check of their
own) become one ``StartupError`` line naming the cause and the fix."""

from __future__ import annotations

import datetime
import pathlib
import socket
from collections.abc import Iterator

import pytest

from deviceplugin_operator import manager, settings
from deviceplugin_operator.controller import certificates
from deviceplugin_operator.kube import errors
from deviceplugin_operator.manager import startup
from fakes import FakeKubeClient

NOW = datetime.datetime(2026, 11, 28, tzinfo=datetime.UTC)
USER = "system:serviceaccount:ops:nobody"


def write_pair(directory: pathlib.Path, cert: bytes, key: bytes) -> pathlib.Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "tls.crt").write_bytes(cert)
    (directory / "tls.key").write_bytes(key)
    return directory


@pytest.fixture(scope="module")
def pairs() -> tuple[certificates.Bundle, certificates.Bundle]:
    return certificates.issue(["127.0.0.1"], NOW), certificates.issue(["127.0.0.1"], NOW)


@pytest.mark.parametrize(
    ("case", "problem"),
    [
        ("empty", "tls.crt: No such file or directory"),
        ("no key", "tls.key: No such file or directory"),
        ("junk certificate", "tls.crt holds no PEM certificate"),
        ("junk key", "tls.key holds no unencrypted PEM private key"),
        ("mismatch", "tls.key is not the key of the certificate in tls.crt"),
        ("good", None),
    ],
)
def test_a_certificate_problem_is_named_by_file(
    tmp_path: pathlib.Path,
    pairs: tuple[certificates.Bundle, certificates.Bundle],
    case: str,
    problem: str | None,
) -> None:
    one, other = pairs
    files = {
        "empty": None,
        "no key": (one.cert, None),
        "junk certificate": (b"junk", one.key),
        "junk key": (one.cert, b"junk"),
        "mismatch": (one.cert, other.key),
        "good": (one.cert, one.key),
    }[case]
    tmp_path.mkdir(exist_ok=True)
    if files is not None:
        (tmp_path / "tls.crt").write_bytes(files[0])
        if files[1] is not None:
            (tmp_path / "tls.key").write_bytes(files[1])
    assert startup.certificate_problem(tmp_path, "tls.crt", "tls.key") == problem


def test_a_failure_to_listen_names_the_flag_and_the_address() -> None:
    with (
        pytest.raises(startup.StartupError) as raised,
        startup.listening("--health-probe-bind-address", "127.0.0.1:8081"),
    ):
        raise OSError(98, "address already in use")
    assert str(raised.value) == (
        "Cannot listen on 127.0.0.1:8081 (--health-probe-bind-address): address already in use; "
        "choose a free port or an address of this host"
    )


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (
            errors.Forbidden(
                403,
                "Forbidden",
                f'secrets "cert" is forbidden: User "{USER}" cannot update resource "secrets" '
                'in API group "" in the namespace "ops"',
            ),
            f"RBAC denied: {USER} cannot update secrets in namespace ops; bind the Role "
            "p-manager-role (deployments/operator/rbac/role.yaml) in ops to " + USER,
        ),
        (
            errors.Forbidden(
                403,
                "Forbidden",
                f'User "{USER}" cannot patch resource "mutatingwebhookconfigurations" in API '
                'group "admissionregistration.k8s.io" at the cluster scope',
            ),
            f"RBAC denied: {USER} cannot patch "
            "mutatingwebhookconfigurations.admissionregistration.k8s.io cluster-wide; bind the "
            "ClusterRole p-manager-role (deployments/operator/rbac/role.yaml) to " + USER,
        ),
        (
            errors.NotFound(404, "NotFound", 'namespaces "ops" not found'),
            "Namespace ops not found: it holds objects the operator writes at start-up; create "
            "it (kubectl create namespace ops) or name an existing one",
        ),
        (
            errors.Unauthorized(401, "Unauthorized", ""),
            "The Kubernetes API server https://api refused the credentials of /k (401 "
            "Unauthorized); renew the token or client certificate in the kubeconfig",
        ),
    ],
    ids=["forbidden-namespaced", "forbidden-cluster", "namespace", "unauthorized"],
)
def test_an_api_error_that_ended_the_start_is_explained(
    error: errors.KubeError, expected: str
) -> None:
    assert str(startup.explained(error, server="https://api", kubeconfig="/k", prefix="p-")) == (
        expected
    )


# The steps of the start, on the in-memory API ----------------------------------------------


@pytest.fixture
def free_port() -> Iterator[int]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        yield int(probe.getsockname()[1])


async def serve_failure(kube: FakeKubeClient, **changes: object) -> str:
    values: dict[str, object] = {
        "health_probe_bind_address": "127.0.0.1:0",
        "webhook_port": 0,
        "operator_namespace": "ops",
    }
    values.update(changes)
    options = manager.Options(**values)  # type: ignore[arg-type]
    mgr = manager.Manager(
        settings.Settings(plugin_namespace="ops", devices=("gpu",)), options, kube
    )
    try:
        with pytest.raises(manager.StartupError) as raised:
            await mgr.serve()
    finally:
        await mgr.stop()
    return str(raised.value)


async def test_an_unusable_mounted_webhook_certificate_stops_the_start(
    tmp_path: pathlib.Path,
    pairs: tuple[certificates.Bundle, certificates.Bundle],
    free_port: int,
) -> None:
    one, other = pairs
    directory = write_pair(tmp_path / "certs", one.cert, other.key)
    message = await serve_failure(
        FakeKubeClient(),
        webhook_port=free_port,
        webhook_host="127.0.0.1",
        webhook_certs="mounted",
        webhook_cert_dir=str(directory),
    )
    assert message == (
        f"Unusable webhook certificate (--webhook-certs=mounted) in {directory}: tls.key is "
        "not the key of the certificate in tls.crt; mount the Secret with the serving "
        "certificate and its key there (--webhook-cert-dir), or let the operator manage its "
        "own (--webhook-certs=self-managed)"
    )


async def test_an_unusable_metrics_certificate_stops_the_start(tmp_path: pathlib.Path) -> None:
    message = await serve_failure(
        FakeKubeClient(),
        metrics_bind_address="127.0.0.1:0",
        metrics_secure=True,
        metrics_cert_path=str(tmp_path),
    )
    assert message.startswith(
        f"Unusable metrics certificate (--metrics-cert-path) in {tmp_path}: tls.crt: No such file"
    )
    assert message.endswith("or leave --metrics-cert-path out for a self-signed one")


async def test_an_address_in_use_stops_the_start() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        address = f"127.0.0.1:{taken.getsockname()[1]}"
        message = await serve_failure(FakeKubeClient(), metrics_bind_address=address)
    assert message.startswith(f"Cannot listen on {address} (--metrics-bind-address): ")
    assert "address already in use" in message


async def test_the_self_managed_certificate_refused_by_rbac_names_the_role_and_the_way_out(
    tmp_path: pathlib.Path, free_port: int
) -> None:
    kube = FakeKubeClient()
    kube.fail(
        "get",
        errors.Forbidden(
            403,
            "Forbidden",
            f'secrets "c" is forbidden: User "{USER}" cannot get resource "secrets" in API '
            'group "" in the namespace "ops"',
        ),
    )
    message = await serve_failure(
        kube,
        webhook_port=free_port,
        webhook_host="127.0.0.1",
        webhook_hosts=("127.0.0.1",),
        webhook_cert_dir=str(tmp_path),
    )
    assert message == (
        f"RBAC denied: {USER} cannot get secrets in namespace ops; bind the Role "
        "intel-deviceplugins-manager-role (deployments/operator/rbac/role.yaml) in ops to "
        f"{USER}, or serve a mounted certificate (--webhook-certs=mounted)"
    )


async def test_the_self_managed_certificate_without_its_namespace_names_it(
    tmp_path: pathlib.Path, free_port: int
) -> None:
    kube = FakeKubeClient()
    kube.fail("create", errors.NotFound(404, "NotFound", 'namespaces "ops" not found'))
    message = await serve_failure(
        kube,
        webhook_port=free_port,
        webhook_host="127.0.0.1",
        webhook_hosts=("127.0.0.1",),
        webhook_cert_dir=str(tmp_path),
    )
    assert message.startswith(
        "Namespace ops not found: it holds the webhook certificate Secret (--operator-namespace"
    )
