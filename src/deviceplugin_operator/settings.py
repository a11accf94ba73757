"""Operator settings: built once by cli.py from flags and environment, then passed explicitly.

Nothing below cli.py reads ``os.environ``; every decision that depends on the deployment (where
the plugin DaemonSets live, which pull secret they use, which image digests OLM pinned) arrives
through these frozen values.
"""

from __future__ import annotations

import dataclasses
import types
from collections.abc import Mapping


def _no_overrides() -> Mapping[str, str]:
    return types.MappingProxyType({})


@dataclasses.dataclass(frozen=True)
class Settings:
    """What the reconcilers need to know about the deployment."""

    plugin_namespace: str = "kube-system"
    """Namespace of the plugin DaemonSets (``--deviceplugin-namespace``, overridden by a non-empty
    ``DEVICEPLUGIN_NAMESPACE``)."""

    image_pull_secret: str | None = None
    """Name of an image pull secret in ``plugin_namespace`` that every plugin pod references
    (``DEVICEPLUGIN_SECRET``); None for no secret. The operator neither creates nor copies it."""

    image_overrides: Mapping[str, str] = dataclasses.field(default_factory=_no_overrides)
    """Pinned image references keyed by environment variable name, e.g.
    ``{"INTEL_GPU_PLUGIN_SHA": "docker.io/intel/intel-gpu-plugin@sha256:..."}``: the non-empty
    ``<IMAGE>_SHA`` variables that OLM bundles inject. See ``reconcile.images`` for the policy."""

    devices: tuple[str, ...] = ()
    """Names of the device kinds whose controllers run, in start order (``--devices``). cli.py
    validates them against ``devices.KINDS`` and fills in every kind when the flag is absent; the
    empty default means no controllers, which suits code that only renders objects."""

    plugin_service_account: str | None = None
    """ServiceAccount the plugin pods run as, with ``automountServiceAccountToken: false``
    (``--plugin-service-account``; the install creates one without any RBAC). None keeps the
    reference's behaviour: the namespace's ``default`` account."""
