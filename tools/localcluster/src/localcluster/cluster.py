"""Start, reuse and stop one local control plane whose state lives in a directory.

    etcd -> kube-apiserver -> kube-controller-manager + kube-scheduler -> kwok (fake nodes)

Everything binds to 127.0.0.1 on ports chosen at start. The directory holds the PKI, the
admin ``kubeconfig``, one log per component under ``logs/`` and ``state.json`` with the
ports and process ids, which is how a second ``up`` finds and reuses a healthy cluster.

With ``real_node=True`` the same control plane runs inside a network and mount namespace of
its own, next to a real kubelet node (containerd, kube-proxy, kubelet) that runs real pods;
host clients still use ``https://127.0.0.1:<port>`` (see ``realnode``).
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import json
import pathlib
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from types import FrameType
from typing import Any

from localcluster import binaries, errors, http, images, nodes, pki, processes, realnode

COMPONENTS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok")
START_TIMEOUT = 90.0

_PORTS = ("etcd", "etcd-peer", "apiserver", "controller-manager", "scheduler")
_CONTROL_PLANE_USERS = (
    "system:kube-controller-manager",
    "system:kube-scheduler",
    "system:kwok-controller",
    "system:apiserver",
)


def _audit_policy(users: Sequence[str]) -> str:
    """Metadata for everything but ``users`` and the health and discovery endpoints."""
    listed = "".join(f"  - {user}\n" for user in users)
    return f"""\
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
# The control plane's own traffic is noise for measuring an operator.
- level: None
  users:
{listed}- level: None
  nonResourceURLs: ["/healthz*", "/readyz*", "/livez*", "/version", "/openapi*", "/api*"]
- level: Metadata
"""


@dataclasses.dataclass
class State:
    """What a running cluster is made of; persisted as ``state.json``."""

    ports: dict[str, int]
    """Host ports on 127.0.0.1 (with a real node: the owner's forwarders)."""
    pids: dict[str, int]
    node: realnode.NodeState | None = None
    """The real node, or None when every node is a kwok fake."""

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.ports['apiserver']}"

    def components(self) -> tuple[str, ...]:
        """Every process this cluster is made of, in start order."""
        if self.node is None:
            return COMPONENTS
        return ("owner", *COMPONENTS, *realnode.NODE_COMPONENTS)

    def to_json(self) -> dict[str, Any]:
        raw: dict[str, Any] = {"ports": self.ports, "pids": self.pids}
        if self.node is not None:
            raw["node"] = dataclasses.asdict(self.node)
        return raw


class Cluster:
    """One local control plane rooted at ``directory``."""

    def __init__(
        self,
        directory: pathlib.Path,
        *,
        echo: Callable[[str], None] | None = None,
        controller_manager_gates: Mapping[str, bool] | None = None,
        real_node: bool = False,
        real_node_name: str = realnode.DEFAULT_NODE_NAME,
        real_node_labels: Mapping[str, str] | None = None,
        apiserver_args: Sequence[str] = (),
        controller_manager_args: Sequence[str] = (),
    ):
        self.directory = directory.resolve()
        self.apiserver_args = tuple(apiserver_args)
        """Extra kube-apiserver flags, last (e.g. ``--admission-control-config-file=...``)."""
        self.controller_manager_args = tuple(controller_manager_args)
        """Extra kube-controller-manager flags, last (e.g. ``--node-monitor-grace-period=10m``)."""
        self._echo = echo or (lambda message: None)
        self.controller_manager_gates = dict(controller_manager_gates or {})
        """Feature gates of kube-controller-manager, e.g. ``{"StaleControllerConsistencyDaemonSet":
        False}`` (see docs/benchmarks.md)."""
        self.real_node = real_node
        """Run the cluster in namespaces of its own with a real kubelet node (``realnode``)."""
        self.real_node_name = real_node_name
        self.real_node_labels = dict(real_node_labels or {})
        """Labels put on the real node besides kubelet's own and ``type: real`` (none of the
        Intel feature labels unless given here)."""

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
            node = raw.get("node")
            return State(
                ports=dict(raw["ports"]),
                pids=dict(raw["pids"]),
                node=realnode.NodeState(**node) if node else None,
            )
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def _save(self, state: State) -> None:
        self._state_file().write_text(json.dumps(state.to_json(), indent=2))

    @property
    def _layout(self) -> realnode.Layout:
        return realnode.Layout(self.directory / "node")

    # The real node -----------------------------------------------------------------------
    @property
    def node_name(self) -> str | None:
        """The real node's name (running or configured), None without a real node."""
        state = self.state()
        if state is not None and state.node is not None:
            return state.node.name
        return self.real_node_name if self.real_node else None

    @property
    def node_ip(self) -> str | None:
        """The real node's InternalIP (10.99.0.1, inside the cluster's network namespace)."""
        return realnode.NODE_IP if self.node_name is not None else None

    @property
    def owner_pid(self) -> int | None:
        """The process holding the namespaces: ``nsenter -t <pid> -n -m <command>`` runs a
        command where the node's containerd, iptables and 10.99.0.1 are visible."""
        state = self.state()
        return state.pids.get("owner") if state is not None and state.node else None

    def load_image(self, archive: pathlib.Path) -> list[str]:
        """Import a docker-archive (``podman save``, ``images.write_archive``) into the real
        node's containerd (namespace ``k8s.io``, where kubelet finds it; use
        ``imagePullPolicy: Never`` or ``IfNotPresent``); the image names it held."""
        state = self._running_state()
        if state.node is None:
            raise errors.ClusterError(
                f"The cluster in {self.directory} has no real node to load an image into "
                "(start it with real_node=True / localcluster up --real-node)"
            )
        archive = archive.resolve()
        references = realnode.archive_references(archive)
        self._ctr(state, "images", "import", str(archive))
        return references

    def _ctr(self, state: State, *args: str, timeout: float = 600.0) -> str:
        argv = [
            *realnode.enter(state.pids["owner"]),
            "ctr",
            f"--address={realnode.CONTAINERD_SOCKET}",
            "--namespace=k8s.io",
            *args,
        ]
        try:
            completed = subprocess.run(
                argv, capture_output=True, text=True, timeout=timeout, check=False
            )
        except subprocess.TimeoutExpired as error:
            raise errors.ClusterError(f"ctr {' '.join(args)} took over {timeout:.0f}s") from error
        if completed.returncode != 0:
            raise errors.ClusterError(
                f"ctr {' '.join(args)} failed (exit {completed.returncode}): "
                f"{completed.stderr.strip()[-600:]}"
            )
        return completed.stdout

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
        if state is None or set(state.pids) != set(state.components()):
            return False
        if not all(processes.alive(pid) for pid in state.pids.values()):
            return False
        try:
            return self.api().ready()
        except errors.ClusterError:
            return False

    def wait_crds_established(
        self, names: Iterable[str] | None = None, *, timeout: float = 60.0
    ) -> None:
        """Wait until the apiserver serves every CRD, or the CRDs ``names``: each is
        Established. (``kubectl wait`` fails at once on a CRD whose status has no conditions
        yet, so a caller that has just created CRDs cannot use it alone.)"""
        wanted = None if names is None else set(names)
        path = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
        deadline = time.monotonic() + timeout
        while True:
            waiting = crds_not_established(self.api().get(path) or {}, wanted)
            if not waiting:
                return
            if time.monotonic() > deadline:
                raise errors.ClusterError(
                    f"CRDs not Established within {timeout:.0f}s: {', '.join(waiting)}"
                )
            time.sleep(0.2)

    # Lifecycle ---------------------------------------------------------------------------
    def up(self, node_specs: Sequence[nodes.NodeSpec], *, timeout: float = START_TIMEOUT) -> State:
        """Reuse a healthy cluster here or start a new one; then make sure ``node_specs`` exist.

        Interrupted (Ctrl-C or SIGTERM) or failed, a cluster this call started is stopped again.
        """
        with _interrupt_on_sigterm():
            reused = self.healthy() and self._same_kind_running()
            try:
                if reused:
                    self._echo(f"Reusing the running cluster in {self.directory}")
                else:
                    self.down()
                    self._start(timeout)
                api = self.api()
                if self.real_node:
                    self._label_real_node(api)
                nodes.ensure(api, node_specs)
                nodes.wait_ready(api, [spec.name for spec in node_specs], timeout=timeout)
            except BaseException:
                if not reused:
                    self._down_after_failure()
                raise
        state = self.state()
        assert state is not None
        return state

    def _down_after_failure(self) -> None:
        try:
            self.down()
        except errors.ClusterError as error:
            self._echo(str(error))

    def _same_kind_running(self) -> bool:
        state = self.state()
        if state is None:
            return False
        if state.node is None:
            return not self.real_node
        return self.real_node and state.node.name == self.real_node_name

    def down(self) -> None:
        """Stop every process started here (by process group) and remove the state.

        With a real node, in this order: kubelet; every process in the node's cgroups
        (containers, pause); containerd; whatever else runs in the cluster's mount namespace
        (shims); the control plane; the owner (its namespaces and every mount in them go with
        it); then the node's cgroups, deepest first. Raises ClusterError, after removing the
        state, when something could not be stopped or removed."""
        state = self.state()
        problems: list[str] = []
        if state is not None:
            if state.node is not None:
                problems += self._stop_node(state)
            for component in reversed(COMPONENTS):
                pid = state.pids.get(component)
                if pid is not None:
                    processes.stop(pid)
            if state.node is not None:
                problems += self._stop_owner(state)
        if self.directory.exists():
            shutil.rmtree(self.directory, ignore_errors=True)
            if self.directory.exists():
                problems.append(f"{self.directory} could not be removed completely")
        if problems:
            raise errors.ClusterError("Stopping the cluster left: " + "; ".join(problems))

    def _stop_node(self, state: State) -> list[str]:
        assert state.node is not None
        problems = []
        if (pid := state.pids.get("kubelet")) is not None:
            processes.stop(pid)
        try:
            realnode.kill_cgroup_processes(state.node.cgroup_root)
        except errors.ClusterError as error:
            problems.append(str(error))
        for component in ("containerd", "kube-proxy"):
            if (pid := state.pids.get(component)) is not None:
                processes.stop(pid)
        recorded = set(state.pids.values())
        try:
            realnode.kill_namespace_processes(self._mount_ns(state), recorded)
        except errors.ClusterError as error:
            problems.append(str(error))
        return problems

    def _stop_owner(self, state: State) -> list[str]:
        assert state.node is not None
        problems = []
        mount_ns = self._mount_ns(state)
        if (pid := state.pids.get("owner")) is not None:
            processes.stop(pid)
        try:
            realnode.kill_namespace_processes(mount_ns)
        except errors.ClusterError as error:
            problems.append(str(error))
        left = realnode.remove_cgroups(state.node.cgroup_root)
        if left:
            problems.append(f"cgroups {', '.join(map(str, left))}")
        return problems

    @staticmethod
    def _mount_ns(state: State) -> str:
        assert state.node is not None
        if state.node.mount_ns:
            return state.node.mount_ns
        owner = state.pids.get("owner")
        if owner is not None and processes.alive(owner):
            with contextlib.suppress(OSError):
                return str(pathlib.Path(f"/proc/{owner}/ns/mnt").readlink())
        return ""

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
        if self.real_node:
            realnode.check_prerequisites(self.directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.logs.mkdir(exist_ok=True)
        listeners: dict[str, socket.socket] = {}
        if self.real_node:
            listeners = {name: processes.listener() for name in realnode.FORWARDED}
            state = State(
                ports={name: listener.getsockname()[1] for name, listener in listeners.items()},
                pids={},
                node=realnode.NodeState(
                    name=self.real_node_name,
                    ip=realnode.NODE_IP,
                    cgroup_root=f"localcluster-{secrets.token_hex(4)}",
                    labels={},
                ),
            )
        else:
            state = State(
                ports={name: processes.free_port() for name in _PORTS},
                pids={},
            )
        self._save(state)
        started = time.monotonic()
        try:
            self._write_pki(state)
            if listeners:
                self._start_owner(state, listeners, timeout)
        finally:
            for listener in listeners.values():
                listener.close()
        self._start_etcd(found, state, timeout)
        self._start_apiserver(found, state, timeout)
        self._start_controller_manager(found, state, timeout)
        self._start_scheduler(found, state, timeout)
        self._start_kwok(found, state)
        self._wait_default_service_account(state, timeout)
        self._echo(f"Control plane ready in {time.monotonic() - started:.1f}s")
        if state.node is not None:
            self._start_node(found, state, timeout)
            self._echo(f"Real node {state.node.name} ready in {time.monotonic() - started:.1f}s")

    def _launch(self, state: State, component: str, argv: list[str]) -> None:
        self._echo(f"Starting {component}")
        if state.node is not None:
            argv = realnode.enter(state.pids["owner"]) + argv
        state.pids[component] = processes.start(argv, self.log_of(component))
        self._save(state)

    def _port(self, state: State, name: str) -> int:
        """The port a component listens on: inside the namespace with a real node."""
        return realnode.INNER_PORTS[name] if state.node is not None else state.ports[name]

    def _component_server(self, state: State) -> str:
        """The apiserver URL for the components (they run in the namespace with a real node)."""
        return realnode.INNER_SERVER if state.node is not None else state.server

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
            ["127.0.0.1", "10.96.0.1"] + ([realnode.NODE_IP] if state.node else []),
        ).write(self.pki, "apiserver")
        private, public = pki.service_account_key()
        (self.pki / "sa.key").write_bytes(private)
        (self.pki / "sa.pub").write_bytes(public)
        identities: dict[str, tuple[str, str | None]] = {
            "admin": ("admin", "system:masters"),
            "controller-manager": ("system:kube-controller-manager", "system:masters"),
            "scheduler": ("system:kube-scheduler", "system:masters"),
            "kwok": ("system:kwok-controller", "system:masters"),
        }
        audited_out = list(_CONTROL_PLANE_USERS)
        if state.node is not None:
            identities["kubelet"] = (f"system:node:{state.node.name}", "system:nodes")
            identities["kube-proxy"] = ("system:kube-proxy", None)
            audited_out += [f"system:node:{state.node.name}", "system:kube-proxy"]
            pki.serving_cert(ca, [state.node.name], [realnode.NODE_IP]).write(
                self.pki, "kubelet-serving"
            )
            pki.client_cert(ca, "kube-apiserver-kubelet-client", "system:masters").write(
                self.pki, "apiserver-kubelet-client"
            )
        for name, (user, group) in identities.items():
            client = pki.client_cert(ca, user, group)
            client.write(self.pki, name)
            server = state.server if name == "admin" else self._component_server(state)
            config = pki.kubeconfig(server, ca, client, user)
            target = self.kubeconfig if name == "admin" else self.pki / f"{name}.kubeconfig"
            target.write_text(config)
            target.chmod(0o600)
        (self.directory / "audit-policy.yaml").write_text(_audit_policy(audited_out))

    # Components --------------------------------------------------------------------------
    def _start_etcd(self, found: binaries.Binaries, state: State, timeout: float) -> None:
        client = f"http://127.0.0.1:{self._port(state, 'etcd')}"
        peer = f"http://127.0.0.1:{self._port(state, 'etcd-peer')}"
        health = f"http://127.0.0.1:{state.ports['etcd']}"
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
        self._wait(state, "etcd", lambda: http.etcd_healthy(health), timeout)

    def _start_apiserver(self, found: binaries.Binaries, state: State, timeout: float) -> None:
        p = self.pki
        if state.node is None:
            network = [
                "--bind-address=127.0.0.1",
                f"--secure-port={state.ports['apiserver']}",
                "--advertise-address=127.0.0.1",
                "--endpoint-reconciler-type=none",
            ]
        else:
            # The kubernetes Service points at 10.99.0.1:6443 (pods reach it through
            # kube-proxy); webhooks are called at their Service's endpoints (no kube-proxy in
            # the apiserver's path) and kubelets at their InternalIP.
            network = [
                "--bind-address=0.0.0.0",
                f"--secure-port={realnode.INNER_PORTS['apiserver']}",
                f"--advertise-address={realnode.NODE_IP}",
                "--endpoint-reconciler-type=lease",
                "--enable-aggregator-routing=true",
                "--kubelet-preferred-address-types=InternalIP",
                f"--kubelet-client-certificate={p / 'apiserver-kubelet-client.crt'}",
                f"--kubelet-client-key={p / 'apiserver-kubelet-client.key'}",
                f"--kubelet-certificate-authority={p / 'ca.crt'}",
            ]
        self._launch(
            state,
            "kube-apiserver",
            [
                str(found.kube_apiserver),
                f"--etcd-servers=http://127.0.0.1:{self._port(state, 'etcd')}",
                *network,
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
                *self.apiserver_args,
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
        listen = self._port(state, "controller-manager")
        self._launch(
            state,
            "kube-controller-manager",
            [
                str(found.kube_controller_manager),
                f"--kubeconfig={config}",
                f"--authentication-kubeconfig={config}",
                f"--authorization-kubeconfig={config}",
                "--bind-address=127.0.0.1",
                f"--secure-port={listen}",
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
                *self.controller_manager_args,
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
                f"--secure-port={self._port(state, 'scheduler')}",
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
                # Never the real node: kwok would fake its status and its pods.
                "--manage-all-nodes=true"
                if state.node is None
                else "--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake",
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

    # The real node -------------------------------------------------------------------------
    def _start_owner(
        self, state: State, listeners: Mapping[str, socket.socket], timeout: float
    ) -> None:
        """Start the namespaces' owner with the host sockets it forwards; record its mount
        namespace once it is ready."""
        assert state.node is not None
        layout = self._layout
        layout.root.mkdir(parents=True, exist_ok=True)
        descriptors = {name: listener.fileno() for name, listener in listeners.items()}
        layout.owner_config.write_text(realnode.owner_config(layout, descriptors))
        argv = [
            "unshare",
            "--net",
            "--mount",
            "--propagation",
            "private",
            "--",
            sys.executable,
            "-m",
            "localcluster.owner",
            str(layout.owner_config),
        ]
        self._echo("Starting owner (network and mount namespaces)")
        state.pids["owner"] = processes.start(
            argv, self.log_of("owner"), pass_fds=tuple(descriptors.values())
        )
        self._save(state)
        self._wait(state, "owner", layout.ready_file.exists, timeout)
        state.node.mount_ns = json.loads(layout.ready_file.read_text())["mnt"]
        self._save(state)

    def _start_node(self, found: binaries.Binaries, state: State, timeout: float) -> None:
        """containerd (with the pause image), kube-proxy and kubelet; waits for node Ready."""
        assert state.node is not None
        node = state.node
        layout = self._layout
        cni_bin = realnode.cni_bin_dir()
        assert cni_bin is not None  # checked by check_prerequisites
        for directory in (
            layout.cni_conf_dir,
            layout.cni_data_dir,
            layout.pod_logs,
            layout.volume_plugins,
            layout.images,
            layout.containerd_root,
        ):
            directory.mkdir(parents=True, exist_ok=True)
        layout.containerd_config.write_text(realnode.containerd_config(layout, cni_bin))
        (layout.cni_conf_dir / "10-localcluster.conflist").write_text(realnode.cni_config(layout))
        layout.kubelet_config.write_text(
            realnode.kubelet_config(layout, self.pki, node.cgroup_root)
        )
        layout.kube_proxy_config.write_text(realnode.kube_proxy_config(self.pki, node.name))
        realnode.create_cgroups(node.cgroup_root)

        self._launch(state, "containerd", ["containerd", f"--config={layout.containerd_config}"])
        self._wait(
            state, "containerd", lambda: bool(self._ctr(state, "version", timeout=5)), timeout
        )
        pause = images.write_archive(
            layout.images / "pause.tar", realnode.PAUSE_IMAGE, {"/pause": found.pause}, ["/pause"]
        )
        self._ctr(state, "images", "import", str(pause))

        self._launch(
            state,
            "kube-proxy",
            [str(found.kube_proxy), f"--config={layout.kube_proxy_config}", "--v=1"],
        )
        self._launch(
            state,
            "kubelet",
            [
                str(found.kubelet),
                f"--config={layout.kubelet_config}",
                f"--kubeconfig={self.pki / 'kubelet.kubeconfig'}",
                "--root-dir=/var/lib/kubelet",
                f"--node-ip={realnode.NODE_IP}",
                f"--hostname-override={node.name}",
                "--v=1",
            ],
        )
        api = self.api()
        self._wait(state, "kubelet", lambda: nodes.is_ready(api, node.name), timeout)
        owner = state.pids["owner"]
        self._wait(
            state,
            "kube-proxy",
            lambda: realnode.in_network_namespace(
                owner,
                lambda: http.ok(f"http://127.0.0.1:{realnode.KUBE_PROXY_HEALTHZ_PORT}/healthz"),
            ),
            timeout,
        )

    def _label_real_node(self, api: http.ApiClient) -> None:
        state = self._running_state()
        assert state.node is not None
        labels = {"type": "real", **self.real_node_labels}
        status, body = api.request(
            "PATCH",
            f"/api/v1/nodes/{state.node.name}",
            {"metadata": {"labels": labels}},
            content_type="application/merge-patch+json",
        )
        if status != 200:
            raise errors.ClusterError(f"Labelling {state.node.name} answered {status}: {body!r}")
        state.node.labels = labels
        self._save(state)


def crds_not_established(listing: Mapping[str, Any], names: set[str] | None = None) -> list[str]:
    """Sorted names of the CRDs in ``listing`` (a CustomResourceDefinitionList) that are not
    Established yet, plus those of ``names`` it does not hold; every CRD when ``names`` is None."""
    established = set()
    present = set()
    for item in listing.get("items") or []:
        name = item["metadata"]["name"]
        present.add(name)
        conditions = (item.get("status") or {}).get("conditions") or []
        if any(c.get("type") == "Established" and c.get("status") == "True" for c in conditions):
            established.add(name)
    wanted = present if names is None else names
    return sorted(wanted - established)


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
