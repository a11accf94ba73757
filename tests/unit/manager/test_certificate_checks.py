"""The periodic check of the self-managed webhook certificate never stops for good: a check
that fails, with an API error or anything unexpected, is logged and the next one runs."""

from __future__ import annotations

import asyncio
import logging

import pytest

from deviceplugin_operator import manager
from deviceplugin_operator.kube import errors
from deviceplugin_operator.manager import webhook_certificates
from fakes import FakeKubeClient


async def test_checks_go_on_after_a_failed_and_a_crashed_check(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    keeper = webhook_certificates.WebhookCertificates(
        FakeKubeClient(), manager.Options(certificate_check_period=0.01)
    )
    outcomes: list[BaseException | None] = [
        errors.KubeError("apiserver unavailable"),
        ValueError("a stored pair that does not match"),
        None,
    ]
    done = asyncio.Event()
    calls = 0

    async def refresh() -> None:
        nonlocal calls
        calls += 1
        outcome = outcomes[min(calls, len(outcomes)) - 1]
        if outcome is not None:
            raise outcome
        done.set()

    monkeypatch.setattr(keeper, "refresh", refresh)
    caplog.set_level(logging.WARNING, logger=webhook_certificates.__name__)
    task = asyncio.create_task(keeper._keep())
    try:
        await asyncio.wait_for(done.wait(), timeout=5)
    finally:
        task.cancel()
    assert calls >= 3
    messages = [record.getMessage() for record in caplog.records]
    assert "Checking the webhook certificate failed" in messages
    assert "Checking the webhook certificate crashed" in messages
