"""Pure parts of the real node: its configuration files, state and CLI labels."""

from __future__ import annotations

import json
import pathlib

import pytest
import yaml

from localcluster import cluster, errors, nodes, realnode


def test_kubelet_config_keeps_kubelet_off_the_hosts_settings(tmp_path: pathlib.Path) -> None:
    layout = realnode.Layout(tmp_path / "node")
    config = yaml.safe_load(realnode.kubelet_config(layout, tmp_path / "pki", "localcluster-x"))
    assert config["kind"] == "KubeletConfiguration"
    assert config["cgroupRoot"] == "/localcluster-x"
    assert config["cgroupDriver"] == "cgroupfs"
    assert config["failCgroupV1"] is False
    assert config["failSwapOn"] is False
    assert config["makeIPTablesUtilChains"] is False
    assert config["address"] == realnode.NODE_IP
    assert config["authorization"] == {"mode": "Webhook"}
    assert config["authentication"]["anonymous"] == {"enabled": False}
    assert config["podLogsDir"] == str(layout.pod_logs)
    assert config["imageGCHighThresholdPercent"] == 100


def test_kube_proxy_config_writes_no_conntrack_or_localnet_sysctl(tmp_path: pathlib.Path) -> None:
    config = yaml.safe_load(realnode.kube_proxy_config(tmp_path, "n1"))
    assert config["mode"] == "iptables"
    assert config["hostnameOverride"] == "n1"
    assert config["conntrack"] == {
        "maxPerCore": 0,
        "min": 0,
        "tcpEstablishedTimeout": "0s",
        "tcpCloseWaitTimeout": "0s",
    }
    assert config["iptables"]["localhostNodePorts"] is False
    assert config["clusterCIDR"] == realnode.POD_SUBNET


def test_cni_config_is_a_bridge_without_masquerade(tmp_path: pathlib.Path) -> None:
    layout = realnode.Layout(tmp_path)
    [plugin] = json.loads(realnode.cni_config(layout))["plugins"]
    assert plugin["type"] == "bridge"
    assert plugin["isGateway"] is True
    assert plugin["ipMasq"] is False
    assert plugin["ipam"]["ranges"] == [[{"subnet": realnode.POD_SUBNET}]]
    assert plugin["ipam"]["dataDir"] == str(layout.cni_data_dir)


def test_containerd_config_uses_the_pause_image_and_private_paths(tmp_path: pathlib.Path) -> None:
    layout = realnode.Layout(tmp_path)
    text = realnode.containerd_config(layout, pathlib.Path("/usr/lib/cni"))
    assert f'sandbox_image = "{realnode.PAUSE_IMAGE}"' in text
    assert "SystemdCgroup = false" in text
    assert "restrict_oom_score_adj = true" in text
    assert f'root = "{layout.containerd_root / "root"}"' in text
    assert f'conf_dir = "{layout.cni_conf_dir}"' in text


def test_owner_config_forwards_each_host_socket_into_the_namespace(
    tmp_path: pathlib.Path,
) -> None:
    config = json.loads(realnode.owner_config(realnode.Layout(tmp_path), {"apiserver": 7}))
    assert config["address"] == realnode.NODE_IP
    assert config["forwards"] == [{"fd": 7, "host": realnode.NODE_IP, "port": 6443}]
    assert config["tmpfs"] == ["/run", "/var/lib", "/var/log"]
    assert config["sysctls"]["vm/overcommit_memory"] == 1
    assert config["sysctls"]["kernel/panic"] == 10


def test_state_round_trips_the_real_node(tmp_path: pathlib.Path) -> None:
    local = cluster.Cluster(tmp_path)
    node = realnode.NodeState("real-node", realnode.NODE_IP, "localcluster-1", {"a": "b"}, "m")
    local._save(cluster.State(ports={"apiserver": 1}, pids={"owner": 2}, node=node))
    state = local.state()
    assert state is not None
    assert state.node == node
    assert state.components()[0] == "owner"
    assert state.components()[-1] == "kubelet"
    assert local.node_name == "real-node"
    assert local.node_ip == realnode.NODE_IP
    assert local.owner_pid == 2


def test_a_cluster_without_real_node_has_no_node_state(tmp_path: pathlib.Path) -> None:
    local = cluster.Cluster(tmp_path)
    local._save(cluster.State(ports={"apiserver": 1}, pids={}))
    assert "node" not in json.loads((tmp_path / "state.json").read_text())
    assert local.node_name is None
    assert local.node_ip is None
    assert cluster.Cluster(tmp_path / "x", real_node=True).node_name == "real-node"
    with pytest.raises(errors.ClusterError, match="no real node"):
        local.load_image(tmp_path / "image.tar")


def test_state_directory_under_a_private_tmpfs_is_refused() -> None:
    if realnode.missing_prerequisites():
        pytest.skip("the prerequisites are checked first")
    with pytest.raises(errors.StartError, match="under /var/lib"):
        realnode.check_prerequisites(pathlib.Path("/var/lib/cluster"))


def test_real_node_labels_are_parsed_like_node_specs() -> None:
    assert nodes.parse_labels("a=1, b ,c=") == {"a": "1", "b": "true", "c": ""}
    assert nodes.parse_labels("") == {}
