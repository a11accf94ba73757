"""The goals of issue 17 checked against result files: each figure of this operator against
the reference's in the same run, with the ratio in the detail; rechecked from the files of a
results directory after a scenario was rerun alone."""

from __future__ import annotations

import json
import pathlib
from typing import Any

from bench import run, stats


def latency(impl: str, p50: float, p99: float) -> list[dict[str, Any]]:
    return [
        stats.record("reconcile_latency", impl, {"operation": op}, {"p50_ms": p50, "p99_ms": p99})
        for op in ("create", "update", "recreate")
    ]


def records() -> dict[str, list[dict[str, Any]]]:
    return {
        "reconcile_latency": latency("this", 10.0, 30.0) + latency("reference", 11.0, 20.0),
        "startup": [
            stats.record("startup", "this", {}, {"first_daemonset_ms": 380.0}),
            stats.record("startup", "reference", {}, {"first_daemonset_ms": 360.0}),
        ],
        "admission_latency": [
            stats.record("admission_latency", impl, {"case": case}, {"webhook_mean_ms": mean})
            for case in ("validate_cr@50", "validate_cr@200")
            for impl, mean in (("this", 0.8), ("reference", 0.9))
        ],
    }


def by_goal(goals: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {goal["goal"]: goal for goal in goals}


def test_every_figure_is_held_against_the_reference_with_the_ratio() -> None:
    goals = by_goal(run.goals(records()))

    assert goals["update p50 no worse than the reference"]["met"] is True
    assert goals["update p99 no worse than the reference"]["met"] is False
    assert "(1.50x)" in goals["update p99 no worse than the reference"]["detail"]
    start = goals["start-up to the first DaemonSet no worse than the reference"]
    assert start["met"] is False
    assert "(1.06x)" in start["detail"]
    webhook = "webhook time through the apiserver (validate_cr@200/s) no worse than the reference"
    assert goals[webhook]["met"] is True
    unmeasured = (
        "webhook time through the apiserver (mutate_sgx_pod@50/s) no worse than the reference"
    )
    assert goals[unmeasured]["met"] is None


def test_goals_are_rechecked_from_the_files_of_a_results_directory(tmp_path: pathlib.Path) -> None:
    for scenario, recs in records().items():
        (tmp_path / f"{scenario}.json").write_text(
            json.dumps({"scenario": scenario, "results": recs, "ratios": []})
        )
    (tmp_path / "summary.json").write_text(json.dumps({"this_commit": "abc", "goals": []}))

    goals = run.recheck_goals(tmp_path)

    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["this_commit"] == "abc", "the run's context is kept"
    assert summary["goals"] == goals
    assert by_goal(goals)["create p99 no worse than the reference"]["met"] is False
