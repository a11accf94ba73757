"""The optional real kubelet node of the local control plane, and the namespaces it lives in.

With ``Cluster(directory, real_node=True)`` the whole cluster runs inside one network and mount
namespace of its own, held by an owner process (``localcluster.owner``) started under
``unshare --net --mount --propagation private``:

    owner (lo: 10.99.0.1/32; tmpfs over /run, /var/lib, /var/log; sysctl files; forwarder)
      etcd -> kube-apiserver -> controller-manager + scheduler -> kwok (fake nodes)
      containerd -> kube-proxy (iptables, rules stay in the namespace) -> kubelet (node 10.99.0.1)

Every component joins with ``nsenter -t <owner> -n -m``. Pods get 10.88.0.x from the CNI
``bridge`` plugin (no masquerade) with ``host-local`` IPAM; the apiserver reaches webhooks
through their Service (aggregator routing resolves it to the endpoint) and kubelet at
10.99.0.1:10250 (``kubectl logs``); pods reach the ``kubernetes`` Service 10.96.0.1 through
kube-proxy. Host clients use ``https://127.0.0.1:<port>``, forwarded by the owner to
10.99.0.1:6443. Nothing on the host changes: no link, address, route, iptables rule, mount or
sysctl (kubelet's kernel tunables are bind-mounted files inside the namespace); only cgroups
``/<cgroup_root>`` are created in each cgroup hierarchy and removed again by ``down``.

This module holds the node's constants, configuration files, the checks of what it needs,
and the pieces of its teardown (cgroups, processes of the mount namespace).
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import json
import os
import pathlib
import shutil
import signal
import tarfile
import threading
import time
from collections.abc import Callable, Mapping
from typing import TypeVar

from localcluster import errors

NODE_IP = "10.99.0.1"
"""The real node's address (InternalIP), on the namespace's loopback."""
POD_SUBNET = "10.88.0.0/24"
SERVICE_SUBNET = "10.96.0.0/16"
DEFAULT_NODE_NAME = "real-node"
PAUSE_IMAGE = "localhost/localcluster/pause:1"
INNER_PORTS: Mapping[str, int] = {
    "etcd": 2379,
    "etcd-peer": 2380,
    "apiserver": 6443,
    "controller-manager": 10257,
    "scheduler": 10259,
}
"""Ports the components listen on inside the namespace."""
FORWARDED = {
    "apiserver": (NODE_IP, 6443),
    "etcd": ("127.0.0.1", 2379),
    "controller-manager": ("127.0.0.1", 10257),
    "scheduler": ("127.0.0.1", 10259),
}
"""Host port name (``State.ports``) -> target inside the namespace."""
INNER_SERVER = f"https://{NODE_IP}:6443"
KUBELET_PORT = 10250
KUBELET_HEALTHZ_PORT = 10248
KUBE_PROXY_HEALTHZ_PORT = 10256
KUBE_PROXY_METRICS_PORT = 10249
CONTAINERD_SOCKET = "/run/containerd/containerd.sock"
NODE_COMPONENTS = ("containerd", "kube-proxy", "kubelet")
"""Started in this order after the control plane; stopped in reverse by ``down``."""
PRIVATE_TMPFS = ("/run", "/var/lib", "/var/log")
KUBELET_SYSCTLS: Mapping[str, int] = {
    "vm/overcommit_memory": 1,
    "vm/panic_on_oom": 0,
    "kernel/panic": 10,
    "kernel/panic_on_oops": 1,
    "kernel/keys/root_maxkeys": 1000000,
    "kernel/keys/root_maxbytes": 25000000,
}
"""What kubelet's container manager writes when it reads anything else (setupKernelTunables):
bind-mounted inside the namespace with these values, so kubelet is content and writes nothing."""
TOOLS = (
    "unshare",
    "nsenter",
    "mount",
    "ip",
    "containerd",
    "containerd-shim-runc-v2",
    "runc",
    "ctr",
    "iptables",
    "iptables-restore",
)
CNI_PLUGINS = ("bridge", "host-local", "loopback")
CNI_BIN_DIRS = ("/usr/lib/cni", "/opt/cni/bin")


@dataclasses.dataclass
class NodeState:
    """The real node of a running cluster; part of ``state.json``."""

    name: str
    ip: str
    cgroup_root: str
    """Name of the cgroup created in every hierarchy (``/sys/fs/cgroup/<h>/<cgroup_root>``)."""
    labels: dict[str, str]
    mount_ns: str = ""
    """The owner's mount namespace (``mnt:[inode]``), once it is ready."""


# Prerequisites ------------------------------------------------------------------------------
def cni_bin_dir() -> pathlib.Path | None:
    """The first directory holding every CNI plugin the node uses."""
    for directory in map(pathlib.Path, CNI_BIN_DIRS):
        if all((directory / plugin).is_file() for plugin in CNI_PLUGINS):
            return directory
    return None


def missing_prerequisites() -> list[str]:
    """What this machine lacks for a real node (empty when it can run one)."""
    missing = []
    if os.geteuid() != 0:
        missing.append("root (namespaces, mounts and cgroups need it)")
    missing += [f"the {tool} command" for tool in TOOLS if shutil.which(tool) is None]
    if cni_bin_dir() is None:
        missing.append(
            f"the CNI plugins {', '.join(CNI_PLUGINS)} in {' or '.join(CNI_BIN_DIRS)} "
            "(Debian: containernetworking-plugins)"
        )
    if not cgroup_mounts():
        missing.append("a mounted cgroup hierarchy")
    return missing


def check_prerequisites(directory: pathlib.Path) -> None:
    missing = missing_prerequisites()
    if missing:
        raise errors.StartError(
            "A real node needs " + "; ".join(missing) + " (Debian packages: containerd runc "
            "containernetworking-plugins iproute2 iptables util-linux; see docs/local-cluster.md)"
        )
    for private in PRIVATE_TMPFS:
        if directory == pathlib.Path(private) or pathlib.Path(private) in directory.parents:
            raise errors.StartError(
                f"The state directory {directory} is under {private}, which the real node "
                "hides behind a private tmpfs: choose another directory"
            )


# Files --------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Layout:
    """Where the node's files live in the cluster's state directory."""

    root: pathlib.Path

    @property
    def owner_config(self) -> pathlib.Path:
        return self.root / "owner.json"

    @property
    def ready_file(self) -> pathlib.Path:
        return self.root / "owner.ready"

    @property
    def sysctl_dir(self) -> pathlib.Path:
        return self.root / "sysctl"

    @property
    def containerd_config(self) -> pathlib.Path:
        return self.root / "containerd.toml"

    @property
    def containerd_root(self) -> pathlib.Path:
        return self.root / "containerd"

    @property
    def cni_conf_dir(self) -> pathlib.Path:
        return self.root / "cni" / "net.d"

    @property
    def cni_data_dir(self) -> pathlib.Path:
        return self.root / "cni" / "ipam"

    @property
    def kubelet_config(self) -> pathlib.Path:
        return self.root / "kubelet.yaml"

    @property
    def kube_proxy_config(self) -> pathlib.Path:
        return self.root / "kube-proxy.yaml"

    @property
    def pod_logs(self) -> pathlib.Path:
        return self.root / "pod-logs"

    @property
    def volume_plugins(self) -> pathlib.Path:
        return self.root / "volume-plugins"

    @property
    def images(self) -> pathlib.Path:
        return self.root / "images"


def owner_config(
    layout: Layout, forwards: Mapping[str, int], sysctls: Mapping[str, int] = KUBELET_SYSCTLS
) -> str:
    """The owner's configuration: ``forwards`` maps a ``FORWARDED`` name to the file
    descriptor of its host listening socket."""
    return json.dumps(
        {
            "address": NODE_IP,
            "tmpfs": list(PRIVATE_TMPFS),
            "sysctl_dir": str(layout.sysctl_dir),
            "sysctls": dict(sysctls),
            "ready_file": str(layout.ready_file),
            "forwards": [
                {"fd": fd, "host": FORWARDED[name][0], "port": FORWARDED[name][1]}
                for name, fd in forwards.items()
            ],
        },
        indent=2,
    )


def containerd_config(layout: Layout, cni_bin: pathlib.Path) -> str:
    """containerd 1.6/1.7 configuration (version 2): its own root on disk, state and socket
    under the namespace's private /run, cgroupfs, the pause image as sandbox."""
    return f"""\
version = 2
root = "{layout.containerd_root / "root"}"
state = "/run/containerd"
disabled_plugins = [
  "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.zfs",
]

[grpc]
  address = "{CONTAINERD_SOCKET}"

[ttrpc]
  address = "{CONTAINERD_SOCKET}.ttrpc"

[plugins."io.containerd.internal.v1.opt"]
  path = "{layout.containerd_root / "opt"}"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{PAUSE_IMAGE}"
  restrict_oom_score_adj = true
  disable_apparmor = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{cni_bin}"
    conf_dir = "{layout.cni_conf_dir}"
    max_conf_num = 1
"""


def cni_config(layout: Layout) -> str:
    """A bridge (gateway, no masquerade) with host-local addresses from ``POD_SUBNET``."""
    return json.dumps(
        {
            "cniVersion": "1.0.0",
            "name": "localcluster",
            "plugins": [
                {
                    "type": "bridge",
                    "bridge": "cni0",
                    "isGateway": True,
                    "ipMasq": False,
                    "hairpinMode": True,
                    "ipam": {
                        "type": "host-local",
                        "ranges": [[{"subnet": POD_SUBNET}]],
                        "routes": [{"dst": "0.0.0.0/0"}],
                        "dataDir": str(layout.cni_data_dir),
                    },
                }
            ],
        },
        indent=2,
    )


def kubelet_config(layout: Layout, pki: pathlib.Path, cgroup_root: str) -> str:
    """KubeletConfiguration: cgroupfs under our own cgroup root, cgroup v1 accepted, no swap
    check, no iptables chains, webhook authn/authz, no image GC or disk eviction (imported
    images cannot be pulled again)."""
    return f"""\
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
failCgroupV1: false
cgroupDriver: cgroupfs
cgroupRoot: /{cgroup_root}
failSwapOn: false
makeIPTablesUtilChains: false
containerRuntimeEndpoint: unix://{CONTAINERD_SOCKET}
address: {NODE_IP}
port: {KUBELET_PORT}
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: {KUBELET_HEALTHZ_PORT}
tlsCertFile: {pki / "kubelet-serving.crt"}
tlsPrivateKeyFile: {pki / "kubelet-serving.key"}
authentication:
  anonymous:
    enabled: false
  webhook:
    enabled: true
  x509:
    clientCAFile: {pki / "ca.crt"}
authorization:
  mode: Webhook
podLogsDir: {layout.pod_logs}
volumePluginDir: {layout.volume_plugins}
resolvConf: /etc/resolv.conf
serializeImagePulls: false
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard:
  memory.available: 100Mi
  nodefs.available: "1%"
  imagefs.available: "1%"
  nodefs.inodesFree: "1%"
"""


def kube_proxy_config(pki: pathlib.Path, node_name: str) -> str:
    """iptables mode inside the namespace; no conntrack or route_localnet sysctl is written."""
    return f"""\
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: iptables
clientConnection:
  kubeconfig: {pki / "kube-proxy.kubeconfig"}
hostnameOverride: {node_name}
bindAddress: {NODE_IP}
healthzBindAddress: 127.0.0.1:{KUBE_PROXY_HEALTHZ_PORT}
metricsBindAddress: 127.0.0.1:{KUBE_PROXY_METRICS_PORT}
clusterCIDR: {POD_SUBNET}
oomScoreAdj: 0
iptables:
  localhostNodePorts: false
conntrack:
  maxPerCore: 0
  min: 0
  tcpEstablishedTimeout: 0s
  tcpCloseWaitTimeout: 0s
"""


def enter(owner: int) -> list[str]:
    """The prefix that runs a command in the owner's network and mount namespaces."""
    return ["nsenter", "-t", str(owner), "-n", "-m", "--"]


def archive_references(archive: pathlib.Path) -> list[str]:
    """The image names (``RepoTags``) of a docker-archive."""
    try:
        with tarfile.open(archive) as tar:
            member = tar.extractfile("manifest.json")
            if member is None:
                raise KeyError("manifest.json")
            manifest = json.loads(member.read())
    except (OSError, KeyError, tarfile.TarError, ValueError) as error:
        raise errors.ClusterError(
            f"{archive} is not a docker-archive (no readable manifest.json): {error}"
        ) from error
    return [tag for entry in manifest for tag in entry.get("RepoTags") or []]


# Running code inside the namespace ------------------------------------------------------------
_CLONE_NEWNET = 0x40000000
_T = TypeVar("_T")


def in_network_namespace(owner: int, function: Callable[[], _T]) -> _T:
    """Call ``function`` in a thread that joined the owner's network namespace (a network
    namespace is per thread; sockets keep the namespace they were created in)."""
    outcome: dict[str, _T] = {}
    failure: list[BaseException] = []

    def run() -> None:
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            descriptor = os.open(f"/proc/{owner}/ns/net", os.O_RDONLY)
            try:
                if libc.setns(descriptor, _CLONE_NEWNET) != 0:
                    number = ctypes.get_errno()
                    raise OSError(number, f"setns: {os.strerror(number)}")
            finally:
                os.close(descriptor)
            outcome["value"] = function()
        except BaseException as error:
            failure.append(error)

    thread = threading.Thread(target=run, name="localcluster-netns", daemon=True)
    thread.start()
    thread.join()
    if failure:
        raise failure[0]
    return outcome["value"]


# cgroups ------------------------------------------------------------------------------------
def cgroup_mounts() -> list[tuple[pathlib.Path, str]]:
    """(mount point, ``cgroup`` or ``cgroup2``) of every mounted cgroup hierarchy."""
    found: list[tuple[pathlib.Path, str]] = []
    try:
        lines = pathlib.Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return found
    for line in lines:
        before, _, after = line.partition(" - ")
        fstype = after.split(" ", 1)[0]
        if fstype in ("cgroup", "cgroup2"):
            mount_point = pathlib.Path(before.split(" ")[4].replace("\\040", " "))
            if (mount_point, fstype) not in found:
                found.append((mount_point, fstype))
    return found


def create_cgroups(name: str) -> None:
    """``/<name>`` in every cgroup v1 hierarchy (cpuset's ``cpus``/``mems`` copied from the
    root), or in the cgroup v2 hierarchy when there is no v1 one; kubelet needs its cgroup
    root to exist and creates everything below it."""
    mounts = cgroup_mounts()
    version1 = [mount for mount, fstype in mounts if fstype == "cgroup"]
    for mount in version1 or [mount for mount, fstype in mounts if fstype == "cgroup2"]:
        path = mount / name
        path.mkdir(exist_ok=True)
        for setting in ("cpuset.cpus", "cpuset.mems"):
            if (mount / setting).exists() and not (path / setting).read_text().strip():
                (path / setting).write_text((mount / setting).read_text())


def cgroup_directories(name: str) -> list[pathlib.Path]:
    """Every cgroup at or below ``/<name>`` in every hierarchy, deepest first."""
    found: list[pathlib.Path] = []
    for mount, _ in cgroup_mounts():
        top = mount / name
        if top.is_dir():
            found += [pathlib.Path(path) for path, _, _ in os.walk(top)]
    return sorted(found, key=lambda path: len(path.parts), reverse=True)


def cgroup_pids(name: str) -> set[int]:
    pids: set[int] = set()
    for directory in cgroup_directories(name):
        with contextlib.suppress(OSError, ValueError):
            pids.update(int(p) for p in (directory / "cgroup.procs").read_text().split())
    return pids


def kill_cgroup_processes(name: str, *, timeout: float = 30.0) -> None:
    """SIGKILL every process in our cgroups until none is left (pods' containers and
    pause processes; killing a shim would not kill them)."""
    deadline = time.monotonic() + timeout
    while pids := cgroup_pids(name):
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if time.monotonic() > deadline:
            raise errors.ClusterError(
                f"Processes {sorted(pids)} in cgroup /{name} survived SIGKILL for {timeout:.0f}s"
            )
        time.sleep(0.05)


def remove_cgroups(name: str, *, timeout: float = 10.0) -> list[pathlib.Path]:
    """rmdir every cgroup at or below ``/<name>``, deepest first; the ones left."""
    deadline = time.monotonic() + timeout
    while True:
        left = []
        for directory in cgroup_directories(name):
            try:
                directory.rmdir()
            except FileNotFoundError:
                pass
            except OSError:
                left.append(directory)
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.1)


# Processes of the namespace -------------------------------------------------------------------
def namespace_processes(
    mount_ns: str, exclude: set[int] | frozenset[int] = frozenset()
) -> list[int]:
    """Live (non-zombie) processes whose mount namespace is ``mount_ns`` (``mnt:[inode]``)."""
    found = []
    for entry in pathlib.Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) in exclude:
            continue
        try:
            if os.readlink(entry / "ns" / "mnt") != mount_ns:
                continue
            state = (entry / "stat").read_text().rsplit(") ", 1)[1][0]
        except (OSError, IndexError):
            continue
        if state != "Z":
            found.append(int(entry.name))
    return found


def kill_namespace_processes(
    mount_ns: str, exclude: set[int] | frozenset[int] = frozenset(), *, timeout: float = 10.0
) -> None:
    """SIGKILL every process of the mount namespace but ``exclude`` until none is left
    (containerd's shims, anything a pod's hostPath or an nsenter started)."""
    if not mount_ns:
        return
    deadline = time.monotonic() + timeout
    while pids := namespace_processes(mount_ns, exclude):
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if time.monotonic() > deadline:
            raise errors.ClusterError(
                f"Processes {pids} in the real node's mount namespace survived SIGKILL"
            )
        time.sleep(0.05)
