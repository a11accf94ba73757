"""The benchmark's reading of the operator's runtime metrics: GC pauses and event-loop lag as
figures, from what the operator's own registry exposes, and PromQL's histogram_quantile."""

from __future__ import annotations

import math

import pytest
from bench import stats

from deviceplugin_operator.controller.metrics import recording


def test_quantile_interpolates_within_a_bucket_as_promql_does() -> None:
    latencies = stats.Histogram({0.001: 50, 0.002: 90, 0.005: 100, math.inf: 100}, 0.2, 100)
    assert latencies.quantile(0.5) == pytest.approx(0.001)
    assert latencies.quantile(0.25) == pytest.approx(0.0005)
    assert latencies.quantile(0.99) == pytest.approx(0.002 + 0.003 * 9 / 10)
    assert latencies.highest_bound() == 0.005
    beyond = stats.Histogram({0.1: 1, 0.2: 1, math.inf: 10}, 50.0, 10)
    assert beyond.quantile(0.99) == 0.2
    assert beyond.highest_bound() == math.inf
    empty = stats.Histogram({0.1: 0, math.inf: 0})
    assert empty.quantile(0.99) is None
    assert empty.highest_bound() is None
    with pytest.raises(ValueError, match=r"outside 0\.\.1"):
        latencies.quantile(99)


def scrape_of(pauses: list[tuple[int, float]], lags: list[float]) -> str:
    """What the operator's /metrics serves after these pauses and lag samples."""
    metrics = recording.Metrics()
    for generation, seconds in pauses:
        metrics.runtime.gc.record(generation, seconds)
    for seconds in lags:
        metrics.runtime.lag.histogram.observe(seconds)
    return metrics.exposition()[0].decode()


def test_runtime_figures_from_the_operators_scrape() -> None:
    text = scrape_of([(0, 0.0003)] * 3 + [(2, 0.012)], [0.0005] * 100 + [0.3, 0.3])
    figures = stats.runtime_figures(text)
    assert figures == {
        "gc_pauses": 4,
        "gc_pause_total_ms": pytest.approx(12.9),
        "gc_pause_max_ms": 12.0,
        # rank 100.98 of 102 falls in (0.2, 0.5] holding the two 0.3 s samples
        "loop_lag_p99_ms": pytest.approx(200 + 300 * 0.98 / 2),
    }
    assert set(figures) == set(stats.RUNTIME_FIGURES)


def test_without_the_max_gauge_the_highest_used_bucket_bounds_the_longest_pause() -> None:
    text = scrape_of([(1, 0.003), (0, 0.0001)], [])
    older = "\n".join(line for line in text.splitlines() if stats.GC_PAUSE_MAX not in line) + "\n"
    figures = stats.runtime_figures(older)
    assert figures["gc_pause_max_ms"] == 5.0
    assert figures["gc_pauses"] == 2
    assert "loop_lag_p99_ms" not in figures  # no sample yet


def test_a_scrape_without_runtime_metrics_gives_no_figures() -> None:
    assert stats.runtime_figures('# TYPE up gauge\nup{job="x"} 1\n') == {}
    assert stats.histogram("", stats.LOOP_LAG) is None
