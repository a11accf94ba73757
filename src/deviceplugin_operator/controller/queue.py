"""The keyed work queue between event handlers and reconcile workers, as client-go's.

Handlers ``add`` keys (a resource name) as often as events arrive; a worker ``get``s a key,
reconciles it and calls ``done``. The queue guarantees what a level-triggered reconciler needs:

* a key waiting in the queue is there once, however often it was added (de-duplication);
* a key is never handed to two workers at once; one added while being processed is queued
  again when ``done`` is called, so the change that arrived meanwhile is not lost;
* ``add_after`` delays a key (the earliest pending delay wins); ``add_rate_limited`` delays it
  by a per-key exponential backoff (and an optional overall token bucket) until ``forget``.

``depth``, ``adds_total`` and ``retries_total`` have the meaning of client-go's
``workqueue_depth``, ``workqueue_adds_total`` and ``workqueue_retries_total``; an optional
``Observer`` receives the queue and work durations for histograms.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import time
from collections.abc import Callable, Hashable
from typing import Generic, Protocol, TypeVar

K = TypeVar("K", bound=Hashable)


class ShutDown(Exception):  # noqa: N818 - the state, as client-go's "shutdown" return value
    """``get`` on a queue that was shut down and has nothing left to hand out."""


class Observer(Protocol):
    """Receives timings for metrics (client-go's queue_duration and work_duration)."""

    def queued(self, seconds: float) -> None:
        """A key waited ``seconds`` between being queued and being handed to a worker."""

    def worked(self, seconds: float) -> None:
        """A worker held a key for ``seconds`` before calling ``done``."""


class ItemBackoff:
    """Per-key exponential delays: ``base * 2**failures``, capped (client-go's
    ItemExponentialFailureRateLimiter; controller-runtime uses 5 ms and 1000 s)."""

    def __init__(self, base: float = 0.005, cap: float = 1000.0) -> None:
        if base <= 0 or cap < base:
            raise ValueError("ItemBackoff needs 0 < base <= cap")
        self.base = base
        self.cap = cap
        self._failures: dict[Hashable, int] = {}

    def when(self, key: Hashable) -> float:
        """The delay for this failure of ``key``; counts the failure."""
        failures = self._failures.get(key, 0)
        self._failures[key] = failures + 1
        # Past 2**64 the cap has long been reached; the bound keeps the power finite.
        return min(self.cap, self.base * 2.0 ** min(failures, 64))

    def failures(self, key: Hashable) -> int:
        return self._failures.get(key, 0)

    def forget(self, key: Hashable) -> None:
        """Start ``key``'s next failure from ``base`` again."""
        self._failures.pop(key, None)


class TokenBucket:
    """An overall limit of ``rate`` keys per second with bursts of ``burst`` (client-go's
    BucketRateLimiter), so that a storm of failures cannot hammer the API server."""

    def __init__(
        self, rate: float = 10.0, burst: int = 100, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("TokenBucket needs rate > 0 and burst >= 1")
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._tokens = float(burst)
        self._last = clock()

    def reserve(self) -> float:
        """Take a token; returns how long to wait until it is really available."""
        now = self._clock()
        self._tokens = min(float(self.burst), self._tokens + (now - self._last) * self.rate)
        self._last = now
        self._tokens -= 1
        return 0.0 if self._tokens >= 0 else -self._tokens / self.rate


class WorkQueue(Generic[K]):
    """A de-duplicating, delaying, rate-limited asyncio work queue of keys."""

    def __init__(
        self,
        name: str = "",
        *,
        item_backoff: ItemBackoff | None = None,
        bucket: TokenBucket | None = None,
        observer: Observer | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self.item_backoff = item_backoff or ItemBackoff()
        self.bucket = bucket
        self._observer = observer
        self._clock = clock
        self._queue: collections.deque[K] = collections.deque()
        self._dirty: set[K] = set()
        self._queued_at: dict[K, float] = {}
        self._processing: dict[K, float] = {}
        self._waiting: dict[K, tuple[float, asyncio.TimerHandle]] = {}
        self._getters: collections.deque[asyncio.Future[None]] = collections.deque()
        self._shutting_down = False
        self.adds_total = 0
        """Keys newly queued (adds of a key already waiting are not counted)."""
        self.retries_total = 0
        """Delayed and rate-limited adds."""

    # Adding --------------------------------------------------------------------------------
    def add(self, key: K) -> None:
        """Queue ``key`` unless it is waiting already; ignored after ``shutdown``."""
        if self._shutting_down or key in self._dirty:
            return
        self.adds_total += 1
        self._dirty.add(key)
        self._queued_at[key] = self._clock()
        if key in self._processing:
            return
        self._queue.append(key)
        self._wake_one()

    def add_after(self, key: K, delay: float) -> None:
        """Queue ``key`` in ``delay`` seconds; an earlier pending delay of the key wins."""
        if self._shutting_down:
            return
        self.retries_total += 1
        if delay <= 0:
            self.add(key)
            return
        loop = asyncio.get_running_loop()
        ready_at = loop.time() + delay
        pending = self._waiting.get(key)
        if pending is not None:
            if pending[0] <= ready_at:
                return
            pending[1].cancel()
        self._waiting[key] = (ready_at, loop.call_at(ready_at, self._ready, key))

    def add_rate_limited(self, key: K) -> None:
        """Queue ``key`` after its next backoff delay (and a token of the bucket, if any)."""
        delay = self.item_backoff.when(key)
        if self.bucket is not None:
            delay = max(delay, self.bucket.reserve())
        self.add_after(key, delay)

    def forget(self, key: K) -> None:
        """``key`` succeeded: its next failure backs off from the start again."""
        self.item_backoff.forget(key)

    def num_requeues(self, key: K) -> int:
        """Rate-limited adds of ``key`` since it was last forgotten."""
        return self.item_backoff.failures(key)

    def _ready(self, key: K) -> None:
        self._waiting.pop(key, None)
        self.add(key)

    # Processing ----------------------------------------------------------------------------
    async def get(self) -> K:
        """The next key, now owned by the caller until ``done``; waits while the queue is empty.

        Raises ``ShutDown`` once the queue is shut down and empty.
        """
        while not self._queue:
            if self._shutting_down:
                raise ShutDown(self.name)
            getter = asyncio.get_running_loop().create_future()
            self._getters.append(getter)
            try:
                await getter
            except BaseException:
                getter.cancel()
                with contextlib.suppress(ValueError):
                    self._getters.remove(getter)
                # A wake-up meant for this cancelled getter goes to the next one.
                if self._queue:
                    self._wake_one()
                raise
        key = self._queue.popleft()
        now = self._clock()
        self._dirty.discard(key)
        self._processing[key] = now
        queued_at = self._queued_at.pop(key, now)
        if self._observer is not None:
            self._observer.queued(now - queued_at)
        return key

    def done(self, key: K) -> None:
        """The caller finished ``key``; it is queued again if it was added meanwhile."""
        started = self._processing.pop(key, None)
        if started is None:
            return
        if self._observer is not None:
            self._observer.worked(self._clock() - started)
        if key in self._dirty:
            self._queue.append(key)
            self._wake_one()

    def _wake_one(self) -> None:
        while self._getters:
            getter = self._getters.popleft()
            if not getter.done():
                getter.set_result(None)
                return

    # Lifecycle and metrics -----------------------------------------------------------------
    def shutdown(self) -> None:
        """Stop accepting keys and drop delayed ones; ``get`` raises ``ShutDown`` once the
        keys already queued are handed out."""
        self._shutting_down = True
        for _, timer in self._waiting.values():
            timer.cancel()
        self._waiting.clear()
        while self._getters:
            getter = self._getters.popleft()
            if not getter.done():
                getter.set_result(None)

    def reopen(self) -> None:
        """Accept keys again after ``shutdown``, starting empty (a replica that leads again:
        the workers of its last term are gone, and everything is queued anew)."""
        self.shutdown()
        self._queue.clear()
        self._dirty.clear()
        self._queued_at.clear()
        self._processing.clear()
        self._shutting_down = False

    @property
    def shutting_down(self) -> bool:
        return self._shutting_down

    @property
    def depth(self) -> int:
        """Keys waiting for a worker (not counting delayed or in-process keys)."""
        return len(self._queue)

    def __len__(self) -> int:
        return len(self._queue)

    @property
    def delayed(self) -> int:
        """Keys waiting for their ``add_after`` delay."""
        return len(self._waiting)

    @property
    def processing(self) -> int:
        """Keys handed to workers and not ``done`` yet."""
        return len(self._processing)

    def unfinished_work_seconds(self) -> float:
        """Sum of the time every in-process key has been held so far."""
        now = self._clock()
        return sum(now - started for started in self._processing.values())

    def longest_running_processor_seconds(self) -> float:
        now = self._clock()
        return max((now - started for started in self._processing.values()), default=0.0)
