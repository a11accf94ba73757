"""deployments/operator/monitoring: what Prometheus Operator and Grafana need to watch the operator.

``kubectl apply -k deployments/operator/monitoring`` (next to the default install) adds a
ServiceMonitor that scrapes the secure ``/metrics`` with the token of a ServiceAccount of its own
(bound to the ``metrics-reader`` ClusterRole: GET /metrics, nothing else), a PrometheusRule with
the alerts below and the Grafana dashboard as a ConfigMap for Grafana's dashboard sidecar. The
chart renders the same files (``charts/.../files/monitoring`` links to them; templates/
monitoring.yaml only renames them for the release).

The metrics server's certificate is self-signed (names: localhost, 127.0.0.1, the pod's host
name) unless ``--metrics-cert-path`` mounts one, and Prometheus scrapes pod IPs: the
ServiceMonitor skips verification (``insecureSkipVerify``), as kubebuilder's default does. The
token it sends grants only GET /metrics. docs/install.md says how to verify with a mounted one.

Every series is selected by ``job="intel-deviceplugin-operator"``: the ServiceMonitor takes the
job from the Service's ``manager`` label (``jobLabel``), so it does not depend on a name prefix.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from typing import Any

from deviceplugin_operator.manifests import rendering

DIRECTORY = "monitoring"
JOB = "intel-deviceplugin-operator"
SELECT = f'job="{JOB}"'
SCRAPER = "metrics-scraper"
"""The account whose token Prometheus sends (Secret ``<prefix>metrics-scraper-token``)."""
PREFIX = "intel-deviceplugins-"
NAMESPACE = "inteldeviceplugins-system"
DASHBOARD_UID = "intel-deviceplugin-operator"
RUNBOOK = "docs/install.md, section Monitoring, alert {alert}"


@dataclasses.dataclass(frozen=True)
class Alert:
    """One alerting rule and what the person paged does about it."""

    name: str
    expr: str
    duration: str
    severity: str
    summary: str
    description: str

    def rule(self) -> dict[str, Any]:
        return {
            "alert": self.name,
            "expr": self.expr,
            "for": self.duration,
            "labels": {"severity": self.severity},
            "annotations": {
                "summary": self.summary,
                "description": f"{self.description} Runbook: {RUNBOOK.format(alert=self.name)}.",
            },
        }


def _by(labels: str, metric: str) -> str:
    return f"max by ({labels}) ({metric}{{{SELECT}}})"


ALERTS: tuple[Alert, ...] = (
    Alert(
        name="IntelDevicePluginOperatorDown",
        expr=f"absent(up{{{SELECT}}} == 1)",
        duration="5m",
        severity="critical",
        summary="No intel-deviceplugin-operator replica has been scraped for 5 minutes.",
        description=(
            "No plugin DaemonSet is reconciled and, with failurePolicy Fail, creating or "
            "updating device plugin resources is refused. Check "
            "`kubectl -n inteldeviceplugins-system get deploy,pods -l "
            "control-plane=controller-manager`, the pods' events and logs "
            "(`kubectl -n inteldeviceplugins-system logs deploy/"
            "intel-deviceplugins-controller-manager`), and that the ServiceMonitor's target is "
            "up in Prometheus (a 401/403 there is the scraper's RBAC, not the operator)."
        ),
    ),
    Alert(
        name="IntelDevicePluginOperatorNoLeader",
        expr=f"{_by('namespace', 'leader_election_master_status')} < 1",
        duration="5m",
        severity="critical",
        summary="No replica of the operator in {{ $labels.namespace }} has led for 5 minutes.",
        description=(
            "Only the leader reconciles: plugin DaemonSets are not updated. Check the Lease "
            "(`kubectl -n {{ $labels.namespace }} get lease d1c7b6d5.intel.com -o yaml`: holder "
            "and renewTime; a holder that is none of the pods is another operator on the same "
            "Lease), the operator log for election errors, and its RBAC on leases (`kubectl auth "
            "can-i update leases -n {{ $labels.namespace }} --as=system:serviceaccount:"
            "{{ $labels.namespace }}:intel-deviceplugins-controller-manager`)."
        ),
    ),
    Alert(
        name="IntelDevicePluginNotReady",
        expr=(
            f"{_by('namespace, kind, name', 'deviceplugin_operator_desired_pods')}"
            f" - {_by('namespace, kind, name', 'deviceplugin_operator_ready_pods')} > 0"
        ),
        duration="15m",
        severity="warning",
        summary=(
            "{{ $labels.kind }} {{ $labels.name }}: {{ $value }} plugin pod(s) not ready "
            "for 15 minutes."
        ),
        description=(
            "Nodes selected by this resource have no working device plugin, so pods asking "
            "for its devices are not scheduled there. Check `kubectl get {{ $labels.kind }} "
            "{{ $labels.name }} -o yaml` (status.conditions: PluginCrashing, ImagePullFailed "
            "…), `deviceplugin-operator diagnose NODE {{ $labels.kind }}/{{ $labels.name }}` "
            "for a node without a ready plugin, and the plugin pods' events and logs "
            "(`kubectl get pods -A -l app=intel-<device>-plugin -o wide`)."
        ),
    ),
    Alert(
        name="IntelDevicePluginScheduledNowhere",
        expr=f"{_by('namespace, kind, name', 'deviceplugin_operator_desired_pods')} == 0",
        duration="30m",
        severity="info",
        summary="{{ $labels.kind }} {{ $labels.name }} selects no node.",
        description=(
            "Its DaemonSet wants no pod: no node matches spec.nodeSelector (by default the "
            "intel.feature.node.kubernetes.io/* labels that Node Feature Discovery sets from "
            "Intel's NodeFeatureRules). Check `deviceplugin-operator diagnose NODE "
            "{{ $labels.kind }}/{{ $labels.name }}` on a node with the device, and `kubectl "
            "get nodes --show-labels`; install the NodeFeatureRules if the labels are missing."
        ),
    ),
    Alert(
        name="IntelDevicePluginOperatorReconcileErrors",
        expr=(
            "sum by (namespace, controller) "
            f"(rate(controller_runtime_reconcile_errors_total{{{SELECT}}}[5m])) > 0"
        ),
        duration="15m",
        severity="warning",
        summary="The {{ $labels.controller }} controller has failed reconciles for 15 minutes.",
        description=(
            "Its resources are retried with back-off and may not match their spec. Check the "
            "operator log for `Reconcile failed` (`kubectl -n {{ $labels.namespace }} logs "
            "deploy/intel-deviceplugins-controller-manager | grep -i error`), the resources' "
            "Warning events (`kubectl get events -A --field-selector type=Warning`) and "
            "`deviceplugin-operator diagnose`; API errors show in "
            "rest_client_requests_total by code."
        ),
    ),
    Alert(
        name="IntelDevicePluginOperatorWebhookCertificateExpiring",
        expr=(
            "min by (namespace) "
            f"(deviceplugin_operator_webhook_certificate_expiration_timestamp_seconds{{{SELECT}}})"
            " - time() < 14 * 24 * 3600"
        ),
        duration="1h",
        severity="warning",
        summary=(
            "The admission webhooks' certificate in {{ $labels.namespace }} expires in less "
            "than 14 days."
        ),
        description=(
            "Renewal has failed: the self-managed certificate is renewed with a third of its "
            "year left, cert-manager renews 30 days ahead. When it expires the API server "
            "refuses every device plugin resource write. Self-managed: check the operator log "
            "for `Checking the webhook certificate failed` and the Secret "
            "`kubectl -n {{ $labels.namespace }} get secret "
            "intel-deviceplugins-webhook-server-cert`; cert-manager: `kubectl -n "
            "{{ $labels.namespace }} describe certificate`. A mounted Secret is reloaded "
            "within seconds of its change."
        ),
    ),
    Alert(
        name="IntelDevicePluginOperatorWebhookConnectionsReset",
        expr=(
            "sum by (namespace, pod) "
            f"(increase(deviceplugin_operator_webhook_connections_reset_total{{{SELECT}}}[10m]))"
            " > 0"
        ),
        duration="0m",
        severity="warning",
        summary=(
            "The admission webhook server {{ $labels.pod }} reset connections in the last "
            "10 minutes."
        ),
        description=(
            "Each reset is a webhook call the API server saw fail: with failurePolicy Fail a "
            "device plugin resource or an SGX/FPGA Pod was refused. The server serves 128 "
            "connections (64 from one address) and keeps 512 more waiting (256 from one "
            "address); resets mean more than that at once, usually many API server calls "
            "queued behind a paused or CPU-throttled replica, or a client flooding the port. "
            "Check the replica's CPU throttling and event-loop lag "
            "(deviceplugin_operator_event_loop_lag_seconds), "
            'deviceplugin_operator_webhook_connections{state="waiting"}, and who connects: '
            "`kubectl -n {{ $labels.namespace }} logs {{ $labels.pod }} | grep 'waiting room'` "
            "names the peer and the address with the most connections waiting."
        ),
    ),
)


def service_monitor() -> dict[str, Any]:
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "ServiceMonitor",
        "metadata": {"name": "controller-manager-metrics-monitor", "namespace": "system"},
        "spec": {
            "jobLabel": "manager",
            "selector": {
                # The webhook Service has the manager's labels and a port named https too.
                "matchLabels": {
                    "app.kubernetes.io/component": "metrics",
                    "manager": "intel-deviceplugin-operator",
                }
            },
            "endpoints": [
                {
                    "port": "https",
                    "scheme": "https",
                    "path": "/metrics",
                    "interval": "30s",
                    "authorization": {
                        "type": "Bearer",
                        "credentials": {"name": f"{SCRAPER}-token", "key": "token"},
                    },
                    "tlsConfig": {"insecureSkipVerify": True},
                }
            ],
        },
    }


def scraper() -> list[dict[str, Any]]:
    """The ServiceAccount whose token the ServiceMonitor sends, its token Secret and its
    binding to the metrics-reader ClusterRole of the default install."""
    return [
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {"name": SCRAPER, "namespace": "system"},
            "automountServiceAccountToken": False,
        },
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "type": "kubernetes.io/service-account-token",
            "metadata": {
                "name": f"{SCRAPER}-token",
                "namespace": "system",
                # The kustomization's replacement (the chart's template) sets the prefixed name.
                "annotations": {"kubernetes.io/service-account.name": SCRAPER},
            },
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": SCRAPER},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                # Not in this kustomization, so namePrefix leaves it alone: the default's name.
                "name": f"{PREFIX}metrics-reader",
            },
            "subjects": [{"kind": "ServiceAccount", "name": SCRAPER, "namespace": "system"}],
        },
    ]


def prometheus_rule() -> dict[str, Any]:
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {"name": "alerts", "namespace": "system"},
        "spec": {
            "groups": [
                {
                    "name": "intel-deviceplugin-operator",
                    "rules": [alert.rule() for alert in ALERTS],
                }
            ]
        },
    }


def rule_file() -> dict[str, Any]:
    """The PrometheusRule's spec as a Prometheus rule file (promtool's input)."""
    spec: dict[str, Any] = prometheus_rule()["spec"]
    return spec


# The dashboard -----------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Panel:
    title: str
    description: str
    targets: tuple[tuple[str, str], ...]
    """(PromQL, legend) pairs."""
    unit: str = "short"
    kind: str = "timeseries"
    width: int = 12


def _sel(extra: str = "") -> str:
    return "{" + ", ".join(filter(None, [SELECT, 'namespace=~"$namespace"', extra])) + "}"


def _rate(metric: str, by: str) -> str:
    return f"sum by ({by}) (rate({metric}{_sel()}[$__rate_interval]))"


def _quantile(q: float, metric: str, by: str) -> str:
    return f"histogram_quantile({q}, {_rate(metric + '_bucket', by + ', le')})"


def _p50_p99(metric: str, by: str) -> tuple[tuple[str, str], ...]:
    """The median and the 99th percentile of a histogram, one series per value of ``by``."""
    return tuple(
        (_quantile(q, metric, by), f"{{{{{by}}}}} {name}")
        for q, name in ((0.5, "p50"), (0.99, "p99"))
    )


PANELS: tuple[Panel, ...] = (
    Panel(
        "Desired vs ready plugin pods per resource",
        "Per device plugin resource: the pods its DaemonSet should run and those ready.",
        (
            (
                f"max by (kind, name) (deviceplugin_operator_desired_pods{_sel()})",
                "{{kind}}/{{name}} desired",
            ),
            (
                f"max by (kind, name) (deviceplugin_operator_ready_pods{_sel()})",
                "{{kind}}/{{name}} ready",
            ),
        ),
        width=16,
    ),
    Panel(
        "Resources not fully ready",
        "Device plugin resources with fewer ready pods than desired.",
        (
            (
                f"count((max by (kind, name) (deviceplugin_operator_desired_pods{_sel()})"
                f" - max by (kind, name) (deviceplugin_operator_ready_pods{_sel()})) > 0)"
                " or vector(0)",
                "not ready",
            ),
        ),
        kind="stat",
        width=8,
    ),
    Panel(
        "Reconciles per second by controller and result",
        "controller_runtime_reconcile_total: success, error, requeue, requeue_after.",
        (
            (
                _rate("controller_runtime_reconcile_total", "controller, result"),
                "{{controller}} {{result}}",
            ),
        ),
        unit="ops",
    ),
    Panel(
        "Reconcile errors per second",
        "Failed reconciles (alert: IntelDevicePluginOperatorReconcileErrors after 15 minutes).",
        (
            (
                _rate("controller_runtime_reconcile_errors_total", "controller"),
                "{{controller}}",
            ),
        ),
        unit="ops",
    ),
    Panel(
        "Reconcile latency (p50, p99)",
        "controller_runtime_reconcile_time_seconds.",
        _p50_p99("controller_runtime_reconcile_time_seconds", "controller"),
        unit="s",
    ),
    Panel(
        "Work queue depth",
        "Keys waiting per controller (workqueue_depth).",
        ((f"max by (name) (workqueue_depth{_sel()})", "{{name}}"),),
    ),
    Panel(
        "Work queue wait (p99)",
        "How long a key waits before a worker takes it.",
        ((_quantile(0.99, "workqueue_queue_duration_seconds", "name"), "{{name}}"),),
        unit="s",
    ),
    Panel(
        "Admission webhook latency (p50, p99)",
        "Per webhook path (controller_runtime_webhook_latency_seconds); the API server waits 10 s.",
        _p50_p99("controller_runtime_webhook_latency_seconds", "webhook"),
        unit="s",
    ),
    Panel(
        "Admission requests per second by code",
        "controller_runtime_webhook_requests_total; a denial is an HTTP 200 with allowed false.",
        (
            (
                _rate("controller_runtime_webhook_requests_total", "webhook, code"),
                "{{webhook}} {{code}}",
            ),
        ),
        unit="reqps",
    ),
    Panel(
        "Admission webhook connections",
        "Per replica: connections served, waiting for a slot (over the caps of 128, 64 from "
        "one address) and reset per second because the waiting room was full (alert: "
        "IntelDevicePluginOperatorWebhookConnectionsReset).",
        (
            (
                f"max by (pod, state) (deviceplugin_operator_webhook_connections{_sel()})",
                "{{pod}} {{state}}",
            ),
            (
                _rate("deviceplugin_operator_webhook_connections_reset_total", "pod"),
                "{{pod}} reset/s",
            ),
        ),
    ),
    Panel(
        "Leader",
        "leader_election_master_status per replica: exactly one should be 1.",
        ((f"max by (pod) (leader_election_master_status{_sel()})", "{{pod}}"),),
    ),
    Panel(
        "Webhook certificate: days left",
        "Until the admission webhooks' serving certificate expires.",
        (
            (
                "(min(deviceplugin_operator_webhook_certificate_expiration_timestamp_seconds"
                f"{_sel()}) - time()) / 86400",
                "days",
            ),
        ),
        kind="stat",
        unit="d",
        width=6,
    ),
    Panel(
        "API requests per second by code",
        "rest_client_requests_total of the operator's clients.",
        (
            (
                _rate("rest_client_requests_total", "code, method"),
                "{{method}} {{code}}",
            ),
        ),
        unit="reqps",
        width=10,
    ),
    Panel(
        "Memory per replica",
        "process_resident_memory_bytes.",
        ((f"max by (pod) (process_resident_memory_bytes{_sel()})", "{{pod}}"),),
        unit="bytes",
        width=8,
    ),
    Panel(
        "GC pauses and event-loop lag (p99)",
        "Where tail latency goes inside a replica: garbage-collection pauses per generation "
        "and how late the event loop runs what is due.",
        (
            (
                _quantile(0.99, "deviceplugin_operator_gc_pause_seconds", "pod, generation"),
                "{{pod}} GC gen {{generation}}",
            ),
            (
                _quantile(0.99, "deviceplugin_operator_event_loop_lag_seconds", "pod"),
                "{{pod}} loop lag",
            ),
        ),
        unit="s",
        width=24,
    ),
)


def dashboard() -> dict[str, Any]:
    datasource = {"type": "prometheus", "uid": "${datasource}"}
    panels = []
    x = y = row_height = 0
    for number, panel in enumerate(PANELS, start=1):
        height = 8
        if x + panel.width > 24:
            x, y = 0, y + row_height
        panels.append(
            {
                "id": number,
                "type": panel.kind,
                "title": panel.title,
                "description": panel.description,
                "datasource": datasource,
                "gridPos": {"x": x, "y": y, "w": panel.width, "h": height},
                "fieldConfig": {"defaults": {"unit": panel.unit}, "overrides": []},
                "options": {},
                "targets": [
                    {
                        "refId": chr(ord("A") + index),
                        "datasource": datasource,
                        "expr": expr,
                        "legendFormat": legend,
                    }
                    for index, (expr, legend) in enumerate(panel.targets)
                ],
            }
        )
        x += panel.width
        row_height = height
    return {
        "uid": DASHBOARD_UID,
        "title": "Intel device plugin operator",
        "description": "The Intel device plugin fleet (deployments/operator/monitoring).",
        "tags": ["intel", "device-plugins", "operator"],
        "timezone": "browser",
        "schemaVersion": 39,
        "version": 1,
        "editable": True,
        "refresh": "30s",
        "time": {"from": "now-6h", "to": "now"},
        "templating": {
            "list": [
                {
                    "name": "datasource",
                    "label": "Data source",
                    "type": "datasource",
                    "query": "prometheus",
                },
                {
                    "name": "namespace",
                    "label": "Namespace",
                    "type": "query",
                    "datasource": datasource,
                    "query": f"label_values(up{{{SELECT}}}, namespace)",
                    "refresh": 2,
                    "includeAll": True,
                    "multi": True,
                    "current": {"text": "All", "value": "$__all"},
                },
            ]
        },
        "panels": panels,
    }


def expressions() -> list[str]:
    """Every PromQL expression of the dashboard and the alerts."""
    return [alert.expr for alert in ALERTS] + [
        expr for panel in PANELS for expr, _ in panel.targets
    ]


KUSTOMIZATION = f"""\
# kubectl apply -k deployments/operator/monitoring, next to the default install (Prometheus
# Operator's CRDs must exist). Generated by make generate; docs/install.md, section Monitoring.
namespace: {NAMESPACE}
namePrefix: {PREFIX}
labels:
- pairs:
    app.kubernetes.io/name: intel-deviceplugin-operator
    app.kubernetes.io/part-of: intel-device-plugins
resources:
- service_monitor.yaml
- scraper.yaml
- prometheus_rule.yaml
configMapGenerator:
- name: dashboard
  files:
  - intel-deviceplugin-operator.json=dashboard.json
  options:
    disableNameSuffixHash: true
    labels:
      grafana_dashboard: "1"
replacements:
- source:
    kind: ServiceAccount
    name: {PREFIX}{SCRAPER}
  targets:
  - select:
      kind: Secret
      name: {PREFIX}{SCRAPER}-token
    fieldPaths:
    - metadata.annotations.[kubernetes.io/service-account.name]
- source:
    kind: Secret
    name: {PREFIX}{SCRAPER}-token
  targets:
  - select:
      kind: ServiceMonitor
    fieldPaths:
    - spec.endpoints.0.authorization.credentials.name
"""


def files() -> Mapping[str, str]:
    documents = scraper()
    return {
        f"{DIRECTORY}/kustomization.yaml": rendering.HEADER + KUSTOMIZATION,
        f"{DIRECTORY}/service_monitor.yaml": rendering.yaml_document(
            service_monitor(), start=False
        ),
        f"{DIRECTORY}/scraper.yaml": rendering.yaml_document(documents[0], start=False)
        + "".join(
            rendering.yaml_document(document)[len(rendering.HEADER) :] for document in documents[1:]
        ),
        f"{DIRECTORY}/prometheus_rule.yaml": rendering.yaml_document(
            prometheus_rule(), start=False
        ),
        f"{DIRECTORY}/dashboard.json": json.dumps(dashboard(), indent=2, sort_keys=True) + "\n",
    }
