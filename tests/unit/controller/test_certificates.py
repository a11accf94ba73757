"""Self-managed webhook certificates against the fake client."""

from __future__ import annotations

import base64
import datetime

from cryptography import x509

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
