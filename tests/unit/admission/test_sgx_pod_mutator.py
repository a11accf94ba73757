"""The SGX Pod mutator on the reference's e2e scenarios W1-W6, plus the fixed bugs."""

import pytest

from deviceplugin_operator.admission import rules, sgx


def pod(names: list[str], provider: str = "", epc: str = "1Mi") -> dict:  # type: ignore[type-arg]
    return {
        "metadata": {"annotations": {sgx.QUOTE_PROVIDER: provider}},
        "spec": {
            "containers": [
                {"name": n, "resources": {"limits": {sgx.EPC: epc}, "requests": {sgx.EPC: epc}}}
                for n in names
            ]
        },
    }


def test_w1_enclave_only_and_epc_annotation() -> None:
    out = sgx.mutate(pod(["test"]))
    limits = out["spec"]["containers"][0]["resources"]["limits"]
    assert limits[sgx.ENCLAVE] == "1"
    assert sgx.PROVISION not in limits
    assert out["metadata"]["annotations"][sgx.EPC] == "1Mi"


def test_w2_quote_provider_container_gets_provision() -> None:
    limits = sgx.mutate(pod(["test"], "test"))["spec"]["containers"][0]["resources"]["limits"]
    assert limits[sgx.PROVISION] == "1"


def test_w3_sidecar_aesmd_uses_an_emptydir() -> None:
    out = sgx.mutate(pod(["test", "aesmd"], "aesmd"))
    assert out["spec"]["volumes"] == [{"name": "aesmd-socket", "emptyDir": {"medium": "Memory"}}]
    test, aesmd = out["spec"]["containers"]
    assert test["env"][0] == {"name": "SGX_AESM_ADDR", "value": "1"}
    assert sgx.PROVISION in aesmd["resources"]["limits"]
    assert sgx.PROVISION not in test["resources"]["limits"]
    assert out["metadata"]["annotations"][sgx.EPC] == "2Mi"


def test_w4_w5_daemonset_aesmd_uses_the_host_socket() -> None:
    out = sgx.mutate(pod(["a", "b", "c"], "aesmd"))
    host_path = {"path": "/var/run/aesmd", "type": "DirectoryOrCreate"}
    assert out["spec"]["volumes"][0]["hostPath"] == host_path
    assert out["metadata"]["annotations"][sgx.EPC] == "3Mi"


def test_w6_and_reinvocation_are_idempotent() -> None:
    once = sgx.mutate(pod(["test", "aesmd"], "aesmd"))
    assert sgx.mutate(once) == once
    assert sgx.patch(once) == []


def test_quantities_compare_semantically_and_must_be_whole() -> None:
    p = pod(["test"])
    p["spec"]["containers"][0]["resources"]["requests"][sgx.EPC] = "1048576"
    assert sgx.mutate(p)["metadata"]["annotations"][sgx.EPC] == "1Mi"
    limits_only = {"name": "t", "resources": {"limits": {sgx.EPC: "1Mi"}}}
    with pytest.raises(rules.Rejected, match="must be equal"):
        sgx.mutate(pod(["t"]) | {"spec": {"containers": [limits_only]}})
    with pytest.raises(rules.Rejected, match="integral"):
        sgx.mutate(pod(["t"], epc="500m"))


def test_pods_without_sgx_are_left_alone() -> None:
    plain = {"metadata": {}, "spec": {"containers": [{"name": "c", "image": "x"}]}}
    assert sgx.patch(plain) == []
