"""The shipped alerts with promtool (built from the Prometheus Go module): ``promtool check
rules`` on the PrometheusRule's groups and on every dashboard query, and ``promtool test rules``
with series that must fire each alert (labels and rendered annotations exact) and series that
must not."""

from __future__ import annotations

import pathlib
import re
import subprocess
from typing import Any

import pytest
import yaml
from monitoring_expressions import alerts, metric_names, panel_expressions, prometheus_rule

from deviceplugin_operator import listening

JOB = 'job="intel-deviceplugin-operator"'
NS = "inteldeviceplugins-system"


def promtool_run(promtool: pathlib.Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(promtool), *args], capture_output=True, text=True, check=False, timeout=120
    )


@pytest.fixture
def rule_file(tmp_path: pathlib.Path) -> pathlib.Path:
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump(prometheus_rule()["spec"]))
    return path


def test_the_rules_pass_promtool_check(promtool: pathlib.Path, rule_file: pathlib.Path) -> None:
    checked = promtool_run(promtool, "check", "rules", str(rule_file))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {len(alerts())} rules found" in checked.stdout


def test_promtool_check_fails_on_a_broken_rule(
    promtool: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text(
        yaml.safe_dump({"groups": [{"name": "g", "rules": [{"alert": "A", "expr": "sum by (("}]}]})
    )
    assert promtool_run(promtool, "check", "rules", str(broken)).returncode != 0


def test_every_dashboard_query_parses(promtool: pathlib.Path, tmp_path: pathlib.Path) -> None:
    queries = panel_expressions()
    assert len(queries) >= 12
    synthetic = {
        "groups": [
            {
                "name": "dashboard",
                "rules": [
                    {"record": f"dashboard:panel_{number}", "expr": expr}
                    for number, (_, expr) in enumerate(queries)
                ],
            }
        ]
    }
    path = tmp_path / "dashboard-rules.yaml"
    path.write_text(yaml.safe_dump(synthetic))
    checked = promtool_run(promtool, "check", "rules", str(path))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    for title, expr in queries:
        assert metric_names(expr), f"{title}: {expr} reads no metric of the operator"


def test_every_alert_says_what_to_check() -> None:
    for rule in alerts():
        annotations = rule["annotations"]
        assert rule["labels"]["severity"] in {"critical", "warning", "info"}
        assert annotations["summary"]
        assert "kubectl" in annotations["description"], rule["alert"]
        assert f"alert {rule['alert']}" in annotations["description"], rule["alert"]


def test_the_connection_alert_states_the_servers_limits() -> None:
    # The manifests do not import listening (it brings aiohttp to every generation run).
    (rule,) = [r for r in alerts() if r["alert"].endswith("WebhookConnectionsReset")]
    limits = listening.LIMITS
    assert (
        f"serves {limits.max_connections} connections ({limits.max_per_peer} from one address)"
        f" and keeps {limits.max_waiting} more waiting ({limits.max_waiting // 2} from one"
    ) in " ".join(rule["annotations"]["description"].split())


def _render(text: str, labels: dict[str, str], value: str) -> str:
    """The annotations' templates as Prometheus renders them ($labels.x and $value only)."""
    text = re.sub(r"\{\{ \$labels\.(\w+) \}\}", lambda m: labels[m.group(1)], text)
    return text.replace("{{ $value }}", value)


def _expected(alert: str, labels: dict[str, str], value: str = "") -> dict[str, Any]:
    (rule,) = [rule for rule in alerts() if rule["alert"] == alert]
    return {
        "exp_labels": {**labels, **rule["labels"]},
        "exp_annotations": {
            key: _render(text, labels, value) for key, text in rule["annotations"].items()
        },
    }


def _fires(alert: str, at: str, labels: dict[str, str], value: str = "") -> dict[str, Any]:
    return {"eval_time": at, "alertname": alert, "exp_alerts": [_expected(alert, labels, value)]}


def _silent(alert: str, at: str) -> dict[str, Any]:
    return {"eval_time": at, "alertname": alert, "exp_alerts": []}


def _series(metric: str, values: str, **labels: str) -> dict[str, str]:
    selector = ", ".join([JOB, f'namespace="{NS}"', *(f'{k}="{v}"' for k, v in labels.items())])
    return {"series": f"{metric}{{{selector}}}", "values": values}


TWO_REPLICAS = ({"pod": "manager-a"}, {"pod": "manager-b"})

CASES: list[dict[str, Any]] = [
    {  # both replicas unreachable (absent() of a comparison carries no labels)
        "name": "operator down",
        "interval": "1m",
        "input_series": [
            _series("up", "0x9", **TWO_REPLICAS[0]),
            _series("up", "0x9", **TWO_REPLICAS[1]),
        ],
        "alert_rule_test": [
            _silent("IntelDevicePluginOperatorDown", "3m"),
            _fires("IntelDevicePluginOperatorDown", "6m", {}),
            _fires("IntelDevicePluginOperatorDown", "20m", {}),
        ],
    },
    {  # the Deployment deleted or scaled to zero: no target of the job at all
        "name": "no target",
        "interval": "1m",
        "input_series": [{"series": 'up{job="node-exporter"}', "values": "1x20"}],
        "alert_rule_test": [_fires("IntelDevicePluginOperatorDown", "6m", {})],
    },
    {
        "name": "one replica up",
        "interval": "1m",
        "input_series": [
            _series("up", "1x20", **TWO_REPLICAS[0]),
            _series("up", "0x20", **TWO_REPLICAS[1]),
        ],
        "alert_rule_test": [_silent("IntelDevicePluginOperatorDown", "10m")],
    },
    {
        "name": "no leader",
        "interval": "1m",
        "input_series": [
            _series("leader_election_master_status", "1 1 0x10", name="d1c7b6d5.intel.com", **p)
            for p in TWO_REPLICAS
        ],
        "alert_rule_test": [
            _silent("IntelDevicePluginOperatorNoLeader", "4m"),
            _fires("IntelDevicePluginOperatorNoLeader", "9m", {"namespace": NS}),
        ],
    },
    {
        "name": "a leader",
        "interval": "1m",
        "input_series": [
            _series(
                "leader_election_master_status",
                "0x20",
                name="d1c7b6d5.intel.com",
                **TWO_REPLICAS[0],
            ),
            _series(
                "leader_election_master_status",
                "1x20",
                name="d1c7b6d5.intel.com",
                **TWO_REPLICAS[1],
            ),
        ],
        "alert_rule_test": [_silent("IntelDevicePluginOperatorNoLeader", "15m")],
    },
    {  # both replicas report every resource's gauges: one alert per resource, not per replica
        "name": "plugin pods not ready",
        "interval": "1m",
        "input_series": [
            *(
                _series(
                    "deviceplugin_operator_desired_pods",
                    "3x30",
                    kind="GpuDevicePlugin",
                    name="gpu",
                    **p,
                )
                for p in TWO_REPLICAS
            ),
            *(
                _series(
                    "deviceplugin_operator_ready_pods",
                    "1x30",
                    kind="GpuDevicePlugin",
                    name="gpu",
                    **p,
                )
                for p in TWO_REPLICAS
            ),
            *(
                _series(
                    "deviceplugin_operator_desired_pods",
                    "2x30",
                    kind="QatDevicePlugin",
                    name="qat",
                    **p,
                )
                for p in TWO_REPLICAS
            ),
            *(
                _series(
                    "deviceplugin_operator_ready_pods",
                    "2x30",
                    kind="QatDevicePlugin",
                    name="qat",
                    **p,
                )
                for p in TWO_REPLICAS
            ),
        ],
        "alert_rule_test": [
            _silent("IntelDevicePluginNotReady", "10m"),
            _fires(
                "IntelDevicePluginNotReady",
                "16m",
                {"namespace": NS, "kind": "GpuDevicePlugin", "name": "gpu"},
                value="2",
            ),
            _silent("IntelDevicePluginScheduledNowhere", "30m"),
        ],
    },
    {
        "name": "scheduled nowhere",
        "interval": "1m",
        "input_series": [
            _series(
                "deviceplugin_operator_desired_pods", "0x40", kind="SgxDevicePlugin", name="sgx"
            ),
            _series("deviceplugin_operator_ready_pods", "0x40", kind="SgxDevicePlugin", name="sgx"),
        ],
        "alert_rule_test": [
            _silent("IntelDevicePluginScheduledNowhere", "20m"),
            _fires(
                "IntelDevicePluginScheduledNowhere",
                "31m",
                {"namespace": NS, "kind": "SgxDevicePlugin", "name": "sgx"},
            ),
            _silent("IntelDevicePluginNotReady", "31m"),
        ],
    },
    {
        "name": "reconcile errors",
        "interval": "1m",
        "input_series": [
            _series(
                "controller_runtime_reconcile_errors_total", "0+2x40", controller="gpudeviceplugin"
            ),
            _series(
                "controller_runtime_reconcile_errors_total", "5x40", controller="qatdeviceplugin"
            ),
        ],
        "alert_rule_test": [
            _silent("IntelDevicePluginOperatorReconcileErrors", "10m"),
            _fires(
                "IntelDevicePluginOperatorReconcileErrors",
                "25m",
                {"namespace": NS, "controller": "gpudeviceplugin"},
            ),
        ],
    },
    {  # time() is the evaluation time since the epoch: 10 days left, then 100 days left
        "name": "webhook certificate expiring",
        "interval": "1m",
        "input_series": [
            _series(
                "deviceplugin_operator_webhook_certificate_expiration_timestamp_seconds",
                "864000x200",
                pod="manager-a",
            ),
        ],
        "alert_rule_test": [
            _silent("IntelDevicePluginOperatorWebhookCertificateExpiring", "30m"),
            _fires("IntelDevicePluginOperatorWebhookCertificateExpiring", "70m", {"namespace": NS}),
        ],
    },
    {
        "name": "webhook certificate current",
        "interval": "1m",
        "input_series": [
            _series(
                "deviceplugin_operator_webhook_certificate_expiration_timestamp_seconds",
                "8640000x200",
                pod="manager-a",
            ),
        ],
        "alert_rule_test": [_silent("IntelDevicePluginOperatorWebhookCertificateExpiring", "3h")],
    },
    {  # replica a resets 3 connections at 5m; replica b waits but resets none
        "name": "webhook connections reset",
        "interval": "1m",
        "input_series": [
            _series(
                "deviceplugin_operator_webhook_connections_reset_total",
                "0x4 3x30",
                pod="manager-a",
            ),
            _series(
                "deviceplugin_operator_webhook_connections_reset_total", "0x35", pod="manager-b"
            ),
            _series(
                "deviceplugin_operator_webhook_connections_waited_total",
                "0x4 40x30",
                pod="manager-b",
            ),
        ],
        "alert_rule_test": [
            _silent("IntelDevicePluginOperatorWebhookConnectionsReset", "4m"),
            _fires(
                "IntelDevicePluginOperatorWebhookConnectionsReset",
                "6m",
                {"namespace": NS, "pod": "manager-a"},
            ),
            # Ten minutes without a reset: resolved.
            _silent("IntelDevicePluginOperatorWebhookConnectionsReset", "20m"),
        ],
    },
]


def _test_file(
    tmp_path: pathlib.Path, rule_file: pathlib.Path, cases: list[dict[str, Any]]
) -> pathlib.Path:
    path = tmp_path / "alerts_test.yaml"
    path.write_text(
        yaml.safe_dump(
            {"rule_files": [str(rule_file)], "evaluation_interval": "1m", "tests": cases},
            sort_keys=False,
        )
    )
    return path


def test_every_alert_is_unit_tested() -> None:
    tested = {
        test["alertname"]
        for case in CASES
        for test in case["alert_rule_test"]
        if test["exp_alerts"]
    }
    assert tested == {rule["alert"] for rule in alerts()}


def test_promtool_test_rules(
    promtool: pathlib.Path, rule_file: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    tests = _test_file(tmp_path, rule_file, CASES)
    tested = promtool_run(promtool, "test", "rules", str(tests))
    assert tested.returncode == 0, tested.stdout + tested.stderr


def test_promtool_test_rules_can_fail(
    promtool: pathlib.Path, rule_file: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    """A positive control: an alert expected where its series say otherwise fails the run."""
    wrong = {
        "interval": "1m",
        "input_series": [_series("up", "1x20")],
        "alert_rule_test": [_fires("IntelDevicePluginOperatorDown", "10m", {})],
    }
    tested = promtool_run(promtool, "test", "rules", str(_test_file(tmp_path, rule_file, [wrong])))
    assert tested.returncode != 0
    assert "IntelDevicePluginOperatorDown" in tested.stdout + tested.stderr
