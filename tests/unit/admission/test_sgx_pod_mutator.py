"""The SGX Pod mutator (spec §3.5): the reference's e2e scenarios W1-W6 and the fixes of §8
item 16 (reinvocation is idempotent, quantities compare by amount, env is preserved)."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from deviceplugin_operator.admission import errors, review, sgx

EPC_1MI = {"limits": {sgx.EPC: "1Mi"}, "requests": {sgx.EPC: "1Mi"}}
HOST_PATH = {
    "name": "aesmd-socket",
    "hostPath": {"path": "/var/run/aesmd", "type": "DirectoryOrCreate"},
}
EMPTY_DIR = {"name": "aesmd-socket", "emptyDir": {"medium": "Memory"}}
MOUNT = {"name": "aesmd-socket", "mountPath": "/var/run/aesmd"}
ADDRESS = {"name": "SGX_AESM_ADDR", "value": "1"}


def pod(names: list[str], provider: str | None = None, **container: Any) -> dict[str, Any]:
    """A pause pod as the e2e tests make it: each container asks for 1Mi of EPC."""
    annotations = {} if provider is None else {sgx.QUOTE_PROVIDER: provider}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "p", "annotations": annotations},
        "spec": {
            "containers": [
                {"name": name, "image": "pause", "resources": copy.deepcopy(EPC_1MI), **container}
                for name in names
            ]
        },
    }


def mutated(before: dict[str, Any]) -> dict[str, Any]:
    """The pod as stored, after checking that a reinvocation changes nothing more."""
    after: dict[str, Any] = review.apply(before, sgx.mutate(before))
    assert sgx.mutate(after) == []
    return after


def limits(pod: dict[str, Any], index: int) -> dict[str, str]:
    container_limits: dict[str, str] = pod["spec"]["containers"][index]["resources"]["limits"]
    assert container_limits == pod["spec"]["containers"][index]["resources"]["requests"]
    return container_limits


def test_w1_no_quote_provider_gets_the_enclave_only() -> None:
    after = mutated(pod(["test"], ""))
    assert limits(after, 0) == {sgx.EPC: "1Mi", sgx.ENCLAVE: "1"}
    assert after["metadata"]["annotations"][sgx.EPC_ANNOTATION] == "1Mi"
    assert "volumes" not in after["spec"]
    assert "env" not in after["spec"]["containers"][0]


def test_w2_the_quote_provider_container_gets_the_provision_device() -> None:
    after = mutated(pod(["test"], "test"))
    assert limits(after, 0) == {sgx.EPC: "1Mi", sgx.ENCLAVE: "1", sgx.PROVISION: "1"}
    assert after["metadata"]["annotations"][sgx.EPC_ANNOTATION] == "1Mi"


def test_w3_aesmd_sidecar_shares_an_in_memory_socket_directory() -> None:
    after = mutated(pod(["test", "aesmd"], "aesmd"))
    assert limits(after, 0) == {sgx.EPC: "1Mi", sgx.ENCLAVE: "1"}
    assert limits(after, 1) == {sgx.EPC: "1Mi", sgx.ENCLAVE: "1", sgx.PROVISION: "1"}
    assert after["spec"]["volumes"] == [EMPTY_DIR]
    for container in after["spec"]["containers"]:
        assert container["volumeMounts"] == [MOUNT]
        assert container["env"] == [ADDRESS]
    assert after["metadata"]["annotations"][sgx.EPC_ANNOTATION] == "2Mi"


def test_w4_aesmd_daemonset_socket_comes_from_the_host() -> None:
    after = mutated(pod(["test"], "aesmd"))
    assert limits(after, 0) == {sgx.EPC: "1Mi", sgx.ENCLAVE: "1"}
    assert after["spec"]["volumes"] == [HOST_PATH]
    assert after["spec"]["containers"][0]["env"] == [ADDRESS]
    assert after["spec"]["containers"][0]["volumeMounts"] == [MOUNT]
    assert after["metadata"]["annotations"][sgx.EPC_ANNOTATION] == "1Mi"


def test_w5_several_users_of_the_aesmd_daemonset() -> None:
    after = mutated(pod(["test1", "test2", "test3"], "aesmd"))
    for index in range(3):
        assert limits(after, index) == {sgx.EPC: "1Mi", sgx.ENCLAVE: "1"}
        assert after["spec"]["containers"][index]["env"] == [ADDRESS]
    assert after["spec"]["volumes"] == [HOST_PATH]
    assert after["metadata"]["annotations"][sgx.EPC_ANNOTATION] == "3Mi"


def test_w6_an_existing_socket_volume_and_mount_are_kept_alone() -> None:
    before = pod(["test"], "aesmd", volumeMounts=[MOUNT])
    before["spec"]["volumes"] = [EMPTY_DIR]
    after = mutated(before)
    assert after["spec"]["volumes"] == [EMPTY_DIR]
    assert after["spec"]["containers"][0]["volumeMounts"] == [MOUNT]


def test_a_lone_aesmd_container_uses_the_host_socket() -> None:
    after = mutated(pod(["aesmd"], "aesmd"))
    assert after["spec"]["volumes"] == [HOST_PATH]
    assert limits(after, 0)[sgx.PROVISION] == "1"


def test_the_patch_only_adds_at_precise_paths() -> None:
    patch = sgx.mutate(pod(["test"], "aesmd"))
    assert [operation.wire() for operation in patch] == [
        {
            "op": "add",
            "path": "/spec/containers/0/resources/limits/sgx.intel.com~1enclave",
            "value": "1",
        },
        {
            "op": "add",
            "path": "/spec/containers/0/resources/requests/sgx.intel.com~1enclave",
            "value": "1",
        },
        {"op": "add", "path": "/spec/containers/0/volumeMounts", "value": [MOUNT]},
        {"op": "add", "path": "/spec/containers/0/env", "value": [ADDRESS]},
        {"op": "add", "path": "/spec/volumes", "value": [HOST_PATH]},
        {"op": "add", "path": "/metadata/annotations/sgx.intel.com~1epc", "value": "1Mi"},
    ]


def test_existing_lists_are_appended_to_and_other_entries_kept() -> None:
    env = [
        {"name": "A", "value": "x"},
        {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
    ]
    mounts = [{"name": "data", "mountPath": "/data"}]
    before = pod(["test"], "aesmd", env=env, volumeMounts=mounts)
    before["spec"]["volumes"] = [{"name": "data", "emptyDir": {}}]
    before["metadata"]["annotations"]["other"] = "kept"
    after = mutated(before)
    container = after["spec"]["containers"][0]
    assert container["env"] == [*env, ADDRESS]
    assert container["volumeMounts"] == [*mounts, MOUNT]
    assert after["spec"]["volumes"] == [{"name": "data", "emptyDir": {}}, HOST_PATH]
    assert after["metadata"]["annotations"]["other"] == "kept"


def test_a_users_own_aesm_address_is_kept_not_duplicated() -> None:
    own = {"name": "SGX_AESM_ADDR", "valueFrom": {"configMapKeyRef": {"name": "c", "key": "k"}}}
    after = mutated(pod(["test"], "aesmd", env=[own]))
    assert after["spec"]["containers"][0]["env"] == [own]


def test_enclave_already_requested_is_not_touched_and_a_wrong_amount_is_fixed() -> None:
    resources = {
        "limits": {sgx.EPC: "1Mi", sgx.ENCLAVE: "1"},
        "requests": {sgx.EPC: "1Mi", sgx.ENCLAVE: 1},
    }
    assert sgx.mutate(pod(["test"], resources=resources)) == [
        review.add("/metadata/annotations/sgx.intel.com~1epc", "1Mi")
    ]
    resources = {
        "limits": {sgx.EPC: "1Mi", sgx.ENCLAVE: "2"},
        "requests": {sgx.EPC: "1Mi", sgx.ENCLAVE: "2"},
    }
    assert limits(mutated(pod(["test"], resources=resources)), 0)[sgx.ENCLAVE] == "1"


def test_equal_amounts_in_different_notations_are_equal() -> None:
    resources = {"limits": {sgx.EPC: "1Mi"}, "requests": {sgx.EPC: "1048576"}}
    after = mutated(pod(["test"], resources=resources))
    assert after["metadata"]["annotations"][sgx.EPC_ANNOTATION] == "1Mi"


@pytest.mark.parametrize(
    ("amounts", "annotation"),
    [(["1Ki", "512"], "1536"), (["1Gi"], "1Gi"), (["512"], "512"), (["1Mi", "1Mi", "1Mi"], "3Mi")],
)
def test_the_epc_annotation_is_the_total_in_binary_si(amounts: list[str], annotation: str) -> None:
    before = pod([f"c{index}" for index in range(len(amounts))])
    for container, amount in zip(before["spec"]["containers"], amounts, strict=True):
        container["resources"] = {"limits": {sgx.EPC: amount}, "requests": {sgx.EPC: amount}}
    assert mutated(before)["metadata"]["annotations"][sgx.EPC_ANNOTATION] == annotation


@pytest.mark.parametrize(
    ("resources", "message"),
    [
        (
            {"limits": {sgx.EPC: "1Mi"}},
            "'limits' and 'requests' for \"sgx.intel.com/epc\" must be equal as extended "
            "resources cannot be overcommitted",
        ),
        (
            {"requests": {sgx.EPC: "1Mi"}},
            "'limits' and 'requests' for \"sgx.intel.com/epc\" must be equal as extended "
            "resources cannot be overcommitted",
        ),
        (
            {"limits": {sgx.EPC: "2Mi"}, "requests": {sgx.EPC: "1Mi"}},
            "'limits' and 'requests' for \"sgx.intel.com/epc\" must be equal",
        ),
        (
            {"limits": {sgx.EPC: "500m"}, "requests": {sgx.EPC: "500m"}},
            'resource quantity isn\'t of integral type for "sgx.intel.com/epc"',
        ),
        (
            # Checked in every container, also one without EPC.
            {"limits": {sgx.ENCLAVE: "1"}, "requests": {sgx.ENCLAVE: "2"}},
            "'limits' and 'requests' for \"sgx.intel.com/enclave\" must be equal",
        ),
        (
            {"limits": {sgx.EPC: "lots"}, "requests": {sgx.EPC: "lots"}},
            'invalid quantity for "sgx.intel.com/epc"',
        ),
    ],
)
def test_invalid_sgx_requests_deny_the_pod(resources: dict[str, Any], message: str) -> None:
    with pytest.raises(errors.Rejected) as raised:
        sgx.mutate(pod(["test"], resources=resources))
    assert raised.value.message.startswith(message)
    assert raised.value.code == 403


def test_pods_without_epc_are_left_alone() -> None:
    plain = pod(["test"], "aesmd", resources={"limits": {"cpu": "1"}})
    assert sgx.mutate(plain) == []
    assert sgx.mutate({"metadata": {}, "spec": {"containers": [{"name": "c"}]}}) == []
    assert sgx.mutate({"apiVersion": "v1", "kind": "Pod"}) == []


def test_init_containers_and_other_domains_are_not_looked_at() -> None:
    before = pod(["test"], resources={"limits": {"sgx.intel.community/epc": "1"}})
    before["spec"]["initContainers"] = [{"name": "init", "resources": copy.deepcopy(EPC_1MI)}]
    assert sgx.mutate(before) == []


def test_missing_metadata_or_annotations_are_created() -> None:
    no_annotations = pod(["test"])
    del no_annotations["metadata"]["annotations"]
    assert mutated(no_annotations)["metadata"]["annotations"] == {sgx.EPC_ANNOTATION: "1Mi"}
    no_metadata = pod(["test"])
    del no_metadata["metadata"]
    assert mutated(no_metadata)["metadata"] == {"annotations": {sgx.EPC_ANNOTATION: "1Mi"}}


@pytest.mark.parametrize(
    "broken",
    [
        [],
        {"spec": []},
        {"spec": {"containers": {}}},
        {"spec": {"containers": ["x"]}},
        {"metadata": {"annotations": []}},
        {"spec": {"containers": [{"name": "c", "resources": []}]}},
    ],
)
def test_unreadable_pods_are_a_400_denial(broken: Any) -> None:
    with pytest.raises(errors.Rejected) as raised:
        sgx.mutate(broken)
    assert raised.value.code == 400


amounts = st.sampled_from(["1", "1Mi", "1048576", "2", "0", "500m", "1e3", 1, 2.0, "x"])
resource_maps = st.dictionaries(
    st.sampled_from([sgx.EPC, sgx.ENCLAVE, sgx.PROVISION, "cpu"]), amounts, max_size=3
)
containers = st.fixed_dictionaries(
    {
        "name": st.sampled_from(["aesmd", "test", "other"]),
        "resources": st.fixed_dictionaries(
            {}, optional={"limits": resource_maps, "requests": resource_maps}
        ),
    },
    optional={
        "env": st.lists(st.sampled_from([ADDRESS, {"name": "A", "value": "b"}]), max_size=2),
        "volumeMounts": st.lists(
            st.sampled_from([MOUNT, {"name": "d", "mountPath": "/d"}]), max_size=2
        ),
    },
)
pods = st.fixed_dictionaries(
    {
        "metadata": st.fixed_dictionaries(
            {},
            optional={
                "annotations": st.dictionaries(
                    st.sampled_from([sgx.QUOTE_PROVIDER, sgx.EPC_ANNOTATION]),
                    st.sampled_from(["aesmd", "test", "", "1Mi"]),
                )
            },
        ),
        "spec": st.fixed_dictionaries(
            {"containers": st.lists(containers, max_size=3)},
            optional={"volumes": st.lists(st.sampled_from([EMPTY_DIR, HOST_PATH]), max_size=1)},
        ),
    }
)


@settings(max_examples=300, deadline=None)
@given(before=pods)
def test_any_pod_is_denied_or_patched_idempotently(before: dict[str, Any]) -> None:
    try:
        patch = sgx.mutate(before)
    except errors.Rejected:
        return
    after = review.apply(before, patch)
    assert sgx.mutate(after) == []
    for old, new in zip(before["spec"]["containers"], after["spec"]["containers"], strict=True):
        count = [var["name"] for var in new.get("env", [])].count("SGX_AESM_ADDR")
        assert count <= max(1, [var["name"] for var in old.get("env", [])].count("SGX_AESM_ADDR"))
    volumes = [volume["name"] for volume in after["spec"].get("volumes", [])]
    assert volumes.count("aesmd-socket") <= 1
