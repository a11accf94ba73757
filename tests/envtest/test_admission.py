"""The admission webhooks through the real apiserver: kubectl sees the operator's verdicts.

The operator runs in-process with self-managed certificates for 127.0.0.1; webhook
configurations point at it by URL without a CA bundle, which the operator fills in. They are
removed at the end, so that other test modules do not depend on this server.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import pathlib
import ssl
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
import yaml

import tls_probes
from clusters import TestCluster
from deviceplugin_operator import devices, manager, settings
from deviceplugin_operator.controller import backoff
from deviceplugin_operator.kube import client
from deviceplugin_operator.manifests import rbac, webhooks
from localcluster import processes
from operators import token_kubeconfig
from polling import eventually_async

pytestmark = [pytest.mark.cluster, pytest.mark.asyncio(loop_scope="session")]

ROOT = pathlib.Path(__file__).resolve().parents[2]
SAMPLES = ROOT / "deployments" / "operator" / "samples"
PREFIX = "admission-test-"
OPERATOR_NAMESPACE = "dp-admission"
SECRET = "admission-test-cert"
HEX64 = "0123456789abcdef" * 4


class Webhooked:
    def __init__(self, mgr: manager.Manager, kube: client.HttpKubeClient, port: int):
        self.manager = mgr
        self.kube = kube
        self.port = port


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def webhooked(
    cluster: TestCluster, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Webhooked]:
    cluster.install_crds(ROOT / "deployments/operator/crd/bases")
    cluster.kubectl("create", "namespace", OPERATOR_NAMESPACE, check=False)
    port = processes.free_port()

    def url(path: str) -> dict[str, Any]:
        return {"url": f"https://127.0.0.1:{port}{path}"}

    for configuration in webhooks.configurations(devices.KINDS.values(), url, prefix=PREFIX):
        cluster.kubectl("apply", "-f", "-", input=json.dumps(configuration))
    kube = await client.connect(cluster.kubeconfig)
    options = manager.Options(
        health_probe_bind_address="127.0.0.1:0",
        webhook_port=port,
        webhook_host="127.0.0.1",
        webhook_hosts=("127.0.0.1",),
        webhook_cert_dir=str(tmp_path_factory.mktemp("certs")),
        webhook_configuration_prefix=PREFIX,
        webhook_secret=SECRET,
        operator_namespace=OPERATOR_NAMESPACE,
    )
    config = settings.Settings(plugin_namespace=OPERATOR_NAMESPACE, devices=tuple(devices.KINDS))
    mgr = manager.Manager(config, options, kube)
    await mgr.start()
    try:
        yield Webhooked(mgr, kube, port)
    finally:
        # Resources are cluster-scoped: leave none behind for the other modules' operators.
        plurals = ",".join(kind.plural for kind in devices.KINDS.values())
        await asyncio.to_thread(cluster.kubectl, "delete", plurals, "--all", "--wait=false")
        for kind in ("mutatingwebhookconfiguration", "validatingwebhookconfiguration"):
            name = (
                PREFIX + webhooks.MUTATING_NAME
                if kind.startswith("m")
                else (PREFIX + webhooks.VALIDATING_NAME)
            )
            cluster.kubectl("delete", kind, name, "--ignore-not-found")
        await mgr.stop()
        await kube.close()


async def kubectl(cluster: TestCluster, *args: str, **kwargs: Any) -> Any:
    """kubectl in a thread: the webhook server answering it runs on this event loop."""
    return await asyncio.to_thread(cluster.kubectl, *args, **kwargs)


async def kubectl_json(cluster: TestCluster, *args: str) -> Any:
    return await asyncio.to_thread(cluster.kubectl_json, *args)


async def apply(cluster: TestCluster, body: dict[str, Any]) -> Any:
    return await kubectl(cluster, "create", "-f", "-", input=json.dumps(body), check=False)


def resource(kind: str, spec: dict[str, Any], name: str | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "deviceplugin.intel.com/v1",
        "kind": kind,
        "metadata": {"name": name or f"adm-{uuid.uuid4().hex[:8]}"},
        "spec": spec,
    }


async def test_ca_bundle_is_written_into_the_webhook_configurations(
    cluster: TestCluster, webhooked: Webhooked
) -> None:
    secret = await kubectl_json(cluster, "get", "secret", "-n", OPERATOR_NAMESPACE, SECRET)
    for kind, name in (
        ("validatingwebhookconfiguration", webhooks.VALIDATING_NAME),
        ("mutatingwebhookconfiguration", webhooks.MUTATING_NAME),
    ):
        configuration = await kubectl_json(cluster, "get", kind, PREFIX + name)
        bundles = {w["clientConfig"]["caBundle"] for w in configuration["webhooks"]}
        assert bundles == {trusted(secret)}


def trusted(secret: dict[str, Any]) -> str:
    """The caBundle the Secret calls for: its CA, and for a while after a new CA was made
    (another test deletes the Secret) the previous one."""
    data = secret["data"]
    pems = (base64.b64decode(data[key]) for key in ("ca.crt", "ca-previous.crt") if key in data)
    return base64.b64encode(b"".join(pems)).decode()


async def test_webhook_serves_only_tls_1_2_and_newer(
    cluster: TestCluster, webhooked: Webhooked
) -> None:
    secret = await kubectl_json(cluster, "get", "secret", "-n", OPERATOR_NAMESPACE, SECRET)
    pair = (
        base64.b64decode(secret["data"]["tls.crt"]),
        base64.b64decode(secret["data"]["tls.key"]),
    )
    await asyncio.to_thread(_handshakes, webhooked.port, pair)


def _handshakes(port: int, pair: tuple[bytes, bytes]) -> None:
    # The control: with the same certificate, a server allowing TLS 1.0/1.1 gets them from
    # this client, so the operator's refusal below is the server's doing.
    with tls_probes.legacy_control(*pair) as control:
        for name, version in tls_probes.LEGACY.items():
            assert tls_probes.handshake(control, version) == name
    for name, version in tls_probes.LEGACY.items():
        assert tls_probes.handshake(port, version) is None, name
    for name, version in (("TLSv1.2", ssl.TLSVersion.TLSv1_2), ("TLSv1.3", ssl.TLSVersion.TLSv1_3)):
        assert tls_probes.handshake(port, version) == name


async def test_defaulting_sets_the_image(cluster: TestCluster, webhooked: Webhooked) -> None:
    """V1: an empty spec gets the operator's default image."""
    body = resource("GpuDevicePlugin", {})

    async def created() -> bool:
        return bool((await apply(cluster, body)).returncode == 0)

    await eventually_async(created, timeout=30, what="the webhooks to answer")
    stored = await kubectl_json(cluster, "get", "gpudeviceplugin", body["metadata"]["name"])
    assert stored["spec"]["image"] == "intel/intel-gpu-plugin:0.36.0"


DENIALS = [
    (
        "V2",
        "GpuDevicePlugin",
        {"image": "intel/intel-gpu-plugin:0.35.0"},
        'invalid resource: version "0.35.0" is too low. Should be at least "0.36.0"',
    ),
    (
        "V3",
        "GpuDevicePlugin",
        {"image": "intel/intel-gpu-plugin:devel"},
        'invalid resource: could not parse "devel" as version: Make sure it\'s either valid SHA '
        "digest or semver tag",
    ),
    (
        "V4",
        "GpuDevicePlugin",
        {"image": "foo/intel-qat-plugin:0.36.0"},
        'invalid resource: incorrect image name "intel-qat-plugin". Make sure you use '
        "'<vendor>/intel-gpu-plugin'",
    ),
    (
        "V5",
        "GpuDevicePlugin",
        {"image": "intel/intel-gpu-plugin"},
        'invalid resource: incorrect image field "intel/intel-gpu-plugin"',
    ),
    (
        "V8",
        "GpuDevicePlugin",
        {"sharedDevNum": 1, "preferredAllocationPolicy": "packed"},
        "invalid resource: 'packed' PreferredAllocationPolicy is valid only when setting "
        "sharedDevNum > 1",
    ),
    (
        "V9",
        "GpuDevicePlugin",
        {"allowIDs": "0x4905,,0x56a0"},
        "invalid resource: Empty PCI Device ID in AllowIDs",
    ),
    (
        "V10",
        "GpuDevicePlugin",
        {"denyIDs": "0x56A0"},
        "invalid resource: Invalid PCI Device ID: 0x56A0",
    ),
    (
        "V11",
        "GpuDevicePlugin",
        {"allowIDs": "0x4905", "denyIDs": "0x56a0"},
        "invalid resource: AllowIDs and DenyIDs cannot be used together",
    ),
    (
        "V12",
        "QatDevicePlugin",
        {"provisioningConfig": "c"},
        "invalid resource: ProvisioningConfig is set with no InitImage",
    ),
    (
        "V13",
        "QatDevicePlugin",
        {
            "initImage": "intel/intel-qat-initcontainer:0.36.0",
            "provisioningConfig": "c",
            "kernelVfDrivers": ["c6xxvf"],
        },
        "invalid resource: ProvisioningConfig is available only for 4xxx and 420xx devices",
    ),
    (
        "V14-dsa",
        "DsaDevicePlugin",
        {"provisioningConfig": "c"},
        "invalid resource: ProvisioningConfig is set with no InitImage",
    ),
    (
        "V14-iaa",
        "IaaDevicePlugin",
        {"provisioningConfig": "c"},
        "invalid resource: ProvisioningConfig is set with no InitImage",
    ),
    (
        "anchored-digest",
        "GpuDevicePlugin",
        {"image": f"evil-intel-gpu-plugin@sha256:{HEX64}"},
        'invalid resource: incorrect image name "evil-intel-gpu-plugin@sha256". Make sure you use '
        "'<vendor>/intel-gpu-plugin'",
    ),
]


@pytest.mark.parametrize(("case", "kind", "spec", "message"), DENIALS, ids=[d[0] for d in DENIALS])
async def test_invalid_resources_are_denied_with_the_reference_message(
    cluster: TestCluster,
    webhooked: Webhooked,
    case: str,
    kind: str,
    spec: dict[str, Any],
    message: str,
) -> None:
    completed = await apply(cluster, resource(kind, spec))
    assert completed.returncode != 0
    webhook = f"v{kind.lower()}.kb.io"
    assert f'admission webhook "{webhook}" denied the request: {message}' in completed.stderr


ACCEPTED = [
    ("V6", "GpuDevicePlugin", {"image": f"intel/intel-gpu-plugin@sha256:{HEX64}"}),
    ("V7", "GpuDevicePlugin", {"image": "my.reg:5000/a/b/intel-gpu-plugin:0.36.0"}),
    ("V8-none", "GpuDevicePlugin", {"sharedDevNum": 1, "preferredAllocationPolicy": "none"}),
    ("tag+digest", "GpuDevicePlugin", {"image": f"intel/intel-gpu-plugin:0.36.0@sha256:{HEX64}"}),
    ("fpga-without-init", "FpgaDevicePlugin", {"image": "intel/intel-fpga-plugin:0.36.0"}),
    (
        "qat-6xxx-config",
        "QatDevicePlugin",
        {
            "initImage": "intel/intel-qat-initcontainer:0.36.0",
            "provisioningConfig": "c",
            "kernelVfDrivers": ["6xxxvf"],
        },
    ),
]


@pytest.mark.parametrize(("case", "kind", "spec"), ACCEPTED, ids=[a[0] for a in ACCEPTED])
async def test_valid_resources_are_admitted(
    cluster: TestCluster, webhooked: Webhooked, case: str, kind: str, spec: dict[str, Any]
) -> None:
    completed = await apply(cluster, resource(kind, spec))
    assert completed.returncode == 0, completed.stderr


@pytest.mark.parametrize("name", list(devices.KINDS))
async def test_every_reference_sample_is_admitted_unchanged(
    cluster: TestCluster, webhooked: Webhooked, name: str
) -> None:
    body = yaml.safe_load((SAMPLES / f"deviceplugin_v1_{name}deviceplugin.yaml").read_text())
    body["metadata"]["name"] = f"adm-sample-{name}"
    completed = await apply(cluster, body)
    assert completed.returncode == 0, completed.stderr
    stored = await kubectl_json(cluster, "get", f"{name}deviceplugin", body["metadata"]["name"])
    # Unchanged: only the schema default (DSA driver: idxd) is added.
    assert {key: stored["spec"][key] for key in body["spec"]} == body["spec"]


async def test_updates_are_validated_too(cluster: TestCluster, webhooked: Webhooked) -> None:
    body = resource("NpuDevicePlugin", {"image": "intel/intel-npu-plugin:0.36.0"})
    assert (await apply(cluster, body)).returncode == 0
    completed = await kubectl(
        cluster,
        "patch",
        "npudeviceplugin",
        body["metadata"]["name"],
        "--type=merge",
        "-p",
        '{"spec": {"image": "intel/intel-npu-plugin:0.1.0"}}',
        check=False,
    )
    assert completed.returncode != 0
    assert 'version "0.1.0" is too low' in completed.stderr


async def test_warnings_are_shown_by_kubectl(cluster: TestCluster, webhooked: Webhooked) -> None:
    body = resource("GpuDevicePlugin", {"monitoringMode": "split"})
    completed = await apply(cluster, body)
    assert completed.returncode == 0, completed.stderr
    assert "Warning: spec.monitoringMode has no effect without spec.enableMonitoring" in (
        completed.stderr
    )
    qat = resource(
        "QatDevicePlugin",
        {
            "initImage": "intel/intel-qat-initcontainer:0.36.0",
            "provisioningConfig": "missing-config",
            "kernelVfDrivers": ["4xxxvf"],
        },
    )
    completed = await apply(cluster, qat)
    assert completed.returncode == 0, completed.stderr
    # Whether a ConfigMap exists in the plugin namespace is not told to whoever asks (issue 14).
    assert "missing-config" not in completed.stderr


async def test_malformed_reviews_get_a_clean_answer_and_the_server_stays_up(
    webhooked: Webhooked,
) -> None:
    import aiohttp

    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    path = devices.KINDS["gpu"].validate_path
    base = f"https://127.0.0.1:{webhooked.port}"
    async with aiohttp.ClientSession() as session:
        for body, status in (
            (b"not json", 400),
            (b"{}", 400),
            (b"[1,2]", 400),
            (b"x" * (4 * 1024 * 1024), 413),
        ):
            async with session.post(
                base + path, data=body, ssl=context, headers={"Content-Type": "application/json"}
            ) as reply:
                assert reply.status == status
        wrong_kind = {"request": {"uid": "u1", "kind": {"kind": "Pod"}, "object": {}}}
        async with session.post(base + path, json=wrong_kind, ssl=context) as reply:
            answer = await reply.json()
            assert reply.status == 200
            assert answer["response"]["allowed"] is False
        async with session.post(base + "/no-such-path", json=wrong_kind, ssl=context) as reply:
            assert reply.status in (404, 405)
    assert webhooked.manager.admission.serving


async def test_deleted_certificate_secret_is_recreated_and_bundle_repaired(
    cluster: TestCluster, webhooked: Webhooked
) -> None:
    async def bundle() -> str:
        configuration = await kubectl_json(
            cluster, "get", "validatingwebhookconfiguration", PREFIX + webhooks.VALIDATING_NAME
        )
        return str(configuration["webhooks"][0]["clientConfig"]["caBundle"])

    before = await bundle()
    await kubectl(cluster, "delete", "secret", "-n", OPERATOR_NAMESPACE, SECRET)
    await webhooked.manager.refresh_certificate()  # what the periodic check does
    secret = await kubectl_json(cluster, "get", "secret", "-n", OPERATOR_NAMESPACE, SECRET)
    assert await bundle() != before
    # The new CA first, the old one still trusted for the overlap (certificates.CA_OVERLAP):
    # other replicas may serve a certificate of it until their next check.
    new_ca, old_ca = (base64.b64decode(value) for value in (secret["data"]["ca.crt"], before))
    assert base64.b64decode(secret["data"]["ca-previous.crt"]) == old_ca
    assert base64.b64decode(await bundle()) == new_ca + old_ca

    # The apiserver trusts the new certificate: requests are still admitted and checked.
    async def admitted() -> bool:
        return bool((await apply(cluster, resource("NpuDevicePlugin", {}))).returncode == 0)

    await eventually_async(admitted, timeout=30, what="admission with the new certificate")


def sgx_pod(name: str, containers: list[str], provider: str) -> dict[str, Any]:
    epc = {"sgx.intel.com/epc": "1Mi"}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "annotations": {"sgx.intel.com/quote-provider": provider}},
        "spec": {
            "containers": [
                {
                    "name": c,
                    "image": "example.invalid/x:1",
                    "resources": {"limits": dict(epc), "requests": dict(epc)},
                }
                for c in containers
            ]
        },
    }


async def test_sgx_pods_are_mutated_and_other_pods_never_reach_the_webhook(
    cluster: TestCluster, webhooked: Webhooked
) -> None:
    namespace = f"sgx-{uuid.uuid4().hex[:6]}"
    await kubectl(cluster, "create", "namespace", namespace)
    await kubectl(cluster, "create", "serviceaccount", "default", "-n", namespace, check=False)
    calls = webhooked.manager.admission.calls

    async def created(body: dict[str, Any]) -> bool:
        done = await kubectl(
            cluster, "create", "-n", namespace, "-f", "-", input=json.dumps(body), check=False
        )
        return bool(done.returncode == 0)

    await eventually_async(
        lambda: created(sgx_pod("sidecar", ["test", "aesmd"], "aesmd")),
        timeout=30,
        what="the SGX pod to be admitted",
    )
    stored = await kubectl_json(cluster, "get", "pod", "sidecar", "-n", namespace)
    test, aesmd = stored["spec"]["containers"]
    assert test["resources"]["limits"]["sgx.intel.com/enclave"] == "1"
    assert "sgx.intel.com/provision" not in test["resources"]["limits"]
    assert aesmd["resources"]["limits"]["sgx.intel.com/provision"] == "1"
    assert [e for e in test["env"] if e["name"] == "SGX_AESM_ADDR"] == [
        {"name": "SGX_AESM_ADDR", "value": "1"}
    ]
    volumes = [v for v in stored["spec"]["volumes"] if v["name"] == "aesmd-socket"]
    assert volumes == [{"name": "aesmd-socket", "emptyDir": {"medium": "Memory"}}]
    assert stored["metadata"]["annotations"]["sgx.intel.com/epc"] == "2Mi"
    assert webhooked.manager.admission.calls > calls

    before = webhooked.manager.admission.calls
    plain = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "plain"},
        "spec": {"containers": [{"name": "c", "image": "example.invalid/x:1"}]},
    }
    assert await created(plain)
    assert webhooked.manager.admission.calls == before  # matchConditions kept it away
    await kubectl(cluster, "delete", "namespace", namespace, "--wait=false")


async def test_sgx_pods_in_aesmd_daemonset_and_named_provider_modes(
    cluster: TestCluster, webhooked: Webhooked
) -> None:
    namespace = f"sgx-{uuid.uuid4().hex[:6]}"
    await kubectl(cluster, "create", "namespace", namespace)
    await kubectl(cluster, "create", "serviceaccount", "default", "-n", namespace, check=False)

    async def create(body: dict[str, Any]) -> Any:
        return await kubectl(
            cluster, "create", "-n", namespace, "-f", "-", input=json.dumps(body), check=False
        )

    async def created(body: dict[str, Any]) -> bool:
        return bool((await create(body)).returncode == 0)

    # One EPC user and no aesmd container: the host's aesmd DaemonSet socket is mounted.
    await eventually_async(
        lambda: created(sgx_pod("host-aesmd", ["test"], "aesmd")),
        timeout=30,
        what="the SGX pod to be admitted",
    )
    stored = await kubectl_json(cluster, "get", "pod", "host-aesmd", "-n", namespace)
    (test,) = stored["spec"]["containers"]
    assert test["resources"]["limits"]["sgx.intel.com/enclave"] == "1"
    assert {"name": "aesmd-socket", "mountPath": "/var/run/aesmd"} in test["volumeMounts"]
    (volume,) = (v for v in stored["spec"]["volumes"] if v["name"] == "aesmd-socket")
    assert volume["hostPath"] == {"path": "/var/run/aesmd", "type": "DirectoryOrCreate"}
    assert stored["metadata"]["annotations"]["sgx.intel.com/epc"] == "1Mi"

    # The quote provider is a container of the pod: it alone gets the provision resource,
    # and no aesmd socket is involved.
    assert await created(sgx_pod("named", ["app", "qe"], "qe"))
    stored = await kubectl_json(cluster, "get", "pod", "named", "-n", namespace)
    app, qe = stored["spec"]["containers"]
    assert "sgx.intel.com/provision" not in app["resources"]["limits"]
    assert qe["resources"]["limits"]["sgx.intel.com/provision"] == "1"
    assert qe["resources"]["requests"]["sgx.intel.com/provision"] == "1"
    assert all(v["name"] != "aesmd-socket" for v in stored["spec"].get("volumes", []))
    assert all("env" not in c for c in (app, qe))
    assert stored["metadata"]["annotations"]["sgx.intel.com/epc"] == "2Mi"

    # Overcommitted extended resources are refused with the reference's message.
    overcommitted = sgx_pod("overcommitted", ["test"], "aesmd")
    overcommitted["spec"]["containers"][0]["resources"]["requests"] = {"sgx.intel.com/epc": "512Ki"}
    denied = await create(overcommitted)
    assert denied.returncode != 0
    assert """limits' and 'requests' for "sgx.intel.com/epc" must be equal""" in denied.stderr, (
        denied.stderr
    )
    await kubectl(cluster, "delete", "namespace", namespace, "--wait=false")


async def test_pods_in_the_operators_namespace_are_mutated_as_anywhere_else(
    cluster: TestCluster, webhooked: Webhooked
) -> None:
    """As the reference's: no namespaceSelector; only the matchConditions keep a pod away, and
    the operator's own pods and the plugins' ask for no device resource."""
    await kubectl(
        cluster, "create", "serviceaccount", "default", "-n", OPERATOR_NAMESPACE, check=False
    )

    async def create(body: dict[str, Any]) -> Any:
        return await kubectl(
            cluster,
            "create",
            "-n",
            OPERATOR_NAMESPACE,
            "-f",
            "-",
            input=json.dumps(body),
            check=False,
        )

    # A pod shaped like the operator's own (CPU and memory only) never reaches the mutators.
    before = webhooked.manager.admission.calls
    own = plain_pod(
        f"own-{uuid.uuid4().hex[:6]}",
        {
            "name": "manager",
            "image": "example.invalid/x:1",
            "resources": {"limits": {"cpu": "500m", "memory": "256Mi"}},
        },
    )
    assert (await create(own)).returncode == 0
    assert webhooked.manager.admission.calls == before

    # An SGX workload there is mutated.
    pod = sgx_pod(f"sgx-{uuid.uuid4().hex[:6]}", ["test"], "aesmd")

    async def created() -> bool:
        return bool((await create(pod)).returncode == 0)

    await eventually_async(created, timeout=30, what="the SGX pod to be admitted")
    stored = await kubectl_json(
        cluster, "get", "pod", pod["metadata"]["name"], "-n", OPERATOR_NAMESPACE
    )
    assert stored["spec"]["containers"][0]["resources"]["limits"]["sgx.intel.com/enclave"] == "1"
    assert webhooked.manager.admission.calls > before

    # An FPGA workload there is answered by the FPGA mutator (no mappings: denied by name).
    fpga_limits = {"fpga.intel.com/arria10.dcp1.2-nlb0-orchestrated": "1"}
    fpga = plain_pod(
        f"fpga-{uuid.uuid4().hex[:6]}",
        {
            "name": "fpga",
            "image": "example.invalid/x:1",
            "resources": {"limits": fpga_limits, "requests": dict(fpga_limits)},
        },
    )
    denied = await create(fpga)
    assert denied.returncode != 0
    assert "arria10.dcp1.2-nlb0-orchestrated" in denied.stderr, denied.stderr
    for name in (own["metadata"]["name"], pod["metadata"]["name"]):
        await kubectl(cluster, "delete", "pod", name, "-n", OPERATOR_NAMESPACE, "--wait=false")


# The FPGA Pod mutator (spec §3.6, §4.10, §6.6) ----------------------------------------------

MAPPINGS = SAMPLES / "mappings-collection.yaml"
IFACE_A10 = "ce48969398f05f33946d560708be108a"
AFU_NLB0 = "d8424dc4a4a3c413f89e433683f9040b"
REGION_A10 = f"fpga.intel.com/region-{IFACE_A10}"
AF_D5005_NLB3 = "fpga.intel.com/af-bfa.f7d.v6xNhR7oVv6MlYZc4buqLfffQFy9es9yIvFEsLk6zRg"
AF_A10_NLB0 = "fpga.intel.com/af-ce4.d84.zkiWk5jwXzOUbVYHCL4QithCTcSko8QT-J5DNoP5BAs"
ORCHESTRATED = "fpga.intel.com/arria10.dcp1.0-nlb0-orchestrated"
FPGA_WEBHOOK = "fpga.mutator.webhooks.intel.com"


def fpga_container(name: str, requests: dict[str, int], **fields: Any) -> dict[str, Any]:
    amounts = {resource: str(amount) for resource, amount in requests.items()}
    return {
        "name": name,
        "image": "example.invalid/x:1",
        "resources": {"limits": dict(amounts), "requests": dict(amounts)},
        **fields,
    }


def plain_pod(name: str, *containers: dict[str, Any], **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {"containers": list(containers), **spec},
    }


async def new_namespace(cluster: TestCluster, prefix: str) -> str:
    namespace = f"{prefix}-{uuid.uuid4().hex[:6]}"
    await kubectl(cluster, "create", "namespace", namespace)
    await kubectl(cluster, "create", "serviceaccount", "default", "-n", namespace, check=False)
    return namespace


async def create_pod(cluster: TestCluster, namespace: str, body: dict[str, Any]) -> Any:
    return await kubectl(
        cluster, "create", "-n", namespace, "-f", "-", input=json.dumps(body), check=False
    )


@pytest_asyncio.fixture(loop_scope="session")
async def fpga_namespace(cluster: TestCluster, webhooked: Webhooked) -> AsyncIterator[str]:
    """A namespace holding the reference's mappings sample, known to the operator."""
    namespace = await new_namespace(cluster, "fpga")
    await kubectl(cluster, "apply", "-n", namespace, "-f", str(MAPPINGS))
    expected = sum(1 for doc in yaml.safe_load_all(MAPPINGS.read_text()) if doc and "spec" in doc)

    async def known() -> bool:
        return len(webhooked.manager.fpga_mappings.resources(namespace)) == expected

    await eventually_async(known, timeout=30, what="the mappings to reach the operator")
    yield namespace
    await kubectl(cluster, "delete", "namespace", namespace, "--wait=false")


async def test_fpga_pods_are_mutated_from_the_mappings_of_their_namespace(
    cluster: TestCluster, webhooked: Webhooked, fpga_namespace: str
) -> None:
    """§6.6: each e2e example, one per container (modes cannot mix in one container)."""
    calls = webhooked.manager.admission.calls
    body = plain_pod(
        "fpga-e2e",
        fpga_container("preprogrammed", {"fpga.intel.com/d5005-nlb3-preprogrammed": 1}),
        fpga_container(
            "orchestrated",
            {ORCHESTRATED: 2},
            env=[
                {"name": "KEEP", "value": "me"},
                {"name": "FPGA_REGION_9", "value": "user-set, dropped"},
                {"name": "FROM_FIELD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            ],
        ),
        fpga_container("devel", {"fpga.intel.com/arria10.dcp1.0": 1}),
        {"name": "plain", "image": "example.invalid/x:1"},
    )
    completed = await create_pod(cluster, fpga_namespace, body)
    assert completed.returncode == 0, completed.stderr
    stored = await kubectl_json(cluster, "get", "pod", "fpga-e2e", "-n", fpga_namespace)
    preprogrammed, orchestrated, devel, plain = stored["spec"]["containers"]
    for container, resources in (
        (preprogrammed, {AF_D5005_NLB3: "1"}),
        (orchestrated, {REGION_A10: "2"}),
        (devel, {REGION_A10: "1"}),
    ):
        assert container["resources"] == {"limits": resources, "requests": resources}
    assert "env" not in preprogrammed
    assert "env" not in devel
    assert orchestrated["env"] == [
        {"name": "KEEP", "value": "me"},
        {
            "name": "FROM_FIELD",
            "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.name"}},
        },
        {"name": "FPGA_REGION_1", "value": IFACE_A10},
        {"name": "FPGA_AFU_1", "value": AFU_NLB0},
        {"name": "FPGA_REGION_2", "value": IFACE_A10},
        {"name": "FPGA_AFU_2", "value": AFU_NLB0},
    ]
    assert plain.get("resources") in (None, {})
    assert webhooked.manager.admission.calls == calls + 1


async def test_fpga_pods_in_a_namespace_without_mappings_are_denied(
    cluster: TestCluster, webhooked: Webhooked, fpga_namespace: str
) -> None:
    """§6.6: the mappings of another namespace do not apply; the message says what to do."""
    namespace = await new_namespace(cluster, "nofpga")
    completed = await create_pod(
        cluster, namespace, plain_pod("denied", fpga_container("c", {ORCHESTRATED: 1}))
    )
    assert completed.returncode != 0
    assert (
        f'admission webhook "{FPGA_WEBHOOK}" denied the request: no such resource: '
        f'"{ORCHESTRATED}": namespace "{namespace}" has no AcceleratorFunction or FpgaRegion '
        f'named "arria10.dcp1.0-nlb0-orchestrated"'
    ) in completed.stderr
    assert "mappings-collection.yaml" in completed.stderr
    missing = await kubectl(cluster, "get", "pod", "denied", "-n", namespace, check=False)
    assert missing.returncode != 0
    await kubectl(cluster, "delete", "namespace", namespace, "--wait=false")


async def test_updated_and_deleted_mappings_reach_the_next_pods(
    cluster: TestCluster, webhooked: Webhooked, fpga_namespace: str
) -> None:
    """The informers keep the mappings current: no restart, no stale answer."""
    mappings = webhooked.manager.fpga_mappings
    patch = '{"spec": {"mode": "af"}}'
    name = ORCHESTRATED.removeprefix("fpga.intel.com/")
    await kubectl(cluster, "patch", "af", name, "-n", fpga_namespace, "--type=merge", "-p", patch)

    async def updated() -> bool:
        return mappings.resources(fpga_namespace).get(ORCHESTRATED) == AF_A10_NLB0

    await eventually_async(updated, timeout=30, what="the update to reach the mappings")
    pod = plain_pod("after-update", fpga_container("c", {ORCHESTRATED: 1}))
    completed = await create_pod(cluster, fpga_namespace, pod)
    assert completed.returncode == 0, completed.stderr
    stored = await kubectl_json(cluster, "get", "pod", "after-update", "-n", fpga_namespace)
    (container,) = stored["spec"]["containers"]
    assert container["resources"]["limits"] == {AF_A10_NLB0: "1"}
    assert "env" not in container  # af mode: nothing to program

    await kubectl(cluster, "delete", "af", name, "-n", fpga_namespace)

    async def deleted() -> bool:
        return ORCHESTRATED not in mappings.resources(fpga_namespace)

    await eventually_async(deleted, timeout=30, what="the deletion to reach the mappings")
    pod = plain_pod("after-delete", fpga_container("c", {ORCHESTRATED: 1}))
    completed = await create_pod(cluster, fpga_namespace, pod)
    assert completed.returncode != 0
    assert f'no such resource: "{ORCHESTRATED}"' in completed.stderr
    # The other mappings of the namespace are untouched.
    pod = plain_pod("region-still", fpga_container("c", {"fpga.intel.com/arria10.dcp1.0": 1}))
    completed = await create_pod(cluster, fpga_namespace, pod)
    assert completed.returncode == 0, completed.stderr


async def test_pods_without_fpga_resources_never_reach_the_fpga_webhook(
    cluster: TestCluster, webhooked: Webhooked, fpga_namespace: str
) -> None:
    """The CEL matchCondition keeps every other pod away (the apiserver compiled it when the
    configuration was created); init containers are not mutated, so not matched either."""
    before = webhooked.manager.admission.calls
    others = [
        plain_pod("no-resources", {"name": "c", "image": "example.invalid/x:1"}),
        plain_pod(
            "cpu-only",
            fpga_container("c", {}) | {"resources": {"limits": {"cpu": "100m"}}},
        ),
        plain_pod("other-domain", fpga_container("c", {"example.com/fpga.intel.com": 1})),
        plain_pod(
            "init-only",
            {"name": "c", "image": "example.invalid/x:1"},
            initContainers=[fpga_container("init", {"fpga.intel.com/arria10.dcp1.0": 1})],
        ),
    ]
    for body in others:
        completed = await create_pod(cluster, fpga_namespace, body)
        assert completed.returncode == 0, completed.stderr
    assert webhooked.manager.admission.calls == before
    stored = await kubectl_json(cluster, "get", "pod", "init-only", "-n", fpga_namespace)
    limits = stored["spec"]["initContainers"][0]["resources"]["limits"]
    assert limits == {"fpga.intel.com/arria10.dcp1.0": "1"}  # as the reference: unmutated

    completed = await create_pod(
        cluster, fpga_namespace, plain_pod("requests-one", fpga_container("c", {REGION_A10: 1}))
    )
    assert completed.returncode == 0, completed.stderr
    assert webhooked.manager.admission.calls == before + 1  # a real resource is still checked


async def test_the_fpga_webhook_gets_the_ca_bundle(
    cluster: TestCluster, webhooked: Webhooked
) -> None:
    configuration = await kubectl_json(
        cluster, "get", "mutatingwebhookconfiguration", PREFIX + webhooks.MUTATING_NAME
    )
    (hook,) = (h for h in configuration["webhooks"] if h["name"] == FPGA_WEBHOOK)
    secret = await kubectl_json(cluster, "get", "secret", "-n", OPERATOR_NAMESPACE, SECRET)
    assert hook["clientConfig"]["caBundle"] == trusted(secret)
    assert hook["clientConfig"]["url"].endswith("/pods")
    assert hook["failurePolicy"] == "Fail"
    assert [c["name"] for c in hook["matchConditions"]] == ["requests-fpga-resources"]


async def test_readiness_waits_for_the_mappings_to_be_listed(
    cluster: TestCluster,
    webhooked: Webhooked,
    tmp_path: pathlib.Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """An FPGA operator that cannot list AcceleratorFunctions yet is not ready (no pod may be
    judged against half of the mappings); it becomes ready once it can. Run as an account
    with the generated RBAC, so that the FpgaRegion watch proves the rules sufficient."""
    account = "fpga-readiness"
    role = PREFIX + account
    await kubectl(cluster, "create", "serviceaccount", account, "-n", OPERATOR_NAMESPACE)
    fpga_kind = devices.KINDS["fpga"]
    full = rbac.cluster_rules([fpga_kind]) + rbac.namespaced_rules()
    without_functions = [
        r | {"resources": [x for x in r["resources"] if x != "acceleratorfunctions"]} for r in full
    ]
    assert without_functions != full

    async def set_rules(rules: list[dict[str, Any]]) -> None:
        body = {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": role},
            "rules": rules,
        }
        await kubectl(cluster, "apply", "-f", "-", input=json.dumps(body))

    await set_rules(without_functions)
    await kubectl(
        cluster,
        "create",
        "clusterrolebinding",
        role,
        f"--clusterrole={role}",
        f"--serviceaccount={OPERATOR_NAMESPACE}:{account}",
    )
    kubeconfig = (
        await asyncio.to_thread(
            token_kubeconfig,
            cluster,
            account,
            OPERATOR_NAMESPACE,
            tmp_path / "account.kubeconfig",
        )
    ).path
    caplog.set_level(logging.WARNING, logger="deviceplugin_operator.controller.informer")
    kube = await client.connect(kubeconfig)
    config = settings.Settings(plugin_namespace=OPERATOR_NAMESPACE, devices=("fpga",))
    options = manager.Options(health_probe_bind_address="127.0.0.1:0", webhook_port=0)
    mgr = manager.Manager(config, options, kube)
    functions, regions = mgr.mapping_informers
    functions.retry = backoff.Backoff(initial=0.2, cap=0.5)
    try:
        await mgr.serve()
        readyz = f"http://127.0.0.1:{mgr.probes.port}/readyz"
        for inf in (mgr.daemonsets, mgr.pods, regions, *mgr.plugin_informers):
            await asyncio.wait_for(inf.wait_synced(), timeout=30)

        async def refused_twice() -> bool:
            failures = [
                r
                for r in caplog.records
                if r.getMessage() == "List failed"
                and str(r.__dict__.get("resource", "")).startswith("acceleratorfunctions")
            ]
            return len(failures) >= 2

        # Refused more than once, not merely not tried yet.
        await eventually_async(refused_twice, timeout=30, what="the list to be refused")
        assert not functions.synced
        status, body = await asyncio.to_thread(_get, readyz)
        assert status == 500
        assert "informers-synced" in body
        assert not mgr.admission.fpga_loaded()

        await set_rules(full)

        async def ready() -> bool:
            return (await asyncio.to_thread(_get, readyz))[0] == 200

        await eventually_async(ready, timeout=30, what="readiness once the list is allowed")
        assert mgr.admission.fpga_loaded()
    finally:
        await mgr.stop()
        await kube.close()
        await kubectl(cluster, "delete", "clusterrolebinding", role, "--ignore-not-found")
        await kubectl(cluster, "delete", "clusterrole", role, "--ignore-not-found")
        await kubectl(
            cluster,
            "delete",
            "serviceaccount",
            account,
            "-n",
            OPERATOR_NAMESPACE,
            "--ignore-not-found",
        )


def _get(url: str) -> tuple[int, str]:
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=5) as reply:
            return int(reply.status), reply.read().decode()
    except urllib.error.HTTPError as error:
        return int(error.code), error.read().decode()
