"""``python -m bench.report``: Markdown tables of bench/results/*.json (for docs/benchmarks.md)."""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
from collections.abc import Mapping, Sequence
from typing import Any

RESULTS = pathlib.Path(__file__).resolve().parent / "results"
ORDER = ("this", "reference", "floor")

TABLES: dict[str, tuple[str | None, tuple[str, ...]]] = {
    "startup": (None, ("first_daemonset_ms", "readyz_ms", "rss_mib_at_first_daemonset")),
    "reconcile_latency": ("operation", ("p50_ms", "p99_ms", "pooled_p50_ms", "pooled_p99_ms")),
    "convergence": (
        "point",
        (
            "plugin_pods",
            "converged_resources",
            "converge_s",
            "daemonsets_ready_s",
            "status_lag_p50_ms",
            "status_lag_max_ms",
            "cpu_s",
            "rss_mib_converged",
            "rss_mib_after_steady",
        ),
    ),
    "api_efficiency": (None, ("requests_per_min", "writes_per_min", "api_requests", "api_writes")),
    "memory": ("level", ("rss_mib", "rss_mib_peak", "plugin_pods", "unrelated_pods", "nodes")),
    "admission_latency": (
        "case",
        (
            "p50_ms",
            "p99_ms",
            "failures",
            "webhook_calls",
            "webhook_mean_ms",
            "webhook_share_under_5ms",
            "webhook_share_under_25ms",
        ),
    ),
}


def _value(rec: Mapping[str, Any], key: str) -> str:
    value = rec["figures"].get(key, rec["parameters"].get(key))
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.1f}" if abs(value) >= 10 else f"{value:.2f}"
    return str(value)


def _label(key: Any) -> str:
    return "-" if key is None else str(key)


def table(document: Mapping[str, Any]) -> str:
    group, columns = TABLES.get(document["scenario"], (None, ()))
    records: Sequence[Mapping[str, Any]] = document["results"]
    head = ([group] if group else []) + ["implementation", *columns]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    groups: list[Any] = []
    for rec in records:
        key = rec["parameters"].get(group) if group else None
        if key not in groups:
            groups.append(key)
    for key in groups:
        for impl in ORDER:
            for rec in records:
                if rec["implementation"] != impl:
                    continue
                if group and rec["parameters"].get(group) != key:
                    continue
                cells = (
                    ([_label(key)] if group else []) + [impl] + [_value(rec, c) for c in columns]
                )
                lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def ratio_table(document: Mapping[str, Any]) -> str:
    group, columns = TABLES.get(document["scenario"], (None, ()))
    ratios = [r for r in document.get("ratios") or [] if r["figure"] in columns]
    if not ratios:
        return ""
    head = ([group] if group else []) + ["figure", "this / reference", "this / floor"]
    rows: dict[tuple[Any, str], dict[str, Any]] = {}
    for entry in ratios:
        key = (entry.get(group) if group else None, entry["figure"])
        rows.setdefault(key, {})[entry["peer"]] = entry["this_over_peer"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for (key, figure), peers in rows.items():
        cells = [_label(key)] if group else []
        cells += [figure] + [
            "-" if peers.get(p) is None else f"{peers[p]:.2f}" for p in ("reference", "floor")
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--results", default=str(RESULTS))
    args = parser.parse_args(argv)
    directory = pathlib.Path(args.results)
    for name in (
        "startup",
        "reconcile_latency",
        "admission_latency",
        "convergence",
        "api_efficiency",
        "memory",
    ):
        path = directory / f"{name}.json"
        if not path.exists():
            continue
        document = json.loads(path.read_text())
        print(f"### {name}\n\n{table(document)}\n")
        ratios = ratio_table(document)
        if ratios:
            print(f"{ratios}\n")
        for note in document.get("notes") or []:
            print(f"* {note}")
        print()
    summary = directory / "summary.json"
    if summary.exists():
        print("### goals\n")
        for goal in json.loads(summary.read_text()).get("goals", []):
            mark = {True: "met", False: "**missed**", None: "n/a"}[goal["met"]]
            print(f"* {mark}: {goal['goal']} ({goal['detail']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
