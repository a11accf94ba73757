"""What the scenarios with webhooks share (4-7: overload, webhook faults, fuzzing, security
checks): webhook configurations for an operator process, its CA bundles, and single requests.

The operator is the real command (``operators.start_operator`` with ``webhook_prefix``).
Webhook configurations point at it by URL (``https://127.0.0.1:<port>``) under a prefix of the
test's own, so that the operator's self-managed certificates fill in their CA bundle, and are
always removed again: with ``failurePolicy: Fail`` a forgotten one would block every later
creation of a device-plugin resource in the shared control plane.
"""

from __future__ import annotations

import base64
import contextlib
import json
import pathlib
import ssl
from collections.abc import Iterable, Iterator
from typing import Any

from clusters import TestCluster
from deviceplugin_operator import devices
from deviceplugin_operator.manifests import webhooks
from polling import eventually
from reliability import fleet

ROOT = pathlib.Path(__file__).resolve().parents[2]
CRDS = ROOT / "deployments/operator/crd/bases"


def unverified_context() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


plural_path = fleet.plural_path


# Webhook configurations -------------------------------------------------------------------------
@contextlib.contextmanager
def registered_webhooks(
    cluster: TestCluster,
    port: int,
    prefix: str,
    device_names: Iterable[str],
) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    """The operator's webhook configurations for ``device_names`` at 127.0.0.1:``port``,
    without a CA bundle (the operator writes it), removed on exit whatever happened."""

    def url(path: str) -> dict[str, Any]:
        return {"url": f"https://127.0.0.1:{port}{path}"}

    chosen = [devices.KINDS[name] for name in device_names]
    configurations = webhooks.configurations(chosen, url, prefix=prefix)
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
    """The Secret exists and every webhook of ``prefix`` trusts its CA: the bundle holds it
    (after a new CA it also holds the previous one for the overlap, docs/reliability.md)."""
    ca = secret_ca(cluster, namespace, secret)
    if ca is None:
        return False
    wanted = base64.b64decode(ca).strip()
    return all(
        bundle and wanted in base64.b64decode(bundle) for bundle in ca_bundles(cluster, prefix)
    )


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
