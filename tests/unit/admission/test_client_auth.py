"""The opt-in client authentication of the webhook server (issue 14, point 8) without a
cluster: the flags reach the options, the TLS context requires a certificate of the CA, an
unusable CA file is one clear error, and the names of a peer certificate are read.
tests/envtest/test_webhook_client_auth.py runs it against a real kube-apiserver."""

from __future__ import annotations

import argparse
import datetime
import pathlib
import ssl

import pytest

from deviceplugin_operator import cli
from deviceplugin_operator.admission import server
from deviceplugin_operator.controller import certificates
from deviceplugin_operator.manager import options as manager_options
from deviceplugin_operator.manager import startup, webhook_certificates


def test_client_authentication_is_opt_in_and_reaches_the_options(tmp_path: pathlib.Path) -> None:
    default = cli.build_options(cli._parser().parse_args(["run"]), {})
    assert default.webhook_client_ca is None
    assert default.webhook_client_names == ()
    args = cli._parser().parse_args(
        [
            "run",
            f"--webhook-client-ca={tmp_path / 'ca.crt'}",
            "--webhook-client-names=kube-apiserver, front-proxy",
        ]
    )
    chosen = cli.build_options(args, {})
    assert chosen.webhook_client_ca == str(tmp_path / "ca.crt")
    assert chosen.webhook_client_names == ("kube-apiserver", "front-proxy")
    with pytest.raises(argparse.ArgumentTypeError, match="at least one name"):
        cli.parse_client_names(" , ")


def test_without_the_flag_no_client_certificate_is_asked_for() -> None:
    context = webhook_certificates.client_authenticating_context(manager_options.Options())
    assert context.verify_mode == ssl.CERT_NONE


def test_with_the_flag_a_client_certificate_of_the_ca_is_required(tmp_path: pathlib.Path) -> None:
    bundle = certificates.issue(["127.0.0.1"], datetime.datetime.now(datetime.UTC))
    ca = tmp_path / "ca.crt"
    ca.write_bytes(bundle.ca_cert)
    context = webhook_certificates.client_authenticating_context(
        manager_options.Options(webhook_client_ca=str(ca))
    )
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert [c["subject"] for c in context.get_ca_certs()], "the CA is loaded"


@pytest.mark.parametrize("content", [None, b"not a certificate\n"])
def test_an_unusable_client_ca_is_one_clear_error(
    tmp_path: pathlib.Path, content: bytes | None
) -> None:
    ca = tmp_path / "ca.crt"
    if content is not None:
        ca.write_bytes(content)
    with pytest.raises(startup.StartupError, match=r"--webhook-client-ca=.*ca\.crt: cannot load"):
        webhook_certificates.client_authenticating_context(
            manager_options.Options(webhook_client_ca=str(ca))
        )


def test_client_names_are_the_common_name_and_dns_names() -> None:
    peer = {
        "subject": ((("organizationName", "system:masters"),), (("commonName", "apiserver"),)),
        "subjectAltName": (("DNS", "front-proxy"), ("IP Address", "10.0.0.1")),
    }
    assert server.client_names(peer) == {"apiserver", "front-proxy"}
    assert server.client_names(None) == set()
    assert server.client_names({}) == set()
