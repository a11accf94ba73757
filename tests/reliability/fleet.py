"""What the reliability scenarios share: operator processes, resource churn, and the check
that the cluster converged to exactly what the resources ask for.

``converged`` is the judge of "nothing lost": for every resource of the run, exactly one
DaemonSet owned by it (by UID), equal on every rendered field to what the renderer makes of
the resource's current spec, and a status computed from the current generation that agrees
with the DaemonSet's counts; and no DaemonSet of the run whose owner is gone.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import random
import signal
import statistics
import subprocess
import threading
import time
import uuid
from collections.abc import Sequence
from typing import Any

import yaml

from deviceplugin_operator import devices, settings
from deviceplugin_operator.reconcile import daemonset, drift
from localcluster import errors as cluster_errors
from localcluster import http

ROOT = pathlib.Path(__file__).resolve().parents[2]
SAMPLES = ROOT / "deployments" / "operator" / "samples"
OPERATOR = ROOT / ".venv" / "bin" / "deviceplugin-operator"
RUN_LABEL = "reliability.test/run"
GROUP_PATH = "/apis/deviceplugin.intel.com/v1"


def iterations(default: int) -> int:
    """``RELIABILITY_ITERATIONS`` scales every loop for a nightly run; never below default."""
    return max(default, int(os.environ.get("RELIABILITY_ITERATIONS", default)))


def sample_spec(kind: devices.DeviceKind[Any]) -> dict[str, Any]:
    """The reference sample's spec, without the provisioning ConfigMap (not created here)."""
    path = SAMPLES / f"deviceplugin_v1_{kind.name}deviceplugin.yaml"
    spec: dict[str, Any] = yaml.safe_load(path.read_text())["spec"]
    spec.pop("provisioningConfig", None)
    return spec


def plural_path(kind: devices.DeviceKind[Any], name: str | None = None) -> str:
    path = f"{GROUP_PATH}/{kind.plural}"
    return path if name is None else f"{path}/{name}"


# The operator as a process ---------------------------------------------------------------------
@dataclasses.dataclass
class OperatorProcess:
    popen: subprocess.Popen[bytes]
    log: pathlib.Path
    started: float
    log_offset: int = 0

    def wait_logging(self, timeout: float = 30.0) -> None:
        """Until the process wrote its first log line (Python and the imports are loaded)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.popen.poll() is None:
            if self.log.stat().st_size > self.log_offset:
                return
            time.sleep(0.02)

    def kill(self) -> None:
        """kill -9: no chance to finish a write, release a lease or flush anything."""
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGKILL)
        self.popen.wait(timeout=10)

    def terminate(self) -> None:
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()


def start_operator(
    kubeconfig: pathlib.Path,
    namespace: str,
    log: pathlib.Path,
    *extra: str,
    devices_enabled: Sequence[str] = (),
) -> OperatorProcess:
    argv = [
        str(OPERATOR),
        "run",
        f"--kubeconfig={kubeconfig}",
        f"--deviceplugin-namespace={namespace}",
        "--metrics-bind-address=127.0.0.1:0",
        "--health-probe-bind-address=127.0.0.1:0",
        "--webhook-port=0",
        "--log-format=json",
        *(f"--devices={name}" for name in devices_enabled),
        *extra,
    ]
    env = {k: v for k, v in os.environ.items() if not k.endswith("_SHA")}
    env.pop("DEVICEPLUGIN_SECRET", None)
    offset = log.stat().st_size if log.exists() else 0
    with log.open("ab") as out:
        popen = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env)
    started = OperatorProcess(popen, log, time.monotonic(), offset)
    STARTED.append(started)
    return started


STARTED: list[OperatorProcess] = []
"""Every operator process started, so that a failing test leaves none running."""


def kill_all() -> None:
    for process in STARTED:
        if process.popen.poll() is None:
            process.popen.kill()
            process.popen.wait(timeout=10)
    STARTED.clear()


def log_records(log: pathlib.Path) -> list[dict[str, Any]]:
    records = []
    for line in log.read_text(errors="replace").splitlines():
        try:
            records.append(json.loads(line))
        except ValueError:
            records.append({"level": "RAW", "message": line})
    return records


def tracebacks(log: pathlib.Path) -> list[str]:
    """Lines that show an unhandled exception (never expected, whatever was injected)."""
    text = log.read_text(errors="replace")
    return [line for line in text.splitlines() if "Traceback" in line or '"exc_info"' in line]


# Resource churn --------------------------------------------------------------------------------
@dataclasses.dataclass
class Churn:
    """Creates, updates and deletes resources of every kind from a small pool of names, from
    a thread, until stopped. Every call that failed for lack of an apiserver is retried by the
    next step; the truth is what the apiserver holds at the end."""

    api: http.ApiClient
    run: str
    names_per_kind: int = 2
    seed: int = 0
    operations: int = 0
    failures: int = 0
    _stop: threading.Event = dataclasses.field(default_factory=threading.Event)
    _running: threading.Event = dataclasses.field(default_factory=threading.Event)
    _idle: threading.Event = dataclasses.field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def pool(self) -> list[tuple[devices.DeviceKind[Any], str]]:
        return [
            (kind, f"rel-{self.run}-{index}")
            for kind in devices.KINDS.values()
            for index in range(self.names_per_kind)
        ]

    def body(self, kind: devices.DeviceKind[Any], name: str, rng: random.Random) -> Any:
        spec = sample_spec(kind)
        spec["logLevel"] = rng.randint(0, 5)
        if rng.random() < 0.25:
            spec["nodeSelector"] = {"no-such-node-label": "x"}  # desired 0
        return {
            "apiVersion": kind.resource.api_version,
            "kind": kind.kind,
            "metadata": {"name": name, "labels": {RUN_LABEL: self.run}},
            "spec": spec,
        }

    def step(self, rng: random.Random) -> None:
        kind, name = rng.choice(self.pool())
        action = rng.choices(("create", "update", "delete"), weights=(4, 4, 2))[0]
        try:
            if action == "delete":
                self.api.request("DELETE", plural_path(kind, name))
            else:
                current = self.api.get(plural_path(kind, name))
                body = self.body(kind, name, rng)
                if current is None:
                    self.api.request("POST", plural_path(kind), body)
                else:
                    body["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
                    self.api.request("PUT", plural_path(kind, name), body)
            self.operations += 1
        except cluster_errors.ClusterError:
            self.failures += 1

    def _loop(self, pause: float) -> None:
        rng = random.Random(self.seed)
        while not self._stop.is_set():
            if not self._running.is_set():
                self._idle.set()
                self._running.wait(0.1)
                continue
            self._idle.clear()
            self.step(rng)
            self._stop.wait(pause)

    def start(self, pause: float = 0.02) -> None:
        self._running.set()
        self._thread = threading.Thread(target=self._loop, args=(pause,), daemon=True)
        self._thread.start()

    def pause(self) -> None:
        """Stop changing resources; returns once the change in flight is done."""
        self._idle.clear()
        self._running.clear()
        self._idle.wait(timeout=30)

    def resume(self) -> None:
        self._running.set()

    def stop(self) -> None:
        self._stop.set()
        self._running.set()
        if self._thread is not None:
            self._thread.join(timeout=30)


# The judge -------------------------------------------------------------------------------------
def _items(api: http.ApiClient, path: str) -> list[dict[str, Any]]:
    """The items of a list, with the kind and apiVersion that list items leave out."""
    found = api.get(path)
    if found is None:
        return []
    kind = str(found.get("kind", "")).removesuffix("List")
    return [
        {"apiVersion": found.get("apiVersion"), "kind": kind, **item}
        for item in found.get("items") or []
    ]


def converged(api: http.ApiClient, namespace: str, run: str) -> list[str]:
    """What is still wrong (empty once the cluster is exactly what the run's resources ask)."""
    problems: list[str] = []
    config = settings.Settings(plugin_namespace=namespace, devices=tuple(devices.KINDS))
    daemonsets = _items(api, f"/apis/apps/v1/namespaces/{namespace}/daemonsets")
    owners: set[str] = set()
    for kind in devices.KINDS.values():
        for resource in _items(api, f"{plural_path(kind)}?labelSelector={RUN_LABEL}%3D{run}"):
            meta = resource["metadata"]
            if meta.get("deletionTimestamp"):
                continue
            owners.add(meta["uid"])
            where = f"{kind.kind}/{meta['name']}"
            owned = [
                ds
                for ds in daemonsets
                if any(
                    ref.get("uid") == meta["uid"]
                    for ref in ds["metadata"].get("ownerReferences") or []
                )
            ]
            if len(owned) != 1:
                problems.append(f"{where}: {len(owned)} DaemonSets")
                continue
            (live,) = owned
            wanted = daemonset.desired_daemonset(
                kind, meta["name"], meta["uid"], kind.spec_of(resource), config
            )
            if not drift.matches(drift.with_rendered_lists(wanted), live):
                problems.append(f"{where}: DaemonSet differs from its spec")
            status = resource.get("status") or {}
            if status.get("observedGeneration") != meta.get("generation"):
                problems.append(
                    f"{where}: status of generation {status.get('observedGeneration')},"
                    f" resource at {meta.get('generation')}"
                )
            live_status = live.get("status") or {}
            for field in ("desiredNumberScheduled", "numberReady"):
                if status.get(field) != live_status.get(field, 0):
                    problems.append(
                        f"{where}: {field} {status.get(field)} != {live_status.get(field, 0)}"
                    )
    for ds in daemonsets:
        refs = ds["metadata"].get("ownerReferences") or []
        ours = (
            ds["metadata"]["name"].startswith("intel-")
            and f"-rel-{run}-" in (ds["metadata"]["name"])
        )
        if ours and not any(ref.get("uid") in owners for ref in refs):
            problems.append(f"orphan DaemonSet {ds['metadata']['name']}")
    return problems


def wait_converged(
    api: http.ApiClient, namespace: str, run: str, *, timeout: float = 60.0
) -> tuple[float, list[str]]:
    """Seconds until ``converged`` has nothing to say, and its last words on timeout."""
    started = time.monotonic()
    problems: list[str] = ["not checked"]
    while time.monotonic() - started < timeout:
        try:
            problems = converged(api, namespace, run)
        except cluster_errors.ClusterError as error:
            problems = [str(error)]
        if not problems:
            return time.monotonic() - started, []
        time.sleep(0.1)
    return time.monotonic() - started, problems


def summary(values: Sequence[float]) -> dict[str, float]:
    return {
        "count": len(values),
        "median_s": round(statistics.median(values), 3) if values else 0.0,
        "max_s": round(max(values), 3) if values else 0.0,
    }


def run_id() -> str:
    return uuid.uuid4().hex[:6]


def report(name: str, figures: dict[str, Any]) -> pathlib.Path:
    """Write a scenario's figures where docs/reliability.md says (git-ignored)."""
    directory = pathlib.Path(os.environ.get("RELIABILITY_RESULTS", ROOT / ".reliability"))
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.json"
    path.write_text(json.dumps(figures, indent=2, sort_keys=True))
    print(f"\n{name}: {json.dumps(figures, sort_keys=True)}")
    return path
