"""The API models: wire names, defaults, enums and minimums of spec §2."""

from __future__ import annotations

from typing import Any

import pydantic
import pytest

from deviceplugin_operator import devices
from deviceplugin_operator.api import fpga, meta, plugin, wire
from deviceplugin_operator.manifests.crd import structural_schema

KINDS = list(devices.KINDS)


@pytest.mark.parametrize("name", KINDS)
def test_common_fields_use_camel_case_and_python_names(name: str) -> None:
    spec_model = devices.KINDS[name].spec
    wire = {
        "image": "intel/x:0.36.0",
        "nodeSelector": {"a": "b"},
        "tolerations": [
            {
                "key": "k",
                "operator": "Equal",
                "value": "v",
                "effect": "NoSchedule",
                "tolerationSeconds": 5,
            }
        ],
        "logLevel": 4,
    }
    spec = spec_model.model_validate(wire)
    assert spec.log_level == 4
    assert spec.node_selector == {"a": "b"}
    assert spec.tolerations == [
        meta.Toleration(
            key="k", operator="Equal", value="v", effect="NoSchedule", toleration_seconds=5
        )
    ]
    assert {k: v for k, v in spec.wire().items() if k != "driver"} == wire
    by_name = spec_model(image="i", node_selector={"a": "b"}, log_level=1)
    assert by_name.wire()["nodeSelector"] == {"a": "b"}


@pytest.mark.parametrize("name", KINDS)
def test_log_level_minimum(name: str) -> None:
    with pytest.raises(pydantic.ValidationError):
        devices.KINDS[name].spec.model_validate({"logLevel": -1})


@pytest.mark.parametrize(
    ("name", "field"),
    [
        ("dsa", "sharedDevNum"),
        ("gpu", "sharedDevNum"),
        ("iaa", "sharedDevNum"),
        ("npu", "sharedDevNum"),
        ("qat", "maxNumDevices"),
        ("sgx", "enclaveLimit"),
        ("sgx", "provisionLimit"),
    ],
)
def test_minimum_one(name: str, field: str) -> None:
    spec = devices.KINDS[name].spec
    with pytest.raises(pydantic.ValidationError):
        spec.model_validate({field: 0})
    assert spec.model_validate({field: 1}).wire()[field] == 1


@pytest.mark.parametrize(
    ("name", "field", "allowed", "rejected"),
    [
        ("dsa", "driver", ["idxd", "vfio-pci"], "bar"),
        ("fpga", "mode", ["af", "region", "regiondevel"], "x"),
        ("gpu", "preferredAllocationPolicy", ["balanced", "packed", "none"], "spread"),
        ("gpu", "bypathMode", ["none", "single", "all"], "some"),
        ("gpu", "monitoringMode", ["split", "single"], "none"),
        ("qat", "preferredAllocationPolicy", ["balanced", "packed"], "none"),
        ("qat", "dpdkDriver", ["igb_uio", "vfio-pci"], "uio"),
    ],
)
def test_enums(name: str, field: str, allowed: list[str], rejected: str) -> None:
    spec = devices.KINDS[name].spec
    for value in allowed:
        assert spec.model_validate({field: value}).wire()[field] == value
    with pytest.raises(pydantic.ValidationError):
        spec.model_validate({field: rejected})


def test_qat_kernel_vf_drivers_enum() -> None:
    spec = devices.KINDS["qat"].spec
    drivers = [
        "dh895xccvf",
        "c6xxvf",
        "c3xxxvf",
        "d15xxvf",
        "4xxxvf",
        "420xxvf",
        "c4xxxvf",
        "6xxxvf",
    ]
    assert spec.model_validate({"kernelVfDrivers": drivers}).wire()["kernelVfDrivers"] == drivers
    with pytest.raises(pydantic.ValidationError):
        spec.model_validate({"kernelVfDrivers": ["foo"]})


def test_dsa_driver_defaults_to_idxd() -> None:
    assert devices.KINDS["dsa"].spec().wire() == {"driver": "idxd"}


def test_gpu_wire_names_that_are_not_plain_camel_case() -> None:
    spec = devices.KINDS["gpu"].spec.model_validate(
        {"allowIDs": "0x4905", "denyIDs": "0x56a0", "bypathMode": "all", "enableMonitoring": True}
    )
    assert (spec.allow_ids, spec.deny_ids, spec.bypath_mode) == ("0x4905", "0x56a0", "all")
    assert set(spec.wire()) == {"allowIDs", "denyIDs", "bypathMode", "enableMonitoring"}
    by_name = devices.KINDS["gpu"].spec(allow_ids="0x1", deny_ids="0x2")
    assert by_name.wire() == {"allowIDs": "0x1", "denyIDs": "0x2"}


def test_npu_has_no_init_image() -> None:
    assert (
        "initImage" not in devices.KINDS["npu"].spec.model_json_schema(by_alias=True)["properties"]
    )


def test_unknown_fields_are_ignored() -> None:
    assert devices.KINDS["gpu"].spec.model_validate({"resourceManager": True}).wire() == {}


def test_specs_are_immutable() -> None:
    spec = devices.KINDS["gpu"].spec()
    with pytest.raises(pydantic.ValidationError):
        spec.image = "x"


def test_toleration_pod_form_drops_empty_strings() -> None:
    toleration = meta.Toleration(
        key="", operator="Exists", value="", effect="", toleration_seconds=0
    )
    assert toleration.pod_form() == {"operator": "Exists", "tolerationSeconds": 0}


def test_status_requires_the_numbers() -> None:
    with pytest.raises(pydantic.ValidationError):
        plugin.DevicePluginStatus.model_validate({"nodeNames": ["a"]})
    status = plugin.DevicePluginStatus.model_validate(
        {"desiredNumberScheduled": 1, "numberReady": 0}
    )
    assert status.wire() == {"desiredNumberScheduled": 1, "numberReady": 0}


def test_condition_reason_and_type_patterns() -> None:
    base: dict[str, Any] = {
        "type": "Ready",
        "status": "True",
        "lastTransitionTime": "2026-01-01T00:00:00Z",
        "reason": "PodsReady",
        "message": "",
    }
    meta.Condition.model_validate(base)
    for field, value in (
        ("reason", "has space"),
        ("reason", ""),
        ("type", "-bad"),
        ("status", "Yes"),
    ):
        with pytest.raises(pydantic.ValidationError):
            meta.Condition.model_validate({**base, field: value})


@pytest.mark.parametrize("mode", ["af", "region"])
def test_accelerator_function_modes(mode: str) -> None:
    spec = fpga.AcceleratorFunctionSpec.model_validate(
        {
            "afuId": "d8424dc4a4a3c413f89e433683f9040b",
            "interfaceId": "ce48969398f05f33946d560708be108a",
            "mode": mode,
        }
    )
    assert spec.wire() == {
        "afuId": "d8424dc4a4a3c413f89e433683f9040b",
        "interfaceId": "ce48969398f05f33946d560708be108a",
        "mode": mode,
    }


@pytest.mark.parametrize(
    ("mode", "valid"),
    [
        # The reference's ^af|region$, as the API server (Go regexp) applies it: "starts with
        # af" or "ends with region".
        ("afx", True),
        ("subregion", True),
        ("af|region", True),
        ("regiondevel", False),
        ("regionx", False),
        ("xaf", False),
        ("bogus", False),
        ("", False),
    ],
)
def test_accelerator_function_mode_is_the_references_pattern(mode: str, valid: bool) -> None:
    spec = {"afuId": "d8424dc4", "interfaceId": "ce489693", "mode": mode}
    if valid:
        assert fpga.AcceleratorFunctionSpec.model_validate(spec).mode == mode
    else:
        with pytest.raises(pydantic.ValidationError):
            fpga.AcceleratorFunctionSpec.model_validate(spec)


@pytest.mark.parametrize(
    ("field", "value"),
    [("afuId", "d8424dc"), ("afuId", "A8424dc4"), ("afuId", "0" * 41), ("interfaceId", "0" * 33)],
)
def test_fpga_id_patterns(field: str, value: str) -> None:
    spec = {"afuId": "d8424dc4", "interfaceId": "ce489693", "mode": "af", field: value}
    with pytest.raises(pydantic.ValidationError):
        fpga.AcceleratorFunctionSpec.model_validate(spec)


def test_fpga_resource_types() -> None:
    assert fpga.ACCELERATOR_FUNCTION.crd_name == "acceleratorfunctions.fpga.intel.com"
    assert fpga.ACCELERATOR_FUNCTION.short_names == ("af",)
    assert fpga.FPGA_REGION.short_names == ("fpga",)
    assert fpga.FPGA_REGION.list_kind == "FpgaRegionList"
    assert fpga.FPGA_REGION.api_version == "fpga.intel.com/v2"
    assert fpga.FPGA_REGION.namespaced
    region = fpga.FpgaRegion.model_validate(
        {
            "apiVersion": "fpga.intel.com/v2",
            "kind": "FpgaRegion",
            "metadata": {"name": "r"},
            "spec": {"interfaceId": "ce489693"},
        }
    )
    assert region.metadata.name == "r"
    assert region.spec.interface_id == "ce489693"


class _Documented(wire.Model):
    plain: int = 0
    """Plain's doc,
    on two lines."""

    undocumented: int = 0
    redeclared: int = 0
    """Only in the base."""


class _Sub(_Documented):
    redeclared: int = 1
    added: str = ""
    """Added's doc."""


def test_attribute_docstrings_follow_the_class_that_declares_each_field() -> None:
    """As pydantic's use_attribute_docstrings: a redeclared field without a docstring has none."""
    assert wire.attribute_docstrings(_Documented) == {
        "plain": "Plain's doc,\non two lines.",
        "redeclared": "Only in the base.",
    }
    assert wire.attribute_docstrings(_Sub) == {
        "plain": "Plain's doc,\non two lines.",
        "added": "Added's doc.",
    }


def test_crd_descriptions_come_from_attribute_docstrings() -> None:
    schema = structural_schema(plugin.DevicePluginStatus)
    assert schema["properties"]["numberReady"]["description"].startswith(
        "The number of nodes that should be running the device plugin pod"
    )
    condition = schema["properties"]["conditions"]["items"]["properties"]["reason"]
    assert condition["description"].startswith("Reason contains a programmatic identifier")
