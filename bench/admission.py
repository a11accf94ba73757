"""Scenario 5, admission latency: CR validation and SGX Pod mutation through the apiserver, and
AdmissionReviews straight at the webhook server, at fixed request rates (open loop).

For this operator and the reference, the implementation runs with its webhook server on a
self-signed certificate, and webhook configurations for GpuDevicePlugin (defaulting and
validation) and the SGX Pod mutator, generated from the device registry, point at it by URL
with that certificate as caBundle. Requests are server-side dry runs (nothing is stored):

* ``validate_cr``: a GpuDevicePlugin create → the defaulting and the validating webhook;
* ``mutate_sgx_pod``: a Pod asking for ``sgx.intel.com/epc`` → the SGX Pod mutator;
* ``direct_validate``: an AdmissionReview POSTed to the webhook server itself (no apiserver):
  the server's own latency.

The floor is the apiserver with no webhook registered (the same dry runs): what admission
costs on top of it is the webhook. For the runs through the apiserver, the apiserver's own view
of the webhook calls is taken from its ``apiserver_admission_webhook_admission_duration_seconds``
histogram (scraped before and after each run): calls, mean per call (exact, from the sum) and
the share of calls under 5 and 25 ms (its coarsest buckets: 5, 25, 100 ms ...). Rates and
duration come from the size; each request is sent at its scheduled time whatever the previous
ones do (open loop), so a slow server shows as latency, not as a lower rate.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import ssl
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp

from bench import impls, stats
from bench.scenarios import NAMESPACE, Bench, say
from deviceplugin_operator import devices
from deviceplugin_operator.manifests import webhooks

SCENARIO = "admission_latency"
RATES = (50, 200)
KINDS = [devices.KINDS["gpu"], devices.KINDS["sgx"]]
GPU_PATH = "/apis/deviceplugin.intel.com/v1/gpudeviceplugins"
POD_PATH = f"/api/v1/namespaces/{NAMESPACE}/pods"
VALIDATE_GPU = devices.KINDS["gpu"].validate_path


def gpu_body() -> dict[str, Any]:
    return {
        "apiVersion": "deviceplugin.intel.com/v1",
        "kind": "GpuDevicePlugin",
        "metadata": {"name": f"adm-{uuid.uuid4().hex[:10]}"},
        "spec": {"sharedDevNum": 2, "logLevel": 2},
    }


def sgx_pod() -> dict[str, Any]:
    epc = {"sgx.intel.com/epc": "1Mi"}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": f"adm-{uuid.uuid4().hex[:10]}",
            "annotations": {"sgx.intel.com/quote-provider": "aesmd"},
        },
        "spec": {
            "containers": [
                {"name": "app", "image": "example.invalid/app:1", "resources": {"limits": epc}}
            ]
        },
    }


WEBHOOK_METRIC = "apiserver_admission_webhook_admission_duration_seconds"
_SAMPLE = re.compile(r"^(\w+)\{([^}]*)\} (\S+)$")
_LABEL = re.compile(r'(\w+)="([^"]*)"')

Histogram = dict[str, float]
"""``le`` bound (as written, ``+Inf`` included) → cumulative count, plus ``sum`` and ``count``."""


def webhook_histograms(text: str) -> dict[tuple[str, str], Histogram]:
    """The apiserver's webhook duration histograms by (webhook name, type), from /metrics."""
    found: dict[tuple[str, str], Histogram] = {}
    for line in text.splitlines():
        match = _SAMPLE.match(line)
        if match is None or not match.group(1).startswith(WEBHOOK_METRIC):
            continue
        metric, labels, value = match.group(1), dict(_LABEL.findall(match.group(2))), match.group(3)
        histogram = found.setdefault((labels.get("name", ""), labels.get("type", "")), {})
        suffix = metric.removeprefix(WEBHOOK_METRIC)
        if suffix == "_bucket":
            histogram[labels["le"]] = histogram.get(labels["le"], 0.0) + float(value)
        elif suffix in ("_sum", "_count"):
            key = suffix.removeprefix("_")
            histogram[key] = histogram.get(key, 0.0) + float(value)
    return found


def webhook_figures(
    before: dict[tuple[str, str], Histogram], after: dict[tuple[str, str], Histogram]
) -> dict[str, Any]:
    """Calls made between two scrapes, over every webhook: count, mean and bucket shares."""
    delta: Histogram = {}
    for key, histogram in after.items():
        earlier = before.get(key, {})
        for field, value in histogram.items():
            delta[field] = delta.get(field, 0.0) + value - earlier.get(field, 0.0)
    calls = delta.get("count", 0.0)
    if calls <= 0:
        return {}
    return {
        "webhook_calls": int(calls),
        "webhook_mean_ms": round(delta.get("sum", 0.0) / calls * 1000, 2),
        "webhook_share_under_5ms": round(delta.get("0.005", 0.0) / calls, 3),
        "webhook_share_under_25ms": round(delta.get("0.025", 0.0) / calls, 3),
    }


async def _scrape_webhooks(bench: Bench) -> dict[tuple[str, str], Histogram]:
    api = bench.kapi
    async with api.session.get(api.server + "/metrics") as reply:
        return webhook_histograms(await reply.text()) if reply.status == 200 else {}


def review(body: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": str(uuid.uuid4()),
            "kind": {"group": "deviceplugin.intel.com", "version": "v1", "kind": "GpuDevicePlugin"},
            "resource": {
                "group": "deviceplugin.intel.com",
                "version": "v1",
                "resource": "gpudeviceplugins",
            },
            "name": body["metadata"]["name"],
            "operation": "CREATE",
            "userInfo": {"username": "bench"},
            "object": {**body, "spec": {**body["spec"], "image": "intel/intel-gpu-plugin:0.36.0"}},
            "dryRun": True,
        },
    }


async def open_loop(
    rate: int, seconds: float, send: Callable[[], Awaitable[bool]]
) -> tuple[list[float], int]:
    """Send ``rate`` requests per second for ``seconds``; (latencies of successes, failures)."""
    loop = asyncio.get_running_loop()
    count = int(rate * seconds)
    start = loop.time() + 0.05

    async def timed() -> tuple[float, bool]:
        sent = time.perf_counter()
        try:
            ok = await send()
        except (aiohttp.ClientError, TimeoutError):
            ok = False
        return time.perf_counter() - sent, ok

    tasks = []
    for index in range(count):
        delay = start + index / rate - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(timed()))
    done = await asyncio.gather(*tasks)
    return [latency for latency, ok in done if ok], sum(1 for _, ok in done if not ok)


class Target:
    """Where requests go for one implementation (webhooks registered by URL or none)."""

    def __init__(self, bench: Bench, name: str, port: int | None, ca: bytes | None):
        self.bench = bench
        self.name = name
        self.port = port
        self.ca = ca
        self.prefix = f"bench-{name}-"

    def register(self) -> None:
        if self.port is None or self.ca is None:
            return
        port, ca = self.port, self.ca

        def url(path: str) -> dict[str, Any]:
            return {
                "url": f"https://127.0.0.1:{port}{path}",
                "caBundle": base64.b64encode(ca).decode(),
            }

        for configuration in webhooks.configurations(KINDS, url, prefix=self.prefix):
            path = self.bench.directory / f"{self.prefix}{configuration['kind']}.json"
            path.write_text(json.dumps(configuration))
            self.bench.kubectl("apply", "-f", str(path))

    def unregister(self) -> None:
        for kind, name in (
            ("mutatingwebhookconfiguration", webhooks.MUTATING_NAME),
            ("validatingwebhookconfiguration", webhooks.VALIDATING_NAME),
        ):
            self.bench.kubectl("delete", kind, self.prefix + name, "--ignore-not-found")


async def _dry_run(bench: Bench, path: str, body: dict[str, Any], expect: str) -> bool:
    api = bench.kapi
    async with api.session.post(api.server + path, params={"dryRun": "All"}, json=body) as reply:
        text = await reply.text()
        return reply.status == 201 and expect in text


async def _measure(bench: Bench, target: Target, seconds: float) -> list[dict[str, Any]]:
    webhooked = target.port is not None
    # Defaulted image / injected enclave resource prove the webhook ran (not for the floor).
    gpu_mark = "intel-gpu-plugin" if webhooked else "GpuDevicePlugin"
    pod_mark = "sgx.intel.com/enclave" if webhooked else "sgx.intel.com/epc"
    checks = {
        "validate_cr": lambda: _dry_run(bench, GPU_PATH, gpu_body(), gpu_mark),
        "mutate_sgx_pod": lambda: _dry_run(bench, POD_PATH, sgx_pod(), pod_mark),
    }
    deadline = time.monotonic() + 60
    for operation, send in checks.items():
        while not await send():
            if time.monotonic() > deadline:
                raise TimeoutError(f"{target.name}: {operation} never went through its webhook")
            await asyncio.sleep(0.5)
    senders: dict[str, Callable[[], Awaitable[bool]]] = dict(checks)
    direct: aiohttp.ClientSession | None = None
    if webhooked:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        direct = aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context, limit=50))
        url = f"https://127.0.0.1:{target.port}{VALIDATE_GPU}"

        async def post_review() -> bool:
            assert direct is not None
            async with direct.post(url, json=review(gpu_body())) as reply:
                answer = json.loads(await reply.text())
                return reply.status == 200 and bool(answer["response"]["allowed"])

        senders["direct_validate"] = post_review
    records = []
    try:
        for operation, send in senders.items():
            for _ in range(20):  # warm the connections
                await send()
            for rate in RATES:
                through_apiserver = webhooked and operation in checks
                before = await _scrape_webhooks(bench) if through_apiserver else {}
                latencies, failures = await open_loop(rate, seconds, send)
                figures: dict[str, Any] = dict(stats.summarize_ms(latencies)) if latencies else {}
                figures["failures"] = failures
                if through_apiserver:
                    figures.update(webhook_figures(before, await _scrape_webhooks(bench)))
                say(f"admission {target.name} {operation} @{rate}/s: {figures}")
                records.append(
                    stats.record(
                        SCENARIO,
                        target.name,
                        {
                            "operation": operation,
                            "rate_per_s": rate,
                            "seconds": seconds,
                            "case": f"{operation}@{rate}",
                        },
                        figures,
                    )
                )
    finally:
        if direct is not None:
            await direct.close()
    return records


async def admission(bench: Bench, seconds: float = 10.0) -> list[dict[str, Any]]:
    records: list[dict[str, Any]] = []
    for impl in bench.implementations:
        if impl is impls.FLOOR:
            target = Target(bench, "floor", None, None)
            records += await _measure(bench, target, seconds)
            continue
        running = bench.start(impl, "admission")
        try:
            await running.wait_ready(120)
            assert running.webhook_port is not None
            assert running.webhook_ca is not None
            target = Target(bench, impl.name, running.webhook_port, running.webhook_ca)
            await asyncio.to_thread(target.register)
            try:
                records += await _measure(bench, target, seconds)
            finally:
                await asyncio.to_thread(target.unregister)
        finally:
            await bench.stop(running)
    return records
