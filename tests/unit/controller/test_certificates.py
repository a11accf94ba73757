"""Self-managed webhook certificates against the fake client."""

from __future__ import annotations

import base64
import datetime

import pytest
from cryptography import x509

from certificate_checks import assert_serves
from deviceplugin_operator.controller import certificates
from deviceplugin_operator.kube import resources
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
    assert (
        configuration["webhooks"][0]["clientConfig"]["caBundle"]
        == base64.b64encode(second.ca_cert).decode()
    )


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
