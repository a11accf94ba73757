"""The judge of a serving certificate: does a strict TLS client accept it for each name?"""

from __future__ import annotations

import datetime
import ipaddress
from collections.abc import Sequence

from cryptography import x509
from cryptography.x509 import verification
from cryptography.x509.oid import NameOID

from deviceplugin_operator.controller import certificates


def assert_serves(
    bundle: certificates.Bundle, hosts: Sequence[str], now: datetime.datetime
) -> None:
    """``bundle`` parses, names every host in its SANs, keeps its subject within the X.509
    limits, and chains to its CA for each host under the Web PKI rules (cryptography's
    verifier, stricter than Go's, which the API server uses)."""
    cert = x509.load_pem_x509_certificate(bundle.cert)
    ca = x509.load_pem_x509_certificate(bundle.ca_cert)
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    named = {str(name.value) for name in sans}
    assert set(hosts) <= named, f"missing from the SANs: {set(hosts) - named}"
    for attribute in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME):
        assert len(str(attribute.value)) <= certificates.MAX_COMMON_NAME
    for name in sans.get_values_for_type(x509.DNSName):
        assert len(name) <= certificates.MAX_DNS_NAME, name
        assert all(len(label) <= certificates.MAX_DNS_LABEL for label in name.split(".")), name
    store = verification.Store([ca])
    for host in hosts:
        try:
            subject: x509.verification.Subject = x509.IPAddress(ipaddress.ip_address(host))
        except ValueError:
            subject = x509.DNSName(host)
        verifier = (
            verification.PolicyBuilder().store(store).time(now).build_server_verifier(subject)
        )
        chain = verifier.verify(cert, [])
        assert chain[-1] == ca, host
