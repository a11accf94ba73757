"""The checks before the start, against the in-memory API: each refusal that cannot heal is one
line naming its cause and its fix; a start that may go on makes reads only."""

from __future__ import annotations

import asyncio

import pytest

from deviceplugin_operator import devices, manager, settings
from deviceplugin_operator.controller import election
from deviceplugin_operator.kube import errors, objects, resources
from deviceplugin_operator.manager import preflight
from fakes import FakeKubeClient
from polling import eventually_async

SERVER = "https://api.example:6443"
KUBECONFIG = "/home/me/.kube/config"
USER = "system:serviceaccount:ops:nobody"


class Refusing(FakeKubeClient):
    """The fake, with namespaces that exist and requests refused per (verb, plural)."""

    def __init__(self, *namespaces: str) -> None:
        super().__init__()
        self.namespaces = set(namespaces)
        self.refusals: dict[tuple[str, str], errors.KubeError] = {}
        self.namespaces_read: list[str] = []

    def refuse(self, verb: str, resource: resources.Resource, error: errors.KubeError) -> None:
        self.refusals[verb, resource.plural] = error

    def _refused(self, verb: str, resource: resources.Resource) -> None:
        if (error := self.refusals.get((verb, resource.plural))) is not None:
            raise error

    async def get(self, resource, name, namespace=None):  # type: ignore[no-untyped-def]
        self._refused("get", resource)
        if resource == resources.NAMESPACES:
            self.requests["get"] += 1
            self.namespaces_read.append(name)
            if name not in self.namespaces:
                raise errors.NotFound(404, "NotFound", f'namespaces "{name}" not found')
            return {"metadata": {"name": name}}
        return await super().get(resource, name, namespace)

    async def list(self, resource, namespace=None, **selectors):  # type: ignore[no-untyped-def]
        self._refused("list", resource)
        return await super().list(resource, namespace, **selectors)


def forbidden(verb: str, plural: str, group: str, namespace: str | None) -> errors.Forbidden:
    scope = f' in the namespace "{namespace}"' if namespace else " at the cluster scope"
    return errors.Forbidden(
        403,
        "Forbidden",
        f'{plural} is forbidden: User "{USER}" cannot {verb} resource "{plural}" '
        f'in API group "{group}"{scope}',
    )


def operator(
    kube: FakeKubeClient,
    *,
    plugins: str = "plugins",
    own: str = "ops",
    lease: str | None = None,
    webhooks: bool = True,
    names: tuple[str, ...] = ("gpu",),
) -> manager.Manager:
    config = settings.Settings(plugin_namespace=plugins, devices=names)
    options = manager.Options(
        webhook_port=9443 if webhooks else 0,
        operator_namespace=own,
        leader_election=None if lease is None else election.Config(lease, "me"),
    )
    return manager.Manager(config, options, kube, election_kube=FakeKubeClient() if lease else None)


async def failure(mgr: manager.Manager) -> str:
    with pytest.raises(manager.StartupError) as raised:
        await preflight.check(mgr, server=SERVER, kubeconfig=KUBECONFIG)
    message = str(raised.value)
    assert "\n" not in message
    return message


async def test_a_start_that_may_go_on_makes_one_read_per_check_and_no_write() -> None:
    kube = Refusing("plugins", "ops")
    mgr = operator(kube, lease="ops", names=("gpu", "fpga"))
    await preflight.check(mgr, server=SERVER, kubeconfig=KUBECONFIG)
    assert kube.writes == 0
    # Two namespaces, DaemonSets, Pods, Nodes, two kinds, two FPGA mappings; the Lease.
    assert (kube.requests["get"], kube.requests["list"]) == (3, 7)


async def test_every_check_is_sent_at_once() -> None:
    """One round trip: the namespace reads do not wait for an answer before the lists go."""

    class ListsBeforeNamespaceAnswers(Refusing):
        listed = asyncio.Event()

        async def get(self, resource, name, namespace=None):  # type: ignore[no-untyped-def]
            if resource == resources.NAMESPACES:
                await self.listed.wait()
            return await super().get(resource, name, namespace)

        async def list(self, resource, namespace=None, **selectors):  # type: ignore[no-untyped-def]
            self.listed.set()
            return await super().list(resource, namespace, **selectors)

    kube = ListsBeforeNamespaceAnswers("plugins", "ops")
    check = preflight.check(operator(kube), server=SERVER, kubeconfig=KUBECONFIG)
    await asyncio.wait_for(check, timeout=5)
    assert kube.namespaces_read == ["plugins", "ops"]


async def test_the_lists_are_the_informers_first_lists_which_then_only_watch() -> None:
    kube = Refusing("plugins", "ops")
    daemonset = {
        "metadata": {
            "name": "intel-gpu-plugin-a",
            "namespace": "plugins",
            "labels": {"app": "intel-gpu-plugin"},
        }
    }
    await kube.create(resources.DAEMON_SETS, daemonset, "plugins")
    mgr = operator(kube)
    await kube.create(resources.NODES, {"metadata": {"name": "node-1"}})
    await preflight.check(mgr, server=SERVER, kubeconfig=KUBECONFIG)
    assert all(inf.synced for inf in mgr.informers if inf is not mgr.nodes)
    assert [objects.name(ds) for ds in mgr.daemonsets.list()] == ["intel-gpu-plugin-a"]
    listed = kube.requests["list"]
    assert listed == len(mgr.informers)
    # The nodes, the longest list, are only checked (nothing comes back): their informer
    # lists them once started, without holding up what starts after the checks.
    assert not mgr.nodes.synced

    await kube.create(
        resources.DAEMON_SETS,
        {
            "metadata": {
                "name": "intel-gpu-plugin-b",
                "namespace": "plugins",
                "labels": {"app": "intel-gpu-plugin"},
            }
        },
        "plugins",
    )
    started = mgr.daemonsets.start()
    try:
        # The watch resumes from the check's list: the DaemonSet made since arrives by it.
        async def arrived() -> objects.JsonObject | None:
            return mgr.daemonsets.get("plugins/intel-gpu-plugin-b")

        await eventually_async(arrived, timeout=1, interval=0.01)
        assert kube.requests["list"] == listed
        assert kube.requests["watch"] == 1
    finally:
        await mgr.daemonsets.stop()
    assert started.done()


@pytest.mark.parametrize(
    ("present", "missing", "holds"),
    [
        (("ops",), "plugins", "the plugin DaemonSets (--deviceplugin-namespace"),
        (("plugins",), "ops", "the webhook certificate Secret (--operator-namespace"),
    ],
)
async def test_a_missing_namespace_is_named_with_what_it_holds_and_the_fix(
    present: tuple[str, ...], missing: str, holds: str
) -> None:
    message = await failure(operator(Refusing(*present)))
    assert message.startswith(f"Namespace {missing} not found: it holds {holds}")
    assert f"kubectl create namespace {missing}" in message


async def test_the_lease_namespace_is_checked_with_leader_election_only() -> None:
    message = await failure(operator(Refusing("plugins", "ops"), lease="elsewhere"))
    assert message.startswith("Namespace elsewhere not found: it holds the leader election Lease")
    await preflight.check(
        operator(Refusing("plugins", "ops")), server=SERVER, kubeconfig=KUBECONFIG
    )


async def test_the_operator_namespace_is_not_needed_without_self_managed_certificates() -> None:
    mgr = operator(Refusing("plugins"), webhooks=False)
    await preflight.check(mgr, server=SERVER, kubeconfig=KUBECONFIG)


async def test_one_namespace_for_everything_is_checked_once_and_named_with_all_it_holds() -> None:
    kube = Refusing()
    message = await failure(operator(kube, plugins="ops", own="ops", lease="ops"))
    assert kube.namespaces_read == ["ops"]
    assert "the plugin DaemonSets" in message
    assert "and the webhook certificate Secret" in message
    assert "and the leader election Lease" in message


async def test_a_namespace_the_operator_may_not_read_is_not_judged() -> None:
    kube = Refusing()
    kube.refuse("get", resources.NAMESPACES, forbidden("get", "namespaces", "", None))
    await preflight.check(operator(kube), server=SERVER, kubeconfig=KUBECONFIG)


@pytest.mark.parametrize(
    ("verb", "resource", "namespace", "role"),
    [
        (
            "list",
            resources.DAEMON_SETS,
            "plugins",
            "the Role intel-deviceplugins-manager-role (deployments/operator/rbac/role.yaml) "
            "in plugins",
        ),
        (
            "list",
            devices.KINDS["gpu"].resource,
            None,
            "the ClusterRole intel-deviceplugins-manager-role "
            "(deployments/operator/rbac/role.yaml)",
        ),
        (
            "get",
            resources.LEASES,
            "ops",
            "the Role intel-deviceplugins-leader-election-role "
            "(deployments/operator/rbac/leader_election_role.yaml) in ops",
        ),
    ],
    ids=["daemonsets", "gpudeviceplugins", "lease"],
)
async def test_an_rbac_refusal_names_user_verb_resource_namespace_and_role(
    verb: str, resource: resources.Resource, namespace: str | None, role: str
) -> None:
    kube = Refusing("plugins", "ops")
    kube.refuse(verb, resource, forbidden(verb, resource.plural, resource.group, namespace))
    message = await failure(operator(kube, lease="ops"))
    name = f"{resource.plural}.{resource.group}" if resource.group else resource.plural
    where = f"in namespace {namespace}" if namespace else "cluster-wide"
    assert message == f"RBAC denied: {USER} cannot {verb} {name} {where}; bind {role} to {USER}"


async def test_a_missing_lease_is_no_failure() -> None:
    await preflight.check(
        operator(Refusing("plugins", "ops"), lease="ops"), server=SERVER, kubeconfig=KUBECONFIG
    )


async def test_a_kind_the_api_server_does_not_serve_asks_for_the_crds() -> None:
    kube = Refusing("plugins", "ops")
    gpu = devices.KINDS["gpu"].resource
    kube.refuse("list", gpu, errors.NotFound(404, "NotFound", "the server could not find it"))
    message = await failure(operator(kube))
    assert message == (
        "The API server does not serve gpudeviceplugins.deviceplugin.intel.com: install the "
        "CRDs (kubectl apply --server-side -f deployments/operator/crd/bases)"
    )


async def test_an_unreachable_api_server_is_named_with_the_kubeconfig_and_the_reason() -> None:
    kube = Refusing("plugins", "ops")
    refused = errors.TransportError("GET /api/v1/namespaces/plugins failed: ...")
    refused.__cause__ = ConnectionRefusedError(111, "Connect call failed ('10.0.0.1', 6443)")
    kube.refuse("get", resources.NAMESPACES, refused)
    message = await failure(operator(kube))
    assert message.startswith(
        f"Cannot reach the Kubernetes API server {SERVER} (kubeconfig: {KUBECONFIG}): "
        "[Errno 111] Connect call failed"
    )
    assert message.endswith("and that the API server runs")


async def test_an_unreachable_api_server_is_named_before_what_other_checks_found() -> None:
    kube = Refusing("plugins", "ops")
    kube.refuse("list", resources.PODS, forbidden("list", "pods", "", "plugins"))
    kube.refuse("get", resources.NAMESPACES, errors.TransportError("GET failed: timeout"))
    message = await failure(operator(kube))
    assert message.startswith(f"Cannot reach the Kubernetes API server {SERVER}")


async def test_refused_credentials_are_named() -> None:
    kube = Refusing("plugins", "ops")
    kube.refuse("list", resources.PODS, errors.Unauthorized(401, "Unauthorized", "Unauthorized"))
    message = await failure(operator(kube))
    assert message == (
        f"The Kubernetes API server {SERVER} refused the credentials of {KUBECONFIG} "
        "(401 Unauthorized); renew the token or client certificate in the kubeconfig"
    )


async def test_an_api_server_that_is_busy_now_does_not_stop_the_start() -> None:
    kube = Refusing("plugins", "ops")
    kube.refuse("list", resources.PODS, errors.ApiError(429, "TooManyRequests", "slow down"))
    await preflight.check(operator(kube), server=SERVER, kubeconfig=KUBECONFIG)


async def test_nodes_the_rbac_refuses_are_a_warning_and_statuses_go_without_devices(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # The reference's RBAC grants no nodes, and this operator must run with it.
    kube = Refusing("plugins", "ops")
    kube.refuse("list", resources.NODES, forbidden("list", "nodes", "", None))
    mgr = operator(kube, lease="ops")
    await preflight.check(mgr, server=SERVER, kubeconfig=KUBECONFIG)
    reason = mgr.nodes_unreadable
    assert reason is not None
    assert reason.startswith("The devices the nodes advertise are not known: RBAC denied: ")
    assert f"{USER} cannot list nodes cluster-wide; bind the ClusterRole" in reason
    assert mgr.nodes not in mgr.informers
    assert [c.reconciler.nodes_unreadable for c in mgr.controllers] == [reason]
    assert [r.getMessage() for r in caplog.records if r.levelname == "WARNING"] == [reason]
