"""The idxd-config init container shared by DSA and IAA: it configures devices and work queues.

The two kinds differ only in the container name, the device type, the config volume name and
whether the container needs ``/sys/bus/pci`` (DSA can rebind devices to vfio-pci).
"""

from __future__ import annotations

from collections.abc import Sequence

from deviceplugin_operator.devices import podspec

CONFIG_MOUNT = "/idxd-init/conf"

# ConfigMap volumes default to 0644; stating it keeps our object equal to the stored one.
CONFIG_MODE = 0o644


def add_init_container(
    pod: podspec.PodSpec,
    *,
    name: str,
    image: str,
    device_type: str,
    config_volume: str,
    provisioning_config: str | None,
    extra_env: Sequence[podspec.Manifest] = (),
    with_pci: bool = False,
) -> None:
    """Add the init container and the host paths it configures; mount the ConfigMap if given."""
    host_paths = [("sys-bus-dsa", "/sys/bus/dsa")]
    if with_pci:
        host_paths.append(("sys-bus-pci", "/sys/bus/pci"))
    host_paths.append(("sys-devices", "/sys/devices"))

    mounts = [podspec.mount(volume, path) for volume, path in host_paths]
    mounts.append(podspec.mount("scratch", "/idxd-init/scratch"))
    volumes = [podspec.host_path(volume, path) for volume, path in host_paths]
    volumes.append(podspec.empty_dir("scratch"))
    if provisioning_config:
        mounts.append(podspec.mount(config_volume, CONFIG_MOUNT))
        volumes.append(podspec.config_map(config_volume, provisioning_config, CONFIG_MODE))

    pod.setdefault("initContainers", []).append(
        {
            "name": name,
            "image": image,
            "imagePullPolicy": "IfNotPresent",
            "env": [podspec.node_name_env(), podspec.env("DEVICE_TYPE", device_type), *extra_env],
            "securityContext": {
                "seLinuxOptions": {"type": "container_device_plugin_init_t"},
                "readOnlyRootFilesystem": True,
                "privileged": True,
            },
            "volumeMounts": mounts,
        }
    )
    podspec.add_volumes(pod, *volumes)
