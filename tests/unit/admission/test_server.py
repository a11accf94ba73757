"""The admission server over HTTP (routing, bad input, providers) and over real HTTPS (TLS
versions and suites, certificate reload, start and stop)."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import json
import os
import pathlib
import socket
import ssl
from collections.abc import AsyncIterator, Iterable, Mapping
from typing import Any

import aiohttp
import pytest
from aiohttp import test_utils
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from deviceplugin_operator import devices
from deviceplugin_operator.admission import endpoints, fpga, review, rules, server
from deviceplugin_operator.api import fpga as fpga_api
from deviceplugin_operator.api import meta
from polling import eventually_async

KINDS = devices.KINDS
GPU = KINDS["gpu"]
HEX64 = "0123456789abcdef" * 4


def plugin_review(
    kind: devices.DeviceKind[Any],
    spec: Any,
    *,
    operation: str = "CREATE",
    uid: str = "uid-1",
    name: str = "mine",
) -> dict[str, Any]:
    return {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": uid,
            "kind": {"group": "deviceplugin.intel.com", "version": "v1", "kind": kind.kind},
            "resource": {
                "group": "deviceplugin.intel.com",
                "version": "v1",
                "resource": kind.plural,
            },
            "name": name,
            "operation": operation,
            "object": {
                "apiVersion": "deviceplugin.intel.com/v1",
                "kind": kind.kind,
                "metadata": {"name": name},
                "spec": spec,
            },
        },
    }


def pod_review(pod: Any, *, namespace: str = "default", uid: str = "pod-1") -> dict[str, Any]:
    return {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": uid,
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "namespace": namespace,
            "operation": "CREATE",
            "object": pod,
        },
    }


def epc_pod(provider: str = "") -> dict[str, Any]:
    epc = {"sgx.intel.com/epc": "1Mi"}
    return {
        "metadata": {"annotations": {"sgx.intel.com/quote-provider": provider}},
        "spec": {"containers": [{"name": "c", "resources": {"limits": epc, "requests": epc}}]},
    }


async def client_for(admission: server.AdmissionServer) -> test_utils.TestClient[Any, Any]:
    client = test_utils.TestClient(test_utils.TestServer(admission.app()))
    await client.start_server()
    return client


@pytest.fixture
async def everything() -> AsyncIterator[test_utils.TestClient[Any, Any]]:
    """A server with every device enabled."""
    client = await client_for(server.AdmissionServer(KINDS.values()))
    yield client
    await client.close()


async def post(client: test_utils.TestClient[Any, Any], path: str, document: Any) -> dict[str, Any]:
    async with client.post(path, json=document) as reply:
        assert reply.status == 200, await reply.text()
        answer: dict[str, Any] = await reply.json()
    assert answer["apiVersion"] == "admission.k8s.io/v1"
    assert answer["kind"] == "AdmissionReview"
    return answer["response"]  # type: ignore[no-any-return]


# Routing ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(KINDS))
async def test_every_kind_is_defaulted_and_validated_at_its_path(
    everything: test_utils.TestClient[Any, Any], name: str
) -> None:
    kind = KINDS[name]
    response = await post(everything, kind.mutate_path, plugin_review(kind, {}))
    assert response["allowed"] is True
    assert response["patchType"] == "JSONPatch"
    assert review.decode(response["patch"]) == [review.add("/spec/image", kind.default_image)]
    response = await post(everything, kind.validate_path, plugin_review(kind, {"image": ""}))
    assert response["allowed"] is False
    assert response["status"] == {
        "code": 403,
        "reason": "Forbidden",
        "message": 'invalid resource: incorrect image field ""',
    }
    good = plugin_review(kind, {"image": kind.default_image})
    assert await post(everything, kind.validate_path, good) == {
        "uid": "uid-1",
        "allowed": True,
        "status": {"code": 200},
    }


async def test_the_uid_is_echoed_and_calls_are_counted() -> None:
    admission = server.AdmissionServer([GPU])
    client = await client_for(admission)
    try:
        response = await post(client, GPU.validate_path, plugin_review(GPU, {}, uid="abc"))
        assert response["uid"] == "abc"
        assert admission.calls == 1
    finally:
        await client.close()


async def test_disabled_devices_and_unknown_paths_are_404() -> None:
    client = await client_for(server.AdmissionServer([GPU]))
    try:
        qat = KINDS["qat"]
        for path in (qat.mutate_path, qat.validate_path, "/mutate--v1-pod", "/pods", "/nope"):
            async with client.post(path, json=plugin_review(qat, {})) as reply:
                assert reply.status == 404, path
        async with client.get(GPU.validate_path) as reply:
            assert reply.status == 405
    finally:
        await client.close()


async def test_pod_paths_exist_with_their_devices() -> None:
    client = await client_for(server.AdmissionServer([KINDS["sgx"], KINDS["fpga"]]))
    try:
        assert (await post(client, "/mutate--v1-pod", pod_review({})))["allowed"] is True
        assert (await post(client, "/pods", pod_review({})))["allowed"] is True
    finally:
        await client.close()


async def test_other_operations_are_allowed_untouched(
    everything: test_utils.TestClient[Any, Any],
) -> None:
    for operation in ("DELETE", "CONNECT"):
        for path in (GPU.mutate_path, GPU.validate_path):
            document = plugin_review(GPU, {"image": "bad"}, operation=operation)
            response = await post(everything, path, document)
            assert response["allowed"] is True
            assert "patch" not in response


async def test_update_is_validated_by_the_new_object(
    everything: test_utils.TestClient[Any, Any],
) -> None:
    document = plugin_review(GPU, {"image": "intel/intel-gpu-plugin:0.1.0"}, operation="UPDATE")
    document["request"]["oldObject"] = {"spec": {"image": GPU.default_image}}
    response = await post(everything, GPU.validate_path, document)
    assert response["status"]["message"] == (
        'invalid resource: version "0.1.0" is too low. Should be at least "0.36.0"'
    )


# Bad input -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "status", "text"),
    [
        (b"not json", 400, "Malformed AdmissionReview: the body is not JSON"),
        (b"{}", 400, "Malformed AdmissionReview: the AdmissionReview has no request"),
        (b"[1,2]", 400, "Malformed AdmissionReview: the body is not a JSON object"),
        (b'{"request": {"uid": 1}}', 400, "Malformed AdmissionReview: request.uid"),
        (b"", 400, "Malformed AdmissionReview"),
    ],
)
async def test_unreadable_bodies_are_400_with_a_message(
    everything: test_utils.TestClient[Any, Any], body: bytes, status: int, text: str
) -> None:
    headers = {"Content-Type": "application/json"}
    async with everything.post(GPU.validate_path, data=body, headers=headers) as reply:
        assert reply.status == status
        assert (await reply.text()).startswith(text)


@pytest.mark.parametrize("content_type", ["text/plain", "", "application/yaml"])
async def test_other_content_types_are_415(
    everything: test_utils.TestClient[Any, Any], content_type: str
) -> None:
    body = json.dumps(plugin_review(GPU, {})).encode()
    headers = {"Content-Type": content_type}
    async with everything.post(GPU.validate_path, data=body, headers=headers) as reply:
        assert reply.status == 415
        assert "expected application/json" in await reply.text()
    headers = {"Content-Type": "application/json; charset=utf-8"}
    async with everything.post(GPU.validate_path, data=body, headers=headers) as reply:
        assert reply.status == 200


async def test_an_oversized_body_is_413_and_the_server_stays_up(
    everything: test_utils.TestClient[Any, Any],
) -> None:
    body = b"x" * (4 * 1024 * 1024)
    headers = {"Content-Type": "application/json"}
    async with everything.post(GPU.validate_path, data=body, headers=headers) as reply:
        assert reply.status == 413
    assert (await post(everything, GPU.validate_path, plugin_review(GPU, {})))["allowed"] is False


async def test_a_review_of_another_kind_is_denied(
    everything: test_utils.TestClient[Any, Any],
) -> None:
    wrong = {"request": {"uid": "u1", "kind": {"kind": "Pod"}, "object": {}}}
    response = await post(everything, GPU.validate_path, wrong)
    assert response["allowed"] is False
    assert response["status"]["code"] == 400
    assert response["status"]["message"] == (
        'unexpected kind "/, Kind=Pod": this webhook admits deviceplugin.intel.com/v1 '
        "GpuDevicePlugin"
    )
    qat_review = plugin_review(KINDS["qat"], {})
    assert (await post(everything, GPU.mutate_path, qat_review))["allowed"] is False
    assert (await post(everything, "/mutate--v1-pod", qat_review))["status"]["message"] == (
        'unexpected resource type "deviceplugin.intel.com/v1, Resource=qatdeviceplugins"'
    )


@pytest.mark.parametrize("obj", [None, "x", [1], {"spec": "x"}])
async def test_unreadable_objects_are_denied(
    everything: test_utils.TestClient[Any, Any], obj: Any
) -> None:
    document = plugin_review(GPU, {})
    document["request"]["object"] = obj
    for path in (GPU.mutate_path, GPU.validate_path):
        response = await post(everything, path, document)
        assert response["allowed"] is False
        assert response["status"]["message"].startswith("invalid resource: ")


class ExplodingMappings(fpga.Mappings):
    def mutate(self, pod: object, namespace: str) -> list[review.Operation]:
        raise RuntimeError("a bug")


async def test_a_bug_is_logged_and_denied_never_a_500(caplog: pytest.LogCaptureFixture) -> None:
    admission = server.AdmissionServer([KINDS["fpga"]], fpga_mappings=ExplodingMappings())
    client = await client_for(admission)
    try:
        response = await post(client, "/pods", pod_review({"spec": {"containers": []}}))
    finally:
        await client.close()
    assert response["allowed"] is False
    assert response["status"]["code"] == 500
    assert "Admission request failed" in caplog.text


# Pods ------------------------------------------------------------------------------------


async def test_sgx_pods_are_patched(everything: test_utils.TestClient[Any, Any]) -> None:
    pod = epc_pod("aesmd")
    response = await post(everything, "/mutate--v1-pod", pod_review(pod))
    after = review.apply(pod, review.decode(response["patch"]))
    assert after["spec"]["volumes"][0]["hostPath"]["path"] == "/var/run/aesmd"
    assert after["metadata"]["annotations"]["sgx.intel.com/epc"] == "1Mi"
    again = await post(everything, "/mutate--v1-pod", pod_review(after))
    assert again == {"uid": "pod-1", "allowed": True, "status": {"code": 200}}


async def test_invalid_sgx_pods_are_denied(everything: test_utils.TestClient[Any, Any]) -> None:
    pod = epc_pod()
    pod["spec"]["containers"][0]["resources"]["requests"] = {}
    response = await post(everything, "/mutate--v1-pod", pod_review(pod))
    assert response["allowed"] is False
    assert response["status"]["code"] == 403
    assert "must be equal" in response["status"]["message"]


async def test_fpga_pods_are_patched_from_the_mappings_of_their_namespace() -> None:
    mappings = fpga.Mappings()
    mappings.add_region(
        fpga_api.FpgaRegion(
            metadata=meta.ObjectMeta(name="arria10", namespace="team"),
            spec=fpga_api.FpgaRegionSpec(interface_id="ce48969398f05f33946d560708be108a"),
        )
    )
    admission = server.AdmissionServer([KINDS["fpga"]], fpga_mappings=mappings)
    assert admission.fpga_mappings is mappings
    client = await client_for(admission)
    wanted = {"fpga.intel.com/arria10": "1"}
    pod = {
        "spec": {"containers": [{"name": "c", "resources": {"limits": wanted, "requests": wanted}}]}
    }
    try:
        response = await post(client, "/pods", pod_review(pod, namespace="team"))
        after = review.apply(pod, review.decode(response["patch"]))
        assert after["spec"]["containers"][0]["resources"]["limits"] == {
            "fpga.intel.com/region-ce48969398f05f33946d560708be108a": "1"
        }
        denied = await post(client, "/pods", pod_review(pod, namespace="elsewhere"))
        assert denied["status"]["message"].startswith(
            'no such resource: "fpga.intel.com/arria10": namespace "elsewhere" has no '
        )
    finally:
        await client.close()


# Warnings and their providers ------------------------------------------------------------


async def test_warnings_come_from_the_providers() -> None:
    def selectors(kind: devices.DeviceKind[Any]) -> Mapping[str, Mapping[str, str] | None]:
        return {"mine": {"a": "1"}, "other": None}

    provider = server.context_provider(selectors=selectors)
    client = await client_for(server.AdmissionServer(KINDS.values(), context_provider=provider))
    qat = KINDS["qat"]
    spec = {
        "image": qat.default_image,
        "initImage": "intel/intel-qat-initcontainer:0.36.0",
        "provisioningConfig": "qat-config",
        "kernelVfDrivers": ["4xxxvf"],
        "nodeSelector": {"a": "1"},
    }
    try:
        response = await post(client, qat.validate_path, plugin_review(qat, spec))
    finally:
        await client.close()
    assert response["allowed"] is True
    # Nothing about the ConfigMap: whether it exists is not the caller's business (issue 14).
    assert response["warnings"] == [
        "spec.nodeSelector can select the same nodes as QatDevicePlugin other, which runs two "
        "plugins per node; make the nodeSelectors of the two disjoint",
    ]


async def test_lookups_not_given_give_no_warnings() -> None:
    provider = server.context_provider()
    context = await provider(KINDS["qat"], {"spec": {"provisioningConfig": "c"}})
    assert context == rules.Context()


async def test_a_failing_or_slow_provider_loses_the_warnings_not_the_admission(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def failing(kind: devices.DeviceKind[Any], obj: Mapping[str, Any]) -> rules.Context:
        raise RuntimeError("API server unreachable")

    async def slow(kind: devices.DeviceKind[Any], obj: Mapping[str, Any]) -> rules.Context:
        await asyncio.sleep(60)
        raise AssertionError("not reached")

    spec = {"image": GPU.default_image, "monitoringMode": "split"}
    for provider in (failing, slow):
        admission = server.AdmissionServer([GPU], context_provider=provider, context_timeout=0.05)
        client = await client_for(admission)
        try:
            response = await post(client, GPU.validate_path, plugin_review(GPU, spec))
        finally:
            await client.close()
        assert response["allowed"] is True
        # Warnings that need no lookup are still given.
        assert response["warnings"][0].startswith("spec.monitoringMode has no effect")
    assert "Gathering warning context failed" in caplog.text
    assert "Gathering warning context timed out" in caplog.text


async def test_a_provider_that_waits_is_followed_to_its_answer(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Providers are run by hand up to their first wait; one that waits (several times) still
    gives its context, or its failure, as when it was simply awaited."""

    async def waiting(kind: devices.DeviceKind[Any], obj: Mapping[str, Any]) -> rules.Context:
        for _ in range(3):
            await asyncio.sleep(0.01)
        return rules.Context(other_selectors={"other": None})

    async def failing_later(kind: devices.DeviceKind[Any], obj: Mapping[str, Any]) -> rules.Context:
        await asyncio.sleep(0.01)
        raise RuntimeError("lost the API server")

    spec = {"image": GPU.default_image}
    for provider, warnings in ((waiting, 1), (failing_later, 0)):
        client = await client_for(server.AdmissionServer([GPU], context_provider=provider))
        try:
            response = await post(client, GPU.validate_path, plugin_review(GPU, spec))
        finally:
            await client.close()
        assert response["allowed"] is True
        assert len(response.get("warnings", [])) == warnings
    assert "Gathering warning context failed" in caplog.text
    assert "lost the API server" in caplog.text


# Any request gets an answer --------------------------------------------------------------

ALL_WEBHOOKS = endpoints.webhooks(KINDS)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=12,
)
requests = st.builds(
    review.read_request,
    st.fixed_dictionaries(
        {"uid": st.just("u")},
        optional={
            "kind": st.sampled_from(
                [
                    {"group": "deviceplugin.intel.com", "version": "v1", "kind": k.kind}
                    for k in KINDS.values()
                ]
                + [{"group": "", "version": "v1", "kind": "Pod"}]
            ),
            "resource": st.sampled_from([{"group": "", "version": "v1", "resource": "pods"}, {}]),
            "operation": st.sampled_from(["CREATE", "UPDATE", "DELETE", ""]),
            "object": json_values
            | st.builds(lambda spec: {"spec": spec}, json_values)
            | st.builds(lambda containers: {"spec": {"containers": containers}}, json_values),
            "oldObject": json_values,
            "namespace": st.sampled_from(["", "default"]),
        },
    ),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(webhook=st.sampled_from(ALL_WEBHOOKS), request=requests)
async def test_every_request_is_answered_never_raised(
    webhook: endpoints.Webhook, request: review.AdmissionRequest
) -> None:
    admission = server.AdmissionServer(KINDS.values())
    response = await admission.answer(webhook, request)
    assert response.uid == "u"
    if not response.allowed:
        assert response.status is not None
        assert response.status.code in (400, 403)


# HTTPS -----------------------------------------------------------------------------------


def self_signed(common_name: str) -> tuple[bytes, bytes]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


def handshake(
    port: int,
    *,
    version: ssl.TLSVersion = ssl.TLSVersion.TLSv1_2,
    ciphers: str | None = None,
    alpn: Iterable[str] = (),
) -> tuple[str | None, str | None, str | None, bytes | None]:
    """(TLS version, cipher, ALPN protocol, server certificate DER), or Nones if refused."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.minimum_version = context.maximum_version = version
    if ciphers is not None:
        context.set_ciphers(ciphers)
    if alpn:
        context.set_alpn_protocols(list(alpn))
    try:
        with (
            socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
            context.wrap_socket(raw) as tls,
        ):
            cipher = tls.cipher()
            return (
                tls.version(),
                cipher[0] if cipher else None,
                tls.selected_alpn_protocol(),
                tls.getpeercert(binary_form=True),
            )
    except (ssl.SSLError, OSError):
        return None, None, None, None


@pytest.fixture
async def https() -> AsyncIterator[tuple[server.AdmissionServer, ssl.SSLContext, bytes]]:
    cert, key = self_signed("first")
    context = server.tls_context(server.StaticCertificate(cert, key))
    admission = server.AdmissionServer([GPU])
    assert not admission.serving
    port = await admission.start("127.0.0.1", 0, context)
    assert port == admission.port
    assert admission.serving
    yield admission, context, cert
    await admission.stop()


def der(pem: bytes) -> bytes:
    return x509.load_pem_x509_certificate(pem).public_bytes(serialization.Encoding.DER)


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1_1 is deprecated:DeprecationWarning")
async def test_only_tls_1_2_and_newer_with_forward_secret_aead_suites(
    https: tuple[server.AdmissionServer, ssl.SSLContext, bytes],
) -> None:
    admission, _, cert = https
    port = admission.port
    assert port is not None
    old = await asyncio.to_thread(
        handshake, port, version=ssl.TLSVersion.TLSv1_1, ciphers="ALL:@SECLEVEL=0"
    )
    assert old[0] is None
    version, cipher, alpn, served = await asyncio.to_thread(
        handshake, port, alpn=["h2", "http/1.1"]
    )
    assert version == "TLSv1.2"
    assert cipher is not None
    assert cipher.startswith("ECDHE-")
    assert "GCM" in cipher or "CHACHA20" in cipher
    assert alpn == "http/1.1"
    assert served == der(cert)
    assert (await asyncio.to_thread(handshake, port, version=ssl.TLSVersion.TLSv1_3))[
        0
    ] == "TLSv1.3"
    for weak in ("AES256-SHA", "ECDHE-ECDSA-AES128-SHA", "AES128-GCM-SHA256"):
        assert (await asyncio.to_thread(handshake, port, ciphers=weak))[0] is None, weak


async def test_reviews_are_answered_over_https(
    https: tuple[server.AdmissionServer, ssl.SSLContext, bytes],
) -> None:
    admission, _, cert = https
    client_context = ssl.create_default_context(cadata=cert.decode())
    url = f"https://127.0.0.1:{admission.port}{GPU.mutate_path}"
    async with (
        aiohttp.ClientSession() as session,
        session.post(url, json=plugin_review(GPU, {}), ssl=client_context) as reply,
    ):
        assert reply.status == 200
        answer = await reply.json()
    assert answer["response"]["allowed"] is True


def test_http2_is_never_offered() -> None:
    context = server.tls_context(enable_http2=True)
    assert context.minimum_version is ssl.TLSVersion.TLSv1_2


async def test_stop_closes_the_listener(
    https: tuple[server.AdmissionServer, ssl.SSLContext, bytes],
) -> None:
    admission, _, _ = https
    port = admission.port
    assert port is not None
    await admission.stop()
    assert not admission.serving
    assert admission.port is None
    assert (await asyncio.to_thread(handshake, port))[0] is None
    await admission.stop()  # twice is harmless


async def test_a_changed_mounted_certificate_is_served_to_new_connections(
    tmp_path: pathlib.Path,
) -> None:
    first, second = self_signed("first"), self_signed("second")
    (tmp_path / "tls.crt").write_bytes(first[0])
    (tmp_path / "tls.key").write_bytes(first[1])
    context = server.tls_context()
    mounted = server.MountedCertificates(tmp_path, context, period=0.05)
    assert mounted.reload_if_changed()
    assert not mounted.reload_if_changed()
    admission = server.AdmissionServer([GPU])
    port = await admission.start("127.0.0.1", 0, context)
    watching = asyncio.create_task(mounted.watch())
    try:
        assert (await asyncio.to_thread(handshake, port))[3] == der(first[0])
        # A half-written update (new certificate, old key) is skipped, the old pair kept.
        (tmp_path / "tls.crt").write_bytes(second[0])
        assert not mounted.reload_if_changed()
        assert (await asyncio.to_thread(handshake, port))[3] == der(first[0])
        (tmp_path / "tls.key").write_bytes(second[1])
        for _ in range(100):
            if (await asyncio.to_thread(handshake, port))[3] == der(second[0]):
                break
            await asyncio.sleep(0.05)
        else:
            pytest.fail("the new certificate was never served")
    finally:
        watching.cancel()
        await admission.stop()


def test_an_unreadable_directory_is_reported_not_raised(tmp_path: pathlib.Path) -> None:
    mounted = server.MountedCertificates(tmp_path / "missing", server.tls_context())
    assert not mounted.reload_if_changed()


def test_certificates_load_without_memfd_too(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cert, key = self_signed("fallback")
    monkeypatch.delattr(os, "memfd_create", raising=False)
    context = server.tls_context()
    server.load_pem(context, cert, key, tmp_path / "scratch")
    assert list((tmp_path / "scratch").iterdir()) == []  # nothing left on disk
    with pytest.raises(ssl.SSLError):
        server.load_pem(context, cert, self_signed("other")[1])


def test_directory_and_static_sources_read_the_same_pair(tmp_path: pathlib.Path) -> None:
    cert, key = self_signed("x")
    (tmp_path / "c.pem").write_bytes(cert)
    (tmp_path / "k.pem").write_bytes(key)
    directory = server.DirectoryCertificate(tmp_path, cert_name="c.pem", key_name="k.pem")
    assert directory.load() == server.StaticCertificate(cert, key).load() == (cert, key)
    server.tls_context(directory)


async def test_the_registry_allow_list_reaches_the_validation() -> None:
    admission = server.AdmissionServer([GPU], allowed_registries=["registry.example.com"])
    client = await client_for(admission)
    try:
        refused = await post(
            client, GPU.validate_path, plugin_review(GPU, {"image": GPU.default_image})
        )
        mirrored = f"registry.example.com/intel/{GPU.default_image.split('/')[-1]}"
        admitted = await post(client, GPU.validate_path, plugin_review(GPU, {"image": mirrored}))
    finally:
        await client.close()
    assert refused["allowed"] is False
    assert "not from an allowed registry (registry.example.com)" in refused["status"]["message"]
    assert admitted["allowed"] is True


async def test_a_review_without_content_length_or_too_large_is_refused_before_reading() -> None:
    client = await client_for(server.AdmissionServer([GPU], max_body=1000))
    try:

        async def chunks() -> AsyncIterator[bytes]:
            yield b"{}"

        async with client.post(
            GPU.validate_path, data=chunks(), headers={"Content-Type": "application/json"}
        ) as reply:
            assert reply.status == 411
        async with client.post(
            GPU.validate_path, data=b"x" * 2000, headers={"Content-Type": "application/json"}
        ) as reply:
            assert reply.status == 413
    finally:
        await client.close()


# Where the work runs -----------------------------------------------------------------------


class CountingWorkers(server.AdmissionServer):
    """Counts the calls handed to the worker threads."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.handed_off: list[str] = []

    async def _in_worker(self, function: Any, *args: Any) -> Any:
        self.handed_off.append(getattr(function, "__name__", repr(function)))
        return await super()._in_worker(function, *args)


async def test_small_reviews_stay_on_the_loop_and_large_ones_go_to_the_workers() -> None:
    """The hop to a worker thread costs ~0.1 ms of every request (docs/benchmarks.md): a typical
    review is parsed and a pod of a few containers mutated on the loop; a review over
    ``INLINE_BODY`` bytes or a pod over ``INLINE_CONTAINERS`` containers still never is."""
    admission = CountingWorkers([GPU, KINDS["sgx"]])
    client = await client_for(admission)
    try:
        small = plugin_review(GPU, {"image": GPU.default_image})
        assert len(json.dumps(small)) < server.INLINE_BODY
        assert (await post(client, GPU.validate_path, small))["allowed"] is True
        assert (await post(client, "/mutate--v1-pod", pod_review(epc_pod())))["allowed"] is True
        assert admission.handed_off == []

        large = plugin_review(GPU, {"image": GPU.default_image})
        large["request"]["object"]["metadata"]["annotations"] = {
            "padding": "x" * server.INLINE_BODY
        }
        assert (await post(client, GPU.validate_path, large))["allowed"] is True
        assert admission.handed_off == ["parse"]

        many = epc_pod()
        container = many["spec"]["containers"][0]
        many["spec"]["containers"] = [
            {**container, "name": f"c{index}"} for index in range(server.INLINE_CONTAINERS + 1)
        ]
        response = await post(client, "/mutate--v1-pod", pod_review(many))
        assert response["allowed"] is True
        assert "patch" in response
        assert admission.handed_off == ["parse", "mutate", "allowed"]
    finally:
        await client.close()


# Deadlines only where a request can wait ---------------------------------------------------


async def send_head(
    port: int, length: int, part: bytes = b""
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A request to the GPU validation path that announces ``length`` bytes of body and sends
    only ``part`` of it; its connection (a writer collected would close it)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        f"POST {GPU.validate_path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Content-Length: {length}\r\n\r\n".encode()
        + part
    )
    await writer.drain()
    return reader, writer


async def status_of(connection: tuple[asyncio.StreamReader, asyncio.StreamWriter]) -> int:
    reader, writer = connection
    line = await asyncio.wait_for(reader.readline(), 10)
    writer.close()
    return int(line.split()[1])


async def test_a_body_not_sent_in_time_is_503_and_a_whole_one_is_answered() -> None:
    client = await client_for(server.AdmissionServer([GPU], read_timeout=0.2))
    try:
        port = client.server.port
        assert port is not None
        review_body = json.dumps(plugin_review(GPU, {"image": GPU.default_image})).encode()
        stalled = await send_head(port, len(review_body), review_body[:10])
        assert await status_of(stalled) == 503
        whole = await send_head(port, len(review_body), review_body)
        assert await status_of(whole) == 200
    finally:
        await client.close()


async def test_a_review_waits_for_the_body_budget_until_its_deadline() -> None:
    async def slow(kind: devices.DeviceKind[Any], obj: Mapping[str, Any]) -> rules.Context:
        await asyncio.sleep(60)
        raise AssertionError("not reached")

    admission = server.AdmissionServer(
        [GPU],
        max_body=1000,
        body_budget=1000,
        read_timeout=0.3,
        context_provider=slow,
        context_timeout=1.0,
    )
    client = await client_for(admission)

    async def holding(bytes_held: int) -> None:
        async def held() -> bool:
            return admission._budget.held >= bytes_held

        await eventually_async(held, timeout=5, interval=0.01, what="the budget held")

    try:
        port = client.server.port
        assert port is not None
        review_body = json.dumps(plugin_review(GPU, {"image": GPU.default_image})).encode()
        padded = review_body + b" " * (800 - len(review_body))
        # The first holds 800 of the 1000 bytes while it is answered (a slow lookup); the
        # second, as large, waits for them and gets a 503 at its deadline.
        answered = await send_head(port, 800, padded)
        await holding(800)
        waiting = await send_head(port, 800, padded)
        assert await status_of(waiting) == 503
        assert await status_of(answered) == 200
        assert admission._budget.held == 0
        # One whose body does not come in time gives its bytes back at its deadline, and the
        # one waiting for them (arrived later, so a later deadline) gets them.
        stalled = await send_head(port, 800, padded[:10])
        await holding(800)
        waiting = await send_head(port, 800, padded)
        assert await status_of(stalled) == 503
        assert await status_of(waiting) == 200
        assert admission._budget.held == 0
    finally:
        await client.close()
