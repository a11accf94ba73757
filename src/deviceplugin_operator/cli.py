"""Composition root: flags and environment become settings; the manager is started with them.

``deviceplugin-operator run`` accepts the reference operator's flags with the same names and
defaults (``--metrics-bind-address``, ``--health-probe-bind-address``,
``--deviceplugin-namespace``, ``--leader-elect``, ``--metrics-secure``, ``--enable-http2``,
``--devices``, ``--kubeconfig``, ``-v``, ``-vmodule``) and its environment
(``DEVICEPLUGIN_NAMESPACE``, ``DEVICEPLUGIN_SECRET``, ``<IMAGE>_SHA``). This is the only module
that reads ``os.environ``. Installed as ``intel_deviceplugin_operator`` (the reference's command
name) it is ``run`` itself.

Flags are read with the syntax of Go's ``flag`` package, as the reference reads them (``go_flags``):
``-flag`` or ``--flag``; values as ``-flag=value`` or ``-flag value``; booleans as ``-flag`` or
``-flag=<true|false|1|0|t|f|T|F|TRUE|FALSE|True|False>``. Unlike the reference, an argument
that is not a flag is refused (Go stops reading flags there and ignores the rest, so
``--leader-elect false --devices=gpu`` would run every device).

Leader election can be tuned (``--leader-elect-lease-duration``, ``--leader-elect-renew-deadline``,
``--leader-elect-retry-period``, Go durations such as ``15s``; ``--leader-elect-namespace``,
by default the operator's own namespace), and a mounted metrics certificate used
(``--metrics-cert-path``, kubebuilder's name).

A failed start ends in one line on stderr naming the cause and the fix, never a traceback: a
flag or environment value the operator cannot use exits 2 (checked before anything starts),
anything the cluster or the host refuses at start-up (``manager.StartupError``) exits 1.
"""

from __future__ import annotations

import gc

# The imports below make ~90,000 tracked objects that live as long as the process (modules,
# classes, models): the collections of the older generations they would trigger scan more and
# more of them and find next to nothing (~50 ms of the start-up). The youngest generation is
# still collected, every 3,000 allocations: it holds the imports' garbage (attrs' and
# datetime's discarded classes, ~2,000 objects), which, left to the end, fragments the heap
# (+0.7 MiB idle RSS with no collection at all). What the imports leave is frozen (never
# scanned again) and the thresholds are restored after them.
_THRESHOLDS = gc.get_threshold()
gc.set_threshold(3000, 2**31 - 1, 2**31 - 1)

import argparse
import asyncio
import json
import logging
import os
import pathlib
import re
import signal
import sys
from collections.abc import Mapping, MutableMapping, Sequence
from typing import Any, NoReturn

# First: it imports aiohttp without the import-time work the operator never uses.
import deviceplugin_operator.aiohttp_defaults  # noqa: F401
from deviceplugin_operator import devices, inspection, manager, settings
from deviceplugin_operator.controller import certificates, election, probes

gc.freeze()
gc.set_threshold(*_THRESHOLDS)

log = logging.getLogger(__name__)

SERVICE_ACCOUNT_NAMESPACE = pathlib.Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
"""The pod's namespace, as mounted with its service account token."""

_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_UNIT_SECONDS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
"""RFC 1123 label: what Kubernetes accepts as a namespace (or a Service) name."""

USAGE = 2
"""Exit status of a flag or environment value the operator cannot run with."""
START_FAILED = 1
"""Exit status of a start that the cluster or the host refused (``manager.StartupError``)."""


class UsageError(Exception):
    """A flag or environment value the operator cannot run with; printed as one line."""


class _Parser(argparse.ArgumentParser):
    """argparse with its errors as one line (no usage block): the last line is the cause."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: {message} (see --help)")


_GO_BOOLEANS = {
    **dict.fromkeys(("1", "t", "T", "TRUE", "true", "True"), True),
    **dict.fromkeys(("0", "f", "F", "FALSE", "false", "False"), False),
}
"""What Go's ``strconv.ParseBool`` (so the reference's boolean flags) accepts."""


def parse_bool(text: str) -> bool:
    """A boolean as Go's ``flag`` package reads it."""
    try:
        return _GO_BOOLEANS[text]
    except KeyError:
        raise argparse.ArgumentTypeError(
            f"invalid boolean value {text!r} (true, false, 1, 0, t, f)"
        ) from None


class _Bool(argparse.Action):
    """A Go boolean flag: ``--flag`` is true, ``--flag=false`` false; never a separate word."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: Any) -> None:
        kwargs.setdefault("default", False)
        super().__init__(
            option_strings, dest, nargs="?", const=True, type=parse_bool, metavar="BOOL", **kwargs
        )

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        setattr(namespace, self.dest, values)


class _GoFlags(_Parser):
    """A command whose flags are read with Go's ``flag`` syntax (``go_flags``) first, unless
    ``go_syntax`` is false (commands with positional arguments)."""

    def __init__(self, *args: Any, go_syntax: bool = True, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.go_syntax = go_syntax

    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        argv = list(sys.argv[1:] if args is None else args)
        return super().parse_known_args(go_flags(self, argv) if self.go_syntax else argv, namespace)


def _long_name(action: argparse.Action) -> str:
    return max(action.option_strings, key=len)


def go_flags(parser: argparse.ArgumentParser, argv: Sequence[str]) -> list[str]:
    """``argv`` read as Go's ``flag`` package reads the reference's, rewritten for argparse:
    every flag as ``--long-name=value``, or ``--help`` alone.

    Go's forms: ``-name`` and ``--name`` alike, ``-name=value``, ``-name value`` (the next
    argument, whatever it looks like, is the value of a non-boolean flag), booleans only as
    ``-name`` or ``-name=<bool>``; ``-h``, ``-help`` and ``--help`` ask for the usage; ``--``
    ends the flags. Errors are Go's words, as one ``UsageError`` line. An argument that is not a
    flag is an error here (Go stops there and ignores the rest, silently).
    """
    flags = {
        option.lstrip("-"): action for action in parser._actions for option in action.option_strings
    }
    prog = parser.prog
    rewritten: list[str] = []
    previous: tuple[str, argparse.Action] | None = None
    index = 0
    while index < len(argv):
        arg = argv[index]
        index += 1
        if arg == "--":
            if index < len(argv):
                raise _stray(prog, argv[index], None)
            break
        if len(arg) < 2 or not arg.startswith("-"):
            raise _stray(prog, arg, previous)
        name = arg[2:] if arg.startswith("--") else arg[1:]
        if not name or name[0] in "-=":
            raise UsageError(f"{prog}: bad flag syntax: {arg} (see --help)")
        name, has_value, value = name.partition("=")
        action = flags.get(name)
        if isinstance(action, argparse._HelpAction) or (action is None and name in ("h", "help")):
            return ["--help"]
        if action is None:
            raise UsageError(f"{prog}: flag provided but not defined: -{name} (see --help)")
        if isinstance(action, _Bool):
            if has_value and value not in _GO_BOOLEANS:
                raise UsageError(
                    f'{prog}: invalid boolean value "{value}" for -{name}: parse error '
                    "(true, false, 1, 0, t, f, T, F, TRUE, FALSE, True, False)"
                )
            rewritten.append(f"{_long_name(action)}={value if has_value else 'true'}")
            previous = None if has_value else (arg, action)
            continue
        if not has_value:
            if index >= len(argv):
                raise UsageError(f"{prog}: flag needs an argument: -{name} (see --help)")
            value = argv[index]
            index += 1
        rewritten.append(f"{_long_name(action)}={value}")
        previous = None
    return rewritten


def _stray(prog: str, arg: str, after: tuple[str, argparse.Action] | None) -> UsageError:
    if after is not None and arg in _GO_BOOLEANS:
        flag = after[0]
        return UsageError(
            f"{prog}: unexpected argument {arg!r} after the boolean flag {flag}: write "
            f"{flag}={arg} (the reference operator would take {flag} as true and silently "
            "ignore every argument from here on)"
        )
    return UsageError(
        f"{prog}: unexpected argument {arg!r}: only flags are accepted (-flag, -flag=value, "
        "-flag value); the reference operator would silently ignore every argument from here on"
    )


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
    """A Go duration (``15s``, ``1m30s``, ``500ms``) or plain seconds → seconds (>= 0)."""
    text = text.strip()
    try:
        seconds = float(text)
    except ValueError:
        parts = _DURATION_PART.findall(text)
        if not parts or "".join(number + unit for number, unit in parts) != text:
            raise argparse.ArgumentTypeError(
                f"invalid duration {text!r} (e.g. 15s, 1m30s, 500ms)"
            ) from None
        seconds = sum(float(number) * _UNIT_SECONDS[unit] for number, unit in parts)
    if not 0 <= seconds < float("inf"):
        raise argparse.ArgumentTypeError(f"invalid duration {text!r}: not a length of time")
    return seconds


def parse_period(text: str) -> float:
    """A duration that is longer than zero (how often something repeats)."""
    seconds = parse_duration(text)
    if seconds <= 0:
        raise argparse.ArgumentTypeError(f"invalid period {text!r}: must be longer than 0s")
    return seconds


def parse_port(text: str) -> int:
    """A TCP port, 0 to 65535."""
    try:
        port = int(text)
    except ValueError:
        port = -1
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"invalid port {text!r} (0 to 65535)")
    return port


def parse_bind_address(text: str) -> str:
    """``host:port``, ``:port`` or ``0`` (off), checked as the servers will read it."""
    try:
        bind = probes.parse_bind_address(text)
    except ValueError:
        bind = ("", -1)
    if bind is not None and not 0 <= bind[1] <= 65535:
        raise argparse.ArgumentTypeError(
            f"invalid address {text!r} (host:port, :port, or 0 to turn it off)"
        )
    return text


def _dns_label(text: str, what: str) -> str:
    if not _DNS_LABEL.fullmatch(text):
        raise argparse.ArgumentTypeError(
            f"invalid {what} {text!r} (at most 63 lower-case letters, digits and '-', "
            "starting and ending with a letter or digit)"
        )
    return text


def parse_namespace(text: str) -> str:
    """A name Kubernetes accepts for a namespace."""
    return _dns_label(text, "namespace")


def parse_service(text: str) -> str:
    """A name Kubernetes accepts for a Service (one DNS label of its DNS names)."""
    return _dns_label(text, "Service name")


def parse_hosts(text: str) -> tuple[str, ...]:
    """A comma list of DNS names and IP addresses that can name a certificate."""
    hosts = tuple(host.strip() for host in text.split(",") if host.strip())
    for host in hosts:
        if (problem := certificates.host_problem(host)) is not None:
            raise argparse.ArgumentTypeError(f"{host!r} cannot name a certificate: {problem}")
    return hosts


def parse_registries(text: str) -> tuple[str, ...]:
    """A comma list of registries, each optionally with a path prefix (``docker.io/intel``)."""
    entries = tuple(entry.strip().rstrip("/") for entry in text.split(",") if entry.strip())
    for entry in entries:
        if "://" in entry or "@" in entry or any(c.isspace() for c in entry):
            raise argparse.ArgumentTypeError(
                f"{entry!r} is not a registry (host[:port]) with an optional path prefix"
            )
    return entries


def parse_client_names(text: str) -> tuple[str, ...]:
    """A comma list of certificate names (common names or DNS names)."""
    names = tuple(name.strip() for name in text.split(",") if name.strip())
    if not names:
        raise argparse.ArgumentTypeError("give at least one name")
    return names


def parse_verbosity(text: str) -> int:
    """A log verbosity: an integer, as klog's ``-v``."""
    try:
        return int(text, 10)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid verbosity {text!r} (an integer)") from None


def parse_file(text: str) -> str:
    """The path of a file that exists."""
    if not pathlib.Path(text).is_file():
        raise argparse.ArgumentTypeError(f"no such file {text!r}")
    return text


def _namespace_from(value: str, source: str) -> str:
    try:
        return parse_namespace(value)
    except argparse.ArgumentTypeError as error:
        raise UsageError(f"{source}: {error}") from None


def _namespace_variable(environ: Mapping[str, str], variable: str) -> str | None:
    """The namespace in ``variable`` if set and not empty (UsageError if not a name)."""
    value = environ.get(variable)
    return _namespace_from(value, variable) if value else None


def image_overrides(environ: Mapping[str, str]) -> dict[str, str]:
    """The non-empty ``<IMAGE>_SHA`` variables (e.g. ``INTEL_GPU_PLUGIN_SHA``)."""
    return {key: value for key, value in environ.items() if key.endswith("_SHA") and value}


def _parser(prog: str = "deviceplugin-operator") -> argparse.ArgumentParser:
    parser = _Parser(
        prog=prog,
        description="Kubernetes operator for the Intel device plugins.",
    )
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_GoFlags)
    run = commands.add_parser(
        "run",
        help="run the operator (controllers, webhooks, probes)",
        description="Run the operator. Flags take Go's syntax, as the reference operator's: "
        "-flag or --flag; -flag=value or -flag value; booleans -flag or -flag=false.",
        allow_abbrev=False,
    )
    run.add_argument(
        "--metrics-bind-address",
        type=parse_bind_address,
        default=":8080",
        help='metrics endpoint address; "0" disables it (default ":8080")',
    )
    run.add_argument(
        "--health-probe-bind-address",
        type=parse_bind_address,
        default=":8081",
        help='address of /healthz and /readyz (default ":8081")',
    )
    run.add_argument(
        "--deviceplugin-namespace",
        type=parse_namespace,
        default="kube-system",
        help="namespace of the plugin DaemonSets; env DEVICEPLUGIN_NAMESPACE wins",
    )
    run.add_argument(
        "--leader-elect",
        action=_Bool,
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
        type=parse_period,
        default=2.0,
        metavar="DURATION",
        help="interval between renewals and acquisition attempts (default 2s)",
    )
    run.add_argument(
        "--leader-elect-namespace",
        type=parse_namespace,
        default=None,
        help="namespace of the Lease (default: env POD_NAMESPACE, then the service "
        "account's namespace, then the plugin namespace)",
    )
    run.add_argument(
        "--metrics-secure",
        action=_Bool,
        help="serve metrics over HTTPS with TokenReview/SubjectAccessReview",
    )
    run.add_argument(
        "--metrics-cert-path",
        default=None,
        help="directory with the metrics server certificate (default: self-signed)",
    )
    run.add_argument(
        "--metrics-cert-name",
        default="tls.crt",
        help="certificate file in --metrics-cert-path",
    )
    run.add_argument(
        "--metrics-cert-key",
        default="tls.key",
        help="key file in --metrics-cert-path",
    )
    run.add_argument(
        "--enable-http2",
        action=_Bool,
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
        "--kubeconfig",
        type=parse_file,
        default=None,
        help="kubeconfig path (default: KUBECONFIG, then in-cluster)",
    )
    run.add_argument(
        "--webhook-port",
        type=parse_port,
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
        choices=manager.WEBHOOK_CERTIFICATE_MODES,
        default="auto",
        help="mounted: tls.crt/tls.key in --webhook-cert-dir (cert-manager, OpenShift "
        "service CA, OLM), reloaded on change; self-managed: own CA in a Secret, caBundle "
        "patched (no cert-manager); auto (default): mounted when both files are there, "
        "else self-managed",
    )
    run.add_argument(
        "--webhook-cert-hosts",
        type=parse_hosts,
        default=(),
        help="comma list of DNS names/IPs of the self-managed serving certificate "
        "(default: the webhook Service's names)",
    )
    run.add_argument(
        "--allowed-image-registries",
        type=parse_registries,
        default=(),
        help="comma list of registries, each optionally with a path prefix (docker.io/intel), "
        "that plugin and init images must come from (default: any)",
    )
    run.add_argument(
        "--webhook-client-ca",
        metavar="FILE",
        help="PEM CA certificate(s): the webhook server then requires a client certificate "
        "they signed, as kube-apiserver presents with an AdmissionConfiguration kubeconfig "
        "(SECURITY.md; default: none asked for)",
    )
    run.add_argument(
        "--webhook-client-names",
        type=parse_client_names,
        default=(),
        help="comma list of common or DNS names of the client certificates answered "
        "(needs --webhook-client-ca; default: any the CA signed)",
    )
    run.add_argument(
        "--webhook-secret",
        default="intel-deviceplugins-webhook-server-cert",
        help="Secret in the operator's namespace that keeps the self-managed CA and "
        "serving certificate",
    )
    run.add_argument(
        "--webhook-cert-check-period",
        type=parse_period,
        default=manager.Options.certificate_check_period,
        metavar="DURATION",
        help="how often the self-managed certificate is checked: a deleted Secret is "
        "recreated and a lost CA bundle rewritten (default 10s)",
    )
    run.add_argument(
        "--webhook-service",
        type=parse_service,
        default="intel-deviceplugins-webhook-service",
        help="Service in front of the webhooks; its DNS names are the self-managed "
        "certificate's names",
    )
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
        type=parse_namespace,
        default=None,
        help="namespace of the operator (default: env POD_NAMESPACE, then "
        "DEVICEPLUGIN_NAMESPACE, then inteldeviceplugins-system)",
    )
    run.add_argument(
        "--resync-period",
        type=parse_duration,
        default=600.0,
        metavar="DURATION",
        help="time between level-triggered re-reconciles of every CR (seconds or a duration "
        "such as 10m; 0 turns it off; default 600)",
    )
    run.add_argument(
        "--devices-grace-period",
        type=parse_duration,
        default=300.0,
        metavar="DURATION",
        help="how long a plugin pod may be ready on a node that advertises none of its "
        "devices before the DevicesAdvertised condition reports the node (default 5m)",
    )
    run.add_argument("--log-format", choices=("text", "json"), default="text")
    run.add_argument(
        "-v",
        "--verbosity",
        type=parse_verbosity,
        default=0,
        help="log verbosity: 0 info, >=1 debug, >=5 also the HTTP client's (klog's -v)",
    )
    run.add_argument(
        "--vmodule",
        default="",
        metavar="PATTERN=N,...",
        help="accepted for compatibility with the reference operator (klog) and ignored",
    )
    inspection.add_commands(commands, run)
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
    plugin_namespace = args.deviceplugin_namespace
    if environ.get("DEVICEPLUGIN_NAMESPACE"):
        plugin_namespace = _namespace_from(
            environ["DEVICEPLUGIN_NAMESPACE"], "DEVICEPLUGIN_NAMESPACE"
        )
    return settings.Settings(
        plugin_namespace=plugin_namespace,
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
    if pod := _namespace_variable(environ, "POD_NAMESPACE"):
        return pod
    try:
        mounted = service_account_namespace.read_text().strip()
    except OSError:
        mounted = ""
    if mounted:
        return _namespace_from(mounted, str(service_account_namespace))
    return _namespace_variable(environ, "DEVICEPLUGIN_NAMESPACE") or str(
        args.deviceplugin_namespace
    )


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
    operator_namespace = (
        args.operator_namespace
        or _namespace_variable(environ, "POD_NAMESPACE")
        or _namespace_variable(environ, "DEVICEPLUGIN_NAMESPACE")
        or "inteldeviceplugins-system"
    )
    certificates_mode = manager.choose_mode(args.webhook_certs, args.webhook_cert_dir)
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
        devices_grace_period=args.devices_grace_period,
        webhook_port=args.webhook_port,
        webhook_host=args.webhook_host,
        webhook_cert_dir=args.webhook_cert_dir,
        webhook_certs=certificates_mode.name,
        webhook_certs_choice=certificates_mode,
        webhook_hosts=args.webhook_cert_hosts,
        webhook_secret=args.webhook_secret,
        certificate_check_period=args.webhook_cert_check_period,
        webhook_service=args.webhook_service,
        webhook_configuration_prefix=args.webhook_configuration_prefix,
        operator_namespace=operator_namespace,
        enable_http2=args.enable_http2,
        allowed_image_registries=args.allowed_image_registries,
        webhook_client_ca=args.webhook_client_ca,
        webhook_client_names=args.webhook_client_names,
    )


async def _run(config: settings.Settings, options: manager.Options) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await manager.run(config, options, stop)
    return 0


def main(argv: Sequence[str] | None = None, prog: str = "deviceplugin-operator") -> int:
    arguments = sys.argv[1:] if argv is None else list(argv)
    if arguments[:1] == ["lifecycle"]:  # install steps, e.g. Helm hooks: argparse, no Go flags
        # Imported here: the CRD generation it brings is no part of ``run``'s start-up.
        from deviceplugin_operator.manifests import lifecycle  # noqa: PLC0415

        return lifecycle.main(arguments[1:], parse_duration)
    try:
        args = _parser(prog).parse_args(argv)
        if args.command in inspection.COMMANDS:
            return inspection.main(args, os.environ, lambda: build_settings(args, os.environ))
        config = build_settings(args, os.environ)
        options = build_options(args, os.environ)
    except UsageError as error:
        print(error, file=sys.stderr)
        return USAGE
    _configure_logging(args.log_format, args.verbosity)
    if args.vmodule:
        log.warning(
            "Ignored -vmodule (accepted for compatibility with the reference operator): "
            "use -v for the verbosity of every module",
            extra={"vmodule": args.vmodule},
        )
    log.info(
        "Starting operator",
        extra={"devices": ",".join(config.devices), "namespace": config.plugin_namespace},
    )
    # What exists now (the imports' objects are frozen already; settings, logging) lives as
    # long as the process: the collector need not scan it on every full collection, which
    # shortens its pauses.
    gc.freeze()
    without_pydantic_plugins(os.environ)
    try:
        return asyncio.run(_run(config, options))
    except manager.StartupError as error:
        log.error("%s", error)
        return START_FAILED


def without_pydantic_plugins(environ: MutableMapping[str, str]) -> None:
    """Turn off pydantic's plugin discovery unless ``environ`` says otherwise.

    The operator's models use no pydantic plugin, and looking for plugins scans the metadata of
    every installed distribution when the first validator is built: 4-8 ms of the first
    reconcile, before the first DaemonSet (docs/benchmarks.md, session 12). An administrator
    who wants a plugin sets ``PYDANTIC_DISABLE_PLUGINS`` (even to an empty value) and keeps it.
    """
    environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")


def reference_main(argv: Sequence[str] | None = None) -> int:
    """``intel_deviceplugin_operator``, the reference's command: ``run`` with its flags."""
    return main(["run", *(sys.argv[1:] if argv is None else argv)])


def kubectl_main(argv: Sequence[str] | None = None) -> int:
    """``kubectl-deviceplugins``: the same commands as a kubectl plugin
    (``kubectl deviceplugins diagnose``)."""
    return main(argv, prog="kubectl deviceplugins")


if __name__ == "__main__":
    sys.exit(main())
