"""Helpers of reliability scenarios 4-7 (overload, webhook faults, fuzzing, security checks).

An operator here is the real command (``deviceplugin-operator run``) in a child process with its
log in a file, so that a crash, a traceback or a leaked secret is seen exactly as it would be in
a pod. Webhook configurations point at it by URL (``https://127.0.0.1:<port>``) under a prefix of
the test's own, so that the operator's self-managed certificates fill in their CA bundle, and are
always removed again: with ``failurePolicy: Fail`` a forgotten one would block every later
creation of a device-plugin resource in the shared control plane.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import json
import os
import pathlib
import signal
import ssl
import statistics
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from clusters import TestCluster
from deviceplugin_operator import devices
from deviceplugin_operator.manifests import webhooks
from localcluster import processes
from polling import eventually

ROOT = pathlib.Path(__file__).resolve().parents[2]
OPERATOR = ROOT / ".venv" / "bin" / "deviceplugin-operator"
CRDS = ROOT / "deployments/operator/crd/bases"
GROUP_PATH = "/apis/deviceplugin.intel.com/v1"


def results_dir() -> pathlib.Path:
    """Where the scenarios' figures go (``RELIABILITY_RESULTS``, default ``.reliability/``)."""
    directory = pathlib.Path(os.environ.get("RELIABILITY_RESULTS", ROOT / ".reliability"))
    directory.mkdir(parents=True, exist_ok=True)
    return directory


def report(name: str, figures: dict[str, Any]) -> None:
    """Write a scenario's figures as JSON and print them (``pytest -s`` shows them)."""
    (results_dir() / f"{name}.json").write_text(json.dumps(figures, indent=2, sort_keys=True))
    print(f"\n{name}: {json.dumps(figures, sort_keys=True)}")


def summary(values: Sequence[float]) -> dict[str, float]:
    """count, median and max of durations in seconds (rounded to ms)."""
    return {
        "count": len(values),
        "median_s": round(statistics.median(values), 3) if values else 0.0,
        "max_s": round(max(values), 3) if values else 0.0,
    }


def int_env(name: str, default: int) -> int:
    """A size knob: ``name`` from the environment (nightly runs), else ``default``."""
    return int(os.environ.get(name) or default)


def plural_path(kind: devices.DeviceKind[Any], name: str | None = None) -> str:
    return f"{GROUP_PATH}/{kind.plural}" + (f"/{name}" if name else "")


def unverified_context() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


# The operator process -------------------------------------------------------------------------
@dataclasses.dataclass
class Operator:
    popen: subprocess.Popen[bytes]
    log: pathlib.Path
    argv: list[str]
    env: dict[str, str]
    health_port: int
    metrics_port: int
    webhook_port: int

    @property
    def alive(self) -> bool:
        return self.popen.poll() is None

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def records(self) -> list[dict[str, Any]]:
        found = []
        for line in self.text().splitlines():
            with contextlib.suppress(ValueError):
                record = json.loads(line)
                if isinstance(record, dict):
                    found.append(record)
        return found

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

    def tail(self, lines: int = 30) -> str:
        return "\n".join(self.text().splitlines()[-lines:])

    def kill(self) -> None:
        """kill -9 (only this child, by its pid)."""
        if self.alive:
            self.popen.send_signal(signal.SIGKILL)
        self.popen.wait(timeout=15)

    def terminate(self) -> int | None:
        if self.alive:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()
        return self.popen.returncode

    def restart(self) -> Operator:
        """The same command again (same ports, log appended)."""
        return _spawn(
            self.argv,
            self.env,
            self.log,
            self.health_port,
            self.metrics_port,
            self.webhook_port,
        )


def start_operator(
    kubeconfig: pathlib.Path,
    namespace: str,
    log: pathlib.Path,
    *extra: str,
    device_names: Iterable[str] = (),
    webhook_prefix: str | None = None,
    webhook_secret: str = "rel2-webhook-cert",
    env: dict[str, str] | None = None,
    verbosity: int = 0,
    log_format: str = "json",
) -> Operator:
    """``deviceplugin-operator run`` for ``namespace`` (plugins, operator, certificate Secret).

    With ``webhook_prefix`` the admission server listens on a free loopback port with a
    self-managed certificate for 127.0.0.1 and patches the configurations of that prefix.
    """
    health, metrics = processes.free_port(), processes.free_port()
    webhook = processes.free_port() if webhook_prefix is not None else 0
    argv = [
        str(OPERATOR),
        "run",
        f"--kubeconfig={kubeconfig}",
        f"--deviceplugin-namespace={namespace}",
        f"--operator-namespace={namespace}",
        f"--health-probe-bind-address=127.0.0.1:{health}",
        f"--metrics-bind-address=127.0.0.1:{metrics}",
        f"--webhook-port={webhook}",
        f"--log-format={log_format}",
        f"-v={verbosity}",
        *(f"--devices={name}" for name in device_names),
        *extra,
    ]
    if webhook_prefix is not None:
        argv += [
            "--webhook-host=127.0.0.1",
            "--webhook-cert-hosts=127.0.0.1",
            f"--webhook-cert-dir={log.parent / 'certs'}",
            f"--webhook-secret={webhook_secret}",
            f"--webhook-configuration-prefix={webhook_prefix}",
        ]
    environment = {
        key: value
        for key, value in os.environ.items()
        if key not in ("DEVICEPLUGIN_NAMESPACE", "DEVICEPLUGIN_SECRET", "POD_NAMESPACE")
        and not key.endswith("_SHA")
    }
    environment.update(env or {})
    return _spawn(argv, environment, log, health, metrics, webhook)


def _spawn(
    argv: list[str],
    env: dict[str, str],
    log: pathlib.Path,
    health: int,
    metrics: int,
    webhook: int,
) -> Operator:
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        popen = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=env
        )
    return Operator(popen, log, argv, env, health, metrics, webhook)


# Webhook configurations -------------------------------------------------------------------------
@contextlib.contextmanager
def registered_webhooks(
    cluster: TestCluster,
    port: int,
    prefix: str,
    operator_namespace: str,
    device_names: Iterable[str],
) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    """The operator's webhook configurations for ``device_names`` at 127.0.0.1:``port``,
    without a CA bundle (the operator writes it), removed on exit whatever happened."""

    def url(path: str) -> dict[str, Any]:
        return {"url": f"https://127.0.0.1:{port}{path}"}

    chosen = [devices.KINDS[name] for name in device_names]
    configurations = webhooks.configurations(
        chosen, url, prefix=prefix, operator_namespace=operator_namespace
    )
    try:
        for configuration in configurations:
            cluster.kubectl("apply", "-f", "-", input=json.dumps(configuration))
        yield configurations
    finally:
        cluster.kubectl(
            "delete",
            "mutatingwebhookconfiguration",
            prefix + webhooks.MUTATING_NAME,
            "--ignore-not-found",
            check=False,
        )
        cluster.kubectl(
            "delete",
            "validatingwebhookconfiguration",
            prefix + webhooks.VALIDATING_NAME,
            "--ignore-not-found",
            check=False,
        )


def ca_bundles(cluster: TestCluster, prefix: str) -> set[str]:
    """Every caBundle of the two configurations of ``prefix`` ("" for a missing one)."""
    found: set[str] = set()
    for kind, name in (
        ("mutatingwebhookconfigurations", webhooks.MUTATING_NAME),
        ("validatingwebhookconfigurations", webhooks.VALIDATING_NAME),
    ):
        configuration = cluster.api.get(
            f"/apis/admissionregistration.k8s.io/v1/{kind}/{prefix}{name}"
        )
        for hook in (configuration or {}).get("webhooks") or [{}]:
            found.add(str((hook.get("clientConfig") or {}).get("caBundle") or ""))
    return found


def secret_ca(cluster: TestCluster, namespace: str, name: str) -> str | None:
    secret = cluster.api.get(f"/api/v1/namespaces/{namespace}/secrets/{name}")
    if secret is None:
        return None
    return str((secret.get("data") or {}).get("ca.crt") or "") or None


def bundle_repaired(cluster: TestCluster, namespace: str, secret: str, prefix: str) -> bool:
    """The Secret exists and every webhook of ``prefix`` trusts its CA."""
    ca = secret_ca(cluster, namespace, secret)
    return ca is not None and ca_bundles(cluster, prefix) == {ca}


def wait_webhooks_serving(
    cluster: TestCluster, namespace: str, secret: str, prefix: str, timeout: float = 60
) -> None:
    eventually(
        lambda: bundle_repaired(cluster, namespace, secret, prefix),
        timeout=timeout,
        what="the CA bundle to be written",
    )


# Requests --------------------------------------------------------------------------------------
def create(cluster: TestCluster, path: str, body: Any) -> tuple[int, dict[str, Any]]:
    """POST ``body`` as the admin; (status, decoded answer or {"raw": text})."""
    status, raw = cluster.api.request("POST", path, body, timeout=30)
    try:
        answer = json.loads(raw)
    except ValueError:
        answer = {"raw": raw.decode(errors="replace")}
    return status, answer if isinstance(answer, dict) else {"raw": answer}


def resource(kind: devices.DeviceKind[Any], name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": kind.resource.api_version,
        "kind": kind.kind,
        "metadata": {"name": name, "labels": {"rel2": "true"}},
        "spec": spec,
    }


def delete_resources(cluster: TestCluster, label: str = "rel2=true") -> None:
    """Delete every device-plugin resource carrying ``label`` (they are cluster-scoped)."""
    plurals = ",".join(kind.plural for kind in devices.KINDS.values())
    cluster.kubectl("delete", plurals, "-l", label, "--wait=false", check=False)


def b64(data: bytes | str) -> str:
    return base64.b64encode(data.encode() if isinstance(data, str) else data).decode()


def token_kubeconfig(cluster: TestCluster, token: str, path: pathlib.Path) -> pathlib.Path:
    """A kubeconfig for ``cluster`` that authenticates with a bearer ``token``."""
    state = cluster.cluster.state()
    assert state is not None
    ca = b64((cluster.cluster.pki / "ca.crt").read_bytes())
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": "c", "cluster": {"server": state.server, "certificate-authority-data": ca}}
        ],
        "users": [{"name": "u", "user": {"token": token}}],
        "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
        "current-context": "c",
    }
    path.write_text(json.dumps(config))
    path.chmod(0o600)
    return path


@contextlib.contextmanager
def service_account_operator(
    cluster: TestCluster, namespace: str, directory: pathlib.Path, account: str = "operator"
) -> Iterator[tuple[pathlib.Path, str]]:
    """(kubeconfig, token) of a service account bound to cluster-admin: unlike the admin
    (system:masters) its requests go through API Priority and Fairness like a pod's."""
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
        token = cluster.kubectl(
            "create", "token", account, "-n", namespace, "--duration=1h"
        ).stdout.strip()
        yield token_kubeconfig(cluster, token, directory / f"{account}.kubeconfig"), token
    finally:
        cluster.kubectl("delete", "clusterrolebinding", binding, "--ignore-not-found", check=False)
