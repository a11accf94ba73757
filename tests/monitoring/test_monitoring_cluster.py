"""The monitoring objects on the real control plane with Prometheus Operator's CRDs (from its Go
module): the API server accepts the ServiceMonitor and PrometheusRule of ``kubectl apply -k
deployments/operator/monitoring`` and of the chart (strict field validation; a typo is refused),
and the scraper account they ship can scrape the running operator's secure ``/metrics`` with
its token, where every metric an alert or a dashboard panel reads is served."""

from __future__ import annotations

import base64
import json
import pathlib
import shutil
import ssl
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from monitoring_expressions import MONITORING, ROOT, used_metrics
from prometheus_client import parser

import operators
import reviews
from clusters import TestCluster
from deviceplugin_operator.admission import endpoints
from polling import eventually

pytestmark = [pytest.mark.cluster]

CHART = ROOT / "charts" / "intel-deviceplugin-operator"
READER = "intel-deviceplugins-metrics-reader"
TOGGLES = (
    "monitoring.serviceMonitor.enabled=true",
    "monitoring.prometheusRule.enabled=true",
    "monitoring.dashboard.enabled=true",
)


@pytest.fixture(scope="module")
def crds(
    cluster: TestCluster,
    prometheus_operator_crds: list[pathlib.Path],
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    directory = tmp_path_factory.mktemp("prometheus-operator-crds")
    for crd in prometheus_operator_crds:
        shutil.copy(crd, directory / crd.name)
    cluster.install_crds(directory)
    cluster.install_crds(ROOT / "deployments/operator/crd/bases")


@pytest.fixture
def kustomized(namespace: str, tmp_path: pathlib.Path) -> list[dict[str, Any]]:
    """kubectl kustomize deployments/operator/monitoring, in the test's namespace."""
    overlay = tmp_path / "overlay"
    overlay.mkdir()
    (overlay / "monitoring").symlink_to(MONITORING)  # kustomize takes no absolute path
    (overlay / "kustomization.yaml").write_text(
        yaml.safe_dump({"namespace": namespace, "resources": ["monitoring"]})
    )
    built = subprocess.run(
        ["kubectl", "kustomize", str(overlay)], capture_output=True, text=True, check=True
    )
    return [doc for doc in yaml.safe_load_all(built.stdout) if doc]


def _apply(
    cluster: TestCluster, objects: list[dict[str, Any]], *flags: str
) -> subprocess.CompletedProcess[str]:
    return cluster.kubectl(
        "apply", "--server-side", "--field-manager=monitoring-test", *flags, "-f", "-",
        input=yaml.safe_dump_all(objects), check=False,
    )  # fmt: skip


@pytest.fixture
def cleanup(cluster: TestCluster) -> Iterator[list[str]]:
    """Cluster-scoped objects (kind/name) to delete after the test."""
    names: list[str] = []
    yield names
    for name in names:
        cluster.kubectl("delete", name, "--ignore-not-found", check=False)


def test_the_api_server_accepts_the_kustomize_objects_and_refuses_a_typo(
    cluster: TestCluster, crds: None, kustomized: list[dict[str, Any]], cleanup: list[str]
) -> None:
    kinds = sorted(obj["kind"] for obj in kustomized)
    assert kinds == [
        "ClusterRoleBinding",
        "ConfigMap",
        "PrometheusRule",
        "Secret",
        "ServiceAccount",
        "ServiceMonitor",
    ]
    cleanup.append("clusterrolebinding/intel-deviceplugins-metrics-scraper")
    applied = _apply(cluster, kustomized)
    assert applied.returncode == 0, applied.stderr
    (monitor,) = [obj for obj in kustomized if obj["kind"] == "ServiceMonitor"]
    stored = cluster.kubectl_json(
        "get", "servicemonitor", monitor["metadata"]["name"], "-n", monitor["metadata"]["namespace"]
    )
    assert (
        stored["spec"]["endpoints"][0]["authorization"]["credentials"]["name"]
        == "intel-deviceplugins-metrics-scraper-token"
    )

    typo = json.loads(json.dumps(monitor))
    typo["metadata"]["name"] = "typo"
    typo["spec"]["endpoints"][0]["tlsConfig"]["insecureSkipVerfy"] = True
    refused = _apply(cluster, [typo])
    assert refused.returncode != 0
    assert "insecureSkipVerfy" in refused.stderr


def test_the_api_server_accepts_the_charts_objects(
    cluster: TestCluster, crds: None, namespace: str, cleanup: list[str], helm: pathlib.Path
) -> None:
    rendered = subprocess.run(
        [
            str(helm), "template", "monitoring-test", str(CHART), "--namespace", namespace,
            "--set", "namePrefix=montest-",
            *(arg for toggle in TOGGLES for arg in ("--set", toggle)),
            "--show-only", "templates/monitoring.yaml",
        ],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    objects = [doc for doc in yaml.safe_load_all(rendered) if doc]
    assert {obj["kind"] for obj in objects} >= {"ServiceMonitor", "PrometheusRule", "ConfigMap"}
    cleanup.append("clusterrolebinding/montest-metrics-scraper")
    applied = _apply(cluster, objects)
    assert applied.returncode == 0, applied.stderr


def _token(cluster: TestCluster, namespace: str) -> str:
    def issued() -> str | None:
        secret = cluster.kubectl_json(
            "get", "secret", "intel-deviceplugins-metrics-scraper-token", "-n", namespace
        )
        token = (secret.get("data") or {}).get("token")
        return base64.b64decode(token).decode() if token else None

    token = eventually(issued, timeout=30, what="the token controller to fill the scraper's Secret")
    assert isinstance(token, str)
    return token


def _scrape(port: int, token: str | None) -> tuple[int, str]:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # the self-signed certificate: insecureSkipVerify
    request = urllib.request.Request(f"https://127.0.0.1:{port}/metrics")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, context=context, timeout=10) as reply:
            return reply.status, reply.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, ""


def _review(port: int, path: str) -> int:
    review = reviews.gpu_plugin_create("scraped", str(uuid.uuid4()))
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    request = urllib.request.Request(
        f"https://127.0.0.1:{port}{path}",
        data=json.dumps(review).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, context=context, timeout=10) as reply:
        return int(reply.status)


def test_the_scraper_token_reads_every_metric_the_alerts_and_dashboard_use(
    cluster: TestCluster,
    crds: None,
    namespace: str,
    kustomized: list[dict[str, Any]],
    cleanup: list[str],
    tmp_path: pathlib.Path,
) -> None:
    default = subprocess.run(
        ["kubectl", "kustomize", str(ROOT / "deployments/operator/default")],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    (reader,) = [
        doc for doc in yaml.safe_load_all(default)
        if doc and doc["kind"] == "ClusterRole" and doc["metadata"]["name"] == READER
    ]  # fmt: skip
    cleanup.append("clusterrolebinding/intel-deviceplugins-metrics-scraper")
    assert _apply(cluster, [reader, *kustomized]).returncode == 0
    token = _token(cluster, namespace)

    name = f"mon-{uuid.uuid4().hex[:8]}"
    cleanup.append(f"gpudeviceplugin/{name}")
    operator = operators.start_operator(
        cluster.kubeconfig, namespace, tmp_path / "operator.log", "--metrics-secure",
        devices=("gpu",), leader_elect=[], webhook_prefix=f"{namespace}-",
    )  # fmt: skip
    with operator:
        try:
            operator.wait_ready(timeout=120)
        except AssertionError as error:
            raise AssertionError(f"{error}\n{operator.tail(40)}") from None
        cluster.kubectl(
            "apply", "-f", "-",
            input=json.dumps({
                "apiVersion": "deviceplugin.intel.com/v1", "kind": "GpuDevicePlugin",
                "metadata": {"name": name}, "spec": {"image": "intel/intel-gpu-plugin:0.36.0"},
            }),
        )  # fmt: skip
        (validate,) = [w for w in endpoints.webhooks(["gpu"]) if w.verb is endpoints.Verb.VALIDATE]
        assert _review(operator.webhook_port, validate.path) == 200

        assert _scrape(operator.metrics_port, None)[0] == 401
        assert _scrape(operator.metrics_port, "not-a-token")[0] == 401

        def scraped() -> dict[str, dict[frozenset[tuple[str, str]], float]] | None:
            status, body = _scrape(operator.metrics_port, token)
            assert status == 200, f"the scraper's token got {status}"
            samples: dict[str, dict[frozenset[tuple[str, str]], float]] = {}
            for family in parser.text_string_to_metric_families(body):
                for sample in family.samples:
                    samples.setdefault(sample.name, {})[frozenset(sample.labels.items())] = (
                        sample.value
                    )
            desired = samples.get("deviceplugin_operator_desired_pods", {})
            if not any(("name", name) in labels for labels in desired):
                return None
            return samples

        samples = eventually(scraped, timeout=60, what=f"{name}'s pod gauges in a scrape")
        assert samples is not None
        missing = sorted(metric for metric in used_metrics() if not samples.get(metric))
        assert not missing, f"used by an alert or the dashboard but not served: {missing}"
        assert max(samples["leader_election_master_status"].values()) == 1
        (expiry,) = samples[
            "deviceplugin_operator_webhook_certificate_expiration_timestamp_seconds"
        ].values()
        assert 300 * 86400 < expiry - time.time() < 366 * 86400
        assert (
            samples["controller_runtime_webhook_requests_total"][
                frozenset({("code", "200"), ("webhook", validate.path)})
            ]
            >= 1
        )
        assert not operator.problems(), operator.problems()
