"""Pure helpers of the benchmark: percentiles, audit-log counting, the result records.

No I/O except reading audit-log lines and metric scrapes handed in; unit-tested in
tests/unit/bench/.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import math
import statistics
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from prometheus_client import parser as text_format

IMPLEMENTATIONS = ("this", "reference", "floor")
WRITE_VERBS = frozenset({"create", "update", "patch", "delete", "deletecollection"})


# Percentiles ------------------------------------------------------------------------------
def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100) with linear interpolation between closest ranks.

    The same definition as numpy's default (``method="linear"``): rank ``(n-1)*q/100``.
    """
    if not values:
        raise ValueError("percentile of no values")
    if not 0 <= q <= 100:
        raise ValueError(f"percentile {q} outside 0..100")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = math.floor(rank)
    high = math.ceil(rank)
    if low == high:
        return float(ordered[low])
    return float(ordered[low] + (ordered[high] - ordered[low]) * (rank - low))


def summarize_ms(seconds: Sequence[float]) -> dict[str, float | int]:
    """Latency figures in milliseconds from samples in seconds."""
    ms = [s * 1000 for s in seconds]
    return {
        "n": len(ms),
        "p50_ms": round(percentile(ms, 50), 2),
        "p99_ms": round(percentile(ms, 99), 2),
        "mean_ms": round(statistics.fmean(ms), 2),
        "min_ms": round(min(ms), 2),
        "max_ms": round(max(ms), 2),
    }


def median_of_runs(runs: Sequence[Mapping[str, Any]], keys: Iterable[str]) -> dict[str, float]:
    """For each key, the median over the runs that have a number for it."""
    result: dict[str, float] = {}
    for key in keys:
        values = [run[key] for run in runs if isinstance(run.get(key), (int, float))]
        if values:
            result[key] = round(float(statistics.median(values)), 3)
    return result


# The operator's runtime metrics ------------------------------------------------------------
GC_PAUSE = "deviceplugin_operator_gc_pause_seconds"
GC_PAUSE_MAX = "deviceplugin_operator_gc_pause_max_seconds"
LOOP_LAG = "deviceplugin_operator_event_loop_lag_seconds"
RUNTIME_FIGURES = ("gc_pauses", "gc_pause_total_ms", "gc_pause_max_ms", "loop_lag_p99_ms")


@dataclasses.dataclass
class Histogram:
    """A Prometheus histogram, its series added up over every label but ``le``."""

    buckets: dict[float, float] = dataclasses.field(default_factory=dict)
    """Upper bound (``math.inf`` for ``+Inf``) → cumulative count."""
    sum: float = 0.0
    count: float = 0.0

    def quantile(self, q: float) -> float | None:
        """PromQL's ``histogram_quantile``: linear within the bucket the rank falls in (from 0
        for the first), the highest finite bound when it falls in ``+Inf``; None when empty."""
        if not 0 <= q <= 1:
            raise ValueError(f"quantile {q} outside 0..1")
        bounds = sorted(self.buckets)
        if not bounds or self.buckets[bounds[-1]] == 0:
            return None
        rank = q * self.buckets[bounds[-1]]
        lower, below = 0.0, 0.0
        for bound in bounds:
            count = self.buckets[bound]
            if count >= rank:
                if math.isinf(bound):
                    return lower
                if count == below:
                    return bound
                return lower + (bound - lower) * (rank - below) / (count - below)
            lower, below = bound, count
        return lower

    def highest_bound(self) -> float | None:
        """The upper bound of the highest bucket that holds an observation (None if empty)."""
        below = 0.0
        found = None
        for bound in sorted(self.buckets):
            if self.buckets[bound] > below:
                found = bound
            below = self.buckets[bound]
        return found


def histogram(text: str, name: str) -> Histogram | None:
    """The histogram ``name`` of a scrape in Prometheus' text format, None when not there."""
    found = None
    for family in text_format.text_string_to_metric_families(text):
        if family.name != name or family.type != "histogram":
            continue
        found = Histogram()
        for sample in family.samples:
            if sample.name == f"{name}_bucket":
                bound = float(sample.labels["le"])
                found.buckets[bound] = found.buckets.get(bound, 0.0) + sample.value
            elif sample.name == f"{name}_sum":
                found.sum += sample.value
            elif sample.name == f"{name}_count":
                found.count += sample.value
    return found


def gauge_max(text: str, name: str) -> float | None:
    """The largest value of the gauge ``name`` over its series, None when not there."""
    values = [
        sample.value
        for family in text_format.text_string_to_metric_families(text)
        if family.name == name
        for sample in family.samples
    ]
    return max(values) if values else None


def runtime_figures(text: str) -> dict[str, float | int]:
    """GC pauses and event-loop lag from a scrape of the operator's /metrics: ``gc_pauses``
    (collections of every generation), ``gc_pause_total_ms``, ``gc_pause_max_ms`` (the exact
    gauge, else the bound of the highest bucket used) and ``loop_lag_p99_ms`` (from the
    buckets). Figures whose metrics the scrape lacks (an older operator) are left out."""
    figures: dict[str, float | int] = {}
    pauses = histogram(text, GC_PAUSE)
    if pauses is not None:
        figures["gc_pauses"] = int(pauses.count)
        figures["gc_pause_total_ms"] = round(pauses.sum * 1000, 3)
        longest = gauge_max(text, GC_PAUSE_MAX)
        if longest is None:
            longest = pauses.highest_bound()
        if longest is not None and not math.isinf(longest):
            figures["gc_pause_max_ms"] = round(longest * 1000, 3)
    lag = histogram(text, LOOP_LAG)
    p99 = None if lag is None else lag.quantile(0.99)
    if p99 is not None:
        figures["loop_lag_p99_ms"] = round(p99 * 1000, 3)
    return figures


# Audit log --------------------------------------------------------------------------------
def parse_timestamp(text: str) -> float:
    """RFC 3339 with optional fraction (``2026-11-28T10:00:00.123456Z``) → epoch seconds."""
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    return datetime.datetime.fromisoformat(text).timestamp()


def audit_requests(
    lines: Iterable[str],
    *,
    user_agent_prefix: str,
    start: float | None = None,
    end: float | None = None,
) -> list[dict[str, Any]]:
    """One record per request (unique ``auditID``) whose User-Agent starts with the prefix and
    that was received in ``[start, end)`` (epoch seconds; None = unbounded).

    A record has ``verb``, ``resource`` (``plural`` or ``plural/subresource``), ``namespace``,
    ``code`` and ``received`` (epoch seconds). Lines that are not audit events are skipped.
    """
    seen: dict[str, dict[str, Any]] = {}
    for line in lines:
        if user_agent_prefix not in line:
            continue  # cheap filter before parsing
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if not isinstance(event, dict) or event.get("kind") != "Event":
            continue
        if not str(event.get("userAgent", "")).startswith(user_agent_prefix):
            continue
        audit_id = event.get("auditID")
        if not audit_id:
            continue
        received = parse_timestamp(event.get("requestReceivedTimestamp") or event["stageTimestamp"])
        if (start is not None and received < start) or (end is not None and received >= end):
            continue
        ref = event.get("objectRef") or {}
        resource = ref.get("resource") or event.get("requestURI", "?").split("?")[0]
        if ref.get("subresource"):
            resource = f"{resource}/{ref['subresource']}"
        record = seen.setdefault(
            audit_id,
            {
                "verb": event.get("verb", "?"),
                "resource": resource,
                "namespace": ref.get("namespace"),
                "received": received,
                "code": None,
            },
        )
        code = (event.get("responseStatus") or {}).get("code")
        if code is not None:
            record["code"] = code
    return sorted(seen.values(), key=lambda r: r["received"])


def count_requests(requests: Sequence[Mapping[str, Any]], minutes: float) -> dict[str, Any]:
    """Totals, per-minute rates and a breakdown by ``verb resource`` of audit records."""
    writes = [r for r in requests if r["verb"] in WRITE_VERBS]
    by_kind = Counter(f"{r['verb']} {r['resource']}" for r in requests)
    return {
        "window_min": round(minutes, 2),
        "api_requests": len(requests),
        "api_writes": len(writes),
        "requests_per_min": round(len(requests) / minutes, 2) if minutes > 0 else None,
        "writes_per_min": round(len(writes) / minutes, 2) if minutes > 0 else None,
        "by_request": dict(sorted(by_kind.items(), key=lambda item: (-item[1], item[0]))),
    }


# Result records ---------------------------------------------------------------------------
def record(
    scenario: str,
    implementation: str,
    parameters: Mapping[str, Any],
    figures: Mapping[str, Any],
    **extra: Any,
) -> dict[str, Any]:
    """One result object: a scenario measured for one implementation."""
    if implementation not in IMPLEMENTATIONS:
        raise ValueError(f"unknown implementation {implementation!r}")
    return {
        "scenario": scenario,
        "implementation": implementation,
        "parameters": dict(parameters),
        "figures": dict(figures),
        **extra,
    }


def ratios(
    records: Sequence[Mapping[str, Any]], figures: Sequence[str], *, group_by: str | None = None
) -> list[dict[str, Any]]:
    """``this / peer`` for every figure and every peer measured in the same records.

    With ``group_by`` (a parameter name, e.g. ``level`` or ``operation``) the ratio is taken
    only between records that have the same value of that parameter.
    """
    result: list[dict[str, Any]] = []

    def key(rec: Mapping[str, Any]) -> Any:
        return rec["parameters"].get(group_by) if group_by else None

    groups: dict[Any, dict[str, Mapping[str, Any]]] = {}
    for rec in records:
        groups.setdefault(key(rec), {})[rec["implementation"]] = rec
    for group, by_impl in groups.items():
        mine = by_impl.get("this")
        if mine is None:
            continue
        for peer in ("reference", "floor"):
            other = by_impl.get(peer)
            if other is None:
                continue
            for figure in figures:
                a = mine["figures"].get(figure)
                b = other["figures"].get(figure)
                if not isinstance(a, (int, float)) or not isinstance(b, (int, float)):
                    continue
                entry: dict[str, Any] = {
                    "figure": figure,
                    "this": a,
                    "peer": peer,
                    "peer_value": b,
                    "this_over_peer": round(a / b, 3) if b else None,
                }
                if group_by:
                    entry[group_by] = group
                result.append(entry)
    return result


def scenario_file(
    scenario: str,
    records: Sequence[Mapping[str, Any]],
    ratio_list: Sequence[Mapping[str, Any]],
    *,
    context: Mapping[str, Any],
    notes: Sequence[str] = (),
) -> dict[str, Any]:
    """The JSON document written to ``bench/results/<scenario>.json``."""
    for rec in records:
        if rec["scenario"] != scenario:
            raise ValueError(f"record of {rec['scenario']!r} in the {scenario!r} file")
    return {
        "scenario": scenario,
        **dict(context),
        "results": list(records),
        "ratios": list(ratio_list),
        "notes": list(notes),
    }


def validate_scenario_file(document: Mapping[str, Any]) -> list[str]:
    """Problems with a result document's shape (empty when it is fine)."""
    problems = []
    for key in ("scenario", "results", "ratios"):
        if key not in document:
            problems.append(f"missing {key!r}")
    for index, rec in enumerate(document.get("results", [])):
        for key in ("scenario", "implementation", "parameters", "figures"):
            if key not in rec:
                problems.append(f"results[{index}] missing {key!r}")
        if rec.get("implementation") not in IMPLEMENTATIONS:
            problems.append(f"results[{index}] implementation {rec.get('implementation')!r}")
        if rec.get("scenario") != document.get("scenario"):
            problems.append(f"results[{index}] scenario {rec.get('scenario')!r}")
        for name, value in (rec.get("figures") or {}).items():
            if not isinstance(value, (int, float, type(None), dict, str)):
                problems.append(f"results[{index}].figures.{name} is {type(value).__name__}")
    return problems
