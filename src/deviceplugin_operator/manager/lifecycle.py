"""When each part of the operator runs: the order of start-up and shutdown.

Start-up: probes, metrics and the admission server (with its certificate), then the informers;
then, with leader election, the campaign; once leading and once the DaemonSet and Pod caches
are filled, the reconcile workers, if the replica still leads at that moment (a first list
can take longer than the renew deadline). Shutdown runs backwards: workers first, then the
lease is released, then everything else.

With leader election every replica serves probes, metrics and webhooks and keeps its informers
warm, so that a follower which takes over reconciles at once; only the leader runs reconcile
workers, the code that writes. Losing the lease cancels the workers in the same step, before
anything else runs; then the replica campaigns again as a follower, with its caches warm and
its webhooks serving. controller-runtime (and the reference) exits instead: under a starved
apiserver that becomes a crash loop (the reference's issue #476) in which every restart
re-lists everything and the webhooks go down with the process. A graceful stop ends the
workers first and then releases the lease.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable

from deviceplugin_operator import settings
from deviceplugin_operator.controller.metrics import recording
from deviceplugin_operator.kube import client, objects
from deviceplugin_operator.manager import composition, metrics_endpoint, options, startup

log = logging.getLogger(__name__)


class Manager(composition.Parts):
    """The parts of one operator process (``composition.Parts``) and when each of them runs."""

    def __init__(
        self,
        config: settings.Settings,
        options: options.Options,
        kube: client.KubeClient,
        *,
        election_kube: client.KubeClient | None = None,
        metrics: recording.Metrics | None = None,
    ):
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = False
        self._handlers_added = False
        super().__init__(
            config,
            options,
            kube,
            election_kube=election_kube,
            metrics=metrics,
            on_leading=self._leading_changed,
        )

    @property
    def working(self) -> bool:
        """Whether any reconcile worker runs."""
        return any(not task.done() for task in self._tasks)

    async def refresh_certificate(self) -> None:
        """Check the self-managed certificate once (what the periodic check does)."""
        await self.webhook_certificates.refresh()

    async def run(self, stop: asyncio.Event) -> None:
        """Serve, and reconcile while leading, until ``stop`` is set.

        A lost lease stops the workers at once (``_leading_changed``); the replica then
        campaigns again and, leading again, restarts them on its warm caches.
        """
        ended = asyncio.Event()
        stopping = asyncio.create_task(_set_when(stop, ended))
        holding: asyncio.Task[str] | None = None
        try:
            await self.serve()
            if self.elector is None:
                if await _unless(ended, self.start_workers()):
                    await ended.wait()
                return
            while not ended.is_set():
                if not await _unless(ended, self.elector.acquire()):
                    return
                lost = asyncio.Event()
                holding = asyncio.create_task(self.elector.hold(), name="lease renewal")
                holding.add_done_callback(lambda _, lost=lost: lost.set())  # type: ignore[misc]
                if await _unless(ended, self.start_workers()):
                    await _unless(ended, lost.wait())
                if ended.is_set():
                    return
                self._log_lost(holding)
                holding = None
                self.elector.step_down()  # already done unless the renewal crashed
                self.cancel_workers()
                await self._workers_ended()
        finally:
            stopping.cancel()
            if holding is not None and not holding.done():
                holding.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await holding
            await self.stop()

    def _log_lost(self, holding: asyncio.Task[str]) -> None:
        crash = None if holding.cancelled() else holding.exception()
        why = f"renewing the Lease crashed: {crash!r}" if crash else holding.result()
        log.warning(
            "Stopped reconciling: leader election lost; campaigning again", extra={"why": why}
        )

    async def _workers_ended(self) -> None:
        """Wait for the cancelled workers of the last term (they hold no key any more)."""
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = [task for task in self._tasks if not task.done()]

    async def start(self) -> None:
        """Serve and start the workers at once, without electing a leader."""
        await self.serve()
        await self.start_workers()

    async def serve(self) -> None:
        """Start what every replica runs: probes, metrics, webhooks and the informers."""
        options = self.options
        address = options.health_probe_bind_address
        with startup.listening("--health-probe-bind-address", address):
            await self.probes.start(address)
        await metrics_endpoint.start(self.metrics_server, options)
        if options.webhook_port:
            context = await self.webhook_certificates.start()
            address = f"{options.webhook_host}:{options.webhook_port}"
            with startup.listening("--webhook-host, --webhook-port", address):
                await self.admission.start(options.webhook_host, options.webhook_port, context)
        for inf in self.informers:
            inf.start()

    async def start_workers(self) -> bool:
        """Start the reconcile workers once the DaemonSet and Pod caches are filled, unless
        the replica stopped leading meanwhile; whether they were started.

        The node cache may still be filling (at 1,000 nodes its list is the longest of the
        start): until it is, statuses that show plugin pods wait (``nodes_pending``), and
        every resource is queued again once it is filled."""
        # A reconcile against an empty cache would try to create DaemonSets that exist.
        await self.daemonsets.wait_synced()
        await self.pods.wait_synced()
        nodes_pending = self.nodes_unreadable is None and not self.nodes.synced
        # Nothing below awaits: the election's callbacks cannot run between this check and
        # the workers' creation, so a loss either stops the start here or cancels them.
        if self._stopping:
            return False
        if self.elector is not None and not self.elector.still_leading:
            log.info("Not starting controllers: leader election lost while the caches filled")
            return False
        for controller in self.controllers:
            controller.queue.reopen()
            controller.reconciler.nodes_pending = nodes_pending
        if not self._handlers_added:
            # Queues fill only from here (each handler first gets every cached object), as
            # controller-runtime starts its sources with its controllers: a follower's queues
            # stay empty instead of showing a backlog nobody works on.
            self._handlers_added = True
            for inf, handler in self.handlers:
                inf.add_handler(handler)
        else:
            # Leading again: the handlers are in place; every resource is looked at anew.
            for controller in self.controllers:
                for resource in controller.reconciler.caches.plugins.list():
                    controller.queue.add(objects.name(resource))
        for controller in self.controllers:
            for index in range(controller.workers):
                self._tasks.append(
                    asyncio.create_task(controller.work(), name=f"{controller.name}-{index}")
                )
        if nodes_pending:
            self._tasks.append(asyncio.create_task(self._nodes_listed(), name="nodes listed"))
        log.info("Started controllers", extra={"devices": ",".join(self.config.devices)})
        # The start-up's imports and first lists are freed heap by now, reconciles or not.
        self.heap_trimmer.worked()
        return True

    async def _nodes_listed(self) -> None:
        """Once the node cache is filled, statuses wait no more: every resource is queued."""
        await self.nodes.wait_synced()
        for controller in self.controllers:
            controller.reconciler.nodes_pending = False
            for resource in controller.reconciler.caches.plugins.list():
                controller.queue.add(objects.name(resource))

    def cancel_workers(self) -> None:
        """Stop every reconcile now: synchronous, so nothing else runs in between."""
        for controller in self.controllers:
            controller.queue.shutdown()
        for task in self._tasks:
            task.cancel()

    async def stop(self) -> None:
        """Stop the workers, then release the lease if held, then everything else."""
        self._stopping = True
        self.cancel_workers()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self.webhook_certificates.stop()
        self.heap_trimmer.stop()
        await self.recorder.flush()
        if self.elector is not None:
            await self.elector.release()
        for inf in self.informers:
            await inf.stop()
        await self.admission.stop()
        await self.metrics_server.stop()
        await self.probes.stop()

    def _leading_changed(self, leading: bool) -> None:
        if not leading:
            self.cancel_workers()


async def _set_when(source: asyncio.Event, target: asyncio.Event) -> None:
    await source.wait()
    target.set()


async def _unless(ended: asyncio.Event, work: Awaitable[object]) -> bool:
    """Await ``work`` unless ``ended`` is set first (then cancel it); whether it finished."""
    task = asyncio.ensure_future(work)
    waiter = asyncio.create_task(ended.wait())
    try:
        await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiter.cancel()
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    if task.cancelled():
        return False
    task.result()
    return True
