"""The work queue keeps client-go's guarantees: one waiting copy per key, never two workers on
one key, nothing lost when a key changes while it is processed, bounded exponential retries."""

from __future__ import annotations

import asyncio

import pytest

from deviceplugin_operator.controller import queue

TIMEOUT = 1.0


async def get(q: queue.WorkQueue[str]) -> str:
    return await asyncio.wait_for(q.get(), TIMEOUT)


async def assert_empty(q: queue.WorkQueue[str], within: float = 0.02) -> None:
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(q.get(), within)


async def test_a_key_added_many_times_while_waiting_is_processed_once() -> None:
    q: queue.WorkQueue[str] = queue.WorkQueue()
    for _ in range(5):
        q.add("a")
    q.add("b")
    assert q.depth == 2
    assert q.adds_total == 2
    assert await get(q) == "a"
    assert await get(q) == "b"
    q.done("a")
    q.done("b")
    await assert_empty(q)


async def test_keys_come_out_in_the_order_they_were_first_added() -> None:
    q: queue.WorkQueue[str] = queue.WorkQueue()
    for key in ["c", "a", "b", "a", "c"]:
        q.add(key)
    assert [await get(q) for _ in range(3)] == ["c", "a", "b"]


async def test_a_key_added_while_processing_is_processed_again_after_done() -> None:
    q: queue.WorkQueue[str] = queue.WorkQueue()
    q.add("a")
    assert await get(q) == "a"
    q.add("a")
    q.add("a")
    assert q.depth == 0, "not handed to a second worker while the first holds it"
    await assert_empty(q)
    q.done("a")
    assert q.depth == 1
    assert await get(q) == "a"
    q.done("a")
    await assert_empty(q)


async def test_done_without_a_re_add_does_not_requeue() -> None:
    q: queue.WorkQueue[str] = queue.WorkQueue()
    q.add("a")
    await get(q)
    q.done("a")
    q.done("a")  # a second done is harmless
    assert q.depth == 0
    assert q.processing == 0


async def test_waiting_getters_are_woken_one_key_each() -> None:
    q: queue.WorkQueue[str] = queue.WorkQueue()
    workers = [asyncio.create_task(get(q)) for _ in range(3)]
    await asyncio.sleep(0)
    q.add("a")
    q.add("b")
    done, pending = await asyncio.wait(workers, timeout=0.05)
    assert sorted(task.result() for task in done) == ["a", "b"]
    assert len(pending) == 1
    q.add("c")
    assert await asyncio.wait_for(pending.pop(), TIMEOUT) == "c"


async def test_a_cancelled_getter_does_not_swallow_a_key() -> None:
    q: queue.WorkQueue[str] = queue.WorkQueue()
    first = asyncio.create_task(q.get())
    second = asyncio.create_task(q.get())
    await asyncio.sleep(0)
    q.add("a")
    first.cancel()
    await asyncio.sleep(0)
    assert await asyncio.wait_for(second, TIMEOUT) == "a"


async def test_add_after_delays_the_key() -> None:
    q: queue.WorkQueue[str] = queue.WorkQueue()
    q.add_after("a", 0.03)
    assert q.delayed == 1
    assert q.depth == 0
    await assert_empty(q, within=0.01)
    assert await get(q) == "a"
    assert q.delayed == 0


async def test_add_after_orders_by_ready_time() -> None:
    q: queue.WorkQueue[str] = queue.WorkQueue()
    q.add_after("late", 0.03)
    q.add_after("early", 0.01)
    q.add_after("middle", 0.02)
    assert [await get(q) for _ in range(3)] == ["early", "middle", "late"]


async def test_add_after_keeps_the_earliest_pending_delay() -> None:
    q: queue.WorkQueue[str] = queue.WorkQueue()
    q.add_after("a", 0.01)
    q.add_after("a", 10.0)  # later: ignored
    assert await get(q) == "a"
    q.done("a")
    q.add_after("b", 10.0)
    q.add_after("b", 0.01)  # earlier: replaces
    assert q.delayed == 1
    assert await get(q) == "b"


async def test_add_after_without_delay_adds_at_once() -> None:
    q: queue.WorkQueue[str] = queue.WorkQueue()
    q.add_after("a", 0)
    q.add_after("b", -1)
    assert q.depth == 2
    assert q.retries_total == 2


async def test_a_delayed_key_that_is_already_waiting_is_not_doubled() -> None:
    q: queue.WorkQueue[str] = queue.WorkQueue()
    q.add("a")
    q.add_after("a", 0.005)
    await asyncio.sleep(0.02)
    assert q.depth == 1
    assert await get(q) == "a"


def test_item_backoff_doubles_per_failure_up_to_the_cap() -> None:
    backoff = queue.ItemBackoff(base=0.005, cap=1.0)
    delays = [backoff.when("a") for _ in range(10)]
    assert delays[:4] == [0.005, 0.01, 0.02, 0.04]
    assert delays == sorted(delays)
    assert max(delays) == 1.0
    assert delays[-1] == 1.0
    assert backoff.failures("a") == 10
    assert backoff.when("b") == 0.005, "keys back off independently"


def test_item_backoff_survives_very_many_failures() -> None:
    backoff = queue.ItemBackoff(base=0.005, cap=1000.0)
    for _ in range(5000):
        delay = backoff.when("a")
    assert delay == 1000.0


def test_forget_restarts_the_backoff() -> None:
    backoff = queue.ItemBackoff(base=0.005, cap=1.0)
    for _ in range(5):
        backoff.when("a")
    backoff.forget("a")
    assert backoff.failures("a") == 0
    assert backoff.when("a") == 0.005


async def test_add_rate_limited_grows_the_delay_until_forget() -> None:
    q: queue.WorkQueue[str] = queue.WorkQueue(item_backoff=queue.ItemBackoff(base=0.001, cap=0.004))
    loop = asyncio.get_running_loop()
    delays = []
    for _ in range(4):
        start = loop.time()
        q.add_rate_limited("a")
        assert await get(q) == "a"
        delays.append(loop.time() - start)
        q.done("a")
    assert q.num_requeues("a") == 4
    assert q.retries_total == 4
    assert delays[-1] >= 0.004 * 0.9
    q.forget("a")
    assert q.num_requeues("a") == 0


def test_token_bucket_allows_a_burst_then_spaces_tokens() -> None:
    now = [0.0]
    bucket = queue.TokenBucket(rate=10.0, burst=3, clock=lambda: now[0])
    assert [bucket.reserve() for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.reserve() == pytest.approx(0.1)
    assert bucket.reserve() == pytest.approx(0.2)
    now[0] = 10.0
    assert bucket.reserve() == 0.0, "refilled (up to the burst) while idle"


async def test_the_bucket_delays_rate_limited_adds_beyond_the_item_backoff() -> None:
    now = [0.0]
    bucket = queue.TokenBucket(rate=1.0, burst=1, clock=lambda: now[0])
    q: queue.WorkQueue[str] = queue.WorkQueue(
        item_backoff=queue.ItemBackoff(base=0.001, cap=0.001), bucket=bucket
    )
    q.add_rate_limited("a")
    q.add_rate_limited("b")  # the bucket is empty: one second
    assert await get(q) == "a"
    await assert_empty(q)
    assert q.delayed == 1


async def test_shutdown_hands_out_what_is_queued_then_raises() -> None:
    q: queue.WorkQueue[str] = queue.WorkQueue("test")
    q.add("a")
    q.add_after("later", 0.01)
    q.shutdown()
    assert q.shutting_down
    q.add("b")  # ignored
    q.add_after("c", 0)  # ignored
    assert q.delayed == 0
    assert await get(q) == "a"
    with pytest.raises(queue.ShutDown):
        await get(q)


async def test_shutdown_wakes_waiting_getters() -> None:
    q: queue.WorkQueue[str] = queue.WorkQueue()
    workers = [asyncio.create_task(q.get()) for _ in range(2)]
    await asyncio.sleep(0)
    q.shutdown()
    results = await asyncio.wait_for(asyncio.gather(*workers, return_exceptions=True), TIMEOUT)
    assert all(isinstance(result, queue.ShutDown) for result in results)


async def test_processing_time_and_observer() -> None:
    now = [100.0]
    seen: dict[str, list[float]] = {"queued": [], "worked": []}

    class Observer:
        def queued(self, seconds: float) -> None:
            seen["queued"].append(seconds)

        def worked(self, seconds: float) -> None:
            seen["worked"].append(seconds)

    q: queue.WorkQueue[str] = queue.WorkQueue(observer=Observer(), clock=lambda: now[0])
    q.add("a")
    q.add("b")
    now[0] = 101.0
    await get(q)
    now[0] = 102.0
    await get(q)
    now[0] = 104.0
    assert q.processing == 2
    assert q.unfinished_work_seconds() == pytest.approx(3.0 + 2.0)
    assert q.longest_running_processor_seconds() == pytest.approx(3.0)
    q.done("a")
    q.done("b")
    assert seen == {"queued": [1.0, 2.0], "worked": [3.0, 2.0]}
    assert q.longest_running_processor_seconds() == 0.0


@pytest.mark.parametrize(("base", "cap"), [(0, 1.0), (1.0, 0.5)])
def test_item_backoff_rejects_nonsense(base: float, cap: float) -> None:
    with pytest.raises(ValueError, match="ItemBackoff"):
        queue.ItemBackoff(base=base, cap=cap)
