"""The operator as the tests run it: the real command (``deviceplugin-operator run``) in a child
process with its log in a file, exactly as in a pod; and kubeconfigs that authenticate with a
service account's token, as a pod's mounted token does.

``start_operator`` is the only way the tests start the command (reliability, compatibility,
leader election, start-up failures, the Deployment's arguments); ``token_kubeconfig`` the only
builder of token kubeconfigs. Every process started is remembered, so that ``kill_all`` (the
fixtures of the suites that start operators) leaves none running whatever a test asserted.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import json
import os
import pathlib
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

from clusters import TestCluster
from localcluster import processes
from polling import eventually

ROOT = pathlib.Path(__file__).resolve().parents[1]
COMMAND = pathlib.Path(sys.executable).parent / "deviceplugin-operator"
if not COMMAND.exists():
    COMMAND = ROOT / ".venv" / "bin" / "deviceplugin-operator"

# Variables of the test session that would change what the command does: what a pod
# gets from its fieldRefs (POD_*), the user's kubeconfig and pull secret, image overrides (*_SHA).
_SESSION_ONLY = ("DEVICEPLUGIN_", "POD_", "KUBECONFIG")


def log_records(log: pathlib.Path) -> list[dict[str, Any]]:
    """The JSON records of a log; a line that is not JSON becomes ``{"level": "RAW", ...}``."""
    records: list[dict[str, Any]] = []
    for line in log.read_text(errors="replace").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            record = None
        records.append(record if isinstance(record, dict) else {"level": "RAW", "message": line})
    return records


def tracebacks(log: pathlib.Path) -> list[str]:
    """Lines that show an unhandled or logged exception (never expected, whatever we inject)."""
    text = log.read_text(errors="replace")
    return [line for line in text.splitlines() if "Traceback" in line or '"exc_info"' in line]


@dataclasses.dataclass
class Operator:
    """One ``deviceplugin-operator run`` process (``restart`` gives a new handle)."""

    popen: subprocess.Popen[bytes]
    log: pathlib.Path
    argv: list[str]
    env: dict[str, str]
    health_port: int
    metrics_port: int
    webhook_port: int
    log_offset: int = 0
    """Size of the log before this process wrote to it (a restart appends)."""
    started: float = dataclasses.field(default_factory=time.monotonic)

    def __enter__(self) -> Operator:
        return self

    def __exit__(self, *_: object) -> None:
        self.kill()

    @property
    def pid(self) -> int:
        return self.popen.pid

    @property
    def alive(self) -> bool:
        return self.popen.poll() is None

    # The log --------------------------------------------------------------------------------
    def text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def records(self) -> list[dict[str, Any]]:
        """JSON records of the whole log (earlier processes of a restarted one included)."""
        return [r for r in log_records(self.log) if r.get("level") != "RAW"]

    def messages(self) -> list[str]:
        return [str(r.get("msg")) for r in self.records()]

    def tracebacks(self) -> list[str]:
        return tracebacks(self.log)

    def problems(self) -> list[str]:
        """Log lines showing an exception or an error (none is expected, whatever we inject)."""
        return [
            line
            for line in self.text().splitlines()
            if "Traceback" in line
            or '"level": "error"' in line
            or '"level": "critical"' in line
            or " ERROR " in line
            or " CRITICAL " in line
        ]

    def tail(self, lines: int = 30) -> str:
        return "\n".join(self.text().splitlines()[-lines:])

    def identity(self) -> str | None:
        """The holderIdentity this process campaigns with (from its log), once it does."""
        for record in reversed(self.records()):
            if record.get("msg") in ("Attempting to acquire Lease", "Acquired Lease"):
                return str(record.get("identity"))
        return None

    # Waiting --------------------------------------------------------------------------------
    def wait_logging(self, timeout: float = 30.0) -> None:
        """Until this process wrote its first log line (Python and the imports are loaded)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.alive:
            if self.log.exists() and self.log.stat().st_size > self.log_offset:
                return
            time.sleep(0.02)

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(
                f"http://127.0.0.1:{self.health_port}/readyz", timeout=2
            ) as reply:
                return bool(reply.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def wait_ready(self, timeout: float = 60) -> float:
        """Seconds until /readyz answers 200; fails with the log tail when it exits."""
        started = time.monotonic()

        def ready() -> bool:
            if not self.alive:
                raise AssertionError(f"operator exited {self.popen.returncode}:\n{self.tail()}")
            return self.ready()

        eventually(ready, timeout=timeout, interval=0.05, what="the operator to be ready")
        return time.monotonic() - started

    # Signals --------------------------------------------------------------------------------
    def kill(self) -> None:
        """kill -9 (this child only, by its pid): no write finished, no Lease released."""
        if self.alive:
            self.popen.send_signal(signal.SIGKILL)
        self.popen.wait(timeout=15)

    def terminate(self, timeout: float = 20) -> int | None:
        """SIGTERM, then kill -9 if it has not exited after ``timeout``; the exit status."""
        if self.alive:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        return self.popen.returncode

    def restart(self) -> Operator:
        """The same command again (same ports, same environment, log appended)."""
        return _spawn(
            self.argv, self.env, self.log, self.health_port, self.metrics_port, self.webhook_port
        )


STARTED: list[Operator] = []
"""Every operator process started, so that a failing test leaves none running."""


def kill_all() -> None:
    for operator in STARTED:
        if operator.alive:
            operator.kill()
    STARTED.clear()


def start_operator(
    kubeconfig: pathlib.Path,
    namespace: str | None,
    log: pathlib.Path,
    *extra: str,
    devices: Iterable[str] = (),
    leader_elect: Sequence[str] | None = None,
    webhook_prefix: str | None = None,
    webhook_secret: str = "rel2-webhook-cert",
    webhook_port: int | None = None,
    before: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
    verbosity: int | None = 0,
    log_format: str | None = "json",
) -> Operator:
    """Start ``deviceplugin-operator run`` (no waiting) and return its handle.

    The arguments, in order (the last of a repeated flag wins): ``before`` (e.g. a Deployment's
    own arguments), then ``--kubeconfig``, probes and metrics on free loopback ports, the
    webhook port (0 = no webhook server unless ``webhook_port`` or ``webhook_prefix``), then
    with ``namespace`` its plugin and operator namespace, ``--log-format`` and ``-v`` unless
    None, ``--devices`` for each of ``devices``; with ``leader_elect`` (timing flags, may be
    empty) ``--leader-elect`` with the Lease in ``namespace``; with ``webhook_prefix`` a
    self-managed certificate for 127.0.0.1 in Secret ``webhook_secret`` patched into the
    configurations named with that prefix; last ``extra``.

    The environment is the session's without what a pod would not have (``DEVICEPLUGIN_*``,
    ``POD_NAMESPACE``, ``KUBECONFIG``, ``*_SHA``), updated with ``env``.
    """
    health, metrics = processes.free_port(), processes.free_port()
    if webhook_port is None:
        webhook_port = processes.free_port() if webhook_prefix is not None else 0
    argv = [
        str(COMMAND),
        "run",
        *before,
        f"--kubeconfig={kubeconfig}",
        f"--health-probe-bind-address=127.0.0.1:{health}",
        f"--metrics-bind-address=127.0.0.1:{metrics}",
        f"--webhook-port={webhook_port}",
    ]
    if namespace is not None:
        argv += [f"--deviceplugin-namespace={namespace}", f"--operator-namespace={namespace}"]
    if log_format is not None:
        argv.append(f"--log-format={log_format}")
    if verbosity is not None:
        argv.append(f"-v={verbosity}")
    argv += [f"--devices={name}" for name in devices]
    if leader_elect is not None:
        assert namespace is not None, "the Lease goes into the operator's namespace"
        argv += ["--leader-elect", f"--leader-elect-namespace={namespace}", *leader_elect]
    if webhook_prefix is not None:
        argv += [
            "--webhook-host=127.0.0.1",
            "--webhook-cert-hosts=127.0.0.1",
            f"--webhook-cert-dir={log.parent / 'certs'}",
            f"--webhook-secret={webhook_secret}",
            f"--webhook-configuration-prefix={webhook_prefix}",
        ]
    argv += extra
    environment = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(_SESSION_ONLY) and not key.endswith("_SHA")
    }
    environment.update(env or {})
    return _spawn(argv, environment, log, health, metrics, webhook_port)


def _spawn(
    argv: list[str],
    env: dict[str, str],
    log: pathlib.Path,
    health: int,
    metrics: int,
    webhook: int,
) -> Operator:
    log.parent.mkdir(parents=True, exist_ok=True)
    offset = log.stat().st_size if log.exists() else 0
    with log.open("ab") as out:
        popen = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=env
        )
    operator = Operator(popen, log, argv, env, health, metrics, webhook, offset)
    STARTED.append(operator)
    return operator


# Token kubeconfigs -----------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class TokenKubeconfig:
    path: pathlib.Path
    token: str
    user: str
    """The user the API server sees (``system:serviceaccount:<namespace>:<account>``)."""


def token_kubeconfig(
    cluster: TestCluster,
    service_account: str,
    namespace: str,
    path: pathlib.Path,
    *,
    token: str | None = None,
    duration: str = "1h",
) -> TokenKubeconfig:
    """A kubeconfig (mode 0600) for ``cluster`` authenticating as ``service_account`` of
    ``namespace`` with a token ``kubectl create token`` makes (or ``token`` as given)."""
    if token is None:
        token = cluster.kubectl(
            "create", "token", service_account, "-n", namespace, f"--duration={duration}"
        ).stdout.strip()
    state = cluster.cluster.state()
    assert state is not None, "the control plane is not running"
    ca = (cluster.cluster.pki / "ca.crt").read_bytes()
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "local",
                "cluster": {
                    "server": state.server,
                    "certificate-authority-data": base64.b64encode(ca).decode(),
                },
            }
        ],
        "users": [{"name": service_account, "user": {"token": token}}],
        "contexts": [
            {"name": service_account, "context": {"cluster": "local", "user": service_account}}
        ],
        "current-context": service_account,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(config))
    path.chmod(0o600)
    return TokenKubeconfig(path, token, f"system:serviceaccount:{namespace}:{service_account}")


@contextlib.contextmanager
def cluster_admin_account(
    cluster: TestCluster, namespace: str, directory: pathlib.Path, account: str = "operator"
) -> Iterator[TokenKubeconfig]:
    """A service account of ``namespace`` bound to cluster-admin and its token kubeconfig:
    unlike the admin (system:masters) its requests go through API Priority and Fairness like
    a pod's. The binding is removed on exit (the account goes with its namespace)."""
    binding = f"{namespace}-{account}"
    cluster.kubectl("create", "serviceaccount", account, "-n", namespace)
    cluster.kubectl(
        "create",
        "clusterrolebinding",
        binding,
        "--clusterrole=cluster-admin",
        f"--serviceaccount={namespace}:{account}",
    )
    try:
        yield token_kubeconfig(cluster, account, namespace, directory / f"{account}.kubeconfig")
    finally:
        cluster.kubectl("delete", "clusterrolebinding", binding, "--ignore-not-found", check=False)
