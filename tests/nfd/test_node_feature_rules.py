"""The shipped NodeFeatureRules (deployments/nfd/overlays/node-feature-rules) under Node Feature
Discovery's real nfd-master: each fake machine's ``NodeFeature`` (what nfd-worker reports on it)
must give its node exactly the ``intel.feature.node.kubernetes.io/*`` labels of the devices it
has, SGX nodes their EPC as ``sgx.intel.com/epc`` capacity, and the samples' plugin DaemonSets,
reconciled by the operator, must run on exactly those nodes. The chart's ``nodeFeatureRule``
option renders the same rule.
"""

from __future__ import annotations

import json
import pathlib
import subprocess
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import pytest
import yaml
from nfd_machines import EPC, MACHINES, PREFIX, Machine
from nfd_support import NFD_NAMESPACE, Master, nfd

import operators
from clusters import TestCluster
from deviceplugin_operator import devices
from polling import eventually

ROOT = pathlib.Path(__file__).resolve().parents[2]
RULES = ROOT / "deployments" / "nfd" / "overlays" / "node-feature-rules"
SAMPLES = ROOT / "deployments" / "operator" / "samples"
CRDS = ROOT / "deployments" / "operator" / "crd" / "bases"
CHART = ROOT / "charts" / "intel-deviceplugin-operator"
PLUGIN_NAMESPACE = "inteldeviceplugins-system"
STANDARD_LABELS = {"kubernetes.io/arch": "amd64", "kubernetes.io/os": "linux"}

# The first test builds nfd-master when it is not cached yet (make test builds it beforehand).
pytestmark = [pytest.mark.cluster, pytest.mark.timeout(1800)]


def _machine(name: str) -> Machine:
    return next(machine for machine in MACHINES if machine.name == name)


def _write_node_features(cluster: TestCluster, machines: Sequence[Machine]) -> None:
    items = [machine.node_feature(NFD_NAMESPACE, nfd.version()) for machine in machines]
    cluster.kubectl(
        "apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": items})
    )


def _observed(cluster: TestCluster) -> dict[str, tuple[dict[str, str], str | None]]:
    """Per node: its Intel labels and its sgx.intel.com/epc capacity."""
    observed = {}
    for node in cluster.kubectl_json("get", "nodes")["items"]:
        labels = node["metadata"].get("labels") or {}
        capacity = (node.get("status") or {}).get("capacity") or {}
        observed[node["metadata"]["name"]] = (
            {key: value for key, value in labels.items() if key.startswith(PREFIX)},
            capacity.get(EPC),
        )
    return observed


def _expected() -> dict[str, tuple[dict[str, str], str | None]]:
    return {machine.name: (machine.expected_labels, machine.epc) for machine in MACHINES}


def _samples() -> list[dict[str, Any]]:
    return [
        yaml.safe_load(path.read_text()) for path in sorted(SAMPLES.glob("deviceplugin_v1_*.yaml"))
    ]


def _selector(sample: Mapping[str, Any]) -> dict[str, str]:
    """What the sample's DaemonSet selects: its nodeSelector and its kind's required labels."""
    kind = next(kind for kind in devices.KINDS.values() if kind.kind == sample["kind"])
    selector = dict(sample["spec"].get("nodeSelector") or {})
    for key, value in kind.required_node_selector.items():
        selector.setdefault(key, value)
    return selector


def _nodes_for(selector: Mapping[str, str], labelled: Mapping[str, Mapping[str, str]]) -> set[str]:
    return {
        name
        for name, labels in labelled.items()
        if all({**STANDARD_LABELS, **labels}.get(key) == value for key, value in selector.items())
    }


@pytest.fixture(scope="module")
def labelled(nfd_cluster: TestCluster, nfd_master: Master) -> Master:
    """Every machine's NodeFeature written and the rules applied as the docs say; nfd-master has
    labelled the nodes accordingly."""
    _write_node_features(nfd_cluster, list(MACHINES))
    nfd_cluster.kubectl("apply", "-k", str(RULES))
    try:
        eventually(lambda: _observed(nfd_cluster) == _expected(), timeout=90, interval=0.5)
    except AssertionError:
        observed = _observed(nfd_cluster)
        wrong = {
            name: {"got": observed.get(name), "expected": expected}
            for name, expected in _expected().items()
            if observed.get(name) != expected
        }
        pytest.fail(f"nodes not labelled as expected (nfd-master log: {nfd_master.log}): {wrong}")
    return nfd_master


def test_each_node_gets_exactly_the_labels_of_its_devices(
    nfd_cluster: TestCluster, labelled: Master
) -> None:
    observed = _observed(nfd_cluster)
    wrong = {
        name: {"got": observed[name][0], "expected": machine.expected_labels}
        for name, machine in ((m.name, m) for m in MACHINES)
        if observed[name][0] != machine.expected_labels
    }
    assert wrong == {}
    # Every device kind's label is given to some node and withheld from some other.
    given = {key for labels, _ in observed.values() for key in labels}
    assert given == {PREFIX + kind for kind in _rule_devices()}
    errors = [line for line in labelled.log.read_text().splitlines() if line.startswith("E")]
    assert errors == [], f"nfd-master logged errors (log: {labelled.log})"


def test_sgx_nodes_get_their_epc_size_as_capacity(
    nfd_cluster: TestCluster, labelled: Master
) -> None:
    epc = {name: capacity for name, (_, capacity) in _observed(nfd_cluster).items() if capacity}
    assert epc == {"sgx-server": "68451041280", "every-device": "274877906944"}


def _rule_devices() -> set[str]:
    document = yaml.safe_load((RULES / "node-feature-rules.yaml").read_text())
    found = set()
    for rule in document["spec"]["rules"]:
        for key in rule.get("labels") or {}:
            assert key.startswith(PREFIX), key
            found.add(key.removeprefix(PREFIX))
    return found


def test_every_sample_selects_a_label_the_rules_give() -> None:
    """The samples' selectors and the rules' labels are one vocabulary: each sample (one per
    kind) selects on exactly one rule label, and each rule label is selected by a sample."""
    selected = set()
    for sample in _samples():
        keys = [key for key in sample["spec"]["nodeSelector"] if key.startswith(PREFIX)]
        assert len(keys) == 1, sample["metadata"]["name"]
        selected.add(keys[0].removeprefix(PREFIX))
    assert len(_samples()) == len(devices.KINDS)
    assert selected == _rule_devices()


@pytest.fixture(scope="module")
def samples_running(
    nfd_cluster: TestCluster, labelled: Master, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[operators.Operator]:
    """The operator (every kind) with the samples applied as the docs say."""
    nfd_cluster.install_crds(CRDS)
    nfd_cluster.kubectl("create", "namespace", PLUGIN_NAMESPACE)
    log = tmp_path_factory.mktemp("operator") / "operator.log"
    with operators.start_operator(nfd_cluster.kubeconfig, PLUGIN_NAMESPACE, log) as operator:
        operator.wait_ready()
        nfd_cluster.kubectl("apply", "-k", str(SAMPLES))
        yield operator


def _placement(cluster: TestCluster, device: str) -> tuple[int | None, list[str]]:
    """The device's plugin DaemonSet's desiredNumberScheduled and its live pods' nodes."""
    selector = f"app=intel-{device}-plugin"
    sets = cluster.kubectl_json("get", "daemonsets", "-n", PLUGIN_NAMESPACE, "-l", selector)
    desired = None
    if len(sets["items"]) == 1:
        desired = (sets["items"][0].get("status") or {}).get("desiredNumberScheduled")
    pods = cluster.kubectl_json("get", "pods", "-n", PLUGIN_NAMESPACE, "-l", selector)["items"]
    nodes = sorted(
        pod["spec"].get("nodeName") or "<unscheduled>"
        for pod in pods
        if not pod["metadata"].get("deletionTimestamp")
    )
    return desired, nodes


def _expected_placement() -> dict[str, tuple[int, list[str]]]:
    labelled = {machine.name: machine.expected_labels for machine in MACHINES}
    placement = {}
    for sample in _samples():
        device = sample["kind"].removesuffix("DevicePlugin").lower()
        nodes = sorted(_nodes_for(_selector(sample), labelled))
        placement[device] = (len(nodes), nodes)
    return placement


def test_samples_plugins_run_on_exactly_the_labelled_nodes(
    nfd_cluster: TestCluster, samples_running: operators.Operator
) -> None:
    expected = _expected_placement()
    assert all(count > 0 for count, _ in expected.values()), expected

    def placed() -> bool:
        return {device: _placement(nfd_cluster, device) for device in expected} == expected

    eventually(placed, timeout=120, interval=0.5, what="every sample's plugin on its nodes")
    assert samples_running.problems() == []


def test_a_node_whose_driver_goes_loses_its_label_and_its_plugin(
    nfd_cluster: TestCluster, samples_running: operators.Operator
) -> None:
    """nfd-worker rewrites the NodeFeature when i915 is unloaded: nfd-master removes the label
    it set, and the GPU plugin's pod leaves that node."""
    machine = _machine("gpu-arc-i915")
    unloaded = Machine(machine.name, pci=machine.pci)
    count, nodes = _expected_placement()["gpu"]
    assert machine.name in nodes
    _write_node_features(nfd_cluster, [unloaded])

    def moved() -> bool:
        labels, _ = _observed(nfd_cluster)[machine.name]
        placed = _placement(nfd_cluster, "gpu")
        return labels == {} and placed == (count - 1, [n for n in nodes if n != machine.name])

    eventually(moved, timeout=90, interval=0.5, what="the label and the GPU plugin pod to go")


def _rules_in(documents: list[Any]) -> list[dict[str, Any]]:
    return [doc for doc in documents if doc and doc.get("kind") == "NodeFeatureRule"]


def test_chart_option_renders_the_kustomize_rule(helm: pathlib.Path) -> None:
    def render(*options: str) -> list[dict[str, Any]]:
        completed = subprocess.run(
            [str(helm), "template", "idpo", str(CHART), "--namespace", "ns", *options],
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
        )
        assert completed.returncode == 0, completed.stderr
        return _rules_in(list(yaml.safe_load_all(completed.stdout)))

    kustomized = subprocess.run(
        ["kubectl", "kustomize", str(RULES)], capture_output=True, text=True, check=True
    ).stdout
    (expected,) = _rules_in(list(yaml.safe_load_all(kustomized)))

    assert render() == []
    (rendered,) = render("--set", "nodeFeatureRule=true")
    labels = rendered["metadata"].pop("labels")
    assert labels["app.kubernetes.io/managed-by"] == "Helm"
    assert rendered == expected
