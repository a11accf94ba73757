"""Pure parts of the control-plane build."""

from localcluster import binaries


def test_staging_modules_are_read_from_the_kubernetes_go_mod() -> None:
    gomod = """module k8s.io/kubernetes
replace (
\tk8s.io/api => ./staging/src/k8s.io/api
\tk8s.io/client-go => ./staging/src/k8s.io/client-go
\tgithub.com/other/thing => github.com/fork/thing v1.0.0
)
replace k8s.io/streaming => ./staging/src/k8s.io/streaming
"""
    assert binaries._staging_modules(gomod) == [
        "k8s.io/api",
        "k8s.io/client-go",
        "k8s.io/streaming",
    ]


def test_binaries_are_cached_per_component_version(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("XDG_CACHE_HOME", "/cache")
    found = binaries.expected_binaries()
    assert str(found.kube_apiserver) == (
        f"/cache/deviceplugin-operator/bin/kubernetes-{binaries.KUBERNETES_VERSION}/kube-apiserver"
    )
    assert str(found.etcd).endswith(f"etcd-{binaries.ETCD_VERSION}/etcd")


def test_the_real_nodes_commands_come_from_the_same_kubernetes_build(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("XDG_CACHE_HOME", "/cache")
    found = binaries.expected_binaries()
    assert found.kubelet.parent == found.kube_apiserver.parent
    assert found.kube_proxy.parent == found.kube_apiserver.parent
    assert set(found.kubernetes()) == set(binaries.KUBERNETES_COMMANDS)
    assert found.pause in found.all()


def test_static_programs_are_cached_by_a_hash_of_their_source(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("XDG_CACHE_HOME", "/cache")
    for name in binaries.PROGRAMS:
        path = binaries.program_path(name)
        assert path.name == name
        assert path.parent.name.startswith("programs-")
