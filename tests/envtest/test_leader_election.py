"""Leader election against the real control plane, with short timings (lease 3 s, renew
deadline 2 s, retry 0.5 s): exactly one replica reconciles and writes, a graceful stop hands
over at once, a killed leader is replaced after the lease duration, and a leader whose lease is
overwritten stops its workers at once, stays up (no crash loop) and leads again once the
Lease is free.

What proves each handover is the order of the Lease's holders as a watch saw them (released,
then taken; or waited out, no earlier than the lease duration after the last renewal) and why
a leader says it stopped, not how long it took: a loaded 2-core machine only makes things
slower. Takeover times are measured and attached to the test report (``record_property``).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime
import logging
import pathlib
import signal
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from clusters import TestCluster
from deviceplugin_operator import devices, manager, settings
from deviceplugin_operator.controller import election
from deviceplugin_operator.kube import client, errors, objects, resources
from operators import Operator, start_operator
from polling import eventually, eventually_async

pytestmark = [pytest.mark.cluster, pytest.mark.asyncio(loop_scope="session")]

ROOT = pathlib.Path(__file__).resolve().parents[2]
GPU = devices.KINDS["gpu"]
GPU_PLUGINS = resources.Resource.of(
    GPU.resource.api_version, GPU.kind, GPU.plural, namespaced=False
)
TIMING = {"lease_duration": 3.0, "renew_deadline": 2.0, "retry_period": 0.5}
WRITE_VERBS = ("create", "update", "patch", "delete")


@pytest.fixture(scope="module")
def crds(cluster: TestCluster) -> None:
    cluster.install_crds(ROOT / "deployments/operator/crd/bases")


@pytest.fixture
async def observer(cluster: TestCluster) -> AsyncIterator[client.HttpKubeClient]:
    kube = await client.connect(cluster.kubeconfig)
    try:
        yield kube
    finally:
        await kube.close()


@pytest.fixture
async def gpu_plugin(
    crds: None, observer: client.HttpKubeClient
) -> AsyncIterator[objects.JsonObject]:
    """A GPU resource for the test's operators to reconcile, deleted afterwards."""
    body = {
        "apiVersion": GPU.resource.api_version,
        "kind": GPU.kind,
        "metadata": {"name": f"elect-{uuid.uuid4().hex[:8]}"},
        "spec": {"nodeSelector": {"no-such-label": "x"}},
    }
    created = await observer.create(GPU_PLUGINS, body)
    try:
        yield created
    finally:
        with contextlib.suppress(errors.NotFound):
            await observer.delete(GPU_PLUGINS, objects.name(created))


def writes(kube: client.HttpKubeClient) -> int:
    return sum(kube.requests[verb] for verb in WRITE_VERBS)


async def holder(observer: client.HttpKubeClient, namespace: str) -> str | None:
    try:
        lease = await observer.get(resources.LEASES, election.LEASE_NAME, namespace)
    except errors.NotFound:
        return None
    return str((lease.get("spec") or {}).get("holderIdentity") or "")


@dataclasses.dataclass(frozen=True)
class Term:
    """One version of the Lease as a watch saw it."""

    holder: str
    acquired: datetime.datetime | None
    renewed: datetime.datetime | None
    duration: int


def _micro(stamp: str | None) -> datetime.datetime | None:
    return datetime.datetime.fromisoformat(stamp.replace("Z", "+00:00")) if stamp else None


@contextlib.asynccontextmanager
async def lease_history(
    observer: client.HttpKubeClient, namespace: str
) -> AsyncIterator[list[Term]]:
    """Every version of the Lease written while the block runs, in order (a watch sees each
    write: the order of holders is what proves a handover's cause, not how long it took)."""
    seen: list[Term] = []

    async def watch() -> None:
        stream = observer.watch(
            resources.LEASES,
            namespace,
            field_selector=f"metadata.name={election.LEASE_NAME}",
            timeout_seconds=600,
        )
        async with contextlib.aclosing(stream):
            async for event in stream:
                if event.type not in (
                    client.WatchEventType.ADDED,
                    client.WatchEventType.MODIFIED,
                ):
                    continue  # bookmarks carry no spec
                spec = event.object.get("spec") or {}
                term = Term(
                    str(spec.get("holderIdentity") or ""),
                    _micro(spec.get("acquireTime")),
                    _micro(spec.get("renewTime")),
                    int(spec.get("leaseDurationSeconds") or 0),
                )
                if not seen or seen[-1] != term:
                    seen.append(term)

    task = asyncio.create_task(watch())
    try:
        yield seen
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def holders(history: list[Term]) -> list[str]:
    """The holders in the order they held the Lease, repeats (renewals) folded."""
    order: list[str] = []
    for term in history:
        if not order or order[-1] != term.holder:
            order.append(term.holder)
    return order


def lost_lease_reasons(records: list[dict[str, Any]], identity: str) -> list[str]:
    return [
        str(r.get("why"))
        for r in records
        if r.get("msg") == "Lost Lease" and r.get("identity") == identity
    ]


# In-process replicas -------------------------------------------------------------------------
@dataclasses.dataclass
class Replica:
    identity: str
    manager: manager.Manager
    kube: client.HttpKubeClient
    election_kube: client.HttpKubeClient
    stop: asyncio.Event
    task: asyncio.Task[None]
    sent: list[client.RequestRecord]
    """Requests of the controllers' client."""
    sent_for_election: list[client.RequestRecord]


@contextlib.asynccontextmanager
async def replicas(
    cluster: TestCluster, namespace: str, count: int
) -> AsyncIterator[list[Replica]]:
    started: list[Replica] = []
    try:
        for index in range(count):
            identity = f"replica-{index}_{uuid.uuid4()}"
            sent: list[client.RequestRecord] = []
            sent_for_election: list[client.RequestRecord] = []
            kube = await client.connect(cluster.kubeconfig, request_hook=sent.append)
            election_kube = await client.connect(
                cluster.kubeconfig, request_hook=sent_for_election.append
            )
            options = manager.Options(
                health_probe_bind_address="0",
                webhook_port=0,
                leader_election=election.Config(namespace=namespace, identity=identity, **TIMING),
            )
            config = settings.Settings(plugin_namespace=namespace, devices=("gpu",))
            mgr = manager.Manager(config, options, kube, election_kube=election_kube)
            stop = asyncio.Event()
            task = asyncio.create_task(mgr.run(stop))
            started.append(
                Replica(identity, mgr, kube, election_kube, stop, task, sent, sent_for_election)
            )
        yield started
    finally:
        for replica in started:
            replica.stop.set()
        for replica in started:
            await replica.task
            await replica.kube.close()
            await replica.election_kube.close()


async def elected(observer: client.HttpKubeClient, namespace: str, among: list[Replica]) -> Replica:
    async def leader() -> Replica | None:
        identity = await holder(observer, namespace)
        found = next((r for r in among if r.identity == identity), None)
        return found if found is not None and found.manager.working else None

    return await eventually_async(leader, timeout=20, what="a replica to lead")


async def test_exactly_one_replica_leads_and_only_its_client_writes(
    cluster: TestCluster,
    namespace: str,
    observer: client.HttpKubeClient,
    gpu_plugin: objects.JsonObject,
) -> None:
    async with replicas(cluster, namespace, 2) as running:
        leader = await elected(observer, namespace, running)
        (follower,) = [r for r in running if r is not leader]
        ds_key = f"{namespace}/intel-gpu-plugin-{objects.name(gpu_plugin)}"

        async def reconciled() -> bool:
            return all(r.manager.daemonsets.get(ds_key) is not None for r in running)

        # The leader creates the DaemonSet; the follower's warm cache sees it too.
        await eventually_async(reconciled, timeout=30, what="the DaemonSet in both caches")

        assert writes(leader.kube) > 0
        assert writes(follower.kube) == 0
        assert leader.manager.working
        assert not follower.manager.working
        lease = await observer.get(resources.LEASES, election.LEASE_NAME, namespace)
        assert lease["spec"]["holderIdentity"] == leader.identity
        assert lease["spec"]["leaseDurationSeconds"] == 3
        # The Lease travels on the election clients only, and they carry nothing else.
        for replica in running:
            assert {r.resource for r in replica.sent_for_election} == {"leases"}
            assert "leases" not in {r.resource for r in replica.sent}

        async def renewed() -> bool:
            return leader.election_kube.requests["update"] > 0

        await eventually_async(renewed, timeout=30, what="a renewal")


async def test_graceful_stop_releases_and_the_follower_takes_over_at_once(
    cluster: TestCluster,
    namespace: str,
    observer: client.HttpKubeClient,
    gpu_plugin: objects.JsonObject,
    record_property: Any,
) -> None:
    async with replicas(cluster, namespace, 2) as running:
        leader = await elected(observer, namespace, running)
        (follower,) = [r for r in running if r is not leader]

        async with lease_history(observer, namespace) as history:
            await eventually_async(lambda: _seen(history), timeout=30, what="the Lease watched")
            stopped = time.monotonic()
            leader.stop.set()
            await leader.task

            async def took_over() -> bool:
                return await holder(observer, namespace) == follower.identity

            await eventually_async(took_over, timeout=60, interval=0.01, what="the takeover")
            takeover = time.monotonic() - stopped
            await eventually_async(lambda: _working(follower), timeout=60, interval=0.01)
            working = time.monotonic() - stopped
            await eventually_async(
                lambda: _seen(history, follower.identity), timeout=30, what="the new holder"
            )
        record_property("graceful_takeover_seconds", round(takeover, 3))
        record_property("graceful_takeover_to_workers_seconds", round(working, 3))

        # Handed over, not waited out: the leader released the Lease (empty holder, as
        # client-go writes it) and the follower took the released Lease, never an expired one
        # of the leader. The time it took is recorded, not bounded.
        assert holders(history)[-3:] == [leader.identity, "", follower.identity], history
        released = next(t for t in history if t.holder == "")
        assert released.duration == 1, released
        # The new leader writes: a spec change reaches the DaemonSet through it.
        before = writes(follower.kube)
        await observer.patch(GPU_PLUGINS, objects.name(gpu_plugin), {"spec": {"logLevel": 4}})

        async def followed() -> bool:
            return writes(follower.kube) > before

        await eventually_async(followed, timeout=30, what="the new leader to write")


async def _working(replica: Replica) -> bool:
    return replica.manager.working


async def _seen(history: list[Term], holder: str | None = None) -> bool:
    return any(holder is None or term.holder == holder for term in history)


async def test_overwritten_lease_stops_the_leaders_workers_at_once(
    cluster: TestCluster,
    namespace: str,
    observer: client.HttpKubeClient,
    gpu_plugin: objects.JsonObject,
    record_property: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="deviceplugin_operator.controller.election")
    async with replicas(cluster, namespace, 1) as running:
        (leader,) = running
        await elected(observer, namespace, running)
        lease = await observer.get(resources.LEASES, election.LEASE_NAME, namespace)
        lease["spec"]["holderIdentity"] = "intruder"
        lease["spec"]["renewTime"] = lease["spec"]["acquireTime"]

        await observer.replace(resources.LEASES, election.LEASE_NAME, lease, namespace)
        overwritten = time.monotonic()

        async def stopped_working() -> bool:
            return not leader.manager.working

        await eventually_async(stopped_working, timeout=60, interval=0.005)
        stopped = time.monotonic() - overwritten
        record_property("overwrite_to_stopped_workers_seconds", round(stopped, 3))
        # Stopped because it saw the other holder (the watch woke it, or its next renewal read
        # it), not because its renew deadline ran out; and before it could lead again.
        lost = [
            r.__dict__.get("why")
            for r in caplog.records
            if r.getMessage() == "Lost Lease" and r.__dict__.get("identity") == leader.identity
        ]
        assert lost[-1:] == ["the Lease is held by intruder"], lost
        assert await holder(observer, namespace) == "intruder"
        assert not leader.task.done()  # no exit: it campaigns again

        # The intruder never renews: after its 3 s lease the replica leads and works again.
        async def leads_again() -> bool:
            return await holder(observer, namespace) == leader.identity and leader.manager.working

        await eventually_async(leads_again, timeout=60, what="the replica to lead again")
        record_property(
            "overwrite_to_leading_again_seconds", round(time.monotonic() - overwritten, 3)
        )


# Processes -----------------------------------------------------------------------------------
PROCESS_TIMING = (
    "--leader-elect-lease-duration=3s",
    "--leader-elect-renew-deadline=2s",
    "--leader-elect-retry-period=500ms",
)


@pytest.fixture
def started(crds: None) -> Iterator[list[Operator]]:
    """``deviceplugin-operator run --leader-elect`` processes of a test (append), killed after."""
    processes: list[Operator] = []
    yield processes
    for process in processes:
        process.kill()


def start_elector(
    cluster: TestCluster, namespace: str, tmp_path: pathlib.Path, started: list[Operator]
) -> Operator:
    process = start_operator(
        cluster.kubeconfig,
        namespace,
        tmp_path / f"operator-{len(started)}.log",
        devices=("gpu",),
        leader_elect=PROCESS_TIMING,
    )
    started.append(process)
    eventually(process.identity, timeout=60, what=f"operator {len(started)} to campaign")
    return process


async def test_processes_take_over_after_kill_and_sigterm_and_survive_a_lost_lease(
    cluster: TestCluster,
    namespace: str,
    tmp_path: pathlib.Path,
    observer: client.HttpKubeClient,
    started: list[Operator],
    record_property: Any,
) -> None:
    def start() -> Operator:
        return start_elector(cluster, namespace, tmp_path, started)

    first, second = await asyncio.to_thread(start), await asyncio.to_thread(start)

    async def leader() -> Operator | None:
        identity = await holder(observer, namespace)
        return next((p for p in (first, second) if p.identity() == identity), None)

    killed = await eventually_async(leader, timeout=60, what="a process to lead")
    survivor = second if killed is first else first
    killed_identity, survivor_identity = killed.identity(), survivor.identity()

    async with lease_history(observer, namespace) as history:
        await eventually_async(lambda: _seen(history), timeout=30, what="the Lease watched")
        # kill -9: no release; the survivor waits out the lease it last saw renewed.
        t0 = time.monotonic()
        killed.popen.send_signal(signal.SIGKILL)

        async def survivor_leads() -> bool:
            return await holder(observer, namespace) == survivor_identity

        await eventually_async(survivor_leads, timeout=60, interval=0.05, what="takeover")
        after_kill = time.monotonic() - t0
        await eventually_async(
            lambda: _seen(history, survivor_identity), timeout=30, what="the survivor's term"
        )
    record_property("kill_takeover_seconds", round(after_kill, 3))
    # Waited out, never released: the killed leader's last term went straight to the survivor,
    # acquired no earlier than the lease duration after the killed leader's last renewal (the
    # survivor counts it from when it saw that renewal, which came after its renewTime). The
    # time it took is recorded, not bounded above.
    assert holders(history)[-2:] == [killed_identity, survivor_identity], history
    last = [t for t in history if t.holder == killed_identity][-1]
    taken = next(t for t in history if t.holder == survivor_identity)
    assert last.renewed is not None
    assert taken.acquired is not None
    assert taken.acquired - last.renewed >= datetime.timedelta(seconds=last.duration), (
        last,
        taken,
    )

    # SIGTERM: the survivor releases; a fresh third process takes the released Lease.
    third = await asyncio.to_thread(start)
    third_identity = third.identity()
    async with lease_history(observer, namespace) as history:
        await eventually_async(lambda: _seen(history), timeout=30, what="the Lease watched")
        t0 = time.monotonic()
        survivor.popen.send_signal(signal.SIGTERM)

        async def third_leads() -> bool:
            return await holder(observer, namespace) == third_identity

        await eventually_async(third_leads, timeout=60, interval=0.02, what="takeover")
        after_term = time.monotonic() - t0
        await eventually_async(
            lambda: _seen(history, third_identity), timeout=30, what="the third's term"
        )
    record_property("sigterm_takeover_seconds", round(after_term, 3))
    assert holders(history)[-3:] == [survivor_identity, "", third_identity], history
    assert await asyncio.to_thread(survivor.popen.wait, 60) == 0
    assert "Released Lease" in survivor.messages()

    # Another identity overwrites the Lease: the leader stops reconciling at once but does not
    # exit (no crash loop, webhooks keep serving) and leads again once the intruder's lease
    # runs out.
    lease = await observer.get(resources.LEASES, election.LEASE_NAME, namespace)
    lease["spec"]["holderIdentity"] = "intruder"
    await observer.replace(resources.LEASES, election.LEASE_NAME, lease, namespace)
    t0 = time.monotonic()

    async def lost_and_led_again() -> bool:
        return (
            "Stopped reconciling: leader election lost; campaigning again" in third.messages()
            and await holder(observer, namespace) == third_identity
        )

    await eventually_async(lost_and_led_again, timeout=60, what="the leader to lead again")
    record_property("overwrite_to_leading_again_seconds", round(time.monotonic() - t0, 3))
    assert third.alive
    lost = lost_lease_reasons(third.records(), str(third_identity))
    assert lost[-1:] == ["the Lease is held by intruder"], lost
