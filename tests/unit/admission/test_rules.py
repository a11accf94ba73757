"""Defaulting and validation of the device-plugin resources (spec §3.2-§3.4, §6.7 V1-V15,
§8 items 12-13): the reference's messages word for word, its samples, the deliberate fixes,
the warnings, and properties of the pure functions."""

from __future__ import annotations

import contextlib
import dataclasses
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from deviceplugin_operator import devices
from deviceplugin_operator.admission import errors, review, rules

KINDS = devices.KINDS
HEX64 = "0123456789abcdef" * 4
TOO_LOW = 'invalid resource: version "{}" is too low. Should be at least "0.36.0"'
NOT_SEMVER = "invalid resource: {}: Make sure it's either valid SHA digest or semver tag"
NO_INIT = "invalid resource: ProvisioningConfig is set with no InitImage"


def resource(spec: Any, name: str = "sample") -> dict[str, Any]:
    return {
        "apiVersion": "deviceplugin.intel.com/v1",
        "kind": "X",
        "metadata": {"name": name},
        "spec": spec,
    }


def image_of(kind: str, tag: str = "0.36.0") -> str:
    return f"intel/intel-{kind}-plugin:{tag}"


def rejection(kind: str, spec: dict[str, Any]) -> str:
    with pytest.raises(errors.Rejected) as raised:
        rules.validate(KINDS[kind], resource(spec))
    return raised.value.message


# Defaulting (§3.2, V1) ----------------------------------------------------------------------


@pytest.mark.parametrize("name", list(KINDS))
def test_empty_image_gets_the_default_of_its_kind(name: str) -> None:
    expected = f"intel/intel-{name}-plugin:0.36.0"
    for spec in ({}, {"image": ""}, {"image": None}, {"logLevel": 2}):
        assert rules.default(KINDS[name], resource(spec)) == [review.add("/spec/image", expected)]


@pytest.mark.parametrize("name", list(KINDS))
def test_absent_or_null_spec_is_created_with_the_image(name: str) -> None:
    expected = [review.add("/spec", {"image": f"intel/intel-{name}-plugin:0.36.0"})]
    assert rules.default(KINDS[name], {"metadata": {"name": "x"}}) == expected
    assert rules.default(KINDS[name], resource(None)) == expected


def test_v1_defaulted_resource_is_the_stored_one() -> None:
    obj = resource({})
    patched = review.apply(obj, rules.default(KINDS["gpu"], obj))
    assert patched["spec"] == {"image": "intel/intel-gpu-plugin:0.36.0"}


@pytest.mark.parametrize("image", ["intel/intel-gpu-plugin:0.35.0", "anything", "x:devel"])
def test_a_set_image_is_never_defaulted_nor_checked_there(image: str) -> None:
    assert rules.default(KINDS["gpu"], resource({"image": image})) == []


def test_nothing_else_is_defaulted() -> None:
    # No init image default (the FPGA one was dropped upstream), no DSA driver (the CRD has it).
    assert rules.default(KINDS["fpga"], resource({"image": image_of("fpga")})) == []
    assert rules.default(KINDS["dsa"], resource({"image": image_of("dsa")})) == []


@pytest.mark.parametrize(
    ("obj", "message"),
    [
        ([], "invalid resource: the object is not a JSON object"),
        (resource([]), "invalid resource: spec: must be an object"),
        (resource("x"), "invalid resource: spec: must be an object"),
        (resource({"image": 5}), "invalid resource: spec.image: must be a string"),
    ],
)
def test_defaulting_an_unreadable_object_is_a_400_denial(obj: Any, message: str) -> None:
    with pytest.raises(errors.Rejected) as raised:
        rules.default(KINDS["gpu"], obj)
    assert (raised.value.message, raised.value.code) == (message, 400)


# The reference samples (§5.6, §8 item 12) -------------------------------------------------


@pytest.mark.parametrize("name", list(KINDS))
def test_every_reference_sample_is_admitted_unchanged_without_warnings(
    name: str, samples: dict[str, dict[str, Any]]
) -> None:
    sample = samples[name]
    assert rules.default(KINDS[name], sample) == []
    assert rules.validate(KINDS[name], sample) == []


def test_the_samples_the_reference_rejects_are_the_dlb_and_fpga_ones(
    samples: dict[str, dict[str, Any]],
) -> None:
    # Fixed deliberately: the reference expected intel-dlb-initimage / intel-fpga-initimage.
    assert samples["dlb"]["spec"]["initImage"] == "intel/intel-dlb-initcontainer:0.36.0"
    assert samples["fpga"]["spec"]["initImage"] == "intel/intel-fpga-initcontainer:0.36.0"
    for name in ("dlb", "fpga"):
        wrong = {**samples[name]["spec"], "initImage": f"intel/intel-{name}-initimage:0.36.0"}
        assert rejection(name, wrong) == (
            f'invalid resource: incorrect image name "intel-{name}-initimage". '
            f"Make sure you use '<vendor>/intel-{name}-initcontainer'"
        )


# Image validation (§3.3, V2-V7, §8 item 13) ------------------------------------------------

IMAGES_DENIED = [
    ("V2", "intel/intel-gpu-plugin:0.35.0", TOO_LOW.format("0.35.0")),
    ("V3", "intel/intel-gpu-plugin:devel", NOT_SEMVER.format('could not parse "devel" as version')),
    (
        "latest",
        "intel/intel-gpu-plugin:latest",
        NOT_SEMVER.format('could not parse "latest" as version'),
    ),
    ("two-part", "intel/intel-gpu-plugin:0.36", NOT_SEMVER.format('illegal version string "0.36"')),
    (
        "zero-prefixed",
        "intel/intel-gpu-plugin:0.036.0",
        NOT_SEMVER.format('illegal zero-prefixed version component "036" in "0.036.0"'),
    ),
    ("pre-release", "intel/intel-gpu-plugin:0.36.0-rc.1", TOO_LOW.format("0.36.0-rc.1")),
    ("v-prefix-low", "intel/intel-gpu-plugin:v0.35.1", TOO_LOW.format("0.35.1")),
    (
        "V4",
        "foo/intel-qat-plugin:0.36.0",
        'invalid resource: incorrect image name "intel-qat-plugin". '
        "Make sure you use '<vendor>/intel-gpu-plugin'",
    ),
    (
        "V5",
        "intel/intel-gpu-plugin",
        'invalid resource: incorrect image field "intel/intel-gpu-plugin"',
    ),
    (
        "registry-port-no-tag",
        "my.reg:5000/intel-gpu-plugin",
        'invalid resource: incorrect image field "my.reg:5000/intel-gpu-plugin"',
    ),
    (
        "anchored-digest",
        f"evil-intel-gpu-plugin@sha256:{HEX64}",
        'invalid resource: incorrect image name "evil-intel-gpu-plugin@sha256". '
        "Make sure you use '<vendor>/intel-gpu-plugin'",
    ),
    (
        "short-digest",
        "intel/intel-gpu-plugin@sha256:abc",
        NOT_SEMVER.format('could not parse "abc" as version'),
    ),
    (
        "tag-and-digest-too-low",
        f"intel/intel-gpu-plugin:0.35.0@sha256:{HEX64}",
        TOO_LOW.format("0.35.0"),
    ),
]


@pytest.mark.parametrize(
    ("case", "image", "message"), IMAGES_DENIED, ids=[case for case, *_ in IMAGES_DENIED]
)
def test_images_are_denied_with_the_reference_messages(case: str, image: str, message: str) -> None:
    assert rejection("gpu", {"image": image}) == message


IMAGES_ACCEPTED = [
    ("V6", f"intel/intel-gpu-plugin@sha256:{HEX64}"),
    ("V6-bare", f"intel-gpu-plugin@sha256:{HEX64}"),
    ("V7", "my.reg:5000/a/b/intel-gpu-plugin:0.36.0"),
    ("newer", "intel/intel-gpu-plugin:1.0.0"),
    ("v-prefix", "intel/intel-gpu-plugin:v0.36.0"),
    ("tag-and-digest", f"intel/intel-gpu-plugin:0.36.0@sha256:{HEX64}"),
    ("registry-digest", f"registry.example:443/x/intel-gpu-plugin@sha256:{HEX64}"),
]


@pytest.mark.parametrize(("case", "image"), IMAGES_ACCEPTED, ids=[c for c, _ in IMAGES_ACCEPTED])
def test_images_are_accepted(case: str, image: str) -> None:
    assert rules.validate(KINDS["gpu"], resource({"image": image})) == []


@pytest.mark.parametrize(
    "image",
    [
        "intel/intel-gpu-plugin:0.36.0 ",  # Kubernetes' version parser ignores the space
        "intel//intel-gpu-plugin:0.36.0",
        "In_valid/intel-gpu-plugin:0.36.0",
    ],
)
def test_images_that_could_never_be_pulled_are_denied(image: str) -> None:
    # The reference let these through to a DaemonSet stuck in InvalidImageName.
    message = rejection("gpu", {"image": image})
    assert message.startswith("invalid resource: invalid "), message
    assert repr(image) in message


# Per-kind checks (§3.4, V8-V14) ------------------------------------------------------------

GPU = image_of("gpu")
QAT_INIT = "intel/intel-qat-initcontainer:0.36.0"
IDXD_INIT = "intel/intel-idxd-config-initcontainer:0.36.0"

DENIED = [
    (
        "V8",
        "gpu",
        {"image": GPU, "sharedDevNum": 1, "preferredAllocationPolicy": "packed"},
        "invalid resource: 'packed' PreferredAllocationPolicy is valid only when setting "
        "sharedDevNum > 1",
    ),
    (
        "V8-unset-shared",
        "gpu",
        {"image": GPU, "preferredAllocationPolicy": "balanced"},
        "invalid resource: 'balanced' PreferredAllocationPolicy is valid only when setting "
        "sharedDevNum > 1",
    ),
    (
        "V9",
        "gpu",
        {"image": GPU, "allowIDs": "0x4905,,0x56a0"},
        "invalid resource: Empty PCI Device ID in AllowIDs",
    ),
    (
        "V9-trailing",
        "gpu",
        {"image": GPU, "allowIDs": "0x4905,"},
        "invalid resource: Empty PCI Device ID in AllowIDs",
    ),
    (
        "V10",
        "gpu",
        {"image": GPU, "denyIDs": "0x56A0"},
        "invalid resource: Invalid PCI Device ID: 0x56A0",
    ),
    (
        "V10-deny-empty",
        "gpu",
        {"image": GPU, "denyIDs": ",0x56a0"},
        "invalid resource: Empty PCI Device ID in DenyIDs",
    ),
    (
        "V10-long",
        "gpu",
        {"image": GPU, "allowIDs": "0x56a00"},
        "invalid resource: Invalid PCI Device ID: 0x56a00",
    ),
    (
        "V11",
        "gpu",
        {"image": GPU, "allowIDs": "0x4905", "denyIDs": "0x56a0"},
        "invalid resource: AllowIDs and DenyIDs cannot be used together",
    ),
    ("V12", "qat", {"image": image_of("qat"), "provisioningConfig": "c"}, NO_INIT),
    (
        "V13",
        "qat",
        {
            "image": image_of("qat"),
            "initImage": QAT_INIT,
            "provisioningConfig": "c",
            "kernelVfDrivers": ["c6xxvf"],
        },
        "invalid resource: ProvisioningConfig is available only for 4xxx and 420xx devices",
    ),
    (
        "V13-no-drivers",
        "qat",
        {"image": image_of("qat"), "initImage": QAT_INIT, "provisioningConfig": "c"},
        "invalid resource: ProvisioningConfig is available only for 4xxx and 420xx devices",
    ),
    ("V14-dsa", "dsa", {"image": image_of("dsa"), "provisioningConfig": "c"}, NO_INIT),
    ("V14-iaa", "iaa", {"image": image_of("iaa"), "provisioningConfig": "c"}, NO_INIT),
    (
        "qat-init-name",
        "qat",
        {"image": image_of("qat"), "initImage": "intel/intel-qat-init:0.36.0"},
        'invalid resource: incorrect image name "intel-qat-init". '
        "Make sure you use '<vendor>/intel-qat-initcontainer'",
    ),
    (
        "dsa-init-name",
        "dsa",
        {"image": image_of("dsa"), "initImage": "intel/intel-dsa-initcontainer:0.36.0"},
        'invalid resource: incorrect image name "intel-dsa-initcontainer". '
        "Make sure you use '<vendor>/intel-idxd-config-initcontainer'",
    ),
    (
        "iaa-init-version",
        "iaa",
        {"image": image_of("iaa"), "initImage": "intel/intel-idxd-config-initcontainer:0.30.0"},
        TOO_LOW.format("0.30.0"),
    ),
    (
        "sgx-init-name",
        "sgx",
        {"image": image_of("sgx"), "initImage": "intel/intel-sgx-init:0.36.0"},
        'invalid resource: incorrect image name "intel-sgx-init". '
        "Make sure you use '<vendor>/intel-sgx-initcontainer'",
    ),
    (
        "fpga-init-version",
        "fpga",
        {"image": image_of("fpga"), "initImage": "intel/intel-fpga-initcontainer:devel"},
        NOT_SEMVER.format('could not parse "devel" as version'),
    ),
    ("npu-image", "npu", {"image": image_of("npu", "0.1.0")}, TOO_LOW.format("0.1.0")),
    ("dlb-empty-image", "dlb", {}, 'invalid resource: incorrect image field ""'),
]


@pytest.mark.parametrize(("case", "kind", "spec", "message"), DENIED, ids=[d[0] for d in DENIED])
def test_invalid_resources_are_denied_with_the_reference_message(
    case: str, kind: str, spec: dict[str, Any], message: str
) -> None:
    assert rejection(kind, spec) == message


ACCEPTED = [
    ("V8-none", "gpu", {"image": GPU, "sharedDevNum": 1, "preferredAllocationPolicy": "none"}),
    ("V8-shared", "gpu", {"image": GPU, "sharedDevNum": 2, "preferredAllocationPolicy": "packed"}),
    ("gpu-ids", "gpu", {"image": GPU, "allowIDs": "0x4905,0x56a0"}),
    ("gpu-init-unchecked", "gpu", {"image": GPU, "initImage": "anything:devel"}),
    ("fpga-without-init", "fpga", {"image": image_of("fpga")}),
    (
        "fpga-with-init",
        "fpga",
        {"image": image_of("fpga"), "initImage": "intel/intel-fpga-initcontainer:0.36.0"},
    ),
    (
        "dlb-with-init",
        "dlb",
        {"image": image_of("dlb"), "initImage": "intel/intel-dlb-initcontainer:0.36.0"},
    ),
    (
        "dsa-config",
        "dsa",
        {"image": image_of("dsa"), "initImage": IDXD_INIT, "provisioningConfig": "c"},
    ),
    (
        "iaa-config",
        "iaa",
        {"image": image_of("iaa"), "initImage": IDXD_INIT, "provisioningConfig": "c"},
    ),
    (
        "qat-4xxx-config",
        "qat",
        {
            "image": image_of("qat"),
            "initImage": QAT_INIT,
            "provisioningConfig": "c",
            "kernelVfDrivers": ["c6xxvf", "4xxxvf"],
        },
    ),
    (
        "qat-6xxx-config",
        "qat",
        {
            "image": image_of("qat"),
            "initImage": QAT_INIT,
            "provisioningConfig": "c",
            "kernelVfDrivers": ["6xxxvf"],
        },
    ),
    (
        "sgx-init",
        "sgx",
        {"image": image_of("sgx"), "initImage": "intel/intel-sgx-initcontainer:0.36.0"},
    ),
]


@pytest.mark.parametrize(("case", "kind", "spec"), ACCEPTED, ids=[a[0] for a in ACCEPTED])
def test_valid_resources_are_accepted(case: str, kind: str, spec: dict[str, Any]) -> None:
    assert rules.validate(KINDS[kind], resource(spec)) == []


FIRST_ERROR_WINS = [
    # (kind, spec with two problems, the one the reference reports)
    (
        "gpu",
        {"image": "x", "allowIDs": ",", "preferredAllocationPolicy": "packed"},
        "PreferredAllocationPolicy",
    ),
    ("gpu", {"image": "x", "allowIDs": "0x12", "denyIDs": "0x1234"}, "Invalid PCI Device ID: 0x12"),
    ("gpu", {"image": "x", "allowIDs": "0x1234", "denyIDs": "0x1234"}, "cannot be used together"),
    ("dlb", {"image": "x", "initImage": "y"}, 'incorrect image field "y"'),
    ("dsa", {"image": "x", "provisioningConfig": "c"}, 'incorrect image field "x"'),
    (
        "dsa",
        {"image": image_of("dsa"), "provisioningConfig": "c", "initImage": "y"},
        'image field "y"',
    ),
    (
        "qat",
        {"image": "x", "initImage": "y", "provisioningConfig": "c"},
        'incorrect image field "y"',
    ),
    ("qat", {"image": "x", "provisioningConfig": "c"}, "no InitImage"),
    ("sgx", {"image": "x", "initImage": "y"}, 'incorrect image field "x"'),
    ("fpga", {"image": "x", "initImage": "y"}, 'incorrect image field "x"'),
]


@pytest.mark.parametrize(("kind", "spec", "part"), FIRST_ERROR_WINS)
def test_the_first_failing_check_in_the_reference_order_is_reported(
    kind: str, spec: dict[str, Any], part: str
) -> None:
    assert part in rejection(kind, spec)


def test_update_is_judged_by_the_new_object_alone() -> None:
    good, bad = resource({"image": GPU}), resource({"image": image_of("gpu", "0.1.0")})
    assert rules.validate(KINDS["gpu"], good, bad) == []
    with pytest.raises(errors.Rejected, match=r'"0\.1\.0" is too low'):
        rules.validate(KINDS["gpu"], bad, good)


# Schema (V15) ------------------------------------------------------------------------------

SCHEMA = [
    ("qat", {"kernelVfDrivers": ["foo"]}, "spec.kernelVfDrivers[0]: Input should be 'dh895xccvf'"),
    ("dsa", {"driver": "bar"}, "spec.driver: Input should be 'idxd' or 'vfio-pci' (got \"bar\")"),
    (
        "gpu",
        {"sharedDevNum": 0},
        "spec.sharedDevNum: Input should be greater than or equal to 1 (got 0)",
    ),
    ("npu", {"logLevel": -1}, "spec.logLevel: Input should be greater than or equal to 0 (got -1)"),
    ("gpu", {"allowIDs": 5}, "spec.allowIDs: Input should be a valid string (got 5)"),
    ("sgx", {"enclaveLimit": 0}, "spec.enclaveLimit: Input should be greater than or equal to 1"),
    ("fpga", {"mode": "afx"}, "spec.mode: Input should be 'af', 'region' or 'regiondevel'"),
    ("gpu", {"nodeSelector": {"a": 1}}, "spec.nodeSelector.a: Input should be a valid string"),
    (
        "sgx",
        {"tolerations": [{"tolerationSeconds": "x"}]},
        "spec.tolerations[0].tolerationSeconds:",
    ),
    ("gpu", [1], "spec: Input should be a valid dictionary"),
]


@pytest.mark.parametrize(("kind", "spec", "start"), SCHEMA)
def test_schema_violations_are_denied_naming_the_field(kind: str, spec: Any, start: str) -> None:
    message = rejection(kind, {"image": image_of(kind), **spec} if isinstance(spec, dict) else spec)
    assert message.startswith("invalid resource: " + start), message


def test_a_non_object_is_a_400_denial() -> None:
    with pytest.raises(errors.Rejected) as raised:
        rules.validate(KINDS["gpu"], "x")
    assert raised.value.code == 400


# Warnings ----------------------------------------------------------------------------------


def warnings(kind: str, spec: dict[str, Any], **context: Any) -> list[str]:
    return rules.validate(
        KINDS[kind], resource({"image": image_of(kind), **spec}), None, rules.Context(**context)
    )


def test_monitoring_mode_without_monitoring_is_a_warning() -> None:
    expected = [
        "spec.monitoringMode has no effect without spec.enableMonitoring: true; "
        "set enableMonitoring or remove monitoringMode"
    ]
    assert warnings("gpu", {"monitoringMode": "split"}) == expected
    assert warnings("gpu", {"monitoringMode": "split", "enableMonitoring": False}) == expected
    assert warnings("gpu", {"monitoringMode": "split", "enableMonitoring": True}) == []
    assert warnings("gpu", {"enableMonitoring": True}) == []


OVERLAPS = [
    # (our nodeSelector, the other's, overlap?)
    ({"a": "1"}, {"a": "1"}, True),
    ({"a": "1"}, {"a": "2"}, False),
    ({"a": "1"}, {"b": "1"}, True),  # a node may carry both labels
    ({"a": "1"}, None, True),  # the other runs on every amd64 node
    (None, None, True),
    ({"kubernetes.io/arch": "arm64"}, None, False),
    ({"a": "1", "b": "1"}, {"a": "1", "b": "2"}, False),
]


@pytest.mark.parametrize(("ours", "theirs", "overlap"), OVERLAPS)
def test_a_node_selector_overlapping_another_resource_of_the_kind_is_a_warning(
    ours: dict[str, str] | None, theirs: dict[str, str] | None, overlap: bool
) -> None:
    spec = {"nodeSelector": ours} if ours is not None else {}
    found = warnings("gpu", spec, other_selectors={"other": theirs})
    expected = (
        "spec.nodeSelector can select the same nodes as GpuDevicePlugin other, which runs two "
        "plugins per node; make the nodeSelectors of the two disjoint"
    )
    assert found == ([expected] if overlap else [])


def test_the_resource_itself_and_several_others_are_handled() -> None:
    others = {"sample": None, "b": {"x": "1"}, "a": {"x": "2"}}
    found = warnings("npu", {"nodeSelector": {"x": "1"}}, other_selectors=others)
    assert len(found) == 1
    assert "NpuDevicePlugin b," in found[0]


def test_required_node_selector_labels_count_in_the_overlap() -> None:
    # IAA adds kubernetes.io/arch: amd64 to any user selector, so arm64 is never selected.
    kind = KINDS["iaa"]
    assert rules.effective_selector(kind, {"a": "1"}) == {"a": "1", "kubernetes.io/arch": "amd64"}
    others = {"other": {"kubernetes.io/arch": "arm64"}}
    assert warnings("iaa", {"nodeSelector": {"a": "1"}}, other_selectors=others) == []


@pytest.mark.parametrize("kind", ["dsa", "iaa", "qat"])
def test_the_answer_does_not_say_whether_a_config_map_exists(kind: str) -> None:
    # Issue 14: anyone reaching the webhook port learned from this warning which ConfigMaps the
    # plugin namespace holds; the resource's status (Degraded) tells its owner instead.
    init = QAT_INIT if kind == "qat" else IDXD_INIT
    spec: dict[str, Any] = {"initImage": init, "provisioningConfig": "cfg"}
    if kind == "qat":
        spec["kernelVfDrivers"] = ["4xxxvf"]
    assert warnings(kind, spec) == []
    assert {field.name for field in dataclasses.fields(rules.Context)} == {"other_selectors"}


def test_warnings_fit_the_api_servers_limit() -> None:
    found = warnings(
        "gpu",
        {"monitoringMode": "single", "nodeSelector": {"a": "1"}},
        other_selectors={"x" * 63: None},
    )
    assert found
    assert all(len(warning) <= 256 for warning in found)


# Properties ------------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=20,
)
spec_keys = st.sampled_from(
    [
        "image",
        "initImage",
        "nodeSelector",
        "logLevel",
        "sharedDevNum",
        "allowIDs",
        "denyIDs",
        "preferredAllocationPolicy",
        "provisioningConfig",
        "kernelVfDrivers",
        "monitoringMode",
        "enableMonitoring",
        "driver",
        "mode",
        "tolerations",
    ]
)
images = st.sampled_from(["", GPU, image_of("qat"), f"intel-gpu-plugin@sha256:{HEX64}"]) | st.text(
    max_size=40
)
specs = st.dictionaries(spec_keys, json_values | images, max_size=6) | json_values
objects = st.builds(resource, specs) | json_values


@settings(max_examples=300, deadline=None)
@given(
    name=st.sampled_from(list(KINDS)),
    obj=objects,
    others=st.dictionaries(
        st.text(max_size=5),
        st.none() | st.dictionaries(st.text(max_size=5), st.text(max_size=5), max_size=2),
        max_size=3,
    ),
)
def test_validation_raises_nothing_but_rejected(name: str, obj: Any, others: Any) -> None:
    message = "invalid resource: "
    try:
        found = rules.validate(KINDS[name], obj, None, rules.Context(other_selectors=others))
    except errors.Rejected as rejected:
        message = rejected.message
        found = []
    assert message.startswith("invalid resource: ")
    assert all(isinstance(warning, str) for warning in found)


@settings(max_examples=300, deadline=None)
@given(name=st.sampled_from(list(KINDS)), obj=objects)
def test_defaulting_raises_nothing_but_rejected_and_is_idempotent(name: str, obj: Any) -> None:
    kind = KINDS[name]
    try:
        patch = rules.default(kind, obj)
    except errors.Rejected:
        return
    defaulted = review.apply(obj, patch)
    assert rules.default(kind, defaulted) == []
    assert defaulted["spec"]["image"]


# The opt-in registry allow-list (issue 14, point 9) ---------------------------------------

REGISTRIES = ("registry.example.com:5000", "docker.io/intel")


@pytest.mark.parametrize(
    ("image", "allowed"),
    [
        ("intel/intel-gpu-plugin:0.36.0", True),
        ("docker.io/intel/intel-gpu-plugin:0.36.0", True),
        ("index.docker.io/intel/intel-gpu-plugin:0.36.0", True),
        ("registry.example.com:5000/mirror/intel-gpu-plugin:0.36.0", True),
        (f"registry.example.com:5000/intel-gpu-plugin@sha256:{HEX64}", True),
        ("evil.example.com/intel/intel-gpu-plugin:0.36.0", False),
        ("docker.io/intelx/intel-gpu-plugin:0.36.0", False),
        ("registry.example.com/intel-gpu-plugin:0.36.0", False),
        ("registry.example.com:50001/intel-gpu-plugin:0.36.0", False),
    ],
)
def test_images_must_come_from_an_allowed_registry_when_asked(image: str, allowed: bool) -> None:
    obj = resource({"image": image})
    assert rules.validate(KINDS["gpu"], obj) == []  # any registry by default, as the reference
    context = (
        contextlib.nullcontext() if allowed else pytest.raises(errors.Rejected, match="allowed")
    )
    with context:
        rules.validate(KINDS["gpu"], obj, allowed_registries=REGISTRIES)


def test_the_init_image_is_checked_too() -> None:
    obj = resource(
        {
            "image": "docker.io/intel/intel-qat-plugin:0.36.0",
            "initImage": "evil.example.com/intel-qat-initcontainer:0.36.0",
        }
    )
    with pytest.raises(errors.Rejected, match=r"spec\.initImage .* not from an allowed registry"):
        rules.validate(KINDS["qat"], obj, allowed_registries=REGISTRIES)
