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
inteldeviceplugins-system.svc`` is 65); clients have matched SANs only for years. Names are
compared as clients compare them: DNS names without case or a final dot, IP addresses by
value (``FD00:0::1`` is ``fd00::1``).

A stored Secret is checked whole, not only for expiry: a key that does not belong to its
certificate, a serving certificate not signed by the stored CA, or anything that does not
parse is repaired (a new serving certificate from the CA while the CA and its key are sound,
else a new CA), instead of being served until the TLS library refuses it.

A new CA (the old one near expiry, broken, or the Secret gone) is trusted before it is used:
the CA bundle of the webhook configurations gets the new CA next to the previous one before
the Secret holding the new pair is written, so replicas still serving a certificate of the
previous CA (until their next check) keep being trusted. The previous CA stays in the Secret
(``ca-previous.crt``) and in the bundle for ``ca_overlap`` after the new CA's start, or until
it expires; then it is dropped from both.
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
BACKDATE = datetime.timedelta(minutes=5)
"""How far before their issue certificates start, for clocks slightly behind ours."""
CA_OVERLAP = datetime.timedelta(hours=1)
"""How long the previous CA stays trusted after a new one: every replica reads the Secret again
within a check period (10 s by default); this leaves room for one slow to start or cut off."""
PREVIOUS_CA_KEY = "ca-previous.crt"
"""The Secret's key for the previous CA during an overlap."""
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
    previous_ca: bytes = b""
    """The CA this one replaced, still trusted during the overlap (empty otherwise)."""

    def trusted(self) -> bytes:
        """The CA bundle clients need: the CA, and the previous one during an overlap."""
        return self.ca_cert + self.previous_ca


@dataclasses.dataclass(frozen=True)
class Renewal:
    """Why stored certificates must be replaced, and how."""

    why: str
    new_ca: bool
    """The CA itself must be replaced: unusable, or too close to its expiry."""
    broken: bool
    """Something was corrupt or inconsistent, not merely due."""


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


def canonical_host(host: str) -> str:
    """``host`` as certificates name it and clients compare it: an IP address in its canonical
    form (``FD00:0::1`` → ``fd00::1``), a DNS name in lower case without a final dot."""
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return host.removesuffix(".").lower()


def host_problem(host: str) -> str | None:
    """Why ``host`` cannot name a serving certificate, or None (an IP address always can)."""
    return None if _is_ip(host) else dns_name_problem(canonical_host(host))


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
    for host in dict.fromkeys(canonical_host(host) for host in hosts):
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
            .not_valid_before(now - BACKDATE)
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
        .not_valid_before(now - BACKDATE)
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
    """Whether the certificates must be replaced (see ``renewal``)."""
    return renewal(bundle, hosts, now) is not None


def renewal(bundle: Bundle, hosts: Sequence[str], now: datetime.datetime) -> Renewal | None:
    """Why ``bundle`` cannot be served as it is for ``hosts`` at ``now``, or None when it can:
    anything unparsable, a key that does not belong to its certificate, a serving certificate
    not issued by the CA, a host missing from its names, or an expiry too close."""
    problem = _ca_problem(bundle, now)
    if problem is not None:
        return Renewal(problem[0], new_ca=True, broken=problem[1])
    problem = _serving_problem(bundle, hosts, now)
    if problem is not None:
        return Renewal(problem[0], new_ca=False, broken=problem[1])
    return None


def not_after(pem: bytes) -> datetime.datetime | None:
    """When the first certificate of a PEM chain expires; None when it cannot be read.

    Read from the DER structure without cryptography, which a mounted certificate never
    needs otherwise: Certificate → tbsCertificate → [version], serial, signature, issuer,
    validity → notAfter (UTCTime or GeneralizedTime)."""
    begin, end = b"-----BEGIN CERTIFICATE-----", b"-----END CERTIFICATE-----"
    start = pem.find(begin)
    stop = pem.find(end, start)
    if start < 0 or stop < 0:
        return None
    try:
        der = base64.b64decode(b"".join(pem[start + len(begin) : stop].split()), validate=True)
        _, certificate, _ = _der(der, 0)
        _, tbs, _ = _der(der, certificate)
        tag, _, after = _der(der, tbs)
        element = after if tag == 0xA0 else tbs  # after the [0] version, if any
        for _ in range(3):  # serialNumber, signature, issuer
            _, _, element = _der(der, element)
        _, validity, _ = _der(der, element)
        _, at, after = _der(der, validity)  # notBefore
        tag, at, after = _der(der, after)
        text = der[at:after].decode("ascii")
        if tag == 0x17:  # UTCTime YYMMDDHHMMSSZ: years 1950-2049
            year = int(text[:2])
            text = f"{1900 + year if year >= 50 else 2000 + year}{text[2:]}"
        elif tag != 0x18:  # GeneralizedTime YYYYMMDDHHMMSSZ
            return None
        return datetime.datetime.strptime(text, "%Y%m%d%H%M%SZ").replace(tzinfo=datetime.UTC)
    except (ValueError, IndexError):
        return None


def _der(der: bytes, offset: int) -> tuple[int, int, int]:
    """(tag, start of contents, end of contents) of the DER element at ``offset``."""
    tag, length = der[offset], der[offset + 1]
    offset += 2
    if length & 0x80:
        size = length & 0x7F
        length = int.from_bytes(der[offset : offset + size], "big")
        offset += size
    if offset + length > len(der):
        raise ValueError("truncated DER")
    return tag, offset, offset + length


def _certificate(pem: bytes) -> x509.Certificate | None:
    from cryptography import x509  # noqa: PLC0415 - lazy: see above

    try:
        return x509.load_pem_x509_certificate(pem)
    except ValueError:
        return None


def _private_key(pem: bytes) -> ec.EllipticCurvePrivateKey | None:
    from cryptography.exceptions import UnsupportedAlgorithm  # noqa: PLC0415 - lazy: see above
    from cryptography.hazmat.primitives import serialization  # noqa: PLC0415 - lazy: see above
    from cryptography.hazmat.primitives.asymmetric import ec  # noqa: PLC0415 - lazy: see above

    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        return None
    return key if isinstance(key, ec.EllipticCurvePrivateKey) else None


def _belongs(key: ec.EllipticCurvePrivateKey, cert: x509.Certificate) -> bool:
    from cryptography.hazmat.primitives import serialization  # noqa: PLC0415 - lazy: see above
    from cryptography.hazmat.primitives.asymmetric import ec  # noqa: PLC0415 - lazy: see above

    public = cert.public_key()
    if not isinstance(public, ec.EllipticCurvePublicKey):
        return False
    der, info = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    return public.public_bytes(der, info) == key.public_key().public_bytes(der, info)


def _ca_problem(bundle: Bundle, now: datetime.datetime) -> tuple[str, bool] | None:
    """Why the CA cannot sign the next serving certificate, and whether it is broken."""
    ca = _certificate(bundle.ca_cert)
    if ca is None:
        return "ca.crt is not a PEM certificate", True
    key = _private_key(bundle.ca_key)
    if key is None:
        return "ca.key is not a PEM ECDSA private key", True
    if not _belongs(key, ca):
        return "ca.key is not the key of ca.crt", True
    if ca.not_valid_after_utc - now < SERVING_VALIDITY:
        return "the CA expires within a serving certificate's lifetime", False
    return None


def _serving_problem(
    bundle: Bundle, hosts: Sequence[str], now: datetime.datetime
) -> tuple[str, bool] | None:
    """Why the serving certificate must be issued again, and whether it is broken."""
    from cryptography import x509  # noqa: PLC0415 - lazy: see above
    from cryptography.exceptions import InvalidSignature  # noqa: PLC0415 - lazy: see above

    ca = _certificate(bundle.ca_cert)
    cert = _certificate(bundle.cert)
    if ca is None or cert is None:
        return "tls.crt is not a PEM certificate", True
    key = _private_key(bundle.key)
    if key is None:
        return "tls.key is not a PEM ECDSA private key", True
    if not _belongs(key, cert):
        return "tls.key is not the key of tls.crt", True
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        return "tls.crt is not signed by ca.crt", True
    try:
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return "tls.crt has no subject alternative names", True
    present = {canonical_host(name) for name in sans.get_values_for_type(x509.DNSName)}
    present |= {str(address) for address in sans.get_values_for_type(x509.IPAddress)}
    missing = [host for host in hosts if canonical_host(host) not in present]
    if missing:
        return f"tls.crt does not name {', '.join(missing)}", False
    lifetime = cert.not_valid_after_utc - cert.not_valid_before_utc
    if cert.not_valid_after_utc - now < lifetime * RENEW_WHEN_LEFT:
        return "tls.crt is near its expiry", False
    return None


def _overlap_over(bundle: Bundle, now: datetime.datetime, overlap: datetime.timedelta) -> bool:
    """Whether the previous CA need no longer be trusted: ``overlap`` has passed since the
    current CA was made, or the previous one expired or does not parse."""
    ca = _certificate(bundle.ca_cert)
    previous = _certificate(bundle.previous_ca)
    if ca is None or previous is None:
        return True
    made = ca.not_valid_before_utc + BACKDATE
    return now >= made + overlap or previous.not_valid_after_utc <= now


def _unexpired_certificate(pem: bytes, now: datetime.datetime) -> bytes:
    """The first certificate in ``pem`` if it parses and has not expired, else nothing."""
    from cryptography.hazmat.primitives import serialization  # noqa: PLC0415 - lazy: see above

    cert = _certificate(pem)
    if cert is None or cert.not_valid_after_utc <= now:
        return b""
    return cert.public_bytes(serialization.Encoding.PEM)


def _from_secret(secret: objects.JsonObject) -> Bundle:
    """The Secret's certificates and keys; an entry missing or not base64 reads as empty."""
    data = secret.get("data") or {}

    def value(key: str) -> bytes:
        try:
            return base64.b64decode(data.get(key) or "", validate=True)
        except ValueError:
            return b""

    return Bundle(
        ca_cert=value("ca.crt"),
        ca_key=value("ca.key"),
        cert=value("tls.crt"),
        key=value("tls.key"),
        previous_ca=value(PREVIOUS_CA_KEY),
    )


def _secret_data(bundle: Bundle) -> dict[str, str]:
    values = {
        "ca.crt": bundle.ca_cert,
        "ca.key": bundle.ca_key,
        "tls.crt": bundle.cert,
        "tls.key": bundle.key,
    }
    if bundle.previous_ca:
        values[PREVIOUS_CA_KEY] = bundle.previous_ca
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
    ca_overlap: datetime.timedelta = CA_OVERLAP
    """How long the previous CA stays trusted after a new one was made."""
    current: Bundle | None = None
    reported: str | None = None
    """The last problem logged, so that a repair that keeps failing is logged once."""

    async def ensure(self) -> Bundle:
        """Read, create, renew or repair the Secret; make the CA bundles trust every CA in use;
        return what to serve."""
        now = self.clock()
        try:
            secret = await self.kube.get(resources.SECRETS, self.secret_name, self.namespace)
        except errors.NotFound:
            secret = None
        stored = None if secret is None else _from_secret(secret)
        due = (
            Renewal("the Secret does not exist", new_ca=True, broken=False)
            if stored is None
            else renewal(stored, self.hosts, now)
        )
        if due is not None:
            bundle = await self._replace(secret, stored, due, now)
        else:
            assert stored is not None
            self.reported = None
            bundle = stored
            if stored.previous_ca and _overlap_over(stored, now, self.ca_overlap):
                bundle = await self._store(
                    secret,
                    dataclasses.replace(stored, previous_ca=b""),
                    "Dropped the previous webhook CA",
                    "its overlap ended",
                )
        await self._patch_ca_bundles(bundle.trusted())
        self.current = bundle
        return bundle

    async def _replace(
        self,
        secret: objects.JsonObject | None,
        stored: Bundle | None,
        due: Renewal,
        now: datetime.datetime,
    ) -> Bundle:
        if due.broken and due.why != self.reported:
            log.warning(
                "Found a broken webhook certificate Secret; repairing it",
                extra={"secret": self.secret_name, "why": due.why},
            )
            self.reported = due.why
        if not due.new_ca and stored is not None:
            # The CA stays, so clients with the current bundle trust the new certificate.
            fresh = issue(self.hosts, now, (stored.ca_cert, stored.ca_key))
            overlapping = stored.previous_ca and not _overlap_over(stored, now, self.ca_overlap)
            fresh = dataclasses.replace(
                fresh, previous_ca=stored.previous_ca if overlapping else b""
            )
            return await self._store(secret, fresh, "Renewed webhook certificate", due.why)
        fresh = dataclasses.replace(
            issue(self.hosts, now), previous_ca=await self._previous_ca(stored, now)
        )
        # Trusted before anyone serves it: the others load it from the Secret written next.
        await self._patch_ca_bundles(fresh.trusted())
        message = "Created webhook certificate Secret" if secret is None else "Replaced webhook CA"
        return await self._store(secret, fresh, message, due.why)

    async def _previous_ca(self, stored: Bundle | None, now: datetime.datetime) -> bytes:
        """The CA that certificates still served were signed by: the stored one, else the one
        this replica serves from, else the one the webhook configurations trust (the Secret
        was deleted); nothing when none is a certificate still valid."""
        for candidate in (stored, self.current):
            if candidate is not None and (pem := _unexpired_certificate(candidate.ca_cert, now)):
                return pem
        for resource, name in self.webhook_configurations:
            try:
                configuration = await self.kube.get(resource, name)
            except errors.NotFound:
                continue
            for webhook in configuration.get("webhooks") or []:
                trusted = (webhook.get("clientConfig") or {}).get("caBundle") or ""
                try:
                    pem = _unexpired_certificate(base64.b64decode(trusted, validate=True), now)
                except ValueError:
                    continue
                if pem:
                    return pem
        return b""

    async def _store(
        self, secret: objects.JsonObject | None, fresh: Bundle, message: str, why: str
    ) -> Bundle:
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
            else:
                body["metadata"]["resourceVersion"] = objects.resource_version(secret)
                await self.kube.replace(resources.SECRETS, self.secret_name, body, self.namespace)
        except (errors.AlreadyExists, errors.Conflict):
            # Another replica won the race: serve what it stored.
            stored = await self.kube.get(resources.SECRETS, self.secret_name, self.namespace)
            return _from_secret(stored)
        log.info(message, extra={"secret": self.secret_name, "why": why})
        return fresh

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
