"""Issue 14, point 8: the opt-in client authentication of the webhook server, for real.

A control plane of its own whose kube-apiserver gets an AdmissionConfiguration
(``--admission-control-config-file``) that gives the ValidatingAdmissionWebhook and
MutatingAdmissionWebhook plugins a kubeconfig with a client certificate; the operator runs
with ``--webhook-client-ca`` (the CA of that certificate) and ``--webhook-client-names``.
Admissions through the API server still work (defaulting and a denial), while a direct POST
without a client certificate fails in the handshake, one with a certificate of another CA
too, and one with a certificate of the right CA but another name gets a 403. The same POST with
the API server's certificate is answered: the control that the refusals are the certificate's.
"""

from __future__ import annotations

import dataclasses
import datetime
import http.client
import json
import pathlib
import socket
import ssl
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from clusters import NODE_SPECS, TestCluster
from deviceplugin_operator import devices
from deviceplugin_operator.admission import endpoints
from localcluster import cluster as localcluster
from operators import Operator, start_operator
from reliability.admission_support import (
    CRDS,
    create,
    plural_path,
    registered_webhooks,
    resource,
    wait_webhooks_serving,
)

pytestmark = pytest.mark.cluster

PREFIX = "client-auth-"
SECRET = "client-auth-cert"
NAMESPACE = "client-auth"
APISERVER_NAME = "kube-apiserver-webhook-client"
GPU = devices.KINDS["gpu"]


@dataclasses.dataclass
class Pair:
    cert: pathlib.Path
    key: pathlib.Path


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def make_ca(directory: pathlib.Path, name: str) -> tuple[Pair, x509.Certificate, Any]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    pair = Pair(directory / f"{name}.crt", directory / f"{name}.key")
    pair.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    pair.key.write_bytes(_key_pem(key))
    return pair, cert, key


def make_client(directory: pathlib.Path, name: str, ca: tuple[x509.Certificate, Any]) -> Pair:
    ca_cert, ca_key = ca
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    pair = Pair(directory / f"{name}.crt", directory / f"{name}.key")
    pair.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    pair.key.write_bytes(_key_pem(key))
    return pair


def admission_configuration(directory: pathlib.Path, client: Pair) -> pathlib.Path:
    """What docs/install.md tells an administrator to give kube-apiserver."""
    kubeconfig = directory / "webhook-client.kubeconfig"
    kubeconfig.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "users": [
                    {
                        "name": "*",
                        "user": {
                            "client-certificate": str(client.cert),
                            "client-key": str(client.key),
                        },
                    }
                ],
            }
        )
    )
    plugin_configuration = {
        "apiVersion": "apiserver.config.k8s.io/v1",
        "kind": "WebhookAdmissionConfiguration",
        "kubeConfigFile": str(kubeconfig),
    }
    path = directory / "admission.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "apiserver.config.k8s.io/v1",
                "kind": "AdmissionConfiguration",
                "plugins": [
                    {"name": name, "configuration": plugin_configuration}
                    for name in ("ValidatingAdmissionWebhook", "MutatingAdmissionWebhook")
                ],
            }
        )
    )
    return path


@dataclasses.dataclass
class Setup:
    cluster: TestCluster
    operator: Operator
    apiserver_client: Pair
    stranger: Pair
    foreign: Pair


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    directory = tmp_path_factory.mktemp("client-auth")
    ca_pair, ca_cert, ca_key = make_ca(directory, "webhook-client-ca")
    apiserver_client = make_client(directory, APISERVER_NAME, (ca_cert, ca_key))
    stranger = make_client(directory, "someone-else", (ca_cert, ca_key))
    _, other_cert, other_key = make_ca(directory, "other-ca")
    foreign = make_client(directory, APISERVER_NAME + "-foreign", (other_cert, other_key))
    admission = admission_configuration(directory, apiserver_client)
    handle = localcluster.Cluster(
        directory / "cluster", apiserver_args=[f"--admission-control-config-file={admission}"]
    )
    handle.up(NODE_SPECS[:1])
    try:
        cluster = TestCluster(handle, NODE_SPECS[:1])
        cluster.install_crds(CRDS)
        cluster.kubectl("create", "namespace", NAMESPACE)
        operator = start_operator(
            cluster.kubeconfig,
            NAMESPACE,
            directory / "operator.log",
            f"--webhook-client-ca={ca_pair.cert}",
            f"--webhook-client-names=other-name,{APISERVER_NAME}",
            devices=("gpu",),
            webhook_prefix=PREFIX,
            webhook_secret=SECRET,
        )
        try:
            with registered_webhooks(cluster, operator.webhook_port, PREFIX, ["gpu"]):
                operator.wait_ready()
                wait_webhooks_serving(cluster, NAMESPACE, SECRET, PREFIX)
                yield Setup(cluster, operator, apiserver_client, stranger, foreign)
        finally:
            operator.terminate()
            assert not operator.tracebacks()
    finally:
        handle.down()


def review(uid: str) -> bytes:
    obj = resource(GPU, "direct", {"image": "intel/intel-gpu-plugin:0.36.0"})
    return json.dumps(
        {
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "request": {
                "uid": uid,
                "kind": {
                    "group": "deviceplugin.intel.com",
                    "version": "v1",
                    "kind": "GpuDevicePlugin",
                },
                "resource": {
                    "group": "deviceplugin.intel.com",
                    "version": "v1",
                    "resource": "gpudeviceplugins",
                },
                "operation": "CREATE",
                "object": obj,
            },
        }
    ).encode()


def direct_post(port: int, client: Pair | None) -> tuple[int, dict[str, Any]] | str:
    """(status, body) of a POST to the validating path, or why the connection failed."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    if client is not None:
        context.load_cert_chain(client.cert, client.key)
    (path,) = [w.path for w in endpoints.webhooks(["gpu"]) if w.verb is endpoints.Verb.VALIDATE]
    connection = http.client.HTTPSConnection("127.0.0.1", port, timeout=10, context=context)
    try:
        body = review("direct")
        connection.request("POST", path, body, {"Content-Type": "application/json"})
        response = connection.getresponse()
        raw = response.read()
    except (ssl.SSLError, OSError, http.client.HTTPException) as error:
        return f"{type(error).__name__}: {error}"
    finally:
        connection.close()
    try:
        return response.status, json.loads(raw)
    except ValueError:
        return response.status, {"raw": raw.decode(errors="replace")}


def test_admissions_through_the_api_server_still_work(setup: Setup) -> None:
    cluster = setup.cluster
    status, answer = create(cluster, plural_path(GPU), resource(GPU, "defaulted", {}))
    assert status == 201, answer
    assert answer["spec"]["image"].startswith("intel/intel-gpu-plugin:"), "defaulted"
    status, answer = create(
        cluster, plural_path(GPU), resource(GPU, "refused", {"image": "intel/wrong-name:0.36.0"})
    )
    # The webhook's denial as the API server relays it (a denial without a code is a 403).
    assert status in (400, 403, 422), answer
    assert "denied the request" in answer.get("message", ""), answer
    assert "wrong-name" in answer["message"], answer


def test_a_direct_post_without_the_api_servers_certificate_is_refused(setup: Setup) -> None:
    port = setup.operator.webhook_port
    answered = direct_post(port, setup.apiserver_client)
    assert isinstance(answered, tuple), answered
    assert answered[0] == 200, "control: the API server's certificate is answered"
    assert answered[1]["response"]["uid"] == "direct"
    without = direct_post(port, None)
    assert isinstance(without, str), f"answered without a client certificate: {without}"
    foreign = direct_post(port, setup.foreign)
    assert isinstance(foreign, str), f"answered a certificate of another CA: {foreign}"
    stranger = direct_post(port, setup.stranger)
    assert isinstance(stranger, tuple)
    assert stranger[0] == 403, stranger
    print("without a certificate:", without, "| another CA:", foreign, "| another name: 403")


def test_a_plain_tcp_connection_gets_no_http_at_all(setup: Setup) -> None:
    with socket.create_connection(("127.0.0.1", setup.operator.webhook_port), timeout=5) as raw:
        raw.sendall(b"POST / HTTP/1.1\r\nHost: x\r\n\r\n")
        reply = raw.recv(100)
    assert not reply.startswith(b"HTTP/"), reply
