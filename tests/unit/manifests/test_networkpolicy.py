"""The shipped NetworkPolicy (issue 14, points 2 and 8): the operator pods take connections on
the webhook port (from anywhere: the API server) and the metrics port (from namespaces
labelled for monitoring) only, in the default install and every overlay built on it."""

from __future__ import annotations

import pathlib
import shutil
import subprocess
from typing import Any

import pytest
import yaml

from deviceplugin_operator.manifests import generation, networkpolicy

OVERLAYS = ["default", "certmanager", "overlays/ocp", "device/gpu", "device/sgx"]


def test_the_policy_is_generated_and_listed_in_the_default_install(
    deployments: pathlib.Path,
) -> None:
    assert networkpolicy.PATH in generation.generated()
    default = yaml.safe_load((deployments / "default" / "kustomization.yaml").read_text())
    assert "network_policy.yaml" in default["resources"]


def test_only_the_webhook_and_metrics_ports_are_let_in(deployments: pathlib.Path) -> None:
    manager = next(
        doc
        for doc in yaml.safe_load_all((deployments / "manager" / "manager.yaml").read_text())
        if doc["kind"] == "Deployment"
    )
    pod = manager["spec"]["template"]
    ports = {port["name"]: port["containerPort"] for port in pod["spec"]["containers"][0]["ports"]}
    policy = networkpolicy.network_policy()["spec"]
    assert policy["podSelector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
    assert policy["policyTypes"] == ["Ingress"]
    opened = {
        port["port"]: rule.get("from") for rule in policy["ingress"] for port in rule["ports"]
    }
    assert set(opened) == {"webhook-server", "https"} <= set(ports)
    assert "health" not in opened
    assert opened["webhook-server"] is None, "the API server is no pod: from anywhere"
    assert opened["https"] == [{"namespaceSelector": {"matchLabels": {"metrics": "enabled"}}}]


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl renders the overlays")
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_install_with_the_manager_ships_the_policy(
    deployments: pathlib.Path, overlay: str
) -> None:
    rendered = subprocess.run(
        ["kubectl", "kustomize", str(deployments / overlay)],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout
    documents: list[dict[str, Any]] = [doc for doc in yaml.safe_load_all(rendered) if doc]
    (policy,) = [doc for doc in documents if doc["kind"] == "NetworkPolicy"]
    (deployment,) = [doc for doc in documents if doc["kind"] == "Deployment"]
    assert policy["metadata"]["namespace"] == deployment["metadata"]["namespace"]
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert policy["spec"]["podSelector"]["matchLabels"].items() <= labels.items()
    # The Events Role stays in "default" through every install's namespace.
    roles = {
        (doc["kind"], doc["metadata"]["name"]): doc["metadata"].get("namespace")
        for doc in documents
        if "events" in doc["metadata"]["name"]
    }
    assert set(roles.values()) == {"default"}, roles
    (binding,) = [
        doc for doc in documents if doc["metadata"]["name"].endswith("events-rolebinding")
    ]
    account = [doc for doc in documents if doc["kind"] == "ServiceAccount"]
    operator = next(
        doc for doc in account if doc["metadata"]["name"].endswith("controller-manager")
    )
    assert binding["subjects"] == [
        {
            "kind": "ServiceAccount",
            "name": operator["metadata"]["name"],
            "namespace": operator["metadata"]["namespace"],
        }
    ]
