"""``/metrics`` of an elected in-process operator against the real control plane: the
controller-runtime names after a reconcile, per-resource pod gauges that follow the resource,
and ``--metrics-secure`` authorising scrapes with TokenReview and SubjectAccessReview
(401 without a valid token, 403 without RBAC, 200 with a ClusterRole for /metrics).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import pathlib
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from prometheus_client import parser

from clusters import TestCluster
from deviceplugin_operator import devices, manager, settings
from deviceplugin_operator.controller import election
from deviceplugin_operator.controller.metrics import recording
from deviceplugin_operator.kube import client, errors, resources
from polling import eventually_async

pytestmark = [pytest.mark.cluster, pytest.mark.asyncio(loop_scope="session")]

ROOT = pathlib.Path(__file__).resolve().parents[2]
GPU = devices.KINDS["gpu"]
GPU_PLUGINS = resources.Resource.of(
    GPU.resource.api_version, GPU.kind, GPU.plural, namespaced=False
)
SERVED = (
    "controller_runtime_reconcile_total",
    "controller_runtime_reconcile_errors_total",
    "controller_runtime_reconcile_time_seconds_bucket",
    "controller_runtime_active_workers",
    "controller_runtime_max_concurrent_reconciles",
    "workqueue_depth",
    "workqueue_adds_total",
    "workqueue_retries_total",
    "workqueue_queue_duration_seconds_bucket",
    "workqueue_work_duration_seconds_bucket",
    "workqueue_unfinished_work_seconds",
    "workqueue_longest_running_processor_seconds",
    "rest_client_requests_total",
    "leader_election_master_status",
    "deviceplugin_operator_desired_pods",
    "deviceplugin_operator_ready_pods",
    "process_resident_memory_bytes",
)


class Running:
    def __init__(self, mgr: manager.Manager, kube: client.HttpKubeClient, secure: bool):
        self.manager = mgr
        self.kube = kube
        self.url = f"{'https' if secure else 'http'}://127.0.0.1:{mgr.metrics_server.port}/metrics"

    async def scrape(self, token: str | None = None) -> tuple[int, str]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        async with (
            aiohttp.ClientSession() as session,
            session.get(self.url, headers=headers, ssl=False) as response,
        ):
            return response.status, await response.text()

    async def samples(self) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
        status, body = await self.scrape()
        assert status == 200
        return {
            (sample.name, frozenset(sample.labels.items())): sample.value
            for family in parser.text_string_to_metric_families(body)
            for sample in family.samples
        }


@contextlib.asynccontextmanager
async def operator(
    cluster: TestCluster, namespace: str, *, secure: bool = False
) -> AsyncIterator[Running]:
    """An elected operator for GPU resources, wired as ``manager.run`` wires it."""
    cluster.install_crds(ROOT / "deployments/operator/crd/bases")
    metrics = recording.Metrics()
    hook = metrics.request_hook()
    kube = await client.connect(cluster.kubeconfig, request_hook=hook)
    hook.connected(kube)
    election_kube = await client.connect(cluster.kubeconfig)
    options = manager.Options(
        health_probe_bind_address="0",
        metrics_bind_address="127.0.0.1:0",
        metrics_secure=secure,
        webhook_port=0,
        leader_election=election.Config(namespace=namespace, identity=f"metrics_{uuid.uuid4()}"),
    )
    config = settings.Settings(plugin_namespace=namespace, devices=("gpu",))
    mgr = manager.Manager(config, options, kube, election_kube=election_kube, metrics=metrics)
    stop = asyncio.Event()
    task = asyncio.create_task(mgr.run(stop))
    try:

        async def leading() -> bool:
            return mgr.working

        await eventually_async(leading, timeout=20, what="the operator to lead")
        yield Running(mgr, kube, secure)
    finally:
        stop.set()
        await task
        await kube.close()
        await election_kube.close()


async def test_metrics_after_a_reconcile_use_controller_runtime_names(
    cluster: TestCluster, namespace: str
) -> None:
    async with operator(cluster, namespace) as running:
        name = f"metrics-{uuid.uuid4().hex[:8]}"
        body = {
            "apiVersion": GPU.resource.api_version,
            "kind": GPU.kind,
            "metadata": {"name": name},
            "spec": {},
        }
        await running.kube.create(GPU_PLUGINS, body)
        nodes = len(
            cluster.nodes_matching({"kubernetes.io/arch": "amd64", **GPU.required_node_selector})
        )
        assert nodes
        labels = frozenset({("kind", "GpuDevicePlugin"), ("name", name)})
        try:

            async def reported() -> dict[Any, float] | None:
                found = await running.samples()
                ready = found.get(("deviceplugin_operator_ready_pods", labels))
                return found if ready == nodes else None

            found = await eventually_async(reported, timeout=60, what="ready pods in /metrics")
        finally:
            with contextlib.suppress(errors.NotFound):
                await running.kube.delete(GPU_PLUGINS, name)

        names = {metric for metric, _ in found}
        assert [metric for metric in SERVED if metric not in names] == []
        controller = frozenset({("controller", "gpudeviceplugin")})
        assert found[("deviceplugin_operator_desired_pods", labels)] == nodes

        def reconciles(result: str) -> float:
            return found.get(
                ("controller_runtime_reconcile_total", controller | {("result", result)}), 0.0
            )

        # As controller-runtime counts them: a reconcile that asks to be run again later (a
        # status held to its interval, a device grace period running) is "requeue_after".
        assert reconciles("success") + reconciles("requeue_after") >= 1
        assert reconciles("error") == 0
        assert found[("controller_runtime_max_concurrent_reconciles", controller)] == (
            manager.Options().workers
        )
        queue = frozenset({("name", "gpudeviceplugin"), ("controller", "gpudeviceplugin")})
        assert found[("workqueue_adds_total", queue)] >= 1
        lease = frozenset({("name", "d1c7b6d5.intel.com")})
        assert found[("leader_election_master_status", lease)] == 1
        host = running.kube.host.split("://", 1)[1]
        created = frozenset({("code", "201"), ("method", "POST"), ("host", host)})
        assert found[("rest_client_requests_total", created)] >= 1

        async def forgotten() -> bool:
            return not [key for key in await running.samples() if key[1] == labels]

        await eventually_async(forgotten, timeout=30, what="the deleted resource's series to go")


async def kubectl(cluster: TestCluster, *args: str, **kwargs: Any) -> str:
    """kubectl in a thread, so that the operator on this loop keeps serving."""
    completed = await asyncio.to_thread(cluster.kubectl, *args, **kwargs)
    return completed.stdout.strip()


async def test_secure_metrics_are_authorised_by_the_api_server(
    cluster: TestCluster, namespace: str
) -> None:
    reader = f"dp-test-metrics-reader-{namespace}"
    try:
        for account in ("scraper", "stranger"):
            await kubectl(cluster, "create", "serviceaccount", account, "-n", namespace)
        role = {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": reader},
            "rules": [{"nonResourceURLs": ["/metrics"], "verbs": ["get"]}],
        }
        await kubectl(cluster, "apply", "-f", "-", input=json.dumps(role))
        await kubectl(
            cluster,
            "create",
            "clusterrolebinding",
            reader,
            f"--clusterrole={reader}",
            f"--serviceaccount={namespace}:scraper",
        )
        allowed = await kubectl(cluster, "create", "token", "scraper", "-n", namespace)
        denied = await kubectl(cluster, "create", "token", "stranger", "-n", namespace)

        async with operator(cluster, namespace, secure=True) as running:
            assert running.url.startswith("https://")
            assert (await running.scrape())[0] == 401
            assert (await running.scrape("not-a-token"))[0] == 401
            status, text = await running.scrape(denied)
            assert status == 403
            assert f"system:serviceaccount:{namespace}:stranger" in text

            async def granted() -> str | None:
                # RBAC reaches the authorizer's informer a moment after the binding.
                status, text = await running.scrape(allowed)
                return text if status == 200 else None

            text = await eventually_async(granted, timeout=30, what="an authorised scrape")
            assert "controller_runtime_reconcile_total" in text
            assert "leader_election_master_status" in text
    finally:
        for kind in ("clusterrolebinding", "clusterrole"):
            await kubectl(cluster, "delete", kind, reader, "--ignore-not-found")
