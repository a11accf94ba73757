"""How the process runs, as opposed to what it reconciles (``settings.Settings``): addresses,
certificates, leader election, workers. Built by cli.py from the flags."""

from __future__ import annotations

import dataclasses

from deviceplugin_operator.controller import election


@dataclasses.dataclass(frozen=True)
class CertificateMode:
    """Where the webhook serving certificate comes from, and why
    (``webhook_certificates.choose_mode``)."""

    name: str
    """``self-managed`` or ``mounted``."""

    reason: str
    """Why: the flag, or what ``--webhook-certs=auto`` found in the directory."""

    automatic: bool = False
    """Chosen by ``--webhook-certs=auto`` rather than asked for."""

    doubtful: bool = False
    """``auto`` found half a pair (one file without the other): worth a warning."""


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

    devices_grace_period: float = 300.0
    """Seconds a plugin pod may be ready on a node that advertises none of its kind's
    devices before the resource's ``DevicesAdvertised`` condition reports the node."""

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
    OpenShift service CA, OLM: ``tls.crt``/``tls.key`` in ``webhook_cert_dir``, reloaded).
    The command resolves its ``--webhook-certs=auto`` into one of them
    (``webhook_certificates.choose_mode``)."""

    webhook_certs_choice: CertificateMode | None = None
    """How the command came to ``webhook_certs`` (logged at start); None: set directly."""

    webhook_hosts: tuple[str, ...] = ()
    """Names and addresses of the serving certificate (self-managed); empty → the Service's."""

    webhook_secret: str = "intel-deviceplugins-webhook-server-cert"  # noqa: S105 - a name
    """Secret holding the self-managed CA and serving certificate."""

    webhook_configuration_prefix: str = "intel-deviceplugins-"
    """Prefix of the Mutating/ValidatingWebhookConfiguration names whose caBundle is ours."""

    webhook_service: str = "intel-deviceplugins-webhook-service"
    """Service in front of the webhook server (names of the self-managed certificate)."""

    allowed_image_registries: tuple[str, ...] = ()
    """Registries (each optionally with a path prefix) that plugin and init images must come
    from; empty allows any, as the reference does."""

    webhook_client_ca: str | None = None
    """PEM file of the CA(s) whose client certificates the webhook server requires (the API
    server's, from its admission configuration); None: no client certificate asked for."""

    webhook_client_names: tuple[str, ...] = ()
    """Common or DNS names of the client certificates answered (empty: any the CA signed)."""

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
