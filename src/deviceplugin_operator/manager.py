"""Runs the operator: informers, one work queue and reconciler per enabled kind, probes.

What is watched is only what is ours: the resources of the enabled kinds, and DaemonSets and
Pods only in the plugin namespace and only with the ``app: intel-<dev>-plugin`` labels (a
server-side label selector), so memory does not grow with unrelated Pods in the cluster.

Events on a DaemonSet or a Pod are mapped to the resource that controls it and queue that
resource's name; a periodic resync re-queues every resource (level-triggered, no API call).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import pathlib
import ssl
from collections.abc import Mapping, Sequence
from typing import Any

from deviceplugin_operator import devices, settings
from deviceplugin_operator.admission import rules, server
from deviceplugin_operator.controller import (
    certificates,
    events,
    informer,
    probes,
    queue,
    reconciler,
)
from deviceplugin_operator.kube import client, errors, objects, resources

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Options:
    """How the process runs (as opposed to what it reconciles: ``settings.Settings``)."""

    kubeconfig: str | None = None
    """Path of a kubeconfig; None for in-cluster configuration."""

    health_probe_bind_address: str = ":8081"
    """Address of /healthz and /readyz; "0" disables them."""

    metrics_bind_address: str = ":8080"
    """Address of /metrics; "0" disables it."""

    resync_period: float = 600.0
    """Seconds between re-reconciles of every resource from the cache."""

    workers: int = 1
    """Concurrent reconciles per kind."""

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
    """Offer HTTP/2 by ALPN on the webhook server (off: the HTTP/2 rapid-reset class of bugs)."""

    certificate_check_period: float = 3600.0
    """Seconds between checks of the self-managed certificate (renewal, deleted Secret)."""


def plugin_label_selector(device_names: Sequence[str]) -> str:
    """``app in (intel-gpu-plugin, ...)``: the DaemonSets and Pods of the enabled kinds."""
    names = ",".join(sorted(devices.KINDS[name].base_name for name in device_names))
    return f"app in ({names})"


class Controller:
    """One kind's queue, reconciler and workers."""

    def __init__(self, rec: reconciler.Reconciler, workers: int):
        self.reconciler = rec
        self.queue: queue.WorkQueue[str] = queue.WorkQueue(rec.kind.name)
        self.workers = workers

    def on_plugin(
        self,
        kind: informer.EventType,
        obj: objects.JsonObject,
        old: objects.JsonObject | None,
    ) -> None:
        self.queue.add(objects.name(obj))

    def on_daemonset(
        self,
        kind: informer.EventType,
        obj: objects.JsonObject,
        old: objects.JsonObject | None,
    ) -> None:
        for candidate in (obj, old):
            if candidate is not None and (owner := self.reconciler.owner_of_daemonset(candidate)):
                self.queue.add(owner)

    def on_pod(
        self,
        kind: informer.EventType,
        obj: objects.JsonObject,
        old: objects.JsonObject | None,
    ) -> None:
        owner = self.reconciler.owner_of_pod(obj)
        if owner is None:
            return
        self.queue.add(owner)
        node = (obj.get("spec") or {}).get("nodeName")
        old_node = None if old is None else (old.get("spec") or {}).get("nodeName")
        if kind is informer.EventType.DELETED or node != old_node:
            # Where a plugin runs decides the overlap condition of every resource of the
            # kind, not only of the pod's own.
            for other in self.reconciler.caches.plugins.list():
                self.queue.add(objects.name(other))

    async def work(self) -> None:
        while True:
            try:
                name = await self.queue.get()
            except queue.ShutDown:
                return
            try:
                requeue = await self.reconciler.reconcile(name)
            except errors.Conflict:
                # The cache was behind the server; the watch brings the newer object soon.
                self.queue.add_rate_limited(name)
            except errors.KubeError as error:
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
                log.exception(
                    "Reconcile crashed", extra={"kind": self.reconciler.kind.kind, "resource": name}
                )
                self.queue.add_rate_limited(name)
            else:
                self.queue.forget(name)
                if requeue is not None:
                    self.queue.add_after(name, requeue)
            finally:
                self.queue.done(name)


class Manager:
    """Everything one operator process runs, wired together."""

    def __init__(self, config: settings.Settings, options: Options, kube: client.KubeClient):
        self.config = config
        self.options = options
        self.kube = kube
        selector = plugin_label_selector(config.devices)
        namespace = config.plugin_namespace
        self.daemonsets = informer.Informer(
            kube, resources.DAEMON_SETS, namespace=namespace, label_selector=selector
        )
        self.pods = informer.Informer(
            kube, resources.PODS, namespace=namespace, label_selector=selector
        )
        self.recorder = events.Recorder(kube)
        self.plugin_informers: list[informer.Informer] = []
        self.controllers: list[Controller] = []
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
            )
            plugins.add_handler(controller.on_plugin)
            self.daemonsets.add_handler(controller.on_daemonset)
            self.pods.add_handler(controller.on_pod)
            self.plugin_informers.append(plugins)
            self.controllers.append(controller)
        self.probes = probes.ProbeServer()
        self.probes.checks["informers-synced"] = self.synced
        self.admission = server.AdmissionServer(
            [devices.KINDS[name] for name in config.devices],
            context_provider=self._warning_context,
        )
        if options.webhook_port:
            self.probes.checks["webhook"] = lambda: self.admission.serving
        self._plugins_by_kind = {
            controller.reconciler.kind.name: controller.reconciler.caches.plugins
            for controller in self.controllers
        }
        self._tasks: list[asyncio.Task[None]] = []
        self._background: list[asyncio.Task[None]] = []
        self._certificates: tuple[certificates.SelfManaged, ssl.SSLContext, pathlib.Path] | None = (
            None
        )

    @property
    def informers(self) -> list[informer.Informer]:
        return [self.daemonsets, self.pods, *self.plugin_informers]

    def synced(self) -> bool:
        return all(inf.synced for inf in self.informers)

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
            service = f"{options.webhook_service}.{options.operator_namespace}.svc"
            hosts = options.webhook_hosts or (service, f"{service}.cluster.local")
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

    async def start(self) -> None:
        await self.probes.start(self.options.health_probe_bind_address)
        await self._start_admission()
        for inf in self.informers:
            inf.start()
        # Workers start once the DaemonSet and Pod caches are filled: a reconcile against an
        # empty cache would try to create DaemonSets that already exist.
        await self.daemonsets.wait_synced()
        await self.pods.wait_synced()
        for controller in self.controllers:
            for index in range(controller.workers):
                self._tasks.append(
                    asyncio.create_task(
                        controller.work(), name=f"{controller.reconciler.kind.name}-{index}"
                    )
                )
        log.info("Started controllers", extra={"devices": ",".join(self.config.devices)})

    async def stop(self) -> None:
        for controller in self.controllers:
            controller.queue.shutdown()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for task in self._background:
            task.cancel()
        for inf in self.informers:
            await inf.stop()
        await self.recorder.flush()
        await self.admission.stop()
        await self.probes.stop()


async def run(config: settings.Settings, options: Options, stop: asyncio.Event) -> None:
    """Run until ``stop`` is set."""
    kube = await client.connect(options.kubeconfig)
    manager = Manager(config, options, kube)
    try:
        await manager.start()
        await stop.wait()
        log.info("Stopping operator")
    finally:
        await manager.stop()
        await kube.close()
