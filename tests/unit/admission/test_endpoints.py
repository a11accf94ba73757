"""Which webhooks exist for which enabled devices, and their configuration entries (spec §3.1,
§8 items 14-15)."""

from __future__ import annotations

import pytest

from deviceplugin_operator import devices
from deviceplugin_operator.admission import endpoints
from deviceplugin_operator.manifests import webhooks as manifest_webhooks

ALL = list(devices.KINDS)
SERVICE = {"service": {"name": "webhook-service", "namespace": "system", "path": "/x"}}


def test_every_device_brings_the_reference_names_and_paths() -> None:
    found = {(w.name, w.path, w.verb) for w in endpoints.webhooks(ALL)}
    expected = {
        ("fpga.mutator.webhooks.intel.com", "/pods", endpoints.Verb.MUTATE_FPGA_POD),
        ("sgx.mutator.webhooks.intel.com", "/mutate--v1-pod", endpoints.Verb.MUTATE_SGX_POD),
    }
    for dev in ALL:
        expected.add(
            (
                f"m{dev}deviceplugin.kb.io",
                f"/mutate-deviceplugin-intel-com-v1-{dev}deviceplugin",
                endpoints.Verb.DEFAULT,
            )
        )
        expected.add(
            (
                f"v{dev}deviceplugin.kb.io",
                f"/validate-deviceplugin-intel-com-v1-{dev}deviceplugin",
                endpoints.Verb.VALIDATE,
            )
        )
    assert found == expected


def test_webhooks_come_in_the_reference_file_order() -> None:
    names = [w.name for w in endpoints.webhooks(ALL)]
    assert names == sorted(names)
    assert names[0] == "fpga.mutator.webhooks.intel.com"


@pytest.mark.parametrize("dev", ALL)
def test_only_enabled_devices_have_webhooks(dev: str) -> None:
    found = endpoints.webhooks([dev])
    assert {w.device for w in found} == {dev}
    pods = {"sgx": 1, "fpga": 1}.get(dev, 0)
    assert len(found) == 2 + pods
    assert all(
        w.kind is devices.KINDS[dev] for w in found if w.verb.name in ("DEFAULT", "VALIDATE")
    )


def test_duplicates_and_no_devices() -> None:
    assert endpoints.webhooks([]) == []
    assert len(endpoints.webhooks(["gpu", "gpu"])) == 2


def test_resource_webhooks_are_the_reference_entries() -> None:
    mutating = next(w for w in endpoints.webhooks(["dlb"]) if w.mutating)
    assert mutating.registration(SERVICE) == {
        "admissionReviewVersions": ["v1"],
        "clientConfig": SERVICE,
        "failurePolicy": "Fail",
        "name": "mdlbdeviceplugin.kb.io",
        "rules": [
            {
                "apiGroups": ["deviceplugin.intel.com"],
                "apiVersions": ["v1"],
                "operations": ["CREATE", "UPDATE"],
                "resources": ["dlbdeviceplugins"],
            }
        ],
        "sideEffects": "None",
        "timeoutSeconds": 10,
    }


def test_pod_webhooks_fail_closed_behind_match_conditions() -> None:
    by_name = {w.name: w for w in endpoints.webhooks(["sgx", "fpga"])}
    sgx = by_name["sgx.mutator.webhooks.intel.com"].registration(SERVICE)
    assert sgx["failurePolicy"] == "Fail"
    assert sgx["reinvocationPolicy"] == "IfNeeded"
    assert sgx["rules"] == [
        {"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE"], "resources": ["pods"]}
    ]
    assert sgx["matchConditions"] == [
        {"name": "requests-sgx-resources", "expression": endpoints.REQUESTS_SGX}
    ]
    fpga = by_name["fpga.mutator.webhooks.intel.com"].registration(SERVICE)
    assert "reinvocationPolicy" not in fpga
    assert fpga["matchConditions"] == [
        {"name": "requests-fpga-resources", "expression": endpoints.REQUESTS_FPGA}
    ]
    assert all(not w.mutating for w in by_name.values() if w.name.startswith("v"))


def test_the_reference_failure_policy_can_be_chosen() -> None:
    chosen = endpoints.webhooks(ALL, pod_failure_policy="Ignore")
    policies = {w.name: w.failure_policy for w in chosen}
    assert policies["sgx.mutator.webhooks.intel.com"] == "Ignore"
    assert policies["fpga.mutator.webhooks.intel.com"] == "Ignore"
    assert policies["mgpudeviceplugin.kb.io"] == "Fail"


def test_match_conditions_test_containers_limits_and_requests_with_guards() -> None:
    assert endpoints.REQUESTS_SGX == (
        "object.spec.containers.exists(c, has(c.resources) && ("
        "(has(c.resources.limits) && "
        "c.resources.limits.exists(r, r.startsWith('sgx.intel.com/'))) || "
        "(has(c.resources.requests) && "
        "c.resources.requests.exists(r, r.startsWith('sgx.intel.com/')))))"
    )
    fpga = endpoints.REQUESTS_SGX.replace("sgx.", "fpga.")
    assert fpga == endpoints.REQUESTS_FPGA
    for expression in (endpoints.REQUESTS_SGX, endpoints.REQUESTS_FPGA):
        assert expression.count("(") == expression.count(")")
        assert "initContainers" not in expression


@pytest.mark.parametrize("chosen", [ALL, *([dev] for dev in ALL)], ids=["all", *ALL])
def test_the_generated_configurations_are_the_served_webhooks(chosen: list[str]) -> None:
    # The routes and the manifests both come from the device records: same names, paths,
    # policies and CEL conditions (the ones the envtest checks against a real API server).
    mutating, validating = manifest_webhooks.configurations(devices.KINDS[d] for d in chosen)
    served = endpoints.webhooks(chosen)
    for configuration, mutates in ((mutating, True), (validating, False)):
        expected = [
            w.registration(manifest_webhooks.service_client_config(w.path))
            for w in served
            if w.mutating == mutates
        ]
        assert configuration["webhooks"] == expected
