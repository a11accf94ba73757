"""The Helm chart's links to the generated manifests and its list of devices (no helm needed;
tests/envtest/test_helm.py renders it)."""

from __future__ import annotations

import pathlib
import re

import yaml

from deviceplugin_operator import devices

ROOT = pathlib.Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "intel-deviceplugin-operator"


def test_crds_are_the_generated_ones() -> None:
    crds = CHART / "crds"
    assert crds.is_symlink()
    assert crds.resolve() == (ROOT / "deployments/operator/crd/bases").resolve()


def test_webhooks_come_from_the_generated_manifest() -> None:
    manifest = CHART / "files" / "webhook-manifests.yaml"
    assert manifest.is_symlink()
    assert manifest.resolve() == (ROOT / "deployments/operator/webhook/manifests.yaml").resolve()
    assert (
        '.Files.Get "files/webhook-manifests.yaml"'
        in (CHART / "templates" / "webhooks.yaml").read_text()
    )


def test_chart_knows_every_device() -> None:
    helpers = (CHART / "templates" / "_helpers.tpl").read_text()
    found = re.search(r'define "idpo.allDevices" -}}\n(.*)\n', helpers)
    assert found is not None
    assert found.group(1).split() == sorted(devices.KINDS)


def test_default_image_and_resources_are_the_manifests() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    documents = yaml.safe_load_all((ROOT / "deployments/operator/manager/manager.yaml").read_text())
    (deployment,) = [doc for doc in documents if doc["kind"] == "Deployment"]
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    image = values["image"]
    assert f"{image['repository']}:{image['tag']}" == container["image"]
    assert values["resources"] == container["resources"]
    assert values["replicas"] == deployment["spec"]["replicas"]
