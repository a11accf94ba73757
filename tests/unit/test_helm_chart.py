"""The Helm chart's links to the generated manifests and its list of devices (no helm needed;
tests/envtest/test_helm.py renders it)."""

from __future__ import annotations

import json
import pathlib
import re
from typing import Any

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


def _schema() -> dict[str, Any]:
    schema: dict[str, Any] = json.loads((CHART / "values.schema.json").read_text())
    return schema


def _undescribed(values: Any, schema: dict[str, Any], path: str) -> list[str]:
    """Keys of ``values`` the schema has no property for, where it closes its objects."""
    missing = []
    if isinstance(values, dict) and "properties" in schema:
        for key, value in values.items():
            if key in schema["properties"]:
                missing += _undescribed(value, schema["properties"][key], f"{path}.{key}")
            elif schema.get("additionalProperties") is False:
                missing.append(f"{path}.{key}")
    return missing


def test_schema_describes_every_value_and_refuses_unknown_ones() -> None:
    """helm checks values against values.schema.json (tests/envtest/test_helm.py shows its
    messages); here: every default has its entry, and unknown top-level keys are refused."""
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    schema = _schema()
    assert schema["additionalProperties"] is False
    assert _undescribed(values, schema, "") == []
    assert set(schema["properties"]) - {"global"} == set(values)


def test_schema_enums_are_the_operators() -> None:
    properties = _schema()["properties"]
    assert properties["devices"]["items"]["enum"] == sorted(devices.KINDS)
    modes = properties["certificates"]["properties"]["mode"]["enum"]
    assert set(modes) == {"self-managed", "cert-manager", "mounted"}


def test_values_shared_with_other_templates_exist() -> None:
    """Keys the NFD rules and monitoring templates read: boolean toggles, off by default."""
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert values["nodeFeatureRule"] is False
    monitoring = values["monitoring"]
    assert monitoring["serviceMonitor"] == {"enabled": False, "interval": "30s", "labels": {}}
    assert monitoring["prometheusRule"] == {"enabled": False, "labels": {}}
    assert monitoring["dashboard"] == {"enabled": False, "labels": {"grafana_dashboard": "1"}}


def test_hardened_defaults_are_the_manifests() -> None:
    """securityContext and podSecurityContext default to the kustomize Deployment's."""
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    documents = yaml.safe_load_all((ROOT / "deployments/operator/manager/manager.yaml").read_text())
    (deployment,) = [doc for doc in documents if doc["kind"] == "Deployment"]
    pod = deployment["spec"]["template"]["spec"]
    assert values["podSecurityContext"] == pod["securityContext"]
    assert values["securityContext"] == pod["containers"][0]["securityContext"]
