"""DLB (Dynamic Load Balancer) device plugin."""

from __future__ import annotations

from deviceplugin_operator.api import plugin
from deviceplugin_operator.devices import kind, podspec


class DlbDevicePluginSpec(plugin.DevicePluginSpecWithInitImage):
    """DlbDevicePluginSpec defines the desired state of DlbDevicePlugin."""

    init_image: str | None = None
    """InitImage is a container image with a script that initializes devices."""


def _enable_vfs(pod: podspec.PodSpec, spec: DlbDevicePluginSpec) -> None:
    if not spec.init_image:
        return
    pod["initContainers"] = [
        {
            "name": "enable-vfs",
            "image": spec.init_image,
            "imagePullPolicy": "IfNotPresent",
            "securityContext": {"privileged": True, "readOnlyRootFilesystem": True},
            "volumeMounts": [
                podspec.mount("sysfs-devices", "/sys/devices"),
                podspec.mount("sysfs-driver-dlb2", "/sys/bus/pci/drivers/dlb2"),
            ],
        }
    ]
    podspec.add_volumes(
        pod,
        podspec.host_path("sysfs-devices", "/sys/devices", "DirectoryOrCreate"),
        podspec.host_path("sysfs-driver-dlb2", "/sys/bus/pci/drivers/dlb2", "DirectoryOrCreate"),
    )


KIND = kind.DeviceKind(
    name="dlb",
    title="DLB",
    spec=DlbDevicePluginSpec,
    image="intel-dlb-plugin",
    init_image="intel-dlb-initcontainer",
    customize_pod=_enable_vfs,
)
