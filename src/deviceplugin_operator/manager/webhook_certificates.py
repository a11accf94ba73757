"""The admission server's serving certificate, from one of two sources.

``self-managed``: the operator's own CA and serving certificate in a Secret of its namespace
(``controller.certificates``), checked every ``certificate_check_period``: renewed before
expiry, recreated when the Secret is deleted, the CA bundle written back into the webhook
configurations when a re-apply lost it. ``mounted``: ``tls.crt``/``tls.key`` in
``webhook_cert_dir`` (cert-manager, the OpenShift service CA, OLM), reloaded when they change.

The command's default, ``--webhook-certs=auto``, is ``mounted`` when both files are in the
directory when the process starts, as the reference always reads them (so the reference's
installs, which mount them and grant no rights on Secrets or webhook configurations, work with
this operator's image), and ``self-managed`` otherwise (``choose_mode``).
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import pathlib
import ssl

from deviceplugin_operator.admission import server
from deviceplugin_operator.controller import certificates
from deviceplugin_operator.kube import client, errors, resources
from deviceplugin_operator.manager import options, startup
from deviceplugin_operator.manager.options import CertificateMode

log = logging.getLogger(__name__)


CERT_NAME = "tls.crt"
KEY_NAME = "tls.key"
MODES = ("auto", "self-managed", "mounted")
"""What ``--webhook-certs`` takes."""


def choose_mode(requested: str, cert_dir: str | pathlib.Path) -> CertificateMode:
    """The mode of ``--webhook-certs=requested``: an explicit ``self-managed`` or ``mounted``
    as it is; ``auto`` is ``mounted`` when ``tls.crt`` and ``tls.key`` both exist in
    ``cert_dir`` (a mounted Secret's files are symbolic links: followed), else
    ``self-managed``."""
    if requested not in MODES:
        raise ValueError(f"unknown webhook certificate mode {requested!r}")
    if requested != "auto":
        return CertificateMode(requested, f"--webhook-certs={requested}")
    directory = pathlib.Path(cert_dir)
    found = [name for name in (CERT_NAME, KEY_NAME) if _is_file(directory / name)]
    if len(found) == 2:
        return CertificateMode(
            "mounted",
            f"{CERT_NAME} and {KEY_NAME} found in {directory} (--webhook-cert-dir); "
            "--webhook-certs=self-managed makes the operator manage its own",
            automatic=True,
        )
    if found:
        (missing,) = {CERT_NAME, KEY_NAME} - set(found)
        return CertificateMode(
            "self-managed",
            f"{found[0]} but no {missing} in {directory} (--webhook-cert-dir): not a mounted "
            "pair; --webhook-certs=mounted insists on one",
            automatic=True,
            doubtful=True,
        )
    return CertificateMode(
        "self-managed",
        f"no {CERT_NAME} and {KEY_NAME} in {directory} (--webhook-cert-dir); "
        "--webhook-certs=mounted insists on them",
        automatic=True,
    )


def _is_file(path: pathlib.Path) -> bool:
    try:
        return path.is_file()
    except OSError:  # e.g. a directory the operator may not search: nothing mounted for it
        return False


def webhook_hosts(options: options.Options) -> tuple[str, ...]:
    """Names of the self-managed serving certificate: ``--webhook-cert-hosts``, else those of
    the webhook Service that fit in a certificate."""
    return options.webhook_hosts or certificates.service_hosts(
        options.webhook_service, options.operator_namespace
    )


def client_authenticating_context(options: options.Options) -> ssl.SSLContext:
    """The webhook server's TLS context, requiring a client certificate of
    ``--webhook-client-ca`` when given (a clear error when that file is no CA bundle)."""
    if options.webhook_client_ca is None:
        return server.tls_context(enable_http2=options.enable_http2)
    path = pathlib.Path(options.webhook_client_ca)
    try:
        context = server.tls_context(enable_http2=options.enable_http2, client_ca=path)
    except (OSError, ssl.SSLError) as error:
        raise startup.StartupError(
            f"--webhook-client-ca={path}: cannot load it as PEM CA certificates ({error}); "
            "give the file with the CA that signed the API server's webhook client certificate"
        ) from error
    log.info(
        "Webhook clients must present a certificate",
        extra={"ca": str(path), "names": list(options.webhook_client_names) or "any"},
    )
    return context


class WebhookCertificates:
    """Loads the serving certificate into the admission server's TLS context and keeps it
    current in the background until ``stop``."""

    def __init__(self, kube: client.KubeClient, options: options.Options):
        self.kube = kube
        self.options = options
        self._background: list[asyncio.Task[None]] = []
        self._self_managed: tuple[certificates.SelfManaged, ssl.SSLContext, pathlib.Path] | None = (
            None
        )
        self._mounted: server.MountedCertificates | None = None
        self._expiry: tuple[bytes, float | None] = (b"", None)

    async def start(self) -> ssl.SSLContext:
        """A TLS context serving the current certificate, kept current from now on."""
        options = self.options
        context = client_authenticating_context(options)
        cert_dir = pathlib.Path(options.webhook_cert_dir)
        choice = options.webhook_certs_choice or CertificateMode(
            options.webhook_certs, f"--webhook-certs={options.webhook_certs}"
        )
        log.log(
            logging.WARNING if choice.doubtful else logging.INFO,
            "Webhook certificate: %s",
            options.webhook_certs,
            extra={"why": choice.reason},
        )
        if options.webhook_certs == "mounted":
            mounted = server.MountedCertificates(cert_dir, context)
            if not mounted.reload_if_changed():
                chosen = (
                    "mounted, as --webhook-certs=auto found both files"
                    if choice.automatic
                    else "--webhook-certs=mounted"
                )
                raise startup.unusable_certificate(
                    f"webhook certificate ({chosen})",
                    cert_dir,
                    "tls.crt",
                    "tls.key",
                    "mount the Secret with the serving certificate and its key there "
                    "(--webhook-cert-dir), or let the operator manage its own "
                    "(--webhook-certs=self-managed)",
                )
            self._mounted = mounted
            self._background.append(asyncio.create_task(mounted.watch()))
            return context
        prefix = options.webhook_configuration_prefix
        self_managed = certificates.SelfManaged(
            self.kube,
            options.operator_namespace,
            options.webhook_secret,
            webhook_hosts(options),
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
            # Replicas read a new CA within a check period: trust the previous one far longer.
            ca_overlap=max(
                certificates.CA_OVERLAP,
                datetime.timedelta(seconds=10 * options.certificate_check_period),
            ),
        )
        self._self_managed = (self_managed, context, cert_dir)
        try:
            await self.refresh()
        except errors.NotFound as error:
            # Only the Secret's create can miss anything: its namespace.
            raise startup.namespace_missing(
                options.operator_namespace,
                "the webhook certificate Secret (--operator-namespace, env POD_NAMESPACE)",
            ) from error
        except errors.Forbidden as error:
            refusal = startup.Refusal.parse(error)
            if refusal is None:
                raise
            raise startup.StartupError(
                f"{refusal.error(prefix)}, or serve a mounted certificate (--webhook-certs=mounted)"
            ) from error
        self._background.append(asyncio.create_task(self._keep()))
        return context

    async def refresh(self) -> None:
        """Check the self-managed certificate once: recreate, renew, repair the CA bundles,
        and serve what is stored now."""
        if self._self_managed is None:
            return
        self_managed, context, cert_dir = self._self_managed
        served = self_managed.current
        bundle = await self_managed.ensure()
        if bundle != served:
            server.load_pem(context, bundle.cert, bundle.key, cert_dir)

    def expiry(self) -> float | None:
        """When the served certificate expires (Unix seconds); None before one is served."""
        if self._mounted is not None:
            served = self._mounted.served
        elif self._self_managed is not None and self._self_managed[0].current is not None:
            served = self._self_managed[0].current.cert
        else:
            served = None
        if served is None:
            return None
        if self._expiry[0] != served:
            expires = certificates.not_after(served)
            self._expiry = (served, None if expires is None else expires.timestamp())
        return self._expiry[1]

    async def _keep(self) -> None:
        while True:
            await asyncio.sleep(self.options.certificate_check_period)
            try:
                await self.refresh()
            except errors.KubeError as error:
                log.warning("Checking the webhook certificate failed", extra={"error": str(error)})
            except Exception:
                # E.g. a stored pair that does not match: keep checking, never stop for good.
                log.exception("Checking the webhook certificate crashed")

    def stop(self) -> None:
        """Stop checking and reloading."""
        for task in self._background:
            task.cancel()
