"""The heap is trimmed once the reconcile workers have been idle for a moment, once per idle
period, and never where the C library has no malloc_trim."""

from __future__ import annotations

import asyncio

from deviceplugin_operator.controller import heap


class CountingTrim:
    def __init__(self) -> None:
        self.calls: list[int] = []

    def __call__(self, pad: int) -> int:
        self.calls.append(pad)
        return 1


async def test_one_trim_after_the_last_work_of_a_burst() -> None:
    trim = CountingTrim()
    trimmer = heap.IdleHeapTrimmer(idle=0.2, find_trim=lambda: trim)
    for _ in range(5):  # a burst: work keeps coming for longer than the idle time
        trimmer.worked()
        await asyncio.sleep(0.08)
    assert trim.calls == []
    await asyncio.sleep(0.3)
    assert trim.calls == [0]
    await asyncio.sleep(0.3)
    assert trim.calls == [0]  # still idle: nothing more to give back
    trimmer.worked()
    await asyncio.sleep(0.3)
    assert trim.calls == [0, 0]


async def test_without_malloc_trim_nothing_is_trimmed_and_it_is_looked_up_once() -> None:
    lookups: list[None] = []

    def find() -> heap.Trim | None:
        lookups.append(None)
        return None

    trimmer = heap.IdleHeapTrimmer(idle=0.05, find_trim=find)
    for _ in range(2):
        trimmer.worked()
        await asyncio.sleep(0.12)
    assert (trimmer.trims, len(lookups)) == (0, 1)


async def test_stop_cancels_a_pending_trim() -> None:
    trim = CountingTrim()
    trimmer = heap.IdleHeapTrimmer(idle=0.05, find_trim=lambda: trim)
    trimmer.worked()
    trimmer.stop()
    await asyncio.sleep(0.12)
    assert trim.calls == []


def test_glibc_has_malloc_trim_here() -> None:
    # The image and this machine run glibc: the trim the operator relies on exists.
    trim = heap.glibc_malloc_trim()
    assert trim is not None
    assert trim(0) in (0, 1)
