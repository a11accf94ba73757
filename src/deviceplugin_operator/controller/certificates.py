"""Self-managed webhook certificates: no cert-manager needed.

The operator keeps a CA and a serving certificate in one Secret of its own namespace
(``ca.crt``, ``tls.crt``, ``tls.key``), so that every replica serves the same certificate,
and writes the CA bundle into its own webhook configurations. The first replica to start
creates the Secret (the others read it after losing the create race); any replica renews
it once less than a third of its lifetime is left, well before expiry. Writes happen only
when something changed: a periodic check of an unchanged state makes read requests only.

Every name a client may use is a subject alternative name (DNS names within the DNS limits of
253 characters and 63 per label, IP addresses as IP entries); the subject common name is a
fixed short name, never a host. X.509 caps a common name at 64 characters, and the Service's
full name with a long namespace is longer (``intel-deviceplugins-webhook-service.
inteldeviceplugins-system.svc`` is 65); clients have matched SANs only for years.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime
import ipaddress
import logging
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from deviceplugin_operator.kube import client, errors, objects, resources

if TYPE_CHECKING:
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import ec

# cryptography (~8 MiB resident) is imported by the functions that use it: an operator whose
# certificates are mounted (cert-manager, OpenShift) never loads it.

log = logging.getLogger(__name__)

CA_VALIDITY = datetime.timedelta(days=3650)
SERVING_VALIDITY = datetime.timedelta(days=365)
RENEW_WHEN_LEFT = 1 / 3
"""Renew once less than this share of the serving certificate's lifetime is left."""
SERVING_COMMON_NAME = "intel-deviceplugin-operator-webhook"
"""Subject of the serving certificates: a fixed name, not a host (see above)."""
CA_COMMON_NAME = "intel-deviceplugin-operator-ca"
MAX_COMMON_NAME = 64
"""RFC 5280's ub-common-name."""
MAX_DNS_NAME = 253
MAX_DNS_LABEL = 63


@dataclasses.dataclass(frozen=True)
class Bundle:
    """A CA and a serving certificate signed by it, all PEM."""

    ca_cert: bytes
    ca_key: bytes
    cert: bytes
    key: bytes


def _key() -> ec.EllipticCurvePrivateKey:
    from cryptography.hazmat.primitives.asymmetric import ec  # noqa: PLC0415 - lazy: see above

    return ec.generate_private_key(ec.SECP256R1())


def _pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    from cryptography.hazmat.primitives import serialization  # noqa: PLC0415 - lazy: see above

    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def dns_name_problem(name: str) -> str | None:
    """Why ``name`` cannot be a DNS name of a certificate (too long, an empty or too long
    label), or None when it can."""
    if not name:
        return "it is empty"
    if len(name) > MAX_DNS_NAME:
        return f"it has {len(name)} characters, more than the {MAX_DNS_NAME} of a DNS name"
    for label in name.split("."):
        if not label:
            return "it has an empty label"
        if len(label) > MAX_DNS_LABEL:
            return f"its label {label!r} has more than {MAX_DNS_LABEL} characters"
    return None


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def host_problem(host: str) -> str | None:
    """Why ``host`` cannot name a serving certificate, or None (an IP address always can)."""
    return None if _is_ip(host) else dns_name_problem(host)


def service_hosts(
    service: str, namespace: str, cluster_domain: str = "cluster.local"
) -> tuple[str, ...]:
    """The names a Service is reached by, short to fully qualified, leaving out any that
    exceeds a DNS limit: ``service``, ``service.namespace``, ``service.namespace.svc`` (the
    name the API server calls a webhook by) and ``service.namespace.svc.<cluster domain>``."""
    names = (
        service,
        f"{service}.{namespace}",
        f"{service}.{namespace}.svc",
        f"{service}.{namespace}.svc.{cluster_domain}",
    )
    return tuple(name for name in names if dns_name_problem(name) is None)


def _sans(hosts: Sequence[str]) -> list[x509.GeneralName]:
    from cryptography import x509  # noqa: PLC0415 - lazy: see above

    names: list[x509.GeneralName] = []
    for host in hosts:
        if _is_ip(host):
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
            continue
        problem = dns_name_problem(host)
        if problem is not None:
            raise ValueError(f"{host!r} cannot name a certificate: {problem}")
        names.append(x509.DNSName(host))
    return names


def _serving_key_usage() -> x509.KeyUsage:
    from cryptography import x509  # noqa: PLC0415 - lazy: see above

    return x509.KeyUsage(
        digital_signature=True,
        key_cert_sign=False,
        crl_sign=False,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        encipher_only=False,
        decipher_only=False,
    )


def issue(
    hosts: Sequence[str],
    now: datetime.datetime,
    ca: tuple[bytes, bytes] | None = None,
    *,
    common_name: str = SERVING_COMMON_NAME,
) -> Bundle:
    """A serving certificate for ``hosts`` (its SANs) signed by ``ca`` (cert, key PEM), or by
    a new CA; ValueError when there is no host or one cannot be named in a certificate."""
    from cryptography import x509  # noqa: PLC0415 - lazy: see above
    from cryptography.hazmat.primitives import hashes, serialization  # noqa: PLC0415 - lazy: see above
    from cryptography.hazmat.primitives.asymmetric import ec  # noqa: PLC0415 - lazy: see above
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID  # noqa: PLC0415 - lazy: see above

    if not hosts:
        raise ValueError("a serving certificate needs at least one host")
    sans = x509.SubjectAlternativeName(_sans(hosts))
    if ca is None:
        ca_key = _key()
        ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, CA_COMMON_NAME)])
        ca_cert = (
            x509.CertificateBuilder()
            .subject_name(ca_name)
            .issuer_name(ca_name)
            .public_key(ca_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + CA_VALIDITY)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False
            )
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    key_cert_sign=True,
                    crl_sign=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .sign(ca_key, hashes.SHA256())
        )
        ca_pems = (ca_cert.public_bytes(serialization.Encoding.PEM), _pem(ca_key))
    else:
        ca_pems = ca
    signer_cert = x509.load_pem_x509_certificate(ca_pems[0])
    signer_key = serialization.load_pem_private_key(ca_pems[1], password=None)
    if not isinstance(signer_key, ec.EllipticCurvePrivateKey):
        raise ValueError("the CA key is not an ECDSA key")
    key = _key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .issuer_name(signer_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + SERVING_VALIDITY)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_serving_key_usage(), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(sans, critical=False)
        # RFC 5280 asks for it in every certificate a CA issues; strict verifiers insist.
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(signer_key.public_key()),
            critical=False,
        )
        .sign(signer_key, hashes.SHA256())
    )
    return Bundle(ca_pems[0], ca_pems[1], cert.public_bytes(serialization.Encoding.PEM), _pem(key))


def needs_renewal(bundle: Bundle, hosts: Sequence[str], now: datetime.datetime) -> bool:
    """Whether the serving certificate is near expiry, broken, or lacks one of ``hosts``."""
    from cryptography import x509  # noqa: PLC0415 - lazy: see above

    try:
        cert = x509.load_pem_x509_certificate(bundle.cert)
        ca = x509.load_pem_x509_certificate(bundle.ca_cert)
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (ValueError, x509.ExtensionNotFound):
        return True
    present = {str(name.value) for name in sans}
    if not set(hosts) <= present:
        return True
    lifetime = cert.not_valid_after_utc - cert.not_valid_before_utc
    left = cert.not_valid_after_utc - now
    ca_left = ca.not_valid_after_utc - now
    return left < lifetime * RENEW_WHEN_LEFT or ca_left < lifetime


def _from_secret(secret: objects.JsonObject) -> Bundle | None:
    data = secret.get("data") or {}
    try:
        return Bundle(
            *(base64.b64decode(data[key]) for key in ("ca.crt", "ca.key", "tls.crt", "tls.key"))
        )
    except (KeyError, ValueError):
        return None


def _secret_data(bundle: Bundle) -> dict[str, str]:
    values = {
        "ca.crt": bundle.ca_cert,
        "ca.key": bundle.ca_key,
        "tls.crt": bundle.cert,
        "tls.key": bundle.key,
    }
    return {key: base64.b64encode(value).decode() for key, value in values.items()}


@dataclasses.dataclass
class SelfManaged:
    """Keeps the certificate Secret and the webhook configurations' CA bundle current."""

    kube: client.KubeClient
    namespace: str
    secret_name: str
    hosts: Sequence[str]
    webhook_configurations: Sequence[tuple[resources.Resource, str]]
    """(Mutating/ValidatingWebhookConfiguration resource, name) whose caBundle is ours."""
    clock: Callable[[], datetime.datetime] = lambda: datetime.datetime.now(datetime.UTC)
    current: Bundle | None = None

    async def ensure(self) -> Bundle:
        """Read, create or renew the Secret; patch the CA bundles; return what to serve."""
        now = self.clock()
        try:
            secret = await self.kube.get(resources.SECRETS, self.secret_name, self.namespace)
        except errors.NotFound:
            secret = None
        bundle = None if secret is None else _from_secret(secret)
        if bundle is None or needs_renewal(bundle, self.hosts, now):
            # Keep the CA across a renewal while it is valid, so clients that still have the
            # old bundle trust the new serving certificate.
            keep_ca = bundle is not None and not _ca_expiring(bundle, now)
            fresh = issue(
                self.hosts, now, (bundle.ca_cert, bundle.ca_key) if keep_ca and bundle else None
            )
            bundle = await self._store(secret, fresh)
        await self._patch_ca_bundles(bundle.ca_cert)
        self.current = bundle
        return bundle

    async def _store(self, secret: objects.JsonObject | None, fresh: Bundle) -> Bundle:
        body: objects.JsonObject = {
            "apiVersion": "v1",
            "kind": "Secret",
            "type": "kubernetes.io/tls",
            "metadata": {
                "name": self.secret_name,
                "namespace": self.namespace,
                "labels": {"app.kubernetes.io/managed-by": "intel-deviceplugin-operator"},
            },
            "data": _secret_data(fresh),
        }
        try:
            if secret is None:
                await self.kube.create(resources.SECRETS, body, self.namespace)
                log.info("Created webhook certificate Secret", extra={"secret": self.secret_name})
            else:
                body["metadata"]["resourceVersion"] = objects.resource_version(secret)
                await self.kube.replace(resources.SECRETS, self.secret_name, body, self.namespace)
                log.info("Renewed webhook certificate", extra={"secret": self.secret_name})
            return fresh
        except (errors.AlreadyExists, errors.Conflict):
            # Another replica won the race: serve what it stored.
            stored = await self.kube.get(resources.SECRETS, self.secret_name, self.namespace)
            winner = _from_secret(stored)
            if winner is None:
                raise
            return winner

    async def _patch_ca_bundles(self, ca_pem: bytes) -> None:
        wanted = base64.b64encode(ca_pem).decode()
        for resource, name in self.webhook_configurations:
            try:
                configuration = await self.kube.get(resource, name)
            except errors.NotFound:
                continue
            webhooks = configuration.get("webhooks") or []
            if all((w.get("clientConfig") or {}).get("caBundle") == wanted for w in webhooks):
                continue
            patch = [
                {
                    "op": "replace" if "caBundle" in (w.get("clientConfig") or {}) else "add",
                    "path": f"/webhooks/{index}/clientConfig/caBundle",
                    "value": wanted,
                }
                for index, w in enumerate(webhooks)
            ]
            await self.kube.patch(resource, name, patch, patch_type=client.PatchType.JSON)
            log.info("Patched webhook CA bundle", extra={"configuration": name})


def _ca_expiring(bundle: Bundle, now: datetime.datetime) -> bool:
    from cryptography import x509  # noqa: PLC0415 - lazy: see above

    try:
        ca = x509.load_pem_x509_certificate(bundle.ca_cert)
    except ValueError:
        return True
    return ca.not_valid_after_utc - now < SERVING_VALIDITY
