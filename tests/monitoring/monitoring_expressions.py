"""What the monitoring tests share: the shipped PrometheusRule and dashboard, read from the files
that kubectl apply -k and the chart ship, and the metric names their expressions use."""

from __future__ import annotations

import json
import pathlib
import re
from typing import Any

import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
MONITORING = ROOT / "deployments" / "operator" / "monitoring"
FROM_PROMETHEUS = frozenset({"up"})
"""Series Prometheus makes itself, not the operator's /metrics."""
_SELECTOR = re.compile(r"\b([a-zA-Z_:][a-zA-Z0-9_:]*)\{")


def prometheus_rule() -> dict[str, Any]:
    rule: dict[str, Any] = yaml.safe_load((MONITORING / "prometheus_rule.yaml").read_text())
    return rule


def alerts() -> list[dict[str, Any]]:
    return [rule for group in prometheus_rule()["spec"]["groups"] for rule in group["rules"]]


def dashboard() -> dict[str, Any]:
    board: dict[str, Any] = json.loads((MONITORING / "dashboard.json").read_text())
    return board


def panel_expressions() -> list[tuple[str, str]]:
    """(panel title, PromQL) of every query, Grafana's variables replaced by what they mean."""
    return [
        (
            panel["title"],
            target["expr"].replace("$namespace", ".*").replace("$__rate_interval", "5m"),
        )
        for panel in dashboard()["panels"]
        for target in panel["targets"]
    ]


def metric_names(expr: str) -> set[str]:
    """The metrics a PromQL expression selects (every selector of ours has braces)."""
    return set(_SELECTOR.findall(expr)) - FROM_PROMETHEUS


def used_metrics() -> set[str]:
    """Every metric an alert or a dashboard panel reads from the operator's /metrics."""
    names: set[str] = set()
    for rule in alerts():
        names |= metric_names(rule["expr"])
    for _, expr in panel_expressions():
        names |= metric_names(expr)
    return names
