"""QAT (QuickAssist Technology) device plugin."""

from __future__ import annotations

from typing import Annotated, Literal

import pydantic

from deviceplugin_operator.api import plugin
from deviceplugin_operator.devices import kind, podspec

KernelVfDriver = Literal[
    "dh895xccvf", "c6xxvf", "c3xxxvf", "d15xxvf", "4xxxvf", "420xxvf", "c4xxxvf", "6xxxvf"
]

# PCI device ids of the physical functions whose VFs each kernel driver serves; the init
# container enables SR-IOV on these. The reference lacks 6xxxvf (0x4948).
PF_PCI_IDS: dict[str, str] = {
    "dh895xccvf": "0434 0435",
    "c6xxvf": "37c8",
    "c3xxxvf": "19e2",
    "d15xxvf": "6f54",
    "4xxxvf": "4940 4942 4944",
    "420xxvf": "4946",
    "c4xxxvf": "18a0",
    "6xxxvf": "4948",
}


class QatDevicePluginSpec(plugin.DevicePluginSpecWithInitImage):
    """QatDevicePluginSpec defines the desired state of QatDevicePlugin."""

    init_image: str | None = None
    """InitImage is a container image with a script that initialize devices."""

    provisioning_config: str | None = None
    """ProvisioningConfig is a ConfigMap used to pass the configuration of QAT devices into qat initcontainer."""  # noqa: E501

    preferred_allocation_policy: Literal["balanced", "packed"] | None = None
    """PreferredAllocationPolicy sets the mode of allocating QAT devices on a node.
    See documentation for detailed description of the policies."""

    dpdk_driver: Literal["igb_uio", "vfio-pci"] | None = None
    """DpdkDriver is a DPDK device driver for configuring the QAT device."""

    kernel_vf_drivers: list[KernelVfDriver] | None = None
    """KernelVfDrivers is a list of VF device drivers for the QuickAssist devices in the system."""

    max_num_devices: Annotated[int, pydantic.Field(ge=1)] | None = None
    """MaxNumDevices is a maximum number of QAT devices to be provided to the QuickAssist device plugin"""  # noqa: E501


def _args(spec: QatDevicePluginSpec) -> list[str]:
    args = [
        *("-dpdk-driver", spec.dpdk_driver or "vfio-pci"),
        *("-kernel-vf-drivers", ",".join(spec.kernel_vf_drivers or ()) or "c6xxvf,4xxxvf"),
        *("-max-num-devices", str(spec.max_num_devices or 32)),
    ]
    if spec.preferred_allocation_policy:
        args += ["-allocation-policy", spec.preferred_allocation_policy]
    return args


def _init_container(pod: podspec.PodSpec, spec: QatDevicePluginSpec) -> None:
    if not spec.init_image:
        return
    # An empty list stays "" like the reference: the init script then enables every known PF.
    pf_ids = " ".join(PF_PCI_IDS[driver] for driver in spec.kernel_vf_drivers or ())
    mounts = [podspec.mount("sysfs", "/sys")]
    volumes = [podspec.host_path("sysfs", "/sys", "DirectoryOrCreate")]
    if spec.provisioning_config:
        mounts.append(podspec.mount("intel-qat-config-volume", "/qat-init/conf"))
        volumes.append(
            podspec.config_map("intel-qat-config-volume", spec.provisioning_config, 0o440)
        )
    pod["initContainers"] = [
        {
            "name": "intel-qat-initcontainer",
            "image": spec.init_image,
            "imagePullPolicy": "IfNotPresent",
            "env": [podspec.env("ENABLED_QAT_PF_PCIIDS", pf_ids), podspec.node_name_env()],
            "securityContext": {
                "seLinuxOptions": {"type": "container_device_plugin_init_t"},
                "privileged": True,
                "readOnlyRootFilesystem": True,
            },
            "volumeMounts": mounts,
        }
    ]
    podspec.add_volumes(pod, *volumes)


KIND = kind.DeviceKind(
    name="qat",
    title="QuickAssist Technology",
    spec=QatDevicePluginSpec,
    image="intel-qat-plugin",
    init_image="intel-qat-initcontainer",
    plugin_args=_args,
    customize_pod=_init_container,
)
