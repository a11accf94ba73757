"""``make demo`` / ``make demo-incluster`` / ``make demo-down``: the operator on a local control
plane with fake Intel nodes.

up:           local cluster (``NODES`` fake nodes with every Intel feature label) → CRDs → the
              operator from source in the background (pid in .cluster/operator.pid, log in
              .cluster/logs/operator.log; restarted when it died, left alone when it runs) →
              every sample of deployments/operator/samples → wait until each CR reports
              READY == DESIRED → print ``kubectl get`` of the eight kinds.
up-incluster: the operator as it ships, in .cluster-incluster/: the image built from the
              Dockerfile (tools/image.py) → local cluster with a real kubelet node besides the
              fake ones → the image imported into the node → ``kubectl apply -k`` of
              deployments/operator/default with only the image swapped (tools/incluster.py) →
              the samples → wait until the Deployment has its 2 replicas available on the real
              node, one holds the Lease, and every sample reports READY == DESIRED → print.
down:         stop both (whichever runs).
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import subprocess
import sys
import time
import urllib.request

import yaml

from deviceplugin_operator import devices
from deviceplugin_operator.manifests import webhooks
from localcluster import cluster, errors, nodes, processes

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import incluster  # tools/ is not a package

ROOT = pathlib.Path(__file__).resolve().parent.parent
CLUSTER_DIR = ROOT / ".cluster"
INCLUSTER_DIR = ROOT / ".cluster-incluster"
SAMPLES = ROOT / "deployments" / "operator" / "samples"
PID_FILE = CLUSTER_DIR / "operator.pid"
PORTS_FILE = CLUSTER_DIR / "operator.ports"
OPERATOR_LOG = CLUSTER_DIR / "logs" / "operator.log"
PLUGIN_KINDS = tuple(sorted(kind.plural for kind in devices.KINDS.values()))
NAMESPACE = "inteldeviceplugins-system"


def say(message: str) -> None:
    print(f"[demo] {message}", file=sys.stderr, flush=True)


def kubectl(kubeconfig: pathlib.Path, *args: str, check: bool = True) -> str:
    completed = subprocess.run(
        ["kubectl", f"--kubeconfig={kubeconfig}", *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    if check and completed.returncode != 0:
        raise errors.ClusterError(f"kubectl {' '.join(args)} failed: {completed.stderr.strip()}")
    return completed.stdout


def operator_pid() -> int | None:
    try:
        pid = int(PID_FILE.read_text())
    except (OSError, ValueError):
        return None
    return pid if processes.alive(pid) else None


def operator_ports() -> tuple[int, int]:
    """(webhook, health) ports of the demo operator, kept across restarts."""
    try:
        webhook, health = (int(p) for p in PORTS_FILE.read_text().split())
    except (OSError, ValueError):
        webhook, health = processes.free_port(), processes.free_port()
        PORTS_FILE.write_text(f"{webhook} {health}")
    return webhook, health


def register_webhooks(kubeconfig: pathlib.Path, port: int) -> None:
    """The generated webhook configurations, pointed at the local operator by URL."""

    def url(path: str) -> dict[str, object]:
        return {"url": f"https://127.0.0.1:{port}{path}"}

    for configuration in webhooks.configurations(
        devices.KINDS.values(), url, prefix="intel-deviceplugins-"
    ):
        path = CLUSTER_DIR / f"{configuration['metadata']['name']}.json"
        path.write_text(json.dumps(configuration))
        # Server-side apply keeps the caBundle the operator patched in.
        kubectl(kubeconfig, "apply", "--server-side", "--force-conflicts", "-f", str(path))


def start_operator(kubeconfig: pathlib.Path) -> None:
    webhook, health = operator_ports()
    register_webhooks(kubeconfig, webhook)
    if (pid := operator_pid()) is not None:
        say(f"Operator already running (pid {pid})")
        return
    env = dict(os.environ, KUBECONFIG=str(kubeconfig), DEVICEPLUGIN_NAMESPACE=NAMESPACE)
    argv = [
        str(ROOT / ".venv" / "bin" / "deviceplugin-operator"),
        "run",
        "--metrics-bind-address=0",
        f"--health-probe-bind-address=127.0.0.1:{health}",
        "--webhook-host=127.0.0.1",
        f"--webhook-port={webhook}",
        "--webhook-cert-hosts=127.0.0.1",
        f"--webhook-cert-dir={CLUSTER_DIR / 'webhook-certs'}",
        f"--operator-namespace={NAMESPACE}",
    ]
    pid = processes.start(argv, OPERATOR_LOG, env=env)
    PID_FILE.write_text(str(pid))
    say(f"Started the operator (pid {pid}); log: {OPERATOR_LOG}")
    deadline = time.monotonic() + 60
    while not _ready(health):
        if operator_pid() is None or time.monotonic() > deadline:
            raise errors.ClusterError(f"The operator did not become ready; see {OPERATOR_LOG}")
        time.sleep(0.2)
    say("Operator ready (controllers and webhooks)")


def _ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as reply:
            return bool(reply.status == 200)
    except OSError:
        return False


def applied_samples(manifests: str) -> list[tuple[str, str]]:
    """(plural, name) of each device-plugin resource in the samples' rendered manifests.

    ``make demo`` waits for these only: other resources in the cluster (one that selects no
    node reports DESIRED 0 for good) are not the demo's to wait for.
    """
    plurals = {kind.kind: kind.plural for kind in devices.KINDS.values()}
    samples = []
    for document in yaml.safe_load_all(manifests):
        if document and document.get("kind") in plurals:
            samples.append((plurals[document["kind"]], document["metadata"]["name"]))
    return sorted(samples)


def pending_samples(kubeconfig: pathlib.Path, samples: list[tuple[str, str]]) -> list[str]:
    """The samples whose status does not yet report READY == DESIRED > 0."""
    pending = []
    for plural, name in samples:
        found = kubectl(kubeconfig, "get", plural, name, "-o", "json", check=False)
        status = (json.loads(found).get("status") or {}) if found else {}
        desired = status.get("desiredNumberScheduled")
        if not desired or status.get("numberReady") != desired:
            pending.append(f"{plural}/{name}")
    return pending


def up(node_count: int) -> int:
    local = cluster.Cluster(CLUSTER_DIR, echo=say)
    local.up(nodes.intel_nodes(node_count))
    kubeconfig = local.kubeconfig
    kubectl(
        kubeconfig, "apply", "--server-side", "-f", str(ROOT / "deployments/operator/crd/bases")
    )
    local.wait_crds_established()
    kubectl(kubeconfig, "create", "namespace", NAMESPACE, check=False)
    start_operator(kubeconfig)
    manifests = kubectl(kubeconfig, "kustomize", str(ROOT / "deployments/operator/samples"))
    samples = applied_samples(manifests)
    kubectl(kubeconfig, "apply", "-k", str(ROOT / "deployments/operator/samples"))
    say("Applied every sample; waiting until each reports READY == DESIRED")
    deadline = time.monotonic() + 120
    while True:
        if not (pending := pending_samples(kubeconfig, samples)):
            break
        if operator_pid() is None:
            say(f"The operator exited; see {OPERATOR_LOG}")
            return 1
        if time.monotonic() > deadline:
            say(f"Still not ready after 120 s: {', '.join(pending)}; see {OPERATOR_LOG}")
            return 1
        time.sleep(0.5)
    print(kubectl(kubeconfig, "get", ",".join(PLUGIN_KINDS)))
    print(kubectl(kubeconfig, "get", "daemonsets", "-n", NAMESPACE))
    print(f"""Everything is running. Explore:
  export KUBECONFIG={kubeconfig}
  kubectl get gpudeviceplugins -o yaml                # status with conditions
  kubectl edit gpudeviceplugin gpudeviceplugin-sample # e.g. sharedDevNum; the DaemonSet follows
  kubectl get pods -n {NAMESPACE} -o wide
  tail -f {OPERATOR_LOG}
Stop it all with: make demo-down""")
    return 0


def wait_samples(
    kubeconfig: pathlib.Path, samples: list[tuple[str, str]], seconds: float, log_hint: str
) -> bool:
    deadline = time.monotonic() + seconds
    while pending := pending_samples(kubeconfig, samples):
        if time.monotonic() > deadline:
            say(f"Still not ready after {seconds:.0f} s: {', '.join(pending)}; {log_hint}")
            return False
        time.sleep(0.5)
    return True


def up_incluster(node_count: int) -> int:
    say(f"Building (or reusing) the operator image {incluster.IMAGE}")
    image_id, archive = incluster.build_image()
    local = cluster.Cluster(INCLUSTER_DIR, echo=say, real_node=True)
    local.up(nodes.intel_nodes(node_count))
    kubeconfig = local.kubeconfig
    real_node = str(local.node_name)
    say(f"Importing {archive.name} into the real node {real_node}")
    local.load_image(archive)
    kube = incluster.kubectl_for(kubeconfig)
    incluster.cordon_fake_nodes(kube)
    overlay = incluster.write_overlay("default", incluster.IMAGE, INCLUSTER_DIR / "overlay")
    # The CRDs must be Established before the samples; the webhooks must answer.
    kubectl(kubeconfig, "apply", "-k", str(overlay))
    say("Applied deployments/operator/default (image swapped); waiting for the operator")
    hint = (
        f"see kubectl --kubeconfig={kubeconfig} -n {NAMESPACE} logs "
        f"deployment/{incluster.DEPLOYMENT}"
    )
    try:
        incluster.wait_until(
            lambda: incluster.operator_pending(kube, real_node),
            timeout=180,
            what="the operator Deployment",
        )
    except TimeoutError as error:
        say(f"{error}; {hint}")
        return 1
    say("Operator up: 2 replicas on the real node, one holds the Lease")
    manifests = kubectl(kubeconfig, "kustomize", str(ROOT / "deployments/operator/samples"))
    samples = applied_samples(manifests)
    deadline = time.monotonic() + 60
    while True:  # the first admission calls may still race the Service's endpoints
        done = subprocess.run(
            ["kubectl", f"--kubeconfig={kubeconfig}", "apply", "-k", str(SAMPLES)],
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
        )
        if done.returncode == 0:
            break
        if time.monotonic() > deadline:
            say(f"Applying the samples failed: {done.stderr.strip()}")
            return 1
        time.sleep(1)
    say("Applied every sample; waiting until each reports READY == DESIRED")
    if not wait_samples(kubeconfig, samples, 120, hint):
        return 1
    print(kubectl(kubeconfig, "get", "deployment,pods", "-n", NAMESPACE, "-o", "wide"))
    print(kubectl(kubeconfig, "get", "lease", incluster.LEASE, "-n", NAMESPACE))
    print(kubectl(kubeconfig, "get", ",".join(PLUGIN_KINDS)))
    print(kubectl(kubeconfig, "get", "daemonsets", "-n", NAMESPACE))
    print(f"""The operator runs as it ships (image {incluster.IMAGE}, id {image_id[:12]}). Explore:
  export KUBECONFIG={kubeconfig}
  kubectl -n {NAMESPACE} logs deployment/{incluster.DEPLOYMENT}
  kubectl -n {NAMESPACE} get lease {incluster.LEASE} -o yaml      # the leader
  kubectl -n {NAMESPACE} delete pod <the leader>   # the other replica takes over
  kubectl edit gpudeviceplugin gpudeviceplugin-sample # e.g. sharedDevNum; the DaemonSet follows
Stop it all with: make demo-down""")
    return 0


def down() -> int:
    if (pid := operator_pid()) is not None:
        processes.stop(pid)
        say(f"Stopped the operator (pid {pid})")
    cluster.Cluster(CLUSTER_DIR, echo=say).down()
    say("Stopped the local cluster")
    if INCLUSTER_DIR.exists():
        cluster.Cluster(INCLUSTER_DIR, echo=say, real_node=True).down()
        say("Stopped the in-cluster demo's cluster")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("command", choices=("up", "up-incluster", "down"))
    parser.add_argument("--nodes", type=int, default=3)
    args = parser.parse_args()
    try:
        if args.command == "up":
            return up(args.nodes)
        if args.command == "up-incluster":
            return up_incluster(args.nodes)
        return down()
    except (errors.ClusterError, RuntimeError) as error:
        say(f"Error: {error}")
        return 1


if __name__ == "__main__":
    sys.exit(main())
