"""The self-managed serving certificate for the names the shipped installs give the operator.

The names are read from the kustomize tree and the chart (no kubectl or helm needed;
tests/envtest/test_helm.py checks the same on what they render), and turned into options the
way a pod's arguments and environment are: the certificate must be issued, name the webhook
Service as the API server calls it, and verify against its CA.
"""

from __future__ import annotations

import datetime
import pathlib
import re
from collections.abc import Mapping, Sequence
from typing import Any

import pytest
import yaml

from certificate_checks import assert_serves
from deviceplugin_operator import cli, manager
from deviceplugin_operator.controller import certificates

ROOT = pathlib.Path(__file__).resolve().parents[2]
OPERATOR = ROOT / "deployments" / "operator"
CHART = ROOT / "charts" / "intel-deviceplugin-operator"
NOW = datetime.datetime(2026, 11, 28, tzinfo=datetime.UTC)


def pod_options(args: Sequence[str], namespace: str) -> manager.Options:
    """Options of a manager pod with ``args`` in ``namespace`` (its fieldRef variables)."""
    parsed = cli._parser().parse_args(["run", *args])
    return cli.build_options(
        parsed, {"POD_NAMESPACE": namespace, "DEVICEPLUGIN_NAMESPACE": namespace}
    )


def webhook_service_of(manifests: pathlib.Path) -> str:
    """The Service name both generated webhook configurations call (one for all)."""
    names = {
        hook["clientConfig"]["service"]["name"]
        for document in yaml.safe_load_all(manifests.read_text())
        for hook in document["webhooks"]
    }
    (name,) = names
    return str(name)


def manager_container() -> Mapping[str, Any]:
    documents = yaml.safe_load_all((OPERATOR / "manager" / "manager.yaml").read_text())
    (deployment,) = [doc for doc in documents if doc["kind"] == "Deployment"]
    container: Mapping[str, Any] = deployment["spec"]["template"]["spec"]["containers"][0]
    return container


def assert_issued_for(options: manager.Options, service: str) -> tuple[str, ...]:
    hosts = manager.webhook_hosts(options)
    assert f"{service}.{options.operator_namespace}.svc" in hosts, "the API server's name"
    assert_serves(certificates.issue(hosts, NOW), hosts, NOW)
    return hosts


def test_kustomize_default_install() -> None:
    default = yaml.safe_load((OPERATOR / "default" / "kustomization.yaml").read_text())
    namespace, prefix = default["namespace"], default["namePrefix"]
    container = manager_container()
    assert {
        "name": "POD_NAMESPACE",
        "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}},
    } in container["env"]
    options = pod_options(container["args"], namespace)
    service = prefix + webhook_service_of(OPERATOR / "webhook" / "manifests.yaml")
    assert options.webhook_service == service
    hosts = assert_issued_for(options, service)
    # The case that crashed: 65 characters, one more than a common name may have.
    assert len(f"{service}.{namespace}.svc") > certificates.MAX_COMMON_NAME
    assert hosts == (
        service,
        f"{service}.{namespace}",
        f"{service}.{namespace}.svc",
        f"{service}.{namespace}.svc.cluster.local",
    )


def chart_service_name(prefix: str) -> str:
    """The webhook Service of templates/services.yaml with ``namePrefix`` = ``prefix``."""
    template = (CHART / "templates" / "services.yaml").read_text()
    found = re.search(r"^  name: \{\{ \$prefix \}\}(webhook-service)$", template, re.MULTILINE)
    assert found is not None
    return prefix + found.group(1)


def chart_args(prefix: str) -> list[str]:
    """What templates/deployment.yaml passes about the webhook names for ``prefix``."""
    template = (CHART / "templates" / "deployment.yaml").read_text()
    assert '{{- if ne $prefix "intel-deviceplugins-" }}' in template
    assert "- --webhook-service={{ $prefix }}webhook-service" in template
    if prefix == "intel-deviceplugins-":
        return []
    return [
        f"--webhook-service={prefix}webhook-service",
        f"--webhook-configuration-prefix={prefix}",
    ]


@pytest.mark.parametrize(
    "namespace",
    ["intel-deviceplugin-operator", "inteldeviceplugins-system", "n" * 25, "n" * 63],
    ids=["release-name", "kustomize-namespace", "25-chars", "63-chars"],
)
def test_chart_default_values_in_any_release_namespace(namespace: str) -> None:
    prefix = yaml.safe_load((CHART / "values.yaml").read_text())["namePrefix"]
    options = pod_options(chart_args(prefix), namespace)
    service = chart_service_name(prefix)
    assert options.webhook_service == service
    hosts = assert_issued_for(options, service)
    assert f"{service}.{namespace}.svc.cluster.local" in hosts


def test_chart_with_the_longest_prefix_and_namespace() -> None:
    # A Service name is one DNS label (63), a namespace too: every full name still fits.
    prefix = "p" * (63 - len("webhook-service"))
    options = pod_options(chart_args(prefix), "n" * 63)
    hosts = assert_issued_for(options, chart_service_name(prefix))
    assert len(hosts) == 4
