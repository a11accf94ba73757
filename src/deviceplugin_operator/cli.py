"""Composition root: flags and environment become settings; the manager is started with them.

``deviceplugin-operator run`` accepts the reference operator's flags with the same names and
defaults (``--metrics-bind-address``, ``--health-probe-bind-address``,
``--deviceplugin-namespace``, ``--leader-elect``, ``--metrics-secure``, ``--enable-http2``,
``--devices``) and its environment (``DEVICEPLUGIN_NAMESPACE``, ``DEVICEPLUGIN_SECRET``,
``<IMAGE>_SHA``). This is the only module that reads ``os.environ``.

Leader election can be tuned (``--leader-elect-lease-duration``, ``--leader-elect-renew-deadline``,
``--leader-elect-retry-period``, Go durations such as ``15s``; ``--leader-elect-namespace``,
by default the operator's own namespace), and a mounted metrics certificate used
(``--metrics-cert-path``, kubebuilder's name). A replica that loses the lease exits with status 1
so that Kubernetes restarts it.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import logging
import os
import pathlib
import re
import signal
import sys
from collections.abc import Mapping, Sequence

from deviceplugin_operator import devices, manager, settings
from deviceplugin_operator.controller import election

log = logging.getLogger(__name__)

SERVICE_ACCOUNT_NAMESPACE = pathlib.Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
"""The pod's namespace, as mounted with its service account token."""

_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_UNIT_SECONDS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


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


def parse_duration(text: str) -> float:
    """A Go duration (``15s``, ``1m30s``, ``500ms``) or plain seconds → seconds."""
    text = text.strip()
    try:
        return float(text)
    except ValueError:
        pass
    parts = _DURATION_PART.findall(text)
    if not parts or "".join(number + unit for number, unit in parts) != text:
        raise argparse.ArgumentTypeError(f"invalid duration {text!r} (e.g. 15s, 1m30s, 500ms)")
    return sum(float(number) * _UNIT_SECONDS[unit] for number, unit in parts)


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
        "--leader-elect-lease-duration",
        type=parse_duration,
        default=15.0,
        metavar="DURATION",
        help="how long followers wait after the last renewal they saw (default 15s)",
    )
    run.add_argument(
        "--leader-elect-renew-deadline",
        type=parse_duration,
        default=10.0,
        metavar="DURATION",
        help="how long the leader retries renewing before it gives up (default 10s)",
    )
    run.add_argument(
        "--leader-elect-retry-period",
        type=parse_duration,
        default=2.0,
        metavar="DURATION",
        help="interval between renewals and acquisition attempts (default 2s)",
    )
    run.add_argument(
        "--leader-elect-namespace",
        default=None,
        help="namespace of the Lease (default: env POD_NAMESPACE, then the service "
        "account's namespace, then the plugin namespace)",
    )
    run.add_argument(
        "--metrics-secure",
        action="store_true",
        help="serve metrics over HTTPS with TokenReview/SubjectAccessReview",
    )
    run.add_argument(
        "--metrics-cert-path",
        default=None,
        help="directory with the metrics server certificate (default: self-signed)",
    )
    run.add_argument("--metrics-cert-name", default="tls.crt")
    run.add_argument("--metrics-cert-key", default="tls.key")
    run.add_argument(
        "--enable-http2",
        action="store_true",
        help="offer HTTP/2 on the webhook server (the metrics server speaks HTTP/1.1 only)",
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
    run.add_argument(
        "--webhook-cert-check-period",
        type=parse_duration,
        default=manager.Options.certificate_check_period,
        metavar="DURATION",
        help="how often the self-managed certificate is checked: a deleted Secret is "
        "recreated and a lost CA bundle rewritten (default 10s)",
    )
    run.add_argument("--webhook-service", default="intel-deviceplugins-webhook-service")
    run.add_argument(
        "--webhook-configuration-prefix",
        default="intel-deviceplugins-",
        help="prefix of the webhook configuration names whose caBundle is patched",
    )
    run.add_argument(
        "--plugin-service-account",
        default="",
        help="ServiceAccount of the plugin pods (token not mounted); default: the "
        "namespace's default account, as the reference",
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
        plugin_service_account=args.plugin_service_account or None,
    )


def leader_election_namespace(
    args: argparse.Namespace,
    environ: Mapping[str, str],
    service_account_namespace: pathlib.Path = SERVICE_ACCOUNT_NAMESPACE,
) -> str:
    """The flag, else the pod's namespace (env, then service account), else the plugins'."""
    if args.leader_elect_namespace:
        return str(args.leader_elect_namespace)
    if environ.get("POD_NAMESPACE"):
        return environ["POD_NAMESPACE"]
    try:
        mounted = service_account_namespace.read_text().strip()
    except OSError:
        mounted = ""
    return mounted or environ.get("DEVICEPLUGIN_NAMESPACE") or args.deviceplugin_namespace


def build_election(
    args: argparse.Namespace,
    environ: Mapping[str, str],
    service_account_namespace: pathlib.Path = SERVICE_ACCOUNT_NAMESPACE,
) -> election.Config | None:
    if not args.leader_elect:
        return None
    try:
        return election.Config(
            namespace=leader_election_namespace(args, environ, service_account_namespace),
            identity=election.default_identity(),
            lease_duration=args.leader_elect_lease_duration,
            renew_deadline=args.leader_elect_renew_deadline,
            retry_period=args.leader_elect_retry_period,
        )
    except ValueError as error:
        raise UsageError(f"Invalid leader election timing: {error}") from error


def build_options(args: argparse.Namespace, environ: Mapping[str, str]) -> manager.Options:
    return manager.Options(
        kubeconfig=args.kubeconfig or environ.get("KUBECONFIG") or None,
        health_probe_bind_address=args.health_probe_bind_address,
        metrics_bind_address=args.metrics_bind_address,
        metrics_secure=args.metrics_secure,
        metrics_cert_path=args.metrics_cert_path,
        metrics_cert_name=args.metrics_cert_name,
        metrics_cert_key=args.metrics_cert_key,
        leader_election=build_election(args, environ),
        resync_period=args.resync_period,
        webhook_port=args.webhook_port,
        webhook_host=args.webhook_host,
        webhook_cert_dir=args.webhook_cert_dir,
        webhook_certs=args.webhook_certs,
        webhook_hosts=tuple(h.strip() for h in args.webhook_cert_hosts.split(",") if h.strip()),
        webhook_secret=args.webhook_secret,
        certificate_check_period=args.webhook_cert_check_period,
        webhook_service=args.webhook_service,
        webhook_configuration_prefix=args.webhook_configuration_prefix,
        operator_namespace=args.operator_namespace
        or environ.get("POD_NAMESPACE")
        or environ.get("DEVICEPLUGIN_NAMESPACE")
        or "inteldeviceplugins-system",
        enable_http2=args.enable_http2,
    )


async def _run(config: settings.Settings, options: manager.Options) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await manager.run(config, options, stop)
    return 0


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
    # What exists now (modules, models, their schemas) lives as long as the process: the
    # collector need not scan it on every full collection, which shortens its pauses.
    gc.freeze()
    return asyncio.run(_run(config, options))


if __name__ == "__main__":
    sys.exit(main())
