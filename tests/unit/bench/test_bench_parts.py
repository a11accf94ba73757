"""Pure helpers of the scenarios, the reference build and the floor."""

from __future__ import annotations

import dataclasses
import os
import pathlib

import pytest
from bench import floor, impls, reference, scenarios

from localcluster import binaries as lc_binaries
from localcluster import cluster as lc_cluster


def test_log_level_is_read_from_the_plugin_container_args() -> None:
    def ds(args: list[str]) -> dict[str, object]:
        return {"spec": {"template": {"spec": {"containers": [{"name": "p", "args": args}]}}}}

    assert scenarios.log_level_of(ds(["-v", "4", "-shared-dev-num", "1"])) == 4
    assert scenarios.log_level_of(ds(["-shared-dev-num", "1", "-v=5"])) == 5
    assert scenarios.log_level_of(ds(["-v"])) is None
    assert scenarios.log_level_of({"spec": {"template": {"spec": {}}}}) is None


def test_rotation_changes_who_goes_first() -> None:
    order = [impls.THIS, impls.REFERENCE, impls.FLOOR]
    assert [i.name for i in scenarios.rotate(order, 0)] == ["this", "reference", "floor"]
    assert [i.name for i in scenarios.rotate(order, 1)] == ["reference", "floor", "this"]
    assert [i.name for i in scenarios.rotate(order, 5)] == ["floor", "this", "reference"]


def test_convergence_resources_split_the_nodes_into_disjoint_groups() -> None:
    size = scenarios.SIZES["full"]
    resources = scenarios.convergence_resources(size.crs_per_kind)
    assert len(resources) == 8 * size.crs_per_kind
    names = {body["metadata"]["name"] for _, body, _ in resources}
    assert len(names) == len(resources)
    gpu = [(body, sel) for plural, body, sel in resources if plural == "gpudeviceplugins"]
    assert {sel[scenarios.GROUP_LABEL] for _, sel in gpu} == {f"g{j}" for j in range(10)}
    for body, selector in gpu:
        assert body["spec"]["nodeSelector"] == selector
        assert selector["intel.feature.node.kubernetes.io/gpu"] == "true"
        assert body["spec"]["image"].endswith(":0.36.0")


def test_reference_wrapper_repeats_only_versioned_replaces() -> None:
    gomod = {
        "Replace": [
            {"Old": {"Path": "k8s.io/api"}, "New": {"Path": "k8s.io/api", "Version": "v0.36.0"}},
            {
                "Old": {"Path": "example.com/a", "Version": "v1.0.0"},
                "New": {"Path": "example.com/b", "Version": "v1.2.0"},
            },
            {"Old": {"Path": "example.com/local"}, "New": {"Path": "./local"}},
        ]
    }
    assert reference.replace_args(gomod) == [
        "-replace=k8s.io/api=k8s.io/api@v0.36.0",
        "-replace=example.com/a@v1.0.0=example.com/b@v1.2.0",
    ]
    assert reference.replace_args({}) == []


def test_reference_binary_is_cached_outside_the_repository(
    monkeypatch: pytest.MonkeyPatch, tmp_path: pathlib.Path
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.delenv("BENCH_REFERENCE_VERSION", raising=False)
    assert reference.binary_path() == (
        tmp_path
        / "deviceplugin-operator"
        / "bin"
        / "reference-operator-v0.36.0"
        / "intel_deviceplugin_operator"
    )


def test_reference_serving_cert_lands_in_the_default_cert_dir_under_tmpdir(
    tmp_path: pathlib.Path,
) -> None:
    certs = reference.write_serving_cert(tmp_path)
    assert certs == tmp_path / "k8s-webhook-server" / "serving-certs"
    assert (certs / "tls.crt").read_text().startswith("-----BEGIN CERTIFICATE-----")
    assert "PRIVATE KEY" in (certs / "tls.key").read_text()


def test_floor_renders_an_owned_daemonset_from_the_resource() -> None:
    cr = {
        "apiVersion": "deviceplugin.intel.com/v1",
        "kind": "GpuDevicePlugin",
        "metadata": {"name": "g", "uid": "u-1", "generation": 2},
        "spec": {
            "image": "intel/intel-gpu-plugin:0.36.0",
            "logLevel": 3,
            "nodeSelector": {"a": "b"},
        },
    }
    ds = floor.daemonset(cr, "ns")
    assert ds["metadata"]["name"] == "intel-gpu-plugin-g"
    assert ds["metadata"]["namespace"] == "ns"
    assert ds["metadata"]["ownerReferences"][0]["uid"] == "u-1"
    pod = ds["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {"a": "b"}
    assert pod["containers"][0]["args"][:2] == ["-v", "3"]
    assert scenarios.log_level_of(ds) == 3


def test_cpu_seconds_of_this_process_is_positive_and_of_a_missing_one_zero() -> None:
    assert impls.cpu_seconds(os.getpid()) > 0
    assert impls.cpu_seconds(2**22 + 12345) == 0.0


def test_webhook_histograms_of_the_apiserver_become_per_run_figures() -> None:
    from bench import admission

    def scrape(fast: int, slow: int, total_s: float) -> str:
        metric = admission.WEBHOOK_METRIC
        labels = 'name="vgpu.kb.io",operation="CREATE",rejected="false",type="validating"'
        return "\n".join(
            [
                f"# HELP {metric} ...",
                f'{metric}_bucket{{{labels},le="0.005"}} {fast}',
                f'{metric}_bucket{{{labels},le="0.025"}} {fast + slow}',
                f'{metric}_bucket{{{labels},le="+Inf"}} {fast + slow}',
                f"{metric}_sum{{{labels}}} {total_s}",
                f"{metric}_count{{{labels}}} {fast + slow}",
                'other_metric{name="x"} 1',
            ]
        )

    before = admission.webhook_histograms(scrape(10, 0, 0.02))
    after = admission.webhook_histograms(scrape(100, 10, 0.32))
    assert list(before) == [("vgpu.kb.io", "validating")]
    assert admission.webhook_figures(before, after) == {
        "webhook_calls": 100,
        "webhook_mean_ms": 3.0,
        "webhook_share_under_5ms": 0.9,
        "webhook_share_under_25ms": 1.0,
    }
    assert admission.webhook_figures(after, after) == {}


def test_convergence_grid_points_are_parsed_and_checked() -> None:
    assert scenarios.parse_grid("100x1, 1000X10") == ((100, 1), (1000, 10))
    for bad in ("100", "x10", "10x100", "100x0", "ax1"):
        with pytest.raises(ValueError, match="convergence grid point"):
            scenarios.parse_grid(bad)
    assert scenarios.SIZES["quick"].grid() == ((100, 1),)
    assert scenarios.SIZES["full"].grid() == ((100, 1), (100, 10), (1000, 1), (1000, 10))


def test_node_groups_give_each_resource_n_over_k_nodes_and_leave_the_rest_idle() -> None:
    for nodes, per_kind in ((100, 1), (100, 10), (1000, 10)):
        labels = [scenarios.node_group(i, nodes, per_kind) for i in range(1000)]
        for j in range(per_kind):
            assert labels.count(f"g{j}") == nodes // per_kind
        assert labels.count("idle") == 1000 - nodes


def _node(ready: str, taints: list[str] | None = None) -> dict[str, object]:
    return {
        "spec": {"taints": [{"key": k, "effect": "NoSchedule"} for k in taints or []]},
        "status": {"conditions": [{"type": "Ready", "status": ready}]},
    }


def test_a_node_counts_as_ready_only_when_ready_and_not_tainted_gone() -> None:
    assert scenarios.node_ready(_node("True"))
    assert scenarios.node_ready(_node("True", ["example.com/other"]))
    assert not scenarios.node_ready(_node("Unknown"))
    assert not scenarios.node_ready(_node("True", ["node.kubernetes.io/unreachable"]))
    assert not scenarios.node_ready(_node("True", ["node.kubernetes.io/not-ready"]))
    assert not scenarios.node_ready({})


def test_bench_clusters_keep_fake_nodes_whose_leases_lag(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The controller-manager the bench starts gets the long node-monitor grace period."""
    bench = scenarios.Bench(scenarios.SIZES["smoke"], tmp_path, [])
    launched: dict[str, list[str]] = {}
    cluster = bench.cluster
    monkeypatch.setattr(cluster, "_launch", lambda state, name, argv: launched.update({name: argv}))
    monkeypatch.setattr(cluster, "_wait", lambda *args: None)
    found = paths_as_binaries(tmp_path)
    state = lc_cluster.State(ports={"controller-manager": 1}, pids={})
    cluster._start_controller_manager(found, state, timeout=1)
    argv = launched["kube-controller-manager"]
    assert argv[-1] == "--node-monitor-grace-period=10m"
    assert "--feature-gates=StaleControllerConsistencyDaemonSet=false" in argv


def paths_as_binaries(root: pathlib.Path) -> lc_binaries.Binaries:
    paths = {f.name: root / f.name for f in dataclasses.fields(lc_binaries.Binaries)}
    return lc_binaries.Binaries(**paths)
