"""The operator against the real local control plane, parametrized over the device registry.

One operator (all devices, plugin namespace ``dp-plugins``) runs in-process for the module;
tests that need other settings start a second, short-lived one in a namespace of their own.
"""

from __future__ import annotations

import asyncio
import contextlib
import pathlib
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import pytest_asyncio
import yaml

from clusters import TestCluster
from deviceplugin_operator import devices, manager, settings
from deviceplugin_operator.kube import client, errors, resources
from deviceplugin_operator.reconcile import daemonset, drift
from polling import eventually_async

pytestmark = [pytest.mark.cluster, pytest.mark.asyncio(loop_scope="session")]

ROOT = pathlib.Path(__file__).resolve().parents[2]
SAMPLES = ROOT / "deployments" / "operator" / "samples"
NAMESPACE = "dp-plugins"
KIND_NAMES = list(devices.KINDS)
WRITE_VERBS = ("create", "update", "patch", "delete")


def sample(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(
        (SAMPLES / f"deviceplugin_v1_{name}deviceplugin.yaml").read_text()
    )
    return loaded


async def create_plugin(
    op: Operator, kind: devices.DeviceKind[Any], name: str, spec: dict[str, Any]
) -> dict[str, Any]:
    """Create a resource of ``kind`` named ``name`` with ``spec``."""
    body = {
        "apiVersion": kind.resource.api_version,
        "kind": kind.kind,
        "metadata": {"name": name},
        "spec": spec,
    }
    return await op.kube.create(crs(kind), body)


def crs(kind: devices.DeviceKind[Any]) -> resources.Resource:
    return resources.Resource.of(
        kind.resource.api_version, kind.kind, kind.plural, namespaced=False
    )


class Operator:
    """A running in-process operator and a client to look at the cluster with."""

    def __init__(self, mgr: manager.Manager, kube: client.HttpKubeClient, namespace: str):
        self.manager = mgr
        self.kube = kube
        self.namespace = namespace

    def controller(self, name: str) -> manager.Controller:
        return next(c for c in self.manager.controllers if c.reconciler.kind.name == name)

    async def daemonset(self, name: str) -> dict[str, Any] | None:
        with contextlib.suppress(errors.NotFound):
            return await self.kube.get(resources.DAEMON_SETS, name, self.namespace)
        return None

    async def idle(self) -> None:
        """Wait until every queue is empty and no reconcile runs."""

        async def quiet() -> bool:
            return all(
                c.queue.depth == 0 and not c.queue._processing for c in self.manager.controllers
            )

        await eventually_async(quiet, timeout=30, what="the work queues to drain")


@contextlib.asynccontextmanager
async def running_operator(
    cluster: TestCluster, config: settings.Settings
) -> AsyncIterator[Operator]:
    cluster.kubectl("create", "namespace", config.plugin_namespace, check=False)
    kube = await client.connect(cluster.kubeconfig)
    observer = await client.connect(cluster.kubeconfig)
    mgr = manager.Manager(
        config,
        manager.Options(
            health_probe_bind_address="127.0.0.1:0", resync_period=3600, webhook_port=0
        ),
        kube,
    )
    await mgr.start()
    try:
        yield Operator(mgr, observer, config.plugin_namespace)
    finally:
        await mgr.stop()
        await kube.close()
        await observer.close()


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def operator(cluster: TestCluster) -> AsyncIterator[Operator]:
    cluster.install_crds(ROOT / "deployments/operator/crd/bases")
    config = settings.Settings(plugin_namespace=NAMESPACE, devices=tuple(devices.KINDS))
    async with running_operator(cluster, config) as running:
        yield running


async def wait_ready(op: Operator, kind: devices.DeviceKind[Any], name: str, nodes: int) -> Any:
    async def settled() -> dict[str, Any] | None:
        cr = await op.kube.get(crs(kind), name)
        status = cr.get("status") or {}
        if status.get("desiredNumberScheduled") == nodes and status.get("numberReady") == nodes:
            return cr
        return None

    return await eventually_async(settled, timeout=60, what=f"{kind.kind} {name} to be ready")


def matching_nodes(cluster: TestCluster, cr: dict[str, Any]) -> list[str]:
    kind = next(k for k in devices.KINDS.values() if k.kind == cr["kind"])
    spec = kind.spec_of(cr)
    selector = dict(spec.node_selector or {"kubernetes.io/arch": "amd64"})
    for key, value in kind.required_node_selector.items():
        selector.setdefault(key, value)
    return cluster.nodes_matching(selector)


@pytest.mark.parametrize("name", KIND_NAMES)
async def test_sample_becomes_its_daemonset_with_status(
    cluster: TestCluster, operator: Operator, name: str
) -> None:
    kind = devices.KINDS[name]
    body = sample(name)
    cr_name = body["metadata"]["name"]
    created = await operator.kube.create(crs(kind), body)
    nodes = matching_nodes(cluster, body)
    assert nodes

    cr = await wait_ready(operator, kind, cr_name, len(nodes))
    ds_name = f"intel-{name}-plugin-{cr_name}"
    ds = await operator.daemonset(ds_name)
    assert ds is not None

    expected = daemonset.desired_daemonset(
        kind, cr_name, created["metadata"]["uid"], kind.spec_of(body), operator.manager.config
    )
    assert drift.matches(drift.with_rendered_lists(expected), ds)
    assert ds["spec"]["selector"] == {"matchLabels": {"app": f"intel-{name}-plugin"}}
    assert ds["spec"]["template"]["metadata"]["labels"] == {"app": f"intel-{name}-plugin"}
    assert ds["metadata"]["labels"]["app.kubernetes.io/instance"] == cr_name
    owner = ds["metadata"]["ownerReferences"][0]
    assert owner["uid"] == created["metadata"]["uid"]
    assert owner["controller"] is True

    status = cr["status"]
    assert status["nodeNames"] == nodes
    assert status["controlledDaemonSet"]["name"] == ds_name
    assert status["observedGeneration"] == cr["metadata"]["generation"]
    conditions = {c["type"]: c for c in status["conditions"]}
    assert conditions["Ready"]["status"] == "True"
    assert conditions["Degraded"]["status"] == "False"

    table = cluster.kubectl("get", kind.plural, cr_name).stdout.splitlines()
    assert table[0].split() == ["NAME", "DESIRED", "READY", "DEVICES", "NODE", "SELECTOR", "AGE"]
    assert table[1].split()[:3] == [cr_name, str(len(nodes)), str(len(nodes))]


@pytest.mark.parametrize("name", KIND_NAMES)
async def test_spec_changes_reach_the_daemonset(
    cluster: TestCluster, operator: Operator, name: str
) -> None:
    kind = devices.KINDS[name]
    cr_name = f"change-{name}"
    await create_plugin(operator, kind, cr_name, {"nodeSelector": {"only-here": "x"}})
    ds_name = f"intel-{name}-plugin-{cr_name}"
    await eventually_async(lambda: operator.daemonset(ds_name), what="the DaemonSet")
    patch = {
        "spec": {
            "logLevel": 3,
            "nodeSelector": {"intel.feature.node.kubernetes.io/gpu": "true", "only-here": None},
            "tolerations": [
                {"key": "foo", "operator": "Equal", "value": "bar", "effect": "NoSchedule"}
            ],
        }
    }
    await operator.kube.patch(crs(kind), cr_name, patch)

    async def followed() -> dict[str, Any] | None:
        ds = await operator.daemonset(ds_name)
        pod = (ds or {}).get("spec", {}).get("template", {}).get("spec", {})
        container = pod.get("containers", [{}])[0]
        selector = pod.get("nodeSelector", {})
        if (
            container.get("args", [])[:2] == ["-v", "3"]
            and "only-here" not in selector
            and pod.get("tolerations")
        ):
            return pod
        return None

    pod = await eventually_async(followed, timeout=30, what="the DaemonSet to follow the spec")
    assert pod["nodeSelector"]["intel.feature.node.kubernetes.io/gpu"] == "true"
    assert pod["tolerations"] == patch["spec"]["tolerations"]

    await operator.kube.patch(crs(kind), cr_name, {"spec": {"tolerations": None}})

    async def tolerations_gone() -> bool:
        ds = await operator.daemonset(ds_name)
        return not (ds or {}).get("spec", {}).get("template", {}).get("spec", {}).get("tolerations")

    await eventually_async(tolerations_gone, timeout=30, what="tolerations to be removed")
    gpu_nodes = cluster.nodes_matching({"intel.feature.node.kubernetes.io/gpu": "true"})
    await wait_ready(operator, kind, cr_name, len(gpu_nodes))


async def test_hand_edits_are_reverted_and_unrendered_fields_kept(operator: Operator) -> None:
    kind = devices.KINDS["gpu"]
    cr_name = "hand-edited"
    await create_plugin(operator, kind, cr_name, {"image": "intel/intel-gpu-plugin:0.36.0"})
    ds_name = f"intel-gpu-plugin-{cr_name}"
    await eventually_async(lambda: operator.daemonset(ds_name), what="the DaemonSet")
    await operator.kube.patch(
        resources.DAEMON_SETS,
        ds_name,
        {
            "metadata": {"annotations": {"by-hand": "kept"}},
            "spec": {
                "template": {
                    "spec": {
                        "containers": [{"name": "intel-gpu-plugin", "image": "evil/image:1"}],
                        "nodeSelector": {"extra": "by-hand"},
                        "priorityClassName": "",
                    }
                }
            },
        },
        operator.namespace,
        patch_type=client.PatchType.STRATEGIC,
    )

    async def restored() -> dict[str, Any] | None:
        ds = await operator.daemonset(ds_name)
        pod = (ds or {})["spec"]["template"]["spec"]
        if (
            pod["containers"][0]["image"] == "intel/intel-gpu-plugin:0.36.0"
            and "extra" not in pod["nodeSelector"]
        ):
            return ds
        return None

    ds = await eventually_async(restored, timeout=30, what="the hand edit to be reverted")
    assert ds["metadata"]["annotations"]["by-hand"] == "kept"


async def test_deleted_daemonset_is_recreated(operator: Operator) -> None:
    kind = devices.KINDS["npu"]
    cr_name = "recreated"
    await create_plugin(operator, kind, cr_name, {})
    ds_name = f"intel-npu-plugin-{cr_name}"
    first = await eventually_async(lambda: operator.daemonset(ds_name), what="the DaemonSet")
    await operator.kube.delete(resources.DAEMON_SETS, ds_name, operator.namespace)

    async def replaced() -> dict[str, Any] | None:
        ds = await operator.daemonset(ds_name)
        return ds if ds and ds["metadata"]["uid"] != first["metadata"]["uid"] else None

    await eventually_async(replaced, timeout=30, what="the DaemonSet to be recreated")


async def test_deleted_resource_loses_its_daemonset_without_retries(operator: Operator) -> None:
    kind = devices.KINDS["qat"]
    cr_name = "deleted"
    await create_plugin(operator, kind, cr_name, {})
    ds_name = f"intel-qat-plugin-{cr_name}"
    await eventually_async(lambda: operator.daemonset(ds_name), what="the DaemonSet")
    await operator.kube.delete(crs(kind), cr_name)

    async def collected() -> bool:
        return await operator.daemonset(ds_name) is None

    await eventually_async(collected, timeout=60, what="the garbage collector")
    await operator.idle()
    assert operator.controller("qat").queue.num_requeues(cr_name) == 0


async def test_name_conflict_is_reported_and_foreign_daemonset_untouched(
    operator: Operator,
) -> None:
    kind = devices.KINDS["sgx"]
    cr_name = "conflicting"
    ds_name = f"intel-sgx-plugin-{cr_name}"
    foreign = {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": {"name": ds_name, "labels": {"app": "intel-sgx-plugin"}},
        "spec": {
            "selector": {"matchLabels": {"app": "intel-sgx-plugin", "mine": "yes"}},
            "template": {
                "metadata": {"labels": {"app": "intel-sgx-plugin", "mine": "yes"}},
                "spec": {
                    "nodeSelector": {"nowhere": "x"},
                    "containers": [{"name": "c", "image": "someone/else:1"}],
                },
            },
        },
    }
    made = await operator.kube.create(resources.DAEMON_SETS, foreign, operator.namespace)
    await create_plugin(operator, kind, cr_name, {})

    async def degraded() -> dict[str, Any] | None:
        cr = await operator.kube.get(crs(kind), cr_name)
        for condition in (cr.get("status") or {}).get("conditions", []):
            if condition["type"] == "Degraded" and condition["reason"] == "NameConflict":
                return condition
        return None

    condition = await eventually_async(degraded, timeout=30, what="a NameConflict condition")
    assert condition["status"] == "True"
    assert ds_name in condition["message"]
    still = await operator.daemonset(ds_name)
    assert still is not None
    # The DaemonSet controller writes its status; nobody touched what the owner made.
    assert still["metadata"]["generation"] == made["metadata"]["generation"]
    assert still["metadata"]["labels"] == made["metadata"]["labels"]
    assert "ownerReferences" not in still["metadata"]
    assert still["spec"]["template"] == made["spec"]["template"]


async def test_daemonset_of_a_deleted_resource_of_the_same_name_is_replaced_at_once(
    operator: Operator,
) -> None:
    """Not left to the garbage collector: a resource deleted and created again would wait
    behind a name conflict until the collector reached the old DaemonSet."""
    kind = devices.KINDS["npu"]
    cr_name = "reincarnated"
    ds_name = f"intel-npu-plugin-{cr_name}"
    stale_uid = str(uuid.uuid4())
    stale = {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": {
            "name": ds_name,
            "labels": {"app": "intel-npu-plugin"},
            "ownerReferences": [
                {
                    "apiVersion": "deviceplugin.intel.com/v1",
                    "kind": "NpuDevicePlugin",
                    "name": cr_name,
                    "uid": stale_uid,
                    "controller": True,
                }
            ],
        },
        "spec": {
            "selector": {"matchLabels": {"app": "intel-npu-plugin"}},
            "template": {
                "metadata": {"labels": {"app": "intel-npu-plugin"}},
                "spec": {"containers": [{"name": "c", "image": "old/npu:1"}]},
            },
        },
    }
    await operator.kube.create(resources.DAEMON_SETS, stale, operator.namespace)
    created = await create_plugin(operator, kind, cr_name, {})

    async def replaced() -> dict[str, Any] | None:
        ds = await operator.daemonset(ds_name)
        owner = (ds or {}).get("metadata", {}).get("ownerReferences") or [{}]
        return ds if owner[0].get("uid") == created["metadata"]["uid"] else None

    ds = await eventually_async(replaced, timeout=15, what="the DaemonSet of the new resource")
    assert ds["spec"]["template"]["spec"]["containers"][0]["image"] != "old/npu:1"


async def test_daemonset_whose_resource_is_gone_is_deleted_by_the_operator(
    operator: Operator,
) -> None:
    """Orphans are not left to the garbage collector alone (it can lag by tens of seconds)."""
    ds_name = "intel-gpu-plugin-ghost"
    orphan = {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": {
            "name": ds_name,
            "labels": {"app": "intel-gpu-plugin"},
            "ownerReferences": [
                {
                    "apiVersion": "deviceplugin.intel.com/v1",
                    "kind": "GpuDevicePlugin",
                    "name": "ghost",
                    "uid": str(uuid.uuid4()),
                    "controller": True,
                }
            ],
        },
        "spec": {
            "selector": {"matchLabels": {"app": "intel-gpu-plugin"}},
            "template": {
                "metadata": {"labels": {"app": "intel-gpu-plugin"}},
                "spec": {"containers": [{"name": "c", "image": "old/gpu:1"}]},
            },
        },
    }
    deletes = operator.manager.kube.requests["delete"]
    await operator.kube.create(resources.DAEMON_SETS, orphan, operator.namespace)

    async def gone() -> bool:
        return await operator.daemonset(ds_name) is None

    await eventually_async(gone, timeout=15, what="the orphan to be deleted")
    assert operator.manager.kube.requests["delete"] > deletes


async def test_missing_provisioning_config_map_is_degraded_with_the_fix(
    operator: Operator,
) -> None:
    kind = devices.KINDS["qat"]
    cr_name = "needs-config"
    await create_plugin(
        operator,
        kind,
        cr_name,
        {
            "initImage": "intel/intel-qat-initcontainer:0.36.0",
            "provisioningConfig": "qat-config",
            "kernelVfDrivers": ["4xxxvf"],
        },
    )

    async def condition(reason: str, status: str) -> dict[str, Any] | None:
        cr = await operator.kube.get(crs(kind), cr_name)
        for c in (cr.get("status") or {}).get("conditions", []):
            if c["type"] == "Degraded" and c["reason"] == reason and c["status"] == status:
                return c
        return None

    found = await eventually_async(
        lambda: condition("RenderFailed", "True"),
        timeout=30,
        what="a Degraded condition for the missing ConfigMap",
    )
    assert "spec.provisioningConfig" in found["message"]
    assert f"create it in {operator.namespace}" in found["message"]

    await operator.kube.create(
        resources.CONFIG_MAPS,
        {"metadata": {"name": "qat-config"}, "data": {"qat.conf": "x"}},
        operator.namespace,
    )

    async def cleared() -> bool:
        cr = await operator.kube.get(crs(kind), cr_name)
        return not any(c["reason"] == "RenderFailed" for c in cr["status"]["conditions"])

    await eventually_async(cleared, timeout=40, what="the condition to clear with the ConfigMap")


NO_NODE = {"no-node-has": "this-label"}


async def degraded_condition(
    op: Operator, kind: devices.DeviceKind[Any], name: str, reason: str
) -> dict[str, Any] | None:
    cr = await op.kube.get(crs(kind), name)
    for c in (cr.get("status") or {}).get("conditions", []):
        if c["type"] == "Degraded" and c["reason"] == reason and c["status"] == "True":
            return dict(c)
    return None


@pytest.mark.parametrize(
    ("name", "spec", "denial"),
    [
        (
            "gpu",
            {"image": "evil.example.com/miner:1.0"},
            'invalid resource: incorrect image name "miner". '
            "Make sure you use '<vendor>/intel-gpu-plugin'",
        ),
        (
            "sgx",
            {
                "image": "intel/intel-sgx-plugin:0.36.0",
                "initImage": "evil.example.com/privileged-tool:1.0",
            },
            'invalid resource: incorrect image name "privileged-tool". '
            "Make sure you use '<vendor>/intel-sgx-initcontainer'",
        ),
    ],
)
async def test_a_stored_spec_the_webhook_would_refuse_renders_no_daemonset(
    operator: Operator, name: str, spec: dict[str, Any], denial: str
) -> None:
    # No webhook is registered in this cluster: the API server stores what a cluster whose
    # webhook for the kind is off (or not there yet) would store.
    kind = devices.KINDS[name]
    cr_name = f"foreign-{name}"
    # Selecting no node: no plugin pod of these resources runs next to another test's.
    await create_plugin(operator, kind, cr_name, {**spec, "nodeSelector": NO_NODE})
    ds_name = f"intel-{name}-plugin-{cr_name}"

    found = await eventually_async(
        lambda: degraded_condition(operator, kind, cr_name, "InvalidSpec"),
        timeout=30,
        what="Degraded/InvalidSpec",
    )
    assert found["message"] == f"{denial}: no DaemonSet is created until the spec is fixed"
    await operator.idle()
    assert await operator.daemonset(ds_name) is None

    # Fixed: the DaemonSet follows.
    await operator.kube.patch(crs(kind), cr_name, {"spec": {"image": None, "initImage": None}})
    await eventually_async(lambda: operator.daemonset(ds_name), timeout=30, what="the DaemonSet")
    await delete_and_wait(operator, kind, cr_name, ds_name)


async def delete_and_wait(
    op: Operator, kind: devices.DeviceKind[Any], cr_name: str, ds_name: str
) -> None:
    await op.kube.delete(crs(kind), cr_name)

    async def gone() -> bool:
        return await op.daemonset(ds_name) is None

    await eventually_async(gone, timeout=30, what="the DaemonSet to go with its resource")


async def test_a_spec_turned_invalid_leaves_the_daemonset_as_it_is(operator: Operator) -> None:
    kind = devices.KINDS["sgx"]
    cr_name = "turned-foreign"
    await create_plugin(operator, kind, cr_name, {"nodeSelector": NO_NODE})
    ds_name = f"intel-sgx-plugin-{cr_name}"
    made = await eventually_async(lambda: operator.daemonset(ds_name), what="the DaemonSet")
    assert made is not None

    foreign = "evil.example.com/intel-sgx-initcontainer-lookalike:0.36.0"
    await operator.kube.patch(crs(kind), cr_name, {"spec": {"initImage": foreign}})
    found = await eventually_async(
        lambda: degraded_condition(operator, kind, cr_name, "InvalidSpec"),
        timeout=30,
        what="Degraded/InvalidSpec",
    )
    assert found["message"].endswith(
        f": the DaemonSet {operator.namespace}/{ds_name} is left as it is until the spec is fixed"
    )
    await operator.idle()
    ds = await operator.daemonset(ds_name)
    assert ds is not None
    assert ds["metadata"]["generation"] == made["metadata"]["generation"]
    images = [c["image"] for c in ds["spec"]["template"]["spec"].get("initContainers", [])]
    assert foreign not in images
    await delete_and_wait(operator, kind, cr_name, ds_name)


async def test_resync_of_an_unchanged_cluster_writes_nothing(operator: Operator) -> None:
    def writes() -> dict[str, int]:
        return {verb: operator.manager.kube.requests[verb] for verb in WRITE_VERBS}

    # Steady state first: pods of earlier tests may still be becoming ready, which rightly
    # changes statuses. Steady = two seconds without a single write.
    async def steady() -> dict[str, int] | None:
        await operator.idle()
        await operator.manager.recorder.flush()
        first = writes()
        await asyncio.sleep(2)
        await operator.idle()
        return first if writes() == first else None

    before = await eventually_async(steady, timeout=60, interval=0, what="a steady state")
    with record_writes(operator.manager.kube) as made:
        names = 0
        for controller in operator.manager.controllers:
            for cr in controller.reconciler.caches.plugins.list():
                controller.queue.add(cr["metadata"]["name"])
                names += 1
        assert names >= len(KIND_NAMES)
        await operator.idle()
        await operator.manager.recorder.flush()
    assert writes() == before, f"writes during the resync: {made}"


@contextlib.contextmanager
def record_writes(kube: client.HttpKubeClient) -> Iterator[list[str]]:
    """What ``kube`` writes meanwhile (a write shows which change was not steady)."""
    made: list[str] = []
    chained = kube._hook

    def hook(record: client.RequestRecord) -> None:
        if record.verb in WRITE_VERBS:
            made.append(f"{record.verb} {record.resource} -> {record.code}")
        if chained is not None:
            chained(record)

    patch_status = kube.patch_status

    async def patching(
        resource: resources.Resource, name: str, body: Any, *args: Any, **kwargs: Any
    ) -> Any:
        # What the server held before the patch: the difference is what was not steady.
        stored = (await kube.get(resource, name)).get("status")
        made.append(f"status of {resource.plural}/{name}: patch {body}, stored before {stored}")
        return await patch_status(resource, name, body, *args, **kwargs)

    kube._hook = hook
    kube.patch_status = patching  # type: ignore[method-assign]
    try:
        yield made
    finally:
        kube._hook = chained
        del kube.patch_status


async def test_only_enabled_devices_are_reconciled_with_namespace_and_pull_secret(
    cluster: TestCluster, operator: Operator
) -> None:
    namespace = f"gpu-only-{uuid.uuid4().hex[:6]}"
    config = settings.Settings(
        plugin_namespace=namespace, image_pull_secret="regcred", devices=("gpu",)
    )
    async with running_operator(cluster, config) as gpu_only:
        assert [c.reconciler.kind.name for c in gpu_only.manager.controllers] == ["gpu"]
        # Only the GPU CRD is watched: the other kinds' CRDs could be absent.
        watched = {inf.resource.plural for inf in gpu_only.manager.informers}
        assert watched == {"daemonsets", "pods", "nodes", "gpudeviceplugins"}
        gpu, qat = devices.KINDS["gpu"], devices.KINDS["qat"]
        for kind in (gpu, qat):
            await create_plugin(gpu_only, kind, f"only-{namespace}", {})
        ds = await eventually_async(
            lambda: gpu_only.daemonset(f"intel-gpu-plugin-only-{namespace}"),
            what="the GPU DaemonSet in the second operator's namespace",
        )
        assert ds["metadata"]["namespace"] == namespace
        assert ds["spec"]["template"]["spec"]["imagePullSecrets"] == [{"name": "regcred"}]
        # The module's operator makes the QAT DaemonSet in its namespace; this one never does.
        await eventually_async(
            lambda: operator.daemonset(f"intel-qat-plugin-only-{namespace}"),
            what="the QAT DaemonSet of the all-devices operator",
        )
        await gpu_only.idle()
        assert await gpu_only.daemonset(f"intel-qat-plugin-only-{namespace}") is None


async def test_daemonset_in_the_reference_shape_is_adopted_without_rollout(
    cluster: TestCluster, operator: Operator
) -> None:
    namespace = f"adopt-{uuid.uuid4().hex[:6]}"
    cluster.kubectl("create", "namespace", namespace)
    kind = devices.KINDS["gpu"]
    cr_name = f"adopted-{namespace}"
    body = sample("gpu")
    body["metadata"]["name"] = cr_name
    created = await operator.kube.create(crs(kind), body)
    config = settings.Settings(plugin_namespace=namespace, devices=("gpu",))
    # What the reference operator made: the same template, only `app` labels, its owner ref.
    reference = daemonset.desired_daemonset(
        kind, cr_name, created["metadata"]["uid"], kind.spec_of(body), config
    )
    reference["metadata"]["labels"] = {"app": "intel-gpu-plugin"}
    made = await operator.kube.create(resources.DAEMON_SETS, reference, namespace)
    gpu_nodes = cluster.nodes_matching({"intel.feature.node.kubernetes.io/gpu": "true"})

    async def rolled_out() -> dict[str, Any] | None:
        ds = await operator.kube.get(resources.DAEMON_SETS, made["metadata"]["name"], namespace)
        return ds if ds.get("status", {}).get("numberReady") == len(gpu_nodes) else None

    await eventually_async(rolled_out, timeout=60, what="the reference-shaped DaemonSet")

    def pod_uids() -> list[str]:
        # The second operator also renders every other GPU resource into this namespace:
        # only the adopted DaemonSet's pods matter.
        pods = cluster.kubectl_json("get", "pods", "-n", namespace)["items"]
        return sorted(
            p["metadata"]["uid"]
            for p in pods
            if p["metadata"]["ownerReferences"][0]["uid"] == made["metadata"]["uid"]
        )

    pods_before = pod_uids()
    assert len(pods_before) == len(gpu_nodes)

    async with running_operator(cluster, config) as adopting:

        async def adopted() -> dict[str, Any] | None:
            ds = await adopting.daemonset(made["metadata"]["name"])
            labels = (ds or {})["metadata"]["labels"]
            return ds if labels.get("app.kubernetes.io/managed-by") else None

        ds = await eventually_async(adopted, timeout=30, what="the DaemonSet to be adopted")
        assert ds["metadata"]["uid"] == made["metadata"]["uid"]
        assert ds["metadata"]["generation"] == made["metadata"]["generation"]
        await adopting.idle()

    assert pod_uids() == pods_before


async def test_old_image_is_raised_to_the_minimum_and_recorded_as_an_event(
    cluster: TestCluster, operator: Operator
) -> None:
    kind = devices.KINDS["dsa"]
    cr_name = "old-image"
    await create_plugin(
        operator, kind, cr_name, {"image": "registry.example:5000/intel/intel-dsa-plugin:0.35.0"}
    )
    ds_name = f"intel-dsa-plugin-{cr_name}"
    ds = await eventually_async(lambda: operator.daemonset(ds_name), what="the DaemonSet")
    container = ds["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "registry.example:5000/intel/intel-dsa-plugin:0.36.0"
    cr = await operator.kube.get(crs(kind), cr_name)
    assert cr["spec"]["image"].endswith(":0.35.0")  # the user's spec is never rewritten

    async def recorded() -> list[dict[str, Any]] | None:
        listing = await operator.kube.list(
            resources.EVENTS, "default", field_selector=f"involvedObject.name={cr_name}"
        )
        reasons = {event["reason"]: event for event in listing.items}
        return listing.items if {"ImageUpgraded", "Created"} <= set(reasons) else None

    events = await eventually_async(recorded, timeout=30, what="ImageUpgraded and Created events")
    upgraded = next(e for e in events if e["reason"] == "ImageUpgraded")
    assert "0.36.0" in upgraded["message"]
    assert upgraded["involvedObject"]["kind"] == "DsaDevicePlugin"


EVERY_FIELD: dict[str, dict[str, Any]] = {
    "dlb": {"initImage": "intel/intel-dlb-initcontainer:0.36.1"},
    "dsa": {
        "initImage": "intel/intel-idxd-config-initcontainer:0.36.1",
        "provisioningConfig": "dsa-config",
        "driver": "vfio-pci",
        "sharedDevNum": 7,
    },
    "fpga": {"initImage": "intel/intel-fpga-initcontainer:0.36.1", "mode": "region"},
    "gpu": {
        "initImage": "intel/intel-gpu-initcontainer:0.36.1",
        "allowIDs": "0x56a0,0x56a1",
        "preferredAllocationPolicy": "packed",
        "bypathMode": "all",
        "monitoringMode": "split",
        "enableMonitoring": True,
        "sharedDevNum": 4,
    },
    "iaa": {
        "initImage": "intel/intel-idxd-config-initcontainer:0.36.1",
        "provisioningConfig": "iaa-config",
        "sharedDevNum": 3,
    },
    "npu": {"sharedDevNum": 2},
    "qat": {
        "initImage": "intel/intel-qat-initcontainer:0.36.1",
        "provisioningConfig": "qat-config",
        "preferredAllocationPolicy": "balanced",
        "dpdkDriver": "igb_uio",
        "kernelVfDrivers": ["c3xxxvf", "6xxxvf"],
        "maxNumDevices": 12,
    },
    "sgx": {
        "initImage": "intel/intel-sgx-initcontainer:0.36.1",
        "enclaveLimit": 20,
        "provisionLimit": 21,
        "dcapInfraResources": True,
    },
}
"""A spec per kind that sets every field besides the common ones to a non-default value."""


@pytest.mark.parametrize("name", KIND_NAMES)
async def test_every_field_set_and_cleared_reaches_the_daemonset(
    operator: Operator, name: str
) -> None:
    kind = devices.KINDS[name]
    cr_name = f"every-field-{name}"
    created = await create_plugin(operator, kind, cr_name, {})
    ds_name = f"intel-{name}-plugin-{cr_name}"
    full = {
        "image": f"intel/intel-{name}-plugin:0.36.1",
        "logLevel": 5,
        "nodeSelector": {"intel.feature.node.kubernetes.io/gpu": "true", "zone": "a"},
        "tolerations": [
            {"key": "k", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 30}
        ],
        **EVERY_FIELD[name],
    }

    async def rendered(spec: dict[str, Any]) -> dict[str, Any] | None:
        expected = daemonset.desired_daemonset(
            kind,
            cr_name,
            created["metadata"]["uid"],
            kind.spec.model_validate(spec),
            operator.manager.config,
        )
        ds = await operator.daemonset(ds_name)
        return ds if ds and drift.matches(drift.with_rendered_lists(expected), ds) else None

    await eventually_async(lambda: rendered({}), what="the DaemonSet of the empty spec")
    await operator.kube.patch(crs(kind), cr_name, {"spec": full})
    ds = await eventually_async(lambda: rendered(full), what="every field in the DaemonSet")
    assert ds["spec"]["template"]["spec"]["containers"][0]["args"][:2] == ["-v", "5"]

    await operator.kube.patch(crs(kind), cr_name, {"spec": dict.fromkeys(full)})
    await eventually_async(lambda: rendered({}), what="every field cleared from the DaemonSet")


async def test_fpga_mappings_sample_is_accepted_by_the_schema(
    cluster: TestCluster, operator: Operator
) -> None:
    namespace = f"mappings-{uuid.uuid4().hex[:6]}"
    cluster.kubectl("create", "namespace", namespace)
    applied = cluster.kubectl(
        "apply", "-n", namespace, "-f", str(SAMPLES / "mappings-collection.yaml")
    )
    assert applied.stdout.count("created") == 21
    assert len(cluster.kubectl_json("get", "af", "-n", namespace)["items"]) == 17
    assert len(cluster.kubectl_json("get", "fpga", "-n", namespace)["items"]) == 4
    cluster.kubectl("delete", "namespace", namespace, "--wait=false")


async def test_duplicate_daemonset_owned_by_the_resource_is_deleted(operator: Operator) -> None:
    kind = devices.KINDS["npu"]
    cr_name = "with-duplicate"
    created = await create_plugin(operator, kind, cr_name, {})
    ds = await eventually_async(
        lambda: operator.daemonset(f"intel-npu-plugin-{cr_name}"), what="the DaemonSet"
    )
    duplicate = {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": {
            "name": f"intel-npu-plugin-{cr_name}-copy",
            "labels": {"app": "intel-npu-plugin"},
            "ownerReferences": ds["metadata"]["ownerReferences"],
        },
        "spec": ds["spec"] | {"template": ds["spec"]["template"]},
    }
    assert duplicate["metadata"]["ownerReferences"][0]["uid"] == created["metadata"]["uid"]
    await operator.kube.create(resources.DAEMON_SETS, duplicate, operator.namespace)

    async def deleted() -> bool:
        return await operator.daemonset(duplicate["metadata"]["name"]) is None

    await eventually_async(deleted, timeout=30, what="the duplicate DaemonSet to be deleted")
    assert await operator.daemonset(f"intel-npu-plugin-{cr_name}") is not None


async def test_legacy_unsuffixed_daemonset_is_adopted_in_place(
    cluster: TestCluster, operator: Operator
) -> None:
    namespace = f"legacy-{uuid.uuid4().hex[:6]}"
    cluster.kubectl("create", "namespace", namespace)
    kind = devices.KINDS["dsa"]
    cr_name = f"legacy-{namespace}"
    created = await create_plugin(
        operator, kind, cr_name, {"image": "intel/intel-dsa-plugin:0.35.0"}
    )
    config = settings.Settings(plugin_namespace=namespace, devices=("dsa",))
    legacy = daemonset.desired_daemonset(
        kind, cr_name, created["metadata"]["uid"], kind.spec_of(created), config
    )
    # A pre-0.29 DaemonSet: no suffix, the old image, no recommended labels.
    legacy["metadata"]["name"] = "intel-dsa-plugin"
    legacy["metadata"]["labels"] = {"app": "intel-dsa-plugin"}
    legacy["spec"]["template"]["spec"]["containers"][0]["image"] = "intel/intel-dsa-plugin:0.35.0"
    made = await operator.kube.create(resources.DAEMON_SETS, legacy, namespace)

    async with running_operator(cluster, config) as adopting:

        async def upgraded() -> dict[str, Any] | None:
            ds = await adopting.daemonset("intel-dsa-plugin")
            image = (ds or {})["spec"]["template"]["spec"]["containers"][0]["image"]
            return ds if image == "intel/intel-dsa-plugin:0.36.0" else None

        ds = await eventually_async(upgraded, timeout=30, what="the legacy DaemonSet upgraded")
        assert ds["metadata"]["uid"] == made["metadata"]["uid"]
        await adopting.idle()
        assert await adopting.daemonset(f"intel-dsa-plugin-{cr_name}") is None
