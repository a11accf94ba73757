"""Events an install's RBAC refuses are dropped with one warning per namespace, never an
error loop (the reference operator's RBAC grants Events only in its own namespace, not in
``default`` where those of cluster-scoped resources live)."""

from __future__ import annotations

import asyncio
import logging

import pytest

from deviceplugin_operator.controller import events
from deviceplugin_operator.kube import errors, resources
from fakes import FakeKubeClient

PLUGIN = {
    "apiVersion": "deviceplugin.intel.com/v1",
    "kind": "GpuDevicePlugin",
    "metadata": {"name": "gpu", "uid": "u-1"},
}


async def test_refused_events_are_logged_once_and_recording_resumes_when_granted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    kube = FakeKubeClient()
    denied = errors.Forbidden(
        403, "Forbidden", 'events is forbidden: User "x" cannot create resource "events"'
    )
    kube.fail("create", denied, times=3)
    recorder = events.Recorder(kube)
    with caplog.at_level(logging.DEBUG, logger=events.__name__):
        for number in range(3):
            recorder.normal(PLUGIN, "Created", f"created {number}")
            await recorder.flush()
        recorder.normal(PLUGIN, "Updated", "granted now")
        await recorder.flush()
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert [r.getMessage() for r in warnings] == [
        "Events cannot be recorded in namespace default: RBAC does not let the operator "
        "create them there; they are dropped (nothing else is affected) and further refusals "
        "are not logged. Grant create and patch on events in default to record them"
    ]
    (stored,) = kube.stored(resources.EVENTS)
    assert (stored["metadata"]["namespace"], stored["reason"]) == ("default", "Updated")


async def test_other_failures_are_still_logged_each_time(caplog: pytest.LogCaptureFixture) -> None:
    kube = FakeKubeClient()
    kube.fail("create", errors.ApiError(500, "InternalError", "etcd"), times=2)
    recorder = events.Recorder(kube)
    with caplog.at_level(logging.WARNING, logger=events.__name__):
        for _ in range(2):
            recorder.normal(PLUGIN, "Created", "x")
            await recorder.flush()
    assert [r.getMessage() for r in caplog.records] == ["Recording an event failed"] * 2


async def test_an_event_is_created_after_its_delay_with_the_time_of_the_change() -> None:
    kube = FakeKubeClient()
    recorder = events.Recorder(kube, delay=0.2)
    recorder.normal(PLUGIN, "Updated", "Updated DaemonSet x")
    stamped = recorder._waiting[0][1]["firstTimestamp"]
    await asyncio.sleep(0.05)
    assert kube.stored(resources.EVENTS) == []  # not in the milliseconds after the change
    await asyncio.sleep(0.3)
    await asyncio.gather(*recorder._pending)
    (stored,) = kube.stored(resources.EVENTS)
    assert (stored["reason"], stored["firstTimestamp"]) == ("Updated", stamped)


async def test_flush_creates_the_waiting_events_at_once() -> None:
    kube = FakeKubeClient()
    recorder = events.Recorder(kube, delay=3600)
    recorder.normal(PLUGIN, "Created", "Created DaemonSet x")
    recorder.warning(PLUGIN, "ImageUpgraded", "y")
    await asyncio.wait_for(recorder.flush(), 5)
    reasons = sorted(e["reason"] for e in kube.stored(resources.EVENTS))
    assert reasons == ["Created", "ImageUpgraded"]
    await recorder.flush()  # nothing left waiting: the cancelled timers never fire
    assert len(kube.stored(resources.EVENTS)) == 2
