"""Composition root: flags and environment become settings; the manager is started with them.

``deviceplugin-operator run`` accepts the reference operator's flags with the same names and
defaults (``--metrics-bind-address``, ``--health-probe-bind-address``,
``--deviceplugin-namespace``, ``--leader-elect``, ``--metrics-secure``, ``--enable-http2``,
``--devices``) and its environment (``DEVICEPLUGIN_NAMESPACE``, ``DEVICEPLUGIN_SECRET``,
``<IMAGE>_SHA``). This is the only module that reads ``os.environ``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sys
from collections.abc import Mapping, Sequence

from deviceplugin_operator import devices, manager, settings

log = logging.getLogger(__name__)


class UsageError(Exception):
    """A flag or environment value the operator cannot run with; printed as one line."""


def parse_devices(values: Sequence[str]) -> tuple[str, ...]:
    """``--devices`` occurrences (each may be a comma list) → device names, all when none."""
    chosen: list[str] = []
    for value in values:
        for name in (part.strip() for part in value.split(",")):
            if not name:
                continue
            if name not in devices.KINDS:
                supported = ", ".join(devices.KINDS)
                raise UsageError(f"Unsupported device: {name} (supported: {supported})")
            if name in chosen:
                raise UsageError(f"Duplicate device: {name}")
            chosen.append(name)
    return tuple(chosen) if chosen else tuple(devices.KINDS)


def image_overrides(environ: Mapping[str, str]) -> dict[str, str]:
    """The non-empty ``<IMAGE>_SHA`` variables (e.g. ``INTEL_GPU_PLUGIN_SHA``)."""
    return {key: value for key, value in environ.items() if key.endswith("_SHA") and value}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="deviceplugin-operator",
        description="Kubernetes operator for the Intel device plugins.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="run the operator (controllers, webhooks, probes)")
    run.add_argument(
        "--metrics-bind-address",
        default=":8080",
        help='metrics endpoint address; "0" disables it (default ":8080")',
    )
    run.add_argument(
        "--health-probe-bind-address",
        default=":8081",
        help='address of /healthz and /readyz (default ":8081")',
    )
    run.add_argument(
        "--deviceplugin-namespace",
        default="kube-system",
        help="namespace of the plugin DaemonSets; env DEVICEPLUGIN_NAMESPACE wins",
    )
    run.add_argument(
        "--leader-elect",
        action="store_true",
        help="elect a leader with the Lease d1c7b6d5.intel.com",
    )
    run.add_argument(
        "--metrics-secure",
        action="store_true",
        help="serve metrics over HTTPS with TokenReview/SubjectAccessReview",
    )
    run.add_argument(
        "--enable-http2",
        action="store_true",
        help="allow HTTP/2 on the webhook and metrics servers",
    )
    run.add_argument(
        "--devices",
        action="append",
        default=[],
        metavar="DEVICE",
        help=f"enable a device ({', '.join(devices.KINDS)}); repeatable or a "
        "comma list; default: all",
    )
    run.add_argument(
        "--kubeconfig", default=None, help="kubeconfig path (default: KUBECONFIG, then in-cluster)"
    )
    run.add_argument(
        "--webhook-port",
        type=int,
        default=9443,
        help="HTTPS port of the admission webhooks; 0 disables them",
    )
    run.add_argument(
        "--webhook-host",
        default="0.0.0.0",  # noqa: S104
        help="address the admission server binds",
    )
    run.add_argument(
        "--webhook-cert-dir",
        default="/tmp/k8s-webhook-server/serving-certs",  # noqa: S108
        help="tls.crt/tls.key directory (read when mounted, written when self-managed)",
    )
    run.add_argument(
        "--webhook-certs",
        choices=("self-managed", "mounted"),
        default="self-managed",
        help="self-managed: own CA in a Secret, caBundle patched (no cert-manager); "
        "mounted: cert-manager or OpenShift service CA, reloaded on change",
    )
    run.add_argument(
        "--webhook-cert-hosts",
        default="",
        help="comma list of DNS names/IPs of the self-managed serving certificate "
        "(default: the webhook Service's names)",
    )
    run.add_argument("--webhook-secret", default="intel-deviceplugins-webhook-server-cert")
    run.add_argument("--webhook-service", default="intel-deviceplugins-webhook-service")
    run.add_argument(
        "--webhook-configuration-prefix",
        default="intel-deviceplugins-",
        help="prefix of the webhook configuration names whose caBundle is patched",
    )
    run.add_argument(
        "--operator-namespace",
        default=None,
        help="namespace of the operator (default: env POD_NAMESPACE, then "
        "DEVICEPLUGIN_NAMESPACE, then inteldeviceplugins-system)",
    )
    run.add_argument(
        "--resync-period",
        type=float,
        default=600.0,
        help="seconds between level-triggered re-reconciles of every CR",
    )
    run.add_argument("--log-format", choices=("text", "json"), default="text")
    run.add_argument(
        "-v", "--verbosity", type=int, default=0, help="log verbosity: 0 info, >=1 debug"
    )
    return parser


class _JsonFormatter(logging.Formatter):
    _STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None)))

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "ts": self.formatTime(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        entry.update({k: v for k, v in vars(record).items() if k not in self._STANDARD})
        if record.exc_info:
            entry["error"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


class _TextFormatter(logging.Formatter):
    _STANDARD = _JsonFormatter._STANDARD

    def format(self, record: logging.LogRecord) -> str:
        extras = " ".join(f"{k}={v}" for k, v in vars(record).items() if k not in self._STANDARD)
        line = super().format(record)
        return f"{line} {extras}" if extras else line


def _configure_logging(log_format: str, verbosity: int) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if log_format == "json":
        handler.setFormatter(_JsonFormatter())
    else:
        handler.setFormatter(_TextFormatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if verbosity > 0 else logging.INFO)
    # The client library logs request bodies at debug level: keep it quiet below -v 5.
    if verbosity < 5:
        logging.getLogger("kubernetes_asyncio").setLevel(logging.WARNING)
        logging.getLogger("aiohttp.access").setLevel(logging.WARNING)


def build_settings(args: argparse.Namespace, environ: Mapping[str, str]) -> settings.Settings:
    return settings.Settings(
        plugin_namespace=environ.get("DEVICEPLUGIN_NAMESPACE") or args.deviceplugin_namespace,
        image_pull_secret=environ.get("DEVICEPLUGIN_SECRET") or None,
        image_overrides=image_overrides(environ),
        devices=parse_devices(args.devices),
    )


def build_options(args: argparse.Namespace, environ: Mapping[str, str]) -> manager.Options:
    return manager.Options(
        kubeconfig=args.kubeconfig or environ.get("KUBECONFIG") or None,
        health_probe_bind_address=args.health_probe_bind_address,
        metrics_bind_address=args.metrics_bind_address,
        resync_period=args.resync_period,
        webhook_port=args.webhook_port,
        webhook_host=args.webhook_host,
        webhook_cert_dir=args.webhook_cert_dir,
        webhook_certs=args.webhook_certs,
        webhook_hosts=tuple(h.strip() for h in args.webhook_cert_hosts.split(",") if h.strip()),
        webhook_secret=args.webhook_secret,
        webhook_service=args.webhook_service,
        webhook_configuration_prefix=args.webhook_configuration_prefix,
        operator_namespace=args.operator_namespace
        or environ.get("POD_NAMESPACE")
        or environ.get("DEVICEPLUGIN_NAMESPACE")
        or "inteldeviceplugins-system",
        enable_http2=args.enable_http2,
    )


async def _run(config: settings.Settings, options: manager.Options) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await manager.run(config, options, stop)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        config = build_settings(args, os.environ)
        options = build_options(args, os.environ)
    except UsageError as error:
        print(error, file=sys.stderr)
        return 1
    _configure_logging(args.log_format, args.verbosity)
    log.info(
        "Starting operator",
        extra={"devices": ",".join(config.devices), "namespace": config.plugin_namespace},
    )
    asyncio.run(_run(config, options))
    return 0


if __name__ == "__main__":
    sys.exit(main())
