"""Metrics: controller-runtime's names and labels, scrape-time gauges, the request counter, the
``/metrics`` server in plain and HTTPS mode, and TokenReview/SubjectAccessReview authorisation."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import datetime
import pathlib
import ssl
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import test_utils as aiohttp_test
from cryptography import x509
from prometheus_client import parser

import fakes
import reviews
from deviceplugin_operator import devices, listening, manager
from deviceplugin_operator.admission import server
from deviceplugin_operator.controller import certificates, queue
from deviceplugin_operator.controller.metrics import authorizing, recording, serving
from deviceplugin_operator.kube import client, errors, objects, resources
from deviceplugin_operator.manager import webhook_certificates

TOKENS = {"good-token": "system:serviceaccount:mon:prometheus", "idle-token": "someone"}
ALLOWED_USERS = {"system:serviceaccount:mon:prometheus"}


def samples(metrics: recording.Metrics) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of a scrape by (name, labels)."""
    body, _ = metrics.exposition()
    found = {}
    for family in parser.text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            found[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return found


def value(metrics: recording.Metrics, metric: str, **labels: str) -> float | None:
    return samples(metrics).get((metric, frozenset(labels.items())))


def test_reconcile_results_and_durations_use_controller_runtime_names() -> None:
    metrics = recording.Metrics()
    gpu = metrics.controller("gpudeviceplugin", workers=2)
    for result in ("success", "success", "error", "requeue_after", "requeue"):
        gpu.started()
        gpu.finished(result, 0.02)
    gpu.started()

    assert value(metrics, "controller_runtime_reconcile_total", **ctl("success")) == 2
    assert value(metrics, "controller_runtime_reconcile_total", **ctl("error")) == 1
    assert value(metrics, "controller_runtime_reconcile_total", **ctl("requeue")) == 1
    assert value(metrics, "controller_runtime_reconcile_total", **ctl("requeue_after")) == 1
    assert value(metrics, "controller_runtime_reconcile_errors_total", **ctl()) == 1
    assert value(metrics, "controller_runtime_reconcile_time_seconds_count", **ctl()) == 5
    assert (
        value(metrics, "controller_runtime_reconcile_time_seconds_bucket", le="0.025", **ctl()) == 5
    )
    assert value(metrics, "controller_runtime_active_workers", **ctl()) == 1
    assert value(metrics, "controller_runtime_max_concurrent_reconciles", **ctl()) == 2


def test_a_cancelled_reconcile_frees_its_worker_without_a_result() -> None:
    metrics = recording.Metrics()
    gpu = metrics.controller("gpudeviceplugin", workers=1)
    gpu.started()
    gpu.finished(None, 1.0)

    assert value(metrics, "controller_runtime_active_workers", **ctl()) == 0
    assert value(metrics, "controller_runtime_reconcile_total", **ctl("success")) == 0
    assert value(metrics, "controller_runtime_reconcile_time_seconds_count", **ctl()) is None


def ctl(result: str | None = None) -> dict[str, str]:
    labels = {"controller": "gpudeviceplugin"}
    if result is not None:
        labels["result"] = result
    return labels


async def test_work_queue_metrics_come_from_the_queue() -> None:
    metrics = recording.Metrics()
    observer = metrics.controller("qatdeviceplugin", workers=1)
    work: queue.WorkQueue[str] = queue.WorkQueue("qatdeviceplugin", observer=observer)
    metrics.add_queue("qatdeviceplugin", work)
    for key in ("a", "b", "a"):
        work.add(key)
    work.add_rate_limited("c")
    taken = await work.get()

    labels = {"name": "qatdeviceplugin", "controller": "qatdeviceplugin"}
    assert value(metrics, "workqueue_depth", priority="", **labels) == 1
    assert value(metrics, "workqueue_adds_total", **labels) == 2
    assert value(metrics, "workqueue_retries_total", **labels) == 1
    assert value(metrics, "workqueue_queue_duration_seconds_count", **labels) == 1
    unfinished = value(metrics, "workqueue_unfinished_work_seconds", **labels)
    longest = value(metrics, "workqueue_longest_running_processor_seconds", **labels)
    assert unfinished is not None
    assert longest is not None
    assert unfinished >= 0
    assert longest >= 0

    work.done(taken)
    assert value(metrics, "workqueue_work_duration_seconds_count", **labels) == 1
    assert value(metrics, "workqueue_unfinished_work_seconds", **labels) == 0
    work.shutdown()


def plugin(name: str, desired: int | None = None, ready: int | None = None) -> dict[str, Any]:
    status = {}
    if desired is not None:
        status["desiredNumberScheduled"] = desired
    if ready is not None:
        status["numberReady"] = ready
    return {"metadata": {"name": name}, "status": status}


def test_pod_gauges_follow_the_cached_statuses_and_vanish_with_their_resource() -> None:
    metrics = recording.Metrics()
    cached = [plugin("gpu-a", 3, 2), plugin("gpu-new")]
    metrics.add_statuses("GpuDevicePlugin", lambda: cached)

    gpu = {"kind": "GpuDevicePlugin"}
    assert value(metrics, "deviceplugin_operator_desired_pods", name="gpu-a", **gpu) == 3
    assert value(metrics, "deviceplugin_operator_ready_pods", name="gpu-a", **gpu) == 2
    assert value(metrics, "deviceplugin_operator_desired_pods", name="gpu-new", **gpu) is None

    cached.pop(0)
    assert not [key for key in samples(metrics) if ("name", "gpu-a") in key[1]]


def test_requests_are_counted_by_code_method_and_host() -> None:
    metrics = recording.Metrics()
    hook = metrics.request_hook()
    hook.host = "10.0.0.1:6443"
    hook(client.RequestRecord("list", "pods", 200, 0.01))
    hook(client.RequestRecord("watch", "pods", 200, 0.01))
    hook(client.RequestRecord("update", "daemonsets", 409, 0.01))
    hook(client.RequestRecord("create", "events", None, 0.01))

    host = {"host": "10.0.0.1:6443"}
    assert value(metrics, "rest_client_requests_total", code="200", method="GET", **host) == 2
    assert value(metrics, "rest_client_requests_total", code="409", method="PUT", **host) == 1
    assert value(metrics, "rest_client_requests_total", code="<error>", method="POST", **host) == 1


def test_leader_status_gauge() -> None:
    metrics = recording.Metrics()
    report = metrics.leading("d1c7b6d5.intel.com")
    lease = {"name": "d1c7b6d5.intel.com"}
    assert value(metrics, "leader_election_master_status", **lease) == 0
    report(True)
    assert value(metrics, "leader_election_master_status", **lease) == 1
    report(False)
    assert value(metrics, "leader_election_master_status", **lease) == 0


async def test_webhook_requests_use_controller_runtime_names_and_paths() -> None:
    metrics = recording.Metrics()
    gpu = {"webhook": "/validate-deviceplugin-intel-com-v1-gpudeviceplugin"}
    recorder = metrics.webhooks([gpu["webhook"]])
    assert value(metrics, "controller_runtime_webhook_requests_total", code="200", **gpu) == 0
    assert value(metrics, "controller_runtime_webhook_requests_total", code="500", **gpu) == 0
    assert value(metrics, "controller_runtime_webhook_requests_in_flight", **gpu) == 0

    # Through the admission server's middleware: a review, a refused content type, and a
    # path that is no webhook (not counted).
    admission = server.AdmissionServer([devices.KINDS["gpu"]], observer=recorder)
    review = reviews.gpu_plugin_create("gpu", "u1")
    async with aiohttp_test.TestClient(aiohttp_test.TestServer(admission.app())) as http:
        answered = await http.post(gpu["webhook"], json=review)
        assert answered.status == 200
        refused = await http.post(gpu["webhook"], data=b"{}")
        assert refused.status == 415
        assert (await http.post("/elsewhere", json=review)).status == 404
    await admission.stop()

    assert value(metrics, "controller_runtime_webhook_requests_total", code="200", **gpu) == 1
    assert value(metrics, "controller_runtime_webhook_requests_total", code="415", **gpu) == 1
    assert value(metrics, "controller_runtime_webhook_latency_seconds_count", **gpu) == 2
    assert value(metrics, "controller_runtime_webhook_requests_in_flight", **gpu) == 0
    assert not [labels for name, labels in samples(metrics) if ("webhook", "/elsewhere") in labels]


def test_webhook_certificate_expiry_is_read_when_scraped() -> None:
    metrics = recording.Metrics()
    name = "deviceplugin_operator_webhook_certificate_expiration_timestamp_seconds"
    assert value(metrics, name) is None
    served: list[float | None] = [None]
    metrics.add_certificate_expiry(lambda: served[0])
    assert value(metrics, name) is None
    served[0] = 1_900_000_000.0
    assert value(metrics, name) == 1_900_000_000.0


def test_webhook_connections_are_read_when_scraped() -> None:
    metrics = recording.Metrics()
    gauge = "deviceplugin_operator_webhook_connections"
    assert value(metrics, gauge, state="open") is None
    seen = [listening.Connections()]
    metrics.add_webhook_connections(lambda: seen[0])
    assert value(metrics, gauge, state="waiting") == 0
    seen[0] = listening.Connections(open=64, waiting=3, waited=40, reset=2)
    assert value(metrics, gauge, state="open") == 64
    assert value(metrics, gauge, state="waiting") == 3
    assert value(metrics, f"{gauge}_waited_total") == 40
    assert value(metrics, f"{gauge}_reset_total") == 2


def test_not_after_reads_the_first_certificate_of_a_chain_without_cryptography() -> None:
    now = datetime.datetime.now(datetime.UTC)
    bundle = certificates.issue(["localhost"], now)
    expected = x509.load_pem_x509_certificate(bundle.cert).not_valid_after_utc
    assert certificates.not_after(bundle.cert + bundle.ca_cert) == expected
    assert certificates.not_after(bundle.ca_cert) == (
        x509.load_pem_x509_certificate(bundle.ca_cert).not_valid_after_utc
    )
    assert certificates.not_after(b"not a certificate") is None
    truncated = b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
    assert certificates.not_after(truncated) is None


def test_every_metric_has_no_created_series_and_process_metrics_are_there() -> None:
    names = {name for name, _ in samples(recording.Metrics())}
    assert not [name for name in names if name.endswith("_created")]
    assert "process_resident_memory_bytes" in names


# Authorisation ------------------------------------------------------------------------------
class ReviewingKube(fakes.FakeKubeClient):
    """Answers TokenReviews from ``TOKENS`` and SubjectAccessReviews from ``ALLOWED_USERS``."""

    def __init__(self) -> None:
        super().__init__()
        self.reviews: list[objects.JsonObject] = []
        self.down = False

    async def create(
        self,
        resource: resources.Resource,
        body: objects.JsonObject,
        namespace: str | None = None,
        *,
        field_manager: str | None = None,
    ) -> objects.JsonObject:
        if resource not in (authorizing.TOKEN_REVIEWS, authorizing.SUBJECT_ACCESS_REVIEWS):
            return await super().create(resource, body, namespace, field_manager=field_manager)
        self.requests["create"] += 1
        if self.down:
            raise errors.TransportError("connection refused")
        self.reviews.append(body)
        spec = body["spec"]
        if resource == authorizing.TOKEN_REVIEWS:
            user = TOKENS.get(spec["token"])
            status: objects.JsonObject = {"authenticated": user is not None}
            if user is not None:
                status["user"] = {"username": user, "uid": "u-1", "groups": ["g"]}
            return {**body, "status": status}
        attributes = spec["nonResourceAttributes"]
        allowed = (
            spec["user"] in ALLOWED_USERS
            and attributes == {"path": "/metrics", "verb": "get"}
            and spec["groups"] == ["g"]
            and spec["uid"] == "u-1"
        )
        return {**body, "status": {"allowed": allowed}}


@pytest.mark.parametrize(
    ("header", "verdict"),
    [
        (None, authorizing.Verdict.UNAUTHENTICATED),
        ("Basic Z29vZA==", authorizing.Verdict.UNAUTHENTICATED),
        ("Bearer nonsense", authorizing.Verdict.UNAUTHENTICATED),
        ("Bearer idle-token", authorizing.Verdict.FORBIDDEN),
        ("Bearer good-token", authorizing.Verdict.ALLOWED),
        ("bearer  good-token ", authorizing.Verdict.ALLOWED),
    ],
)
async def test_authorizer_verdicts(header: str | None, verdict: authorizing.Verdict) -> None:
    decision = await authorizing.Authorizer(ReviewingKube()).decide(header, "get", "/metrics")
    assert decision.verdict is verdict


async def test_missing_token_costs_no_request() -> None:
    kube = ReviewingKube()
    await authorizing.Authorizer(kube).decide(None, "get", "/metrics")
    assert kube.reviews == []


async def test_decisions_are_reused_for_their_ttl_refusals_briefly() -> None:
    kube = ReviewingKube()
    now = [0.0]
    authorizer = authorizing.Authorizer(kube, allow_ttl=10, deny_ttl=5, clock=lambda: now[0])

    for _ in range(3):
        await authorizer.decide("Bearer good-token", "get", "/metrics")
        await authorizer.decide("Bearer idle-token", "get", "/metrics")
        await authorizer.decide("Bearer junk-token", "get", "/metrics")
    # Two reviews (TokenReview + SubjectAccessReview) per known token, one per junk token.
    assert len(kube.reviews) == 2 + 2 + 1

    now[0] = 5.5
    assert (await authorizer.decide("Bearer idle-token", "get", "/metrics")).verdict is (
        authorizing.Verdict.FORBIDDEN
    )
    assert len(kube.reviews) == 2 + 2 + 1 + 2
    now[0] = 10.5
    decision = await authorizer.decide("Bearer good-token", "get", "/metrics")
    assert decision.verdict is authorizing.Verdict.ALLOWED
    assert len(kube.reviews) == 2 + 2 + 1 + 2 + 2


async def test_a_scrape_flood_with_junk_tokens_costs_a_bounded_number_of_reviews() -> None:
    # Issue 14: every scrape with a junk token cost a TokenReview, so anyone reaching the port
    # could make the operator flood the API server. Repeats are cached; new junk tokens are
    # rate-limited (429), and a scraper whose decision is cached is not affected.
    kube = ReviewingKube()
    now = [0.0]
    authorizer = authorizing.Authorizer(
        kube, reviews_per_second=5, review_burst=20, clock=lambda: now[0]
    )
    assert (await authorizer.decide("Bearer good-token", "get", "/metrics")).verdict is (
        authorizing.Verdict.ALLOWED
    )
    verdicts = collections.Counter()
    for index in range(1000):
        now[0] += 0.001
        decision = await authorizer.decide(f"Bearer junk-{index}", "get", "/metrics")
        verdicts[decision.verdict] += 1
        decision = await authorizer.decide("Bearer junk-0", "get", "/metrics")
        assert decision.verdict is authorizing.Verdict.UNAUTHENTICATED
        decision = await authorizer.decide("Bearer good-token", "get", "/metrics")
        assert decision.verdict is authorizing.Verdict.ALLOWED
    token_reviews = [r for r in kube.reviews if r["kind"] == "TokenReview"]
    # 20 of the burst (one spent on good-token) plus 5/s over one second.
    assert len(token_reviews) <= 1 + 20 + 5
    assert verdicts[authorizing.Verdict.THROTTLED] >= 970


# Serving ------------------------------------------------------------------------------------
@contextlib.asynccontextmanager
async def serving_metrics(
    metrics: recording.Metrics,
    *,
    kube: ReviewingKube | None = None,
    secure: bool = False,
) -> AsyncIterator[str]:
    server = serving.MetricsServer(
        metrics,
        authorizer=authorizing.Authorizer(kube) if kube is not None else None,
        ssl_context=serving.tls_context(None) if secure else None,
    )
    await server.start("127.0.0.1:0")
    try:
        yield f"{'https' if secure else 'http'}://127.0.0.1:{server.port}/metrics"
    finally:
        await server.stop()


async def scrape(url: str, token: str | None = None) -> tuple[int, str]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with (
        aiohttp.ClientSession() as session,
        session.get(url, headers=headers, ssl=False) as response,
    ):
        return response.status, await response.text()


async def test_plain_server_serves_the_registry() -> None:
    metrics = recording.Metrics()
    metrics.controller("gpudeviceplugin", 1)
    async with serving_metrics(metrics) as url:
        status, body = await scrape(url)
    assert status == 200
    assert 'controller_runtime_max_concurrent_reconciles{controller="gpudeviceplugin"} 1.0' in body


async def test_disabled_server_binds_nothing() -> None:
    server = serving.MetricsServer(recording.Metrics())
    await server.start("0")
    assert server.port is None
    await server.stop()


async def test_secure_server_answers_401_403_200_and_500() -> None:
    kube = ReviewingKube()
    async with serving_metrics(recording.Metrics(), kube=kube, secure=True) as url:
        assert (await scrape(url))[0] == 401
        assert (await scrape(url, "nonsense"))[0] == 401
        status, body = await scrape(url, "idle-token")
        assert (status, body) == (403, "Authorization denied for user someone")
        status, body = await scrape(url, "good-token")
        assert status == 200
        assert "leader_election_master_status" in body
        kube.down = True
        assert (await scrape(url, "other-token"))[0] == 500


async def test_secure_server_speaks_tls_1_2_or_later_and_http_1_1() -> None:
    async with serving_metrics(recording.Metrics(), kube=ReviewingKube(), secure=True) as url:
        port = int(url.rsplit(":", 1)[1].split("/")[0])
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        context.set_alpn_protocols(["h2", "http/1.1"])
        _, writer = await asyncio.open_connection("127.0.0.1", port, ssl=context)
        tls = writer.get_extra_info("ssl_object")
        assert tls.version() in ("TLSv1.2", "TLSv1.3")
        assert tls.selected_alpn_protocol() == "http/1.1"
        writer.close()
        await writer.wait_closed()

    assert serving.tls_context(None).minimum_version is ssl.TLSVersion.TLSv1_2


async def test_a_mounted_certificate_is_served(tmp_path: pathlib.Path) -> None:
    bundle = certificates.issue(["metrics.example"], datetime.datetime.now(datetime.UTC))
    (tmp_path / "cert.pem").write_bytes(bundle.cert)
    (tmp_path / "key.pem").write_bytes(bundle.key)
    files = serving.TLSFiles(tmp_path, cert_name="cert.pem", key_name="key.pem")
    server = serving.MetricsServer(recording.Metrics(), ssl_context=serving.tls_context(files))
    await server.start("127.0.0.1:0")
    try:
        context = ssl.create_default_context(cadata=bundle.ca_cert.decode())
        context.check_hostname = False
        _, writer = await asyncio.open_connection("127.0.0.1", server.port, ssl=context)
        peer = writer.get_extra_info("ssl_object").getpeercert()
        writer.close()
        await writer.wait_closed()
    finally:
        await server.stop()
    assert ("DNS", "metrics.example") in peer["subjectAltName"]


async def test_the_expiry_of_a_mounted_certificate_follows_its_reload(
    tmp_path: pathlib.Path,
) -> None:
    def mount(bundle: certificates.Bundle) -> float:
        (tmp_path / "tls.crt").write_bytes(bundle.cert + bundle.ca_cert)
        (tmp_path / "tls.key").write_bytes(bundle.key)
        return x509.load_pem_x509_certificate(bundle.cert).not_valid_after_utc.timestamp()

    now = datetime.datetime.now(datetime.UTC)
    first = mount(certificates.issue(["127.0.0.1"], now))
    options = manager.Options(
        webhook_cert_dir=str(tmp_path), webhook_certs="mounted", operator_namespace="ops"
    )
    served = webhook_certificates.WebhookCertificates(fakes.FakeKubeClient(), options)
    assert served.expiry() is None
    await served.start()
    try:
        assert served.expiry() == first
        renewed = mount(certificates.issue(["127.0.0.1"], now + datetime.timedelta(days=30)))
        assert served._mounted is not None
        assert served._mounted.reload_if_changed()
        assert served.expiry() == renewed != first
    finally:
        served.stop()
