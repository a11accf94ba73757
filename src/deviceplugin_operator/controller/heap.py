"""Handing the memory a burst of work freed back to the OS once the operator is idle again.

CPython gives the memory of freed objects back to glibc's malloc, which keeps the freed
chunks of its heap for later allocations instead of returning them: after the start-up's
imports and first lists, or after a burst of reconciles at scale, the resident memory stays
near its peak although the objects are gone. One ``malloc_trim(0)`` once the reconcile
workers have been idle for a moment returns those pages (a few milliseconds on a 100 MiB
heap, at most once per idle period). Without glibc (a musl build) nothing is trimmed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

log = logging.getLogger(__name__)

IDLE_BEFORE_TRIM = 2.0
"""Seconds without a finished reconcile before the heap is trimmed."""

Trim = Callable[[int], int]


def glibc_malloc_trim() -> Trim | None:
    """glibc's ``malloc_trim``, or None where the C library has none."""
    # Imported on first use, seconds after start-up: ctypes is no part of the time to the
    # first DaemonSet.
    import ctypes  # noqa: PLC0415

    try:
        trim: Trim = ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None
    return trim


class IdleHeapTrimmer:
    """Trims the heap once ``idle`` seconds have passed since the last ``worked()``."""

    def __init__(
        self,
        idle: float = IDLE_BEFORE_TRIM,
        find_trim: Callable[[], Trim | None] = glibc_malloc_trim,
    ):
        self.idle = idle
        self._find_trim = find_trim
        self._trim: Trim | None = None
        self._looked = False
        self._last_work = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self.trims = 0
        """How many times the heap was trimmed (for tests and debugging)."""

    def worked(self) -> None:
        """Some work ended now: trim once none follows for ``idle`` seconds."""
        loop = asyncio.get_running_loop()
        self._last_work = loop.time()
        if self._timer is None:
            self._timer = loop.call_later(self.idle, self._check, loop)

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _check(self, loop: asyncio.AbstractEventLoop) -> None:
        # One timer per idle period, moved on when work came meanwhile: a reconcile costs
        # a clock read, not a timer.
        quiet = loop.time() - self._last_work
        if quiet < self.idle:
            self._timer = loop.call_later(self.idle - quiet, self._check, loop)
            return
        self._timer = None
        if not self._looked:
            self._looked = True
            self._trim = self._find_trim()
            if self._trim is None:
                log.debug("No malloc_trim in this C library: the heap is not trimmed")
        if self._trim is not None:
            self._trim(0)
            self.trims += 1
