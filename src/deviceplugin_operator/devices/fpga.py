"""FPGA device plugin (the FpgaDevicePlugin kind; the fpga.intel.com mappings live in api.fpga)."""

from __future__ import annotations

from typing import Literal

from deviceplugin_operator.api import fpga as fpga_api
from deviceplugin_operator.api import plugin
from deviceplugin_operator.devices import kind, podspec


class FpgaDevicePluginSpec(plugin.DevicePluginSpecWithInitImage):
    """FpgaDevicePluginSpec defines the desired state of FpgaDevicePlugin."""

    init_image: str | None = None
    """InitImage is a container image with tools used to initialize the host before starting FPGA workloads on it."""  # noqa: E501

    mode: Literal["af", "region", "regiondevel"] | None = None
    """Mode is a mode of the plugin's operation."""


def _args(spec: FpgaDevicePluginSpec) -> list[str]:
    return ["-mode", spec.mode or "af"]


def _init_container(pod: podspec.PodSpec, spec: FpgaDevicePluginSpec) -> None:
    # The base template carries the init container with a devel image: use the spec's image,
    # or drop the container and the host directory only it mounts.
    if spec.init_image:
        pod["initContainers"][0]["image"] = spec.init_image
    else:
        del pod["initContainers"]
        podspec.remove_volumes(pod, "intel-fpga-sw")


KIND = kind.DeviceKind(
    name="fpga",
    title="FPGA",
    spec=FpgaDevicePluginSpec,
    image="intel-fpga-plugin",
    init_image="intel-fpga-initcontainer",
    plugin_args=_args,
    customize_pod=_init_container,
    pod_mutator=kind.PodMutator(
        webhook="fpga.mutator.webhooks.intel.com",
        path="/pods",
        resource_domain="fpga.intel.com",
        reads=(fpga_api.ACCELERATOR_FUNCTION, fpga_api.FPGA_REGION),
    ),
)
