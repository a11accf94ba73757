"""What one operator process runs, built from the settings and wired together; nothing is
started here (``lifecycle`` decides when each part runs).

What is watched is only what is ours: the resources of the enabled kinds, and DaemonSets and
Pods only in the plugin namespace and only with the ``app: intel-<dev>-plugin`` labels (a
server-side label selector), so memory does not grow with unrelated Pods in the cluster. With
FPGA, the AcceleratorFunctions and FpgaRegions of every namespace (small objects that users
create for the FPGA Pod mutator) feed its mappings; /readyz waits for their first lists too.
Nodes are watched cluster-wide, but each is cached as its name and the Intel-domain entries
of its capacity and allocatable (``status.node_essentials``), so that memory stays flat in
the size of node objects; only changes of those figures queue work.
"""

from __future__ import annotations

import datetime
import functools
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

from deviceplugin_operator import devices, settings
from deviceplugin_operator.admission import errors as admission_errors
from deviceplugin_operator.admission import fpga, rules, server
from deviceplugin_operator.api import fpga as fpga_api
from deviceplugin_operator.controller import election, events, heap, informer, probes, reconciler
from deviceplugin_operator.controller.metrics import recording
from deviceplugin_operator.kube import client, objects, resources
from deviceplugin_operator.manager import (
    controllers,
    metrics_endpoint,
    options,
    webhook_certificates,
)
from deviceplugin_operator.reconcile import status

log = logging.getLogger(__name__)


NODE_PAGE = 100
"""Nodes per page of the node informer's list (docs/benchmarks.md, nodes and devices)."""


def plugin_label_selector(device_names: Sequence[str]) -> str:
    """``app in (intel-gpu-plugin, ...)``: the DaemonSets and Pods of the enabled kinds."""
    names = ",".join(sorted(devices.KINDS[name].base_name for name in device_names))
    return f"app in ({names})"


class Parts:
    """Everything one operator process runs: informers, one controller per enabled kind, the
    event recorder, probes, the admission server and its certificates, the metrics server,
    and the leader elector.

    ``kube`` carries the controllers' traffic; ``election_kube``, required with leader
    election, must be a client of its own so that renewals never queue behind that traffic.
    ``on_leading`` hears of every change of leadership, after the metric.
    """

    def __init__(
        self,
        config: settings.Settings,
        options: options.Options,
        kube: client.KubeClient,
        *,
        election_kube: client.KubeClient | None = None,
        metrics: recording.Metrics | None = None,
        on_leading: Callable[[bool], None] | None = None,
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
        domains = frozenset(devices.KINDS[name].resource_domain for name in config.devices)
        self.nodes = informer.Informer(
            kube,
            resources.NODES,
            transform=functools.partial(status.node_essentials, domains=domains),
            # A page of 500 whole nodes left ~17 MiB resident at 1000 nodes, one of 100 ~5.
            page_size=NODE_PAGE,
        )
        self.recorder = events.Recorder(kube)
        self.heap_trimmer = heap.IdleHeapTrimmer()
        self.plugin_informers: list[informer.Informer] = []
        self.controllers: list[controllers.Controller] = []
        self.handlers: list[tuple[informer.Informer, informer.Handler]] = []
        """Each controller's handlers of the informers' events, added when its workers start."""
        for name in config.devices:
            kind = devices.KINDS[name]
            plugins = informer.Informer(
                kube,
                resources.Resource.of(
                    kind.resource.api_version, kind.kind, kind.plural, namespaced=False
                ),
                resync_period=options.resync_period,
            )
            caches = reconciler.Caches(
                plugins=plugins, daemonsets=self.daemonsets, pods=self.pods, nodes=self.nodes
            )
            controller = controllers.Controller(
                reconciler.Reconciler(
                    kind,
                    config,
                    kube,
                    caches,
                    recorder=self.recorder,
                    allowed_registries=options.allowed_image_registries,
                    devices_grace=datetime.timedelta(seconds=options.devices_grace_period),
                ),
                options.workers,
                self.metrics,
                heap_trimmer=self.heap_trimmer,
            )
            self.handlers += [
                (plugins, controller.on_plugin),
                (self.daemonsets, controller.on_daemonset),
                (self.pods, controller.on_pod),
                (self.nodes, controller.on_node),
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
            allowed_registries=options.allowed_image_registries,
            allowed_clients=options.webhook_client_names,
        )
        self.admission.observer = self.metrics.webhooks(w.path for w in self.admission.webhooks)
        self.webhook_certificates = webhook_certificates.WebhookCertificates(kube, options)
        self.metrics.add_certificate_expiry(self.webhook_certificates.expiry)
        self.metrics.add_webhook_connections(self.admission.connections)
        if options.webhook_port:
            self.probes.checks["webhook"] = lambda: self.admission.serving
        self._plugins_by_kind = {
            controller.reconciler.kind.name: controller.reconciler.caches.plugins
            for controller in self.controllers
        }
        self.metrics_server = metrics_endpoint.server(self.metrics, kube, options)
        self.elector: election.LeaderElector | None = None
        if options.leader_election is not None:
            if election_kube is None or election_kube is kube:
                raise ValueError("leader election needs a client of its own")
            report_leading = self.metrics.leading(options.leader_election.name)

            def leading_changed(leading: bool) -> None:
                report_leading(leading)
                if on_leading is not None:
                    on_leading(leading)

            self.elector = election.LeaderElector(
                election_kube, options.leader_election, on_change=leading_changed
            )

    @property
    def informers(self) -> list[informer.Informer]:
        return [
            self.daemonsets,
            self.pods,
            *([self.nodes] if self.nodes_unreadable is None else []),
            *self.plugin_informers,
            *self.mapping_informers,
        ]

    nodes_unreadable: str | None = None
    """Why the nodes cannot be listed (``without_nodes``); None while they can."""

    def without_nodes(self, reason: str) -> None:
        """Run without the node informer: the install's RBAC does not let the operator list
        nodes (the reference's does not), so statuses carry no devices, and their
        ``DevicesAdvertised`` condition says ``reason``. Called before anything starts."""
        self.nodes_unreadable = reason
        for controller in self.controllers:
            controller.reconciler.nodes_unreadable = reason

    def synced(self) -> bool:
        return all(inf.synced for inf in self.informers)

    def mappings_synced(self) -> bool:
        """Whether the FPGA mappings hold every AcceleratorFunction and FpgaRegion listed."""
        return all(inf.synced for inf in self.mapping_informers)

    async def _warning_context(
        self, kind: devices.DeviceKind[Any], obj: Mapping[str, Any]
    ) -> rules.Context:
        plugins = self._plugins_by_kind.get(kind.name)
        others = {
            objects.name(other): (other.get("spec") or {}).get("nodeSelector") or {}
            for other in (plugins.list() if plugins else [])
            if objects.name(other) != (obj.get("metadata") or {}).get("name")
        }
        return rules.Context(other_selectors=others)


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
