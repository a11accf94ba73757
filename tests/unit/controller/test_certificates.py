"""Self-managed webhook certificates against the fake client."""

from __future__ import annotations

import base64
import binascii
import datetime
import logging
import ssl
from typing import Any

import pytest
from cryptography import x509

from certificate_checks import assert_serves
from deviceplugin_operator.admission import server
from deviceplugin_operator.controller import certificates
from deviceplugin_operator.kube import errors, resources
from fakes import FakeKubeClient

HOSTS = ["webhook.ns.svc", "127.0.0.1"]
NOW = datetime.datetime(2026, 11, 28, tzinfo=datetime.UTC)
WEBHOOKS = resources.VALIDATING_WEBHOOK_CONFIGURATIONS


def manager(kube: FakeKubeClient, now: datetime.datetime = NOW) -> certificates.SelfManaged:
    return certificates.SelfManaged(
        kube, "ops", "webhook-cert", HOSTS, [(WEBHOOKS, "validating")], clock=lambda: now
    )


async def make_configuration(kube: FakeKubeClient) -> None:
    await kube.create(
        WEBHOOKS,
        {
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "ValidatingWebhookConfiguration",
            "metadata": {"name": "validating"},
            "webhooks": [
                {"name": "a.example", "clientConfig": {"url": "https://127.0.0.1/a"}},
                {
                    "name": "b.example",
                    "clientConfig": {"url": "https://127.0.0.1/b", "caBundle": "b2xk"},
                },
            ],
        },
    )


def test_issued_certificate_names_every_host_and_chains_to_its_ca() -> None:
    bundle = certificates.issue(HOSTS, NOW)
    cert = x509.load_pem_x509_certificate(bundle.cert)
    ca = x509.load_pem_x509_certificate(bundle.ca_cert)
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert {str(n.value) for n in sans} == set(HOSTS)
    assert cert.issuer == ca.subject
    cert.verify_directly_issued_by(ca)
    assert not certificates.needs_renewal(bundle, HOSTS, NOW)


def test_renewal_is_due_before_expiry_and_for_new_hosts() -> None:
    bundle = certificates.issue(HOSTS, NOW)
    assert not certificates.needs_renewal(bundle, HOSTS, NOW + datetime.timedelta(days=200))
    assert certificates.needs_renewal(bundle, HOSTS, NOW + datetime.timedelta(days=250))
    assert certificates.needs_renewal(bundle, [*HOSTS, "other.svc"], NOW)


async def test_first_start_creates_the_secret_and_patches_every_ca_bundle() -> None:
    kube = FakeKubeClient()
    await make_configuration(kube)
    bundle = await manager(kube).ensure()
    secret = await kube.get(resources.SECRETS, "webhook-cert", "ops")
    assert base64.b64decode(secret["data"]["tls.crt"]) == bundle.cert
    configuration = await kube.get(WEBHOOKS, "validating")
    wanted = base64.b64encode(bundle.ca_cert).decode()
    assert [w["clientConfig"]["caBundle"] for w in configuration["webhooks"]] == [wanted, wanted]


async def test_an_unchanged_state_is_read_without_writes() -> None:
    kube = FakeKubeClient()
    await make_configuration(kube)
    first = await manager(kube).ensure()
    kube.reset_counts()
    second = await manager(kube).ensure()  # another replica, or the periodic check
    assert second == first
    assert kube.writes == 0


async def test_a_deleted_secret_is_recreated_and_the_bundle_repaired() -> None:
    kube = FakeKubeClient()
    await make_configuration(kube)
    first = await manager(kube).ensure()
    await kube.delete(resources.SECRETS, "webhook-cert", "ops")
    second = await manager(kube).ensure()
    assert second.ca_cert != first.ca_cert
    configuration = await kube.get(WEBHOOKS, "validating")
    # The old CA stays trusted for the overlap: replicas may still serve its certificate.
    assert [w["clientConfig"]["caBundle"] for w in configuration["webhooks"]] == [
        base64.b64encode(second.ca_cert + first.ca_cert).decode()
    ] * 2


async def test_rotation_keeps_the_ca_so_old_bundles_stay_valid() -> None:
    kube = FakeKubeClient()
    await make_configuration(kube)
    first = await manager(kube).ensure()
    later = NOW + datetime.timedelta(days=300)
    rotated = await manager(kube, later).ensure()
    assert rotated.cert != first.cert
    assert rotated.ca_cert == first.ca_cert
    assert not certificates.needs_renewal(rotated, HOSTS, later)


def test_the_subject_is_a_fixed_short_name_and_every_host_a_san() -> None:
    long_host = "intel-deviceplugins-webhook-service.inteldeviceplugins-system.svc"
    bundle = certificates.issue([long_host, "127.0.0.1"], NOW)
    assert_serves(bundle, [long_host, "127.0.0.1"], NOW)
    cert = x509.load_pem_x509_certificate(bundle.cert)
    assert cert.subject.rfc4514_string() == f"CN={certificates.SERVING_COMMON_NAME}"


def test_service_hosts_leave_out_what_exceeds_the_dns_limits() -> None:
    assert certificates.service_hosts("svc", "ns") == (
        "svc",
        "svc.ns",
        "svc.ns.svc",
        "svc.ns.svc.cluster.local",
    )
    # Only a cluster domain nobody uses makes a name too long; the shorter ones stay.
    domain = ".".join(["d" * 63] * 3)
    assert certificates.service_hosts("s" * 63, "n" * 63, domain) == (
        "s" * 63,
        f"{'s' * 63}.{'n' * 63}",
        f"{'s' * 63}.{'n' * 63}.svc",
    )


@pytest.mark.parametrize(
    ("host", "problem"),
    [
        ("a" * 64 + ".svc", "label"),
        (".".join(["a" * 63] * 4) + ".x", "253"),
        ("a..b", "empty label"),
    ],
)
def test_a_host_that_cannot_be_a_dns_name_is_refused_by_name(host: str, problem: str) -> None:
    assert problem in (certificates.host_problem(host) or "")
    with pytest.raises(ValueError, match=problem):
        certificates.issue([host], NOW)


def test_ip_addresses_are_ip_sans() -> None:
    assert certificates.host_problem("fd00::1") is None
    bundle = certificates.issue(["fd00::1"], NOW)
    cert = x509.load_pem_x509_certificate(bundle.cert)
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [str(ip) for ip in sans.get_values_for_type(x509.IPAddress)] == ["fd00::1"]


def secret_entries(kube: FakeKubeClient) -> dict[str, bytes]:
    """The Secret's entries decoded (one that is not base64 reads as empty)."""
    (secret,) = kube.stored(resources.SECRETS)
    entries = {}
    for key, value in secret["data"].items():
        try:
            entries[key] = base64.b64decode(value, validate=True)
        except binascii.Error:
            entries[key] = b""
    return entries


async def corrupt(kube: FakeKubeClient, **entries: str) -> None:
    """Overwrite Secret entries with raw base64 strings, as ``kubectl patch`` would."""
    (secret,) = kube.stored(resources.SECRETS)
    secret["data"].update(entries)
    await kube.replace(resources.SECRETS, "webhook-cert", secret, "ops")


def b64(pem: bytes) -> str:
    return base64.b64encode(pem).decode()


def servable(bundle: certificates.Bundle) -> None:
    """The pair loads into a TLS server (no KEY_VALUES_MISMATCH) and chains to its CA."""
    server.load_pem(ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER), bundle.cert, bundle.key)
    assert_serves(bundle, HOSTS, NOW)


OTHER = certificates.issue(HOSTS, NOW)  # a pair of another CA


@pytest.mark.parametrize(
    ("entries", "why", "ca_kept"),
    [
        pytest.param(
            {"tls.key": b64(OTHER.key)},
            "tls.key is not the key of tls.crt",
            True,
            id="key-mismatch",
        ),
        pytest.param(
            {"tls.crt": b64(OTHER.cert), "tls.key": b64(OTHER.key)},
            "tls.crt is not signed by ca.crt",
            True,
            id="foreign-serving-cert",
        ),
        pytest.param(
            {"ca.key": b64(OTHER.ca_key)},
            "ca.key is not the key of ca.crt",
            False,
            id="ca-key-mismatch",
        ),
        pytest.param(
            {"tls.crt": b64(b"-----BEGIN CERTIFICATE-----\nnope\n-----END CERTIFICATE-----\n")},
            "tls.crt is not a PEM certificate",
            True,
            id="tls-crt-garbage",
        ),
        pytest.param(
            {"tls.key": b64(b"not a key")},
            "tls.key is not a PEM ECDSA private key",
            True,
            id="tls-key-garbage",
        ),
        pytest.param(
            {"ca.crt": b64(b"not a certificate")},
            "ca.crt is not a PEM certificate",
            False,
            id="ca-crt-garbage",
        ),
        pytest.param(
            {"ca.key": b64(b"")}, "ca.key is not a PEM ECDSA private key", False, id="ca-key-empty"
        ),
        pytest.param(
            {"tls.key": "%%% not base64"},
            "tls.key is not a PEM ECDSA private key",
            True,
            id="tls-key-not-base64",
        ),
    ],
)
async def test_a_corrupted_secret_is_repaired_and_what_was_wrong_logged_once(
    entries: dict[str, str], why: str, ca_kept: bool, caplog: pytest.LogCaptureFixture
) -> None:
    kube = FakeKubeClient()
    await make_configuration(kube)
    first = await manager(kube).ensure()
    await corrupt(kube, **entries)
    stored = secret_entries(kube)
    broken = certificates.Bundle(
        stored["ca.crt"], stored["ca.key"], stored["tls.crt"], stored.get("tls.key", b"")
    )
    assert certificates.needs_renewal(broken, HOSTS, NOW)

    checks = manager(kube)  # a replica starting on the broken Secret
    repaired = await checks.ensure()

    servable(repaired)
    assert not certificates.needs_renewal(repaired, HOSTS, NOW)
    assert secret_entries(kube)["tls.crt"] == repaired.cert
    assert (repaired.ca_cert == first.ca_cert) is ca_kept
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert [(r.getMessage(), r.__dict__["why"]) for r in warnings] == [
        ("Found a broken webhook certificate Secret; repairing it", why)
    ]
    kube.reset_counts()
    assert await checks.ensure() == repaired
    assert kube.writes == 0


async def test_a_repair_that_keeps_failing_is_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    kube = FakeKubeClient()
    await make_configuration(kube)
    await manager(kube).ensure()
    await corrupt(kube, **{"tls.key": b64(OTHER.key)})
    checks = manager(kube)
    refused = errors.Forbidden(403, "Forbidden", "secrets is forbidden")
    kube.fail("update", refused, times=3)
    for _ in range(3):
        with pytest.raises(errors.Forbidden):
            await checks.ensure()
    assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 1
    servable(await checks.ensure())


@pytest.mark.parametrize(
    "hosts",
    [
        pytest.param(["FD00:0::1", "127.0.0.1"], id="ipv6-not-canonical"),
        pytest.param(["Webhook.NS.svc.", "127.0.0.1"], id="dns-case-and-final-dot"),
    ],
)
async def test_hosts_written_differently_from_the_sans_need_no_renewal(hosts: list[str]) -> None:
    kube = FakeKubeClient()
    await make_configuration(kube)
    checks = certificates.SelfManaged(
        kube, "ops", "webhook-cert", hosts, [(WEBHOOKS, "validating")], clock=lambda: NOW
    )
    first = await checks.ensure()
    kube.reset_counts()

    second = await checks.ensure()  # the next periodic check

    assert kube.writes == 0
    assert second == first
    assert not certificates.needs_renewal(first, hosts, NOW)
    assert_serves(first, [certificates.canonical_host(host) for host in hosts], NOW)


class BundleLog(FakeKubeClient):
    """Notes every CA bundle patched into a webhook configuration and every Secret write, in
    order."""

    def __init__(self) -> None:
        super().__init__()
        self.writes_seen: list[tuple[str, list[bytes]]] = []

    async def patch(self, resource: resources.Resource, name: str, body: Any, **kwargs: Any) -> Any:
        if resource == WEBHOOKS:
            (value,) = {operation["value"] for operation in body}
            self.writes_seen.append(("bundle", pems(base64.b64decode(value))))
        return await super().patch(resource, name, body, **kwargs)

    async def create(
        self, resource: resources.Resource, body: Any, *args: Any, **kwargs: Any
    ) -> Any:
        if resource == resources.SECRETS:
            self.writes_seen.append(("secret", pems(base64.b64decode(body["data"]["ca.crt"]))))
        return await super().create(resource, body, *args, **kwargs)

    async def replace(
        self, resource: resources.Resource, name: str, body: Any, *args: Any, **kwargs: Any
    ) -> Any:
        if resource == resources.SECRETS:
            self.writes_seen.append(("secret", pems(base64.b64decode(body["data"]["ca.crt"]))))
        return await super().replace(resource, name, body, *args, **kwargs)


def pems(bundle: bytes) -> list[bytes]:
    """The certificates of a PEM bundle, each as PEM."""
    marker = b"-----END CERTIFICATE-----\n"
    return [part + marker for part in bundle.split(marker) if part.strip()]


async def test_a_new_ca_is_trusted_next_to_the_old_before_it_is_served_then_the_old_dropped() -> (
    None
):
    kube = BundleLog()
    await make_configuration(kube)
    first = await manager(kube).ensure()
    old_ca = first.ca_cert
    kube.writes_seen.clear()

    # Less than a serving certificate's lifetime left on the CA: a new one is made.
    rotation = (
        NOW + certificates.CA_VALIDITY - certificates.SERVING_VALIDITY + datetime.timedelta(days=1)
    )
    rotated = await manager(kube, rotation).ensure()
    new_ca = rotated.ca_cert
    assert new_ca != old_ca
    assert kube.writes_seen == [
        ("bundle", [new_ca, old_ca]),  # trusted first ...
        ("secret", [new_ca]),  # ... then handed to every replica
    ]
    assert secret_entries(kube)[certificates.PREVIOUS_CA_KEY] == old_ca

    # Other replicas and later checks during the overlap keep both, writing nothing.
    kube.writes_seen.clear()
    kube.reset_counts()
    for later in (rotation, rotation + certificates.CA_OVERLAP - datetime.timedelta(minutes=1)):
        assert (await manager(kube, later).ensure()).trusted() == new_ca + old_ca
    assert kube.writes == 0

    # After the overlap the old CA goes: from the Secret, then from the bundles.
    after = rotation + certificates.CA_OVERLAP
    dropped = await manager(kube, after).ensure()
    assert dropped.trusted() == new_ca
    assert kube.writes_seen == [("secret", [new_ca]), ("bundle", [new_ca])]
    assert certificates.PREVIOUS_CA_KEY not in secret_entries(kube)
    kube.reset_counts()
    await manager(kube, after).ensure()
    assert kube.writes == 0


@pytest.mark.parametrize("checker", ["the replica that served", "a replica started since"])
async def test_a_deleted_secret_gets_a_new_ca_trusted_next_to_the_one_still_served(
    checker: str,
) -> None:
    kube = BundleLog()
    await make_configuration(kube)
    replica = manager(kube)
    first = await replica.ensure()
    await kube.delete(resources.SECRETS, "webhook-cert", "ops")
    kube.writes_seen.clear()
    if checker == "a replica started since":
        replica = manager(kube)  # knows the old CA only from the webhook configurations

    second = await replica.ensure()

    assert second.ca_cert != first.ca_cert
    assert kube.writes_seen == [
        ("bundle", [second.ca_cert, first.ca_cert]),
        ("secret", [second.ca_cert]),
    ]
