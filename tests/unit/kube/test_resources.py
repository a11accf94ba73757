"""Resource paths are the REST paths of the Kubernetes API."""

from __future__ import annotations

import pytest

from deviceplugin_operator.kube import resources


@pytest.mark.parametrize(
    ("resource", "namespace", "name", "subresource", "path"),
    [
        (resources.PODS, None, None, None, "/api/v1/pods"),
        (resources.PODS, "kube-system", None, None, "/api/v1/namespaces/kube-system/pods"),
        (resources.DAEMON_SETS, "ns", "ds", None, "/apis/apps/v1/namespaces/ns/daemonsets/ds"),
        (
            resources.DAEMON_SETS,
            "ns",
            "ds",
            "status",
            "/apis/apps/v1/namespaces/ns/daemonsets/ds/status",
        ),
        (resources.NODES, None, "node-1", None, "/api/v1/nodes/node-1"),
        (
            resources.LEASES,
            "ns",
            "d1c7b6d5.intel.com",
            None,
            "/apis/coordination.k8s.io/v1/namespaces/ns/leases/d1c7b6d5.intel.com",
        ),
        (resources.CONFIG_MAPS, "ns", "a/b", None, "/api/v1/namespaces/ns/configmaps/a%2Fb"),
    ],
)
def test_paths(
    resource: resources.Resource,
    namespace: str | None,
    name: str | None,
    subresource: str | None,
    path: str,
) -> None:
    assert resource.path(namespace, name, subresource) == path


def test_custom_resources_come_from_their_api_version() -> None:
    gpu = resources.Resource.of(
        "deviceplugin.intel.com/v1", "GpuDevicePlugin", "gpudeviceplugins", namespaced=False
    )
    assert gpu.group == "deviceplugin.intel.com"
    assert gpu.version == "v1"
    assert gpu.api_version == "deviceplugin.intel.com/v1"
    assert gpu.path(name="sample", subresource="status") == (
        "/apis/deviceplugin.intel.com/v1/gpudeviceplugins/sample/status"
    )
    assert resources.Resource.of("v1", "Pod", "pods") == resources.PODS


def test_a_cluster_scoped_resource_has_no_namespace() -> None:
    with pytest.raises(ValueError, match="cluster-scoped"):
        resources.NODES.path("ns", "node-1")


def test_a_subresource_needs_a_name() -> None:
    with pytest.raises(ValueError, match="name"):
        resources.PODS.path("ns", None, "status")
