"""NPU (Neural Processing Unit) device plugin."""

from __future__ import annotations

from typing import Annotated

import pydantic

from deviceplugin_operator.api import plugin
from deviceplugin_operator.devices import kind


class NpuDevicePluginSpec(plugin.DevicePluginSpec):
    """NpuDevicePluginSpec defines the desired state of NpuDevicePlugin."""

    shared_dev_num: Annotated[int, pydantic.Field(ge=1)] | None = None
    """SharedDevNum is a number of containers that can share the same NPU device."""


def _args(spec: NpuDevicePluginSpec) -> list[str]:
    return ["-shared-dev-num", str(spec.shared_dev_num or 1)]


KIND = kind.DeviceKind(
    name="npu",
    title="NPU",
    spec=NpuDevicePluginSpec,
    image="intel-npu-plugin",
    plugin_args=_args,
)
