"""The wiring of /metrics: one registry for the whole process, the clients' requests counted in
it, and its server over plain HTTP or, with ``--metrics-secure``, over HTTPS (the certificate
of ``--metrics-cert-path``, else a self-signed one) with every scrape authorised by the API
server."""

from __future__ import annotations

import pathlib
import ssl

from deviceplugin_operator.controller.metrics import authorizing, recording, serving
from deviceplugin_operator.kube import client
from deviceplugin_operator.manager import options, startup


def server(
    metrics: recording.Metrics, kube: client.KubeClient, options: options.Options
) -> serving.MetricsServer:
    """The /metrics server of ``metrics``, authorising scrapes through ``kube`` if secure."""
    return serving.MetricsServer(
        metrics,
        authorizer=authorizing.Authorizer(kube) if options.metrics_secure else None,
    )


async def start(metrics_server: serving.MetricsServer, options: options.Options) -> None:
    """Listen on ``--metrics-bind-address`` (not at all for "0"), with TLS when secure."""
    if options.metrics_secure and options.metrics_bind_address != "0":
        files = None
        if options.metrics_cert_path:
            files = serving.TLSFiles(
                pathlib.Path(options.metrics_cert_path),
                options.metrics_cert_name,
                options.metrics_cert_key,
            )
        try:
            context = serving.tls_context(files, enable_http2=options.enable_http2)
        except (OSError, ssl.SSLError) as error:
            if files is None:
                raise
            raise startup.unusable_certificate(
                "metrics certificate (--metrics-cert-path)",
                files.directory,
                files.cert_name,
                files.key_name,
                "mount the metrics serving certificate and key there (--metrics-cert-name, "
                "--metrics-cert-key), or leave --metrics-cert-path out for a self-signed one",
            ) from error
        metrics_server.ssl_context = context
    with startup.listening("--metrics-bind-address", options.metrics_bind_address):
        await metrics_server.start(options.metrics_bind_address)


async def connect(kubeconfig: str | None, metrics: recording.Metrics) -> client.HttpKubeClient:
    """A client of its own whose requests ``metrics`` counts (``rest_client_requests_total``)."""
    hook = metrics.request_hook()
    kube = await client.connect(kubeconfig, request_hook=hook)
    hook.connected(kube)
    return kube
