"""A resource the validating webhook would refuse is not rendered (issue 14, point 7).

CRDs are installed for every kind but webhooks only for the enabled ones, and a resource may
predate its webhook: what is stored may never have been validated. A foreign plugin image or
init image runs privileged on every selected node, so the reconciler applies the webhook's
checks itself, reports ``Degraded/InvalidSpec`` with the webhook's message, never creates a
DaemonSet from such a spec and leaves an existing one as it is.
"""

from __future__ import annotations

import copy
from typing import Any

import gpu_reconciler
import pytest

import fakes
from deviceplugin_operator import devices, manager, settings
from deviceplugin_operator.admission import errors, rules
from deviceplugin_operator.controller import events, reconciler
from deviceplugin_operator.kube import resources

NAMESPACE = "plugins"
CONFIG = settings.Settings(plugin_namespace=NAMESPACE, devices=tuple(devices.KINDS))


plugins_of = gpu_reconciler.plugins_of


async def stored_and_cached(
    kind: devices.DeviceKind[Any], spec: dict[str, Any], **options: Any
) -> tuple[fakes.FakeKubeClient, reconciler.Caches, reconciler.Reconciler]:
    kube = fakes.FakeKubeClient()
    stored = await kube.create(plugins_of(kind), {"metadata": {"name": "a"}, "spec": spec})
    caches = gpu_reconciler.caches(kube, kind)
    caches.plugins.store.upsert(copy.deepcopy(stored))
    kube.reset_counts()
    rec = reconciler.Reconciler(
        kind,
        CONFIG,
        kube,
        caches,
        recorder=events.Recorder(kube),
        **gpu_reconciler.WRITE_AT_ONCE,
        **options,
    )
    return kube, caches, rec


def webhook_denial(kind: devices.DeviceKind[Any], spec: dict[str, Any], **options: Any) -> str:
    """What the validating webhook answers for ``spec`` (after defaulting)."""
    obj = {"metadata": {"name": "a"}, "spec": {"image": kind.default_image, **spec}}
    with pytest.raises(errors.Rejected) as rejected:
        rules.validate(kind, obj, **options)
    return rejected.value.message


async def degraded(kube: fakes.FakeKubeClient, kind: devices.DeviceKind[Any]) -> dict[str, Any]:
    stored = await kube.get(plugins_of(kind), "a")
    (condition,) = [c for c in stored["status"]["conditions"] if c["type"] == "Degraded"]
    return dict(condition)


FOREIGN = {
    "gpu": {"image": "evil.example.com/miner:1.0"},
    "sgx": {
        "image": "intel/intel-sgx-plugin:0.36.0",
        "initImage": "evil.example.com/privileged-tool:1.0",
    },
    "qat": {
        "image": "intel/intel-qat-plugin:0.36.0",
        "initImage": "docker.io/library/busybox:1.36",
    },
    "dsa": {"image": "intel/evil-intel-dsa-plugin@sha256:" + "0" * 64},
}


@pytest.mark.parametrize(("name", "spec"), sorted(FOREIGN.items()))
async def test_a_spec_the_webhook_refuses_creates_no_daemonset(
    name: str, spec: dict[str, Any]
) -> None:
    kind = devices.KINDS[name]
    kube, _, rec = await stored_and_cached(kind, spec)

    await rec.reconcile("a")

    assert kube.stored(resources.DAEMON_SETS) == []
    assert kube.requests["create"] == 0
    condition = await degraded(kube, kind)
    assert (condition["status"], condition["reason"]) == ("True", "InvalidSpec")
    assert condition["message"].startswith(webhook_denial(kind, spec) + ": "), condition
    assert "no DaemonSet is created" in condition["message"]


async def test_an_existing_daemonset_is_left_as_it_is_and_the_condition_says_so() -> None:
    kind = devices.KINDS["sgx"]
    kube, caches, rec = await stored_and_cached(kind, {})
    await rec.reconcile("a")
    (made,) = kube.stored(resources.DAEMON_SETS)
    caches.daemonsets.store.upsert(copy.deepcopy(made))

    # The spec changes behind the webhook's back: a privileged init image of someone else.
    resource = await kube.get(plugins_of(kind), "a")
    resource["spec"] = FOREIGN["sgx"]
    changed = await kube.replace(plugins_of(kind), "a", resource)
    caches.plugins.store.upsert(copy.deepcopy(changed))
    kube.reset_counts()
    await rec.reconcile("a")

    assert kube.stored(resources.DAEMON_SETS) == [made]
    assert kube.requests["replace"] == kube.requests["create"] == kube.requests["delete"] == 0
    condition = await degraded(kube, kind)
    assert condition["reason"] == "InvalidSpec"
    assert condition["message"] == (
        f"{webhook_denial(kind, FOREIGN['sgx'])}: the DaemonSet {NAMESPACE}/"
        f"{made['metadata']['name']} is left as it is until the spec is fixed"
    )
    stored = await kube.get(plugins_of(kind), "a")
    assert stored["status"]["controlledDaemonSet"]["name"] == made["metadata"]["name"]


async def test_images_below_the_minimum_are_still_raised_not_refused() -> None:
    # The webhook refuses such a version, but the reconciler renders the raised image, which
    # passes: a resource stored under an older operator keeps working as before.
    kind = devices.KINDS["gpu"]
    kube, _, rec = await stored_and_cached(kind, {"image": "intel/intel-gpu-plugin:0.26.0"})
    await rec.reconcile("a")
    assert len(kube.stored(resources.DAEMON_SETS)) == 1
    assert (await degraded(kube, kind))["reason"] == "AsExpected"


async def test_the_registry_allow_list_applies_too() -> None:
    kind = devices.KINDS["gpu"]
    spec = {"image": "evil.example.com/intel/intel-gpu-plugin:0.36.0"}
    allowed = ("docker.io/intel",)
    kube, _, rec = await stored_and_cached(kind, spec, allowed_registries=allowed)
    await rec.reconcile("a")
    assert kube.stored(resources.DAEMON_SETS) == []
    condition = await degraded(kube, kind)
    assert condition["reason"] == "InvalidSpec"
    assert condition["message"].startswith(
        webhook_denial(kind, spec, allowed_registries=allowed) + ": "
    )


async def test_a_spec_the_model_refuses_reports_the_webhooks_message() -> None:
    kind = devices.KINDS["gpu"]
    spec = {"sharedDevNum": 0}
    kube, _, rec = await stored_and_cached(kind, spec)
    await rec.reconcile("a")
    assert kube.stored(resources.DAEMON_SETS) == []
    condition = await degraded(kube, kind)
    assert condition["reason"] == "InvalidSpec"
    assert condition["message"].startswith(webhook_denial(kind, spec) + ": ")


def test_the_manager_gives_each_reconciler_the_webhooks_allow_list() -> None:
    options = manager.Options(
        health_probe_bind_address="0", webhook_port=0, allowed_image_registries=("docker.io/intel",)
    )
    mgr = manager.Manager(CONFIG, options, fakes.FakeKubeClient())
    assert mgr.controllers
    assert all(c.reconciler.allowed_registries == ("docker.io/intel",) for c in mgr.controllers)
