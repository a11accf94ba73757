"""The device registry and the DeviceKind record."""

from __future__ import annotations

import pathlib

import pytest
import yaml

from deviceplugin_operator import devices
from deviceplugin_operator.api import plugin
from deviceplugin_operator.devices import kind

TEMPLATES = pathlib.Path(devices.__file__).parent / "templates"

# Image basenames of spec §1.3; DSA and IAA share the idxd init image.
IMAGES = {
    "dsa": ("intel-dsa-plugin", "intel-idxd-config-initcontainer"),
    "dlb": ("intel-dlb-plugin", "intel-dlb-initcontainer"),
    "fpga": ("intel-fpga-plugin", "intel-fpga-initcontainer"),
    "gpu": ("intel-gpu-plugin", "intel-gpu-initcontainer"),
    "iaa": ("intel-iaa-plugin", "intel-idxd-config-initcontainer"),
    "qat": ("intel-qat-plugin", "intel-qat-initcontainer"),
    "sgx": ("intel-sgx-plugin", "intel-sgx-initcontainer"),
    "npu": ("intel-npu-plugin", None),
}

DISPLAY_NAMES = {
    "dlb": "Intel DLB Device Plugin",
    "dsa": "Intel DSA Device Plugin",
    "fpga": "Intel FPGA Device Plugin",
    "gpu": "Intel GPU Device Plugin",
    "iaa": "Intel IAA Device Plugin",
    "npu": "Intel NPU Device Plugin",
    "qat": "Intel QuickAssist Technology Device Plugin",
    "sgx": "Intel Software Guard Extensions Device Plugin",
}


def test_registry_is_in_the_reference_devices_order() -> None:
    assert list(devices.KINDS) == ["dsa", "dlb", "fpga", "gpu", "iaa", "qat", "sgx", "npu"]


def test_registry_is_read_only() -> None:
    with pytest.raises(TypeError):
        devices.KINDS["x"] = devices.KINDS["gpu"]  # type: ignore[index]


@pytest.mark.parametrize("name", list(devices.KINDS))
def test_kind_record(name: str) -> None:
    record = devices.KINDS[name]
    assert record.name == name
    assert (
        record.kind
        == {
            "dsa": "Dsa",
            "dlb": "Dlb",
            "fpga": "Fpga",
            "gpu": "Gpu",
            "iaa": "Iaa",
            "qat": "Qat",
            "sgx": "Sgx",
            "npu": "Npu",
        }[name]
        + "DevicePlugin"
    )
    assert record.plural == f"{name}deviceplugins"
    assert record.singular == f"{name}deviceplugin"
    assert (record.image, record.init_image) == IMAGES[name]
    assert record.base_name == f"intel-{name}-plugin"
    assert record.default_image == f"intel/intel-{name}-plugin:0.36.0"
    assert record.display_name == DISPLAY_NAMES[name]
    assert record.resource.crd_name == f"{name}deviceplugins.deviceplugin.intel.com"
    assert record.resource.api_version == "deviceplugin.intel.com/v1"
    assert not record.resource.namespaced
    assert record.mutate_path == f"/mutate-deviceplugin-intel-com-v1-{name}deviceplugin"
    assert record.validate_path == f"/validate-deviceplugin-intel-com-v1-{name}deviceplugin"
    assert issubclass(record.spec, plugin.DevicePluginSpec)


@pytest.mark.parametrize("name", list(devices.KINDS))
def test_template_is_the_base_daemonset_and_copied(name: str) -> None:
    record = devices.KINDS[name]
    template = record.template
    assert template == yaml.safe_load((TEMPLATES / f"{name}.yaml").read_text())
    assert template["kind"] == "DaemonSet"
    assert template["spec"]["template"]["spec"]["containers"][0]["name"] == record.image
    template["metadata"]["name"] = "changed"
    assert record.template["metadata"]["name"] == record.base_name


@pytest.mark.parametrize("name", list(devices.KINDS))
def test_spec_of_parses_a_resource(name: str) -> None:
    record = devices.KINDS[name]
    assert record.spec_of({"metadata": {"name": "x"}}) == record.spec()
    assert record.spec_of({"spec": {"logLevel": 3}}).log_level == 3


def test_init_image_name_and_spec_field_must_agree() -> None:
    with pytest.raises(TypeError, match="init_image"):
        kind.DeviceKind(
            name="x", title="X", spec=plugin.DevicePluginSpec, image="x", init_image="x-init"
        )
    with pytest.raises(TypeError, match="init_image"):
        kind.DeviceKind(name="x", title="X", spec=plugin.DevicePluginSpecWithInitImage, image="x")
