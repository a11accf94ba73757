"""Lease-based leader election with client-go's LeaseLock semantics: only the leader reconciles.

Every replica competes for one coordination.k8s.io/v1 Lease, ``d1c7b6d5.intel.com`` like the
reference operator's, so that the two never lead at the same time during a migration. Each
write is conditional on the resourceVersion last read, so of two replicas racing for the lease
exactly one wins. A lease is free when its ``holderIdentity`` is empty, or when it has not
changed for its ``leaseDurationSeconds`` as measured on this replica's own monotonic clock from
the moment it saw the change: ``renewTime`` is only written, never trusted, so the clocks of
different machines never have to agree.

The leader renews every retry period. It stops leading when another identity holds the lease,
or when no renewal has succeeded for the renew deadline, which is shorter than the lease
duration: it has stopped writing before any other replica may start. Stopping is reported at
once through ``on_change(False)`` so the manager can cancel its workers in the same step. On a
graceful stop ``release`` writes what client-go's ReleaseOnCancel writes (empty holder,
``leaseDurationSeconds: 1``), so a follower takes over without waiting for expiry.

The elector must be given a client of its own (its own connection pool), so that a busy
controller can never delay a renewal, the reference's known crash (its issue #476). A watch
of the lease only wakes the loops early: a follower tries at once when the lease is released
and the leader notices at once that another identity wrote it. Polling alone stays correct
when the watch fails or is not allowed.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime
import logging
import random
import socket
import time
import uuid
from collections.abc import Awaitable, Callable

from deviceplugin_operator.controller import tasks
from deviceplugin_operator.kube import client, errors, objects, resources

log = logging.getLogger(__name__)

LEASE_NAME = "d1c7b6d5.intel.com"
"""The reference operator's leader election ID."""
JITTER = 1.2
"""client-go's JitterFactor: a follower waits retry_period * (1 + up to 1.2) between attempts."""
WATCH_RETRY = 2.0
"""Seconds between attempts to (re)open the lease watch."""


def default_identity() -> str:
    """``<hostname>_<uuid>``, as controller-runtime builds it (the hostname is the pod's name)."""
    return f"{socket.gethostname()}_{uuid.uuid4()}"


@dataclasses.dataclass(frozen=True)
class Config:
    """What to elect on and how fast (controller-runtime's defaults)."""

    namespace: str
    """Namespace of the Lease: the operator's own."""
    identity: str
    """This replica's holderIdentity; unique per process."""
    name: str = LEASE_NAME
    """Name of the Lease."""
    lease_duration: float = 15.0
    """Seconds a follower waits after the last change it saw before it takes the lease over."""
    renew_deadline: float = 10.0
    """Seconds without a successful renewal after which the leader gives up."""
    retry_period: float = 2.0
    """Seconds between renewals, and the base of a follower's wait between attempts."""
    watch: bool = True
    """Watch the Lease to react to a release or an overwrite at once instead of at the next
    attempt."""

    def __post_init__(self) -> None:
        if not self.namespace or not self.identity:
            raise ValueError("leader election needs a namespace and an identity")
        if self.lease_duration < 1:
            raise ValueError("the lease duration must be at least 1s (the Lease counts seconds)")
        if self.lease_duration <= self.renew_deadline:
            raise ValueError("the lease duration must be greater than the renew deadline")
        if self.retry_period <= 0 or self.renew_deadline <= JITTER * self.retry_period:
            raise ValueError(f"the renew deadline must be greater than {JITTER} x retry period")


@dataclasses.dataclass(frozen=True)
class Record:
    """The election fields of a Lease's spec (client-go's LeaderElectionRecord)."""

    holder: str = ""
    lease_duration_seconds: int = 0
    acquire_time: str | None = None
    renew_time: str | None = None
    transitions: int = 0

    @classmethod
    def of(cls, lease: objects.JsonObject) -> Record:
        spec = lease.get("spec") or {}
        return cls(
            holder=str(spec.get("holderIdentity") or ""),
            lease_duration_seconds=int(spec.get("leaseDurationSeconds") or 0),
            acquire_time=spec.get("acquireTime"),
            renew_time=spec.get("renewTime"),
            transitions=int(spec.get("leaseTransitions") or 0),
        )

    def spec(self) -> objects.JsonObject:
        spec: objects.JsonObject = {
            "holderIdentity": self.holder,
            "leaseDurationSeconds": self.lease_duration_seconds,
            "leaseTransitions": self.transitions,
        }
        if self.acquire_time is not None:
            spec["acquireTime"] = self.acquire_time
        if self.renew_time is not None:
            spec["renewTime"] = self.renew_time
        return spec


def micro_time(moment: datetime.datetime) -> str:
    """A Kubernetes MicroTime (RFC 3339 with microseconds, UTC)."""
    return moment.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


class LeaderElector:
    """Acquires, renews and releases the Lease for one replica."""

    def __init__(
        self,
        kube: client.KubeClient,
        config: Config,
        *,
        on_change: Callable[[bool], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        now: Callable[[], datetime.datetime] = _utcnow,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self.kube = kube
        self.config = config
        self._on_change = on_change
        self._clock = clock
        self._sleep = sleep
        self._now = now
        self._jitter = jitter
        self._lease: objects.JsonObject | None = None
        """The Lease as last read or written: its resourceVersion makes the next write
        conditional."""
        self._observed = Record()
        self._observed_at = 0.0
        self._renewed_at = 0.0
        self._leading = False
        self._wake = asyncio.Event()
        self._watcher: asyncio.Task[None] | None = None

    @property
    def leading(self) -> bool:
        return self._leading

    @property
    def still_leading(self) -> bool:
        """Whether this replica leads and its last successful renewal is younger than the
        renew deadline: false from the deadline on, even before ``hold`` notices it (an event
        loop blocked past the deadline wakes its timer late)."""
        return self._leading and self._clock() - self._renewed_at < self.config.renew_deadline

    @property
    def holder(self) -> str:
        """The holderIdentity last seen on the Lease ("" when free or not read yet)."""
        return self._observed.holder

    @property
    def where(self) -> str:
        return f"{self.config.namespace}/{self.config.name}"

    # Running -------------------------------------------------------------------------------
    async def acquire(self) -> None:
        """Return once this replica holds the Lease; try every retry period (with jitter)."""
        if self.config.watch and self._watcher is None:
            self._watcher = asyncio.create_task(self._watch_forever(), name="lease watch")
        log.info(
            "Attempting to acquire Lease",
            extra={"lease": self.where, "identity": self.config.identity},
        )
        while True:
            started = self._clock()
            if await self._attempt():
                self._renewed_at = started
                break
            await self._pause(self.config.retry_period * (1 + JITTER * self._jitter()))
        log.info(
            "Acquired Lease",
            extra={
                "lease": self.where,
                "identity": self.config.identity,
                "transitions": self._observed.transitions,
            },
        )
        self._set_leading(True)

    async def hold(self) -> str:
        """Renew every retry period while leading; return why leadership was lost.

        ``on_change(False)`` has been called when this returns.
        """
        while True:
            await self._pause(self.config.retry_period)
            reason = await self._renew()
            if reason is not None:
                log.error(
                    "Lost Lease",
                    extra={"lease": self.where, "identity": self.config.identity, "why": reason},
                )
                self._set_leading(False)
                return reason

    def step_down(self) -> None:
        """Stop leading without writing the Lease (its renewal failed or crashed)."""
        self._set_leading(False)

    async def release(self) -> bool:
        """Give the Lease up if this replica leads, so that a follower takes over at once.

        Writes what client-go's ReleaseOnCancel writes: an empty holder, a one-second lease and
        the transition count kept. Returns False if the Lease could not be written.
        """
        await self.stop()
        if not self._leading:
            return True
        self._set_leading(False)
        try:
            async with asyncio.timeout(self.config.renew_deadline):
                while True:
                    lease = await self.kube.get(
                        resources.LEASES, self.config.name, self.config.namespace
                    )
                    self._observe(lease)
                    if self._observed.holder != self.config.identity:
                        return True
                    moment = micro_time(self._now())
                    record = Record("", 1, moment, moment, self._observed.transitions)
                    try:
                        self._observe(await self._write(lease, record))
                    except errors.Conflict:
                        continue
                    log.info(
                        "Released Lease",
                        extra={"lease": self.where, "identity": self.config.identity},
                    )
                    return True
        except (errors.KubeError, TimeoutError) as error:
            log.warning(
                "Releasing Lease failed",
                extra={"lease": self.where, "error": str(error) or type(error).__name__},
            )
            return False

    async def stop(self) -> None:
        """Stop the lease watch (the elector does nothing else in the background)."""
        watcher, self._watcher = self._watcher, None
        await tasks.cancel_and_wait(watcher)

    # One round -----------------------------------------------------------------------------
    async def _renew(self) -> str | None:
        """Renew, retrying until the renew deadline; None when renewed, else why it failed."""
        while True:
            remaining = self._renewed_at + self.config.renew_deadline - self._clock()
            if remaining <= 0:
                return f"no renewal succeeded for {self.config.renew_deadline:g}s"
            started = self._clock()
            try:
                async with asyncio.timeout(remaining):
                    renewed = await self._attempt()
            except TimeoutError:
                renewed = False
            if renewed:
                self._renewed_at = started
                return None
            if self._observed.holder not in ("", self.config.identity):
                return f"the Lease is held by {self._observed.holder}"
            await self._pause(min(self.config.retry_period, remaining))

    async def _attempt(self) -> bool:
        """One try to acquire or renew (client-go's tryAcquireOrRenew): whether we hold it."""
        try:
            return await self._try_acquire_or_renew()
        except errors.KubeError as error:
            log.warning("Updating Lease failed", extra={"lease": self.where, "error": str(error)})
        except Exception:
            log.exception("Updating Lease crashed", extra={"lease": self.where})
        return False

    async def _try_acquire_or_renew(self) -> bool:
        moment = micro_time(self._now())
        identity = self.config.identity
        duration = int(self.config.lease_duration)
        # Fast path: the leader updates the Lease it wrote last, in one request.
        if self._lease is not None and self._observed.holder == identity and self._valid():
            record = dataclasses.replace(self._observed, renew_time=moment)
            try:
                self._observe(await self._write(self._lease, record))
            except errors.KubeError as error:
                log.debug(
                    "Renewing Lease optimistically failed",
                    extra={"lease": self.where, "error": str(error)},
                )
            else:
                return True

        try:
            lease = await self.kube.get(resources.LEASES, self.config.name, self.config.namespace)
        except errors.NotFound:
            body: objects.JsonObject = {
                "apiVersion": resources.LEASES.api_version,
                "kind": resources.LEASES.kind,
                "metadata": {"name": self.config.name, "namespace": self.config.namespace},
                "spec": Record(identity, duration, moment, moment, 0).spec(),
            }
            try:
                created = await self.kube.create(
                    resources.LEASES, body, namespace=self.config.namespace
                )
            except errors.AlreadyExists:
                return False
            self._observe(created)
            return True

        self._observe(lease)
        held = self._observed.holder
        if held and held != identity and self._valid():
            return False
        if held == identity:
            record = Record(
                identity, duration, self._observed.acquire_time, moment, self._observed.transitions
            )
        else:
            record = Record(identity, duration, moment, moment, self._observed.transitions + 1)
        try:
            self._observe(await self._write(lease, record))
        except errors.Conflict:
            return False
        return True

    async def _write(self, lease: objects.JsonObject, record: Record) -> objects.JsonObject:
        """PUT ``lease`` with ``record`` as its spec, conditional on its resourceVersion."""
        body = {**lease, "spec": record.spec()}
        return await self.kube.replace(
            resources.LEASES, self.config.name, body, namespace=self.config.namespace
        )

    def _observe(self, lease: objects.JsonObject) -> None:
        self._lease = lease
        record = Record.of(lease)
        if record == self._observed:
            return
        if record.holder != self._observed.holder and record.holder not in (
            "",
            self.config.identity,
        ):
            log.info(
                "Observed new Lease holder", extra={"lease": self.where, "holder": record.holder}
            )
        self._observed = record
        self._observed_at = self._clock()

    def _valid(self) -> bool:
        """Whether the last change seen is younger than the lease duration it carries."""
        return self._observed_at + self._observed.lease_duration_seconds > self._clock()

    def _set_leading(self, leading: bool) -> None:
        if leading == self._leading:
            return
        self._leading = leading
        if self._on_change is not None:
            self._on_change(leading)

    # Waiting -------------------------------------------------------------------------------
    async def _pause(self, seconds: float) -> None:
        """Sleep ``seconds``, or less when the watch saw a change worth acting on."""
        sleeper = asyncio.ensure_future(self._sleep(seconds))
        waker = asyncio.ensure_future(self._wake.wait())
        try:
            await asyncio.wait({sleeper, waker}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            sleeper.cancel()
            waker.cancel()
        self._wake.clear()

    async def _watch_forever(self) -> None:
        selector = f"metadata.name={self.config.name}"
        while True:
            try:
                stream = self.kube.watch(
                    resources.LEASES,
                    self.config.namespace,
                    field_selector=selector,
                    timeout_seconds=300,
                )
                async with contextlib.aclosing(stream):
                    async for event in stream:
                        self._on_event(event)
            except errors.Forbidden as error:
                log.info(
                    "Watching Lease forbidden; polling only",
                    extra={"lease": self.where, "error": str(error)},
                )
                return
            except errors.KubeError as error:
                log.debug("Watching Lease failed", extra={"lease": self.where, "error": str(error)})
            await asyncio.sleep(WATCH_RETRY)

    def _on_event(self, event: client.WatchEvent) -> None:
        if event.type is client.WatchEventType.BOOKMARK:
            return
        if event.type is client.WatchEventType.DELETED:
            self._wake.set()
            return
        holder = Record.of(event.object).holder
        # The leader acts on anyone else's write, a follower on a release.
        if (holder != self.config.identity) if self._leading else (holder == ""):
            self._wake.set()
