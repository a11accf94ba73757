"""The FPGA mappings and Pod mutator (spec §3.6, §4.10): the reference's unit scenarios P1-P16
and M1-M5 (§6.4), its e2e examples (§6.6), and the fixes of §8 item 17."""

from __future__ import annotations

import copy
import threading
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from deviceplugin_operator import devices
from deviceplugin_operator.admission import endpoints, errors, fpga, review, server
from deviceplugin_operator.api import fpga as fpga_api
from deviceplugin_operator.api import meta

NS = "default"
AFU_NLB0 = "d8424dc4a4a3c413f89e433683f9040b"
AFU_NLB3 = "f7df405cbd7acf7222f144b0b93acd18"
IFACE_A10 = "ce48969398f05f33946d560708be108a"
IFACE_D5005 = "bfac4d851ee856fe8c95865ce1bbaa2d"
AF_NLB0 = "fpga.intel.com/af-ce4.d84.zkiWk5jwXzOUbVYHCL4QithCTcSko8QT-J5DNoP5BAs"
REGION_A10 = f"fpga.intel.com/region-{IFACE_A10}"


def function(
    name: str, afu: str = AFU_NLB0, iface: str = IFACE_A10, mode: str = "af", namespace: str = NS
) -> fpga_api.AcceleratorFunction:
    # model_construct: the scenarios include ids and modes the CRD schema would refuse.
    return fpga_api.AcceleratorFunction.model_construct(
        metadata=meta.ObjectMeta(name=name, namespace=namespace),
        spec=fpga_api.AcceleratorFunctionSpec.model_construct(
            afu_id=afu, interface_id=iface, mode=mode
        ),
    )


def region(name: str, iface: str = IFACE_A10, namespace: str = NS) -> fpga_api.FpgaRegion:
    return fpga_api.FpgaRegion(
        metadata=meta.ObjectMeta(name=name, namespace=namespace),
        spec=fpga_api.FpgaRegionSpec(interface_id=iface),
    )


def container(requests: dict[str, Any], *, name: str = "c", **fields: Any) -> dict[str, Any]:
    return {
        "name": name,
        "resources": {"limits": dict(requests), "requests": dict(requests)},
        **fields,
    }


def pod(*containers: dict[str, Any], namespace: str | None = None) -> dict[str, Any]:
    metadata: dict[str, Any] = {"generateName": "goodpod"}
    if namespace is not None:
        metadata["namespace"] = namespace
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": metadata,
        "spec": {"containers": list(containers)},
    }


def sizes(mappings: fpga.Mappings, namespace: str = NS) -> tuple[int, int]:
    return len(mappings.resources(namespace)), len(mappings.identities(namespace))


# Mappings (P1-P6) ------------------------------------------------------------------------


def test_p1_an_af_mode_function_maps_to_its_af_resource() -> None:
    mappings = fpga.Mappings()
    mappings.add_accelerator_function(function("arria10-nlb0"))
    assert mappings.resources(NS) == {"fpga.intel.com/arria10-nlb0": AF_NLB0}
    assert mappings.identities(NS) == {AF_NLB0: 1}


def test_p2_ids_that_are_not_hexadecimal_are_refused() -> None:
    mappings = fpga.Mappings()
    with pytest.raises(errors.InvalidMapping, match="not hexadecimal"):
        mappings.add_accelerator_function(function("bad", afu="wrong string", iface="wrong string"))
    with pytest.raises(errors.InvalidMapping):
        mappings.add_accelerator_function(function("odd", afu="d8424dc4a"))  # odd length
    assert sizes(mappings) == (0, 0)


def test_p3_removing_the_function_empties_the_maps() -> None:
    mappings = fpga.Mappings()
    mappings.add_accelerator_function(function("arria10-nlb0"))
    mappings.remove_accelerator_function(NS, "arria10-nlb0")
    assert sizes(mappings) == (0, 0)


def test_p4_p5_a_region_maps_to_its_region_resource_and_is_removed() -> None:
    mappings = fpga.Mappings()
    mappings.add_region(region("arria10"))
    assert mappings.resources(NS) == {"fpga.intel.com/arria10": REGION_A10}
    assert mappings.identities(NS) == {REGION_A10: 1}
    mappings.remove_region(NS, "arria10")
    assert sizes(mappings) == (0, 0)


def test_p6_identities_are_reference_counted() -> None:
    mappings = fpga.Mappings()
    mappings.add_region(region("arria10"))
    mappings.add_region(region("arria10-alias"))
    assert sizes(mappings) == (2, 1)
    assert mappings.identities(NS) == {REGION_A10: 2}
    mappings.remove_region(NS, "arria10")
    assert sizes(mappings) == (1, 1)
    mappings.remove_region(NS, "arria10-alias")
    assert sizes(mappings) == (0, 0)


def test_region_mode_and_other_mode_functions_map_to_the_region_resource() -> None:
    mappings = fpga.Mappings()
    mappings.add_accelerator_function(function("orchestrated", mode="region"))
    mappings.add_accelerator_function(function("odd", mode="unknown"))
    assert set(mappings.resources(NS).values()) == {REGION_A10}
    assert mappings.identities(NS) == {REGION_A10: 2}


def test_an_update_releases_the_identity_it_had() -> None:
    # The reference incremented the new identity and never released the old one.
    mappings = fpga.Mappings()
    mappings.add_accelerator_function(function("f", iface=IFACE_A10))
    mappings.add_accelerator_function(function("f", iface=IFACE_A10))
    assert mappings.identities(NS) == {AF_NLB0: 1}
    mappings.add_accelerator_function(function("f", iface=IFACE_D5005, afu=AFU_NLB3))
    assert mappings.identities(NS) == {
        "fpga.intel.com/af-bfa.f7d.v6xNhR7oVv6MlYZc4buqLfffQFy9es9yIvFEsLk6zRg": 1
    }
    mappings.add_region(region("r"))
    mappings.add_region(region("r", iface=IFACE_D5005))
    assert f"fpga.intel.com/region-{IFACE_D5005}" in mappings.identities(NS)
    assert REGION_A10 not in mappings.identities(NS)


def test_a_failed_update_keeps_the_previous_mapping() -> None:
    mappings = fpga.Mappings()
    mappings.add_accelerator_function(function("f"))
    with pytest.raises(errors.InvalidMapping):
        mappings.add_accelerator_function(function("f", afu="zz"))
    assert mappings.resources(NS) == {"fpga.intel.com/f": AF_NLB0}


def test_removing_what_is_unknown_is_harmless_and_namespaces_are_separate() -> None:
    mappings = fpga.Mappings()
    mappings.remove_accelerator_function("nowhere", "x")
    mappings.remove_region("nowhere", "x")
    mappings.add_region(region("arria10", namespace="a"))
    mappings.remove_region("b", "arria10")
    mappings.remove_accelerator_function("a", "arria10")  # a region, not a function
    assert sizes(mappings, "a") == (1, 1)
    assert sizes(mappings, "b") == (0, 0)


def test_the_resource_name_derivation() -> None:
    assert fpga.af_resource(IFACE_D5005, AFU_NLB3) == (
        "fpga.intel.com/af-bfa.f7d.v6xNhR7oVv6MlYZc4buqLfffQFy9es9yIvFEsLk6zRg"
    )
    assert fpga.af_resource(IFACE_A10, AFU_NLB0) == AF_NLB0
    assert fpga.region_resource(IFACE_A10) == REGION_A10


# Pod mutation (P7-P16) -------------------------------------------------------------------


def ops_for(mappings: fpga.Mappings, *containers: dict[str, Any]) -> list[review.Operation]:
    return mappings.mutate(pod(*containers), NS)


def orchestrated_pair() -> fpga.Mappings:
    mappings = fpga.Mappings()
    mappings.add_accelerator_function(function("arria10-nlb0", mode="region"))
    mappings.add_accelerator_function(function("arria10-nlb0-alias", mode="region"))
    return mappings


def test_p7_user_fpga_variables_are_dropped_and_others_kept() -> None:
    mappings = fpga.Mappings()
    mappings.add_accelerator_function(function("arria10-nlb0"))
    env = [
        {"name": "FPGA_AFU", "value": "x"},
        {"name": "FPGA_REGION", "value": "y"},
        {"name": "FAKE_VAR", "value": "z"},
    ]
    patch = ops_for(mappings, container({"fpga.intel.com/arria10-nlb0": 1}, env=env))
    assert patch[-1] == review.add("/spec/containers/0/env", [{"name": "FAKE_VAR", "value": "z"}])


def test_p8_region_mode_resources_become_the_region_and_program_variables() -> None:
    c = container(
        {"fpga.intel.com/arria10-nlb0": 1, "fpga.intel.com/arria10-nlb0-alias": 2, "cpu": 1},
        env=[{"name": "SOME_VAR", "value": "some value"}],
    )
    patch = ops_for(orchestrated_pair(), c)
    assert len(patch) == 7
    assert [op.op for op in patch].count("remove") == 4
    region_path = "/spec/containers/0/resources/{}/fpga.intel.com~1region-" + IFACE_A10
    assert review.add(region_path.format("limits"), "3") in patch
    assert review.add(region_path.format("requests"), "3") in patch
    env = patch[-1].value
    assert env[0] == {"name": "SOME_VAR", "value": "some value"}
    assert env[1:] == [
        {"name": f"FPGA_{kind}_{n}", "value": IFACE_A10 if kind == "REGION" else AFU_NLB0}
        for n in (1, 2, 3)
        for kind in ("REGION", "AFU")
    ]


def test_p9_an_af_mode_function_is_renamed() -> None:
    mappings = fpga.Mappings()
    mappings.add_accelerator_function(function("arria10-nlb0"))
    patch = ops_for(mappings, container({"fpga.intel.com/arria10-nlb0": 1}))
    escaped = AF_NLB0.replace("/", "~1")
    assert [op.wire() for op in patch] == [
        {
            "op": "remove",
            "path": "/spec/containers/0/resources/limits/fpga.intel.com~1arria10-nlb0",
        },
        {
            "op": "remove",
            "path": "/spec/containers/0/resources/requests/fpga.intel.com~1arria10-nlb0",
        },
        {"op": "add", "path": f"/spec/containers/0/resources/limits/{escaped}", "value": "1"},
        {"op": "add", "path": f"/spec/containers/0/resources/requests/{escaped}", "value": "1"},
    ]


def test_p10_the_real_resource_asked_for_directly_needs_nothing() -> None:
    mappings = fpga.Mappings()
    mappings.add_accelerator_function(function("arria10-nlb0"))
    assert ops_for(mappings, container({AF_NLB0: 1})) == []


def test_p11_a_region_is_renamed() -> None:
    mappings = fpga.Mappings()
    mappings.add_region(region("arria10"))
    patch = ops_for(mappings, container({"fpga.intel.com/arria10": 1}))
    assert len(patch) == 4
    assert patch[2] == review.add(
        "/spec/containers/0/resources/limits/fpga.intel.com~1region-" + IFACE_A10, "1"
    )


@pytest.mark.parametrize("field", ["limits", "requests"])
def test_p12_limits_only_or_requests_only_is_refused(field: str) -> None:
    mappings = fpga.Mappings()
    mappings.add_region(region("arria10"))
    c = {"name": "c", "resources": {field: {"fpga.intel.com/arria10": 1}}}
    with pytest.raises(errors.Rejected, match="must be equal as extended resources"):
        ops_for(mappings, c)


def test_p13_an_unknown_resource_is_refused() -> None:
    with pytest.raises(errors.Rejected) as raised:
        ops_for(orchestrated_pair(), container({"fpga.intel.com/unknown-nlb0": 1}))
    message = raised.value.message
    assert message.startswith('no such resource: "fpga.intel.com/unknown-nlb0": ')
    assert f'namespace "{NS}" has no AcceleratorFunction or FpgaRegion named "unknown-nlb0"' in (
        message
    )
    assert "mappings-collection.yaml" in message


def test_p14_a_fractional_quantity_is_refused() -> None:
    with pytest.raises(errors.Rejected, match="isn't of integral type"):
        ops_for(orchestrated_pair(), container({"fpga.intel.com/arria10-nlb0": "1.1"}))


def test_p15_modes_cannot_be_mixed_in_one_container() -> None:
    mappings = orchestrated_pair()
    mappings.add_accelerator_function(function("arria10-nlb0-af"))
    c = container({"fpga.intel.com/arria10-nlb0": 1, "fpga.intel.com/arria10-nlb0-af": 1})
    with pytest.raises(errors.Rejected) as raised:
        ops_for(mappings, c)
    assert raised.value.message == (
        "container cannot be scheduled as it requires resources operated in different modes"
    )


def test_p16_an_unknown_mode_is_refused() -> None:
    mappings = fpga.Mappings()
    mappings.add_accelerator_function(function("weird", mode="unknown"))
    with pytest.raises(errors.Rejected) as raised:
        ops_for(mappings, container({"fpga.intel.com/weird": 1}))
    assert raised.value.message == (
        '"fpga.intel.com/weird" is registered with unknown mode "unknown" instead of "af" or '
        '"region"'
    )


def test_a_mode_the_schema_accepts_but_nobody_knows_is_refused_by_name() -> None:
    # "afx" passes the reference's pattern (^af|region$), so an object with it is stored and
    # mapped; a pod asking for it is denied with the reference's message.
    mappings = fpga.Mappings()
    mappings.apply_accelerator_function(function_object("afx-function", mode="afx"))
    assert mappings.resources(NS) == {"fpga.intel.com/afx-function": REGION_A10}
    with pytest.raises(errors.Rejected) as raised:
        ops_for(mappings, container({"fpga.intel.com/afx-function": 1}))
    assert raised.value.message == (
        '"fpga.intel.com/afx-function" is registered with unknown mode "afx" instead of "af"'
        ' or "region"'
    )


# The fixes of §8 item 17 ------------------------------------------------------------------


def test_an_identity_does_not_stop_the_containers_other_resources() -> None:
    # The reference returned early at the identity and left the mapping unreplaced.
    mappings = fpga.Mappings()
    mappings.add_region(region("arria10"))
    mappings.add_accelerator_function(function("arria10-nlb0"))
    c = container({AF_NLB0: 1, "fpga.intel.com/arria10": 1})
    after = review.apply(pod(c), ops_for(mappings, c))
    assert after["spec"]["containers"][0]["resources"]["limits"] == {AF_NLB0: 1, REGION_A10: "1"}


def test_the_real_resource_asked_for_as_well_adds_up() -> None:
    mappings = fpga.Mappings()
    mappings.add_accelerator_function(function("arria10-nlb0"))
    c = container({AF_NLB0: 2, "fpga.intel.com/arria10-nlb0": 1})
    after = review.apply(pod(c), ops_for(mappings, c))
    assert after["spec"]["containers"][0]["resources"]["limits"] == {AF_NLB0: "3"}


def test_env_is_json_and_keeps_order_and_value_from() -> None:
    env = [
        {"name": "QUOTED", "value": 'a "quoted" \\ value\nwith newline'},
        {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
        {"name": "FPGA_AFU_1", "value": "spoofed"},
        {"name": "A", "value": "last"},
    ]
    c = container({"fpga.intel.com/arria10-nlb0": 1}, env=copy.deepcopy(env))
    patch = ops_for(orchestrated_pair(), c)
    # What the API server reads back from the base64 JSON patch.
    after = review.apply(pod(c), review.decode(review.encode(patch)))
    assert after["spec"]["containers"][0]["env"] == [
        env[0],
        env[1],
        env[3],
        {"name": "FPGA_REGION_1", "value": IFACE_A10},
        {"name": "FPGA_AFU_1", "value": AFU_NLB0},
    ]


def test_containers_are_patched_at_their_own_index_and_plain_ones_left_alone() -> None:
    mappings = fpga.Mappings()
    mappings.add_region(region("arria10"))
    plain = {"name": "plain", "env": [{"name": "FPGA_AFU_1", "value": "x"}]}
    patch = ops_for(mappings, plain, container({"fpga.intel.com/arria10": 1}, name="fpga"))
    assert {op.path.split("/")[3] for op in patch} == {"1"}


def test_a_huge_region_count_is_refused_without_building_it() -> None:
    c = container({"fpga.intel.com/arria10-nlb0": 10**18})
    with pytest.raises(errors.Rejected, match="at most 1024"):
        ops_for(orchestrated_pair(), c)


def test_region_numbers_follow_resource_names() -> None:
    mappings = orchestrated_pair()
    mappings.add_accelerator_function(function("a-nlb3", afu=AFU_NLB3, mode="region"))
    c = container({"fpga.intel.com/arria10-nlb0": 1, "fpga.intel.com/a-nlb3": 1})
    env = ops_for(mappings, c)[-1].value
    assert env == [
        {"name": "FPGA_REGION_1", "value": IFACE_A10},
        {"name": "FPGA_AFU_1", "value": AFU_NLB3},
        {"name": "FPGA_REGION_2", "value": IFACE_A10},
        {"name": "FPGA_AFU_2", "value": AFU_NLB0},
    ]


def test_the_pods_own_namespace_wins_over_the_requests() -> None:
    mappings = fpga.Mappings()
    mappings.add_region(region("arria10", namespace="mapped"))
    c = container({"fpga.intel.com/arria10": 1})
    assert len(mappings.mutate(pod(c, namespace="mapped"), "other")) == 4
    with pytest.raises(errors.Rejected, match="no such resource"):
        mappings.mutate(pod(c, namespace="other"), "mapped")


def test_mappings_are_safe_to_share_between_threads() -> None:
    # Every worker's regions share one identity, so its reference count is contended.
    mappings = fpga.Mappings()
    failures: list[BaseException] = []

    def churn(worker: int) -> None:
        try:
            for step in range(300):
                name = f"w{worker}-{step % 3}"
                mappings.add_region(region(name))
                assert len(mappings.mutate(pod(container({f"fpga.intel.com/{name}": 1})), NS)) == 4
                mappings.remove_region(NS, name)
        except BaseException as error:
            failures.append(error)

    threads = [threading.Thread(target=churn, args=(worker,)) for worker in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    assert sizes(mappings) == (0, 0)


# Objects as listed and watched (what the manager's informers feed) ------------------------


def function_object(name: str, namespace: str = NS, **spec: str) -> dict[str, Any]:
    return {
        "apiVersion": "fpga.intel.com/v2",
        "kind": "AcceleratorFunction",
        "metadata": {"name": name, "namespace": namespace, "resourceVersion": "7", "uid": "u"},
        "spec": {"afuId": AFU_NLB0, "interfaceId": IFACE_A10, "mode": "af", **spec},
    }


def region_object(name: str, namespace: str = NS, iface: str = IFACE_A10) -> dict[str, Any]:
    return {
        "apiVersion": "fpga.intel.com/v2",
        "kind": "FpgaRegion",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"interfaceId": iface},
    }


def test_applied_objects_are_added_replaced_and_deleted() -> None:
    mappings = fpga.Mappings()
    mappings.apply_accelerator_function(function_object("f"))
    mappings.apply_region(region_object("r", namespace="other"))
    assert mappings.resources(NS) == {"fpga.intel.com/f": AF_NLB0}
    assert mappings.resources("other") == {"fpga.intel.com/r": REGION_A10}

    mappings.apply_accelerator_function(function_object("f", mode="region"))
    assert mappings.resources(NS) == {"fpga.intel.com/f": REGION_A10}
    assert mappings.identities(NS) == {REGION_A10: 1}  # the af identity was released

    mappings.apply_accelerator_function(function_object("f"), deleted=True)
    mappings.apply_region(region_object("r", namespace="other"), deleted=True)
    assert sizes(mappings) == sizes(mappings, "other") == (0, 0)


@pytest.mark.parametrize(
    "bad",
    [
        function_object("f", afuId="d8424dc4a"),  # odd length: not bytes
        function_object("f", mode="bogus"),
        {"metadata": {"name": "f", "namespace": NS}, "spec": {}},
    ],
)
def test_an_object_that_cannot_be_mapped_takes_its_old_mapping_away(bad: dict[str, Any]) -> None:
    mappings = fpga.Mappings()
    mappings.apply_accelerator_function(function_object("f"))
    mappings.apply_accelerator_function(function_object("g"))
    with pytest.raises(errors.InvalidMapping):
        mappings.apply_accelerator_function(bad)
    # A pod asking for "f" is told it does not exist, not given what "f" used to say.
    assert mappings.resources(NS) == {"fpga.intel.com/g": AF_NLB0}
    assert mappings.identities(NS) == {AF_NLB0: 1}


def test_a_region_that_cannot_be_mapped_takes_its_old_mapping_away() -> None:
    mappings = fpga.Mappings()
    mappings.apply_region(region_object("r"))
    with pytest.raises(errors.InvalidMapping):
        mappings.apply_region(region_object("r", iface="XYZ"))
    assert sizes(mappings) == (0, 0)


# The e2e examples (§6.6) with the repository's mappings sample -----------------------------


@pytest.fixture
def sample_mappings(sample_documents: list[dict[str, Any]]) -> fpga.Mappings:
    mappings = fpga.Mappings()
    for sample in sample_documents:
        document = {**sample, "metadata": {**sample["metadata"], "namespace": "e2e"}}
        if document["kind"] == "AcceleratorFunction":
            mappings.add_accelerator_function(fpga_api.AcceleratorFunction.model_validate(document))
        elif document["kind"] == "FpgaRegion":
            mappings.add_region(fpga_api.FpgaRegion.model_validate(document))
    return mappings


@pytest.mark.parametrize(
    ("requested", "limits", "env"),
    [
        (
            "fpga.intel.com/d5005-nlb3-preprogrammed",
            {"fpga.intel.com/af-bfa.f7d.v6xNhR7oVv6MlYZc4buqLfffQFy9es9yIvFEsLk6zRg": "1"},
            None,
        ),
        (
            "fpga.intel.com/arria10.dcp1.0-nlb0-orchestrated",
            {REGION_A10: "1"},
            [
                {"name": "FPGA_REGION_1", "value": IFACE_A10},
                {"name": "FPGA_AFU_1", "value": AFU_NLB0},
            ],
        ),
        ("fpga.intel.com/arria10.dcp1.0", {REGION_A10: "1"}, None),
    ],
)
def test_e2e_pods_get_the_real_resources(
    sample_mappings: fpga.Mappings,
    requested: str,
    limits: dict[str, str],
    env: list[dict[str, str]] | None,
) -> None:
    c = container({requested: 1}, image="busybox")
    after = review.apply(pod(c), sample_mappings.mutate(pod(c), "e2e"))
    mutated = after["spec"]["containers"][0]
    assert mutated["resources"]["limits"] == limits == mutated["resources"]["requests"]
    assert mutated.get("env") == env


def test_e2e_mappings_of_another_namespace_do_not_apply(sample_mappings: fpga.Mappings) -> None:
    c = container({"fpga.intel.com/arria10.dcp1.0-nlb0-orchestrated": 1})
    with pytest.raises(errors.Rejected, match="no such resource"):
        sample_mappings.mutate(pod(c), "elsewhere")


def test_the_sample_has_one_identity_per_distinct_resource(sample_mappings: fpga.Mappings) -> None:
    assert len(sample_mappings.resources("e2e")) == 21
    # 4 regions, 4 times 2 af-mode functions; region-mode functions share the region identities.
    assert len(sample_mappings.identities("e2e")) == 4 + 8


# The webhook verb (M1-M5) ----------------------------------------------------------------

POD_RESOURCE = {"group": "", "version": "v1", "resource": "pods"}


@pytest.fixture
def fpga_server() -> server.AdmissionServer:
    admission = server.AdmissionServer([devices.KINDS["fpga"]])
    admission.fpga_mappings.add_region(region("arria10"))
    return admission


async def answer(admission: server.AdmissionServer, **request: Any) -> review.AdmissionResponse:
    webhook = next(w for w in admission.webhooks if w.verb is endpoints.Verb.MUTATE_FPGA_POD)
    fields = {"uid": "u", "operation": "CREATE", "namespace": NS, **request}
    return await admission.answer(webhook, review.read_request(fields))


async def test_m1_a_request_for_another_resource_is_denied(
    fpga_server: server.AdmissionServer,
) -> None:
    response = await answer(fpga_server, object=pod())
    assert not response.allowed
    assert response.status is not None
    assert response.status.message == 'unexpected resource type "/, Resource="'


async def test_m2_no_object_is_allowed_without_patch(fpga_server: server.AdmissionServer) -> None:
    response = await answer(fpga_server, resource=POD_RESOURCE)
    assert response.allowed
    assert response.patch is None


@pytest.mark.parametrize("corrupted", ["{", [1], {"spec": "x"}])
async def test_m3_a_corrupted_object_is_denied(
    fpga_server: server.AdmissionServer, corrupted: Any
) -> None:
    response = await answer(fpga_server, resource=POD_RESOURCE, object=corrupted)
    assert not response.allowed
    assert response.status is not None
    assert response.status.code == 400


async def test_m4_a_pod_asking_for_a_region_is_patched(fpga_server: server.AdmissionServer) -> None:
    body = pod(container({"fpga.intel.com/arria10": 1}))
    response = await answer(fpga_server, resource=POD_RESOURCE, object=body)
    assert response.allowed
    assert response.patch_type == "JSONPatch"
    assert response.patch is not None
    assert len(review.decode(response.patch)) == 4


async def test_pods_wait_for_the_mappings_to_be_loaded() -> None:
    loaded = False
    admission = server.AdmissionServer([devices.KINDS["fpga"]], fpga_loaded=lambda: loaded)
    admission.fpga_mappings.add_region(region("arria10"))
    body = pod(container({"fpga.intel.com/arria10": 1}))
    response = await answer(admission, resource=POD_RESOURCE, object=body)
    assert not response.allowed
    assert response.status is not None
    assert response.status.code == 503
    assert "still being loaded; retry" in response.status.message
    loaded = True
    response = await answer(admission, resource=POD_RESOURCE, object=body)
    assert response.allowed


async def test_m5_limits_only_is_denied(fpga_server: server.AdmissionServer) -> None:
    body = pod({"name": "c", "resources": {"limits": {"fpga.intel.com/arria10": 1}}})
    response = await answer(fpga_server, resource=POD_RESOURCE, object=body)
    assert not response.allowed
    assert response.status is not None
    assert response.status.code == 403


# Properties ------------------------------------------------------------------------------

names = st.sampled_from(
    [
        "fpga.intel.com/f-af",
        "fpga.intel.com/f-region",
        "fpga.intel.com/r",
        AF_NLB0,
        REGION_A10,
        "fpga.intel.com/none",
        "cpu",
    ]
)
amounts = st.sampled_from([1, 2, "1", "3", "0", "1.5", "1k", 1100])
containers = st.builds(
    lambda requests, env: container(requests, env=env),
    st.dictionaries(names, amounts, max_size=3),
    st.lists(
        st.sampled_from(
            [
                {"name": "FPGA_AFU_1", "value": "x"},
                {"name": "X", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}},
                {"name": "Y", "value": '"'},
            ]
        ),
        max_size=3,
    ),
)


@settings(max_examples=300, deadline=None)
@given(spec_containers=st.lists(containers, max_size=3))
def test_any_pod_is_denied_or_patched_into_real_resources(
    spec_containers: list[dict[str, Any]],
) -> None:
    mappings = fpga.Mappings()
    mappings.add_accelerator_function(function("f-af"))
    mappings.add_accelerator_function(function("f-region", mode="region"))
    mappings.add_region(region("r"))
    before = pod(*spec_containers)
    try:
        patch = mappings.mutate(before, NS)
    except errors.Rejected:
        return
    after = review.apply(before, patch)
    user_facing = set(mappings.resources(NS))
    for c in after["spec"]["containers"]:
        assert not user_facing & set(c["resources"]["limits"])
        assert c["resources"]["limits"] == c["resources"]["requests"]
