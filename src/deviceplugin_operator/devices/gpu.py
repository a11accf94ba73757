"""GPU device plugin."""

from __future__ import annotations

from typing import Annotated, Literal

import pydantic

from deviceplugin_operator.api import plugin
from deviceplugin_operator.devices import kind, nfd, podspec


class GpuDevicePluginSpec(plugin.DevicePluginSpecWithInitImage):
    """GpuDevicePluginSpec defines the desired state of GpuDevicePlugin."""

    init_image: str | None = None
    """InitImage is a container image with tools (e.g., GPU NFD source hook) installed on each node."""  # noqa: E501

    allow_ids: str | None = pydantic.Field(default=None, alias="allowIDs")
    """AllowIDs is a comma-separated list of PCI IDs of GPU devices that should only be advertised by the plugin.
    If not set, all devices are advertised.
    The list can contain IDs in the form of '0x1234,0x49a4,0x50b4'.
    Cannot be used together with DenyIDs."""  # noqa: E501

    deny_ids: str | None = pydantic.Field(default=None, alias="denyIDs")
    """DenyIDs is a comma-separated list of PCI IDs of GPU devices that should only be denied by the plugin.
    If not set, all devices are advertised.
    The list can contain IDs in the form of '0x1234,0x49a4,0x50b4'.
    Cannot be used together with AllowIDs."""  # noqa: E501

    preferred_allocation_policy: Literal["balanced", "packed", "none"] | None = None
    """PreferredAllocationPolicy sets the mode of allocating GPU devices on a node.
    See documentation for detailed description of the policies. Only valid when SharedDevNum > 1 is set."""  # noqa: E501

    bypath_mode: Literal["none", "single", "all"] | None = None
    """ByPathMode changes how plugin handles the DRM by-path/-dir mounting for GPU devices.
    See GPU plugin documentation for detailed description of the modes.
    If left empty, it defaults to 'single'."""

    monitoring_mode: Literal["split", "single"] | None = None
    """MonitoringMode sets how monitoring resources are exposed when EnableMonitoring is true.
    single (default): single GPU 'monitoring' resource for all Intel GPU kernel drivers.
    split: per-driver resources (i915_monitoring, xe_monitoring)."""

    enable_monitoring: bool | None = None
    """EnableMonitoring enables the monitoring resource which gives access to all GPU devices
    on the given node. Typically used with Intel XPU-Manager. See also MonitoringMode."""

    shared_dev_num: Annotated[int, pydantic.Field(ge=1)] | None = None
    """SharedDevNum is a number of containers that can share the same GPU device."""


def _args(spec: GpuDevicePluginSpec) -> list[str]:
    args = []
    if spec.enable_monitoring:
        args.append("-enable-monitoring")
        if spec.monitoring_mode:
            args.append(f"-monitoring-mode={spec.monitoring_mode}")
    args += ["-shared-dev-num", str(spec.shared_dev_num or 1)]
    args += ["-allocation-policy", spec.preferred_allocation_policy or "none"]
    if spec.allow_ids:
        args += ["-allow-ids", spec.allow_ids]
    if spec.deny_ids:
        args += ["-deny-ids", spec.deny_ids]
    if spec.bypath_mode:
        args += ["-bypath", spec.bypath_mode]
    return args


def _nfd_hook(pod: podspec.PodSpec, spec: GpuDevicePluginSpec) -> None:
    if spec.init_image:
        nfd.add_source_hook(
            pod, name="intel-gpu-initcontainer", image=spec.init_image, volume="nfd-sources"
        )


KIND = kind.DeviceKind(
    name="gpu",
    title="GPU",
    spec=GpuDevicePluginSpec,
    image="intel-gpu-plugin",
    init_image="intel-gpu-initcontainer",
    plugin_args=_args,
    customize_pod=_nfd_hook,
)
