"""Settings: defaults and immutability."""

from __future__ import annotations

import dataclasses

import pytest

from deviceplugin_operator.settings import Settings


def test_defaults() -> None:
    settings = Settings()
    assert settings.plugin_namespace == "kube-system"
    assert settings.image_pull_secret is None
    assert dict(settings.image_overrides) == {}
    assert settings.devices == ()


def test_frozen() -> None:
    settings = Settings()
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.plugin_namespace = "x"  # type: ignore[misc]
    with pytest.raises(TypeError):
        settings.image_overrides["X_SHA"] = "y"  # type: ignore[index]
