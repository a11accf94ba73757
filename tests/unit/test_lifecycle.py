"""``deviceplugin-operator lifecycle check-admission``: what it waits for, what it reports (a
scripted client; tests/envtest/test_helm.py and tests/e2e/test_helm_install.py run the steps
against real API servers)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from deviceplugin_operator import devices
from deviceplugin_operator.kube import errors
from deviceplugin_operator.manifests import lifecycle


class Scripted:
    """Answers each dry-run create with the next scripted outcome."""

    def __init__(self, *outcomes: Any) -> None:
        self.outcomes = list(outcomes)
        self.created: list[tuple[str, bool]] = []

    async def create(self, resource: Any, body: Any, namespace: Any = None, **options: Any) -> Any:
        self.created.append((body["kind"], options.get("dry_run", False)))
        outcome = self.outcomes.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome


REFUSED = errors.ApiError(
    500,
    "InternalError",
    'Internal error occurred: failed calling webhook "mgpudeviceplugin.kb.io": ... connect: '
    "connection refused",
)


def check(client: Scripted, kinds: list[str], timeout: float = 5.0) -> list[str]:
    lines: list[str] = []
    asyncio.run(
        lifecycle.check_admission(
            client,  # type: ignore[arg-type]
            kinds,
            timeout=timeout,
            echo=lines.append,
            interval=0.01,
        )
    )
    return lines


def defaulted(kind: str) -> dict[str, Any]:
    return {"spec": {"image": devices.KINDS[kind].default_image}}


def test_waits_through_refused_connections_until_admitted() -> None:
    client = Scripted(errors.TransportError("reset"), REFUSED, REFUSED, defaulted("gpu"))
    lines = check(client, ["gpu"])
    assert client.created == [("GpuDevicePlugin", True)] * 4, "every create is a dry run"
    assert lines == [
        "GpuDevicePlugin: waiting for the admission webhooks: reset",
        f"GpuDevicePlugin: waiting for the admission webhooks: {REFUSED.message}",
        "GpuDevicePlugin: admitted by the webhooks (server-side dry run)",
    ]


def test_a_denial_is_an_answer() -> None:
    denied = errors.Forbidden(
        403, "Forbidden", 'admission webhook "vqat" denied the request: image not allowed'
    )
    lines = check(Scripted(denied, defaulted("gpu")), ["qat", "gpu"])
    assert lines[0].startswith("QatDevicePlugin: admission webhooks answer (denied: ")
    assert lines[1] == "GpuDevicePlugin: admitted by the webhooks (server-side dry run)"


@pytest.mark.parametrize(
    ("outcome", "message"),
    [
        (
            errors.Forbidden(403, "Forbidden", "cannot create resource"),
            "needs create on gpudeviceplugins.deviceplugin.intel.com",
        ),
        ({"spec": {}}, "admitted without the defaulting webhook"),
    ],
)
def test_fails_at_once_naming_the_fix(outcome: Any, message: str) -> None:
    with pytest.raises(lifecycle.StepError, match=message):
        check(Scripted(outcome), ["gpu"])


def test_gives_up_at_the_timeout_with_the_last_reason() -> None:
    client = Scripted(*[REFUSED] * 1000)
    with pytest.raises(lifecycle.StepError, match=r"did not answer within 0s .*connection refused"):
        check(client, ["gpu"], timeout=0.05)


class Namespace:
    """Pods that go away after a few lists; deletions recorded, absent names answer 404."""

    def __init__(self, lists_with_pods: int, present: set[str]) -> None:
        self.lists_with_pods = lists_with_pods
        self.present = present
        self.deleted: list[tuple[str, str]] = []

    async def list(self, resource: Any, namespace: Any = None, **options: Any) -> Any:
        assert options == {"label_selector": "control-plane=controller-manager"}
        pods = [{"metadata": {"name": "manager"}}] if self.lists_with_pods > 0 else []
        self.lists_with_pods -= 1
        return type("Listed", (), {"items": pods})()

    async def delete(self, resource: Any, name: str, namespace: Any = None) -> Any:
        if name not in self.present:
            raise errors.NotFound(404, "NotFound", f"{name} not found")
        assert self.lists_with_pods < 0, "deleted while an operator pod could write it again"
        self.deleted.append((resource.kind, name))
        return {}


def clean(namespace: Namespace, timeout: float = 10.0) -> list[str]:
    lines: list[str] = []
    asyncio.run(
        lifecycle.cleanup(
            namespace,  # type: ignore[arg-type]
            "ns",
            selector="control-plane=controller-manager",
            secrets=["cert"],
            leases=["lease", "gone"],
            timeout=timeout,
            echo=lines.append,
        )
    )
    return lines


def test_cleanup_waits_for_the_operator_pods_then_deletes_by_name() -> None:
    namespace = Namespace(lists_with_pods=2, present={"cert", "lease"})
    assert clean(namespace) == [
        "secret/cert deleted",
        "lease/lease deleted",
        "lease/gone not found",
    ]
    assert namespace.deleted == [("Secret", "cert"), ("Lease", "lease")]


def test_cleanup_gives_up_while_operator_pods_remain() -> None:
    namespace = Namespace(lists_with_pods=10**6, present={"cert"})
    with pytest.raises(lifecycle.StepError, match="operator pod"):
        clean(namespace, timeout=0.0)
    assert namespace.deleted == []
