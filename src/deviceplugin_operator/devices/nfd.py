"""The node-feature-discovery source-hook init container shared by GPU and SGX.

It copies a hook into NFD's ``source.d`` directory on the host; the kinds differ only in the
container and volume names.
"""

from __future__ import annotations

from deviceplugin_operator.devices import podspec

SOURCE_DIR = "/etc/kubernetes/node-feature-discovery/source.d/"


def add_source_hook(pod: podspec.PodSpec, *, name: str, image: str, volume: str) -> None:
    """Run ``image`` as the init container ``name`` with the host's source.d as ``volume``."""
    pod["initContainers"] = [
        {
            "name": name,
            "image": image,
            "imagePullPolicy": "IfNotPresent",
            "securityContext": {
                "seLinuxOptions": {"type": "container_device_plugin_init_t"},
                "readOnlyRootFilesystem": True,
            },
            "volumeMounts": [podspec.mount(volume, SOURCE_DIR)],
        }
    ]
    podspec.add_volumes(pod, podspec.host_path(volume, SOURCE_DIR, "DirectoryOrCreate"))
