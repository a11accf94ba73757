"""Where tail latency goes inside the process: garbage-collection pauses and event-loop lag.

* ``deviceplugin_operator_gc_pause_seconds{generation}``: how long each collection stopped the
  process, timed by a ``gc.callbacks`` hook (``perf_counter`` at its start and stop), with
  ``deviceplugin_operator_gc_pause_max_seconds{generation}``, the longest one since the start;
* ``deviceplugin_operator_event_loop_lag_seconds``: how late a task that sleeps ``LAG_INTERVAL``
  wakes up, i.e. how long something held the event loop when it was due (one sample per
  interval, so blocking shorter than the interval is caught only when it overlaps a wake-up).

Both cost nothing per watch event or request: two clock reads per collection, one wake-up per
interval. They run only while ``start`` .. ``stop`` (the metrics server's lifetime); the families
are always in the registry, at zero before.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import gc
import time
from collections.abc import Iterable
from typing import Any

import prometheus_client
from prometheus_client import core

from deviceplugin_operator.controller import tasks

PAUSE_BUCKETS = (0.0001, 0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0)
"""Seconds: 0.1 ms to 1 s in 1-2-5 steps (young collections take tens of microseconds, full ones
of a large heap tens of milliseconds)."""
LAG_BUCKETS = (*PAUSE_BUCKETS, 2.0, 5.0)
LAG_INTERVAL = 0.25
"""Seconds the lag sampler sleeps between samples."""
GENERATIONS = (0, 1, 2)
_LE = (*(repr(bound) for bound in PAUSE_BUCKETS), "+Inf")

GC_PAUSE = "deviceplugin_operator_gc_pause_seconds"
GC_PAUSE_MAX = "deviceplugin_operator_gc_pause_max_seconds"
LOOP_LAG = "deviceplugin_operator_event_loop_lag_seconds"


class GcPauses:
    """A collector of the pauses of each generation, fed by a ``gc.callbacks`` hook.

    It keeps plain counters instead of a ``prometheus_client.Histogram``: a collection can start
    at any allocation, including one made while a metric holds its (non-reentrant) lock, and a
    hook that took a metric's lock could then deadlock the thread against itself.
    """

    def __init__(self) -> None:
        self._counts = [[0] * (len(PAUSE_BUCKETS) + 1) for _ in GENERATIONS]
        """Per generation: collections per bucket (not cumulative), the last one above 1 s."""
        self._sums = [0.0 for _ in GENERATIONS]
        self._longest = [0.0 for _ in GENERATIONS]
        self._started: float | None = None
        self._hook = self._collecting
        """One bound method, so that removing it finds the object appended."""

    @property
    def installed(self) -> bool:
        return self._hook in gc.callbacks

    def install(self) -> None:
        if not self.installed:
            self._started = None
            gc.callbacks.append(self._hook)

    def uninstall(self) -> None:
        with contextlib.suppress(ValueError):
            gc.callbacks.remove(self._hook)

    def _collecting(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        elif self._started is not None:
            self.record(int(info["generation"]), time.perf_counter() - self._started)
            self._started = None

    def record(self, generation: int, seconds: float) -> None:
        """Count one pause of ``seconds`` in ``generation``."""
        self._counts[generation][bisect.bisect_left(PAUSE_BUCKETS, seconds)] += 1
        self._sums[generation] += seconds
        self._longest[generation] = max(self._longest[generation], seconds)

    def describe(self) -> Iterable[core.Metric]:
        return list(self._families())

    def collect(self) -> Iterable[core.Metric]:
        pauses, longest = self._families()
        for generation in GENERATIONS:
            label = [str(generation)]
            counts = list(self._counts[generation])
            cumulative, buckets = 0, []
            for le, count in zip(_LE, counts, strict=True):
                cumulative += count
                buckets.append((le, cumulative))
            pauses.add_metric(label, buckets, self._sums[generation])
            longest.add_metric(label, self._longest[generation])
        return [pauses, longest]

    @staticmethod
    def _families() -> tuple[core.HistogramMetricFamily, core.GaugeMetricFamily]:
        return (
            core.HistogramMetricFamily(
                GC_PAUSE,
                "How long each garbage collection of a generation stopped the process "
                "(gc.callbacks)",
                labels=["generation"],
            ),
            core.GaugeMetricFamily(
                GC_PAUSE_MAX,
                "The longest garbage-collection pause of a generation since the metrics started",
                labels=["generation"],
            ),
        )


class LoopLag:
    """A task that sleeps ``interval`` seconds again and again and records how late it woke."""

    def __init__(self, registry: prometheus_client.CollectorRegistry, interval: float) -> None:
        self.interval = interval
        # Observed only on the event loop's thread, never from a GC hook: its lock cannot be
        # taken twice by one thread.
        self.histogram = prometheus_client.Histogram(
            LOOP_LAG,
            f"How late a task sleeping {interval:g} s woke up: how long the event loop was held "
            "when it was due",
            buckets=LAG_BUCKETS,
            registry=registry,
        )
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(
                self._sample(), name="event loop lag"
            )

    async def stop(self) -> None:
        task, self._task = self._task, None
        await tasks.cancel_and_wait(task)

    async def _sample(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            due = loop.time() + self.interval
            await asyncio.sleep(self.interval)
            self.histogram.observe(max(0.0, loop.time() - due))


class RuntimeMetrics:
    """GC pauses and event-loop lag on ``registry``, measured between ``start`` and ``stop``."""

    def __init__(
        self, registry: prometheus_client.CollectorRegistry, *, lag_interval: float = LAG_INTERVAL
    ) -> None:
        self.gc = GcPauses()
        registry.register(self.gc)
        self.lag = LoopLag(registry, lag_interval)

    def start(self) -> None:
        """Hook into the collector and start sampling the running loop."""
        self.gc.install()
        self.lag.start()

    async def stop(self) -> None:
        self.gc.uninstall()
        await self.lag.stop()
