"""Runtime metrics: garbage-collection pauses per generation through ``gc.callbacks`` and the
event-loop lag sampler, each measured for real (forced collections, a loop blocked by a
synchronous sleep) and read back from the ``/metrics`` endpoint the operator serves."""

from __future__ import annotations

import asyncio
import gc
import time

import aiohttp
import prometheus_client
from prometheus_client import parser

from deviceplugin_operator.controller.metrics import recording, runtime, serving

PAUSE = runtime.GC_PAUSE
LAG = runtime.LOOP_LAG


def hold_the_loop(seconds: float) -> None:
    """What a blocking call in a coroutine does: nothing else runs meanwhile."""
    time.sleep(seconds)


def parse(body: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    found = {}
    for family in parser.text_string_to_metric_families(body):
        for sample in family.samples:
            found[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return found


def scraped(metrics: recording.Metrics) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return parse(metrics.exposition()[0].decode())


def pauses(found: dict[tuple[str, frozenset[tuple[str, str]]], float], generation: int) -> float:
    return found[(f"{PAUSE}_count", frozenset({("generation", str(generation))}))]


def lag_samples(found: dict[tuple[str, frozenset[tuple[str, str]]], float]) -> tuple[float, float]:
    """(samples, samples later than 0.1 s)."""
    total = found[(f"{LAG}_count", frozenset())]
    return total, total - found[(f"{LAG}_bucket", frozenset({("le", "0.1")}))]


async def test_a_forced_collection_of_each_generation_is_timed() -> None:
    metrics = recording.Metrics()
    for generation in runtime.GENERATIONS:
        assert pauses(scraped(metrics), generation) == 0
    metrics.runtime.start()
    try:
        for generation in runtime.GENERATIONS:
            before = pauses(scraped(metrics), generation)
            gc.collect(generation)
            found = scraped(metrics)
            assert pauses(found, generation) >= before + 1
            labels = frozenset({("generation", str(generation))})
            assert found[(f"{PAUSE}_sum", labels)] > 0
            assert found[(runtime.GC_PAUSE_MAX, labels)] > 0
    finally:
        await metrics.runtime.stop()
    assert not metrics.runtime.gc.installed
    counted = [pauses(scraped(metrics), generation) for generation in runtime.GENERATIONS]
    gc.collect()
    assert [pauses(scraped(metrics), generation) for generation in runtime.GENERATIONS] == counted


def test_a_pause_lands_in_the_bucket_of_its_upper_bound() -> None:
    metrics = recording.Metrics()
    metrics.runtime.gc.record(1, 0.001)
    metrics.runtime.gc.record(1, 0.0011)
    metrics.runtime.gc.record(1, 3.0)
    found = scraped(metrics)
    gen1 = ("generation", "1")

    def bucket(le: str) -> float:
        return found[(f"{PAUSE}_bucket", frozenset({gen1, ("le", le)}))]

    assert (bucket("0.0005"), bucket("0.001"), bucket("0.002"), bucket("1.0")) == (0, 1, 2, 2)
    assert bucket("+Inf") == 3
    assert found[(runtime.GC_PAUSE_MAX, frozenset({gen1}))] == 3.0
    assert found[(f"{PAUSE}_count", frozenset({("generation", "0")}))] == 0


async def test_the_lag_sampler_sees_a_blocked_loop_and_little_otherwise() -> None:
    sampler = runtime.RuntimeMetrics(prometheus_client.CollectorRegistry(), lag_interval=0.02)

    sampler.start()
    try:
        await asyncio.sleep(0.3)
        idle = sampler.lag.histogram.collect()[0].samples
        hold_the_loop(0.2)
        await asyncio.sleep(0.1)
        blocked = sampler.lag.histogram.collect()[0].samples
    finally:
        await sampler.stop()
    assert sampler.lag._task is None

    def late(samples: list[object]) -> tuple[float, float, float]:
        by_name = {
            (s.name, s.labels.get("le")): s.value  # type: ignore[attr-defined]
            for s in samples
        }
        total = by_name[(f"{LAG}_count", None)]
        return total, total - by_name[(f"{LAG}_bucket", "0.1")], by_name[(f"{LAG}_sum", None)]

    idle_total, idle_late, idle_sum = late(idle)
    assert idle_total >= 5
    assert idle_late == 0
    assert idle_sum / idle_total < 0.02
    _, blocked_late, blocked_sum = late(blocked)
    assert blocked_late >= 1
    assert blocked_sum - idle_sum >= 0.15


async def test_the_metrics_endpoint_serves_both_while_it_listens() -> None:
    metrics = recording.Metrics()
    server = serving.MetricsServer(metrics)
    await server.start("127.0.0.1:0")
    try:
        assert metrics.runtime.gc.installed
        gc.collect(2)
        await asyncio.sleep(runtime.LAG_INTERVAL + 0.05)
        hold_the_loop(runtime.LAG_INTERVAL + 0.15)  # the sampler falls due meanwhile
        await asyncio.sleep(runtime.LAG_INTERVAL + 0.05)
        url = f"http://127.0.0.1:{server.port}/metrics"
        async with aiohttp.ClientSession() as session, session.get(url) as response:
            assert response.status == 200
            found = parse(await response.text())
    finally:
        await server.stop()
    assert pauses(found, 2) >= 1
    total, late = lag_samples(found)
    assert total >= 2
    assert late >= 1
    assert not metrics.runtime.gc.installed
    assert metrics.runtime.lag._task is None


async def test_a_disabled_endpoint_measures_nothing() -> None:
    metrics = recording.Metrics()
    server = serving.MetricsServer(metrics)
    await server.start("0")
    assert not metrics.runtime.gc.installed
    assert metrics.runtime.lag._task is None
    await server.stop()
