"""IAA (In-Memory Analytics Accelerator) device plugin."""

from __future__ import annotations

import types
from typing import Annotated

import pydantic

from deviceplugin_operator.api import plugin
from deviceplugin_operator.devices import idxd, kind, podspec


class IaaDevicePluginSpec(plugin.DevicePluginSpecWithInitImage):
    """IaaDevicePluginSpec defines the desired state of IaaDevicePlugin."""

    init_image: str | None = None
    """InitImage is an initcontainer image to configure and enable IAA devices and workqueues with accel-config utility"""  # noqa: E501

    provisioning_config: str | None = None
    """ProvisioningConfig is a ConfigMap used to pass the IAA configuration into idxd initcontainer."""  # noqa: E501

    shared_dev_num: Annotated[int, pydantic.Field(ge=1)] | None = None
    """SharedDevNum is a number of containers that can share the same IAA device."""


def _args(spec: IaaDevicePluginSpec) -> list[str]:
    return ["-shared-dev-num", str(spec.shared_dev_num or 1)]


def _customize(pod: podspec.PodSpec, spec: IaaDevicePluginSpec) -> None:
    if spec.init_image:
        idxd.add_init_container(
            pod,
            name="intel-iaa-initcontainer",
            image=spec.init_image,
            device_type="iaa",
            config_volume="intel-iaa-config-volume",
            provisioning_config=spec.provisioning_config,
        )


KIND = kind.DeviceKind(
    name="iaa",
    title="IAA",
    spec=IaaDevicePluginSpec,
    image="intel-iaa-plugin",
    init_image="intel-idxd-config-initcontainer",
    plugin_args=_args,
    customize_pod=_customize,
    # The reference keeps IAA pods on amd64 even with a user selector (it adds the key on its
    # second reconcile); rendering it from the start keeps adopted pod templates unchanged.
    required_node_selector=types.MappingProxyType({"kubernetes.io/arch": "amd64"}),
)
