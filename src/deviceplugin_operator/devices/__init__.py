"""The device registry: ``KINDS`` is the only list of device kinds in the codebase.

Each device module holds its spec model and a ``DeviceKind`` record (``devices.kind``); the
controller, the admission server and the manifest generators iterate over ``KINDS``. The order
is the reference's ``--devices`` default order, in which controllers start.
"""

from __future__ import annotations

import types
from collections.abc import Mapping
from typing import Any

from deviceplugin_operator.devices import dlb, dsa, fpga, gpu, iaa, npu, qat, sgx
from deviceplugin_operator.devices.kind import DeviceKind

KINDS: Mapping[str, DeviceKind[Any]] = types.MappingProxyType(
    {
        device.name: device
        for device in (
            dsa.KIND,
            dlb.KIND,
            fpga.KIND,
            gpu.KIND,
            iaa.KIND,
            qat.KIND,
            sgx.KIND,
            npu.KIND,
        )
    }
)

__all__ = ["KINDS", "DeviceKind"]
