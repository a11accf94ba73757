"""Node specs of the local control plane."""

import pytest

from localcluster import errors, nodes


def test_intel_nodes_carry_every_feature_label() -> None:
    specs = nodes.intel_nodes(2)
    assert [spec.name for spec in specs] == ["intel-node-0", "intel-node-1"]
    for feature in ("gpu", "qat", "sgx", "dsa", "iaa", "dlb", "npu", "fpga-arria10"):
        assert specs[0].labels[f"intel.feature.node.kubernetes.io/{feature}"] == "true"


def test_parse_spec_reads_name_and_labels() -> None:
    spec = nodes.parse_spec("gpu-only:intel.feature.node.kubernetes.io/gpu=true,zone=a,bare")
    assert spec.name == "gpu-only"
    assert spec.labels == {
        "intel.feature.node.kubernetes.io/gpu": "true",
        "zone": "a",
        "bare": "true",
    }
    assert nodes.parse_spec("plain") == nodes.NodeSpec("plain", {})


def test_parse_spec_without_name_is_an_error() -> None:
    with pytest.raises(errors.ClusterError, match="has no name"):
        nodes.parse_spec(":a=b")


def test_manifest_keeps_standard_labels_and_adds_the_spec_ones() -> None:
    manifest = nodes.manifest(nodes.NodeSpec("n1", {"x": "y"}))
    labels = manifest["metadata"]["labels"]
    assert labels["kubernetes.io/arch"] == "amd64"
    assert labels["kubernetes.io/hostname"] == "n1"
    assert labels["x"] == "y"
    assert "taints" not in manifest.get("spec", {})


def test_manifest_advertises_the_spec_resources_besides_the_standard_ones() -> None:
    manifest = nodes.manifest(nodes.NodeSpec("n1", resources={"gpu.intel.com/i915": "2"}))
    for field in ("capacity", "allocatable"):
        advertised = manifest["status"][field]
        assert advertised["gpu.intel.com/i915"] == "2"
        assert advertised["pods"] == "110"
    assert "gpu.intel.com/i915" not in nodes.manifest(nodes.NodeSpec("n2"))["status"]["capacity"]
