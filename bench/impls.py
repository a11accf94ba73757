"""The three implementations under test, each started as its own process against one cluster.

* ``this``      — ``.venv/bin/deviceplugin-operator run`` (this repository)
* ``reference`` — Intel's Go operator built by ``bench/reference.py`` (out-of-cluster)
* ``floor``     — ``bench/floor.py``, the least a client can do (GPU only, no status)
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import pathlib
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Sequence

from bench import reference
from localcluster import processes

ROOT = pathlib.Path(__file__).resolve().parent.parent
CLK_TCK = os.sysconf("SC_CLK_TCK")


@dataclasses.dataclass(frozen=True)
class Implementation:
    name: str
    user_agent_prefix: str
    has_readyz: bool
    kinds: str  # "all" or "gpu"


THIS = Implementation("this", "intel-deviceplugin-operator", has_readyz=True, kinds="all")
REFERENCE = Implementation("reference", reference.USER_AGENT_PREFIX, has_readyz=True, kinds="all")
FLOOR = Implementation("floor", "deviceplugin-floor", has_readyz=False, kinds="gpu")
ALL = {impl.name: impl for impl in (THIS, REFERENCE, FLOOR)}


def cpu_seconds(pid: int) -> float:
    """utime + stime of ``pid`` from /proc/<pid>/stat, in seconds (0 when gone)."""
    try:
        fields = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    # after "pid (comm) ": state=0 ... utime=11 stime=12 (fields 14 and 15 of the man page)
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


@dataclasses.dataclass
class Running:
    impl: Implementation
    pid: int
    started: float  # time.monotonic() just before the process was spawned
    log: pathlib.Path
    health_port: int | None
    webhook_port: int | None = None
    webhook_ca: bytes | None = None
    """The self-signed certificate its webhook server serves (its own CA)."""
    metrics_port: int | None = None
    """Its plain-HTTP /metrics on 127.0.0.1 (``this`` started with ``serve_metrics``)."""

    @property
    def alive(self) -> bool:
        return processes.alive(self.pid)

    def rss_mib(self) -> float:
        return processes.rss_mib(self.pid)

    def cpu_s(self) -> float:
        return cpu_seconds(self.pid)

    def ready(self) -> bool:
        """``/readyz`` answers 200 (this, reference) / the floor printed that it watches."""
        if self.health_port is None:
            try:
                return "floor: watching" in self.log.read_text(errors="replace")
            except OSError:
                return False
        try:
            url = f"http://127.0.0.1:{self.health_port}/readyz"
            with urllib.request.urlopen(url, timeout=1) as reply:
                return bool(reply.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    async def wait_ready(self, timeout: float = 60.0, interval: float = 0.02) -> float:
        """Poll until ready; the monotonic time of the first ready answer."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive:
                raise RuntimeError(f"{self.impl.name} exited; see {self.log}:\n{self.tail()}")
            ready = await asyncio.to_thread(self.ready)
            if ready:
                return time.monotonic()
            await asyncio.sleep(interval)
        raise TimeoutError(f"{self.impl.name} not ready after {timeout:.0f}s; see {self.log}")

    def scrape_metrics(self) -> str:
        """The text of its /metrics (needs ``metrics_port``)."""
        if self.metrics_port is None:
            raise RuntimeError(f"{self.impl.name} was started without a metrics endpoint")
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as reply:
            return str(reply.read().decode())

    def tail(self, lines: int = 15) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        return ""

    def stop(self) -> None:
        processes.stop(self.pid)


def snapshot_source(commit: str, target: pathlib.Path) -> pathlib.Path:
    """``src/`` of ``commit`` extracted under ``target``; returns the directory to import from.

    The working tree may be in the middle of an edit while a benchmark runs: measuring a
    commit keeps the figures attributable.
    """
    target.mkdir(parents=True, exist_ok=True)
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", "--format=tar", commit, "src"],
        capture_output=True,
        check=True,
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(target)], input=archive, check=True)
    # Byte-compiled as the image's install is (Dockerfile: compileall): without it every
    # start of a snapshot compiled ~80 modules first (65-75 ms, more with
    # PYTHONDONTWRITEBYTECODE set), which no installed operator pays.
    subprocess.run(
        [str(ROOT / ".venv" / "bin" / "python"), "-m", "compileall", "-q", str(target / "src")],
        check=True,
    )
    return target / "src"


SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"


def in_cluster_namespace(namespace: str) -> list[str]:
    """A command prefix that runs the rest in a private mount namespace whose
    ``SERVICE_ACCOUNT_DIR/namespace`` says ``namespace`` (an empty tmpfs over ``/run``, which
    only that process sees; needs root). Out of a cluster, controller-runtime's leader
    election finds its namespace nowhere else and the reference has no flag for it. The
    command is exec'd: the process keeps the pid (and process group) of the prefix."""
    script = (
        "mount -t tmpfs -o mode=0755 compat /run"
        f' && mkdir -p {SERVICE_ACCOUNT_DIR} && printf %s "$0" > {SERVICE_ACCOUNT_DIR}/namespace'
        ' && exec "$@"'
    )
    return ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, namespace]


def start(
    impl: Implementation,
    *,
    kubeconfig: pathlib.Path,
    namespace: str,
    workdir: pathlib.Path,
    tag: str,
    this_source: pathlib.Path | None = None,
    extra_args: Sequence[str] = (),
    lease_namespace: str | None = None,
    serve_metrics: bool = False,
) -> Running:
    """Spawn ``impl`` against ``kubeconfig`` with its DaemonSets in ``namespace``.

    ``extra_args`` are appended to its arguments (e.g. ``--leader-elect``). ``lease_namespace``
    (reference only) is where its Lease goes: controller-runtime takes that namespace only
    from the in-cluster service account file, so the reference then runs in a private mount
    namespace (``in_cluster_namespace``) that shows it one. ``serve_metrics`` (``this`` only)
    serves its /metrics over plain HTTP on a free local port instead of not at all, for
    ``Running.scrape_metrics``.
    """
    log = workdir / "logs" / f"{impl.name}-{tag}.log"
    env = dict(os.environ, KUBECONFIG=str(kubeconfig), DEVICEPLUGIN_NAMESPACE=namespace)
    health_port: int | None = None
    webhook_port: int | None = None
    webhook_ca: bytes | None = None
    metrics_port: int | None = None
    if impl is THIS:
        health_port = processes.free_port()
        if serve_metrics:
            metrics_port = processes.free_port()
        if this_source is not None:
            # a snapshot of src/ (git archive of a commit) ahead of the editable install
            env["PYTHONPATH"] = str(this_source)
        argv = [
            str(ROOT / ".venv" / "bin" / "python"),
            "-m",
            "deviceplugin_operator.cli",
            "run",
            "--metrics-bind-address="
            + ("0" if metrics_port is None else f"127.0.0.1:{metrics_port}"),
            f"--health-probe-bind-address=127.0.0.1:{health_port}",
        ]
        cli = (this_source or ROOT / "src") / "deviceplugin_operator" / "cli.py"
        if "--webhook-certs" in cli.read_text():
            # Like the reference: the webhook server runs with a mounted self-signed
            # certificate and is not registered with the apiserver.
            certs = reference.write_serving_cert(workdir / "this-tmp")
            webhook_port = processes.free_port()
            webhook_ca = (certs / "tls.crt").read_bytes()
            argv += [
                "--webhook-host=127.0.0.1",
                f"--webhook-port={webhook_port}",
                "--webhook-certs=mounted",
                f"--webhook-cert-dir={certs}",
            ]
    elif impl is REFERENCE:
        if not port_free(reference.WEBHOOK_PORT):
            raise RuntimeError(
                f"port {reference.WEBHOOK_PORT} is taken: the reference's webhook server "
                "(no flag to move it) cannot start"
            )
        health_port = processes.free_port()
        tmpdir = workdir / "reference-tmp"
        webhook_ca = (reference.write_serving_cert(tmpdir) / "tls.crt").read_bytes()
        webhook_port = reference.WEBHOOK_PORT
        env["TMPDIR"] = str(tmpdir)  # controller-runtime's cert dir is $TMPDIR/k8s-webhook-server
        argv = [
            str(reference.binary_path()),
            f"--kubeconfig={kubeconfig}",
            "--metrics-bind-address=0",
            f"--health-probe-bind-address=127.0.0.1:{health_port}",
        ]
        if lease_namespace is not None:
            argv = [*in_cluster_namespace(lease_namespace), *argv]
    else:
        argv = [
            str(ROOT / ".venv" / "bin" / "python"),
            str(ROOT / "bench" / "floor.py"),
            f"--kubeconfig={kubeconfig}",
            f"--namespace={namespace}",
        ]
    argv += extra_args
    started = time.monotonic()
    pid = processes.start(argv, log, env=env)
    return Running(impl, pid, started, log, health_port, webhook_port, webhook_ca, metrics_port)
