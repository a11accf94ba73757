"""The shipped monitoring files without a cluster: the dashboard is valid Grafana JSON that
reads only the operator's metrics, and the chart's toggles render exactly the objects of
``kubectl kustomize deployments/operator/monitoring`` (Helm's labels and the values' extra
labels aside), with a clear error when the ServiceMonitor has no metrics Service to scrape."""

from __future__ import annotations

import json
import pathlib
import subprocess
from collections.abc import Sequence
from typing import Any

import yaml
from monitoring_expressions import MONITORING, ROOT, dashboard, used_metrics

CHART = ROOT / "charts" / "intel-deviceplugin-operator"
NAMESPACE = "inteldeviceplugins-system"
HELM_LABELS = {
    "helm.sh/chart",
    "app.kubernetes.io/managed-by",
    "app.kubernetes.io/instance",
    "app.kubernetes.io/version",
}
ALL = (
    "monitoring.serviceMonitor.enabled=true",
    "monitoring.prometheusRule.enabled=true",
    "monitoring.dashboard.enabled=true",
)


def test_the_dashboard_is_a_grafana_dashboard_of_the_operators_metrics() -> None:
    board = dashboard()
    assert board["uid"] == "intel-deviceplugin-operator"
    assert board["title"]
    assert board["schemaVersion"] >= 36
    variables = {variable["name"]: variable for variable in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    panels = board["panels"]
    assert len({panel["id"] for panel in panels}) == len(panels)
    cells: set[tuple[int, int]] = set()
    for panel in panels:
        grid = panel["gridPos"]
        assert grid["x"] >= 0, panel["title"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        for x in range(grid["x"], grid["x"] + grid["w"]):
            for y in range(grid["y"], grid["y"] + grid["h"]):
                assert (x, y) not in cells, f"{panel['title']} overlaps another panel"
                cells.add((x, y))
        assert panel["datasource"]["uid"] == "${datasource}"
        assert panel["targets"], panel["title"]
        refs = [target["refId"] for target in panel["targets"]]
        assert len(set(refs)) == len(refs)
    titles = " | ".join(panel["title"] for panel in panels).lower()
    for needed in ("desired vs ready", "reconciles per second", "reconcile errors",
                   "reconcile latency", "queue depth", "webhook latency"):  # fmt: skip
        assert needed in titles


def test_the_alerts_and_dashboard_read_the_operators_own_names() -> None:
    """Names in the controller-runtime style (and ours); the real scrape checks they exist."""
    assert used_metrics() >= {
        "deviceplugin_operator_desired_pods",
        "deviceplugin_operator_ready_pods",
        "controller_runtime_reconcile_errors_total",
        "leader_election_master_status",
        "deviceplugin_operator_webhook_certificate_expiration_timestamp_seconds",
        "controller_runtime_webhook_latency_seconds_bucket",
        "workqueue_depth",
    }


def template(helm: pathlib.Path, *sets: str) -> subprocess.CompletedProcess[str]:
    command = [str(helm), "template", "idpo", str(CHART), "--namespace", NAMESPACE]
    for value in sets:
        command += ["--set", value]
    return subprocess.run(command, capture_output=True, text=True, check=False, timeout=120)


def monitoring_objects(text: str) -> dict[tuple[str, str], dict[str, Any]]:
    """The objects of deployments/operator/monitoring among rendered ones, by (kind, name)."""
    found = {}
    for document in yaml.safe_load_all(text):
        if not document:
            continue
        name = document["metadata"]["name"]
        if (
            document["kind"] in {"ServiceMonitor", "PrometheusRule"}
            or "metrics-scraper" in name
            or (document["kind"] == "ConfigMap" and name.endswith("dashboard"))
        ):
            found[(document["kind"], name)] = document
    return found


def _without(labels: dict[str, str], names: Sequence[str]) -> dict[str, str]:
    return {key: value for key, value in labels.items() if key not in names}


def test_the_charts_objects_are_the_kustomize_objects(helm: pathlib.Path) -> None:
    rendered = template(helm, *ALL)
    assert rendered.returncode == 0, rendered.stderr
    chart = monitoring_objects(rendered.stdout)
    built = subprocess.run(
        ["kubectl", "kustomize", str(MONITORING)], capture_output=True, text=True, check=True
    )
    kustomized = monitoring_objects(built.stdout)
    assert sorted(chart) == sorted(kustomized)
    assert len(chart) == 6
    for key, expected in kustomized.items():
        got = json.loads(json.dumps(chart[key]))
        labels = got["metadata"].get("labels") or {}
        got["metadata"]["labels"] = _without(labels, sorted(HELM_LABELS))
        assert got == expected, key


def test_the_values_set_interval_and_labels(helm: pathlib.Path) -> None:
    rendered = template(
        helm,
        *ALL,
        "monitoring.serviceMonitor.interval=15s",
        "monitoring.serviceMonitor.labels.release=kube-prometheus-stack",
        "monitoring.prometheusRule.labels.release=kube-prometheus-stack",
        "monitoring.dashboard.labels.grafana_dashboard=null",
        "monitoring.dashboard.labels.dashboards=intel",
        "namePrefix=idp-",
    )
    assert rendered.returncode == 0, rendered.stderr
    objects = monitoring_objects(rendered.stdout)
    monitor = objects[("ServiceMonitor", "idp-controller-manager-metrics-monitor")]
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    endpoint = monitor["spec"]["endpoints"][0]
    assert endpoint["interval"] == "15s"
    assert endpoint["authorization"]["credentials"]["name"] == "idp-metrics-scraper-token"
    rule = objects[("PrometheusRule", "idp-alerts")]
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    board = objects[("ConfigMap", "idp-dashboard")]
    assert board["metadata"]["labels"]["dashboards"] == "intel"
    assert "grafana_dashboard" not in board["metadata"]["labels"]
    assert json.loads(board["data"]["intel-deviceplugin-operator.json"]) == dashboard()
    binding = objects[("ClusterRoleBinding", "idp-metrics-scraper")]
    assert binding["roleRef"]["name"] == "idp-metrics-reader"
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "idp-metrics-scraper", "namespace": NAMESPACE}
    ]
    secret = objects[("Secret", "idp-metrics-scraper-token")]
    assert secret["metadata"]["annotations"] == {
        "kubernetes.io/service-account.name": "idp-metrics-scraper"
    }


def test_everything_is_off_by_default_and_plain_metrics_are_scraped_over_http(
    helm: pathlib.Path,
) -> None:
    rendered = template(helm)
    assert rendered.returncode == 0, rendered.stderr
    assert not monitoring_objects(rendered.stdout)
    plain = template(helm, "monitoring.serviceMonitor.enabled=true", "metrics.secure=false")
    assert plain.returncode == 0, plain.stderr
    (monitor,) = [
        obj
        for (kind, _), obj in monitoring_objects(plain.stdout).items()
        if kind == "ServiceMonitor"
    ]
    assert monitor["spec"]["endpoints"][0]["scheme"] == "http"
    assert "authorization" not in monitor["spec"]["endpoints"][0]


def test_a_service_monitor_without_metrics_fails_naming_the_values(helm: pathlib.Path) -> None:
    rendered = template(helm, "monitoring.serviceMonitor.enabled=true", "metrics.enabled=false")
    assert rendered.returncode != 0
    assert "monitoring.serviceMonitor.enabled" in rendered.stderr
    assert "metrics.enabled=true" in rendered.stderr
