"""The benchmark scenarios. Each takes the shared ``Bench`` and returns result records.

Implementations run one at a time against the same control plane; between two runs every
resource, DaemonSet and plugin pod is deleted and waited for, and the order of the
implementations rotates from one repetition to the next.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import dataclasses
import json
import logging
import pathlib
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import yaml

from bench import impls, kube, stats
from localcluster import cluster as lc_cluster
from localcluster import nodes as lc_nodes

log = logging.getLogger("bench")

ROOT = pathlib.Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "deployments" / "operator" / "samples"
CRDS = ROOT / "deployments" / "operator" / "crd" / "bases"
PLURALS = (
    "dlbdeviceplugins",
    "dsadeviceplugins",
    "fpgadeviceplugins",
    "gpudeviceplugins",
    "iaadeviceplugins",
    "npudeviceplugins",
    "qatdeviceplugins",
    "sgxdeviceplugins",
)
NAMESPACE = "inteldeviceplugins-system"
UNRELATED_NAMESPACE = "bench-unrelated"
GROUP_LABEL = "bench.intel.com/group"
CONTROLLER_MANAGER_GATES = {"StaleControllerConsistencyDaemonSet": False}
"""kube-controller-manager 1.36's DaemonSet controller waits until its cache shows its own last
write and requeues with exponential backoff otherwise; on 2 busy cores with thousands of plugin
pods that left DaemonSet statuses stale for many minutes (up to its 1000 s backoff) while every
pod was Ready, for either operator. Convergence measures the operators, so the check is off."""
CONTROLLER_MANAGER_ARGS = ("--node-monitor-grace-period=10m",)
"""kwok renews the leases of every fake node from one process; while 8000 plugin pods start on 2
busy cores it fell more than the default 50 s behind for hundreds of nodes, the node-lifecycle
controller marked them unreachable (taint ``node.kubernetes.io/unreachable:NoSchedule``), and every
DaemonSet dropped them: desiredNumberScheduled 1000 -> 541, numberMisscheduled up to 477, their
pods deleted and re-created when the leases caught up. That was the "first peer at 1000 nodes
stalls" of earlier full-size runs (docs/benchmarks.md); real kubelets renew their own leases, so
the bench gives fake nodes 10 minutes before they count as gone."""
LATENCY_LABEL = "bench.intel.com/latency"
NODE_DEVICES = {
    "gpu.intel.com/i915": "1",
    "gpu.intel.com/millicores": "1000",
    "qat.intel.com/generic": "4",
    "sgx.intel.com/epc": "1",
    "sgx.intel.com/enclave": "20",
    "sgx.intel.com/provision": "20",
    "fpga.intel.com/region-ce48969398f05f33946d560708be108a": "1",
    "dsa.intel.com/wq-user-dedicated": "8",
    "iaa.intel.com/wq-user-dedicated": "8",
    "dlb.intel.com/pf": "1",
    "npu.intel.com/accel": "1",
}
"""What every bench node advertises: a resource of each kind's domain, as a node whose plugins
work does (kwok keeps a node's status). Without them this operator's ``DevicesAdvertised``
turns False on every node once the plugin pods have been ready for the grace (5 minutes): one
status write per resource in the middle of a steady-state window, which is not steady."""


@dataclasses.dataclass(frozen=True)
class Size:
    name: str
    nodes: int
    crs_per_kind: int
    latency_ops: int
    latency_runs: int
    convergence_runs: int
    steady_seconds: float
    startup_runs: int
    unrelated_pods: tuple[int, ...]
    memory_nodes: tuple[int, ...]
    """Node counts of the memory scenario's node levels (added nodes advertise Intel devices;
    the plugin pods stay on the base nodes, so what grows is the node cache alone)."""
    memory_settle: float
    convergence_timeout: float = 300
    admission_seconds: float = 10.0
    # (N nodes, K resources per kind) points of the convergence scenario; () = (nodes, crs_per_kind)
    convergence_grid: tuple[tuple[int, int], ...] = ()

    def grid(self) -> tuple[tuple[int, int], ...]:
        return self.convergence_grid or ((self.nodes, self.crs_per_kind),)


def parse_grid(text: str) -> tuple[tuple[int, int], ...]:
    """``"100x1,1000x10"`` -> ((100, 1), (1000, 10)): the form of ``--set convergence_grid=``."""
    points = []
    for item in text.split(","):
        nodes, sep, per_kind = item.strip().lower().partition("x")
        if not sep or not nodes.isdigit() or not per_kind.isdigit():
            raise ValueError(f"convergence grid point {item!r} is not NODESxRESOURCES, e.g. 100x10")
        if int(nodes) < int(per_kind) or int(per_kind) < 1:
            raise ValueError(f"convergence grid point {item!r}: need 1 <= resources <= nodes")
        points.append((int(nodes), int(per_kind)))
    return tuple(points)


def node_group(index: int, nodes: int, per_kind: int) -> str:
    """The group label of ``bench-node-<index>`` at a grid point: g<index mod K>, or idle."""
    return f"g{index % per_kind}" if index < nodes else "idle"


SIZES = {
    "quick": Size(
        "quick",
        nodes=100,
        crs_per_kind=1,
        latency_ops=50,
        latency_runs=3,
        convergence_runs=3,
        steady_seconds=120,
        startup_runs=3,
        unrelated_pods=(1000, 5000),
        memory_nodes=(1000,),
        memory_settle=5,
    ),
    # a few minutes, to check that the harness works (not for figures)
    "smoke": Size(
        "smoke",
        nodes=10,
        crs_per_kind=1,
        latency_ops=3,
        latency_runs=1,
        convergence_runs=1,
        steady_seconds=15,
        startup_runs=1,
        unrelated_pods=(100,),
        memory_nodes=(20,),
        memory_settle=2,
        admission_seconds=2.0,
    ),
    "full": Size(
        "full",
        nodes=1000,
        crs_per_kind=10,
        latency_ops=100,
        latency_runs=3,
        convergence_runs=3,
        steady_seconds=600,
        startup_runs=5,
        unrelated_pods=(1000, 5000),
        memory_nodes=(1000,),
        memory_settle=30,
        convergence_timeout=1200,
        admission_seconds=30.0,
        convergence_grid=((100, 1), (100, 10), (1000, 1), (1000, 10)),
    ),
}


def say(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def sample(plural: str) -> dict[str, Any]:
    singular = plural.removesuffix("s")
    loaded: dict[str, Any] = yaml.safe_load(
        (SAMPLES / f"deviceplugin_v1_{singular}.yaml").read_text()
    )
    return loaded


def gpu_cr(name: str, node_selector: dict[str, str], log_level: int = 4) -> dict[str, Any]:
    body = sample("gpudeviceplugins")
    body["metadata"] = {"name": name}
    body["spec"]["nodeSelector"] = node_selector
    body["spec"]["logLevel"] = log_level
    return body


def log_level_of(daemonset: dict[str, Any]) -> int | None:
    """The ``-v N`` of the plugin container of a DaemonSet."""
    containers = daemonset["spec"]["template"]["spec"].get("containers") or []
    args = containers[0].get("args") or [] if containers else []
    for index, arg in enumerate(args):
        if arg == "-v" and index + 1 < len(args):
            with contextlib.suppress(ValueError):
                return int(args[index + 1])
        if arg.startswith("-v="):
            with contextlib.suppress(ValueError):
                return int(arg[3:])
    return None


def node_ready(node: dict[str, Any]) -> bool:
    """Ready and not tainted unreachable or not-ready (what DaemonSets schedule onto)."""
    conditions = (node.get("status") or {}).get("conditions") or []
    ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)
    taints = (node.get("spec") or {}).get("taints") or []
    gone = {"node.kubernetes.io/unreachable", "node.kubernetes.io/not-ready"}
    return ready and not any(t.get("key") in gone for t in taints)


def rotate(items: Sequence[impls.Implementation], shift: int) -> list[impls.Implementation]:
    shift %= max(len(items), 1)
    return list(items[shift:]) + list(items[:shift])


class Bench:
    """One control plane, the implementations to compare, and helpers shared by scenarios."""

    def __init__(
        self,
        size: Size,
        directory: pathlib.Path,
        implementations: Sequence[impls.Implementation],
    ):
        self.size = size
        self.directory = directory
        self.cluster = lc_cluster.Cluster(
            directory / "cluster",
            echo=say,
            controller_manager_gates=CONTROLLER_MANAGER_GATES,
            controller_manager_args=CONTROLLER_MANAGER_ARGS,
        )
        self.implementations = list(implementations)
        self.api: kube.Api | None = None
        self.notes: dict[str, list[str]] = {}
        self.this_source: pathlib.Path | None = None
        # how bench-node-* are labelled now: (N grouped nodes, K groups), see node_group
        self.grouping: tuple[int, int] = size.grid()[0]

    # Cluster ---------------------------------------------------------------------------
    def node_specs(self, count: int) -> list[lc_nodes.NodeSpec]:
        specs = self._group_specs(count)
        specs += [
            lc_nodes.NodeSpec(
                f"bench-latency-{i}",
                {**lc_nodes.INTEL_LABELS, LATENCY_LABEL: f"l{i}"},
                NODE_DEVICES,
            )
            for i in range(self.size.latency_ops + 1)
        ]
        return specs

    def up(self) -> None:
        started = time.monotonic()
        self.cluster.up(self.node_specs(self.size.nodes), timeout=300)
        self.kubectl("apply", "--server-side", "-f", str(CRDS))
        self.cluster.wait_crds_established()
        self.kubectl("create", "namespace", NAMESPACE, check=False)
        self.kubectl("create", "namespace", UNRELATED_NAMESPACE, check=False)
        say(
            f"Control plane with {self.size.nodes} nodes ready in {time.monotonic() - started:.0f}s"
        )

    def _group_specs(self, count: int) -> list[lc_nodes.NodeSpec]:
        nodes, per_kind = self.grouping
        return [
            lc_nodes.NodeSpec(
                f"bench-node-{i}",
                {**lc_nodes.INTEL_LABELS, GROUP_LABEL: node_group(i, nodes, per_kind)},
                NODE_DEVICES,
            )
            for i in range(count)
        ]

    def add_nodes(self, total: int) -> None:
        """Have ``total`` bench nodes (new ones advertise ``NODE_DEVICES`` too)."""
        specs = self._group_specs(total)
        api = self.cluster.api()
        lc_nodes.ensure(api, specs)
        lc_nodes.wait_ready(api, [s.name for s in specs], timeout=1800)

    async def regroup(self, nodes: int, per_kind: int) -> int:
        """Label the first ``nodes`` bench nodes into ``per_kind`` groups, the rest idle.

        Adds nodes when the cluster has fewer; returns how many node labels were changed.
        """
        self.grouping = (nodes, per_kind)
        grouped = await self.bench_nodes()
        if len(grouped) < nodes:
            await asyncio.to_thread(self.add_nodes, nodes)
            grouped = await self.bench_nodes()
        changes = []
        for item in grouped:
            name = item["metadata"]["name"]
            wanted = node_group(int(name.removeprefix("bench-node-")), nodes, per_kind)
            if (item["metadata"].get("labels") or {}).get(GROUP_LABEL) != wanted:
                changes.append((name, wanted))
        limit = asyncio.Semaphore(16)

        async def label(name: str, wanted: str) -> None:
            async with limit:
                await self.kapi.merge_patch(
                    f"/api/v1/nodes/{name}", {"metadata": {"labels": {GROUP_LABEL: wanted}}}
                )

        await asyncio.gather(*(label(n, w) for n, w in changes))
        return len(changes)

    async def bench_nodes(self) -> list[dict[str, Any]]:
        """The ``bench-node-<i>`` nodes (those with a group label, grouped or idle)."""
        listing = await self.kapi.get("/api/v1/nodes", labelSelector=GROUP_LABEL) or {}
        items: list[dict[str, Any]] = listing.get("items", [])
        return items

    def down(self) -> None:
        self.cluster.down()

    def kubectl(self, *args: str, check: bool = True) -> str:
        done = subprocess.run(
            ["kubectl", f"--kubeconfig={self.cluster.kubeconfig}", *args],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if check and done.returncode != 0:
            raise RuntimeError(f"kubectl {' '.join(args)} failed: {done.stderr.strip()}")
        return done.stdout

    @property
    def kapi(self) -> kube.Api:
        assert self.api is not None
        return self.api

    # Implementations -------------------------------------------------------------------
    def start(
        self, impl: impls.Implementation, tag: str, *, serve_metrics: bool = False
    ) -> impls.Running:
        return impls.start(
            impl,
            kubeconfig=self.cluster.kubeconfig,
            namespace=NAMESPACE,
            workdir=self.directory,
            tag=tag,
            this_source=self.this_source,
            serve_metrics=serve_metrics,
        )

    async def stop(self, running: impls.Running) -> None:
        await asyncio.to_thread(running.stop)

    async def clean(self, timeout: float = 300) -> None:
        """No plugin resource, no DaemonSet and no pod left in the plugin namespace."""
        api = self.kapi
        for plural in PLURALS:
            await api.request("DELETE", kube.plural_path(plural), ok=(200,))
        deadline = time.monotonic() + timeout
        while any([await api.count(kube.plural_path(p)) for p in PLURALS]):
            await self._tick(deadline, "plugin resources to be deleted")
        await api.request("DELETE", kube.ds_path(NAMESPACE), ok=(200,))
        while await api.count(kube.ds_path(NAMESPACE)):
            await self._tick(deadline, "DaemonSets to be deleted")
        pods = f"/api/v1/namespaces/{NAMESPACE}/pods"
        while await api.count(pods):
            await self._tick(deadline, "plugin pods to be deleted")

    async def _tick(self, deadline: float, what: str) -> None:
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        await asyncio.sleep(0.5)

    async def nodes_matching(self, selector: dict[str, str]) -> int:
        query = ",".join(f"{k}={v}" for k, v in selector.items())
        listing = await self.kapi.get("/api/v1/nodes", labelSelector=query) or {}
        return len(listing.get("items", []))

    async def count_nodes(self) -> int:
        return await self.kapi.count("/api/v1/nodes")

    async def nodes_not_ready(self) -> int:
        """How many nodes the node-lifecycle controller would keep DaemonSet pods off now."""
        listing = await self.kapi.get("/api/v1/nodes") or {}
        return sum(not node_ready(item) for item in listing.get("items", []))

    def note(self, scenario: str, text: str) -> None:
        self.notes.setdefault(scenario, []).append(text)


async def _with_daemonsets(bench: Bench) -> kube.Mirror:
    return await kube.Mirror(bench.kapi, kube.ds_path(NAMESPACE)).start()


def _present(mirror: kube.Mirror, name: str) -> Callable[[], bool]:
    return lambda: name in mirror.objects


def _log_level(mirror: kube.Mirror, name: str, level: int) -> Callable[[], bool]:
    return lambda: name in mirror.objects and log_level_of(mirror.objects[name]) == level


def _replaced(mirror: kube.Mirror, name: str, old_uid: str) -> Callable[[], bool]:
    return lambda: name in mirror.objects and mirror.objects[name]["metadata"]["uid"] != old_uid


# 6. Start-up ------------------------------------------------------------------------------
async def startup(bench: Bench) -> list[dict[str, Any]]:
    runs: dict[str, list[dict[str, float]]] = {i.name: [] for i in bench.implementations}
    name = "bench-startup"
    ds_name = f"intel-gpu-plugin-{name}"
    for run in range(bench.size.startup_runs):
        for impl in rotate(bench.implementations, run):
            await bench.clean()
            await bench.kapi.create(
                kube.plural_path("gpudeviceplugins"), gpu_cr(name, {LATENCY_LABEL: "l0"})
            )
            mirror = await _with_daemonsets(bench)
            running = bench.start(impl, f"startup-{run}")
            try:
                waits: list[Awaitable[float]] = [mirror.wait_for(_present(mirror, ds_name), 120)]
                if impl.has_readyz:
                    waits.append(running.wait_ready(120, interval=0.01))
                times = await asyncio.gather(*waits)
                figures = {
                    "first_daemonset_ms": (times[0] - running.started) * 1000,
                    "rss_mib_at_first_daemonset": running.rss_mib(),
                }
                if impl.has_readyz:
                    figures["readyz_ms"] = (times[1] - running.started) * 1000
                await asyncio.sleep(1)
                figures["cpu_s_first_second"] = running.cpu_s()
                runs[impl.name].append(figures)
                say(f"startup {impl.name} run {run}: " + _short(figures))
            finally:
                await mirror.stop()
                await bench.stop(running)
    await bench.clean()
    keys = ("first_daemonset_ms", "readyz_ms", "rss_mib_at_first_daemonset", "cpu_s_first_second")
    return [
        stats.record(
            "startup",
            impl,
            {"runs": len(r), "existing_resources": 1, "kinds_enabled": _kinds(impl)},
            stats.median_of_runs(r, keys),
            runs=r,
        )
        for impl, r in runs.items()
    ]


def _kinds(impl: str) -> int:
    return 1 if impl == "floor" else 8


def _short(figures: dict[str, Any]) -> str:
    return ", ".join(
        f"{k}={v:.1f}" if isinstance(v, float) else f"{k}={v}"
        for k, v in figures.items()
        if not isinstance(v, dict)
    )


# 1. Reconcile latency ----------------------------------------------------------------------
async def latency(bench: Bench) -> list[dict[str, Any]]:
    ops = bench.size.latency_ops
    samples: dict[tuple[str, str], list[list[float]]] = {}
    # GC pauses and loop lag of this operator over each run, from its own /metrics.
    runtime_runs: dict[str, list[dict[str, float | int]]] = {}
    for run in range(bench.size.latency_runs):
        for impl in rotate(bench.implementations, run):
            await bench.clean()
            mirror = await _with_daemonsets(bench)
            running = bench.start(impl, f"latency-{run}", serve_metrics=impl is impls.THIS)
            try:
                await running.wait_ready(120)
                measured = await _latency_run(bench, mirror, ops)
                if running.metrics_port is not None:
                    scrape = await asyncio.to_thread(running.scrape_metrics)
                    runtime = stats.runtime_figures(scrape)
                    runtime_runs.setdefault(impl.name, []).append(runtime)
                    say(f"latency {impl.name} run {run} runtime: " + _short(runtime))
            finally:
                await mirror.stop()
                await bench.stop(running)
            for operation, values in measured.items():
                samples.setdefault((impl.name, operation), []).append(values)
                say(
                    f"latency {impl.name} run {run} {operation}: "
                    + _short(stats.summarize_ms(values))
                )
    await bench.clean()
    records = []
    for (impl_name, operation), per_run in samples.items():
        summaries = [stats.summarize_ms(v) for v in per_run]
        figures: dict[str, Any] = stats.median_of_runs(summaries, ("p50_ms", "p99_ms", "mean_ms"))
        pooled = stats.summarize_ms([x for v in per_run for x in v])
        figures.update({f"pooled_{k}": v for k, v in pooled.items()})
        extra: dict[str, Any] = {}
        if impl_name in runtime_runs:
            figures.update(stats.median_of_runs(runtime_runs[impl_name], stats.RUNTIME_FIGURES))
            extra["runtime_runs"] = runtime_runs[impl_name]
        records.append(
            stats.record(
                "reconcile_latency",
                impl_name,
                {"operation": operation, "runs": len(per_run), "operations_per_run": ops},
                figures,
                runs=summaries,
                samples_ms=[round(x * 1000, 2) for v in per_run for x in v],
                **extra,
            )
        )
    return records


async def _latency_run(bench: Bench, mirror: kube.Mirror, ops: int) -> dict[str, list[float]]:
    api = bench.kapi
    crs = kube.plural_path("gpudeviceplugins")
    pause = 0.1
    # warm-up: one create observed end to end, not measured
    await api.create(crs, gpu_cr("bench-warmup", {LATENCY_LABEL: f"l{ops}"}))
    await mirror.wait_for(_present(mirror, "intel-gpu-plugin-bench-warmup"), 60)
    await asyncio.sleep(1)
    result: dict[str, list[float]] = {"create": [], "update": [], "recreate": []}
    names = [f"bench-lat-{i}" for i in range(ops)]

    for i, name in enumerate(names):
        ds = f"intel-gpu-plugin-{name}"
        started = time.monotonic()
        await api.create(crs, gpu_cr(name, {LATENCY_LABEL: f"l{i}"}))
        seen = await mirror.wait_for(_present(mirror, ds), 60)
        result["create"].append(seen - started)
        await asyncio.sleep(pause)
    await asyncio.sleep(2)

    for name in names:
        ds = f"intel-gpu-plugin-{name}"
        started = time.monotonic()
        await api.merge_patch(kube.plural_path("gpudeviceplugins", name), {"spec": {"logLevel": 5}})
        seen = await mirror.wait_for(_log_level(mirror, ds, 5), 60)
        result["update"].append(seen - started)
        await asyncio.sleep(pause)
    await asyncio.sleep(2)

    for name in names:
        ds = f"intel-gpu-plugin-{name}"
        old = mirror.objects[ds]["metadata"]["uid"]
        started = time.monotonic()
        await api.delete(kube.ds_path(NAMESPACE, ds))
        seen = await mirror.wait_for(_replaced(mirror, ds, old), 60)
        result["recreate"].append(seen - started)
        await asyncio.sleep(pause)
    return result


# 2. Convergence at scale (+ 4. API efficiency in the steady state that follows) -------------
def convergence_resources(per_kind: int) -> list[tuple[str, dict[str, Any], dict[str, str]]]:
    """(plural, body, group selector) for 8 kinds x K resources, group j on nodes i%K == j."""
    result = []
    for plural in PLURALS:
        base = sample(plural)
        for j in range(per_kind):
            body = copy.deepcopy(base)
            body["metadata"] = {"name": f"{base['metadata']['name']}-{j}"}
            selector = {**(body["spec"].get("nodeSelector") or {}), GROUP_LABEL: f"g{j}"}
            body["spec"]["nodeSelector"] = selector
            result.append((plural, body, selector))
    return result


async def convergence(bench: Bench) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Records of ``convergence`` (one per grid point and peer) and of ``api_efficiency``.

    The steady state is measured once, after the first run at the last (largest) grid point.
    """
    size = bench.size
    peers = [i for i in bench.implementations if i.kinds == "all"]
    conv_records: list[dict[str, Any]] = []
    api_records: list[dict[str, Any]] = []
    grid = size.grid()
    for index, (nodes, per_kind) in enumerate(grid):
        changed = await bench.regroup(nodes, per_kind)
        say(f"convergence at {nodes} nodes x {per_kind} per kind ({changed} node labels changed)")
        records, steady = await _convergence_point(
            bench, peers, nodes, per_kind, measure_steady=index == len(grid) - 1, shift=index
        )
        conv_records += records
        api_records += steady
    return conv_records, api_records


async def _convergence_point(
    bench: Bench,
    peers: list[impls.Implementation],
    nodes: int,
    per_kind: int,
    *,
    measure_steady: bool,
    shift: int,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    size = bench.size
    resources = convergence_resources(per_kind)
    listing = await bench.kapi.get("/api/v1/nodes") or {}
    node_labels = [item["metadata"].get("labels") or {} for item in listing.get("items", [])]
    expected = {
        body["metadata"]["name"]: sum(
            all(labels.get(k) == v for k, v in selector.items()) for labels in node_labels
        )
        for _, body, selector in resources
    }
    ds_expected = {_ds_name(p, b): expected[b["metadata"]["name"]] for p, b, _ in resources}
    point = f"{nodes}x{per_kind}"
    conv: dict[str, list[dict[str, Any]]] = {i.name: [] for i in peers}
    steady: dict[str, dict[str, Any]] = {}
    for run in range(size.convergence_runs):
        # rotate by grid point too, so that with one run per point no peer always goes first
        for impl in rotate(peers, run + shift):
            await bench.clean()
            mirrors = {
                p: await kube.Mirror(bench.kapi, kube.plural_path(p)).start() for p in PLURALS
            }
            daemonsets = await _with_daemonsets(bench)
            daemonsets.track(lambda ds: _ds_ready(ds, ds_expected.get(ds["metadata"]["name"], -1)))
            for mirror in mirrors.values():
                mirror.track(lambda cr: _converged(cr, expected.get(cr["metadata"]["name"], -1)))
            running = bench.start(impl, f"convergence-{run}")
            try:
                await running.wait_ready(120)
                await asyncio.sleep(2)
                cpu0, started = running.cpu_s(), time.monotonic()
                limit = asyncio.Semaphore(8)

                async def create(
                    plural: str, body: dict[str, Any], limit: asyncio.Semaphore = limit
                ) -> None:
                    async with limit:
                        await bench.kapi.create(kube.plural_path(plural), body)

                await asyncio.gather(*(create(p, b) for p, b, _ in resources))
                created = time.monotonic()
                finished: float | None = started
                deadline = started + size.convergence_timeout
                for plural, mirror in mirrors.items():
                    names = [b["metadata"]["name"] for p, b, _ in resources if p == plural]

                    def done(mirror: kube.Mirror = mirror, names: list[str] = names) -> bool:
                        return all(_converged(mirror.objects.get(n), expected[n]) for n in names)

                    try:
                        seen = await mirror.wait_for(done, max(deadline - time.monotonic(), 1))
                        finished = None if finished is None else max(finished, seen)
                    except TimeoutError:
                        finished = None
                stalled = _stalled(mirrors, resources, expected)
                not_ready = await bench.nodes_not_ready()
                if stalled:
                    bench.note(
                        "convergence",
                        f"{point} {impl.name} run {run}: {len(stalled)} resources not "
                        f"READY == DESIRED after {size.convergence_timeout:.0f}s, "
                        f"e.g. {stalled[:3]}; {not_ready} nodes not Ready",
                    )
                lags = [
                    mirrors[p].first_true[b["metadata"]["name"]]
                    - daemonsets.first_true[_ds_name(p, b)]
                    for p, b, _ in resources
                    if b["metadata"]["name"] in mirrors[p].first_true
                    and _ds_name(p, b) in daemonsets.first_true
                ]
                ds_done = [daemonsets.first_true.get(_ds_name(p, b)) for p, b, _ in resources]
                figures = {
                    "converge_s": None if finished is None else round(finished - started, 3),
                    "daemonsets_ready_s": None
                    if None in ds_done
                    else round(max(t for t in ds_done if t is not None) - started, 3),
                    "status_lag_p50_ms": round(stats.percentile(lags, 50) * 1000, 1)
                    if lags
                    else None,
                    "status_lag_max_ms": round(max(lags) * 1000, 1) if lags else None,
                    "converged_resources": len(resources) - len(stalled),
                    "create_requests_s": round(created - started, 3),
                    "cpu_s": round(running.cpu_s() - cpu0, 3),
                    "rss_mib_converged": round(running.rss_mib(), 1),
                    "nodes_not_ready": not_ready,
                }
                say(f"convergence {point} {impl.name} run {run}: " + _short(figures))
                if measure_steady and run == 0 and size.steady_seconds > 0:
                    steady[impl.name] = await _steady_state(bench, running, size.steady_seconds)
                    figures["rss_mib_after_steady"] = round(running.rss_mib(), 1)
                conv[impl.name].append(figures)
            finally:
                await daemonsets.stop()
                for mirror in mirrors.values():
                    await mirror.stop()
                await bench.stop(running)
    await bench.clean()
    parameters = {
        "point": point,
        "nodes": nodes,
        "kinds": len(PLURALS),
        "resources_per_kind": per_kind,
        "resources": len(resources),
        "plugin_pods": sum(expected.values()),
        "runs": size.convergence_runs,
    }
    keys = (
        "converge_s",
        "daemonsets_ready_s",
        "status_lag_p50_ms",
        "status_lag_max_ms",
        "converged_resources",
        "create_requests_s",
        "cpu_s",
        "rss_mib_converged",
        "rss_mib_after_steady",
        "nodes_not_ready",
    )
    conv_records = [
        stats.record("convergence", impl, parameters, stats.median_of_runs(r, keys), runs=r)
        for impl, r in conv.items()
    ]
    api_records = [
        stats.record(
            "api_efficiency",
            impl,
            {
                "nodes": nodes,
                "resources": len(resources),
                "plugin_pods": sum(expected.values()),
                "window_s": size.steady_seconds,
                "user_agent_prefix": impls.ALL[impl].user_agent_prefix,
            },
            figures,
        )
        for impl, figures in steady.items()
    ]
    return conv_records, api_records


def _ds_name(plural: str, body: dict[str, Any]) -> str:
    return f"intel-{plural.removesuffix('deviceplugins')}-plugin-{body['metadata']['name']}"


def _ds_ready(ds: dict[str, Any], expected: int) -> bool:
    status = ds.get("status") or {}
    return bool(
        status.get("desiredNumberScheduled") == expected and status.get("numberReady") == expected
    )


def _stalled(
    mirrors: dict[str, kube.Mirror],
    resources: list[tuple[str, dict[str, Any], dict[str, str]]],
    expected: dict[str, int],
) -> list[str]:
    """``name (ready/desired of expected)`` of the resources that have not converged."""
    result = []
    for plural, body, _ in resources:
        name = body["metadata"]["name"]
        cr = mirrors[plural].objects.get(name)
        if not _converged(cr, expected[name]):
            status = (cr or {}).get("status") or {}
            ready, desired = status.get("numberReady"), status.get("desiredNumberScheduled")
            result.append(f"{name} ({ready}/{desired} of {expected[name]})")
    return result


def _converged(cr: dict[str, Any] | None, expected: int) -> bool:
    if cr is None:
        return False
    status = cr.get("status") or {}
    return bool(
        status.get("desiredNumberScheduled") == expected and status.get("numberReady") == expected
    )


async def _steady_state(bench: Bench, running: impls.Running, seconds: float) -> dict[str, Any]:
    """Requests of the implementation in a quiet window after convergence (audit log)."""
    await asyncio.sleep(10)  # let the last status writes of the convergence land
    start = time.time()
    say(f"steady state of {running.impl.name}: {seconds:.0f}s window")
    await asyncio.sleep(seconds)
    end = time.time()
    await asyncio.sleep(2)  # the audit backend writes asynchronously
    requests = await asyncio.to_thread(
        _audit_window, bench.cluster.logs, running.impl.user_agent_prefix, start, end
    )
    counted = stats.count_requests(requests, (end - start) / 60)
    say(f"steady state {running.impl.name}: " + _short(counted))
    return counted


def _audit_window(
    logs: pathlib.Path, prefix: str, start: float, end: float
) -> list[dict[str, Any]]:
    lines: list[str] = []
    for path in sorted(logs.glob("audit*.log")):
        with path.open(errors="replace") as handle:
            lines.extend(line for line in handle if prefix in line)
    return stats.audit_requests(lines, user_agent_prefix=prefix, start=start, end=end)


def user_agents(logs: pathlib.Path) -> dict[str, int]:
    """Every User-Agent seen in the audit log with its request count (for the notes)."""
    counts: dict[str, int] = {}
    for path in sorted(logs.glob("audit*.log")):
        with path.open(errors="replace") as handle:
            for line in handle:
                with contextlib.suppress(ValueError):
                    event = json.loads(line)
                    if event.get("stage") == "ResponseComplete":
                        agent = str(event.get("userAgent", "?")).split(" ")[0]
                        counts[agent] = counts.get(agent, 0) + 1
    return dict(sorted(counts.items(), key=lambda item: -item[1]))


# 3. Memory ----------------------------------------------------------------------------------
def _filler(replicas: int) -> dict[str, Any]:
    labels = {"app": "bench-filler"}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "filler", "namespace": UNRELATED_NAMESPACE},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "nodeSelector": {"type": "kwok"},
                    "containers": [{"name": "app", "image": "registry.local/filler:1"}],
                },
            },
        },
    }


async def _scale_unrelated(bench: Bench, replicas: int, timeout: float = 600) -> float:
    """Make the filler Deployment have ``replicas`` Ready pods; seconds it took."""
    api = bench.kapi
    path = f"/apis/apps/v1/namespaces/{UNRELATED_NAMESPACE}/deployments"
    started = time.monotonic()
    if await api.get(f"{path}/filler") is None:
        await api.create(path, _filler(replicas))
    else:
        await api.merge_patch(f"{path}/filler", {"spec": {"replicas": replicas}})
    pods = f"/api/v1/namespaces/{UNRELATED_NAMESPACE}/pods"
    deadline = time.monotonic() + timeout
    while True:
        deployment = await api.get(f"{path}/filler") or {}
        status = deployment.get("status") or {}
        count = await api.count(pods)
        if (status.get("readyReplicas") or 0) == replicas and count == replicas:
            return time.monotonic() - started
        if time.monotonic() > deadline:
            raise TimeoutError(f"filler not at {replicas} ready pods ({count} exist)")
        await asyncio.sleep(2)


async def memory(bench: Bench) -> list[dict[str, Any]]:
    size = bench.size
    levels = [("idle", 0)] + [(f"unrelated_pods_{n}", n) for n in size.unrelated_pods]
    records = []
    selector = {"intel.feature.node.kubernetes.io/gpu": "true"}
    for index, (level, unrelated) in enumerate(levels):
        if unrelated:
            took = await _scale_unrelated(bench, unrelated)
            say(f"memory: {unrelated} unrelated pods Running after {took:.0f}s")
        records += await _memory_level(bench, level, unrelated, selector, index)
    node_levels = [count for count in size.memory_nodes if count > size.nodes]
    if node_levels and size.unrelated_pods:
        await _scale_unrelated(bench, 0)
    # The plugin pods stay on the base cluster's first group: what grows is the cluster.
    on_base = {**selector, GROUP_LABEL: node_group(0, *bench.grouping)}
    for offset, count in enumerate(node_levels, len(levels)):
        started = time.monotonic()
        await asyncio.to_thread(bench.add_nodes, count)
        say(f"memory: {count} nodes Ready after {time.monotonic() - started:.0f}s")
        records += await _memory_level(bench, f"nodes_{count}", 0, on_base, offset)
    if not node_levels:
        bench.note("memory", f"the base cluster already has {size.nodes} nodes: see idle")
    return records


async def _memory_level(
    bench: Bench, level: str, unrelated: int, selector: dict[str, str], index: int
) -> list[dict[str, Any]]:
    nodes = await bench.nodes_matching(selector)
    ds_name = "intel-gpu-plugin-bench-memory"
    records = []
    for impl in rotate(bench.implementations, index):
        await bench.clean()
        mirror = await _with_daemonsets(bench)
        running = bench.start(impl, f"memory-{level}")
        try:
            await running.wait_ready(120)
            rss_ready = running.rss_mib()
            await bench.kapi.create(
                kube.plural_path("gpudeviceplugins"), gpu_cr("bench-memory", selector)
            )

            def ready(mirror: kube.Mirror = mirror) -> bool:
                ds = mirror.objects.get(ds_name)
                status = (ds or {}).get("status") or {}
                return bool(
                    status.get("desiredNumberScheduled") == nodes
                    and status.get("numberReady") == nodes
                )

            await mirror.wait_for(ready, 600)
            samples = []
            deadline = time.monotonic() + bench.size.memory_settle
            while time.monotonic() < deadline:
                samples.append(running.rss_mib())
                await asyncio.sleep(0.5)
            samples.append(running.rss_mib())
            figures = {
                "rss_mib": round(samples[-1], 1),
                "rss_mib_peak": round(max(samples), 1),
                "rss_mib_ready": round(rss_ready, 1),
                "cpu_s": round(running.cpu_s(), 2),
            }
            say(f"memory {level} {impl.name}: " + _short(figures))
        finally:
            await mirror.stop()
            await bench.stop(running)
        records.append(
            stats.record(
                "memory",
                impl.name,
                {
                    "level": level,
                    "nodes": await bench.count_nodes(),
                    "unrelated_pods": unrelated,
                    "resources": 1,
                    "plugin_pods": nodes,
                    "settle_s": bench.size.memory_settle,
                },
                figures,
            )
        )
    await bench.clean()
    return records
