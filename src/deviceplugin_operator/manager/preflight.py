"""The reads the operator's start depends on, made once before anything starts, so that what
cannot heal by itself stops the process with one line (``startup.StartupError``) instead of
warnings that informers and the leader election repeat forever.

Every check is a read (the operator writes nothing before it leads), one the start makes
anyway or a cheap one:

* the namespaces it works in: GET of the plugin namespace, its own (the certificate Secret,
  self-managed only) and the Lease's. 404 stops the start; 403 leaves the question open (the
  install's RBAC does not grant reading namespaces, and a pod's own namespace exists);
* every informer's LIST, which is the informer's first list (``Informer.list_first``): its
  cache is filled here and the informer starts with its watch, so the start makes one round
  of lists, not a check round and then the real one (~20 ms of the time to the first
  DaemonSet). A 403 stops the start, and so does a 404 of a resource type the API server does
  not serve (the CRDs are not installed). Nodes are the exception: they only feed the devices
  in the statuses, and the reference's RBAC, which this operator must run with, does not
  grant them, so a 403 there is a warning and the operator runs without them
  (``Parts.without_nodes``). Their check is a LIST with a field selector that matches
  nothing: a cluster's nodes take the longest to list (10 pages at 1,000 nodes), and the
  webhooks and probes, served after these checks, do not wait for them; the node informer
  lists them itself once started;
* the Lease: GET, where a 403 stops the start (404: it is created when first leading).

All are sent at once; an API server that cannot be reached or refuses the credentials is
named before any other failure (it explains them).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from deviceplugin_operator.controller import election, informer
from deviceplugin_operator.kube import client, errors, resources
from deviceplugin_operator.manager import composition, startup

log = logging.getLogger(__name__)

NOTHING = "metadata.name=deviceplugin-operator-start-up-check"
"""A field selector no node matches: a LIST that checks only the permission."""

CRDS = "deployments/operator/crd/bases"


async def check(parts: composition.Parts, *, server: str, kubeconfig: str) -> None:
    """Raise ``startup.StartupError`` for the first check that fails, in the order above.

    ``server`` and ``kubeconfig`` only name where the requests went in the message.
    """
    prefix = parts.options.webhook_configuration_prefix
    checks = _Checks(parts.kube, prefix)
    lease = parts.options.leader_election
    # All at once (one round trip, not two): the credentials were loaded when the client
    # was made, and an API server that cannot be reached fails every request the same way,
    # named once below.
    found = await asyncio.gather(
        *(checks.namespace(name, holds) for name, holds in _namespaces(parts).items()),
        *(checks.listing(inf) for inf in parts.informers if inf is not parts.nodes),
        checks.nodes(parts),
        *([checks.lease(lease)] if lease is not None else []),
        return_exceptions=True,
    )
    # The first answer that stops the start, in the order of the checks; an unreachable
    # server or refused credentials before anything else (they explain every other failure).
    found.sort(
        key=lambda result: not isinstance(result, errors.TransportError | errors.Unauthorized)
    )
    for result in found:
        if isinstance(result, errors.TransportError):
            raise startup.unreachable(result, server, kubeconfig) from result
        if isinstance(result, errors.Unauthorized):
            raise startup.unauthorized(server, kubeconfig) from result
        if isinstance(result, errors.KubeError):
            continue  # e.g. 429 or 5xx: retried where the request is made for real
        if isinstance(result, BaseException):
            raise result


def _namespaces(parts: composition.Parts) -> dict[str, str]:
    """Each namespace the operator works in → what it holds there (and which flags name it)."""
    holding: dict[str, list[str]] = {}
    holding.setdefault(parts.config.plugin_namespace, []).append(
        "the plugin DaemonSets (--deviceplugin-namespace, env DEVICEPLUGIN_NAMESPACE)"
    )
    options = parts.options
    if options.webhook_port and options.webhook_certs == "self-managed":
        holding.setdefault(options.operator_namespace, []).append(
            "the webhook certificate Secret (--operator-namespace, env POD_NAMESPACE)"
        )
    if options.leader_election is not None:
        holding.setdefault(options.leader_election.namespace, []).append(
            "the leader election Lease (--leader-elect-namespace, env POD_NAMESPACE)"
        )
    return {name: " and ".join(holds) for name, holds in holding.items()}


class _Checks:
    def __init__(self, kube: client.KubeClient, prefix: str):
        self.kube = kube
        self.prefix = prefix

    async def namespace(self, name: str, holds: str) -> None:
        try:
            await self.kube.get(resources.NAMESPACES, name)
        except errors.NotFound as error:
            raise startup.namespace_missing(name, holds) from error
        except errors.Forbidden:
            return  # not ours to know: the requests made in it will tell

    async def listing(self, inf: informer.Informer) -> None:
        await self._refusing("list", inf.resource, inf.namespace, inf.list_first)

    async def nodes(self, parts: composition.Parts) -> None:
        nodes = parts.nodes
        try:
            await self._refusing(
                "list",
                nodes.resource,
                None,
                lambda: self.kube.list(
                    nodes.resource, label_selector=nodes.label_selector, field_selector=NOTHING
                ),
            )
        except startup.StartupError as refusal:
            reason = (
                f"The devices the nodes advertise are not known: {refusal} "
                "(list and watch on nodes)"
            )
            log.warning(reason)
            parts.without_nodes(reason)

    async def lease(self, config: election.Config) -> None:
        try:
            await self._refusing(
                "get",
                resources.LEASES,
                config.namespace,
                lambda: self.kube.get(resources.LEASES, config.name, config.namespace),
            )
        except errors.NotFound:
            return

    async def _refusing(
        self,
        verb: str,
        resource: resources.Resource,
        namespace: str | None,
        request: Callable[[], Awaitable[object]],
    ) -> None:
        try:
            await request()
        except errors.Forbidden as error:
            raise startup.refused(error, verb, resource, namespace, self.prefix) from error
        except errors.NotFound as error:
            if verb != "list":
                raise
            kind = startup.resource_name(resource.plural, resource.group)
            raise startup.StartupError(
                f"The API server does not serve {kind}: install the CRDs "
                f"(kubectl apply --server-side -f {CRDS})"
            ) from error
