"""The generated webhook configurations: the Pod mutators' entries, their CEL conditions, and
which devices bring which entries (default install, per-device overlays)."""

from __future__ import annotations

import pathlib
from typing import Any

import pytest
import yaml

from deviceplugin_operator import devices
from deviceplugin_operator.manifests import overlays, webhooks

DEVICES = sorted(devices.KINDS)
POD_MUTATORS = {"fpga": "fpga.mutator.webhooks.intel.com", "sgx": "sgx.mutator.webhooks.intel.com"}
PODS_CREATE = [
    {"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE"], "resources": ["pods"]}
]


def names(configuration: dict[str, Any]) -> list[str]:
    return [hook["name"] for hook in configuration["webhooks"]]


def pod_hook(device: str) -> dict[str, Any]:
    mutating, _ = webhooks.configurations([devices.KINDS[device]])
    (hook,) = (h for h in mutating["webhooks"] if h["name"] == POD_MUTATORS[device])
    return hook


def test_the_fpga_pod_webhook_is_the_references_behind_a_match_condition() -> None:
    hook = pod_hook("fpga")
    assert hook["clientConfig"] == {
        "service": {"name": "webhook-service", "namespace": "system", "path": "/pods"}
    }
    assert hook["rules"] == PODS_CREATE
    assert hook["failurePolicy"] == "Fail"
    assert hook["sideEffects"] == "None"
    assert hook["admissionReviewVersions"] == ["v1"]
    assert "reinvocationPolicy" not in hook  # the reference's: none for FPGA
    (condition,) = hook["matchConditions"]
    assert condition["name"] == "requests-fpga-resources"
    expression = condition["expression"]
    assert expression == (
        "object.spec.containers.exists(c, has(c.resources) && ("
        "(has(c.resources.limits) && "
        "c.resources.limits.exists(r, r.startsWith('fpga.intel.com/'))) || "
        "(has(c.resources.requests) && "
        "c.resources.requests.exists(r, r.startsWith('fpga.intel.com/')))))"
    )


def test_the_sgx_pod_webhook_is_unchanged_but_for_its_domain() -> None:
    sgx, fpga = pod_hook("sgx"), pod_hook("fpga")
    assert sgx["reinvocationPolicy"] == "IfNeeded"
    assert sgx["clientConfig"]["service"]["path"] == "/mutate--v1-pod"
    assert sgx["matchConditions"][0]["expression"] == fpga["matchConditions"][0][
        "expression"
    ].replace("fpga.intel.com/", "sgx.intel.com/")


@pytest.mark.parametrize("device", DEVICES)
def test_only_a_device_with_a_pod_mutator_brings_one(device: str) -> None:
    mutating, validating = webhooks.configurations([devices.KINDS[device]])
    singular = devices.KINDS[device].singular
    expected = sorted(
        [f"m{singular}.kb.io", *([POD_MUTATORS[device]] if device in POD_MUTATORS else [])]
    )
    assert names(mutating) == expected
    assert names(validating) == [f"v{singular}.kb.io"]
    assert all(not hook.get("matchConditions") for hook in validating["webhooks"])


def test_every_configuration_is_in_name_order_as_the_reference() -> None:
    for configuration in webhooks.configurations(devices.KINDS.values()):
        assert names(configuration) == sorted(names(configuration))
    mutating, _ = webhooks.configurations(devices.KINDS.values())
    assert names(mutating)[0] == "fpga.mutator.webhooks.intel.com"
    assert names(mutating)[-1] == "sgx.mutator.webhooks.intel.com"


def test_the_generated_file_has_both_pod_mutators(deployments: pathlib.Path) -> None:
    documents = list(yaml.safe_load_all((deployments / webhooks.MANIFEST).read_text()))
    mutating = next(d for d in documents if d and d["kind"] == "MutatingWebhookConfiguration")
    assert set(POD_MUTATORS.values()) <= set(names(mutating))


@pytest.mark.parametrize("device", DEVICES)
def test_an_overlay_keeps_the_fpga_pod_webhook_only_for_fpga(device: str) -> None:
    kustomization = overlays.kustomization(device)
    (patch,) = (
        yaml.safe_load(p["patch"])
        for p in kustomization["patches"]
        if p["target"]["kind"] == "MutatingWebhookConfiguration"
    )
    removed = {op["value"] for op in patch if op["op"] == "test"}
    assert ("fpga.mutator.webhooks.intel.com" in removed) == (device != "fpga")
    assert ("sgx.mutator.webhooks.intel.com" in removed) == (device != "sgx")


def test_a_url_client_config_and_prefix_reach_every_entry() -> None:
    def url(path: str) -> dict[str, Any]:
        return {"url": f"https://127.0.0.1:9443{path}"}

    mutating, validating = webhooks.configurations([devices.KINDS["fpga"]], url, prefix="p-")
    assert mutating["metadata"]["name"] == "p-" + webhooks.MUTATING_NAME
    assert validating["metadata"]["name"] == "p-" + webhooks.VALIDATING_NAME
    urls = {h["name"]: h["clientConfig"]["url"] for h in mutating["webhooks"]}
    assert urls["fpga.mutator.webhooks.intel.com"] == "https://127.0.0.1:9443/pods"


@pytest.mark.parametrize("device", sorted(POD_MUTATORS))
def test_pod_mutators_see_every_namespace_as_the_references(device: str) -> None:
    # The operator's own namespace included: its matchConditions keep the operator's and the
    # plugins' pods (which ask for no device resource) away, not a namespaceSelector.
    assert "namespaceSelector" not in pod_hook(device)
    mutating, _ = webhooks.configurations([devices.KINDS[device]])
    assert all("namespaceSelector" not in h for h in mutating["webhooks"])
