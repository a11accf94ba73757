"""DSA (Data Streaming Accelerator) device plugin."""

from __future__ import annotations

from typing import Annotated, Literal

import pydantic

from deviceplugin_operator.api import plugin
from deviceplugin_operator.devices import idxd, kind, podspec


class DsaDevicePluginSpec(plugin.DevicePluginSpecWithInitImage):
    """DsaDevicePluginSpec defines the desired state of DsaDevicePlugin."""

    init_image: str | None = None
    """InitImage is an initcontainer image to configure and enable DSA devices and workqueues with idxd-config (accel-config) utility"""  # noqa: E501

    provisioning_config: str | None = None
    """ProvisioningConfig is a ConfigMap used to pass the DSA devices and workqueues configuration into idxd-config initcontainer."""  # noqa: E501

    driver: Literal["idxd", "vfio-pci"] = "idxd"
    """Driver name used for the DSA devices."""

    shared_dev_num: Annotated[int, pydantic.Field(ge=1)] | None = None
    """SharedDevNum is a number of containers that can share the same DSA device."""


def _args(spec: DsaDevicePluginSpec) -> list[str]:
    return ["-driver", spec.driver, "-shared-dev-num", str(spec.shared_dev_num or 1)]


def _customize(pod: podspec.PodSpec, spec: DsaDevicePluginSpec) -> None:
    if spec.init_image:
        idxd.add_init_container(
            pod,
            name="intel-idxd-config-initcontainer",
            image=spec.init_image,
            device_type="dsa",
            config_volume="intel-dsa-config-volume",
            provisioning_config=spec.provisioning_config,
            extra_env=[podspec.env("DSA_DRIVER", spec.driver)],
            with_pci=True,
        )
    if spec.driver == "vfio-pci":
        # The plugin looks for vfio groups where the host has them (the reference moved only
        # the host side and left the container mount at /dev/dsa).
        podspec.volume(pod, "devfs")["hostPath"]["path"] = "/dev/vfio"
        podspec.volume_mount(podspec.main_container(pod), "devfs")["mountPath"] = "/dev/vfio"


KIND = kind.DeviceKind(
    name="dsa",
    title="DSA",
    spec=DsaDevicePluginSpec,
    image="intel-dsa-plugin",
    init_image="intel-idxd-config-initcontainer",
    plugin_args=_args,
    customize_pod=_customize,
)
