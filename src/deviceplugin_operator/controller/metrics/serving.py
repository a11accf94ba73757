"""The ``/metrics`` endpoint (``--metrics-bind-address``): plain HTTP, or HTTPS with every
scrape authorised by the API server (``--metrics-secure``).

The HTTPS server uses the certificate in ``--metrics-cert-path`` when given, else a
self-signed one made in memory at start-up, as controller-runtime does; Prometheus scrapes it
with ``insecure_skip_verify`` or the mounted CA. TLS 1.2 is the minimum, with forward-secret
AEAD ciphers only, and ALPN offers HTTP/1.1 alone: aiohttp does not speak HTTP/2, so
``--enable-http2`` cannot turn it on here. Connections are capped and given deadlines as the
webhook server's (``listening``): the two share the process's event loop and memory. While it
listens, the registry's GC-pause and event-loop-lag measurements run (``runtime``).
"""

from __future__ import annotations

import dataclasses
import datetime
import logging
import pathlib
import socket
import ssl
import tempfile

from aiohttp import web

from deviceplugin_operator import listening
from deviceplugin_operator.controller import certificates, probes
from deviceplugin_operator.controller.metrics import authorizing, recording
from deviceplugin_operator.kube import errors

log = logging.getLogger(__name__)

PATH = "/metrics"
METRICS_COMMON_NAME = "intel-deviceplugin-operator-metrics"
"""Subject of the self-signed certificate; the names are its SANs."""


@dataclasses.dataclass(frozen=True)
class TLSFiles:
    """Where a mounted serving certificate is (kubebuilder's ``--metrics-cert-*`` flags)."""

    directory: pathlib.Path
    cert_name: str = "tls.crt"
    key_name: str = "tls.key"


def tls_context(files: TLSFiles | None, *, enable_http2: bool = False) -> ssl.SSLContext:
    """A server context: the mounted certificate, or a fresh self-signed one."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_ciphers("ECDHE+AESGCM:ECDHE+CHACHA20")
    context.set_alpn_protocols(["http/1.1"])
    if enable_http2:
        log.info("Kept HTTP/1.1 on the metrics server: HTTP/2 is not available there")
    if files is not None:
        context.load_cert_chain(files.directory / files.cert_name, files.directory / files.key_name)
        return context
    names = dict.fromkeys(["localhost", "127.0.0.1", socket.gethostname()])
    hosts = [host for host in names if certificates.host_problem(host) is None]
    bundle = certificates.issue(
        hosts, datetime.datetime.now(datetime.UTC), common_name=METRICS_COMMON_NAME
    )
    # ssl loads certificate chains only from files: the key touches a private temporary
    # directory for the duration of the call.
    with tempfile.TemporaryDirectory(prefix="metrics-tls-") as directory:
        cert, key = pathlib.Path(directory, "tls.crt"), pathlib.Path(directory, "tls.key")
        cert.write_bytes(bundle.cert + bundle.ca_cert)
        key.write_bytes(bundle.key)
        context.load_cert_chain(cert, key)
    return context


class MetricsServer:
    """Serves a ``recording.Metrics`` registry; ``authorizer`` guards every scrape."""

    def __init__(
        self,
        metrics: recording.Metrics,
        *,
        authorizer: authorizing.Authorizer | None = None,
        ssl_context: ssl.SSLContext | None = None,
        limits: listening.Limits = listening.LIMITS,
    ) -> None:
        self.metrics = metrics
        self.authorizer = authorizer
        self.ssl_context = ssl_context
        self.limits = limits
        self.port: int | None = None
        """The bound port once started (useful with port 0)."""
        self._runner: web.AppRunner | None = None

    async def _scrape(self, request: web.Request) -> web.Response:
        if self.authorizer is not None:
            refusal = await self._refusal(request)
            if refusal is not None:
                return refusal
        body, content_type = self.metrics.exposition(request.headers.get("Accept", ""))
        return web.Response(body=body, headers={"Content-Type": content_type})

    async def _refusal(self, request: web.Request) -> web.Response | None:
        assert self.authorizer is not None
        try:
            decision = await self.authorizer.decide(
                request.headers.get("Authorization"), request.method.lower(), request.path
            )
        except errors.KubeError as error:
            log.warning("Authorizing a metrics scrape failed", extra={"error": str(error)})
            return web.Response(status=500, text="Authentication failed")
        if decision.verdict is authorizing.Verdict.UNAUTHENTICATED:
            return web.Response(status=401, text="Unauthorized")
        if decision.verdict is authorizing.Verdict.THROTTLED:
            return web.Response(
                status=429,
                text="Too many unknown tokens; retry later",
                headers={"Retry-After": "1"},
            )
        if decision.verdict is authorizing.Verdict.FORBIDDEN:
            log.debug("Refused a metrics scrape", extra={"user": decision.user})
            return web.Response(status=403, text=f"Authorization denied for user {decision.user}")
        return None

    async def start(self, address: str) -> None:
        """Listen on ``address`` (``"0"`` disables the server)."""
        bind = probes.parse_bind_address(address)
        if bind is None:
            return
        app = web.Application()
        app.router.add_get(PATH, self._scrape)
        self._runner = web.AppRunner(app, access_log=None, **listening.runner_options(self.limits))
        await self._runner.setup()
        site = listening.GuardedSite(
            self._runner, bind[0], bind[1], ssl_context=self.ssl_context, limits=self.limits
        )
        await site.start()
        self.port = site.port
        self.metrics.runtime.start()
        log.info(
            "Serving metrics",
            extra={"address": f"{bind[0]}:{self.port}", "secure": self.ssl_context is not None},
        )

    async def stop(self) -> None:
        await self.metrics.runtime.stop()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
