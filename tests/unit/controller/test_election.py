"""Leader election against the in-memory API in virtual time: who leads, when a follower takes
over (leader gone, lease released, lease overwritten), and when the leader gives up."""

from __future__ import annotations

import asyncio
import datetime
import heapq
import itertools
import re
from collections.abc import AsyncIterator
from typing import Any

import pytest

import fakes
from deviceplugin_operator.controller import election
from deviceplugin_operator.kube import errors, objects, resources

NS = "operators"
LEASES = resources.LEASES
EPOCH = datetime.datetime(2030, 1, 1, tzinfo=datetime.UTC)
MICRO_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")


class VirtualTime:
    """A monotonic clock that only ``advance`` moves; ``sleep`` waits for it."""

    def __init__(self) -> None:
        self.now = 100.0
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._order = itertools.count()

    def clock(self) -> float:
        return self.now

    def wall(self) -> datetime.datetime:
        return EPOCH + datetime.timedelta(seconds=self.now)

    async def sleep(self, seconds: float) -> None:
        future = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self.now + seconds, next(self._order), future))
        await future

    async def advance(self, seconds: float) -> None:
        """Move the clock by ``seconds``, waking sleepers in deadline order."""
        target = self.now + seconds
        await settle()
        while self._sleepers and self._sleepers[0][0] <= target:
            deadline, _, future = heapq.heappop(self._sleepers)
            if future.done():
                continue
            self.now = max(self.now, deadline)
            future.set_result(None)
            await settle()
        self.now = target
        await settle()

    async def until(self, task: asyncio.Task[Any], limit: float, step: float = 0.05) -> float:
        """Advance in ``step``s until ``task`` is done; the virtual seconds it took."""
        start = self.now
        while not task.done():
            if self.now - start > limit:
                raise AssertionError(f"not done after {limit} virtual seconds")
            await self.advance(step)
        return self.now - start


async def settle() -> None:
    """Let every runnable task run (the fake API answers without real waiting)."""
    for _ in range(100):
        await asyncio.sleep(0)


@pytest.fixture
def time() -> VirtualTime:
    return VirtualTime()


@pytest.fixture
async def tasks() -> AsyncIterator[list[asyncio.Task[Any]]]:
    started: list[asyncio.Task[Any]] = []
    yield started
    for task in started:
        task.cancel()
    await asyncio.gather(*started, return_exceptions=True)


class Changes(list[bool]):
    def __call__(self, leading: bool) -> None:
        self.append(leading)


def make(
    kube: fakes.FakeKubeClient,
    time: VirtualTime,
    identity: str,
    *,
    watch: bool = False,
    changes: Changes | None = None,
) -> election.LeaderElector:
    return election.LeaderElector(
        kube,
        election.Config(namespace=NS, identity=identity, watch=watch),
        on_change=changes,
        clock=time.clock,
        sleep=time.sleep,
        now=time.wall,
        jitter=lambda: 1.0,
    )


def lease(kube: fakes.FakeKubeClient) -> objects.JsonObject:
    (stored,) = kube.stored(LEASES)
    return stored


def spec(kube: fakes.FakeKubeClient) -> objects.JsonObject:
    found: objects.JsonObject = lease(kube)["spec"]
    return found


async def overwrite(kube: fakes.FakeKubeClient, **fields: Any) -> None:
    current = lease(kube)
    current["spec"].update(fields)
    await kube.replace(LEASES, election.LEASE_NAME, current, NS)


async def test_first_replica_creates_the_lease_and_leads(
    time: VirtualTime,
) -> None:
    kube = fakes.FakeKubeClient()
    changes = Changes()
    leader = make(kube, time, "host_a", changes=changes)

    await leader.acquire()

    stored = lease(kube)
    assert objects.name(stored) == "d1c7b6d5.intel.com"
    assert objects.namespace(stored) == NS
    assert stored["spec"]["holderIdentity"] == "host_a"
    assert stored["spec"]["leaseDurationSeconds"] == 15
    assert stored["spec"]["leaseTransitions"] == 0
    assert stored["spec"]["acquireTime"] == stored["spec"]["renewTime"]
    assert MICRO_TIME.match(stored["spec"]["renewTime"])
    assert leader.leading
    assert changes == [True]


async def test_follower_waits_while_the_leader_renews(
    time: VirtualTime, tasks: list[asyncio.Task[Any]]
) -> None:
    kube = fakes.FakeKubeClient()
    leader, follower = make(kube, time, "a"), make(kube, time, "b")
    await leader.acquire()
    first_renewal = spec(kube)["renewTime"]
    holding = asyncio.create_task(leader.hold())
    acquiring = asyncio.create_task(follower.acquire())
    tasks += [holding, acquiring]

    await time.advance(60)

    assert not acquiring.done()
    assert not holding.done()
    assert spec(kube)["holderIdentity"] == "a"
    assert spec(kube)["renewTime"] > first_renewal
    assert spec(kube)["acquireTime"] < spec(kube)["renewTime"]
    assert follower.holder == "a"
    assert not follower.leading


async def test_follower_takes_over_within_the_lease_duration_when_the_leader_dies(
    time: VirtualTime, tasks: list[asyncio.Task[Any]]
) -> None:
    kube = fakes.FakeKubeClient()
    leader, follower = make(kube, time, "a"), make(kube, time, "b")
    await leader.acquire()
    holding = asyncio.create_task(leader.hold())
    acquiring = asyncio.create_task(follower.acquire())
    tasks += [holding, acquiring]
    await time.advance(10)

    holding.cancel()  # killed: no release
    took = await time.until(acquiring, limit=30)

    # The last change seen plus 15 s, plus up to one attempt period (2 s * 2.2) either side.
    assert 15 - 2 <= took <= 15 + 2 * 2.2 * 2
    assert spec(kube)["holderIdentity"] == "b"
    assert spec(kube)["leaseTransitions"] == 1
    assert spec(kube)["acquireTime"] == spec(kube)["renewTime"]


async def test_release_lets_a_watching_follower_take_over_at_once(
    time: VirtualTime, tasks: list[asyncio.Task[Any]]
) -> None:
    kube = fakes.FakeKubeClient()
    changes = Changes()
    leader = make(kube, time, "a", watch=True, changes=changes)
    follower = make(kube, time, "b", watch=True)
    await leader.acquire()
    holding = asyncio.create_task(leader.hold())
    acquiring = asyncio.create_task(follower.acquire())
    tasks += [holding, acquiring]
    await time.advance(5)
    holding.cancel()
    await asyncio.gather(holding, return_exceptions=True)

    assert await leader.release()
    released = spec(kube)
    await settle()

    assert released["holderIdentity"] == ""
    assert released["leaseDurationSeconds"] == 1
    assert released["leaseTransitions"] == 0
    assert changes == [True, False]
    assert acquiring.done()
    assert spec(kube)["holderIdentity"] == "b"
    assert spec(kube)["leaseTransitions"] == 1
    await follower.stop()


async def test_release_without_a_watch_is_taken_at_the_next_attempt(
    time: VirtualTime, tasks: list[asyncio.Task[Any]]
) -> None:
    kube = fakes.FakeKubeClient()
    leader, follower = make(kube, time, "a"), make(kube, time, "b")
    await leader.acquire()
    acquiring = asyncio.create_task(follower.acquire())
    tasks.append(acquiring)
    await time.advance(1)

    assert await leader.release()
    took = await time.until(acquiring, limit=10)

    assert took <= 2 * (1 + election.JITTER)
    assert spec(kube)["holderIdentity"] == "b"


async def test_release_by_a_follower_writes_nothing(time: VirtualTime) -> None:
    kube = fakes.FakeKubeClient()
    await make(kube, time, "a").acquire()
    kube.reset_counts()

    assert await make(kube, time, "b").release()

    assert kube.writes == 0


async def test_overwrite_by_another_identity_stops_a_watching_leader_at_once(
    time: VirtualTime, tasks: list[asyncio.Task[Any]]
) -> None:
    kube = fakes.FakeKubeClient()
    changes = Changes()
    leader = make(kube, time, "a", watch=True, changes=changes)
    await leader.acquire()
    holding = asyncio.create_task(leader.hold())
    tasks.append(holding)
    await time.advance(3)

    await overwrite(kube, holderIdentity="intruder")
    took = await time.until(holding, limit=5)

    assert took < 0.1
    assert "intruder" in holding.result()
    assert changes == [True, False]
    assert not leader.leading
    assert spec(kube)["holderIdentity"] == "intruder"
    await leader.stop()


async def test_overwrite_is_noticed_at_the_next_renewal_without_a_watch(
    time: VirtualTime, tasks: list[asyncio.Task[Any]]
) -> None:
    kube = fakes.FakeKubeClient()
    leader = make(kube, time, "a")
    await leader.acquire()
    holding = asyncio.create_task(leader.hold())
    tasks.append(holding)

    await overwrite(kube, holderIdentity="intruder")
    took = await time.until(holding, limit=5)

    assert took <= 2.0 + 0.05
    assert spec(kube)["holderIdentity"] == "intruder"


async def test_leader_gives_up_when_no_renewal_succeeds_for_the_renew_deadline(
    time: VirtualTime, tasks: list[asyncio.Task[Any]]
) -> None:
    kube = fakes.FakeKubeClient()
    changes = Changes()
    leader = make(kube, time, "a", changes=changes)
    await leader.acquire()
    acquired_at = time.now
    down = errors.TransportError("connection refused")
    for verb in ("get", "update", "create"):
        kube.fail(verb, down, times=1000)
    holding = asyncio.create_task(leader.hold())
    tasks.append(holding)

    await time.until(holding, limit=30)

    # Gone by the renew deadline, well before followers may take over (15 s after they saw
    # the last renewal).
    assert time.now - acquired_at == pytest.approx(10, abs=0.06)
    assert "10s" in holding.result()
    assert changes == [True, False]


async def test_leader_keeps_the_lease_through_a_conflicting_unrelated_write(
    time: VirtualTime, tasks: list[asyncio.Task[Any]]
) -> None:
    kube = fakes.FakeKubeClient()
    leader = make(kube, time, "a")
    await leader.acquire()
    holding = asyncio.create_task(leader.hold())
    tasks.append(holding)
    await kube.patch(LEASES, election.LEASE_NAME, {"metadata": {"labels": {"x": "y"}}}, NS)
    before = spec(kube)["renewTime"]

    await time.advance(2.5)

    assert not holding.done()
    assert leader.leading
    assert spec(kube)["renewTime"] > before
    assert spec(kube)["holderIdentity"] == "a"


async def test_a_foreign_lease_counts_from_when_it_was_seen_not_from_its_renew_time(
    time: VirtualTime, tasks: list[asyncio.Task[Any]]
) -> None:
    kube = fakes.FakeKubeClient()
    ancient = "2001-01-01T00:00:00.000000Z"
    await kube.create(
        LEASES,
        {
            "metadata": {"name": election.LEASE_NAME, "namespace": NS},
            "spec": {
                "holderIdentity": "reference-operator",
                "leaseDurationSeconds": 15,
                "acquireTime": ancient,
                "renewTime": ancient,
                "leaseTransitions": 4,
            },
        },
    )
    follower = make(kube, time, "b")
    acquiring = asyncio.create_task(follower.acquire())
    tasks.append(acquiring)

    await time.advance(14)
    assert not acquiring.done()
    took = await time.until(acquiring, limit=10)

    assert 14 + took <= 15 + 2 * 2.2
    assert spec(kube)["holderIdentity"] == "b"
    assert spec(kube)["leaseTransitions"] == 5


async def test_a_released_lease_is_taken_at_the_first_attempt(time: VirtualTime) -> None:
    kube = fakes.FakeKubeClient()
    await kube.create(
        LEASES,
        {
            "metadata": {"name": election.LEASE_NAME, "namespace": NS},
            "spec": {"holderIdentity": "", "leaseDurationSeconds": 1, "leaseTransitions": 2},
        },
    )

    await make(kube, time, "b").acquire()

    assert spec(kube)["holderIdentity"] == "b"
    assert spec(kube)["leaseTransitions"] == 3


@pytest.mark.parametrize(
    ("lease", "renew", "retry"),
    [(10, 10, 2), (15, 10, 9), (0.5, 0.4, 0.1), (15, 10, 0)],
)
def test_timings_that_cannot_work_are_refused(lease: float, renew: float, retry: float) -> None:
    with pytest.raises(ValueError, match="must"):
        election.Config(
            namespace=NS,
            identity="a",
            lease_duration=lease,
            renew_deadline=renew,
            retry_period=retry,
        )


def test_identity_is_hostname_and_a_uuid() -> None:
    first, second = election.default_identity(), election.default_identity()
    assert first != second
    assert re.match(r"^.+_[0-9a-f-]{36}$", first)


async def test_leadership_ends_at_the_renew_deadline_even_before_hold_notices(
    time: VirtualTime,
) -> None:
    kube = fakes.FakeKubeClient()
    leader = make(kube, time, "a")
    await leader.acquire()
    assert leader.still_leading

    # Nothing renews (hold() is not running, as when the event loop is blocked): the flag
    # still says leading, but the deadline has passed.
    await time.advance(9.9)
    assert leader.still_leading
    await time.advance(0.1)
    assert leader.leading
    assert not leader.still_leading
