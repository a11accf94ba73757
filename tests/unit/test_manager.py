"""The manager on the in-memory API: reconcile results in the metrics, and leader election
deciding who runs workers (the follower never does, the leader stops at once on loss)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from prometheus_client import parser

import fakes
from deviceplugin_operator import devices, manager, settings
from deviceplugin_operator.controller import election
from deviceplugin_operator.controller.metrics import recording
from deviceplugin_operator.kube import errors, resources
from polling import eventually_async

LEASE_NS = "operators"
CONFIG = settings.Settings(plugin_namespace="plugins", devices=("gpu",))
GPU = devices.KINDS["gpu"]
GPU_PLUGINS = resources.Resource.of(
    GPU.resource.api_version, GPU.kind, GPU.plural, namespaced=False
)


async def with_a_gpu_plugin() -> fakes.FakeKubeClient:
    kube = fakes.FakeKubeClient()
    await kube.create(GPU_PLUGINS, {"metadata": {"name": "gpu"}, "spec": {}})
    kube.reset_counts()
    return kube


def sample(metrics: recording.Metrics, metric: str, **labels: str) -> float | None:
    body, _ = metrics.exposition()
    for family in parser.text_string_to_metric_families(body.decode()):
        for found in family.samples:
            if found.name == metric and found.labels == labels:
                return found.value
    return None


class StubReconciler:
    """Answers each name with a scripted outcome."""

    kind = devices.KINDS["gpu"]

    def __init__(self, outcomes: dict[str, Any]) -> None:
        self.outcomes = outcomes

    async def reconcile(self, name: str) -> float | None:
        outcome = self.outcomes[name]
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome  # type: ignore[no-any-return]


async def test_reconcile_outcomes_become_controller_runtime_results() -> None:
    metrics = recording.Metrics()
    outcomes = {
        "ok": None,
        "later": 30.0,
        "stale": errors.Conflict(409, "Conflict", "modified"),
        "denied": errors.Forbidden(403, "Forbidden", "no"),
        "bug": RuntimeError("boom"),
    }
    controller = manager.Controller(StubReconciler(outcomes), 1, metrics)  # type: ignore[arg-type]
    worker = asyncio.create_task(controller.work())
    for name in outcomes:
        controller.queue.add(name)

    def total(result: str) -> float | None:
        return sample(
            metrics,
            "controller_runtime_reconcile_total",
            controller="gpudeviceplugin",
            result=result,
        )

    async def counted() -> bool:
        # Failures are retried with backoff, so their counts keep growing.
        return (
            total("success") == 1
            and total("requeue_after") == 1
            and (total("requeue") or 0) >= 1
            and (total("error") or 0) >= 2
        )

    await eventually_async(counted, timeout=5, interval=0.01)
    controller.queue.shutdown()
    worker.cancel()
    await asyncio.gather(worker, return_exceptions=True)

    errors_total = sample(
        metrics, "controller_runtime_reconcile_errors_total", controller="gpudeviceplugin"
    )
    assert errors_total == total("error")
    labels = {"name": "gpudeviceplugin", "controller": "gpudeviceplugin"}
    work_count = sample(metrics, "workqueue_work_duration_seconds_count", **labels)
    assert work_count is not None
    assert work_count >= 5
    assert (sample(metrics, "workqueue_retries_total", **labels) or 0) >= 3
    assert sample(metrics, "controller_runtime_active_workers", controller="gpudeviceplugin") == 0


class Replica:
    def __init__(self, mgr: manager.Manager, stop: asyncio.Event, task: asyncio.Task[None]):
        self.manager = mgr
        self.stop = stop
        self.task = task


@contextlib.asynccontextmanager
async def replica(
    election_kube: fakes.FakeKubeClient | None,
    identity: str = "me",
    kube: fakes.FakeKubeClient | None = None,
    leader_election: election.Config | None = None,
) -> AsyncIterator[Replica]:
    if election_kube is not None and leader_election is None:
        leader_election = election.Config(namespace=LEASE_NS, identity=identity)
    options = manager.Options(
        health_probe_bind_address="0", webhook_port=0, leader_election=leader_election
    )
    mgr = manager.Manager(
        CONFIG, options, kube or fakes.FakeKubeClient(), election_kube=election_kube
    )
    stop = asyncio.Event()
    task = asyncio.create_task(mgr.run(stop))
    try:
        yield Replica(mgr, stop, task)
    finally:
        stop.set()
        await task


async def working(mgr: manager.Manager) -> bool:
    return mgr.working


def leader_status(mgr: manager.Manager) -> float | None:
    return sample(mgr.metrics, "leader_election_master_status", name=election.LEASE_NAME)


async def test_without_election_the_manager_leads_at_once() -> None:
    async with replica(None) as running:
        await eventually_async(lambda: working(running.manager), timeout=5)
        assert leader_status(running.manager) is None


async def test_the_leader_runs_workers_and_releases_the_lease_when_stopped() -> None:
    leases = fakes.FakeKubeClient()
    async with replica(leases, kube=await with_a_gpu_plugin()) as running:
        await eventually_async(lambda: working(running.manager), timeout=5)
        assert leader_status(running.manager) == 1
        (controller,) = running.manager.controllers

        async def reconciled() -> bool:
            return controller.queue.adds_total > 0 and running.manager.kube.writes > 0  # type: ignore[attr-defined]

        await eventually_async(reconciled, timeout=5)
        running.stop.set()
        await running.task

    (lease,) = leases.stored(resources.LEASES)
    assert lease["spec"]["holderIdentity"] == ""
    assert not running.manager.working


async def test_a_follower_never_starts_workers() -> None:
    leases = fakes.FakeKubeClient()
    await leases.create(
        resources.LEASES,
        {
            "metadata": {"name": election.LEASE_NAME, "namespace": LEASE_NS},
            "spec": {"holderIdentity": "other", "leaseDurationSeconds": 15},
        },
    )
    async with replica(leases, kube=await with_a_gpu_plugin()) as running:
        mgr = running.manager
        assert mgr.elector is not None
        elector = mgr.elector

        async def following() -> bool:
            return mgr.synced() and elector.holder == "other"

        await eventually_async(following, timeout=5)
        assert not mgr.working
        # Warm caches, empty queues: nothing waits for workers that never come.
        assert mgr.plugin_informers[0].get("gpu") is not None
        assert [c.queue.adds_total for c in mgr.controllers] == [0]
        assert leader_status(mgr) == 0
        assert mgr.kube.writes == 0  # type: ignore[attr-defined]
    (lease,) = leases.stored(resources.LEASES)
    assert lease["spec"]["holderIdentity"] == "other"


async def test_losing_the_lease_cancels_the_workers_at_once_and_campaigns_again() -> None:
    leases = fakes.FakeKubeClient()
    async with replica(leases, kube=await with_a_gpu_plugin()) as running:
        mgr = running.manager
        await eventually_async(lambda: working(mgr), timeout=5)
        (lease,) = leases.stored(resources.LEASES)
        lease["spec"]["holderIdentity"] = "intruder"

        await leases.replace(resources.LEASES, election.LEASE_NAME, lease, LEASE_NS)
        overwritten = time.monotonic()

        async def stopped() -> bool:
            return not mgr.working

        await eventually_async(stopped, timeout=1, interval=0.01)
        assert time.monotonic() - overwritten < 1.0
        assert leader_status(mgr) == 0
        assert not running.task.done()  # no exit: a follower with warm caches
        (lease,) = leases.stored(resources.LEASES)
        assert lease["spec"]["holderIdentity"] == "intruder"

        # The intruder lets go: this replica leads again and looks at every resource anew.
        (controller,) = mgr.controllers
        adds = controller.queue.adds_total
        lease["spec"]["holderIdentity"] = ""
        await leases.replace(resources.LEASES, election.LEASE_NAME, lease, LEASE_NS)
        await eventually_async(lambda: working(mgr), timeout=10)
        assert leader_status(mgr) == 1
        await eventually_async(lambda: _async_value(controller.queue.adds_total > adds), timeout=5)
    (lease,) = leases.stored(resources.LEASES)
    assert lease["spec"]["holderIdentity"] == ""  # released on stop


async def _async_value(value: bool) -> bool:
    return value


class SlowFirstList(fakes.FakeKubeClient):
    """Holds every DaemonSet LIST until ``listed`` is set (a first list slower than the renew
    deadline) and notes, for each write, whether the replica led when it arrived."""

    def __init__(self, parsing: float = 0.0) -> None:
        super().__init__()
        self.parsing = parsing
        self.listed = asyncio.Event()
        self.leading: Callable[[], bool] = lambda: True
        self.writes_while_not_leading: list[tuple[str, str]] = []

    async def list(self, resource: resources.Resource, *args: Any, **kwargs: Any) -> Any:
        if resource == resources.DAEMON_SETS:
            await self.listed.wait()
            time.sleep(self.parsing)  # noqa: ASYNC251 - a huge answer parsed on the loop, blocking it
        return await super().list(resource, *args, **kwargs)

    def _request(
        self, verb: str, resource: resources.Resource, namespace: str | None, name: str | None
    ) -> None:
        if verb in fakes.WRITE_VERBS and not self.leading():
            self.writes_while_not_leading.append((verb, resource.plural))
        super()._request(verb, resource, namespace, name)


async def test_a_lease_lost_while_the_caches_fill_starts_no_worker() -> None:
    leases = fakes.FakeKubeClient()
    kube = SlowFirstList()
    await kube.create(GPU_PLUGINS, {"metadata": {"name": "gpu"}, "spec": {}})
    kube.reset_counts()
    async with replica(leases, kube=kube) as running:
        mgr = running.manager
        assert mgr.elector is not None
        elector = mgr.elector
        kube.leading = lambda: elector.leading
        await eventually_async(lambda: _async_value(elector.leading), timeout=5, interval=0.01)

        # While the DaemonSet list hangs, another identity takes the Lease over.
        (lease,) = leases.stored(resources.LEASES)
        lease["spec"]["holderIdentity"] = "intruder"
        await leases.replace(resources.LEASES, election.LEASE_NAME, lease, LEASE_NS)
        await eventually_async(lambda: _async_value(not elector.leading), timeout=5, interval=0.01)

        # The list answers; the replica, no longer leading, goes back to campaigning.
        leases.reset_counts()
        kube.listed.set()
        await eventually_async(lambda: _async_value(mgr.synced()), timeout=5, interval=0.01)
        await eventually_async(
            lambda: _async_value(leases.requests["get"] > 0), timeout=10, interval=0.01
        )
        assert kube.writes_while_not_leading == [], kube.writes_while_not_leading
        assert kube.writes == 0
        assert not mgr.working
        assert [c.queue.adds_total for c in mgr.controllers] == [0]
        (lease,) = leases.stored(resources.LEASES)
        assert lease["spec"]["holderIdentity"] == "intruder"


async def test_a_renew_deadline_passed_while_the_loop_was_blocked_starts_no_worker(
    caplog: pytest.LogCaptureFixture,
) -> None:
    leases = fakes.FakeKubeClient()
    # Longer than the renew deadline plus a retry period: whenever the last renewal was, the
    # deadline has passed when the loop runs again.
    kube = SlowFirstList(parsing=1.6)
    await kube.create(GPU_PLUGINS, {"metadata": {"name": "gpu"}, "spec": {}})
    kube.reset_counts()
    config = election.Config(
        namespace=LEASE_NS, identity="me", lease_duration=2, renew_deadline=1, retry_period=0.5
    )
    async with replica(leases, kube=kube, leader_election=config) as running:
        mgr = running.manager
        assert mgr.elector is not None
        elector = mgr.elector
        await eventually_async(lambda: _async_value(elector.leading), timeout=5, interval=0.01)

        # The DaemonSet list answers, and parsing it blocks the loop past the renew deadline:
        # the cache is filled before the renewal's timer can run and notice.
        kube.leading = lambda: elector.still_leading
        kube.listed.set()

        async def lost() -> bool:
            return any(record.message == "Lost Lease" for record in caplog.records)

        await eventually_async(lost, timeout=5, interval=0.01)
        await eventually_async(lambda: _async_value(mgr.synced()), timeout=5, interval=0.01)
        # Leading again afterwards (nobody else holds the Lease) is fine; writing before is not.
        assert kube.writes_while_not_leading == [], kube.writes_while_not_leading
