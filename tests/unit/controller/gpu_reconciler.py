"""What the reconciler tests share (most are about one GpuDevicePlugin): the kind, its
resource, the plugin namespace, the settings, and caches that are never started (a test
fills their stores)."""

from __future__ import annotations

import copy
from typing import Any

import fakes
from deviceplugin_operator import devices, settings
from deviceplugin_operator.controller import events, informer, reconciler
from deviceplugin_operator.kube import resources

GPU = devices.KINDS["gpu"]
GPU_PLUGINS = resources.Resource.of(
    GPU.resource.api_version, GPU.kind, GPU.plural, namespaced=False
)
NAMESPACE = "plugins"
CONFIG = settings.Settings(plugin_namespace=NAMESPACE, devices=("gpu",))
WRITE_AT_ONCE = {"status_interval": 0.0, "progress_interval": 0.0}
"""Reconciler options for a status written by each reconcile that changes it, no interval
held (the intervals themselves: test_status_coalescing)."""


def plugins_of(kind: devices.DeviceKind[Any]) -> resources.Resource:
    return resources.Resource.of(
        kind.resource.api_version, kind.kind, kind.plural, namespaced=False
    )


def caches(kube: fakes.FakeKubeClient, kind: devices.DeviceKind[Any] = GPU) -> reconciler.Caches:
    """Informers that are never started: the test fills their stores by hand."""
    return reconciler.Caches(
        plugins=informer.Informer(kube, plugins_of(kind)),
        daemonsets=informer.Informer(
            kube,
            resources.DAEMON_SETS,
            namespace=NAMESPACE,
            indexers=reconciler.DAEMONSET_INDEXERS,
        ),
        pods=informer.Informer(
            kube, resources.PODS, namespace=NAMESPACE, indexers=reconciler.POD_INDEXERS
        ),
        nodes=informer.Informer(kube, resources.NODES),
    )


async def one_gpu_resource(
    **options: Any,
) -> tuple[fakes.FakeKubeClient, reconciler.Caches, reconciler.Reconciler]:
    """GpuDevicePlugin ``a`` stored and cached, and a GPU Reconciler built with ``options``
    (e.g. ``status_interval``, ``clock``, ``monotonic``)."""
    kube = fakes.FakeKubeClient()
    stored = await kube.create(GPU_PLUGINS, {"metadata": {"name": "a"}, "spec": {}})
    cached = caches(kube)
    cached.plugins.store.upsert(copy.deepcopy(stored))
    rec = reconciler.Reconciler(
        GPU, CONFIG, kube, cached, recorder=events.Recorder(kube), **options
    )
    return kube, cached, rec
