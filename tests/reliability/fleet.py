"""What the reliability scenarios share: resource churn, the check that the cluster converged to
exactly what the resources ask for, and the scenarios' figures. The operator processes are
``tests/operators.py``'s.

``converged`` is the judge of "nothing lost": for every resource of the run, exactly one
DaemonSet owned by it (by UID), equal on every rendered field to what the renderer makes of
the resource's current spec, and a status computed from the current generation that agrees
with the DaemonSet's counts; and no DaemonSet of the run whose owner is gone. Its positive
control: the resources it checked must be exactly those the churn says exist (so a list that
silently came back empty, or a churn whose writes all failed, cannot pass), and the churn
counts every write the API server refused, failing the scenario on any it did not expect.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import os
import pathlib
import random
import statistics
import threading
import time
import uuid
from collections.abc import Collection, Sequence
from typing import Any

import yaml

import operators
from deviceplugin_operator import devices, settings
from deviceplugin_operator.reconcile import daemonset, drift
from localcluster import errors as cluster_errors
from localcluster import http

ROOT = pathlib.Path(__file__).resolve().parents[2]
SAMPLES = ROOT / "deployments" / "operator" / "samples"
RUN_LABEL = "reliability.test/run"
GROUP_PATH = "/apis/deviceplugin.intel.com/v1"


# The operators' logs, read as the scenarios (and the compatibility suite) do.
log_records = operators.log_records
tracebacks = operators.tracebacks


def int_env(name: str, default: int) -> int:
    """A size knob: ``name`` from the environment (nightly runs), else ``default``."""
    return int(os.environ.get(name) or default)


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


# Resource churn --------------------------------------------------------------------------------
Key = tuple[str, str]
"""(kind name, resource name), e.g. ("gpu", "rel-abc123-0")."""

EXPECTED_REFUSALS: dict[tuple[str, int], str] = {
    ("delete", 404): "deleting a name of the pool that does not exist",
    ("update", 409): "the operator wrote the status between the churn's read and its write",
}
"""What the API server may answer a write of the churn in any scenario, and why."""

OUTAGE = 0
"""The status recorded for a request that got no answer (the API server down)."""


@dataclasses.dataclass
class Churn:
    """Creates, updates and deletes resources of every kind from a small pool of names, from
    a thread, until stopped.

    Every answer is counted by (action, status). Refusals in ``EXPECTED_REFUSALS`` are normal;
    with ``outages`` (a scenario that stops the API server) requests without an answer, 429 and
    5xx are too; anything else is ``unexpected`` and fails the scenario. ``exists`` is what the
    churn knows it left: a name whose last write got no answer is ``uncertain`` until a later
    step on it (or ``expected``) finds out.
    """

    api: http.ApiClient
    run: str
    names_per_kind: int = 2
    seed: int = 0
    outages: bool = False
    operations: int = 0
    """Writes the API server carried out."""
    outcomes: collections.Counter[tuple[str, int]] = dataclasses.field(
        default_factory=collections.Counter
    )
    unexpected: list[str] = dataclasses.field(default_factory=list)
    exists: set[Key] = dataclasses.field(default_factory=set)
    uncertain: set[Key] = dataclasses.field(default_factory=set)
    _lock: threading.Lock = dataclasses.field(default_factory=threading.Lock)
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

    @property
    def failures(self) -> int:
        """Writes not carried out (expected or not)."""
        return sum(
            n
            for (action, status), n in self.outcomes.items()
            if status not in (200, 201, 202) and action != "resolved-by-get"
        )

    def _tolerated(self, action: str, status: int) -> bool:
        if (action, status) in EXPECTED_REFUSALS:
            return True
        return self.outages and (status in (OUTAGE, 429) or status >= 500)

    def _record(self, key: Key, action: str, status: int, answer: bytes = b"") -> None:
        with self._lock:
            self.outcomes[(action, status)] += 1
            if status in (200, 201, 202):
                self.operations += 1
                self.uncertain.discard(key)
                (self.exists.discard if action == "delete" else self.exists.add)(key)
            elif action == "delete" and status == 404:
                self.uncertain.discard(key)
                self.exists.discard(key)
            elif status == OUTAGE or status >= 500:
                self.uncertain.add(key)  # it may have been carried out
            if status not in (200, 201, 202) and not self._tolerated(action, status):
                self.unexpected.append(
                    f"{action} {key[0]}/{key[1]}: {status or 'no answer'} {answer[:200]!r}"
                )

    def step(self, rng: random.Random) -> None:
        kind, name = rng.choice(self.pool())
        key = (kind.name, name)
        action = rng.choices(("create", "update", "delete"), weights=(4, 4, 2))[0]
        try:
            if action == "delete":
                status, answer = self.api.request("DELETE", plural_path(kind, name))
            else:
                current = self.api.get(plural_path(kind, name))
                body = self.body(kind, name, rng)
                if current is None:
                    with self._lock:
                        self.uncertain.discard(key)
                        self.exists.discard(key)
                    action = "create"
                    status, answer = self.api.request("POST", plural_path(kind), body)
                else:
                    with self._lock:
                        self.uncertain.discard(key)
                        self.exists.add(key)
                    action = "update"
                    body["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
                    status, answer = self.api.request("PUT", plural_path(kind, name), body)
        except cluster_errors.ClusterError as error:
            # No answer, or an answer to the read other than 200/404.
            status, answer = OUTAGE, str(error).encode()
        self._record(key, action, status, answer)

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

    def expected(self) -> set[Key]:
        """The resources that exist by the churn's own account (call while paused). A name
        whose last write got no answer is looked up (counted in ``figures``)."""
        with self._lock:
            uncertain = sorted(self.uncertain)
        kinds = {kind.name: kind for kind in devices.KINDS.values()}
        for key in uncertain:
            found = self.api.get(plural_path(kinds[key[0]], key[1]))
            with self._lock:
                self.outcomes[("resolved-by-get", 200 if found else 404)] += 1
                self.uncertain.discard(key)
                (self.exists.add if found else self.exists.discard)(key)
        with self._lock:
            return set(self.exists)

    def figures(self) -> dict[str, Any]:
        """Writes carried out, refusals by (action, status) and why they were expected."""
        refused = {
            f"{action} {status or 'no answer'}": count
            for (action, status), count in sorted(self.outcomes.items())
            if status not in (200, 201, 202) and action != "resolved-by-get"
        }
        resolved = {
            "found" if status == 200 else "not found": count
            for (action, status), count in sorted(self.outcomes.items())
            if action == "resolved-by-get"
        }
        return {
            "writes_carried_out": self.operations,
            "writes_refused_or_unanswered": refused,
            "unanswered_writes_looked_up": resolved,
            "unexpected": len(self.unexpected),
        }

    def assert_no_unexpected_failures(self) -> None:
        assert not self.unexpected, (
            f"{len(self.unexpected)} writes of the churn failed unexpectedly: "
            f"{self.unexpected[:10]}"
        )


# The judge -------------------------------------------------------------------------------------
def _items(api: http.ApiClient, path: str) -> list[dict[str, Any]]:
    """The items of a list, with the kind and apiVersion that list items leave out. A list
    that does not exist (404: a CRD missing) is an error, never an empty list."""
    found = api.get(path)
    if found is None:
        raise cluster_errors.ClusterError(f"GET {path} answered 404: nothing to list")
    kind = str(found.get("kind", "")).removesuffix("List")
    return [
        {"apiVersion": found.get("apiVersion"), "kind": kind, **item}
        for item in found.get("items") or []
    ]


def check(api: http.ApiClient, namespace: str, run: str) -> tuple[set[Key], list[str]]:
    """(the run's resources checked, what is still wrong with them and their DaemonSets)."""
    problems: list[str] = []
    checked: set[Key] = set()
    config = settings.Settings(plugin_namespace=namespace, devices=tuple(devices.KINDS))
    daemonsets = _items(api, f"/apis/apps/v1/namespaces/{namespace}/daemonsets")
    owners: set[str] = set()
    for kind in devices.KINDS.values():
        for resource in _items(api, f"{plural_path(kind)}?labelSelector={RUN_LABEL}%3D{run}"):
            meta = resource["metadata"]
            if meta.get("deletionTimestamp"):
                continue
            checked.add((kind.name, meta["name"]))
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
    return checked, problems


def converged(
    api: http.ApiClient, namespace: str, run: str, expected: Collection[Key]
) -> list[str]:
    """What is still wrong (empty once the cluster is exactly what the run's resources ask),
    the resources checked being exactly ``expected`` (what the churn says exists)."""
    checked, problems = check(api, namespace, run)
    missing, extra = set(expected) - checked, checked - set(expected)
    if missing or extra:
        problems.append(
            f"checked {len(checked)} resources, the churn says {len(expected)} exist: "
            f"not found {sorted(missing)[:5]}, not expected {sorted(extra)[:5]}"
        )
    return problems


@dataclasses.dataclass(frozen=True)
class Convergence:
    seconds: float
    problems: list[str]
    checked: int
    """Resources the last check looked at (== the churn's count once converged)."""


def wait_converged(
    api: http.ApiClient,
    namespace: str,
    run: str,
    *,
    expected: Collection[Key],
    allow_none: bool = False,
    timeout: float = 60.0,
) -> Convergence:
    """Until ``converged`` has nothing to say (its last words on timeout). Unless
    ``allow_none`` (everything deleted on purpose), ``expected`` must not be empty: a check
    of nothing proves nothing."""
    assert expected or allow_none, "the churn left no resource: there is nothing to check"
    started = time.monotonic()
    problems: list[str] = ["not checked"]
    while time.monotonic() - started < timeout:
        try:
            problems = converged(api, namespace, run, expected)
        except cluster_errors.ClusterError as error:
            problems = [str(error)]
        if not problems:
            return Convergence(time.monotonic() - started, [], len(expected))
        time.sleep(0.1)
    return Convergence(time.monotonic() - started, problems, len(expected))


def summary(values: Sequence[float]) -> dict[str, float]:
    """count, median and max of durations in seconds (rounded to ms)."""
    return {
        "count": len(values),
        "median_s": round(statistics.median(values), 3) if values else 0.0,
        "max_s": round(max(values), 3) if values else 0.0,
    }


def run_id() -> str:
    return uuid.uuid4().hex[:6]


def results_dir() -> pathlib.Path:
    """Where the scenarios' figures go (``RELIABILITY_RESULTS``, default ``.reliability/``)."""
    directory = pathlib.Path(os.environ.get("RELIABILITY_RESULTS", ROOT / ".reliability"))
    directory.mkdir(parents=True, exist_ok=True)
    return directory


def report(name: str, figures: dict[str, Any]) -> pathlib.Path:
    """Write a scenario's figures where docs/reliability.md says (git-ignored) and print them
    (``pytest -s`` shows them)."""
    path = results_dir() / f"{name}.json"
    path.write_text(json.dumps(figures, indent=2, sort_keys=True))
    print(f"\n{name}: {json.dumps(figures, sort_keys=True)}")
    return path
