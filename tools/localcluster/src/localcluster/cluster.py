"""Start, reuse and stop one local control plane whose state lives in a directory.

    etcd -> kube-apiserver -> kube-controller-manager + kube-scheduler -> kwok (fake nodes)

Everything binds to 127.0.0.1 on ports chosen at start. The directory holds the PKI, the
admin ``kubeconfig``, one log per component under ``logs/`` and ``state.json`` with the
ports and process ids, which is how a second ``up`` finds and reuses a healthy cluster.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import json
import pathlib
import shutil
import signal
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from types import FrameType
from typing import Any

from localcluster import binaries, errors, http, nodes, pki, processes

COMPONENTS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok")
START_TIMEOUT = 90.0

_AUDIT_POLICY = """\
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
# The control plane's own traffic is noise for measuring an operator.
- level: None
  users:
  - system:kube-controller-manager
  - system:kube-scheduler
  - system:kwok-controller
  - system:apiserver
- level: None
  nonResourceURLs: ["/healthz*", "/readyz*", "/livez*", "/version", "/openapi*", "/api*"]
- level: Metadata
"""


@dataclasses.dataclass
class State:
    """What a running cluster is made of; persisted as ``state.json``."""

    ports: dict[str, int]
    pids: dict[str, int]

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.ports['apiserver']}"


class Cluster:
    """One local control plane rooted at ``directory``."""

    def __init__(
        self,
        directory: pathlib.Path,
        *,
        echo: Callable[[str], None] | None = None,
        controller_manager_gates: Mapping[str, bool] | None = None,
    ):
        self.directory = directory.resolve()
        self._echo = echo or (lambda message: None)
        self.controller_manager_gates = dict(controller_manager_gates or {})
        """Feature gates of kube-controller-manager, e.g. ``{"StaleControllerConsistencyDaemonSet":
        False}`` (see docs/benchmarks.md)."""

    # Paths -------------------------------------------------------------------------------
    @property
    def kubeconfig(self) -> pathlib.Path:
        """The admin kubeconfig (user ``admin`` in ``system:masters``)."""
        return self.directory / "kubeconfig"

    @property
    def logs(self) -> pathlib.Path:
        return self.directory / "logs"

    @property
    def audit_log(self) -> pathlib.Path:
        """Metadata-level audit log of every request not made by the control plane itself."""
        return self.logs / "audit.log"

    @property
    def pki(self) -> pathlib.Path:
        return self.directory / "pki"

    def log_of(self, component: str) -> pathlib.Path:
        return self.logs / f"{component}.log"

    def _state_file(self) -> pathlib.Path:
        return self.directory / "state.json"

    def state(self) -> State | None:
        """The recorded state, or None when no cluster was started here."""
        try:
            raw = json.loads(self._state_file().read_text())
            return State(ports=dict(raw["ports"]), pids=dict(raw["pids"]))
        except (OSError, ValueError, KeyError):
            return None

    def _save(self, state: State) -> None:
        self._state_file().write_text(json.dumps(dataclasses.asdict(state), indent=2))

    # Talking to it -----------------------------------------------------------------------
    def api(self) -> http.ApiClient:
        """A minimal admin client for the apiserver of this cluster."""
        state = self.state()
        if state is None:
            raise errors.ClusterError(f"No cluster was started in {self.directory}")
        return http.ApiClient(
            state.server,
            ca=self.pki / "ca.crt",
            cert=self.pki / "admin.crt",
            key=self.pki / "admin.key",
        )

    def healthy(self) -> bool:
        """Every component runs and the apiserver answers ``/readyz``."""
        state = self.state()
        if state is None or set(state.pids) != set(COMPONENTS):
            return False
        if not all(processes.alive(pid) for pid in state.pids.values()):
            return False
        try:
            return self.api().ready()
        except errors.ClusterError:
            return False

    # Lifecycle ---------------------------------------------------------------------------
    def up(self, node_specs: Sequence[nodes.NodeSpec], *, timeout: float = START_TIMEOUT) -> State:
        """Reuse a healthy cluster here or start a new one; then make sure ``node_specs`` exist.

        Interrupted (Ctrl-C or SIGTERM) or failed, a cluster this call started is stopped again.
        """
        with _interrupt_on_sigterm():
            reused = self.healthy()
            try:
                if reused:
                    self._echo(f"Reusing the running cluster in {self.directory}")
                else:
                    self.down()
                    self._start(timeout)
                api = self.api()
                nodes.ensure(api, node_specs)
                nodes.wait_ready(api, [spec.name for spec in node_specs], timeout=timeout)
            except BaseException:
                if not reused:
                    self.down()
                raise
        state = self.state()
        assert state is not None
        return state

    def down(self) -> None:
        """Stop every process started here (by process group) and remove the state."""
        state = self.state()
        if state is not None:
            for component in reversed(COMPONENTS):
                pid = state.pids.get(component)
                if pid is not None:
                    processes.stop(pid)
        if self.directory.exists():
            shutil.rmtree(self.directory, ignore_errors=True)

    # Faults and extra identities (the reliability suite) ----------------------------------
    def restart_apiserver(self, *, down_for: float = 0.0, timeout: float = START_TIMEOUT) -> float:
        """Stop kube-apiserver, keep it down ``down_for`` seconds, start it again on the same
        port with the same certificates; seconds from the stop until it is ready again."""
        state = self._running_state()
        stopped = time.monotonic()
        processes.stop(state.pids["kube-apiserver"])
        time.sleep(down_for)
        self._start_apiserver(binaries.ensure_binaries(), state, timeout)
        return time.monotonic() - stopped

    def _etcd(self, method: str, body: dict[str, Any]) -> dict[str, Any]:
        # etcd's gRPC gateway (JSON over HTTP; the local etcd listens without TLS).
        state = self._running_state()
        request = urllib.request.Request(
            f"http://127.0.0.1:{state.ports['etcd']}/v3/{method}",
            data=json.dumps(body).encode(),
            method="POST",
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as reply:
                answer: dict[str, Any] = json.loads(reply.read())
        except (urllib.error.URLError, OSError) as error:
            raise errors.ClusterError(f"etcd {method} failed: {error}") from error
        return answer

    def etcd_revision(self) -> int:
        """etcd's current revision (every write in the cluster raises it)."""
        reply = self._etcd("kv/range", {"key": base64.b64encode(b"/").decode(), "limit": 1})
        return int(reply["header"]["revision"])

    def compact_etcd(self) -> int:
        """Compact etcd's history up to its current revision, so that every watch resumed
        from an older resourceVersion gets 410 Gone; the revision compacted at."""
        revision = self.etcd_revision()
        self._etcd("kv/compaction", {"revision": str(revision), "physical": True})
        return revision

    def user_kubeconfig(self, user: str, group: str = "system:masters") -> pathlib.Path:
        """A kubeconfig for another user (client certificate of this cluster's CA), so that
        the audit log tells its requests apart."""
        state = self._running_state()
        ca = pki.KeyPair((self.pki / "ca.crt").read_bytes(), (self.pki / "ca.key").read_bytes())
        target = self.pki / f"user-{user}.kubeconfig"
        target.write_text(pki.kubeconfig(state.server, ca, pki.client_cert(ca, user, group), user))
        target.chmod(0o600)
        return target

    def _running_state(self) -> State:
        state = self.state()
        if state is None:
            raise errors.ClusterError(f"No cluster runs in {self.directory}")
        return state

    def _start(self, timeout: float) -> None:
        found = binaries.ensure_binaries()
        self.directory.mkdir(parents=True, exist_ok=True)
        self.logs.mkdir(exist_ok=True)
        state = State(
            ports={
                name: processes.free_port()
                for name in ("etcd", "etcd-peer", "apiserver", "controller-manager", "scheduler")
            },
            pids={},
        )
        self._save(state)
        started = time.monotonic()
        self._write_pki(state)
        self._start_etcd(found, state, timeout)
        self._start_apiserver(found, state, timeout)
        self._start_controller_manager(found, state, timeout)
        self._start_scheduler(found, state, timeout)
        self._start_kwok(found, state)
        self._wait_default_service_account(state, timeout)
        self._echo(f"Control plane ready in {time.monotonic() - started:.1f}s")

    def _launch(self, state: State, component: str, argv: list[str]) -> None:
        self._echo(f"Starting {component}")
        state.pids[component] = processes.start(argv, self.log_of(component))
        self._save(state)

    def _wait(
        self, state: State, component: str, check: Callable[[], bool], timeout: float
    ) -> None:
        deadline = time.monotonic() + timeout
        pid = state.pids[component]
        while time.monotonic() < deadline:
            if not processes.alive(pid):
                raise errors.StartError(self._failure(component, "exited"))
            with contextlib.suppress(errors.ClusterError, OSError):
                if check():
                    return
            time.sleep(0.1)
        raise errors.StartError(self._failure(component, f"was not healthy after {timeout:.0f}s"))

    def _failure(self, component: str, what: str) -> str:
        log = self.log_of(component)
        try:
            tail = log.read_text(errors="replace").strip().splitlines()[-8:]
        except OSError:
            tail = []
        lines = "\n  ".join(tail)
        return f"{component} {what}; see {log}" + (f":\n  {lines}" if tail else "")

    # PKI ---------------------------------------------------------------------------------
    def _write_pki(self, state: State) -> None:
        self.pki.mkdir(parents=True, exist_ok=True)
        ca = pki.new_ca()
        ca.write(self.pki, "ca")
        pki.serving_cert(
            ca,
            ["localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc"],
            ["127.0.0.1", "10.96.0.1"],
        ).write(self.pki, "apiserver")
        private, public = pki.service_account_key()
        (self.pki / "sa.key").write_bytes(private)
        (self.pki / "sa.pub").write_bytes(public)
        identities = {
            "admin": ("admin", "system:masters"),
            "controller-manager": ("system:kube-controller-manager", "system:masters"),
            "scheduler": ("system:kube-scheduler", "system:masters"),
            "kwok": ("system:kwok-controller", "system:masters"),
        }
        for name, (user, group) in identities.items():
            client = pki.client_cert(ca, user, group)
            client.write(self.pki, name)
            config = pki.kubeconfig(state.server, ca, client, user)
            target = self.kubeconfig if name == "admin" else self.pki / f"{name}.kubeconfig"
            target.write_text(config)
            target.chmod(0o600)
        (self.directory / "audit-policy.yaml").write_text(_AUDIT_POLICY)

    # Components --------------------------------------------------------------------------
    def _start_etcd(self, found: binaries.Binaries, state: State, timeout: float) -> None:
        client = f"http://127.0.0.1:{state.ports['etcd']}"
        peer = f"http://127.0.0.1:{state.ports['etcd-peer']}"
        self._launch(
            state,
            "etcd",
            [
                str(found.etcd),
                "--name=local",
                f"--data-dir={self.directory / 'etcd'}",
                f"--listen-client-urls={client}",
                f"--advertise-client-urls={client}",
                f"--listen-peer-urls={peer}",
                f"--initial-advertise-peer-urls={peer}",
                f"--initial-cluster=local={peer}",
                "--unsafe-no-fsync=true",
                f"--quota-backend-bytes={2 << 30}",
                "--log-level=warn",
            ],
        )
        self._wait(state, "etcd", lambda: http.etcd_healthy(client), timeout)

    def _start_apiserver(self, found: binaries.Binaries, state: State, timeout: float) -> None:
        p = self.pki
        self._launch(
            state,
            "kube-apiserver",
            [
                str(found.kube_apiserver),
                f"--etcd-servers=http://127.0.0.1:{state.ports['etcd']}",
                "--bind-address=127.0.0.1",
                f"--secure-port={state.ports['apiserver']}",
                "--advertise-address=127.0.0.1",
                "--endpoint-reconciler-type=none",
                f"--tls-cert-file={p / 'apiserver.crt'}",
                f"--tls-private-key-file={p / 'apiserver.key'}",
                f"--client-ca-file={p / 'ca.crt'}",
                "--authorization-mode=Node,RBAC",
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                f"--service-account-key-file={p / 'sa.pub'}",
                f"--service-account-signing-key-file={p / 'sa.key'}",
                "--service-cluster-ip-range=10.96.0.0/16",
                "--allow-privileged=true",
                "--profiling=false",
                f"--audit-policy-file={self.directory / 'audit-policy.yaml'}",
                f"--audit-log-path={self.audit_log}",
                "--audit-log-format=json",
                "--audit-log-maxsize=200",
                "--audit-log-maxbackup=1",
                "--v=1",
            ],
        )
        self._wait(state, "kube-apiserver", lambda: self.api().ready(), timeout)

    @staticmethod
    def _feature_gates_flag(gates: Mapping[str, bool]) -> list[str]:
        """``["--feature-gates=A=false,B=true"]``, or nothing without gates."""
        if not gates:
            return []
        return [
            "--feature-gates="
            + ",".join(f"{g}={str(on).lower()}" for g, on in sorted(gates.items()))
        ]

    def _start_controller_manager(
        self, found: binaries.Binaries, state: State, timeout: float
    ) -> None:
        config = self.pki / "controller-manager.kubeconfig"
        port = state.ports["controller-manager"]
        self._launch(
            state,
            "kube-controller-manager",
            [
                str(found.kube_controller_manager),
                f"--kubeconfig={config}",
                f"--authentication-kubeconfig={config}",
                f"--authorization-kubeconfig={config}",
                "--bind-address=127.0.0.1",
                f"--secure-port={port}",
                "--leader-elect=false",
                f"--root-ca-file={self.pki / 'ca.crt'}",
                f"--service-account-private-key-file={self.pki / 'sa.key'}",
                "--controllers=*,-node-ipam-controller,-service-lb-controller",
                "--kube-api-qps=200",
                "--kube-api-burst=400",
                "--concurrent-daemonset-syncs=4",
                "--concurrent-gc-syncs=20",
                "--v=1",
                *self._feature_gates_flag(self.controller_manager_gates),
            ],
        )
        self._wait(state, "kube-controller-manager", lambda: http.healthz(port), timeout)

    def _start_scheduler(self, found: binaries.Binaries, state: State, timeout: float) -> None:
        config = self.pki / "scheduler.kubeconfig"
        port = state.ports["scheduler"]
        self._launch(
            state,
            "kube-scheduler",
            [
                str(found.kube_scheduler),
                f"--kubeconfig={config}",
                f"--authentication-kubeconfig={config}",
                f"--authorization-kubeconfig={config}",
                "--bind-address=127.0.0.1",
                f"--secure-port={port}",
                "--leader-elect=false",
                "--kube-api-qps=200",
                "--kube-api-burst=400",
                "--v=1",
            ],
        )
        self._wait(state, "kube-scheduler", lambda: http.healthz(port), timeout)

    def _start_kwok(self, found: binaries.Binaries, state: State) -> None:
        self._launch(
            state,
            "kwok",
            [
                str(found.kwok),
                f"--kubeconfig={self.pki / 'kwok.kubeconfig'}",
                f"--config={found.kwok_stages}",
                "--manage-all-nodes=true",
                "--node-lease-duration-seconds=40",
                "--cidr=10.244.0.0/16",
                "--node-ip=10.0.0.1",
            ],
        )

    def _wait_default_service_account(self, state: State, timeout: float) -> None:
        api = self.api()

        def present() -> bool:
            return api.get("/api/v1/namespaces/default/serviceaccounts/default") is not None

        self._wait(state, "kube-controller-manager", present, timeout)


@contextlib.contextmanager
def _interrupt_on_sigterm() -> Iterator[None]:
    """Turn SIGTERM into KeyboardInterrupt, so a killed ``up`` cleans up like a Ctrl-C."""

    def interrupt(signum: int, frame: FrameType | None) -> Any:
        raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGTERM, interrupt)
    except ValueError:  # not the main thread: nothing to install
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
