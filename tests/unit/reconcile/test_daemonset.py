"""desired_daemonset: the reference's DaemonSets (spec §4.2-§4.4, §6.2) and our deliberate fixes."""

from __future__ import annotations

import copy
import json
import os
import pathlib
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from deviceplugin_operator import devices
from deviceplugin_operator.reconcile import daemonset
from deviceplugin_operator.settings import Settings

KINDS = list(devices.KINDS)
GOLDEN = pathlib.Path(__file__).parent / "golden"
TEMPLATES = pathlib.Path(devices.__file__).parent / "templates"

# Args of a resource with an empty spec (getPodArgs with zero values, spec §4.3).
DEFAULT_ARGS = {
    "dsa": ["-v", "0", "-driver", "idxd", "-shared-dev-num", "1"],
    "dlb": ["-v", "0"],
    "fpga": ["-v", "0", "-mode", "af"],
    "gpu": ["-v", "0", "-shared-dev-num", "1", "-allocation-policy", "none"],
    "iaa": ["-v", "0", "-shared-dev-num", "1"],
    "qat": [
        *("-v", "0", "-dpdk-driver", "vfio-pci", "-kernel-vf-drivers", "c6xxvf,4xxxvf"),
        *("-max-num-devices", "32"),
    ],
    "sgx": ["-v", "0", "-enclave-limit", "1", "-provision-limit", "1"],
    "npu": ["-v", "0", "-shared-dev-num", "1"],
}

# The worked examples of spec §4.3: the sample resources' DaemonSet names and args.
SAMPLE_ARGS = {
    "gpu": ["-v", "4", "-enable-monitoring", "-shared-dev-num", "10", "-allocation-policy", "none"],
    "qat": [
        *("-v", "4", "-dpdk-driver", "vfio-pci", "-kernel-vf-drivers", "4xxxvf,420xxvf"),
        *("-max-num-devices", "1"),
    ],
    "dsa": ["-v", "4", "-driver", "idxd", "-shared-dev-num", "10"],
    "iaa": ["-v", "4", "-shared-dev-num", "10"],
    "sgx": ["-v", "4", "-enclave-limit", "110", "-provision-limit", "110"],
    "npu": ["-v", "4", "-shared-dev-num", "1"],
    "fpga": ["-v", "4", "-mode", "region"],
    "dlb": ["-v", "4"],
}

# Args after the updates of the reference's envtest scenarios (spec §6.3).
UPDATED_ARGS = [
    ("gpu", {"logLevel": 2, "sharedDevNum": 42}, "-v 2 -shared-dev-num 42 -allocation-policy none"),
    (
        "qat",
        {
            "logLevel": 2,
            "dpdkDriver": "igb_uio",
            "kernelVfDrivers": ["c3xxxvf"],
            "maxNumDevices": 16,
            "preferredAllocationPolicy": "balanced",
        },
        "-v 2 -dpdk-driver igb_uio -kernel-vf-drivers c3xxxvf -max-num-devices 16"
        " -allocation-policy balanced",
    ),
    (
        "dsa",
        {"logLevel": 2, "sharedDevNum": 42, "driver": "vfio-pci"},
        "-v 2 -driver vfio-pci -shared-dev-num 42",
    ),
    ("iaa", {"logLevel": 2, "sharedDevNum": 42}, "-v 2 -shared-dev-num 42"),
    ("dlb", {"logLevel": 3}, "-v 3"),
    ("fpga", {"logLevel": 2, "mode": "region"}, "-v 2 -mode region"),
    (
        "sgx",
        {"logLevel": 2, "enclaveLimit": 2, "provisionLimit": 2, "dcapInfraResources": True},
        "-v 2 -enclave-limit 2 -provision-limit 2 -dcap-infra-resources",
    ),
    (
        "gpu",
        {
            "enableMonitoring": True,
            "monitoringMode": "split",
            "allowIDs": "0x4905,0x56a0",
            "bypathMode": "all",
        },
        "-v 0 -enable-monitoring -monitoring-mode=split -shared-dev-num 1 -allocation-policy none"
        " -allow-ids 0x4905,0x56a0 -bypath all",
    ),
    (
        "gpu",
        {
            "monitoringMode": "split",
            "denyIDs": "0x56a0",
            "preferredAllocationPolicy": "packed",
            "sharedDevNum": 2,
        },
        "-v 0 -shared-dev-num 2 -allocation-policy packed -deny-ids 0x56a0",
    ),
]


def render(
    name: str,
    spec: dict[str, Any] | None = None,
    settings: Settings | None = None,
    cr: str = "testing",
) -> dict[str, Any]:
    kind = devices.KINDS[name]
    return daemonset.desired_daemonset(
        kind, cr, "0000-uid", kind.spec.model_validate(spec or {}), settings or Settings()
    )


def pod_of(ds: dict[str, Any]) -> dict[str, Any]:
    pod: dict[str, Any] = ds["spec"]["template"]["spec"]
    return pod


def template_of(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((TEMPLATES / f"{name}.yaml").read_text())
    return loaded


def volume_names(ds: dict[str, Any]) -> list[str]:
    return [volume["name"] for volume in pod_of(ds).get("volumes", [])]


def test_every_kind_has_expected_default_args() -> None:
    assert set(DEFAULT_ARGS) == set(devices.KINDS) == set(SAMPLE_ARGS)


# C1 (spec §6.2): an empty spec renders the base template plus the common mapping.
@pytest.mark.parametrize("name", KINDS)
def test_empty_spec_renders_base_template_with_common_mapping(name: str) -> None:
    kind = devices.KINDS[name]
    ds = render(name, settings=Settings(plugin_namespace="inteldeviceplugins-system"))
    base = template_of(name)
    app = f"intel-{name}-plugin"

    assert ds["apiVersion"] == "apps/v1"
    assert ds["kind"] == "DaemonSet"
    assert ds["metadata"]["name"] == f"intel-{name}-plugin-testing"
    assert ds["metadata"]["namespace"] == "inteldeviceplugins-system"
    assert ds["spec"]["selector"] == {"matchLabels": {"app": app}}
    assert ds["spec"]["template"]["metadata"] == {"labels": {"app": app}}
    assert ds["spec"]["updateStrategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 1},
    }
    container = pod_of(ds)["containers"][0]
    expected_container = {
        **base["spec"]["template"]["spec"]["containers"][0],
        "image": kind.default_image,
        "args": DEFAULT_ARGS[name],
    }
    assert container == expected_container
    assert pod_of(ds)["nodeSelector"] == {"kubernetes.io/arch": "amd64"}
    for absent in ("tolerations", "imagePullSecrets", "initContainers"):
        assert absent not in pod_of(ds)
    expected_volumes = [
        volume
        for volume in base["spec"]["template"]["spec"]["volumes"]
        if volume["name"] != "intel-fpga-sw"
    ]
    assert pod_of(ds)["volumes"] == expected_volumes
    untouched = {"containers", "volumes", "nodeSelector", "initContainers"}
    base_pod = base["spec"]["template"]["spec"]
    assert {k: v for k, v in pod_of(ds).items() if k not in untouched} == {
        k: v for k, v in base_pod.items() if k not in untouched
    }


def test_c1_qat_with_init_image() -> None:
    ds = render("qat", {"initImage": "intel/intel-qat-initcontainer:0.36.0"})
    assert pod_of(ds)["initContainers"] == [
        {
            "name": "intel-qat-initcontainer",
            "image": "intel/intel-qat-initcontainer:0.36.0",
            "imagePullPolicy": "IfNotPresent",
            "env": [
                {"name": "ENABLED_QAT_PF_PCIIDS", "value": ""},
                {"name": "NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
            ],
            "securityContext": {
                "seLinuxOptions": {"type": "container_device_plugin_init_t"},
                "privileged": True,
                "readOnlyRootFilesystem": True,
            },
            "volumeMounts": [{"name": "sysfs", "mountPath": "/sys"}],
        }
    ]
    assert pod_of(ds)["volumes"][-1] == {
        "name": "sysfs",
        "hostPath": {"path": "/sys", "type": "DirectoryOrCreate"},
    }


def test_c1_fpga_init_image_is_applied_on_create() -> None:
    ds = render("fpga", {"initImage": "intel/intel-fpga-initcontainer:devel"})
    base_init = template_of("fpga")["spec"]["template"]["spec"]["initContainers"]
    assert pod_of(ds)["initContainers"] == base_init
    ds = render("fpga", {"initImage": "my/intel-fpga-initcontainer:0.36.0"})
    assert pod_of(ds)["initContainers"] == [
        {**base_init[0], "image": "my/intel-fpga-initcontainer:0.36.0"}
    ]
    assert "intel-fpga-sw" in volume_names(ds)


# C2 (spec §6.2), for every kind.
@pytest.mark.parametrize("name", KINDS)
def test_image_pull_secret_from_settings(name: str) -> None:
    ds = render(name, settings=Settings(image_pull_secret="mysecret"))
    assert pod_of(ds)["imagePullSecrets"] == [{"name": "mysecret"}]


# C3 and C4 (spec §6.2): a changed sharedDevNum changes the args and nothing else.
@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("gpu", ["-v", "0", "-shared-dev-num", "5", "-allocation-policy", "none"]),
        ("npu", ["-v", "0", "-shared-dev-num", "5"]),
    ],
)
def test_shared_dev_num_change_changes_only_args(name: str, expected: list[str]) -> None:
    before = render(name, {"sharedDevNum": 1})
    after = render(name, {"sharedDevNum": 5})
    assert pod_of(after)["containers"][0]["args"] == expected
    pod_of(before)["containers"][0]["args"] = expected
    assert before == after


@pytest.mark.parametrize("name", KINDS)
def test_sample_args_and_name(name: str, samples: dict[str, dict[str, Any]]) -> None:
    sample = samples[name]
    ds = render(name, sample["spec"], cr=sample["metadata"]["name"])
    assert ds["metadata"]["name"] == f"intel-{name}-plugin-{name}deviceplugin-sample"
    assert pod_of(ds)["containers"][0]["args"] == SAMPLE_ARGS[name]
    assert pod_of(ds)["containers"][0]["image"] == sample["spec"]["image"]


@pytest.mark.parametrize(("name", "spec", "args"), UPDATED_ARGS)
def test_args_follow_spec(name: str, spec: dict[str, Any], args: str) -> None:
    assert " ".join(pod_of(render(name, spec))["containers"][0]["args"]) == args


@pytest.mark.parametrize("name", KINDS)
def test_golden_daemonset_of_sample(name: str, samples: dict[str, dict[str, Any]]) -> None:
    sample = samples[name]
    ds = render(name, sample["spec"], cr=sample["metadata"]["name"])
    path = GOLDEN / f"{name}.yaml"
    if os.environ.get("UPDATE_GOLDEN"):
        path.write_text(yaml.safe_dump(ds, sort_keys=False))
    assert ds == yaml.safe_load(path.read_text())


@pytest.mark.parametrize("name", KINDS)
def test_metadata_labels_and_owner(name: str) -> None:
    ds = render(name, cr="my-plugins")
    app = f"intel-{name}-plugin"
    assert ds["metadata"]["labels"] == {
        "app": app,
        "app.kubernetes.io/name": app,
        "app.kubernetes.io/instance": "my-plugins",
        "app.kubernetes.io/managed-by": "intel-deviceplugin-operator",
        "app.kubernetes.io/component": "device-plugin",
    }
    assert ds["metadata"]["ownerReferences"] == [
        {
            "apiVersion": "deviceplugin.intel.com/v1",
            "kind": devices.KINDS[name].kind,
            "name": "my-plugins",
            "uid": "0000-uid",
            "controller": True,
            "blockOwnerDeletion": True,
        }
    ]
    assert set(ds["metadata"]) == {"name", "namespace", "labels", "ownerReferences"}


def test_instance_label_left_out_for_names_that_are_no_label_values() -> None:
    long_name = "a" * 64
    ds = render("gpu", cr=long_name)
    assert ds["metadata"]["name"] == f"intel-gpu-plugin-{long_name}"
    assert "app.kubernetes.io/instance" not in ds["metadata"]["labels"]


def test_too_long_name_is_a_render_error() -> None:
    with pytest.raises(daemonset.RenderError):
        render("gpu", cr="a" * 240)


@pytest.mark.parametrize("name", KINDS)
def test_daemonset_name(name: str) -> None:
    assert daemonset.daemonset_name(devices.KINDS[name], "x") == f"intel-{name}-plugin-x"


@pytest.mark.parametrize("name", [name for name in KINDS if name != "iaa"])
def test_user_node_selector_replaces_default(name: str) -> None:
    ds = render(name, {"nodeSelector": {"a": "b"}})
    assert pod_of(ds)["nodeSelector"] == {"a": "b"}
    assert pod_of(render(name, {"nodeSelector": {}}))["nodeSelector"] == {
        "kubernetes.io/arch": "amd64"
    }


def test_iaa_keeps_arch_in_user_node_selector() -> None:
    assert pod_of(render("iaa", {"nodeSelector": {"a": "b"}}))["nodeSelector"] == {
        "a": "b",
        "kubernetes.io/arch": "amd64",
    }
    selector = {"iaa-nodeselector": "true", "kubernetes.io/arch": "amd64"}
    assert pod_of(render("iaa", {"nodeSelector": selector}))["nodeSelector"] == selector
    assert pod_of(render("iaa", {"nodeSelector": {"kubernetes.io/arch": "x"}}))["nodeSelector"] == {
        "kubernetes.io/arch": "x"
    }


@pytest.mark.parametrize("name", KINDS)
def test_tolerations_verbatim_and_empty_means_absent(name: str) -> None:
    toleration = {"key": "foo", "operator": "Equal", "value": "bar", "effect": "NoSchedule"}
    ds = render(
        name, {"tolerations": [toleration, {"operator": "Exists", "tolerationSeconds": 30}]}
    )
    assert pod_of(ds)["tolerations"] == [
        toleration,
        {"operator": "Exists", "tolerationSeconds": 30},
    ]
    assert "tolerations" not in pod_of(render(name, {"tolerations": []}))
    assert "tolerations" not in pod_of(render(name, {"tolerations": None}))
    ds = render(
        name, {"tolerations": [{"key": "k", "operator": "Exists", "value": "", "effect": ""}]}
    )
    assert pod_of(ds)["tolerations"] == [{"key": "k", "operator": "Exists"}]


@pytest.mark.parametrize("name", KINDS)
def test_images_below_minimum_are_raised(name: str) -> None:
    kind = devices.KINDS[name]
    spec: dict[str, Any] = {"image": f"intel/{kind.image}:0.35.0"}
    if kind.init_image:
        spec["initImage"] = f"intel/{kind.init_image}:0.35.0"
    ds = render(name, spec)
    assert pod_of(ds)["containers"][0]["image"] == f"intel/{kind.image}:0.36.0"
    if kind.init_image:
        assert pod_of(ds)["initContainers"][0]["image"] == f"intel/{kind.init_image}:0.36.0"


def test_image_overrides_from_settings_apply_to_default_and_given_images() -> None:
    pinned = "docker.io/intel/intel-gpu-plugin@sha256:" + "b" * 64
    pinned_init = "docker.io/intel/intel-gpu-initcontainer@sha256:" + "c" * 64
    overrides = {"INTEL_GPU_PLUGIN_SHA": pinned, "INTEL_GPU_INITCONTAINER_SHA": pinned_init}
    ds = render("gpu", settings=Settings(image_overrides=overrides))
    assert pod_of(ds)["containers"][0]["image"] == pinned
    ds = render(
        "gpu",
        {
            "image": "intel/intel-gpu-plugin:0.36.0",
            "initImage": "intel/intel-gpu-initcontainer:0.36.0",
        },
        Settings(image_overrides=overrides),
    )
    assert pod_of(ds)["containers"][0]["image"] == pinned
    assert pod_of(ds)["initContainers"][0]["image"] == pinned_init


def test_dlb_init_container() -> None:
    ds = render("dlb", {"initImage": "intel/intel-dlb-initcontainer:0.36.0"})
    assert pod_of(ds)["initContainers"] == [
        {
            "name": "enable-vfs",
            "image": "intel/intel-dlb-initcontainer:0.36.0",
            "imagePullPolicy": "IfNotPresent",
            "securityContext": {"privileged": True, "readOnlyRootFilesystem": True},
            "volumeMounts": [
                {"name": "sysfs-devices", "mountPath": "/sys/devices"},
                {"name": "sysfs-driver-dlb2", "mountPath": "/sys/bus/pci/drivers/dlb2"},
            ],
        }
    ]
    assert pod_of(ds)["volumes"][-2:] == [
        {
            "name": "sysfs-devices",
            "hostPath": {"path": "/sys/devices", "type": "DirectoryOrCreate"},
        },
        {
            "name": "sysfs-driver-dlb2",
            "hostPath": {"path": "/sys/bus/pci/drivers/dlb2", "type": "DirectoryOrCreate"},
        },
    ]


def idxd_volumes(
    config_volume: str | None, *, with_pci: bool, config: str = "cfg"
) -> list[dict[str, Any]]:
    volumes: list[dict[str, Any]] = [{"name": "sys-bus-dsa", "hostPath": {"path": "/sys/bus/dsa"}}]
    if with_pci:
        volumes.append({"name": "sys-bus-pci", "hostPath": {"path": "/sys/bus/pci"}})
    volumes += [
        {"name": "sys-devices", "hostPath": {"path": "/sys/devices"}},
        {"name": "scratch", "emptyDir": {}},
    ]
    if config_volume:
        volumes.append({"name": config_volume, "configMap": {"name": config, "defaultMode": 420}})
    return volumes


@pytest.mark.parametrize("driver", ["idxd", "vfio-pci"])
def test_dsa_init_container(driver: str) -> None:
    ds = render(
        "dsa",
        {
            "initImage": "intel/intel-idxd-config-initcontainer:0.36.0",
            "provisioningConfig": "cfg",
            "driver": driver,
        },
    )
    assert pod_of(ds)["initContainers"] == [
        {
            "name": "intel-idxd-config-initcontainer",
            "image": "intel/intel-idxd-config-initcontainer:0.36.0",
            "imagePullPolicy": "IfNotPresent",
            "env": [
                {"name": "NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
                {"name": "DEVICE_TYPE", "value": "dsa"},
                {"name": "DSA_DRIVER", "value": driver},
            ],
            "securityContext": {
                "seLinuxOptions": {"type": "container_device_plugin_init_t"},
                "readOnlyRootFilesystem": True,
                "privileged": True,
            },
            "volumeMounts": [
                {"name": "sys-bus-dsa", "mountPath": "/sys/bus/dsa"},
                {"name": "sys-bus-pci", "mountPath": "/sys/bus/pci"},
                {"name": "sys-devices", "mountPath": "/sys/devices"},
                {"name": "scratch", "mountPath": "/idxd-init/scratch"},
                {"name": "intel-dsa-config-volume", "mountPath": "/idxd-init/conf"},
            ],
        }
    ]
    assert pod_of(ds)["volumes"][4:] == idxd_volumes("intel-dsa-config-volume", with_pci=True)


def test_dsa_without_provisioning_config_has_no_config_volume() -> None:
    ds = render("dsa", {"initImage": "intel/intel-idxd-config-initcontainer:0.36.0"})
    assert pod_of(ds)["volumes"][4:] == idxd_volumes(None, with_pci=True)
    assert [m["name"] for m in pod_of(ds)["initContainers"][0]["volumeMounts"]] == [
        "sys-bus-dsa",
        "sys-bus-pci",
        "sys-devices",
        "scratch",
    ]


@pytest.mark.parametrize("init_image", [None, "intel/intel-idxd-config-initcontainer:0.36.0"])
def test_dsa_vfio_mounts_dev_vfio_on_both_sides(init_image: str | None) -> None:
    ds = render("dsa", {"driver": "vfio-pci", "initImage": init_image})
    devfs = next(v for v in pod_of(ds)["volumes"] if v["name"] == "devfs")
    mount = next(m for m in pod_of(ds)["containers"][0]["volumeMounts"] if m["name"] == "devfs")
    assert devfs == {"name": "devfs", "hostPath": {"path": "/dev/vfio"}}
    assert mount == {"name": "devfs", "mountPath": "/dev/vfio", "readOnly": True}
    idxd = render("dsa")
    assert next(v for v in pod_of(idxd)["volumes"] if v["name"] == "devfs")["hostPath"] == {
        "path": "/dev/dsa"
    }


def test_iaa_init_container() -> None:
    ds = render(
        "iaa",
        {"initImage": "intel/intel-idxd-config-initcontainer:0.36.0", "provisioningConfig": "cfg"},
    )
    (init,) = pod_of(ds)["initContainers"]
    assert init["name"] == "intel-iaa-initcontainer"
    assert init["env"] == [
        {"name": "NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
        {"name": "DEVICE_TYPE", "value": "iaa"},
    ]
    assert init["volumeMounts"] == [
        {"name": "sys-bus-dsa", "mountPath": "/sys/bus/dsa"},
        {"name": "sys-devices", "mountPath": "/sys/devices"},
        {"name": "scratch", "mountPath": "/idxd-init/scratch"},
        {"name": "intel-iaa-config-volume", "mountPath": "/idxd-init/conf"},
    ]
    assert pod_of(ds)["volumes"][4:] == idxd_volumes("intel-iaa-config-volume", with_pci=False)


def test_iaa_provisioning_config_without_init_image_renders_nothing() -> None:
    assert volume_names(render("iaa", {"provisioningConfig": "cfg"})) == volume_names(render("iaa"))


def test_fpga_without_init_image_has_no_init_container_nor_its_volume() -> None:
    ds = render("fpga")
    assert "initContainers" not in pod_of(ds)
    assert volume_names(ds) == ["devfs", "sysfs", "kubeletsockets", "cdidir"]


@pytest.mark.parametrize(("name", "volume"), [("gpu", "nfd-sources"), ("sgx", "nfd-features")])
def test_nfd_hook_init_container(name: str, volume: str) -> None:
    image = f"intel/intel-{name}-initcontainer:0.36.0"
    ds = render(name, {"initImage": image})
    source_dir = "/etc/kubernetes/node-feature-discovery/source.d/"
    assert pod_of(ds)["initContainers"] == [
        {
            "name": f"intel-{name}-initcontainer",
            "image": image,
            "imagePullPolicy": "IfNotPresent",
            "securityContext": {
                "seLinuxOptions": {"type": "container_device_plugin_init_t"},
                "readOnlyRootFilesystem": True,
            },
            "volumeMounts": [{"mountPath": source_dir, "name": volume}],
        }
    ]
    assert pod_of(ds)["volumes"][-1] == {
        "name": volume,
        "hostPath": {"path": source_dir, "type": "DirectoryOrCreate"},
    }
    assert volume not in volume_names(render(name))


@pytest.mark.parametrize(
    ("drivers", "pf_ids"),
    [
        (["4xxxvf", "420xxvf"], "4940 4942 4944 4946"),
        (["6xxxvf"], "4948"),
        (
            ["dh895xccvf", "c6xxvf", "c3xxxvf", "d15xxvf", "c4xxxvf"],
            "0434 0435 37c8 19e2 6f54 18a0",
        ),
        ([], ""),
        (None, ""),
    ],
)
def test_qat_pf_ids_follow_kernel_vf_drivers(drivers: list[str] | None, pf_ids: str) -> None:
    ds = render(
        "qat", {"initImage": "intel/intel-qat-initcontainer:0.36.0", "kernelVfDrivers": drivers}
    )
    assert pod_of(ds)["initContainers"][0]["env"][0] == {
        "name": "ENABLED_QAT_PF_PCIIDS",
        "value": pf_ids,
    }


def test_qat_provisioning_config_volume() -> None:
    ds = render(
        "qat",
        {"initImage": "intel/intel-qat-initcontainer:0.36.0", "provisioningConfig": "qat-config"},
    )
    assert pod_of(ds)["volumes"][-1] == {
        "name": "intel-qat-config-volume",
        "configMap": {"name": "qat-config", "defaultMode": 0o440},
    }
    assert pod_of(ds)["initContainers"][0]["volumeMounts"][-1] == {
        "name": "intel-qat-config-volume",
        "mountPath": "/qat-init/conf",
    }
    assert "intel-qat-config-volume" not in volume_names(
        render("qat", {"provisioningConfig": "qat-config"})
    )


@pytest.mark.parametrize("name", KINDS)
def test_no_init_image_means_no_init_container(name: str) -> None:
    ds = render(name, {"initImage": ""} if devices.KINDS[name].init_image else {})
    assert "initContainers" not in pod_of(ds)
    assert volume_names(ds) == [
        v["name"]
        for v in template_of(name)["spec"]["template"]["spec"]["volumes"]
        if v["name"] != "intel-fpga-sw"
    ]


@pytest.mark.parametrize("name", KINDS)
def test_rendering_does_not_share_state_between_calls(name: str) -> None:
    first = render(name, {"nodeSelector": {"a": "b"}, "tolerations": [{"operator": "Exists"}]})
    snapshot = copy.deepcopy(first)
    pod_of(first)["containers"][0]["args"].append("mutated")
    pod_of(first)["nodeSelector"]["x"] = "y"
    second = render(name, {"nodeSelector": {"a": "b"}, "tolerations": [{"operator": "Exists"}]})
    assert second == snapshot


def _spec_values(schema: dict[str, Any]) -> st.SearchStrategy[Any]:
    if "anyOf" in schema:
        (option,) = [o for o in schema["anyOf"] if o != {"type": "null"}]
        return st.none() | _spec_values(option)
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    kind = schema.get("type")
    if kind == "integer":
        return st.integers(min_value=schema.get("minimum", 0), max_value=200)
    if kind == "boolean":
        return st.booleans()
    if kind == "array":
        return st.lists(_spec_values(schema["items"]), max_size=3)
    if kind == "object" and "additionalProperties" in schema:
        label = st.text("abcxyz-./", min_size=1, max_size=8)
        return st.dictionaries(label, st.text("abc", max_size=3), max_size=3)
    return st.text("abc0123456789:/.-", max_size=20)


_TOLERATION = st.fixed_dictionaries(
    {},
    optional={
        "key": st.text("ab", max_size=3),
        "operator": st.sampled_from(["Exists", "Equal"]),
        "value": st.text("ab", max_size=3),
        "effect": st.sampled_from(["", "NoSchedule", "NoExecute"]),
        "tolerationSeconds": st.integers(0, 100),
    },
)


@st.composite
def _resources(draw: st.DrawFn) -> tuple[str, dict[str, Any], Settings]:
    name = draw(st.sampled_from(KINDS))
    schema = devices.KINDS[name].spec.model_json_schema(by_alias=True)
    properties = {
        key: _spec_values(value)
        for key, value in schema["properties"].items()
        if key != "tolerations"
    }
    spec = draw(st.fixed_dictionaries({}, optional=properties))
    spec["tolerations"] = draw(st.none() | st.lists(_TOLERATION, max_size=2))
    settings = Settings(
        plugin_namespace=draw(st.sampled_from(["kube-system", "inteldeviceplugins-system"])),
        image_pull_secret=draw(st.none() | st.just("pull-secret")),
    )
    return name, spec, settings


@settings(max_examples=300, deadline=None)
@given(_resources(), st.text("abcdefghij-0123456789", min_size=1, max_size=40))
def test_rendering_is_deterministic_and_selector_matches_template(
    resource: tuple[str, dict[str, Any], Settings], cr: str
) -> None:
    name, spec, settings_ = resource
    first = render(name, spec, settings_, cr=cr)
    second = render(name, copy.deepcopy(spec), settings_, cr=cr)
    assert json.dumps(first, sort_keys=False) == json.dumps(second, sort_keys=False)
    labels = first["spec"]["template"]["metadata"]["labels"]
    assert first["spec"]["selector"]["matchLabels"] == labels == {"app": f"intel-{name}-plugin"}
    assert first["metadata"]["labels"]["app"] == labels["app"]
    args = pod_of(first)["containers"][0]["args"]
    assert args[:2] == ["-v", str(spec.get("logLevel") or 0)]
    assert all(isinstance(arg, str) for arg in args)
    mounts = {m["name"] for c in pod_of(first).get("initContainers", []) for m in c["volumeMounts"]}
    mounts |= {m["name"] for m in pod_of(first)["containers"][0]["volumeMounts"]}
    assert mounts <= set(volume_names(first))
    assert len(volume_names(first)) == len(set(volume_names(first)))


@pytest.mark.parametrize("name", list(devices.KINDS))
def test_plugin_service_account_runs_plugins_without_a_token(name: str) -> None:
    kind = devices.KINDS[name]
    config = Settings(plugin_namespace="ops", plugin_service_account="plugin")
    pod = daemonset.desired_daemonset(kind, "cr", "uid-1", kind.spec(), config)["spec"]["template"][
        "spec"
    ]
    assert pod["serviceAccountName"] == "plugin"
    assert pod["automountServiceAccountToken"] is False
    reference = daemonset.desired_daemonset(
        kind, "cr", "uid-1", kind.spec(), Settings(plugin_namespace="ops")
    )["spec"]["template"]["spec"]
    assert "serviceAccountName" not in reference


@pytest.mark.parametrize("name", list(devices.KINDS))
def test_plugin_pods_get_no_api_token_even_without_the_service_account_flag(name: str) -> None:
    # Issue 14, point 6: the GPU, FPGA and NPU templates mounted the namespace's default
    # token into pods that run privileged or with host paths.
    pod = pod_of(render(name, settings=Settings(plugin_namespace="ops")))
    assert "serviceAccountName" not in pod
    assert pod["automountServiceAccountToken"] is False
