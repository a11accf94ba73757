"""Runs the operator: informers, one work queue and reconciler per enabled kind, probes,
metrics, admission webhooks and leader election.

What is watched is only what is ours: the resources of the enabled kinds, and DaemonSets and
Pods only in the plugin namespace and only with the ``app: intel-<dev>-plugin`` labels (a
server-side label selector), so memory does not grow with unrelated Pods in the cluster. With
FPGA, the AcceleratorFunctions and FpgaRegions of every namespace (small objects that users
create for the FPGA Pod mutator) feed its mappings; /readyz waits for their first lists too.

Events on a DaemonSet or a Pod are mapped to the resource that controls it and queue that
resource's name; a periodic resync re-queues every resource (level-triggered, no API call).

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
import dataclasses
import logging
import pathlib
import ssl
import time
from collections.abc import Awaitable, Mapping, Sequence
from typing import Any, Protocol

from deviceplugin_operator import devices, settings
from deviceplugin_operator.admission import errors as admission_errors
from deviceplugin_operator.admission import fpga, rules, server
from deviceplugin_operator.api import fpga as fpga_api
from deviceplugin_operator.controller import (
    certificates,
    election,
    events,
    informer,
    probes,
    queue,
    reconciler,
)
from deviceplugin_operator.controller.metrics import authorizing, recording, serving
from deviceplugin_operator.kube import client, errors, objects, resources
from deviceplugin_operator.reconcile import status

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Options:
    """How the process runs (as opposed to what it reconciles: ``settings.Settings``)."""

    kubeconfig: str | None = None
    """Path of a kubeconfig; None for in-cluster configuration."""

    health_probe_bind_address: str = ":8081"
    """Address of /healthz and /readyz; "0" disables them."""

    metrics_bind_address: str = "0"
    """Address of /metrics; "0" disables it. Off by default here so that processes and tests
    embedding a manager never collide on a port; the command's default is ":8080"."""

    metrics_secure: bool = False
    """Serve /metrics over HTTPS, each scrape authorised by TokenReview/SubjectAccessReview."""

    metrics_cert_path: str | None = None
    """Directory of the metrics serving certificate; None for a self-signed one."""

    metrics_cert_name: str = "tls.crt"
    metrics_cert_key: str = "tls.key"

    leader_election: election.Config | None = None
    """Elect a leader on this Lease before reconciling; None to lead at once."""

    resync_period: float = 600.0
    """Seconds between re-reconciles of every resource from the cache."""

    workers: int = 4
    """Concurrent reconciles per kind (of different resources: a key is never reconciled
    twice at once). More than controller-runtime's 1, so that a resource's change never
    waits behind the status write of another one."""

    webhook_port: int = 9443
    """Port of the HTTPS admission server; 0 disables it."""

    webhook_host: str = "0.0.0.0"  # noqa: S104 - pods serve the apiserver on their IP
    """Address the admission server binds."""

    webhook_cert_dir: str = "/tmp/k8s-webhook-server/serving-certs"  # noqa: S108
    """Where mounted certificates are read, and self-managed ones written for the ssl module."""

    webhook_certs: str = "self-managed"
    """``self-managed`` (the operator's own CA in a Secret) or ``mounted`` (cert-manager,
    OpenShift service CA: ``tls.crt``/``tls.key`` in ``webhook_cert_dir``, reloaded)."""

    webhook_hosts: tuple[str, ...] = ()
    """Names and addresses of the serving certificate (self-managed); empty → the Service's."""

    webhook_secret: str = "intel-deviceplugins-webhook-server-cert"  # noqa: S105 - a name
    """Secret holding the self-managed CA and serving certificate."""

    webhook_configuration_prefix: str = "intel-deviceplugins-"
    """Prefix of the Mutating/ValidatingWebhookConfiguration names whose caBundle is ours."""

    webhook_service: str = "intel-deviceplugins-webhook-service"
    """Service in front of the webhook server (names of the self-managed certificate)."""

    operator_namespace: str = "inteldeviceplugins-system"
    """Namespace of the operator itself (certificate Secret)."""

    enable_http2: bool = False
    """Offer HTTP/2 by ALPN on the webhook server (off: the HTTP/2 rapid-reset class of bugs);
    the metrics server speaks HTTP/1.1 only."""

    certificate_check_period: float = 10.0
    """Seconds between checks of the self-managed certificate (renewal, deleted Secret, a CA
    bundle lost to a re-applied webhook configuration): the webhooks fail closed, so a broken
    chain blocks resources and SGX/FPGA pods until the next check. A check of an unchanged
    state is three GETs."""


def webhook_hosts(options: Options) -> tuple[str, ...]:
    """Names of the self-managed serving certificate: ``--webhook-cert-hosts``, else those of
    the webhook Service that fit in a certificate."""
    return options.webhook_hosts or certificates.service_hosts(
        options.webhook_service, options.operator_namespace
    )


def plugin_label_selector(device_names: Sequence[str]) -> str:
    """``app in (intel-gpu-plugin, ...)``: the DaemonSets and Pods of the enabled kinds."""
    names = ",".join(sorted(devices.KINDS[name].base_name for name in device_names))
    return f"app in ({names})"


_CHANGES = frozenset({informer.EventType.ADDED, informer.EventType.MODIFIED})


class Controller:
    """One kind's queue, reconciler and workers."""

    def __init__(
        self,
        rec: reconciler.Reconciler,
        workers: int,
        metrics: recording.Metrics | None = None,
    ):
        self.reconciler = rec
        self.name = rec.kind.kind.lower()
        """controller-runtime's name for the controller of this kind (``gpudeviceplugin``)."""
        registry = metrics or recording.Metrics()
        self.metrics = registry.controller(self.name, workers)
        self.queue: queue.WorkQueue[str] = queue.WorkQueue(self.name, observer=self.metrics)
        registry.add_queue(self.name, self.queue)
        self.workers = workers

    def on_plugin(
        self,
        kind: informer.EventType,
        obj: objects.JsonObject,
        old: objects.JsonObject | None,
    ) -> None:
        name = objects.name(obj)
        if kind is informer.EventType.MODIFIED and self.reconciler.is_echo(name, name, obj):
            return  # our own status write coming back
        self.queue.add(name)

    def on_daemonset(
        self,
        kind: informer.EventType,
        obj: objects.JsonObject,
        old: objects.JsonObject | None,
    ) -> None:
        owner = self.reconciler.owner_of_daemonset(obj)
        if owner is not None and kind is informer.EventType.ADDED:
            early = self.reconciler.caches.pods.by_index(reconciler.POD_OWNER, objects.uid(obj))
            if early:
                # Pods seen before their DaemonSet (two watch streams) could not be traced to
                # a resource until now: its status and its neighbours' overlap count them now.
                self.queue.add(owner)
                self._queue_residents({node for pod in early for node in reconciler.pod_node(pod)})
        if kind in _CHANGES and owner and self.reconciler.is_echo(owner, objects.key(obj), obj):
            return  # our own create or update coming back
        if owner is not None:
            self.queue.add(owner)
        if old is not None and (previous := self.reconciler.owner_of_daemonset(old)) is not None:
            self.queue.add(previous)

    def on_pod(
        self,
        kind: informer.EventType,
        obj: objects.JsonObject,
        old: objects.JsonObject | None,
    ) -> None:
        if (
            kind is informer.EventType.MODIFIED
            and old is not None
            and status.pod_inputs(obj) == status.pod_inputs(old)
        ):
            # Most pod updates (conditions, IPs, readiness, which the DaemonSet's status
            # counts and its own event brings) change nothing the resource's status shows.
            return
        owner = self.reconciler.owner_of_pod(obj)
        if owner is None:
            return
        self.queue.add(owner)
        node = (obj.get("spec") or {}).get("nodeName")
        old_node = None if old is None else (old.get("spec") or {}).get("nodeName")
        if kind is informer.EventType.DELETED or node != old_node:
            # Where a plugin runs decides the overlap condition of the other resources with
            # a plugin on the same node, not only of the pod's own.
            self._queue_residents({str(where) for where in (node, old_node) if where})

    def _queue_residents(self, nodes: set[str]) -> None:
        """Queue the resources of this kind with a plugin pod on any of ``nodes``."""
        pods = self.reconciler.caches.pods
        for where in nodes:
            for neighbour in pods.by_index(reconciler.POD_NODE, where):
                if (other := self.reconciler.owner_of_pod(neighbour)) is not None:
                    self.queue.add(other)

    async def work(self) -> None:
        while True:
            try:
                name = await self.queue.get()
            except queue.ShutDown:
                return
            started = time.monotonic()
            result: str | None = None
            self.metrics.started()
            try:
                requeue = await self.reconciler.reconcile(name)
            except errors.Conflict:
                # The cache was behind the server; the watch brings the newer object soon.
                result = "requeue"
                self.queue.add_rate_limited(name)
            except errors.KubeError as error:
                result = "error"
                log.warning(
                    "Reconcile failed",
                    extra={
                        "kind": self.reconciler.kind.kind,
                        "resource": name,
                        "error": str(error),
                    },
                )
                self.queue.add_rate_limited(name)
            except Exception:
                result = "error"
                log.exception(
                    "Reconcile crashed", extra={"kind": self.reconciler.kind.kind, "resource": name}
                )
                self.queue.add_rate_limited(name)
            else:
                result = "success"
                self.queue.forget(name)
                if requeue is not None:
                    result = "requeue_after"
                    self.queue.add_after(name, requeue)
            finally:
                self.queue.done(name)
                self.metrics.finished(result, time.monotonic() - started)


class Manager:
    """Everything one operator process runs, wired together.

    ``kube`` carries the controllers' traffic; ``election_kube``, required with leader
    election, must be a client of its own so that renewals never queue behind that traffic.
    """

    def __init__(
        self,
        config: settings.Settings,
        options: Options,
        kube: client.KubeClient,
        *,
        election_kube: client.KubeClient | None = None,
        metrics: recording.Metrics | None = None,
    ):
        self.config = config
        self.options = options
        self.kube = kube
        self.metrics = metrics or recording.Metrics()
        selector = plugin_label_selector(config.devices)
        namespace = config.plugin_namespace
        self.daemonsets = informer.Informer(
            kube,
            resources.DAEMON_SETS,
            namespace=namespace,
            label_selector=selector,
            indexers=reconciler.DAEMONSET_INDEXERS,
        )
        self.pods = informer.Informer(
            kube,
            resources.PODS,
            namespace=namespace,
            label_selector=selector,
            indexers=reconciler.POD_INDEXERS,
            transform=status.pod_essentials,
        )
        self.recorder = events.Recorder(kube)
        self.plugin_informers: list[informer.Informer] = []
        self.controllers: list[Controller] = []
        self._handlers: list[tuple[informer.Informer, informer.Handler]] = []
        for name in config.devices:
            kind = devices.KINDS[name]
            plugins = informer.Informer(
                kube,
                resources.Resource.of(
                    kind.resource.api_version, kind.kind, kind.plural, namespaced=False
                ),
                resync_period=options.resync_period,
            )
            caches = reconciler.Caches(plugins=plugins, daemonsets=self.daemonsets, pods=self.pods)
            controller = Controller(
                reconciler.Reconciler(kind, config, kube, caches, recorder=self.recorder),
                options.workers,
                self.metrics,
            )
            self._handlers += [
                (plugins, controller.on_plugin),
                (self.daemonsets, controller.on_daemonset),
                (self.pods, controller.on_pod),
            ]
            self.metrics.add_statuses(kind.kind, plugins.list)
            self.plugin_informers.append(plugins)
            self.controllers.append(controller)
        self.fpga_mappings = fpga.Mappings()
        self.mapping_informers: list[informer.Informer] = []
        if "fpga" in config.devices:
            self.mapping_informers = _mapping_informers(kube, self.fpga_mappings)
        self.probes = probes.ProbeServer()
        # With FPGA this includes the mappings: no pod is judged against half of them.
        self.probes.checks["informers-synced"] = self.synced
        self.admission = server.AdmissionServer(
            [devices.KINDS[name] for name in config.devices],
            context_provider=self._warning_context,
            fpga_mappings=self.fpga_mappings,
            fpga_loaded=self.mappings_synced,
        )
        if options.webhook_port:
            self.probes.checks["webhook"] = lambda: self.admission.serving
        self._plugins_by_kind = {
            controller.reconciler.kind.name: controller.reconciler.caches.plugins
            for controller in self.controllers
        }
        self.metrics_server = serving.MetricsServer(
            self.metrics,
            authorizer=authorizing.Authorizer(kube) if options.metrics_secure else None,
        )
        self.elector: election.LeaderElector | None = None
        if options.leader_election is not None:
            if election_kube is None or election_kube is kube:
                raise ValueError("leader election needs a client of its own")
            self._report_leading = self.metrics.leading(options.leader_election.name)
            self.elector = election.LeaderElector(
                election_kube, options.leader_election, on_change=self._leading_changed
            )
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = False
        self._handlers_added = False
        self._background: list[asyncio.Task[None]] = []
        self._certificates: tuple[certificates.SelfManaged, ssl.SSLContext, pathlib.Path] | None = (
            None
        )

    @property
    def informers(self) -> list[informer.Informer]:
        return [self.daemonsets, self.pods, *self.plugin_informers, *self.mapping_informers]

    def synced(self) -> bool:
        return all(inf.synced for inf in self.informers)

    def mappings_synced(self) -> bool:
        """Whether the FPGA mappings hold every AcceleratorFunction and FpgaRegion listed."""
        return all(inf.synced for inf in self.mapping_informers)

    @property
    def working(self) -> bool:
        """Whether any reconcile worker runs."""
        return any(not task.done() for task in self._tasks)

    async def _warning_context(
        self, kind: devices.DeviceKind[Any], obj: Mapping[str, Any]
    ) -> rules.Context:
        plugins = self._plugins_by_kind.get(kind.name)
        others = {
            objects.name(other): (other.get("spec") or {}).get("nodeSelector") or {}
            for other in (plugins.list() if plugins else [])
            if objects.name(other) != (obj.get("metadata") or {}).get("name")
        }
        exists: bool | None = None
        config_map = (obj.get("spec") or {}).get("provisioningConfig")
        if config_map:
            try:
                await self.kube.get(resources.CONFIG_MAPS, config_map, self.config.plugin_namespace)
                exists = True
            except errors.NotFound:
                exists = False
            except errors.KubeError:
                exists = None
        return rules.Context(
            other_selectors=others,
            config_map_exists=exists,
            plugin_namespace=self.config.plugin_namespace,
        )

    async def _start_admission(self) -> None:
        options = self.options
        if not options.webhook_port:
            return
        context = server.tls_context(enable_http2=options.enable_http2)
        cert_dir = pathlib.Path(options.webhook_cert_dir)
        if options.webhook_certs == "mounted":
            mounted = server.MountedCertificates(cert_dir, context)
            if not mounted.reload_if_changed():
                raise errors.ConfigError(
                    f"No usable tls.crt/tls.key in {cert_dir} (--webhook-certs=mounted)"
                )
            self._background.append(asyncio.create_task(mounted.watch()))
        else:
            hosts = webhook_hosts(options)
            prefix = options.webhook_configuration_prefix
            self_managed = certificates.SelfManaged(
                self.kube,
                options.operator_namespace,
                options.webhook_secret,
                hosts,
                [
                    (
                        resources.MUTATING_WEBHOOK_CONFIGURATIONS,
                        prefix + "mutating-webhook-configuration",
                    ),
                    (
                        resources.VALIDATING_WEBHOOK_CONFIGURATIONS,
                        prefix + "validating-webhook-configuration",
                    ),
                ],
            )
            self._certificates = (self_managed, context, cert_dir)
            await self.refresh_certificate()
            self._background.append(asyncio.create_task(self._keep_certificate()))
        await self.admission.start(options.webhook_host, options.webhook_port, context)

    async def refresh_certificate(self) -> None:
        """Check the self-managed certificate once: recreate, renew, repair the CA bundles,
        and serve what is stored now."""
        if self._certificates is None:
            return
        self_managed, context, cert_dir = self._certificates
        served = self_managed.current
        bundle = await self_managed.ensure()
        if bundle != served:
            server.load_pem(context, bundle.cert, bundle.key, cert_dir)

    async def _keep_certificate(self) -> None:
        while True:
            await asyncio.sleep(self.options.certificate_check_period)
            try:
                await self.refresh_certificate()
            except errors.KubeError as error:
                log.warning("Checking the webhook certificate failed", extra={"error": str(error)})
            except Exception:
                # E.g. a stored pair that does not match: keep checking, never stop for good.
                log.exception("Checking the webhook certificate crashed")

    # Lifecycle -----------------------------------------------------------------------------
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
        await self.probes.start(self.options.health_probe_bind_address)
        await self._start_metrics()
        await self._start_admission()
        for inf in self.informers:
            inf.start()

    async def _start_metrics(self) -> None:
        options = self.options
        if options.metrics_secure and options.metrics_bind_address != "0":
            files = None
            if options.metrics_cert_path:
                files = serving.TLSFiles(
                    pathlib.Path(options.metrics_cert_path),
                    options.metrics_cert_name,
                    options.metrics_cert_key,
                )
            self.metrics_server.ssl_context = serving.tls_context(
                files, enable_http2=options.enable_http2
            )
        await self.metrics_server.start(options.metrics_bind_address)

    async def start_workers(self) -> None:
        """Start the reconcile workers once the DaemonSet and Pod caches are filled."""
        # A reconcile against an empty cache would try to create DaemonSets that exist.
        await self.daemonsets.wait_synced()
        await self.pods.wait_synced()
        if self._stopping:
            return
        for controller in self.controllers:
            controller.queue.reopen()
        if not self._handlers_added:
            # Queues fill only from here (each handler first gets every cached object), as
            # controller-runtime starts its sources with its controllers: a follower's queues
            # stay empty instead of showing a backlog nobody works on.
            self._handlers_added = True
            for inf, handler in self._handlers:
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
        log.info("Started controllers", extra={"devices": ",".join(self.config.devices)})

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
        for task in self._background:
            task.cancel()
        await self.recorder.flush()
        if self.elector is not None:
            await self.elector.release()
        for inf in self.informers:
            await inf.stop()
        await self.admission.stop()
        await self.metrics_server.stop()
        await self.probes.stop()

    def _leading_changed(self, leading: bool) -> None:
        self._report_leading(leading)
        if not leading:
            self.cancel_workers()


def _mapping_informers(kube: client.KubeClient, mappings: fpga.Mappings) -> list[informer.Informer]:
    """AcceleratorFunctions and FpgaRegions of every namespace, fed into ``mappings``.

    Every replica keeps them (not only the leader): each one serves the FPGA Pod mutator.
    Handlers are added before the informers start, so the first list reaches them.
    """
    feeds = (
        (fpga_api.ACCELERATOR_FUNCTION, mappings.apply_accelerator_function),
        (fpga_api.FPGA_REGION, mappings.apply_region),
    )
    found = []
    for resource_type, apply in feeds:
        inf = informer.Informer(
            kube,
            resources.Resource.of(
                resource_type.api_version, resource_type.kind, resource_type.plural
            ),
        )
        inf.add_handler(_feeding(resource_type.kind, apply))
        found.append(inf)
    return found


def _feeding(kind: str, apply: _Apply) -> informer.Handler:
    def handle(
        event: informer.EventType, obj: objects.JsonObject, old: objects.JsonObject | None
    ) -> None:
        if event is informer.EventType.RESYNC:
            return
        try:
            apply(obj, deleted=event is informer.EventType.DELETED)
        except admission_errors.InvalidMapping as error:
            log.warning(
                "Ignored FPGA mapping",
                extra={
                    "kind": kind,
                    "namespace": objects.namespace(obj),
                    "object": objects.name(obj),
                    "error": str(error),
                },
            )

    return handle


class _Apply(Protocol):
    def __call__(self, obj: objects.JsonObject, *, deleted: bool = False) -> None: ...


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


async def run(config: settings.Settings, options: Options, stop: asyncio.Event) -> None:
    """Run until ``stop`` is set.

    Leader election gets a client of its own: a busy controller never delays a renewal.
    """
    metrics = recording.Metrics()
    hook = metrics.request_hook()
    kube = await client.connect(options.kubeconfig, request_hook=hook)
    hook.connected(kube)
    election_kube: client.HttpKubeClient | None = None
    try:
        if options.leader_election is not None:
            election_hook = metrics.request_hook()
            election_kube = await client.connect(options.kubeconfig, request_hook=election_hook)
            election_hook.connected(election_kube)
        manager = Manager(config, options, kube, election_kube=election_kube, metrics=metrics)
        await manager.run(stop)
        log.info("Stopped operator")
    finally:
        await kube.close()
        if election_kube is not None:
            await election_kube.close()
