"""The spec checks shared by the validating webhook and the reconciler (their words are
tested through the webhook in tests/unit/admission/test_rules.py)."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from deviceplugin_operator import devices
from deviceplugin_operator.admission import errors, rules
from deviceplugin_operator.reconcile import validation


@settings(max_examples=200, deadline=None)
@given(tag=st.text(max_size=20), name=st.sampled_from(["intel-gpu-plugin", "other"]))
def test_image_check_raises_nothing_but_invalid(tag: str, name: str) -> None:
    with contextlib.suppress(validation.Invalid):
        validation.check_image(f"reg/{name}:{tag}", "intel-gpu-plugin")


@pytest.mark.parametrize(
    "spec",
    [
        {"image": "evil.example.com/miner:1.0"},
        {"image": "intel/intel-gpu-plugin:0.36.0", "sharedDevNum": 0},
        {"image": "intel/intel-gpu-plugin:0.36.0", "allowIDs": "0x1,"},
        {"image": "intel/intel-gpu-plugin:latest"},
    ],
)
def test_the_webhook_denies_with_the_message_of_the_shared_check(spec: dict[str, str]) -> None:
    kind = devices.KINDS["gpu"]
    obj = {"metadata": {"name": "a"}, "spec": spec}
    with pytest.raises(validation.Invalid) as invalid:
        validation.check(kind, validation.parse(kind, obj))
    with pytest.raises(errors.Rejected) as rejected:
        rules.validate(kind, obj)
    assert rejected.value.message == invalid.value.message
    assert rejected.value.code == 403


def test_an_image_verdict_is_the_same_when_it_is_asked_again() -> None:
    """Verdicts are kept per image (every review and reconcile checks the same few again):
    a refused image stays refused with its message, an accepted one accepted."""
    bad = "intel/intel-gpu-plugin:0.1.0"
    messages = []
    for _ in range(2):
        with pytest.raises(validation.Invalid) as refused:
            validation.check_image(bad, "intel-gpu-plugin")
        messages.append(refused.value.message)
    assert messages[0] == messages[1]
    assert "too low" in messages[0]
    for _ in range(2):
        validation.check_image("intel/intel-gpu-plugin:0.36.0", "intel-gpu-plugin")
    with pytest.raises(validation.Invalid, match="incorrect image name"):
        validation.check_image("intel/intel-gpu-plugin:0.36.0", "intel-qat-plugin")
