"""Scenario 7, security checks of the running operator command.

* TLS of the webhook server and of ``--metrics-secure``: TLS 1.0 and 1.1 are refused (asserted
  only after a control server with the same certificate accepted both from the same client),
  every TLS 1.2
  cipher suite the client library knows is tried one by one and only ECDHE with an AEAD cipher
  is accepted, the TLS 1.3 suites are listed (``openssl s_client`` when available).
* ``/metrics`` with ``--metrics-secure``: 401 without a token and with a forged one, 200 with an
  authorised service account token (TokenReview + SubjectAccessReview).
* No secret in the log at the highest verbosity (``-v 10``, which also turns on the client
  library's and aiohttp's debug loggers): after the self-managed certificate Secret is created,
  deleted and recreated, a DaemonSet rendered with an image pull secret, scrapes with real and
  forged tokens and the operator's own service-account token in its kubeconfig, the log holds
  none of the private keys (PEM lines or the Secret's base64), tokens, or pull-secret values.
"""

from __future__ import annotations

import base64
import json
import shutil
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

import tls_probes
from clusters import TestCluster
from deviceplugin_operator import devices
from operators import Operator, start_operator, token_kubeconfig
from polling import eventually
from reliability.admission_support import (
    CRDS,
    b64,
    create,
    delete_resources,
    plural_path,
    registered_webhooks,
    resource,
    unverified_context,
    wait_webhooks_serving,
)
from reliability.fleet import report

pytestmark = [
    pytest.mark.cluster,
    pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1:DeprecationWarning"),
]

PREFIX = "rel2-sec-"
SECRET = "rel2-sec-cert"
PULL_SECRET = "rel2-pull"
GPU = devices.KINDS["gpu"]
FIGURES: dict[str, Any] = {}
TLS13_SUITES = (
    "TLS_AES_128_GCM_SHA256",
    "TLS_AES_256_GCM_SHA384",
    "TLS_CHACHA20_POLY1305_SHA256",
    "TLS_AES_128_CCM_SHA256",
    "TLS_AES_128_CCM_8_SHA256",
)


class Secured:
    def __init__(self, operator: Operator, namespace: str, secrets: dict[str, str]):
        self.operator = operator
        self.namespace = namespace
        self.secrets = secrets
        """Values that must never appear in the log, by what they are."""


@pytest.fixture(scope="module")
def secured(cluster: TestCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Secured]:
    cluster.install_crds(CRDS)
    namespace = f"rel2-sec-{uuid.uuid4().hex[:6]}"
    binding = f"{namespace}-operator"
    reader = f"{namespace}-metrics-reader"
    directory = tmp_path_factory.mktemp("security")
    secrets: dict[str, str] = {}
    cluster.kubectl("create", "namespace", namespace)
    try:
        for account in ("operator", "scraper"):
            cluster.kubectl("create", "serviceaccount", account, "-n", namespace)
        cluster.kubectl(
            "create",
            "clusterrolebinding",
            binding,
            "--clusterrole=cluster-admin",
            f"--serviceaccount={namespace}:operator",
        )
        role = {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": reader},
            "rules": [{"nonResourceURLs": ["/metrics"], "verbs": ["get"]}],
        }
        cluster.kubectl("apply", "-f", "-", input=json.dumps(role))
        cluster.kubectl(
            "create",
            "clusterrolebinding",
            reader,
            f"--clusterrole={reader}",
            f"--serviceaccount={namespace}:scraper",
        )
        for account in ("operator", "scraper"):
            token = cluster.kubectl("create", "token", account, "-n", namespace).stdout.strip()
            secrets[f"{account} token"] = token
        pull_token = f"pull-{uuid.uuid4().hex}"
        docker = {"auths": {"registry.invalid": {"auth": b64(f"robot:{pull_token}")}}}
        secrets["pull token"] = pull_token
        secrets["pull auth"] = b64(f"robot:{pull_token}")
        secrets["pull dockerconfigjson"] = b64(json.dumps(docker))
        cluster.api.create(
            f"/api/v1/namespaces/{namespace}/secrets",
            {
                "metadata": {"name": PULL_SECRET},
                "type": "kubernetes.io/dockerconfigjson",
                "data": {".dockerconfigjson": secrets["pull dockerconfigjson"]},
            },
        )
        kubeconfig = token_kubeconfig(
            cluster,
            "operator",
            namespace,
            directory / "kubeconfig",
            token=secrets["operator token"],
        )
        operator = start_operator(
            kubeconfig.path,
            namespace,
            directory / "operator.log",
            "--metrics-secure",
            "--webhook-cert-check-period=1s",
            devices=("gpu",),
            webhook_prefix=PREFIX,
            webhook_secret=SECRET,
            env={"DEVICEPLUGIN_SECRET": PULL_SECRET},
            verbosity=10,
            log_format="text",
        )
        try:
            with registered_webhooks(cluster, operator.webhook_port, PREFIX, ["gpu"]):
                operator.wait_ready()
                wait_webhooks_serving(cluster, namespace, SECRET, PREFIX)
                yield Secured(operator, namespace, secrets)
        finally:
            operator.terminate()
            delete_resources(cluster, "rel2-sec=true")
    finally:
        for name in (binding, reader):
            cluster.kubectl("delete", "clusterrolebinding", name, "--ignore-not-found", check=False)
        cluster.kubectl("delete", "clusterrole", reader, "--ignore-not-found", check=False)
        cluster.kubectl("delete", "namespace", namespace, "--wait=false", check=False)
        if FIGURES:
            report("part2-security", FIGURES)


# TLS --------------------------------------------------------------------------------------------
def handshake(port: int, configure: Any) -> tuple[str, str] | None:
    """(version, cipher) negotiated with a client set up by ``configure``, None if refused."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        configure(context)
    except ssl.SSLError:
        return None
    try:
        with (
            socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
            context.wrap_socket(raw) as tls,
        ):
            cipher = tls.cipher()
            return str(tls.version()), str(cipher[0] if cipher else "")
    except (ssl.SSLError, OSError):
        return None


def tls12_ciphers() -> list[str]:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.set_ciphers("ALL:COMPLEMENTOFALL:@SECLEVEL=0")
    return sorted({c["name"] for c in context.get_ciphers() if c["protocol"] != "TLSv1.3"})


def only(name: str) -> Any:
    def configure(context: ssl.SSLContext) -> None:
        context.minimum_version = context.maximum_version = ssl.TLSVersion.TLSv1_2
        context.set_ciphers(f"{name}:@SECLEVEL=0")

    return configure


def strong(cipher: str) -> bool:
    return cipher.startswith("ECDHE-") and ("GCM" in cipher or "CHACHA20" in cipher)


def tls13_suites(port: int) -> list[str] | None:
    if shutil.which("openssl") is None:
        return None
    accepted = []
    for suite in TLS13_SUITES:
        done = subprocess.run(
            [
                "openssl",
                "s_client",
                "-connect",
                f"127.0.0.1:{port}",
                "-tls1_3",
                "-ciphersuites",
                suite,
            ],
            input=b"",
            capture_output=True,
            timeout=20,
            check=False,
        )
        if done.returncode == 0 and suite.encode() in done.stdout:
            accepted.append(suite)
    return accepted


def stored_secret(cluster: TestCluster, namespace: str) -> dict[str, str]:
    secret = cluster.api.get(f"/api/v1/namespaces/{namespace}/secrets/{SECRET}") or {}
    return dict(secret.get("data") or {})


def test_tls_of_webhooks_and_secure_metrics(cluster: TestCluster, secured: Secured) -> None:
    data = stored_secret(cluster, secured.namespace)
    pair = (base64.b64decode(data["tls.crt"]), base64.b64decode(data["tls.key"]))
    # The control: this client demonstrably speaks TLS 1.0 and 1.1 to a server that allows
    # them, with the operator's own certificate; only then does a refusal below mean anything.
    with tls_probes.legacy_control(*pair) as control:
        control_legacy = {
            name: tls_probes.handshake(control, version)
            for name, version in tls_probes.LEGACY.items()
        }
    assert control_legacy == {"TLSv1": "TLSv1", "TLSv1.1": "TLSv1.1"}
    candidates = tls12_ciphers()
    results: dict[str, Any] = {"client_tls12_ciphers_tried": len(candidates)}
    for what, port in (
        ("webhook", secured.operator.webhook_port),
        ("metrics", secured.operator.metrics_port),
    ):
        refused_legacy = {
            name: tls_probes.handshake(port, version) is None
            for name, version in tls_probes.LEGACY.items()
        }
        accepted = sorted(c for c in candidates if handshake(port, only(c)) is not None)
        assert accepted, f"{what}: no TLS 1.2 cipher accepted"
        assert [c for c in accepted if not strong(c)] == [], what
        assert all(refused_legacy.values()), (what, refused_legacy)
        results[what] = {
            "tls1.0_and_1.1_refused": refused_legacy,
            "tls12_accepted": accepted,
            "tls13_suites_accepted": tls13_suites(port),
        }
    results["control_server_legacy_handshakes"] = control_legacy
    FIGURES["tls"] = results


def scrape(port: int, token: str | None) -> int:
    request = urllib.request.Request(f"https://127.0.0.1:{port}/metrics")
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, context=unverified_context(), timeout=10) as reply:
            return int(reply.status)
    except urllib.error.HTTPError as error:
        return int(error.code)


def test_secure_metrics_need_an_authorised_token(secured: Secured) -> None:
    port = secured.operator.metrics_port
    forged = f"forged-{uuid.uuid4().hex}"
    secured.secrets["forged token"] = forged
    without, with_forged = scrape(port, None), scrape(port, forged)
    assert without == 401
    assert with_forged == 401
    started = time.monotonic()
    eventually(
        lambda: scrape(port, secured.secrets["scraper token"]) == 200,
        timeout=30,
        what="an authorised scrape",
    )
    FIGURES["metrics"] = {
        "no_token": without,
        "forged_token": with_forged,
        "authorised_token": 200,
        "authorised_after_s": round(time.monotonic() - started, 3),
    }


def _needles(secrets: dict[str, str]) -> dict[str, str]:
    """Every string whose presence in the log is a leak, by what it is."""
    found: dict[str, str] = {}
    for what, value in secrets.items():
        found[what] = value
        if what.endswith("token") and value.count(".") == 2:
            found[f"{what} (signature)"] = value.rsplit(".", 1)[1]
        if what.endswith(".key"):
            pem = base64.b64decode(value).decode()
            body = [line for line in pem.splitlines() if line and not line.startswith("-----")]
            for index, line in enumerate(body):
                if len(line) >= 16:
                    found[f"{what} PEM line {index}"] = line
    return found


def test_no_secret_reaches_the_log_at_the_highest_verbosity(
    cluster: TestCluster, secured: Secured
) -> None:
    namespace = secured.namespace
    # Everything the operator does with secrets: the certificate Secret (created at start),
    # deleted and recreated, a DaemonSet with the image pull secret, admissions, scrapes.
    first = stored_secret(cluster, namespace)
    cluster.kubectl("delete", "secret", "-n", namespace, SECRET)
    eventually(
        lambda: stored_secret(cluster, namespace).get("tls.key") not in (None, first["tls.key"]),
        timeout=30,
        what="the Secret to be recreated",
    )
    wait_webhooks_serving(cluster, namespace, SECRET, PREFIX)
    second = stored_secret(cluster, namespace)
    name = f"rel2-sec-{uuid.uuid4().hex[:6]}"
    body = resource(GPU, name, {"nodeSelector": {"rel2-no-such-node": "x"}})
    body["metadata"]["labels"] = {"rel2-sec": "true"}
    assert create(cluster, plural_path(GPU), body)[0] == 201
    denied = resource(GPU, f"{name}-bad", {"image": "intel/intel-gpu-plugin:0.1.0"})
    denied["metadata"]["labels"] = {"rel2-sec": "true"}
    assert create(cluster, plural_path(GPU), denied)[0] == 403  # denied by the webhook
    ds_path = f"/apis/apps/v1/namespaces/{namespace}/daemonsets/intel-gpu-plugin-{name}"
    ds = eventually(lambda: cluster.api.get(ds_path), timeout=30, what="the DaemonSet")
    assert ds["spec"]["template"]["spec"]["imagePullSecrets"] == [{"name": PULL_SECRET}]
    for token in (
        secured.secrets["scraper token"],
        secured.secrets.get("forged token", "f"),
        None,
    ):
        scrape(secured.operator.metrics_port, token)

    secrets = dict(secured.secrets)
    for label, data in (("first", first), ("second", second)):
        for key in ("tls.key", "ca.key"):
            secrets[f"{label} Secret {key}"] = data[key]
    assert secured.operator.terminate() == 0
    log = secured.operator.text()
    needles = _needles(secrets)
    leaked = sorted(what for what, needle in needles.items() if needle in log)
    lines = log.count("\n")
    FIGURES["log"] = {
        "verbosity": 10,
        "log_lines": lines,
        "debug_lines": log.count(" DEBUG "),
        "secret_strings_checked": len(needles),
        "leaked": leaked,
    }
    assert lines > 10
    assert leaked == []
