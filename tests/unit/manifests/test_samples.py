"""The reference samples (spec §5.6) parse into our models and are all listed."""

from __future__ import annotations

import pathlib
from typing import Any

import pytest
import yaml

from deviceplugin_operator import devices
from deviceplugin_operator.api import fpga

KINDS = list(devices.KINDS)


def test_kustomization_lists_every_sample(deployments: pathlib.Path) -> None:
    samples = deployments / "samples"
    listed = yaml.safe_load((samples / "kustomization.yaml").read_text())["resources"]
    present = sorted(p.name for p in samples.glob("*.yaml") if p.name != "kustomization.yaml")
    assert sorted(listed) == present
    assert "deviceplugin_v1_npudeviceplugin.yaml" in listed


@pytest.mark.parametrize("name", KINDS)
def test_sample_parses_into_its_spec_model(name: str, samples: dict[str, dict[str, Any]]) -> None:
    sample = samples[name]
    kind = devices.KINDS[name]
    assert sample["kind"] == kind.kind
    assert sample["metadata"]["name"] == f"{name}deviceplugin-sample"
    spec = kind.spec_of(sample)
    # Every field of the sample is known to the model and survives a round trip.
    wire = spec.wire()
    if name == "dsa":
        assert wire.pop("driver") == "idxd"
    assert wire == sample["spec"]


def test_every_kind_has_a_sample(samples: dict[str, dict[str, Any]]) -> None:
    assert set(samples) == set(devices.KINDS)


def test_fpga_mappings_parse(sample_documents: list[dict[str, Any]]) -> None:
    models = {"AcceleratorFunction": fpga.AcceleratorFunction, "FpgaRegion": fpga.FpgaRegion}
    mappings = [doc for doc in sample_documents if doc["apiVersion"] == "fpga.intel.com/v2"]
    assert len(mappings) == 21
    for document in mappings:
        parsed = models[document["kind"]].model_validate(document)
        assert parsed.wire() == document
