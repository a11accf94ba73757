"""Image references, Kubernetes semantic versions and the upgrade policy (spec §4.7, §6.1 U1-U6)."""

from __future__ import annotations

import re

import pytest

from deviceplugin_operator import devices
from deviceplugin_operator.reconcile import images

SHA_A = "sha256:" + "0" * 63 + "a"
SHA_B = "sha256:" + "0" * 63 + "b"


@pytest.mark.parametrize(
    ("reference", "registry", "path", "tag", "digest"),
    [
        ("intel/intel-gpu-plugin:0.36.0", None, "intel/intel-gpu-plugin", "0.36.0", None),
        ("intel-gpu-plugin", None, "intel-gpu-plugin", None, None),
        (
            "docker.io/intel/intel-gpu-plugin:devel",
            "docker.io",
            "intel/intel-gpu-plugin",
            "devel",
            None,
        ),
        (
            "my.reg:5000/a/b/intel-gpu-plugin:0.36.0",
            "my.reg:5000",
            "a/b/intel-gpu-plugin",
            "0.36.0",
            None,
        ),
        ("host:5000/x/intel-dsa-plugin", "host:5000", "x/intel-dsa-plugin", None, None),
        ("localhost/intel-sgx-plugin:1.2.3", "localhost", "intel-sgx-plugin", "1.2.3", None),
        (
            "localhost:8080/intel-sgx-plugin:1.2.3",
            "localhost:8080",
            "intel-sgx-plugin",
            "1.2.3",
            None,
        ),
        (f"intel/intel-dsa-plugin@{SHA_A}", None, "intel/intel-dsa-plugin", None, SHA_A),
        (f"intel/intel-dsa-plugin:0.36.0@{SHA_A}", None, "intel/intel-dsa-plugin", "0.36.0", SHA_A),
        (
            f"r.io:443/intel/intel-dsa-plugin:v1@{SHA_B}",
            "r.io:443",
            "intel/intel-dsa-plugin",
            "v1",
            SHA_B,
        ),
        (
            "[::1]:5000/intel/intel-gpu-plugin:0.36.0",
            "[::1]:5000",
            "intel/intel-gpu-plugin",
            "0.36.0",
            None,
        ),
        ("Registry/intel-gpu-plugin", "Registry", "intel-gpu-plugin", None, None),
        ("a/b__c/d-e.f_g:T_a.g-1", None, "a/b__c/d-e.f_g", "T_a.g-1", None),
    ],
)
def test_parse(
    reference: str, registry: str | None, path: str, tag: str | None, digest: str | None
) -> None:
    ref = images.ImageRef.parse(reference)
    assert (ref.registry, ref.path, ref.tag, ref.digest) == (registry, path, tag, digest)
    assert str(ref) == reference
    assert ref.name == path.rsplit("/", 1)[-1]


@pytest.mark.parametrize(
    "reference",
    [
        "",
        "intel/Intel-gpu-plugin",
        "intel/intel-gpu-plugin:",
        "intel/intel-gpu-plugin:-tag",
        "intel/intel-gpu-plugin@sha256:abc",
        "intel/intel-gpu-plugin@" + SHA_A + "x",
        "intel//intel-gpu-plugin",
        "-bad.reg/x",
        "intel/intel-gpu-plugin:" + "t" * 129,
        "a" * 256,
    ],
)
def test_parse_rejects(reference: str) -> None:
    with pytest.raises(ValueError, match=r"image reference|repository name"):
        images.ImageRef.parse(reference)


def test_with_tag_keeps_registry_and_path_and_drops_digest() -> None:
    ref = images.ImageRef.parse(f"my.reg:5000/a/intel-gpu-plugin:0.1.0@{SHA_A}")
    assert str(ref.with_tag("0.36.0")) == "my.reg:5000/a/intel-gpu-plugin:0.36.0"
    assert ref.repository == "my.reg:5000/a/intel-gpu-plugin"


@pytest.mark.parametrize(
    ("text", "parts"),
    [
        ("0.36.0", (0, 36, 0, "", "")),
        ("v1.2.3", (1, 2, 3, "", "")),
        ("1.2.3-rc.1+build.5", (1, 2, 3, "rc.1", "build.5")),
    ],
)
def test_version_parse(text: str, parts: tuple[object, ...]) -> None:
    version = images.Version.parse(text)
    assert (
        version.major,
        version.minor,
        version.patch,
        version.pre_release,
        version.build_metadata,
    ) == parts


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("devel", 'could not parse "devel" as version'),
        ("latest", 'could not parse "latest" as version'),
        ("0.36", 'illegal version string "0.36"'),
        ("1.2.3.4", 'illegal version string "1.2.3.4"'),
        ("01.2.3", 'illegal zero-prefixed version component "01" in "01.2.3"'),
        ("1.02.3", 'illegal zero-prefixed version component "02" in "1.02.3"'),
        ("1.2.3-01", 'illegal zero-prefixed version component "01" in "1.2.3-01"'),
        ("1.2.3_x", 'could not parse pre-release/metadata (_x) in version "1.2.3_x"'),
    ],
)
def test_version_parse_errors_use_kubernetes_wording(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        images.Version.parse(text)


@pytest.mark.parametrize(
    ("lower", "higher"),
    [
        ("0.35.0", "0.36.0"),
        ("0.36.0-rc.1", "0.36.0"),
        ("0.36.0-alpha", "0.36.0-beta"),
        ("0.36.0-2", "0.36.0-10"),
        ("0.36.0-10", "0.36.0-alpha"),
        ("0.36.0-alpha", "0.36.0-alpha.1"),
        ("0.9.9", "0.10.0"),
        ("1.0.0", "10.0.0"),
    ],
)
def test_version_order(lower: str, higher: str) -> None:
    assert images.Version.parse(lower) < images.Version.parse(higher)
    assert not images.Version.parse(higher) < images.Version.parse(lower)
    assert images.Version.parse(lower) <= images.Version.parse(lower)


def test_build_metadata_does_not_order() -> None:
    assert images.Version.parse("0.36.0+a") <= images.Version.parse("0.36.0+b")
    assert images.Version.parse("0.36.0+b") <= images.Version.parse("0.36.0+a")


@pytest.mark.parametrize(
    ("name", "variable"),
    [
        ("intel-sgx-plugin", "INTEL_SGX_PLUGIN_SHA"),
        ("intel-idxd-config-initcontainer", "INTEL_IDXD_CONFIG_INITCONTAINER_SHA"),
    ],
)
def test_override_variable(name: str, variable: str) -> None:
    assert images.override_variable(name) == variable


def test_override_variables_of_every_kind_are_the_references() -> None:
    # The effective names of spec §1.3, which OLM bundles set.
    variables = set()
    for kind in devices.KINDS.values():
        variables.add(images.override_variable(kind.image))
        if kind.init_image:
            variables.add(images.override_variable(kind.init_image))
    assert variables == {
        "INTEL_DLB_PLUGIN_SHA",
        "INTEL_DLB_INITCONTAINER_SHA",
        "INTEL_DSA_PLUGIN_SHA",
        "INTEL_IDXD_CONFIG_INITCONTAINER_SHA",
        "INTEL_FPGA_PLUGIN_SHA",
        "INTEL_FPGA_INITCONTAINER_SHA",
        "INTEL_GPU_PLUGIN_SHA",
        "INTEL_GPU_INITCONTAINER_SHA",
        "INTEL_IAA_PLUGIN_SHA",
        "INTEL_NPU_PLUGIN_SHA",
        "INTEL_QAT_PLUGIN_SHA",
        "INTEL_QAT_INITCONTAINER_SHA",
        "INTEL_SGX_PLUGIN_SHA",
        "INTEL_SGX_INITCONTAINER_SHA",
    }


PLUGIN = "intel/intel-dsa-plugin"
INIT = "intel/intel-idxd-config-initcontainer"
PINNED = {
    "INTEL_DSA_PLUGIN_SHA": f"{PLUGIN}@{SHA_B}",
    "INTEL_IDXD_CONFIG_INITCONTAINER_SHA": f"{INIT}@{SHA_B}",
}
SAME = {
    "INTEL_DSA_PLUGIN_SHA": f"{PLUGIN}@{SHA_A}",
    "INTEL_IDXD_CONFIG_INITCONTAINER_SHA": f"{INIT}@{SHA_A}",
}


# U1-U6 of spec §6.1, on both images of a DSA resource.
@pytest.mark.parametrize(
    ("suffix", "overrides", "expected_suffix"),
    [
        (":0.35.0", {}, ":0.36.0"),
        (":0.36.0", {}, None),
        (":devel", {}, None),
        ("", {}, None),
        (f"@{SHA_A}", PINNED, f"@{SHA_B}"),
        (f"@{SHA_A}", SAME, None),
    ],
    ids=["U1", "U2", "U3", "U4", "U5", "U6"],
)
def test_upgrade_table(suffix: str, overrides: dict[str, str], expected_suffix: str | None) -> None:
    for repository in (PLUGIN, INIT):
        image = repository + suffix
        new, reason = images.upgraded_image(image, overrides=overrides)
        if expected_suffix is None:
            assert (new, reason) == (image, None)
        else:
            assert new == repository + expected_suffix
            assert reason is not None


@pytest.mark.parametrize(
    ("image", "expected"),
    [
        ("host:5000/x/intel-dsa-plugin:0.30.0", "host:5000/x/intel-dsa-plugin:0.36.0"),
        ("localhost:5000/intel-dsa-plugin:v0.35.1", "localhost:5000/intel-dsa-plugin:0.36.0"),
        ("intel/intel-dsa-plugin:0.36.0-rc.1", "intel/intel-dsa-plugin:0.36.0"),
        ("intel/intel-dsa-plugin:0.37.0", "intel/intel-dsa-plugin:0.37.0"),
        ("intel/intel-dsa-plugin:1.0.0", "intel/intel-dsa-plugin:1.0.0"),
        # Pinned by digest: the digest decides what runs, so the tag is not raised.
        (f"intel/intel-dsa-plugin:0.35.0@{SHA_A}", f"intel/intel-dsa-plugin:0.35.0@{SHA_A}"),
        ("not a reference:0.1.0", "not a reference:0.1.0"),
        ("", ""),
    ],
)
def test_min_version_policy(image: str, expected: str) -> None:
    assert images.upgraded_image(image)[0] == expected


def test_min_version_is_a_parameter() -> None:
    new, reason = images.upgraded_image("intel/intel-gpu-plugin:0.36.0", min_version="0.37.0")
    assert new == "intel/intel-gpu-plugin:0.37.0"
    assert reason == "Raised image intel/intel-gpu-plugin:0.36.0 to the minimum version 0.37.0"


def test_override_applies_across_registries_and_tags() -> None:
    pinned = f"registry.connect.redhat.com/intel/intel-dsa-plugin@{SHA_B}"
    overrides = {"INTEL_DSA_PLUGIN_SHA": pinned}
    for image in ("my.reg:5000/intel-dsa-plugin:0.36.0", "intel/intel-dsa-plugin:0.35.0"):
        new, reason = images.upgraded_image(image, overrides=overrides)
        assert new == pinned
        assert reason == f"Replaced image {image} by {pinned} from INTEL_DSA_PLUGIN_SHA"


def test_override_naming_another_image_is_ignored() -> None:
    overrides = {"INTEL_DSA_PLUGIN_SHA": f"intel/intel-gpu-plugin@{SHA_B}"}
    assert images.upgraded_image("intel/intel-dsa-plugin:0.36.0", overrides=overrides) == (
        "intel/intel-dsa-plugin:0.36.0",
        None,
    )
    # ... and the minimum version still applies.
    assert images.upgraded_image("intel/intel-dsa-plugin:0.35.0", overrides=overrides)[0] == (
        "intel/intel-dsa-plugin:0.36.0"
    )


def test_registry_host_is_never_taken_for_the_image() -> None:
    # The reference looked up LOCALHOST_SHA for localhost:5000/... images.
    overrides = {"LOCALHOST_SHA": f"localhost/intel-dsa-plugin@{SHA_B}"}
    assert (
        images.upgraded_image("localhost:5000/intel-dsa-plugin:0.36.0", overrides=overrides)[1]
        is None
    )


def test_upgraded_spec_changes_both_images_and_reports_why() -> None:
    kind = devices.KINDS["dsa"]
    spec = kind.spec.model_validate(
        {"image": f"{PLUGIN}:0.35.0", "initImage": f"{INIT}:0.35.0", "sharedDevNum": 3}
    )
    new, reasons = images.upgraded_spec(spec)
    assert new.image == f"{PLUGIN}:0.36.0"
    assert new.init_image == f"{INIT}:0.36.0"
    assert new.shared_dev_num == 3
    assert len(reasons) == 2
    assert spec.image == f"{PLUGIN}:0.35.0"


def test_upgraded_spec_without_init_image_field_or_changes() -> None:
    spec = devices.KINDS["npu"].spec.model_validate({"image": "intel/intel-npu-plugin:0.36.0"})
    assert images.upgraded_spec(spec) == (spec, ())
    empty = devices.KINDS["gpu"].spec()
    assert images.upgraded_spec(empty) == (empty, ())
