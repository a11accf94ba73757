"""Pure parts of the benchmark: percentiles, audit-log counting, result documents."""

from __future__ import annotations

import json
from typing import Any

import pytest
from bench import stats


@pytest.mark.parametrize(
    ("values", "q", "expected"),
    [
        ([5.0], 50, 5.0),
        ([5.0], 99, 5.0),
        ([1.0, 2.0, 3.0, 4.0], 50, 2.5),
        ([4.0, 1.0, 3.0, 2.0], 0, 1.0),
        ([4.0, 1.0, 3.0, 2.0], 100, 4.0),
        (list(map(float, range(1, 101))), 99, 99.01),
        (list(map(float, range(1, 101))), 50, 50.5),
        ([10.0, 20.0], 25, 12.5),
    ],
)
def test_percentile_interpolates_linearly_between_ranks(
    values: list[float], q: float, expected: float
) -> None:
    assert stats.percentile(values, q) == pytest.approx(expected)


def test_percentile_of_nothing_or_out_of_range_is_an_error() -> None:
    with pytest.raises(ValueError, match="no values"):
        stats.percentile([], 50)
    with pytest.raises(ValueError, match="outside"):
        stats.percentile([1.0], 101)


def test_summarize_turns_seconds_into_milliseconds() -> None:
    summary = stats.summarize_ms([0.010, 0.020, 0.030])
    assert summary == {
        "n": 3,
        "p50_ms": 20.0,
        "p99_ms": pytest.approx(29.8),
        "mean_ms": 20.0,
        "min_ms": 10.0,
        "max_ms": 30.0,
    }


def test_median_of_runs_skips_runs_without_the_figure() -> None:
    runs = [{"a": 1.0, "b": 10}, {"a": 3.0}, {"a": 2.0, "b": None}]
    assert stats.median_of_runs(runs, ("a", "b", "c")) == {"a": 2.0, "b": 10.0}


def _event(audit_id: str, stage: str, verb: str, agent: str, at: str, **extra: Any) -> str:
    event = {
        "kind": "Event",
        "apiVersion": "audit.k8s.io/v1",
        "level": "Metadata",
        "auditID": audit_id,
        "stage": stage,
        "requestURI": "/apis/apps/v1/namespaces/ns/daemonsets?watch=true",
        "verb": verb,
        "user": {"username": "admin", "groups": ["system:masters"]},
        "userAgent": agent,
        "requestReceivedTimestamp": at,
        "stageTimestamp": at,
        **extra,
    }
    return json.dumps(event)


AGENT = "intel-deviceplugin-operator"
REF = "intel_deviceplugin_operator/v0.0.0 (linux/amd64) kubernetes/$Format"


def test_audit_requests_counts_each_request_once_and_filters_agent_and_window() -> None:
    ds = {"resource": "daemonsets", "namespace": "ns", "name": "x", "apiGroup": "apps"}
    status = {"resource": "gpudeviceplugins", "subresource": "status", "name": "g"}
    lines = [
        "not json at all " + AGENT,
        # a watch: ResponseStarted then ResponseComplete, same auditID
        _event(
            "w1", "ResponseStarted", "watch", AGENT, "2026-11-28T10:00:01.000000Z", objectRef=ds
        ),
        _event(
            "w1",
            "ResponseComplete",
            "watch",
            AGENT,
            "2026-11-28T10:00:01.000000Z",
            objectRef=ds,
            responseStatus={"code": 200},
        ),
        _event(
            "p1",
            "ResponseComplete",
            "patch",
            AGENT,
            "2026-11-28T10:00:02.5Z",
            objectRef=status,
            responseStatus={"code": 200},
        ),
        # another client, and a request outside the window
        _event("r1", "ResponseComplete", "update", REF, "2026-11-28T10:00:03Z", objectRef=ds),
        _event("late", "ResponseComplete", "get", AGENT, "2026-11-28T10:01:00Z", objectRef=ds),
    ]
    start = stats.parse_timestamp("2026-11-28T10:00:00Z")
    end = stats.parse_timestamp("2026-11-28T10:00:59Z")
    records = stats.audit_requests(lines, user_agent_prefix=AGENT, start=start, end=end)
    assert [(r["verb"], r["resource"], r["code"]) for r in records] == [
        ("watch", "daemonsets", 200),
        ("patch", "gpudeviceplugins/status", 200),
    ]
    counted = stats.count_requests(records, minutes=0.5)
    assert counted["api_requests"] == 2
    assert counted["api_writes"] == 1
    assert counted["requests_per_min"] == 4.0
    assert counted["writes_per_min"] == 2.0
    assert counted["by_request"] == {"patch gpudeviceplugins/status": 1, "watch daemonsets": 1}

    reference = stats.audit_requests(lines, user_agent_prefix="intel_deviceplugin_operator/")
    assert [r["verb"] for r in reference] == ["update"]


def test_parse_timestamp_accepts_fractions_and_zulu() -> None:
    assert stats.parse_timestamp("1970-01-01T00:00:01.5Z") == 1.5
    assert stats.parse_timestamp("1970-01-01T00:00:02Z") == 2.0


def _records() -> list[dict[str, Any]]:
    return [
        stats.record("memory", "this", {"level": "idle"}, {"rss_mib": 40.0}),
        stats.record("memory", "reference", {"level": "idle"}, {"rss_mib": 80.0}),
        stats.record("memory", "floor", {"level": "idle"}, {"rss_mib": 20.0}),
        stats.record("memory", "this", {"level": "pods"}, {"rss_mib": 41.0}),
        stats.record("memory", "reference", {"level": "pods"}, {"rss_mib": 0}),
    ]


def test_ratios_pair_this_with_each_peer_in_the_same_group() -> None:
    ratios = stats.ratios(_records(), ["rss_mib"], group_by="level")
    assert ratios == [
        {
            "figure": "rss_mib",
            "this": 40.0,
            "peer": "reference",
            "peer_value": 80.0,
            "this_over_peer": 0.5,
            "level": "idle",
        },
        {
            "figure": "rss_mib",
            "this": 40.0,
            "peer": "floor",
            "peer_value": 20.0,
            "this_over_peer": 2.0,
            "level": "idle",
        },
        {
            "figure": "rss_mib",
            "this": 41.0,
            "peer": "reference",
            "peer_value": 0,
            "this_over_peer": None,
            "level": "pods",
        },
    ]


def test_result_document_has_the_contract_shape() -> None:
    records = _records()
    document = stats.scenario_file(
        "memory",
        records,
        stats.ratios(records, ["rss_mib"], group_by="level"),
        context={"size": "quick"},
        notes=["noisy"],
    )
    assert stats.validate_scenario_file(document) == []
    assert document["scenario"] == "memory"
    assert document["size"] == "quick"
    for rec in document["results"]:
        assert set(rec) >= {"scenario", "implementation", "parameters", "figures"}
        assert rec["implementation"] in ("this", "reference", "floor")
    json.dumps(document)  # serialisable


def test_result_document_rejects_foreign_records_and_bad_shapes() -> None:
    with pytest.raises(ValueError, match="in the 'startup' file"):
        stats.scenario_file("startup", _records(), [], context={})
    with pytest.raises(ValueError, match="unknown implementation"):
        stats.record("memory", "mine", {}, {})
    broken = {"scenario": "memory", "results": [{"scenario": "other", "implementation": "x"}]}
    problems = stats.validate_scenario_file(broken)
    assert "missing 'ratios'" in problems
    assert "results[0] missing 'figures'" in problems
    assert "results[0] implementation 'x'" in problems
