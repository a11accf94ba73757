"""Webhook certificates through the real apiserver: self-managed renewal, mounted reload.

Each test runs its own in-process operator (GPU only) with its own webhook configurations,
pointed at it by URL, and asks the apiserver for server-side dry-run creates: the apiserver
must reach the webhook over TLS and trust what it serves, before and after the certificate
changes. What is served is read from a TLS handshake (the serial number).
"""

from __future__ import annotations

import asyncio
import base64
import datetime
import json
import pathlib
import socket
import ssl
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import pytest_asyncio
from cryptography import x509

from clusters import TestCluster
from deviceplugin_operator import devices, manager, settings
from deviceplugin_operator.controller import certificates
from deviceplugin_operator.kube import client, resources
from deviceplugin_operator.manifests import webhooks
from localcluster import processes
from polling import eventually_async

pytestmark = [pytest.mark.cluster, pytest.mark.asyncio(loop_scope="session")]

ROOT = pathlib.Path(__file__).resolve().parents[2]
SECRET = "certs-test-cert"
HOSTS = ("127.0.0.1",)


def served_serial(port: int) -> int:
    """The serial number of the certificate the webhook server presents now."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        context.wrap_socket(raw) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return int(x509.load_der_x509_certificate(der).serial_number)


def serial_of(pem: bytes) -> int:
    return int(x509.load_pem_x509_certificate(pem).serial_number)


class Operator:
    def __init__(self, mgr: manager.Manager, port: int, prefix: str, namespace: str):
        self.manager = mgr
        self.port = port
        self.prefix = prefix
        self.namespace = namespace

    async def serial(self) -> int:
        return await asyncio.to_thread(served_serial, self.port)


async def kubectl(cluster: TestCluster, *args: str, **kwargs: Any) -> Any:
    """kubectl in a thread: the webhook server answering it runs on this event loop."""
    return await asyncio.to_thread(cluster.kubectl, *args, **kwargs)


async def dry_run_admitted(cluster: TestCluster) -> bool:
    """A GpuDevicePlugin created with server-side dry-run: defaulted and validated by the
    webhooks (nothing stored). True when the apiserver reached them and they admitted it."""
    body = {
        "apiVersion": "deviceplugin.intel.com/v1",
        "kind": "GpuDevicePlugin",
        "metadata": {"name": f"cert-{uuid.uuid4().hex[:8]}"},
        "spec": {},
    }
    done = await kubectl(
        cluster,
        "create",
        "--dry-run=server",
        "-o",
        "json",
        "-f",
        "-",
        input=json.dumps(body),
        check=False,
    )
    if done.returncode != 0:
        return False
    # The defaulting webhook ran: the image is set although the spec was empty.
    return "intel-gpu-plugin" in json.loads(done.stdout)["spec"].get("image", "")


async def start_operator(
    cluster: TestCluster,
    tmp_path_factory: pytest.TempPathFactory,
    *,
    mode: str,
    cert_dir: pathlib.Path | None = None,
    ca_bundle: bytes | None = None,
    check_period: float = 10.0,
) -> tuple[Operator, client.HttpKubeClient]:
    cluster.install_crds(ROOT / "deployments/operator/crd/bases")
    suffix = uuid.uuid4().hex[:6]
    namespace = f"certs-{suffix}"
    prefix = f"certs-{suffix}-"
    cluster.kubectl("create", "namespace", namespace)
    port = processes.free_port()

    def url(path: str) -> dict[str, Any]:
        config: dict[str, Any] = {"url": f"https://127.0.0.1:{port}{path}"}
        if ca_bundle is not None:
            config["caBundle"] = base64.b64encode(ca_bundle).decode()
        return config

    for configuration in webhooks.configurations([devices.KINDS["gpu"]], url, prefix=prefix):
        cluster.kubectl("apply", "-f", "-", input=json.dumps(configuration))
    kube = await client.connect(cluster.kubeconfig)
    options = manager.Options(
        health_probe_bind_address="127.0.0.1:0",
        webhook_port=port,
        webhook_host="127.0.0.1",
        webhook_hosts=HOSTS,
        webhook_cert_dir=str(cert_dir or tmp_path_factory.mktemp("certs")),
        webhook_certs=mode,
        webhook_configuration_prefix=prefix,
        webhook_secret=SECRET,
        operator_namespace=namespace,
        certificate_check_period=check_period,
    )
    config = settings.Settings(plugin_namespace=namespace, devices=("gpu",))
    mgr = manager.Manager(config, options, kube)
    await mgr.start()
    return Operator(mgr, port, prefix, namespace), kube


async def stop_operator(
    cluster: TestCluster, operator: Operator, kube: client.HttpKubeClient
) -> None:
    for kind, name in (
        ("mutatingwebhookconfiguration", webhooks.MUTATING_NAME),
        ("validatingwebhookconfiguration", webhooks.VALIDATING_NAME),
    ):
        await kubectl(cluster, "delete", kind, operator.prefix + name, "--ignore-not-found")
    await operator.manager.stop()
    await kube.close()
    await kubectl(cluster, "delete", "namespace", operator.namespace, "--wait=false")


@pytest_asyncio.fixture(loop_scope="session")
async def self_managed(
    cluster: TestCluster, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Operator]:
    operator, kube = await start_operator(cluster, tmp_path_factory, mode="self-managed")
    try:
        yield operator
    finally:
        await stop_operator(cluster, operator, kube)


async def secret_bundle(cluster: TestCluster, namespace: str) -> certificates.Bundle:
    secret = await asyncio.to_thread(cluster.kubectl_json, "get", "secret", "-n", namespace, SECRET)
    data = secret["data"]
    return certificates.Bundle(
        *(base64.b64decode(data[key]) for key in ("ca.crt", "ca.key", "tls.crt", "tls.key")),
        previous_ca=base64.b64decode(data.get(certificates.PREVIOUS_CA_KEY, "")),
    )


async def ca_bundles(cluster: TestCluster, prefix: str) -> set[str]:
    found: set[str] = set()
    for kind, name in (
        ("mutatingwebhookconfiguration", webhooks.MUTATING_NAME),
        ("validatingwebhookconfiguration", webhooks.VALIDATING_NAME),
    ):
        configuration = await asyncio.to_thread(cluster.kubectl_json, "get", kind, prefix + name)
        found |= {hook["clientConfig"].get("caBundle", "") for hook in configuration["webhooks"]}
    return found


async def test_self_managed_certificates_work_from_an_empty_namespace_and_after_renewal(
    cluster: TestCluster, self_managed: Operator
) -> None:
    namespace = self_managed.namespace
    first = await secret_bundle(cluster, namespace)
    assert await ca_bundles(cluster, self_managed.prefix) == {
        base64.b64encode(first.ca_cert).decode()
    }
    assert await self_managed.serial() == serial_of(first.cert)
    await eventually_async(
        lambda: dry_run_admitted(cluster), timeout=30, what="admission from an empty namespace"
    )

    # A serving certificate with a fifth of its life left, as if issued 300 days ago.
    aged = certificates.issue(
        HOSTS,
        datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=300),
        ca=(first.ca_cert, first.ca_key),
    )
    data = {
        "tls.crt": base64.b64encode(aged.cert).decode(),
        "tls.key": base64.b64encode(aged.key).decode(),
    }
    await kubectl(
        cluster,
        "patch",
        "secret",
        "-n",
        namespace,
        SECRET,
        "--type=merge",
        "-p",
        json.dumps({"data": data}),
    )
    await self_managed.manager.refresh_certificate()  # what the periodic check does

    renewed = await secret_bundle(cluster, namespace)
    assert renewed.ca_cert == first.ca_cert  # the CA is kept: nothing to re-trust
    assert serial_of(renewed.cert) not in {serial_of(first.cert), serial_of(aged.cert)}
    assert not certificates.needs_renewal(renewed, HOSTS, datetime.datetime.now(datetime.UTC))
    assert await self_managed.serial() == serial_of(renewed.cert)
    assert await ca_bundles(cluster, self_managed.prefix) == {
        base64.b64encode(first.ca_cert).decode()
    }
    assert await dry_run_admitted(cluster)


async def patch_secret(cluster: TestCluster, namespace: str, **entries: bytes) -> None:
    data = {
        key.replace("_", "."): base64.b64encode(value).decode() for key, value in entries.items()
    }
    await kubectl(
        cluster,
        "patch",
        "secret",
        "-n",
        namespace,
        SECRET,
        "--type=merge",
        "-p",
        json.dumps({"data": data}),
    )


@pytest_asyncio.fixture(loop_scope="session")
async def checked_by_hand(
    cluster: TestCluster, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[tuple[Operator, client.HttpKubeClient]]:
    """A self-managed operator whose periodic check never comes during a test: the test
    decides when it checks."""
    operator, kube = await start_operator(
        cluster, tmp_path_factory, mode="self-managed", check_period=3600
    )
    try:
        yield operator, kube
    finally:
        await stop_operator(cluster, operator, kube)


async def test_a_secret_whose_key_does_not_match_is_repaired_and_admissions_work(
    cluster: TestCluster, checked_by_hand: tuple[Operator, client.HttpKubeClient]
) -> None:
    operator, _ = checked_by_hand
    first = await secret_bundle(cluster, operator.namespace)
    await eventually_async(lambda: dry_run_admitted(cluster), timeout=30, what="admission")
    stranger = certificates.issue(HOSTS, datetime.datetime.now(datetime.UTC))
    await patch_secret(cluster, operator.namespace, tls_key=stranger.key)

    await operator.manager.refresh_certificate()  # before: ssl.SSLError KEY_VALUES_MISMATCH

    repaired = await secret_bundle(cluster, operator.namespace)
    assert certificates.renewal(repaired, HOSTS, datetime.datetime.now(datetime.UTC)) is None
    assert repaired.ca_cert == first.ca_cert
    assert await operator.serial() == serial_of(repaired.cert)
    assert await dry_run_admitted(cluster)


@pytest.mark.parametrize("cause", ["ca.key lost", "Secret deleted"])
async def test_a_new_ca_is_trusted_before_it_is_served_and_the_old_one_until_the_overlap_ends(
    cluster: TestCluster, checked_by_hand: tuple[Operator, client.HttpKubeClient], cause: str
) -> None:
    operator, kube = checked_by_hand
    first = await secret_bundle(cluster, operator.namespace)
    await eventually_async(lambda: dry_run_admitted(cluster), timeout=30, what="admission")
    # The next check of any replica makes a new CA.
    if cause == "ca.key lost":
        stranger = certificates.issue(HOSTS, datetime.datetime.now(datetime.UTC))
        await patch_secret(cluster, operator.namespace, ca_key=stranger.ca_key)
    else:
        await kubectl(cluster, "delete", "secret", "-n", operator.namespace, SECRET)

    def other_replica(
        clock: Callable[[], datetime.datetime] = lambda: datetime.datetime.now(datetime.UTC),
    ) -> certificates.SelfManaged:
        """What another replica's periodic check runs."""
        return certificates.SelfManaged(
            kube,
            operator.namespace,
            SECRET,
            HOSTS,
            [
                (
                    resources.MUTATING_WEBHOOK_CONFIGURATIONS,
                    operator.prefix + webhooks.MUTATING_NAME,
                ),
                (
                    resources.VALIDATING_WEBHOOK_CONFIGURATIONS,
                    operator.prefix + webhooks.VALIDATING_NAME,
                ),
            ],
            clock=clock,
        )

    await other_replica().ensure()

    rotated = await secret_bundle(cluster, operator.namespace)
    assert rotated.ca_cert != first.ca_cert
    assert rotated.previous_ca == first.ca_cert
    assert await ca_bundles(cluster, operator.prefix) == {
        base64.b64encode(rotated.ca_cert + first.ca_cert).decode()
    }
    # This replica has not checked yet and still serves the certificate of the old CA: the
    # API server still trusts it (before: only the new CA was in the bundle).
    assert await operator.serial() == serial_of(first.cert)
    assert await dry_run_admitted(cluster)

    await operator.manager.refresh_certificate()
    assert await operator.serial() == serial_of(rotated.cert)
    # The bundle with the new CA was written before: only the API server's view may lag.
    await eventually_async(lambda: dry_run_admitted(cluster), timeout=10, what="the new CA")

    # After the overlap, the old CA leaves the Secret and the bundles; the new one is served.
    later = datetime.datetime.now(datetime.UTC) + certificates.CA_OVERLAP
    await other_replica(lambda: later).ensure()
    assert (await secret_bundle(cluster, operator.namespace)).previous_ca == b""
    assert await ca_bundles(cluster, operator.prefix) == {
        base64.b64encode(rotated.ca_cert).decode()
    }
    assert await dry_run_admitted(cluster)


def write_pair(directory: pathlib.Path, bundle: certificates.Bundle) -> None:
    # Like a Secret volume update: the new files appear at once, by rename.
    for name, content in (("tls.key", bundle.key), ("tls.crt", bundle.cert)):
        scratch = directory / f".{name}.new"
        scratch.write_bytes(content)
        scratch.replace(directory / name)


async def test_mounted_certificates_are_reloaded_and_a_broken_pair_is_not_served(
    cluster: TestCluster, tmp_path_factory: pytest.TempPathFactory
) -> None:
    now = datetime.datetime.now(datetime.UTC)
    first = certificates.issue(HOSTS, now)
    cert_dir = tmp_path_factory.mktemp("mounted")
    write_pair(cert_dir, first)
    operator, kube = await start_operator(
        cluster, tmp_path_factory, mode="mounted", cert_dir=cert_dir, ca_bundle=first.ca_cert
    )
    try:
        assert await operator.serial() == serial_of(first.cert)
        await eventually_async(
            lambda: dry_run_admitted(cluster), timeout=30, what="admission with the mounted pair"
        )

        # cert-manager renews: a new pair from the same CA is served without a restart.
        second = certificates.issue(HOSTS, now, ca=(first.ca_cert, first.ca_key))
        write_pair(cert_dir, second)

        async def serving_the_renewed_pair() -> bool:
            return await operator.serial() == serial_of(second.cert)

        await eventually_async(serving_the_renewed_pair, timeout=20, what="the renewed pair")
        assert await dry_run_admitted(cluster)

        # A half-written update (key of another pair): the last good pair stays served.
        stranger = certificates.issue(HOSTS, now, ca=(first.ca_cert, first.ca_key))
        (cert_dir / "tls.key").write_bytes(stranger.key)
        await asyncio.sleep(7)  # longer than the 5 s check period
        assert await operator.serial() == serial_of(second.cert)
        assert await dry_run_admitted(cluster)
    finally:
        await stop_operator(cluster, operator, kube)
