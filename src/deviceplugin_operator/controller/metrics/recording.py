"""The metric families and the hooks that feed them, on one dedicated ``CollectorRegistry``.

Names, labels and buckets are controller-runtime's (and client-go's, which it re-exports), so
dashboards and alerts written for the reference operator keep working:

* ``controller_runtime_reconcile_total{controller,result}`` (success, error, requeue,
  requeue_after), ``controller_runtime_reconcile_errors_total``,
  ``controller_runtime_reconcile_time_seconds``, ``controller_runtime_active_workers`` and
  ``controller_runtime_max_concurrent_reconciles``; the controller name is the lower-cased kind
  (``gpudeviceplugin``), as controller-runtime derives it;
* ``workqueue_*{name,controller}``: depth, adds, retries, queue and work durations, unfinished
  work and longest running processor;
* ``rest_client_requests_total{code,method,host}`` for every client it is hooked into;
* ``leader_election_master_status{name}`` while leader election runs;
* ``controller_runtime_webhook_latency_seconds{webhook}``, ``..._requests_total{code,webhook}``
  and ``..._requests_in_flight{webhook}`` for the admission server's paths;
* ``deviceplugin_operator_webhook_certificate_expiration_timestamp_seconds``: when the
  certificate the admission server serves expires (self-managed or mounted);
* ``deviceplugin_operator_webhook_connections{state}`` (``open``, ``waiting`` for a slot),
  ``..._connections_waited_total`` and ``..._connections_reset_total`` (reset at accept
  because the waiting room was full: each a failed call of the API server) of the admission
  server (``listening``);
* ``deviceplugin_operator_desired_pods{kind,name}`` and ``..._ready_pods`` from the statuses
  the reconcilers wrote, as cached by the informers (a deleted resource's series disappear);
* ``deviceplugin_operator_gc_pause_seconds{generation}`` (and ``..._gc_pause_max_seconds``) and
  ``deviceplugin_operator_event_loop_lag_seconds``, measured while /metrics is served
  (``runtime``);
* the process collectors (``process_resident_memory_bytes`` ...).

Gauges that mirror in-memory state (queue depths, statuses) are read when scraped, not kept up
to date on every change: a scrape costs a walk over a few small caches, and nothing can drift.
"""

from __future__ import annotations

import builtins
import dataclasses
import urllib.parse
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import prometheus_client
from prometheus_client import core, exposition

from deviceplugin_operator import listening
from deviceplugin_operator.controller import queue
from deviceplugin_operator.controller.metrics import runtime
from deviceplugin_operator.kube import client, objects

RECONCILE_BUCKETS = (
    *(0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5),
    *(0.6, 0.7, 0.8, 0.9, 1.0, 1.25, 1.5, 1.75, 2.0, 2.5, 3.0, 3.5, 4.0, 4.5, 5.0),
    *(6.0, 7.0, 8.0, 9.0, 10.0, 15.0, 20.0, 25.0, 30.0, 40.0, 50.0, 60.0),
)
"""controller-runtime's buckets for controller_runtime_reconcile_time_seconds."""
QUEUE_BUCKETS = tuple(1e-8 * 10**power for power in range(12))
"""client-go's ExponentialBuckets(10e-9, 10, 12) for the work-queue durations."""

RESULTS = ("success", "error", "requeue", "requeue_after")
"""The values of the ``result`` label of controller_runtime_reconcile_total."""
WEBHOOK_BUCKETS = prometheus_client.Histogram.DEFAULT_BUCKETS
"""controller-runtime's webhook latency buckets (prometheus.DefBuckets)."""

_METHODS = {
    "get": "GET",
    "list": "GET",
    "watch": "GET",
    "create": "POST",
    "update": "PUT",
    "patch": "PATCH",
    "delete": "DELETE",
}

StatusLister = Callable[[], Iterable[objects.JsonObject]]
"""Returns the cached resources of one kind, with the status their reconciler wrote."""
ExpiryReader = Callable[[], float | None]
"""Returns when the served certificate expires (Unix seconds), None while none is served."""
ConnectionReader = Callable[[], listening.Connections]
"""Returns what the admission server's connections are doing."""


class Metrics:
    """Every metric of one operator process (tests make as many as they like)."""

    def __init__(self) -> None:
        # Series that controller-runtime does not have would only double what is scraped.
        prometheus_client.disable_created_metrics()  # type: ignore[no-untyped-call]
        self.registry = prometheus_client.CollectorRegistry()
        on = self.registry
        self.reconcile_total = prometheus_client.Counter(
            "controller_runtime_reconcile_total",
            "Total number of reconciliations per controller",
            ["controller", "result"],
            registry=on,
        )
        self.reconcile_errors = prometheus_client.Counter(
            "controller_runtime_reconcile_errors_total",
            "Total number of reconciliation errors per controller",
            ["controller"],
            registry=on,
        )
        self.reconcile_time = prometheus_client.Histogram(
            "controller_runtime_reconcile_time_seconds",
            "Length of time per reconciliation per controller",
            ["controller"],
            buckets=RECONCILE_BUCKETS,
            registry=on,
        )
        self.max_concurrent = prometheus_client.Gauge(
            "controller_runtime_max_concurrent_reconciles",
            "Maximum number of concurrent reconciles per controller",
            ["controller"],
            registry=on,
        )
        self.active_workers = prometheus_client.Gauge(
            "controller_runtime_active_workers",
            "Number of currently used workers per controller",
            ["controller"],
            registry=on,
        )
        self.queue_duration = prometheus_client.Histogram(
            "workqueue_queue_duration_seconds",
            "How long in seconds an item stays in workqueue before being requested",
            ["name", "controller"],
            buckets=QUEUE_BUCKETS,
            registry=on,
        )
        self.work_duration = prometheus_client.Histogram(
            "workqueue_work_duration_seconds",
            "How long in seconds processing an item from workqueue takes.",
            ["name", "controller"],
            buckets=QUEUE_BUCKETS,
            registry=on,
        )
        self.requests = prometheus_client.Counter(
            "rest_client_requests_total",
            "Number of HTTP requests, partitioned by status code, method, and host.",
            ["code", "method", "host"],
            registry=on,
        )
        self.leader = prometheus_client.Gauge(
            "leader_election_master_status",
            "Gauge of if the reporting system is master of the relevant lease, 0 indicates "
            "backup, 1 indicates master. 'name' is the string used to identify the lease. "
            "Please make sure to group by name.",
            ["name"],
            registry=on,
        )
        self.webhook_latency = prometheus_client.Histogram(
            "controller_runtime_webhook_latency_seconds",
            "Histogram of the latency of processing admission requests",
            ["webhook"],
            buckets=WEBHOOK_BUCKETS,
            registry=on,
        )
        self.webhook_requests = prometheus_client.Counter(
            "controller_runtime_webhook_requests_total",
            "Total number of admission requests by HTTP status code.",
            ["code", "webhook"],
            registry=on,
        )
        self.webhook_in_flight = prometheus_client.Gauge(
            "controller_runtime_webhook_requests_in_flight",
            "Current number of admission requests being served.",
            ["webhook"],
            registry=on,
        )
        self.queues = _QueueCollector()
        self.statuses = _StatusCollector()
        self.certificate = _CertificateCollector()
        self.connections = _ConnectionCollector()
        self.registry.register(self.queues)
        self.registry.register(self.statuses)
        self.registry.register(self.certificate)
        self.registry.register(self.connections)
        self.runtime = runtime.RuntimeMetrics(self.registry)
        prometheus_client.ProcessCollector(registry=self.registry)
        prometheus_client.PlatformCollector(registry=self.registry)
        prometheus_client.GCCollector(registry=self.registry)

    def controller(self, controller: str, workers: int) -> ControllerMetrics:
        """The recorder of one controller; also its queue's ``Observer``."""
        self.max_concurrent.labels(controller).set(workers)
        self.active_workers.labels(controller).set(0)
        for result in RESULTS:
            self.reconcile_total.labels(controller, result)
        self.reconcile_errors.labels(controller)
        return ControllerMetrics(self, controller)

    def add_queue(self, controller: str, work_queue: queue.WorkQueue[Any]) -> None:
        """Report ``work_queue``'s depth, counters and in-flight work under ``controller``."""
        self.queues.queues[controller] = work_queue

    def add_statuses(self, kind: str, lister: StatusLister) -> None:
        """Report desired and ready pods of every resource of ``kind`` that ``lister`` returns."""
        self.statuses.listers[kind] = lister

    def webhooks(self, paths: Iterable[str]) -> WebhookRecorder:
        """The admission server's ``RequestObserver``; its ``paths`` are reported from now on,
        with the codes 200 and 500 at 0 as controller-runtime initialises them."""
        for path in paths:
            self.webhook_in_flight.labels(path).set(0)
            for code in ("200", "500"):
                self.webhook_requests.labels(code, path)
        return WebhookRecorder(self)

    def add_certificate_expiry(self, reader: ExpiryReader) -> None:
        """Report the expiry ``reader`` returns when scraped."""
        self.certificate.reader = reader

    def add_webhook_connections(self, reader: ConnectionReader) -> None:
        """Report the admission server's connections as ``reader`` returns them when scraped."""
        self.connections.reader = reader

    def request_hook(self) -> RequestCounter:
        """A ``request_hook`` for ``client.connect``; set its ``host`` once connected."""
        return RequestCounter(self.requests)

    def leading(self, lease: str) -> Callable[[bool], None]:
        """Sets leader_election_master_status{name=lease}; a gauge at 0 until called."""
        gauge = self.leader.labels(lease)
        gauge.set(0)
        return lambda leading: gauge.set(1 if leading else 0)

    def exposition(self, accept: str = "") -> tuple[bytes, str]:
        """The scrape body and its content type, in the format ``accept`` asks for."""
        encoder, content_type = exposition.choose_encoder(accept)
        return encoder(self.registry), content_type


@dataclasses.dataclass
class ControllerMetrics:
    """Records one controller's reconciles and queue timings."""

    metrics: Metrics
    controller: str

    def queued(self, seconds: float) -> None:
        self.metrics.queue_duration.labels(self.controller, self.controller).observe(seconds)

    def worked(self, seconds: float) -> None:
        self.metrics.work_duration.labels(self.controller, self.controller).observe(seconds)

    def started(self) -> None:
        """A worker took a key."""
        self.metrics.active_workers.labels(self.controller).inc()

    def finished(self, result: str | None, seconds: float) -> None:
        """A worker is done with a key; ``result`` is None when the reconcile was cancelled."""
        self.metrics.active_workers.labels(self.controller).dec()
        if result is None:
            return
        self.metrics.reconcile_total.labels(self.controller, result).inc()
        self.metrics.reconcile_time.labels(self.controller).observe(seconds)
        if result == "error":
            self.metrics.reconcile_errors.labels(self.controller).inc()


@dataclasses.dataclass
class WebhookRecorder:
    """Records the admission requests of each webhook path, as controller-runtime does."""

    metrics: Metrics
    # The label children of each path and (code, path), looked up once: prometheus_client's
    # labels() was a tenth of the server time of a validation.
    _paths: dict[str, tuple[prometheus_client.Gauge, prometheus_client.Histogram]] = (
        dataclasses.field(default_factory=dict)
    )
    _results: dict[tuple[int, str], prometheus_client.Counter] = dataclasses.field(
        default_factory=dict
    )

    def _of(self, path: str) -> tuple[prometheus_client.Gauge, prometheus_client.Histogram]:
        found = self._paths.get(path)
        if found is None:
            found = (
                self.metrics.webhook_in_flight.labels(path),
                self.metrics.webhook_latency.labels(path),
            )
            self._paths[path] = found
        return found

    def started(self, path: str) -> None:
        self._of(path)[0].inc()

    def finished(self, path: str, code: int, seconds: float) -> None:
        in_flight, latency = self._of(path)
        in_flight.dec()
        counter = self._results.get((code, path))
        if counter is None:
            counter = self._results[code, path] = self.metrics.webhook_requests.labels(
                str(code), path
            )
        counter.inc()
        latency.observe(seconds)


class RequestCounter:
    """Counts each finished API request as client-go's rest_client_requests_total does."""

    def __init__(self, counter: prometheus_client.Counter) -> None:
        self._counter = counter
        self.host = ""
        """``host:port`` of the API server."""

    def connected(self, kube: client.HttpKubeClient) -> None:
        """Take the API server's address from the client this counter is hooked into."""
        self.host = urllib.parse.urlsplit(kube.host).netloc

    def __call__(self, record: client.RequestRecord) -> None:
        code = "<error>" if record.code is None else str(record.code)
        method = _METHODS.get(record.verb, record.verb.upper())
        self._counter.labels(code, method, self.host).inc()


class _QueueCollector:
    """client-go's work-queue gauges and counters, read from the queues when scraped."""

    def __init__(self) -> None:
        self.queues: dict[str, queue.WorkQueue[Any]] = {}

    def describe(self) -> Iterable[core.Metric]:
        return builtins.list(self._families())

    def collect(self) -> Iterable[core.Metric]:
        families = self._families()
        depth, adds, retries, unfinished, longest = families
        for controller, work_queue in self.queues.items():
            depth.add_metric([controller, controller, ""], work_queue.depth)
            adds.add_metric([controller, controller], work_queue.adds_total)
            retries.add_metric([controller, controller], work_queue.retries_total)
            unfinished.add_metric([controller, controller], work_queue.unfinished_work_seconds())
            longest.add_metric(
                [controller, controller], work_queue.longest_running_processor_seconds()
            )
        return families

    @staticmethod
    def _families() -> tuple[
        core.GaugeMetricFamily,
        core.CounterMetricFamily,
        core.CounterMetricFamily,
        core.GaugeMetricFamily,
        core.GaugeMetricFamily,
    ]:
        labels = ["name", "controller"]
        return (
            core.GaugeMetricFamily(
                "workqueue_depth",
                "Current depth of workqueue by workqueue and priority",
                labels=[*labels, "priority"],
            ),
            core.CounterMetricFamily(
                "workqueue_adds", "Total number of adds handled by workqueue", labels=labels
            ),
            core.CounterMetricFamily(
                "workqueue_retries", "Total number of retries handled by workqueue", labels=labels
            ),
            core.GaugeMetricFamily(
                "workqueue_unfinished_work_seconds",
                "How many seconds of work has been done that is in progress and hasn't been "
                "observed by work_duration. Large values indicate stuck threads. One can deduce "
                "the number of stuck threads by observing the rate at which this increases.",
                labels=labels,
            ),
            core.GaugeMetricFamily(
                "workqueue_longest_running_processor_seconds",
                "How many seconds has the longest running processor for workqueue been running.",
                labels=labels,
            ),
        )


class _StatusCollector:
    """Desired and ready plugin pods per resource, from the cached resources' statuses."""

    def __init__(self) -> None:
        self.listers: dict[str, StatusLister] = {}

    def describe(self) -> Iterable[core.Metric]:
        return builtins.list(self._families())

    def collect(self) -> Iterator[core.Metric]:
        desired, ready = self._families()
        for kind, lister in self.listers.items():
            for resource in lister():
                status = resource.get("status") or {}
                labels = [kind, objects.name(resource)]
                if "desiredNumberScheduled" in status:
                    desired.add_metric(labels, float(status["desiredNumberScheduled"] or 0))
                if "numberReady" in status:
                    ready.add_metric(labels, float(status["numberReady"] or 0))
        yield desired
        yield ready

    @staticmethod
    def _families() -> tuple[core.GaugeMetricFamily, core.GaugeMetricFamily]:
        return (
            core.GaugeMetricFamily(
                "deviceplugin_operator_desired_pods",
                "Plugin pods the DaemonSet of a device plugin resource should run "
                "(status.desiredNumberScheduled)",
                labels=["kind", "name"],
            ),
            core.GaugeMetricFamily(
                "deviceplugin_operator_ready_pods",
                "Ready plugin pods of a device plugin resource (status.numberReady)",
                labels=["kind", "name"],
            ),
        )


class _CertificateCollector:
    """When the served webhook certificate expires, read when scraped (no sample before)."""

    def __init__(self) -> None:
        self.reader: ExpiryReader | None = None

    def describe(self) -> Iterable[core.Metric]:
        return [self._family()]

    def collect(self) -> Iterable[core.Metric]:
        family = self._family()
        expiry = None if self.reader is None else self.reader()
        if expiry is not None:
            family.add_metric([], expiry)
        return [family]

    @staticmethod
    def _family() -> core.GaugeMetricFamily:
        return core.GaugeMetricFamily(
            "deviceplugin_operator_webhook_certificate_expiration_timestamp_seconds",
            "When the serving certificate of the admission webhooks expires (its notAfter), "
            "in seconds since the Unix epoch",
        )


class _ConnectionCollector:
    """The admission server's connections, read when scraped (no sample before a reader)."""

    def __init__(self) -> None:
        self.reader: ConnectionReader | None = None

    def describe(self) -> Iterable[core.Metric]:
        return self._families()

    def collect(self) -> Iterable[core.Metric]:
        state, waited, reset = families = self._families()
        if self.reader is not None:
            connections = self.reader()
            state.add_metric(["open"], connections.open)
            state.add_metric(["waiting"], connections.waiting)
            waited.add_metric([], connections.waited)
            reset.add_metric([], connections.reset)
        return families

    @staticmethod
    def _families() -> tuple[
        core.GaugeMetricFamily, core.CounterMetricFamily, core.CounterMetricFamily
    ]:
        return (
            core.GaugeMetricFamily(
                "deviceplugin_operator_webhook_connections",
                "Connections to the admission webhook server: open (served), or waiting for "
                "a slot (over the caps on connections in all and from one address)",
                labels=["state"],
            ),
            core.CounterMetricFamily(
                "deviceplugin_operator_webhook_connections_waited",
                "Connections to the admission webhook server that had to wait for a slot",
            ),
            core.CounterMetricFamily(
                "deviceplugin_operator_webhook_connections_reset",
                "Connections to the admission webhook server reset at accept because the "
                "waiting room was full; each is a webhook call the API server saw fail",
            ),
        )
